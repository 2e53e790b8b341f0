// distribute(): the modules of a decoupled network on several processes (ranks), one process
// per rank, started with `mpirun -np K node program.js` (docs/distributed.md).
//
// Every rank builds the same network and a Trainer with the same seed, so every weight starts
// equal everywhere; a rank then runs only the modules `placement` gives it, each with its
// synthesizer. Per lockstep step t, for modules i = 1..N (0-based below):
//   rank of module 0   gathers the batch, sends the labels to the ranks that need them (the
//                      loss's, and those of conditioned (cDNI) synthesizers)
//   forward            module i waits for h_{i-1} (a receive, unless its rank computed it),
//                      computes h_i, starts sending it up, and predicts ĝ_i = M_i(h_i); the
//                      last module computes the loss and its true gradient instead
//   backward           in host order N..1 as on one process: module i backpropagates ĝ_i
//                      (λ > 0 or warm-up: (1-λ)ĝ_i + λδ_i, after δ_i arrived) through f_i,
//                      updates θ_i, starts sending δ_{i-1} down; M_i regresses onto δ_i now
//                      when δ_i is at hand, else (δ_i from another rank, λ = 0) in the next step,
//                      once δ_i arrived, just before M_i's next prediction
// Sends never block: a rank goes on computing while its tensors are read back and sent. With
// λ = 0 a rank waits only for h_{i-1} before module i's forward and, in step t+1, for δ_i of
// step t before M_i predicts again; module i's forward of step t+1 (and h_i's send) does not
// wait for the rank above. A step ends on each rank when its stream has finished and the
// previous step's sends are done. Each op runs on the same values as on one process, and each
// synthesizer regresses before it predicts again as there, so the run equals the one-process
// Trainer.fit bit for bit (test/distributed.test.ts checks it). The pipelined schedule (depth d)
// instead regresses M_i onto δ_i of step t-d in step t, as one process does; stochastic updates
// are drawn alike on every rank. The complete unlock (`unlock`) runs module i > 1 on I_i(x), so
// no forward waits for another rank: see unlockedStep. Per-rank checkpoints: ./rank-checkpoint.ts
// and save/resume below. How h and δ move (MPI host copies, or NCCL device buffers in groups on
// the stream, whose order no schedule can deadlock): ./hand-offs.ts.
import { createHash, randomBytes } from 'crypto';
import { promises as fsp } from 'fs';
import { checkOptions, describe, positiveInt } from '../check';
import { Batch, Dataset } from '../data/dataset';
import { Device } from '../device';
import { DecoupledNetwork } from '../dni/network';
import { DecoupledTraining } from '../dni/training';
import { BatchNorm1d } from '../nn/layers';
import { Loss, LossForward, LossName } from '../nn/losses';
import { Forwarded, StepContext, modulesOf } from '../nn/module';
import * as ops from '../ops';
import { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Arena, Tensor } from '../tensor';
import { NamedTensor, restoreTensors, writeCheckpoint } from '../train/checkpoint';
import { EpochMetrics, Evaluation, Trainer } from '../train/trainer';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import { probeOverRanks } from './diagnose';
import { Prediction } from '../dni/synthesizer';
import type { InputPrediction } from '../dni/unlock';
import { error, rangeError, typeError } from '../errors';
import { HandOffs, HostHandOffs, NcclHandOffs } from './hand-offs';
import type { Payload, Transport } from './mpi';
import { NcclTransport } from './nccl';
import { RankIdentity, RankSummary, decideResume, fingerprintOf, rankFile, rankSteps, readRankCheckpoints } from './rank-checkpoint';

export interface DistributeOptions {
  /** the rank of each module, e.g. [0, 1, 2]; every rank of the transport must be in [0, size) */
  placement: number[];
  /**
   * the ranks' transport: mpi() (h and δ read back and sent as host buffers), or, for a model
   * on a GPU, await nccl({ device }) (device buffers on the stream); connect() picks one
   */
  transport: Transport;
  /** as the Trainer's (TrainerOptions): a factory gives each module its own optimizer */
  optimizer: Optimizer | ((module: number) => Optimizer);
  loss?: LossName | Loss;
  /** seeds the initial weights and the shuffling, as the Trainer's; the same on every rank */
  seed?: number;
  device?: Device;
}

export interface DistributedFitOptions {
  /** stop after this many epochs, or `steps` steps, whichever comes first (at least one) */
  epochs?: number;
  steps?: number;
  /** default 256 */
  batchSize?: number;
  /** shuffle the rows every epoch (seeded, as Trainer.fit); default true */
  shuffle?: boolean;
  /** called on the rank of the last module (which has the loss) after every step */
  onStep?: (m: { step: number; epoch: number; loss: number; diagnostics?: ModuleDiagnostics[] }) => void | Promise<void>;
  /** evaluated (as evaluate() does, on every rank) at the end of every epoch, as Trainer.fit's */
  validation?: Dataset;
  /**
   * Every this many steps, measure each synthesizer on a probe batch (the first batch of
   * `validation`, else of `data`), as Trainer.fit does: every rank takes part, and onStep gets
   * every module's record as `diagnostics`
   */
  diagnoseEvery?: number;
  /**
   * called on every rank at the end of every epoch, after the validation: `loss` (the mean
   * training loss of the epoch's steps, those before a resume included) on the last module's
   * rank, NaN on the others; `validation` on every rank
   */
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  /**
   * Stops the run early when aborted on any rank: the ranks agree on a step (each sends the
   * others whether its signal is aborted after every step, and reads their answers a few steps
   * later), every rank stops after it, saves its checkpoint (if any) and resolves with
   * `stopped: true`; the interrupted epoch is neither validated nor reported. As Trainer.fit
   * (which checks its signal before each step): a stop after an epoch's last step still
   * validates and reports that epoch, and one after the run's last step is no stop.
   */
  signal?: AbortSignal;
  /**
   * Per-rank checkpoints: every `every` steps, and when fit ends, each rank writes its modules'
   * state to `dir`/rank-<r>.step-<t>.ckpt (keeping its last two). When `dir` holds a run's files,
   * fit resumes from the latest step every rank saved, or refuses, naming the rank and what
   * disagrees (step, placement, rank count, settings). `config`: JSON values the caller's run
   * was built from (e.g. command-line flags), compared on resume as well.
   */
  checkpoint?: { dir: string; every: number; config?: Record<string, unknown> };
}

export interface DistributedFitResult {
  /** steps done, counting those before a resumed checkpoint */
  steps: number;
  /** the step this fit() resumed after (from options.checkpoint), if it did */
  resumedFrom?: number;
  /** each step's loss, on the rank of the last module; empty on the others */
  losses: number[];
  seconds: number;
  /** host time this rank spent waiting for hand-offs from other ranks (receives) */
  waitSeconds: number;
  /** true when options.signal stopped the run before its end */
  stopped?: boolean;
}

/** Message kinds; a message's tag is cut * KINDS + kind (MPI keeps each pair's messages of a tag in order). */
const H = 0;
const DELTA = 1;
const LABELS = 2;
/** evaluate()'s, apart from training's */
const EVAL_H = 3;
const EVAL_LABELS = 4;
const KINDS = 5;
/** Tags after the modules' (N * KINDS + these): the all-gather (checkpoint summaries, data digests, diagnostics), evaluate()'s result, the stop votes, the idle ranks' ticks, the probe's. */
const GATHER_LENGTH = 0;
const GATHER_BYTES = 1;
const EVAL_RESULT = 2;
/** fit's `signal`: each rank's vote after every step */
const STOP_VOTE = 3;
/** to each rank that runs no module, from the last module's rank: one after every step and every evaluation batch */
const IDLE_TICK = 4;
/** fit's `diagnoseEvery`: the probe's tags start here (three per cut, ./diagnose.ts) */
const PROBE_TAGS = 8;

