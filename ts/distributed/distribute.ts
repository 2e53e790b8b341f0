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
// Trainer.fit bit for bit (test/distributed.test.ts checks it).
import { checkOptions, describe, positiveInt } from '../check';
import { Dataset } from '../data/dataset';
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
import { Trainer } from '../train/trainer';
import { Prediction } from '../dni/synthesizer';
import { error, rangeError, typeError } from '../errors';
import type { Payload, Transport } from './mpi';

export interface DistributeOptions {
  /** the rank of each module, e.g. [0, 1, 2]; every rank of the transport must be in [0, size) */
  placement: number[];
  /** the ranks' transport: mpi() */
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
  onStep?: (m: { step: number; epoch: number; loss: number }) => void | Promise<void>;
}

export interface DistributedFitResult {
  steps: number;
  /** each step's loss, on the rank of the last module; empty on the others */
  losses: number[];
  seconds: number;
  /** host time this rank spent waiting for hand-offs from other ranks (receives) */
  waitSeconds: number;
}

/** Message kinds; a message's tag is cut * KINDS + kind (MPI keeps each pair's messages of a tag in order). */
const H = 0;
const DELTA = 1;
const LABELS = 2;
const KINDS = 3;

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
  /** the arenas of steps whose work may still run or be carried (the latest two) */
  private arenas: Arena[] = [];
  /** the previous step's sends, awaited at the end of the next step (or of fit) */
  private sends: Promise<void>[] = [];

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
    const { schedule, unlock } = network.config;
    // Not done yet over ranks (docs/distributed.md): refused, not run differently from one process.
    if (schedule.kind !== 'lockstep')
      throw rangeError(`distribute: only the lockstep schedule runs over ranks so far, got 'schedule.kind' '${schedule.kind}'`);
    if (schedule.pUpdate !== 1)
      throw rangeError(`distribute: stochastic updates ('schedule.pUpdate' < 1) do not run over ranks yet, got ${schedule.pUpdate}`);
    if (unlock) throw rangeError("distribute: the complete unlock ('unlock') does not run over ranks yet");
    this.transport = t;
    this.rank = t.rank;
    this.placement = [...p];
    this.ownModules = p.flatMap((r, i) => (r === t.rank ? [i] : []));
    this.seed = options.seed ?? 0;
    this.trainer = new Trainer(network, { optimizer: options.optimizer, loss: options.loss, seed: options.seed, device: options.device });
    this.strategy = this.trainer.strategy as DecoupledTraining;
  }

  /**
   * Trains on `data` with the lockstep schedule; every rank calls it with the same data and
   * options (the rank of module 1 reads the rows; the others use the data's size for the
   * batches). Resolves when this rank's part is done; rejects when a hand-off fails or waits
   * past the transport's timeout, naming the rank it waited for.
   */
  async fit(data: Dataset, options: DistributedFitOptions): Promise<DistributedFitResult> {
    if (this.busy) throw error('ERR_SYNTHGRAD_STATE', 'fit: this distributed network is already running fit(); await it first');
    if (!(data instanceof Dataset)) throw typeError(`fit: 'data' must be a Dataset, got ${describe(data)}`);
    if (!options || typeof options !== 'object') throw typeError('fit: expects options { epochs or steps, ... }');
    checkOptions('fit', options, ['epochs', 'steps', 'batchSize', 'shuffle', 'onStep']);
    const batchSize = positiveInt('fit', 'batchSize', options.batchSize ?? 256);
    if (options.epochs === undefined && options.steps === undefined) throw rangeError("fit: give 'epochs' or 'steps'");
    const maxEpochs = options.epochs === undefined ? Infinity : positiveInt('fit', 'epochs', options.epochs);
    const maxSteps = options.steps === undefined ? Infinity : positiveInt('fit', 'steps', options.steps);
    if (options.onStep !== undefined && typeof options.onStep !== 'function')
      throw typeError(`fit: 'onStep' must be a function, got ${describe(options.onStep)}`);
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
    if (options.shuffle !== undefined && typeof options.shuffle !== 'boolean')
      throw typeError(`fit: 'shuffle' must be a boolean, got ${describe(options.shuffle)}`);

    this.busy = true;
    const started = Date.now();
    const result: DistributedFitResult = { steps: 0, losses: [], seconds: 0, waitSeconds: 0 };
    const stream = this.trainer.stream;
    let failed = true;
    try {
      for (let epoch = 1; epoch <= maxEpochs && result.steps < maxSteps; epoch++) {
        const order = data.order(shuffle);
        for (let start = 0; start < data.count && result.steps < maxSteps; start += batchSize) {
          const end = Math.min(data.count, start + batchSize);
          if (end - start < minRows) break; // Trainer.fit drops a tail too short for BatchNorm the same way
          const loss = await this.step(data, order, start, end, result);
          result.steps++;
          if (loss !== undefined) {
            result.losses.push(loss);
            if (options.onStep) await options.onStep({ step: result.steps, epoch, loss });
          }
        }
      }
      // The regressions still carried, then every send and this rank's stream.
      const ctx: StepContext = { device: this.trainer.device, stream, training: true, arena: this.arenas[this.arenas.length - 1] };
      for (let i = 0; i < this.carried.length; i++) await this.learnCarried(i, ctx, result);
      await Promise.all(this.sends);
      await stream.synchronize();
      failed = false;
    } finally {
      // After a failure the stream may still run the step's ops: let it finish before freeing their tensors.
      if (failed) await stream.synchronize().catch(() => undefined);
      for (const a of this.arenas) a.dispose();
      this.arenas = [];
      this.carried = [];
      this.sends = [];
      this.busy = false;
    }
    result.seconds = (Date.now() - started) / 1000;
    return result;
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
    if (this.ownModules.length === 0) return undefined;
    const warm = t < net.config.warmupSteps;
    const lambda = warm ? 1 : net.config.lambda;
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
    const sendTensor = (x: Tensor, to: number, tag: number) =>
      started(x.readFloat32(stream).then((values) => this.transport.send(values, to, tag)));
    const receiveTensor = (shape: number[], from: number, tag: number, what: string): Promise<Tensor> =>
      this.transport
        .receive(new Float32Array(shape.reduce((a, b) => a * b, 1)), from, tag, `${what} of step ${t + 1}`)
        .then((values) => Tensor.fromArray(values, shape, { device, arena }));
    // The batch: rows on module 1's rank; labels sent to the ranks that need them.
    const classification = data.task === 'classification';
    const needLabels = new Set(owner.filter((r, i) => i === n - 1 || net.synthesizers[i].conditioned));
    let x: Tensor | undefined;
    let labels: Payload | undefined;
    if (owner[0] === me) {
      const batch = data.gather(order, start, end);
      x = Tensor.fromArray(batch.inputs, [rows, ...net.input], { device, arena });
      labels = batch.targets;
      for (const r of needLabels) if (r !== me) started(this.transport.send(labels, r, LABELS));
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
    const forwards: Forwarded[] = [];
    const predictions: Prediction[] = [];
    let lossForward: LossForward | undefined;
    for (const i of this.ownModules) {
      let input: Tensor;
      if (i === 0) input = x!;
      else if (owner[i - 1] === me) input = forwards[i - 1].output;
      else input = await waited(receiveTensor(shapes[i - 1], owner[i - 1], (i - 1) * KINDS + H, `h_${i}`));
      const f = net.modules[i].forward(input, ctx);
      forwards[i] = f;
      if (i < n - 1) {
        if (owner[i + 1] !== me) sendTensor(f.output, owner[i + 1], i * KINDS + H);
        await this.learnCarried(i, ctx, result); // M_i learns from the previous step's δ_i before it predicts again
        predictions[i] = net.synthesizers[i].predict(f.output, y, ctx);
      } else {
        lossForward = this.trainer.loss.forward(f.output, y, ctx);
      }
    }

    // Backward phase, from the top (host order N..1, as on one process).
    const deltas: Promise<Tensor>[] = []; // δ_i, sent down by module i+1 (or computed here)
    for (const i of this.ownModules)
      if (i < n - 1 && owner[i + 1] !== me) {
        deltas[i] = receiveTensor(shapes[i], owner[i + 1], i * KINDS + DELTA, `δ_${i + 1}`);
        deltas[i].catch(() => undefined); // awaited below
      }
    for (const i of [...this.ownModules].reverse()) {
      let g: Tensor;
      if (i === n - 1) {
        g = lossForward!.backward(ctx)!;
      } else if (lambda > 0) {
        const delta = await waited(deltas[i]);
        g = lambda === 1 ? delta : mix(predictions[i].gradient, delta, lambda, ctx);
      } else {
        g = predictions[i].gradient;
      }
      const down = forwards[i].backward(g, ctx, i > 0);
      this.strategy.optimizers[i].step(net.modules[i].parameters(), stream);
      if (i > 0) {
        if (owner[i - 1] === me) deltas[i - 1] = Promise.resolve(down!);
        else sendTensor(down!, owner[i - 1], (i - 1) * KINDS + DELTA);
      }
      if (i < n - 1) {
        // δ_i from this rank, or already here (λ > 0): M_i learns now; from another rank: carried
        // into the next step, so that this rank goes on without waiting for the rank above.
        if (owner[i + 1] === me || lambda > 0) predictions[i].learn(await waited(deltas[i]), ctx);
        else this.carried[i] = { prediction: predictions[i], delta: deltas[i] };
      }
    }
    // The previous step's sends, and this rank's stream (the loss read waits for it): then
    // the previous step's tensors are free (its carried regressions were enqueued this step).
    await Promise.all(this.sends);
    this.sends = sends;
    const loss = lossForward ? (await lossForward.loss.readFloat32(stream))[0] : undefined;
    if (!lossForward) await stream.synchronize();
    while (this.arenas.length > 1) this.arenas.shift()!.dispose();
    return loss;
  }

  /** M_i's regression carried from the previous step, once its δ_i is here. */
  private async learnCarried(i: number, ctx: StepContext, result: DistributedFitResult): Promise<void> {
    const c = this.carried[i];
    if (!c) return;
    this.carried[i] = undefined;
    c.prediction.learn(await this.waited(c.delta, result), ctx);
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

/** Module i's state tensors (weights and buffers), then its synthesizer's (none for the last module). */
export function moduleState(network: DecoupledNetwork, i: number): Tensor[] {
  return [...network.modules[i].stateTensors(), ...(i < network.synthesizers.length ? network.synthesizers[i].network.stateTensors() : [])];
}

/** (1-λ)·ĝ + λ·δ into a new tensor, as DecoupledTraining mixes them. */
function mix(synthetic: Tensor, delta: Tensor, lambda: number, ctx: StepContext): Tensor {
  const g = ops.clone(ctx, synthetic);
  ops.axpby(ctx, lambda, delta, 1 - lambda, g);
  return g;
}