/** Where a run stands after a step, saved with its checkpoints (as the Trainer's FitProgress). */
export interface Position {
  /** the epoch and the row (in its shuffled order) where the next step starts */
  epoch: number;
  start: number;
  /** the shuffling generator at the start of that epoch (null: no shuffling) */
  shuffle: number[] | null;
  /**
   * On the last module's rank: that epoch's losses summed so far (as Trainer.fit sums them), so
   * that a merged checkpoint (./reshard.ts) reports the epoch's mean loss as one process does
   */
  lossSum?: number;
}

/** The host part of a rank's checkpoint. */
export interface RankRecord {
  distributed: RankIdentity;
  position: Position;
  /** the own modules' and their synthesizers' optimizer step counts, in ownModules' order */
  optimizerSteps: number[];
  synthesizerSteps: number[];
  /** the stochastic updates' generator (the same on every rank) */
  updateRng: number[];
  /** with the complete unlock: the own input models' optimizer step counts, in ownInputModels' order */
  inputSteps?: number[];
}

/** The keys fit() puts in a rank's configuration before the caller's checkpoint.config, in order. */
export const FIT_CONFIG_KEYS = [
  'network',
  'state shapes',
  'schedule',
  'lambda',
  'warmupSteps',
  'loss',
  'seed',
  'batchSize',
  'data rows',
  'shuffle',
] as const;

/** Places the modules of a decoupled network on ranks; see DistributedNetwork.fit. */
export function distribute(network: DecoupledNetwork, options: DistributeOptions): DistributedNetwork {
  return new DistributedNetwork(network, options);
}

export class DistributedNetwork {
  readonly rank: number;
  readonly placement: readonly number[];
  /** the modules this rank runs (0-based) */
  readonly ownModules: readonly number[];
  /** builds and initialises the whole network, as on one process (the same seed, the same weights) */
  readonly trainer: Trainer;
  /**
   * How a training step's h and δ cross ranks: 'nccl' (the transport is nccl()'s: device
   * buffers, ncclSend/ncclRecv on the stream) or 'mpi' (read back, sent as host buffers). The
   * labels, checkpoints' coordination, evaluate() and the barrier go over MPI either way.
   */
  readonly handOffs: 'nccl' | 'mpi';
  private readonly hand: HandOffs;
  private readonly strategy: DecoupledTraining;
  private readonly transport: Transport;
  private readonly seed: number;
  private busy = false;
  /**
   * Per module, its synthesizer's regression still waiting for δ_i from the rank above: done
   * before M_i's next prediction (or when fit ends), so that module i's next forward need not
   * wait for it.
   */
  private carried: ({ prediction: Prediction; delta: Promise<Tensor> } | undefined)[] = [];
  /**
   * The complete unlock: per module i > 0, I_i's regression waiting for h_{i-1} from the rank
   * below, done before I_i's next prediction (or when fit ends).
   */
  private carriedInputs: ({ prediction: InputPrediction; target: Promise<Tensor> } | undefined)[] = [];
  /**
   * The pipelined schedule (depth d > 0): per module, M_i's regressions waiting to be done d
   * steps after their step, as DecoupledTraining queues them; their δ_i may still be on its way.
   */
  private queued: { step: number; prediction: Prediction; delta: Promise<Tensor> }[][] = [];
  private readonly depth: number;
  /** the arenas of steps whose work may still run or be carried (the latest one; pipelined: `depth`) */
  private arenas: Arena[] = [];
  /** the previous step's sends, awaited at the end of the next step (or of fit) */
  private sends: Promise<void>[] = [];
  /** the run's id in its checkpoints (drawn by rank 0 when a checkpointed run starts) */
  private runId = '';
  /**
   * With diagnostics (fit's `diagnoseEvery`): per own module, its synthesizer's latest regression
   * loss, and (the complete unlock, module i > 0) I_i's
   */
  private synthLoss: (Tensor | undefined)[] = [];
  private inputLoss: (Tensor | undefined)[] = [];
  /** the step of this rank's latest checkpoint, kept when the next is written (-1: none) */
  private lastSaved = -1;
  /**
   * The ranks that run no module. Such a rank would return from each step at once and run
   * ahead, then wait longer than the transport's timeout for the others at an epoch's end (the
   * validation result, the probe, the save barrier). Instead it waits for a tick from the last
   * module's rank after each step and evaluation batch (tickIdle): each wait lasts about one
   * step, so the timeout, which ends the run when that rank died or hangs, still applies.
   */
  private readonly idleRanks: number[];

  constructor(
    readonly network: DecoupledNetwork,
    options: DistributeOptions,
  ) {
    if (!(network instanceof DecoupledNetwork))
      throw typeError(`distribute: 'network' must be a DecoupledNetwork (from decouple()), got ${describe(network)}`);
    if (!options || typeof options !== 'object') throw typeError('distribute: expects options { placement, transport, optimizer, ... }');
    checkOptions('distribute', options, ['placement', 'transport', 'optimizer', 'loss', 'seed', 'device']);
    const t = options.transport;
    if (!t || typeof t !== 'object' || typeof t.send !== 'function' || !Number.isInteger(t.rank) || !Number.isInteger(t.size))
      throw typeError(`distribute: 'transport' must be a Transport (mpi()), got ${describe(t)}`);
    const n = network.modules.length;
    const p = options.placement;
    if (!Array.isArray(p) || p.length !== n)
      throw rangeError(`distribute: 'placement' must list a rank for each of the ${n} modules, got ${describe(p)}`);
    p.forEach((r, i) => {
      if (!Number.isInteger(r) || r < 0 || r >= t.size)
        throw rangeError(
          `distribute: 'placement[${i}]' (module ${i + 1}) must be a rank in [0, ${t.size - 1}] (the run has ${t.size} rank(s)), got ${String(r)}`,
        );
    });
    const { schedule } = network.config;
    this.depth = schedule.kind === 'pipelined' ? schedule.depth : 0;
    this.queued = network.modules.map(() => []);
    this.transport = t;
    this.rank = t.rank;
    this.placement = [...p];
    this.ownModules = p.flatMap((r, i) => (r === t.rank ? [i] : []));
    this.idleRanks = [...Array(t.size).keys()].filter((r) => !p.includes(r));
    this.seed = options.seed ?? 0;
    this.trainer = new Trainer(network, { optimizer: options.optimizer, loss: options.loss, seed: options.seed, device: options.device });
    this.strategy = this.trainer.strategy as DecoupledTraining;
    if (t instanceof NcclTransport) {
      if (!t.device.equals(this.trainer.device)) {
        this.trainer.dispose();
        throw rangeError(
          `distribute: 'transport' is NCCL's on ${t.device.name} (it moves that device's buffers), but the model is on ` +
            `${this.trainer.device.name} ('device'): train on ${t.device.name}, or use transport mpi() (host buffers)`,
        );
      }
      this.hand = new NcclHandOffs(t, this.placement, network.config.unlock === true);
    } else {
      this.hand = new HostHandOffs(t, this.placement, (i, kind) => i * KINDS + (kind === 'h' ? H : DELTA));
    }
    this.handOffs = this.hand.kind;
  }

  /**
   * Trains on `data` with the network's schedule; every rank calls it with the same data and
   * options (the rank of module 1 reads the rows; the others use the data's size for the
   * batches). Resolves when this rank's part is done; rejects when a hand-off fails or waits
   * past the transport's timeout, naming the rank it waited for.
   */
  async fit(data: Dataset, options: DistributedFitOptions): Promise<DistributedFitResult> {
    if (this.busy) throw error('ERR_SYNTHGRAD_STATE', 'fit: this distributed network is already running fit(); await it first');
    if (!(data instanceof Dataset)) throw typeError(`fit: 'data' must be a Dataset, got ${describe(data)}`);
    if (!options || typeof options !== 'object') throw typeError('fit: expects options { epochs or steps, ... }');
    checkOptions('fit', options, [
      'epochs',
      'steps',
      'batchSize',
      'shuffle',
      'onStep',
      'checkpoint',
      'validation',
      'onEpoch',
      'signal',
      'diagnoseEvery',
    ]);
    const batchSize = positiveInt('fit', 'batchSize', options.batchSize ?? 256);
    if (options.epochs === undefined && options.steps === undefined) throw rangeError("fit: give 'epochs' or 'steps'");
    const maxEpochs = options.epochs === undefined ? Infinity : positiveInt('fit', 'epochs', options.epochs);
    const maxSteps = options.steps === undefined ? Infinity : positiveInt('fit', 'steps', options.steps);
    for (const key of ['onStep', 'onEpoch'] as const)
      if (options[key] !== undefined && typeof options[key] !== 'function')
        throw typeError(`fit: '${key}' must be a function, got ${describe(options[key])}`);
    if (options.validation !== undefined) this.checkEvaluationData('fit', 'validation', options.validation);
    const diagnoseEvery = options.diagnoseEvery === undefined ? 0 : positiveInt('fit', 'diagnoseEvery', options.diagnoseEvery);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw typeError(`fit: 'signal' must be an AbortSignal, got ${describe(signal)}`);
    const width = this.network.input.reduce((a, b) => a * b, 1);
    if (data.features !== width)
      throw rangeError(
        `fit: 'data' (${data.name}) has ${data.features} values per row, but the network takes [${this.network.input.join(', ')}]`,
      );
    const minRows = modulesOf(this.network).some((m) => m instanceof BatchNorm1d) ? 2 : 1;
    if (batchSize < minRows)
      throw rangeError(`fit: 'batchSize' must be at least ${minRows} for this model (BatchNorm1d), got ${batchSize}`);
    // Trainer.fit's shuffling generator: the second fork of Random(seed) (the first initialised the weights).
    const seeded = new Random(this.seed);
    seeded.fork();
    const shuffle = options.shuffle === undefined || options.shuffle === true ? seeded.fork() : undefined;
    // The diagnostics' probe batch, as Trainer.fit takes it (every rank reads it from its own copy).
    const probeData = options.validation ?? data;
    const probeRows = Math.min(batchSize, probeData.count);
    if (diagnoseEvery && probeRows < minRows)
      throw rangeError(
        `fit: '${options.validation ? 'validation' : 'data'}' (${probeData.name}) has ${probeData.count} row${probeData.count === 1 ? '' : 's'}; the diagnostics' probe batch needs ${minRows} ` +
          "(BatchNorm1d): give more rows or drop 'diagnoseEvery'",
      );
    const probe = diagnoseEvery ? probeData.gather(probeData.order(), 0, probeRows) : undefined;
    if (options.shuffle !== undefined && typeof options.shuffle !== 'boolean')
      throw typeError(`fit: 'shuffle' must be a boolean, got ${describe(options.shuffle)}`);

    const checkpoint = options.checkpoint === undefined ? undefined : checkpointOption(options.checkpoint);
    if (checkpoint && this.depth > 0)
      throw error(
        'ERR_SYNTHGRAD_CHECKPOINT',
        "fit: the pipelined schedule carries work from one step into later ones and cannot be saved (as on one process); drop 'checkpoint' or use the lockstep schedule",
      );
    // What a resumed run must share with the saved one (placement and rank count are checked apart);
    // its keys are FIT_CONFIG_KEYS (./reshard.ts tells them from the caller's).
    const config: Record<string, unknown> = {
      network: this.network.name,
      'state shapes': this.network.modules.map((_, i) => moduleState(this.network, i).map((t) => t.shape.join('x'))),
      schedule: this.network.config.schedule,
      lambda: this.network.config.lambda,
      warmupSteps: this.network.config.warmupSteps,
      loss: this.trainer.loss.name,
      seed: this.seed,
      batchSize,
      'data rows': data.count,
      shuffle: shuffle !== undefined,
      ...(checkpoint?.config ?? {}),
    };

    this.busy = true;
    if (diagnoseEvery) {
      const { device } = this.trainer;
      const n = this.network.modules.length;
      this.synthLoss = this.network.modules.map((_, i) =>
        this.placement[i] === this.rank && i < n - 1 ? Tensor.fromArray([NaN], [1], { device }) : undefined,
      );
      this.inputLoss = this.network.modules.map((_, i) =>
        this.placement[i] === this.rank && i > 0 && this.network.inputModels.length ? Tensor.fromArray([NaN], [1], { device }) : undefined,
      );
    }
    const started = Date.now();
    const result: DistributedFitResult = { steps: 0, losses: [], seconds: 0, waitSeconds: 0 };
    const stream = this.trainer.stream;
    let failed = true;
    try {
      let at: Position = { epoch: 1, start: 0, shuffle: shuffle ? shuffle.state() : null };
      let step = 0;
      if (this.network.config.unlock) await this.checkSameData(data, result);
      if (checkpoint) {
        const resumed = await this.resume(checkpoint.dir, config, result);
        if (resumed) {
          ({ step, position: at } = resumed);
          if (shuffle && at.shuffle) shuffle.restore(at.shuffle);
          result.resumedFrom = step;
        }
      }
      const firstStep = step;
      const from = at; // `at` follows the steps below
      const votes = signal
        ? new StopVotes(this.transport, this.network.modules.length * KINDS + STOP_VOTE, signal, this.transport.size + this.depth + 1)
        : undefined;
      let lossSum = at.lossSum ?? 0;
      for (let epoch = from.epoch; epoch <= maxEpochs && step < maxSteps && !result.stopped; epoch++) {
        const shuffleState = shuffle ? shuffle.state() : null; // where this epoch's order came from
        if (epoch !== from.epoch) lossSum = 0;
        const order = data.order(shuffle);
        const epochStart = Date.now();
        // A resumed epoch counts its steps before the resume too (full batches), as its saved loss sum does.
        let stepsInEpoch = epoch === from.epoch ? from.start / batchSize : 0;
        let samples = 0;
        let stopping = false; // every rank agreed to stop after this step
        let more = false; // whether this epoch had another step after it
        for (let start = epoch === from.epoch ? from.start : 0; start < data.count && step < maxSteps; start += batchSize) {
          const end = Math.min(data.count, start + batchSize);
          if (end - start < minRows) break; // Trainer.fit drops a tail too short for BatchNorm the same way
          const loss = await this.step(data, order, start, end, result);
          step++;
          stepsInEpoch++;
          samples += end - start;
          // The probe measures the state this step leaves, before the next step (on every rank).
          const diagnostics = probe && step % diagnoseEvery === 0 ? await this.diagnose(probe, probeRows, result) : undefined;
          if (loss !== undefined) {
            result.losses.push(loss);
            lossSum += loss;
            if (options.onStep) await options.onStep({ step, epoch, loss, ...(diagnostics ? { diagnostics } : {}) });
          }
          if (checkpoint) {
            const epochOver = data.count - end < minRows;
            at = epochOver
              ? { epoch: epoch + 1, start: 0, shuffle: shuffle ? shuffle.state() : null }
              : { epoch, start: end, shuffle: shuffleState };
            if (loss !== undefined) at.lossSum = epochOver ? 0 : lossSum;
            if (step % checkpoint.every === 0) await this.save(checkpoint.dir, step, at, config, result);
          }
          // Every rank sees the same votes, so every rank stops after the same step.
          if (votes && (await this.waited(votes.after(step), result))) {
            stopping = true;
            more = step < maxSteps && data.count - end >= minRows;
            break;
          }
        }
        // Trainer.fit checks its signal before each step: a stop after an epoch's last step still
        // reports that epoch (every rank agreed on the step, so every rank validates it), and one
        // after the run's last step is no stop at all.
        if (stopping && more) {
          result.stopped = true;
          break; // the epoch is not over: a resumed run reports it when it is
        }
        const seconds = (Date.now() - epochStart) / 1000;
        const m: EpochMetrics = {
          epoch,
          steps: stepsInEpoch,
          loss: this.placement[this.placement.length - 1] === this.rank && stepsInEpoch ? lossSum / stepsInEpoch : NaN,
          seconds,
          samplesPerSecond: samples / Math.max(seconds, 1e-9),
        };
        if (options.validation) m.validation = await this.evaluateRows(options.validation, 1000);
        if (options.onEpoch) await options.onEpoch(m);
        if (stopping && step < maxSteps && epoch < maxEpochs) result.stopped = true;
      }
      if (checkpoint && step > firstStep && step % checkpoint.every !== 0) await this.save(checkpoint.dir, step, at, config, result);
      result.steps = step;
      if (votes) await this.waited(votes.finish(), result);
      // The regressions still carried, then every send and this rank's stream.
      await this.learnAllCarried(result);
      // Pipelined: the regressions onto the last `depth` steps' δ stay undone, as on one process
      // (where they wait for steps that never come); their messages are received all the same.
      for (const q of this.queued) for (const due of q.splice(0)) await this.waited(due.delta, result);
      await Promise.all(this.sends);
      await this.hand.finish();
      await this.hand.watch(stream.synchronize(), 'the end of fit');
      failed = false;
    } finally {
      // After a failure the stream may still run the step's ops: let it finish before freeing their tensors.
      if (failed) await this.hand.watch(stream.synchronize(), 'the stream after a failure').catch(() => undefined);
      this.hand.reset();
      for (const a of this.arenas) a.dispose();
      this.arenas = [];
      this.carried = [];
      this.carriedInputs = [];
      for (const q of this.queued) q.length = 0;
      this.sends = [];
      for (const t of [...this.synthLoss, ...this.inputLoss]) t?.dispose();
      this.synthLoss = [];
      this.inputLoss = [];
      this.busy = false;
    }
    result.seconds = (Date.now() - started) / 1000;
    return result;
  }

  /**
   * Mean loss and accuracy of the network (inference mode) on `data`, as Trainer.evaluate
   * computes them: every rank calls it with the same data; the rows go up through the ranks
   * (module 1's rank reads them), the last module's rank scores the outputs and sends the
   * result to every rank, so rank 0 (and every other) resolves with it.
   */
  async evaluate(data: Dataset, options: { batchSize?: number } = {}): Promise<Evaluation> {
    if (this.busy) throw error('ERR_SYNTHGRAD_STATE', 'evaluate: this distributed network is running fit(); await it first');
    this.checkEvaluationData('evaluate', 'data', data);
    checkOptions('evaluate', options, ['batchSize']);
    const batchSize = positiveInt('evaluate', 'batchSize', options.batchSize ?? 1000);
    this.busy = true;
    try {
      return await this.evaluateRows(data, batchSize);
    } finally {
      this.busy = false;
    }
  }

  /** What evaluate() (or fit's `validation`) may score: a non-empty Dataset of the network's rows and the loss's task. */
  private checkEvaluationData(method: string, name: string, data: unknown): asserts data is Dataset {
    if (!(data instanceof Dataset)) throw typeError(`${method}: '${name}' must be a Dataset, got ${describe(data)}`);
    const net = this.network;
    const width = net.input.reduce((a, b) => a * b, 1);
    if (data.features !== width)
      throw rangeError(
        `${method}: '${name}' (${data.name}) has ${data.features} values per row, but the network takes [${net.input.join(', ')}]`,
      );
    if (data.count === 0) throw rangeError(`${method}: '${name}' (${data.name}) is empty`);
    const wants = this.trainer.loss.targetDType === 'int32' ? 'classification' : 'regression';
    if (data.task !== wants)
      throw typeError(
        `${method}: '${name}' (${data.name}) is ${data.task} data, but the loss ${this.trainer.loss.name} takes ${wants} data`,
      );
  }

  /** evaluate()'s work, on every rank (also inside fit, at an epoch's end). */
  private async evaluateRows(data: Dataset, batchSize: number): Promise<Evaluation> {
    const net = this.network;
    const n = net.modules.length;
    const owner = this.placement;
    const me = this.rank;
    const last = owner[n - 1];
    const classification = data.task === 'classification';
    const { device, stream } = this.trainer;
    const unused: DistributedFitResult = { steps: 0, losses: [], seconds: 0, waitSeconds: 0 };
    let lossSum = 0;
    let correct = 0;
    {
      const order = data.order();
      for (let start = 0, b = 1; start < data.count; start += batchSize, b++) {
        const end = Math.min(data.count, start + batchSize);
        const rows = end - start;
        const arena = new Arena();
        const ctx: StepContext = { device, stream, training: false, arena };
        const sends: Promise<void>[] = [];
        try {
          let h: Tensor | undefined;
          let targets: Payload | undefined;
          if (owner[0] === me) {
            const batch = data.gather(order, start, end);
            h = Tensor.fromArray(batch.inputs, [rows, ...net.input], { device, arena });
            targets = batch.targets;
            if (last !== me) sends.push(this.transport.send(targets, last, EVAL_LABELS));
          } else if (last === me) {
            const into = classification ? new Int32Array(rows) : new Float32Array(rows * data.outputs);
            targets = await this.transport.receive(into, owner[0], EVAL_LABELS, `the labels of evaluation batch ${b}`);
          }
          let shape = [rows, ...net.input];
          for (let i = 0; i < n; i++) {
            const inShape = shape;
            shape = net.modules[i].outputShape(shape);
            if (owner[i] !== me) continue;
            if (i > 0 && owner[i - 1] !== me) {
              const values = new Float32Array(inShape.reduce((a, c) => a * c, 1));
              await this.transport.receive(values, owner[i - 1], (i - 1) * KINDS + EVAL_H, `h_${i} of evaluation batch ${b}`);
              h = Tensor.fromArray(values, inShape, { device, arena });
            }
            h = net.modules[i].forward(h!, ctx).output;
            if (i < n - 1 && owner[i + 1] !== me) {
              const out = h;
              sends.push(out.readFloat32(stream).then((values) => this.transport.send(values, owner[i + 1], i * KINDS + EVAL_H)));
            }
          }
          if (last === me) {
            const sums = score({ loss: lossSum, correct }, await h!.readFloat32(stream), targets!, rows, classification);
            lossSum = sums.loss;
            correct = sums.correct;
            sends.push(...this.tickIdle());
          } else if (this.ownModules.length === 0) {
            await this.waited(this.idleTick(`evaluation batch ${b}`), unused);
          }
          for (const p of sends) p.catch(() => undefined);
          await Promise.all(sends);
        } finally {
          await stream.synchronize().catch(() => undefined);
          arena.dispose();
        }
      }
      // The sums (float64, bit for bit) from the last module's rank to every other.
      const resultTag = n * KINDS + EVAL_RESULT;
      const sums = new Float64Array([lossSum, correct]);
      if (last === me) {
        const others = [...Array(this.transport.size).keys()].filter((r) => r !== me);
        await Promise.all(others.map((r) => this.transport.send(new Int32Array(sums.buffer), r, resultTag)));
      } else {
        await this.waited(this.transport.receive(new Int32Array(sums.buffer), last, resultTag, 'the evaluation result'), unused);
      }
      [lossSum, correct] = sums;
    }
    if (!classification) return { loss: lossSum / (data.count * data.outputs), count: data.count };
    return { loss: lossSum / data.count, accuracy: correct / data.count, count: data.count };
  }

  /** Every regression still carried into the next step, done now (at a checkpoint, or when fit ends). */
  private async learnAllCarried(result: DistributedFitResult): Promise<void> {
    await this.waited(this.hand.flush(), result); // (NCCL) the δ held back for them
    const ctx: StepContext = {
      device: this.trainer.device,
      stream: this.trainer.stream,
      training: true,
      arena: this.arenas[this.arenas.length - 1],
    };
    for (let i = 0; i < this.carried.length; i++) await this.learnCarried(i, ctx, result);
    for (let i = 0; i < this.carriedInputs.length; i++) await this.learnCarriedInput(i, ctx, result);
  }

  /**
   * Writes this rank's checkpoint of `step`, then waits for every rank to have written theirs
   * before it removes its older files: so every rank always holds the previous step's file too,
   * and a fault during a save leaves a step that every rank saved.
   */
  private async save(dir: string, step: number, position: Position, config: Record<string, unknown>, result: DistributedFitResult) {
    // M_i's regression onto δ_i of this step belongs to this step: the file holds the state
    // the one-process run has after it (the regression only moves earlier; nothing between reads M_i).
    await this.learnAllCarried(result);
    const record: RankRecord = {
      distributed: {
        runId: this.runId,
        rank: this.rank,
        size: this.transport.size,
        placement: [...this.placement],
        step,
        fingerprint: fingerprintOf(config),
        config,
      },
      position,
      optimizerSteps: this.ownModules.map((i) => this.strategy.optimizers[i].steps),
      synthesizerSteps: this.ownSynthesizers().map((i) => this.network.synthesizers[i].optimizer!.steps),
      updateRng: this.updateRng().state(),
      ...(this.network.config.unlock
        ? { inputSteps: this.ownInputModels().map((i) => this.network.inputModels[i - 1].optimizer!.steps) }
        : {}),
    };
    await writeCheckpoint(rankFile(dir, this.rank, step), this.ownNamedState(), record, this.trainer.stream);
    await this.waited(this.transport.barrier(), result);
    const keep = new Set([this.lastSaved, step]);
    for (const old of await rankSteps(dir, this.rank)) if (!keep.has(old)) await fsp.rm(rankFile(dir, this.rank, old), { force: true });
    this.lastSaved = step;
  }

  /**
   * Reads this rank's files in `dir`, exchanges what every rank found, and restores the state
   * of the latest step every rank saved (undefined: no rank has a file, the run starts afresh).
   * Throws on every rank alike when the files disagree.
   */
  private async resume(
    dir: string,
    config: Record<string, unknown>,
    result: DistributedFitResult,
  ): Promise<{ step: number; position: Position } | undefined> {
    const { summary, loaded } = await readRankCheckpoints(dir, this.rank);
    if (summary.error === undefined)
      await fsp.mkdir(dir, { recursive: true }).catch((e: Error) => {
        summary.error = `cannot create ${dir}: ${e.message}`;
      });
    if (this.rank === 0) summary.newRunId = randomBytes(8).toString('hex');
    const summaries = (await this.allGather(summary, 'the checkpoint summary', result)) as RankSummary[];
    const decision = decideResume(summaries, { dir, size: this.transport.size, placement: this.placement, config });
    this.runId = decision.runId;
    const step = decision.step;
    if (step === undefined) return undefined;
    const saved = loaded.get(step)!;
    const record = saved.host as RankRecord;
    await restoreTensors(saved, this.ownNamedState(), this.trainer.stream);
    this.ownModules.forEach((i, k) => {
      this.strategy.optimizers[i].steps = record.optimizerSteps[k];
    });
    this.ownSynthesizers().forEach((i, k) => {
      this.network.synthesizers[i].optimizer!.steps = record.synthesizerSteps[k];
    });
    this.ownInputModels().forEach((i, k) => {
      this.network.inputModels[i - 1].optimizer!.steps = record.inputSteps![k];
    });
    this.updateRng().restore(record.updateRng);
    this.strategy.steps = step;
    // Files of steps after it belong to a continuation that not every rank saved: gone.
    for (const later of await rankSteps(dir, this.rank)) if (later > step) await fsp.rm(rankFile(dir, this.rank, later), { force: true });
    this.lastSaved = step;
    return { step: step, position: record.position };
  }

  /**
   * The complete unlock: every rank reads the batches from its own copy of the data, so a rank
   * given other rows would train on them silently. Every rank's digest of its Dataset (the rows,
   * the inputs' and targets' bytes), gathered; every rank refuses alike, naming each rank whose
   * data differ from rank 0's.
   */
  private async checkSameData(data: Dataset, result: DistributedFitResult): Promise<void> {
    const digests = (await this.allGather(dataDigest(data), 'the data digest', result)) as { rows: number; sha256: string }[];
    const differ = digests.flatMap((d, r) => (d.sha256 === digests[0].sha256 ? [] : [r]));
    if (differ.length === 0) return;
    const said = (r: number) => `rank ${r}'s (${digests[r].rows} rows, sha256 ${digests[r].sha256.slice(0, 12)}…)`;
    throw error(
      'ERR_SYNTHGRAD_DATA',
      `fit: with the complete unlock every rank reads the batches from its own 'data', but ${differ.map(said).join(', ')} ` +
        `${differ.length === 1 ? 'differs' : 'differ'} from ${said(0)}: give every rank the same Dataset (the same rows in the same order)`,
    );
  }

  /** Every rank's `value` (JSON), in rank order; every rank calls it. */
  private async allGather(value: unknown, what: string, result: DistributedFitResult): Promise<unknown[]> {
    const base = this.network.modules.length * KINDS;
    const bytes = Buffer.from(JSON.stringify(value), 'utf8');
    const words = new Int32Array(Math.ceil(bytes.length / 4));
    new Uint8Array(words.buffer).set(bytes);
    const others = [...Array(this.transport.size).keys()].filter((r) => r !== this.rank);
    const sends = others.flatMap((r) => [
      this.transport.send(Int32Array.of(bytes.length), r, base + GATHER_LENGTH),
      this.transport.send(words, r, base + GATHER_BYTES),
    ]);
    for (const p of sends) p.catch(() => undefined); // awaited below
    const received = await this.waited(
      Promise.all(
        others.map(async (r) => {
          const [length] = await this.transport.receive(new Int32Array(1), r, base + GATHER_LENGTH, `the length of ${what}`);
          const into = await this.transport.receive(new Int32Array(Math.ceil(length / 4)), r, base + GATHER_BYTES, what);
          return JSON.parse(Buffer.from(into.buffer, 0, length).toString('utf8')) as unknown;
        }),
      ),
      result,
    );
    await Promise.all(sends);
    const all: unknown[] = [...received];
    all.splice(this.rank, 0, value);
    return all;
  }

  /** The own modules that have a synthesizer (all but the last module). */
  private ownSynthesizers(): number[] {
    return this.ownModules.filter((i) => i < this.network.synthesizers.length);
  }

  /** The own modules that have an input model (the complete unlock: all but module 1). */
  private ownInputModels(): number[] {
    return this.network.config.unlock ? this.ownModules.filter((i) => i > 0) : [];
  }

  /** What this rank's checkpoint holds: its modules', their synthesizers', their input models' and their optimizers' tensors, named. */
  private ownNamedState(): NamedTensor[] {
    const net = this.network;
    const named: NamedTensor[] = [];
    const add = (prefix: string, tensors: Tensor[]) => tensors.forEach((tensor, k) => named.push({ name: `${prefix}.${k}`, tensor }));
    for (const i of this.ownModules) {
      add(`module${i + 1}`, net.modules[i].stateTensors());
      add(`module${i + 1}.optimizer`, this.strategy.optimizers[i].stateTensors(net.modules[i].parameters()));
      if (i < net.synthesizers.length) {
        const s = net.synthesizers[i];
        add(`synthesizer${i + 1}`, s.network.stateTensors());
        add(`synthesizer${i + 1}.optimizer`, s.optimizer!.stateTensors(s.parameters()));
      }
    }
    for (const i of this.ownInputModels()) {
      const m = net.inputModels[i - 1];
      add(`input${i + 1}`, m.network.stateTensors());
      add(`input${i + 1}.optimizer`, m.optimizer!.stateTensors(m.parameters()));
    }
    return named;
  }

  /** The strategy's generator of stochastic updates (every rank draws the same numbers from it). */
  private updateRng(): Random {
    // Private in DecoupledTraining; seeded there from the network's generator, so it is the same on every rank.
    return (this.strategy as unknown as { updateRng: Random }).updateRng;
  }

  /** One lockstep step of this rank's modules; the loss on the last module's rank. */
  private async step(
    data: Dataset,
    order: Uint32Array,
    start: number,
    end: number,
    result: DistributedFitResult,
  ): Promise<number | undefined> {
    const net = this.network;
    const n = net.modules.length;
    const owner = this.placement;
    const me = this.rank;
    const t = this.strategy.steps++; // the step's index, as DecoupledTraining counts it
    const warm = t < net.config.warmupSteps;
    const lambda = warm ? 1 : net.config.lambda;
    // Which modules update this step: every rank draws every module's, in DecoupledTraining's order.
    const p = warm ? 1 : net.config.schedule.pUpdate;
    const rng = this.updateRng();
    const updated = net.modules.map(() => p >= 1 || rng.next() < p);
    if (this.ownModules.length === 0) {
      await this.waited(this.idleTick(`step ${t + 1}`), result);
      return undefined;
    }
    const { device, stream } = this.trainer;
    const rows = end - start;
    const arena = new Arena();
    this.arenas.push(arena);
    const ctx: StepContext = { device, stream, training: true, arena };
    const sends: Promise<void>[] = [];
    const waited = <T>(p: Promise<T>): Promise<T> => this.waited(p, result);
    // Awaited at the next step's end; marked handled now, so that an early failure is not an unhandled rejection.
    const started = (p: Promise<void>) => {
      p.catch(() => undefined);
      sends.push(p);
    };
    // h and δ cross ranks through the hand-offs (./hand-offs.ts: MPI host copies, or NCCL on the stream).
    const hand = this.hand;
    hand.begin(t, ctx, lambda > 0);
    // The batch: rows on module 1's rank; labels sent to the ranks that need them.
    const classification = data.task === 'classification';
    const needLabels = new Set(owner.filter((r, i) => i === n - 1 || net.synthesizers[i].conditioned));
    let x: Tensor | undefined;
    let labels: Payload | undefined;
    // The complete unlock feeds x to every input model: every rank reads the batch from its own
    // copy of the data (the same rows, in the same order), so nothing is sent and no rank waits.
    const unlock = net.config.unlock === true;
    if (owner[0] === me || unlock) {
      const batch = data.gather(order, start, end);
      x = Tensor.fromArray(batch.inputs, [rows, ...net.input], { device, arena });
      labels = batch.targets;
      if (!unlock) for (const r of needLabels) if (r !== me) started(this.transport.send(labels, r, LABELS));
    } else if (needLabels.has(me)) {
      const into = classification ? new Int32Array(rows) : new Float32Array(rows * data.outputs);
      labels = await waited(this.transport.receive(into, owner[0], LABELS, `the labels of step ${t + 1}`));
    }
    // Unconditioned synthesizers ignore the labels: ranks without them pass zeros.
    const y = labels
      ? Tensor.fromArray(labels, classification ? [rows] : [rows, data.outputs], { device, arena })
      : Tensor.zeros([rows], { device, arena, dtype: 'int32' });

    // Forward phase.
    const shapes: number[][] = []; // h_i's shape
    let shape = [rows, ...net.input];
    for (const m of net.modules) shapes.push((shape = m.outputShape(shape)));
    if (unlock) {
      return this.endStep(t, sends, await this.unlockedStep(x!, y, updated, shapes, ctx, result));
    }
    const forwards: Forwarded[] = [];
    const predictions: Prediction[] = [];
    let lossForward: LossForward | undefined;
    for (const i of this.ownModules) {
      let input: Tensor;
      if (i === 0) input = x!;
      else if (owner[i - 1] === me) input = forwards[i - 1].output;
      else input = await waited(hand.receiveUp(i - 1, shapes[i - 1]));
      const f = net.modules[i].forward(input, ctx);
      forwards[i] = f;
      if (i < n - 1) {
        if (owner[i + 1] !== me) hand.sendUp(i, f.output);
        await this.learnCarried(i, ctx, result); // M_i learns from the previous step's δ_i before it predicts again
        predictions[i] = net.synthesizers[i].predict(f.output, y, ctx);
      } else {
        lossForward = this.trainer.loss.forward(f.output, y, ctx);
      }
    }

    // Backward phase, from the top (host order N..1, as on one process).
    // δ_i, sent down by module i+1 (or computed here); none when module i+1 did not update.
    // Asked for at module i's turn (NCCL receives in this order; docs/distributed.md).
    const deltas: (Promise<Tensor> | undefined)[] = [];
    for (const i of [...this.ownModules].reverse()) {
      if (i < n - 1 && owner[i + 1] !== me && updated[i + 1]) deltas[i] = hand.receiveDown(i, shapes[i]);
      const delta = deltas[i];
      let g: Tensor | undefined;
      if (i === n - 1) {
        g = lossForward!.backward(ctx)!;
      } else if (!updated[i]) {
        g = undefined; // (one process mixes ĝ_i and δ_i here all the same, and never uses the mix)
      } else if (lambda > 0 && delta) {
        const d = await waited(delta);
        g = lambda === 1 ? d : mix(predictions[i].gradient, d, lambda, ctx);
      } else {
        g = predictions[i].gradient;
      }
      if (updated[i]) {
        const down = forwards[i].backward(g!, ctx, i > 0);
        this.strategy.optimizers[i].step(net.modules[i].parameters(), stream);
        if (i > 0) {
          if (owner[i - 1] === me) deltas[i - 1] = Promise.resolve(down!);
          else hand.sendDown(i - 1, down!);
        }
      }
      if (i < n - 1 && this.depth > 0) {
        // Pipelined: M_i regresses onto δ_i of step t - depth now (its weights moved since: it
        // predicts again), as DecoupledTraining.scheduleLearn does; this rank waits for the rank
        // above to have finished step t - depth only. Due regressions run at every step, also
        // when module i+1 did not update in this one (no δ_i of step t to queue).
        const q = this.queued[i];
        if (delta) q.push({ step: t, prediction: predictions[i], delta });
        while (q.length && q[0].step <= t - this.depth) {
          const due = q.shift()!;
          this.keepLoss(this.synthLoss, i, due.prediction.learn(await waited(due.delta), ctx, due.step < t), ctx);
        }
      } else if (i < n - 1 && delta) {
        // δ_i from this rank, or already here (λ > 0): M_i learns now; from another rank: carried
        // into the next step, so that this rank goes on without waiting for the rank above.
        if (owner[i + 1] === me || lambda > 0) this.keepLoss(this.synthLoss, i, predictions[i].learn(await waited(delta), ctx), ctx);
        else this.carried[i] = { prediction: predictions[i], delta };
      }
    }
    return this.endStep(t, sends, lossForward);
  }

  /** What every step ends with, after its work was enqueued; the loss on the last module's rank. */
  private async endStep(t: number, sends: Promise<void>[], lossForward: LossForward | undefined): Promise<number | undefined> {
    const stream = this.trainer.stream;
    const hand = this.hand;
    // The previous step's sends, and this rank's stream (the loss read waits for it): then
    // the previous step's tensors are free (its carried regressions were enqueued this step).
    await Promise.all(this.sends);
    this.sends = sends;
    await hand.endStep();
    const loss = lossForward ? (await hand.watch(lossForward.loss.readFloat32(stream), `the loss of step ${t + 1}`))[0] : undefined;
    if (!lossForward) await hand.watch(stream.synchronize(), `the end of step ${t + 1}`);
    else this.sends.push(...this.tickIdle()); // (on the last module's rank) awaited at the next step's end
    // Pipelined: the last `depth` steps' tensors wait for their regressions.
    while (this.arenas.length > Math.max(1, this.depth)) this.arenas.shift()!.dispose();
    return loss;
  }

  /**
   * The complete unlock's work in step t on this rank, module by module as
   * DecoupledTraining.unlockedStep enqueues it: module i > 0 runs on Î_i = I_i(x), so its
   * forward, ĝ_i (the loss's true gradient on the last module), backward and update wait for no
   * other rank; h_i goes up only as I_{i+1}'s regression target, and δ_{i-1} down as M_{i-1}'s.
   * A target computed on this rank is regressed onto in this step; one from another rank is
   * carried into step t+1 and awaited just before the model that regresses onto it predicts
   * again (I_i before its prediction from x, M_i before ĝ_i). Each model regresses before it
   * predicts again, onto the same target with the same weights as on one process, so the run
   * is the one-process run's bit for bit; a rank runs at most one step ahead of its neighbours.
   */
  private async unlockedStep(
    x: Tensor,
    y: Tensor,
    updated: boolean[],
    shapes: number[][],
    ctx: StepContext,
    result: DistributedFitResult,
  ): Promise<LossForward | undefined> {
    const net = this.network;
    const n = net.modules.length;
    const owner = this.placement;
    const me = this.rank;
    const forwards: Forwarded[] = [];
    const inputs: InputPrediction[] = [];
    const predictions: Prediction[] = [];
    const deltas: Tensor[] = []; // δ_i computed on this rank
    let lossForward: LossForward | undefined;
    for (const i of this.ownModules) {
      if (i > 0) {
        await this.learnCarriedInput(i, ctx, result); // I_i learns from the previous step's h_{i-1} before it predicts again
        inputs[i] = net.inputModels[i - 1].predict(x, ctx);
      }
      const f = net.modules[i].forward(i > 0 ? inputs[i].input : x, ctx);
      forwards[i] = f;
      let g: Tensor;
      if (i < n - 1) {
        if (owner[i + 1] !== me) this.hand.sendUp(i, f.output);
        await this.learnCarried(i, ctx, result);
        predictions[i] = net.synthesizers[i].predict(f.output, y, ctx);
        g = predictions[i].gradient;
      } else {
        lossForward = this.trainer.loss.forward(f.output, y, ctx);
        g = lossForward.backward(ctx)!;
      }
      if (updated[i]) {
        const down = f.backward(g, ctx, i > 0);
        this.strategy.optimizers[i].step(net.modules[i].parameters(), ctx.stream);
        if (i > 0 && owner[i - 1] === me) deltas[i - 1] = down!;
        else if (i > 0) this.hand.sendDown(i - 1, down!);
      }
    }
    // The regressions, onto this step's targets: I_i onto h_{i-1}, M_i onto δ_i (none when module i+1 did not update).
    const received = (p: Promise<Tensor>) => {
      p.catch(() => undefined); // awaited in the next step
      return p;
    };
    for (const i of this.ownModules) {
      if (i > 0 && owner[i - 1] === me) this.keepLoss(this.inputLoss, i, inputs[i].learn(forwards[i - 1].output, ctx), ctx);
      else if (i > 0) this.carriedInputs[i] = { prediction: inputs[i], target: received(this.hand.receiveUp(i - 1, shapes[i - 1])) };
      if (i === n - 1 || !updated[i + 1]) continue;
      if (owner[i + 1] === me) this.keepLoss(this.synthLoss, i, predictions[i].learn(deltas[i], ctx), ctx);
      else this.carried[i] = { prediction: predictions[i], delta: received(this.hand.receiveDown(i, shapes[i])) };
    }
    // (NCCL) this step's h and δ, in one group per rank: after all of the step's work, before any wait.
    this.hand.exchange();
    return lossForward;
  }

  /** I_i's regression carried from the previous step (the complete unlock), once its h_{i-1} is here. */
  private async learnCarriedInput(i: number, ctx: StepContext, result: DistributedFitResult): Promise<void> {
    const c = this.carriedInputs[i];
    if (!c) return;
    this.carriedInputs[i] = undefined;
    this.keepLoss(this.inputLoss, i, c.prediction.learn(await this.waited(c.target, result), ctx), ctx);
  }

  /** M_i's regression carried from the previous step, once its δ_i is here. */
  private async learnCarried(i: number, ctx: StepContext, result: DistributedFitResult): Promise<void> {
    const c = this.carried[i];
    if (!c) return;
    this.carried[i] = undefined;
    this.keepLoss(this.synthLoss, i, c.prediction.learn(await this.waited(c.delta, result), ctx), ctx);
  }

  /**
   * With diagnostics: a regression's loss into the module's tensor of its own (the step's arena
   * may be gone before a probe reads it), as DecoupledTraining keeps them.
   */
  private keepLoss(losses: (Tensor | undefined)[], i: number, loss: Tensor, ctx: StepContext): void {
    const into = losses[i];
    if (into) ops.copy(ctx, loss, into);
  }

  /** fit's `diagnoseEvery`: each synthesizer on the probe batch, on every rank (./diagnose.ts). */
  private async diagnose(probe: Batch, rows: number, result: DistributedFitResult): Promise<ModuleDiagnostics[]> {
    // The regressions carried into the next step belong to this one: the probe sees M_i as one process does.
    await this.learnAllCarried(result);
    return probeOverRanks(
      {
        network: this.network,
        placement: this.placement,
        transport: this.transport,
        device: this.trainer.device,
        stream: this.trainer.stream,
        loss: this.trainer.loss,
        tagBase: this.network.modules.length * KINDS + PROBE_TAGS,
        synthLoss: this.synthLoss,
        inputLoss: this.inputLoss,
        allGather: (value, what) => this.allGather(value, what, result),
      },
      probe,
      rows,
    );
  }

  /** On the last module's rank: a tick to every rank that runs no module (idleRanks), sent. */
  private tickIdle(): Promise<void>[] {
    const tag = this.network.modules.length * KINDS + IDLE_TICK;
    return this.idleRanks.map((r) => {
      const sent = this.transport.send(Int32Array.of(1), r, tag);
      sent.catch(() => undefined); // awaited with the step's (or the batch's) other sends
      return sent;
    });
  }

  /** On a rank that runs no module: the last module's rank's tick after `what` (tickIdle). */
  private async idleTick(what: string): Promise<void> {
    const last = this.placement[this.placement.length - 1];
    const tag = this.network.modules.length * KINDS + IDLE_TICK;
    await this.transport.receive(new Int32Array(1), last, tag, `the last module's rank's tick after ${what}`);
  }

  /** `p`, counting the time spent waiting for it as waiting for other ranks. */
  private async waited<T>(p: Promise<T>, result: DistributedFitResult): Promise<T> {
    const from = Date.now();
    try {
      return await p;
    } finally {
      result.waitSeconds += (Date.now() - from) / 1000;
    }
  }

  /** The state (weights, BatchNorm's running statistics) of the modules and synthesizers this rank runs, by module. */
  ownState(): { module: number; tensors: Tensor[] }[] {
    return this.ownModules.map((i) => ({ module: i, tensors: moduleState(this.network, i) }));
  }

  dispose(): void {
    this.trainer.dispose();
  }
}

/**
 * Module i's state tensors (weights and buffers), then its synthesizer's (none for the last
 * module), then, with the complete unlock, its input model's (none for module 1).
 */
export function moduleState(network: DecoupledNetwork, i: number): Tensor[] {
  return [
    ...network.modules[i].stateTensors(),
    ...(i < network.synthesizers.length ? network.synthesizers[i].network.stateTensors() : []),
    ...(i > 0 && network.inputModels.length > 0 ? network.inputModels[i - 1].network.stateTensors() : []),
  ];
}

/**
 * fit's `signal` over ranks. After every step each rank sends every other whether its signal is
 * aborted, and reads the votes of `lag` steps earlier: the ranks drift apart by fewer steps
 * than that (a rank waits for its neighbours' hand-offs of the previous step), so reading them
 * rarely waits. Every rank reads the same votes, so every rank decides to stop after the same
 * step: the first step t whose votes of step t - lag include an aborted signal. (`lag`: the
 * ranks, plus the pipelined schedule's depth, plus one.)
 */
class StopVotes {
  private readonly others: number[];
  /** per step not read yet: whether any rank voted to stop, and this rank's sends of its vote */
  private pending: { stop: Promise<boolean>; sent: Promise<void[]> }[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly tag: number,
    private readonly signal: AbortSignal,
    private readonly lag: number,
  ) {
    this.others = [...Array(transport.size).keys()].filter((r) => r !== transport.rank);
  }

  /** Votes for step `step` (just done) and says whether every rank stops after it. */
  async after(step: number): Promise<boolean> {
    const mine = this.signal.aborted;
    const sent = Promise.all(this.others.map((r) => this.transport.send(Int32Array.of(mine ? 1 : 0), r, this.tag)));
    const stop = Promise.all(
      this.others.map((r) => this.transport.receive(new Int32Array(1), r, this.tag, `rank ${r}'s vote on stopping after step ${step}`)),
    ).then((votes) => mine || votes.some(([v]) => v === 1));
    sent.catch(() => undefined); // both read `lag` steps later, or in finish()
    stop.catch(() => undefined);
    this.pending.push({ stop, sent });
    if (this.pending.length <= this.lag) return false;
    const due = this.pending.shift()!;
    await due.sent;
    return due.stop;
  }

  /** The votes not read yet (every rank sent one for each step it ran), and their sends. */
  async finish(): Promise<void> {
    for (const { stop, sent } of this.pending.splice(0)) await Promise.all([stop, sent]);
  }
}

/** What identifies a Dataset's contents: its rows and a SHA-256 of its shape, inputs and targets (bytes as stored). */
function dataDigest(data: Dataset): { rows: number; sha256: string } {
  const bytes = (a: Float32Array | Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const hash = createHash('sha256');
  hash.update(JSON.stringify([data.task, data.count, data.features, data.outputs]));
  hash.update(bytes(data.inputs));
  hash.update(bytes(data.task === 'classification' ? data.labels : data.values));
  return { rows: data.count, sha256: hash.digest('hex') };
}

/** (1-λ)·ĝ + λ·δ into a new tensor, as DecoupledTraining mixes them. */
function mix(synthetic: Tensor, delta: Tensor, lambda: number, ctx: StepContext): Tensor {
  const g = ops.clone(ctx, synthetic);
  ops.axpby(ctx, lambda, delta, 1 - lambda, g);
  return g;
}

/** fit's checkpoint option, checked. */
function checkpointOption(c: unknown): { dir: string; every: number; config?: Record<string, unknown> } {
  const o = c as { dir?: unknown; every?: unknown; config?: unknown };
  if (!o || typeof o !== 'object' || typeof o.dir !== 'string' || o.dir === '')
    throw typeError(`fit: 'checkpoint' must be { dir: string, every: number }, got ${describe(c)}`);
  checkOptions('fit', o, ['dir', 'every', 'config'], 'checkpoint');
  const every = positiveInt('fit', 'checkpoint.every', o.every);
  if (o.config !== undefined && (!o.config || typeof o.config !== 'object' || Array.isArray(o.config)))
    throw typeError(`fit: 'checkpoint.config' must be an object of JSON values, got ${describe(o.config)}`);
  return {
    dir: o.dir,
    every,
    config: o.config === undefined ? undefined : (JSON.parse(JSON.stringify(o.config)) as Record<string, unknown>),
  };
}

/**
 * Adds a batch's loss and correct rows to the running sums, from its outputs, in float64 and
 * in the order Trainer.evaluate adds them (so the totals are the same bits): log-softmax
 * cross-entropy and the arg-max for classes, the squared error for regression.
 */
function score(
  sums: { loss: number; correct: number },
  outputs: Float32Array,
  targets: Payload,
  rows: number,
  classification: boolean,
): { loss: number; correct: number } {
  let { loss, correct } = sums;
  if (!classification) {
    for (let k = 0; k < outputs.length; k++) loss += (outputs[k] - targets[k]) ** 2;
    return { loss, correct };
  }
  const classes = outputs.length / rows;
  for (let r = 0; r < rows; r++) {
    const row = outputs.subarray(r * classes, (r + 1) * classes);
    const label = targets[r];
    let best = 0;
    for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
    if (best === label) correct++;
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(row[c] - row[best]);
    loss += -(row[label] - row[best] - Math.log(sum));
  }
  return { loss, correct };
}
