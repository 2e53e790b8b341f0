// The trainer: seeded initialisation and shuffling, mini-batch training with callbacks,
// checkpoints (save, load, and fit runs that resume where they stopped, or stop early on an
// AbortSignal and save), run logs (fit's logDir, ./runlog.ts), and evaluation. It never blocks the event loop: each step is enqueued
// on the trainer's stream and the host awaits the previous step's loss (a Promise) while the
// stream computes.
//
// How a step is carried out is a training strategy (./strategy.ts): plain backpropagation
// (./backprop.ts) unless the model brings its own (a decoupled network). The captured-graph
// step is in ./captured-step.ts; the run's position saved with checkpoints, in ./position.ts.
//
// Everything fit() and evaluate() can check is checked before the first step: the options
// (unknown keys included), the data against the model and the loss (its shape through the
// model's outputShape chain; classes against
// the model's outputs, or regression values of its output width), and rows enough for a step. A model belongs to one
// trainer at a time: a second would re-initialise the weights the first has trained. Batches
// go to a model that takes images as [rows, ...dataset.shape], to one that takes rows as
// [rows, features] (exampleShape).
import { booleanOption, checkOptions, describe, positiveInt } from '../check';
import { Batch, Dataset } from '../data/dataset';
import { Device } from '../device';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import { Loss, LossName, lossFrom } from '../nn/losses';
import { BatchNorm2d } from '../nn/conv';
import { BatchNorm1d, Sequential } from '../nn/layers';
import { Module, StepContext, modulesOf } from '../nn/module';
import { Optimizer, optimizerFor } from '../optim/optimizers';
import { Random } from '../random';
import { Event, Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { Backpropagation } from './backprop';
import { CapturedStep } from './captured-step';
import { LoadedCheckpoint, NamedTensor, readCheckpoint, restoreTensors, writeCheckpoint } from './checkpoint';
import { inferenceModule, predict, Predictions } from './inference';
import { FitProgress, TrainerRecord, progressOf, readIfExists, resumeDifferences } from './position';
import { FitLog, LogDirOption } from './runlog';
import { TrainingStrategy, hasStrategy } from './strategy';
import { error, rangeError, typeError } from '../errors';

export interface TrainerOptions {
  /** default: Device.best() */
  device?: Device;
  /**
   * An optimizer, or a factory. Decoupled networks call it once per module with the module's
   * index (0 = the module next to the input), so modules may differ; backprop calls it with 0.
   */
  optimizer: Optimizer | ((module: number) => Optimizer);
  /** default: 'softmax-cross-entropy' */
  loss?: LossName | Loss;
  /** seeds the initial weights and the shuffling; default 0 */
  seed?: number;
}

export interface StepMetrics {
  /** 1-based count of steps taken in this run (a resumed run goes on counting) */
  step: number;
  /** 1-based epoch */
  epoch: number;
  loss: number;
  lr: number;
  /** per decoupled module, every `diagnoseEvery` steps */
  diagnostics?: ModuleDiagnostics[];
}

export interface EpochMetrics {
  epoch: number;
  steps: number;
  /** mean training loss over the epoch's steps */
  loss: number;
  seconds: number;
  samplesPerSecond: number;
  validation?: Evaluation;
}

export interface Evaluation {
  /** the mean loss: cross-entropy for classification data, the mean squared error for regression */
  loss: number;
  /** the fraction of rows classified right; classification data only */
  accuracy?: number;
  count: number;
}

export interface FitOptions {
  /** stop after this many epochs ... */
  epochs?: number;
  /** ... or this many steps, whichever comes first (at least one of the two) */
  steps?: number;
  /** default 256; at least 2 where the model has a BatchNorm1d (then a 1-row epoch tail is dropped) */
  batchSize?: number;
  /** shuffle the rows every epoch (seeded); default true */
  shuffle?: boolean;
  /** evaluated at the end of every epoch */
  validation?: Dataset;
  /** called after every `logEvery` steps (default 1) */
  onStep?: (m: StepMetrics) => void | Promise<void>;
  logEvery?: number;
  /**
   * For decoupled networks: every this many steps, measure each synthesizer on a probe batch
   * (the first batch of `validation`, else of `data`) and pass it to onStep as `diagnostics`.
   */
  diagnoseEvery?: number;
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  /**
   * Capture the training step into a graph once and replay it (a CUDA graph on a GPU, a
   * recorded task list on the CPU): same results, less per-step overhead. The first step and
   * batches of another size (an epoch's last) run uncaptured. Backprop, and decoupled
   * networks with the lockstep schedule and p = 1; fit throws for the others. Default false.
   */
  graph?: boolean;
  /**
   * Save the run to `path` every `every` steps and when fit ends; when `path` exists as fit
   * starts, resume from it: the weights, optimizer state, random generators and position in
   * the data are restored, so the run continues exactly (bit for bit) as if it had never
   * stopped. `steps` and `epochs` count from the run's start, so a finished run given more
   * of them continues. Needs the same data, batch size and `config`; the pipelined decoupled
   * schedule cannot be checkpointed. `config` (JSON: whatever else the run was built from,
   * e.g. command-line options) is saved with the run, and a resume whose config differs is
   * refused, naming each key that differs. Files are replaced atomically and durably and
   * verified on load (see checkpoint.ts).
   */
  checkpoint?: { path: string; every: number; config?: Record<string, unknown> };
  /**
   * Stops the run early when aborted: no step starts after that, the steps in flight finish,
   * the checkpoint (if any) is saved, the interrupted epoch is neither validated nor reported,
   * and fit resolves with `stopped: true`.
   */
  signal?: AbortSignal;

  /**
   * Write a run log into this directory: config.json, the metrics of every step onStep sees
   * (every `logEvery` steps), of every epoch and of every diagnostics step, as JSON Lines, CSV
   * and TensorBoard event files (see ./runlog.ts); `{ dir, config }` adds `config` to
   * config.json. A directory that already holds a run log is an error, unless this fit resumes
   * from `checkpoint`: then the log goes on.
   */
  logDir?: LogDirOption;
}

export interface FitResult {
  /** steps taken in the run, counting those before a resume */
  steps: number;
  /** the step this fit() resumed after (from options.checkpoint), if it did */
  resumedFrom?: number;
  /** true when options.signal stopped the run before its end */
  stopped?: boolean;
  epochs: EpochMetrics[];
  seconds: number;
}

/** A batch's targets on the device: int32 labels [rows], or float32 values [rows, width]. */
function targetShape(targets: Int32Array | Float32Array, rows: number): number[] {
  return targets instanceof Int32Array ? [rows] : [rows, targets.length / rows];
}

const FIT_OPTIONS = [
  'epochs',
  'steps',
  'batchSize',
  'shuffle',
  'validation',
  'onStep',
  'logEvery',
  'diagnoseEvery',
  'onEpoch',
  'graph',
  'checkpoint',
  'signal',
  'logDir',
] as const;

/** Each module bound to a trainer, and to which (see the Trainer constructor). */
const boundTo = new WeakMap<Module, Trainer>();

function checkpointOption(c: unknown): { path: string; every: number; config: Record<string, unknown> } {
  const o = c as { path?: unknown; every?: unknown; config?: unknown } | null;
  if (!o || typeof o !== 'object' || typeof o.path !== 'string' || o.path === '')
    throw typeError(`fit: 'checkpoint' must be { path: string, every: number }, got ${describe(c)}`);
  checkOptions('fit', o, ['path', 'every', 'config'], 'checkpoint');
  const every = positiveInt('fit', 'checkpoint.every', o.every);
  if (o.config !== undefined && (o.config === null || typeof o.config !== 'object' || Array.isArray(o.config)))
    throw typeError(`fit: 'checkpoint.config' must be an object of JSON values, got ${describe(o.config)}`);
  let config: Record<string, unknown>;
  try {
    // As it will read back from the file (undefined values dropped), so that comparisons are like for like.
    config = JSON.parse(JSON.stringify(o.config ?? {})) as Record<string, unknown>;
  } catch (e) {
    throw typeError(`fit: 'checkpoint.config' must be an object of JSON values: ${(e as Error).message}`);
  }
  return { path: o.path, every, config };
}

export class Trainer {
  readonly device: Device;
  readonly stream: Stream;
  /**
   * Uncaptured steps (and diagnostics probes) write their batch here (stream-ordered, the host does not wait), then
   * `stream` waits for `batchWritten`; with a stream of its own the write of a batch does not
   * wait for the previous step's work on other streams (decoupled modules on streams of their own).
   * Made at the first such step (a CPU stream is a thread).
   */
  private uploads?: { stream: Stream; batchWritten: Event };
  readonly loss: Loss;
  private readonly rng: Random;
  /** how each step is carried out (backprop, or a decoupled network's schedule) */
  readonly strategy: TrainingStrategy;
  private busy = false;
  /** the first BatchNorm1d of the model: training steps then need 2 rows (see minRowsFor) */
  private readonly batchNorm?: Module;

  constructor(
    readonly model: Module,
    options: TrainerOptions,
  ) {
    if (!(model instanceof Module)) throw typeError(`Trainer: 'model' must be a Module, got ${describe(model)}`);
    if (!options || typeof options !== 'object') throw typeError('Trainer: expects options { optimizer, ... }');
    checkOptions('Trainer', options, ['device', 'optimizer', 'loss', 'seed']);
    // Refused rather than re-initialised: initialize() below would overwrite trained weights.
    const parts = modulesOf(model);
    const bound = parts.find((m) => boundTo.has(m));
    if (bound)
      throw error(
        'ERR_SYNTHGRAD_STATE',
        `Trainer: ${bound === model ? `the model ${model.name}` : `${bound.name} (part of the model)`} already belongs ` +
          'to another Trainer, and a second would re-initialise its weights: build a new model, or dispose() of that trainer first ' +
          '(which frees the weights)',
      );
    this.batchNorm = parts.find((m) => m instanceof BatchNorm1d);
    this.device = options.device ?? Device.best();
    if (!(this.device instanceof Device)) throw typeError(`Trainer: 'device' must be a Device, got ${describe(options.device)}`);
    const opt = options.optimizer;
    if (!(opt instanceof Optimizer) && typeof opt !== 'function')
      throw typeError(`Trainer: 'optimizer' must be an Optimizer or a function returning one, got ${describe(opt)}`);
    const makeOptimizer = (module: number) => (opt instanceof Optimizer ? opt : optimizerFor('Trainer', opt, module));
    this.loss = lossFrom(options.loss ?? 'softmax-cross-entropy');
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed))
      throw typeError(`Trainer: 'seed' must be an integer, got ${typeof seed === 'number' ? seed : describe(seed)}`);
    this.rng = new Random(seed);
    this.stream = new Stream(this.device);
    model.initialize(this.device, this.rng.fork());
    this.strategy = hasStrategy(model)
      ? model.trainingStrategy({ loss: this.loss, optimizer: makeOptimizer })
      : new Backpropagation(model, this.loss, makeOptimizer(0));
    for (const m of parts) boundTo.set(m, this);
  }

  /** Trains on `data`; resolves when done, rejects on a bad argument or a non-finite loss. */
  async fit(data: Dataset, options: FitOptions): Promise<FitResult> {
    // Two interleaved fits would update the same weights from two step sequences.
    if (this.busy) throw error('ERR_SYNTHGRAD_STATE', 'fit: this trainer is already running fit(); await it first');
    this.busy = true;
    try {
      const log = options && typeof options === 'object' ? FitLog.from(options) : undefined;
      if (!log) return await this.fitUnguarded(data, options);
      const run = {
        model: this.model.name,
        device: this.device.name,
        loss: this.loss.name,
        data: { rows: data?.count, features: data?.features },
      };
      return await log.around(options, run, (o) => this.fitUnguarded(data, o));
    } finally {
      this.busy = false;
    }
  }

  private async fitUnguarded(data: Dataset, options: FitOptions): Promise<FitResult> {
    if (!(data instanceof Dataset)) throw typeError(`fit: 'data' must be a Dataset, got ${describe(data)}`);
    if (!options || typeof options !== 'object') throw typeError('fit: expects options { epochs or steps, ... }');
    checkOptions('fit', options, FIT_OPTIONS);
    const batchSize = positiveInt('fit', 'batchSize', options.batchSize ?? 256);
    const example = this.exampleShape('fit', 'data', data);
    // The fewest rows a step takes; also where a shorter epoch tail is dropped.
    const { rows: minRows, layer: batchNorm } = this.minRowsFor(example);
    // Without these checks a 1-row batch was skipped as too small for BatchNorm, so batches of
    // 1 trained nothing and data of fewer than 2 rows looped over empty epochs forever.
    if (batchSize < minRows)
      throw rangeError(
        `fit: 'batchSize' must be at least ${minRows} for this model, got ${batchSize}: ` +
          `${batchNorm!.name} normalises with batch statistics, which one row does not have`,
      );
    this.checkData('fit', 'data', data);
    if (data.count < minRows)
      throw rangeError(
        `fit: 'data' (${data.name}) has ${data.count} row${data.count === 1 ? '' : 's'}` +
          (batchNorm ? `; training ${batchNorm.name} needs batches of at least ${minRows}` : ': nothing to train on'),
      );
    if (options.validation !== undefined) {
      if (!(options.validation instanceof Dataset))
        throw typeError(`fit: 'validation' must be a Dataset, got ${describe(options.validation)}`);
      this.checkData('fit', 'validation', options.validation);
      if (options.validation.count === 0) throw rangeError(`fit: 'validation' (${options.validation.name}) is empty`);
    }
    for (const key of ['onStep', 'onEpoch'] as const)
      if (options[key] !== undefined && typeof options[key] !== 'function')
        throw typeError(`fit: '${key}' must be a function, got ${describe(options[key])}`);
    if (options.epochs === undefined && options.steps === undefined) throw rangeError("fit: give 'epochs' or 'steps'");
    const maxEpochs = options.epochs === undefined ? Infinity : positiveInt('fit', 'epochs', options.epochs);
    const maxSteps = options.steps === undefined ? Infinity : positiveInt('fit', 'steps', options.steps);
    const logEvery = positiveInt('fit', 'logEvery', options.logEvery ?? 1);
    const diagnoseEvery = options.diagnoseEvery === undefined ? 0 : positiveInt('fit', 'diagnoseEvery', options.diagnoseEvery);
    if (diagnoseEvery && !this.strategy.diagnose)
      throw typeError("fit: 'diagnoseEvery' needs a decoupled network (plain backprop has no synthesizers)");
    const probeData = options.validation ?? data;
    const probeRows = Math.min(batchSize, probeData.count);
    const probe = probeData.gather(probeData.order(), 0, probeRows);
    const probeShape = [probeRows, ...this.exampleShape('fit', 'validation', probeData)];
    if (diagnoseEvery && probeRows < minRows)
      throw rangeError(
        `fit: 'validation' (${probeData.name}) has 1 row; the diagnostics' probe batch needs ${minRows} ` +
          `(${batchNorm!.name} in training mode)`,
      );
    const shuffleRng = booleanOption('fit', 'shuffle', options.shuffle, true) ? this.rng.fork() : undefined;
    const useGraph = booleanOption('fit', 'graph', options.graph, false);
    if (useGraph) {
      const blocker = this.strategy.captureBlocker ? this.strategy.captureBlocker() : 'this training strategy does not support capture';
      if (blocker !== undefined) throw typeError(`fit: 'graph' cannot capture this training step: ${blocker}`);
    }
    let captured: CapturedStep | undefined;
    const checkpoint = options.checkpoint === undefined ? undefined : checkpointOption(options.checkpoint);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw typeError(`fit: 'signal' must be an AbortSignal, got ${describe(signal)}`);
    let resumed: FitProgress | undefined;
    if (checkpoint) {
      this.namedState(); // throws now (before any step) when this strategy cannot be saved
      const saved = await readIfExists(checkpoint.path);
      if (saved) {
        const progress = progressOf(saved);
        if (!progress)
          throw error(
            'ERR_SYNTHGRAD_CHECKPOINT',
            `fit: ${checkpoint.path} was written by save(), not by fit(): it has no position to resume from`,
          );
        const differences = resumeDifferences(progress, checkpoint.config, {
          batchSize,
          rows: data.count,
          shuffle: shuffleRng !== undefined,
        });
        if (differences.length)
          throw error(
            'ERR_SYNTHGRAD_CHECKPOINT',
            `fit: ${checkpoint.path} ${differences.join('; ')}: resume with the same settings, or start a new checkpoint`,
          );
        await this.restore(saved);
        if (progress.shuffle) shuffleRng!.restore(progress.shuffle);
        resumed = progress;
      }
    }
    // Settles the steps in flight first, so that the position's loss sums are complete.
    const save = async (position: () => FitProgress) => {
      while (inFlight.length) await settle();
      await this.writeState(checkpoint!.path, position());
    };

    const started = Date.now();
    const history: EpochMetrics[] = [];
    let step = resumed?.step ?? 0;
    const firstStep = step;
    let positionAt: (() => FitProgress) | undefined; // where the run stands after the latest step
    // Steps in flight: enqueued, their loss not read yet (oldest first).
    const inFlight: {
      loss: Promise<Float32Array | Int32Array>;
      arena: Arena;
      step: number;
      epoch: number;
      lr: number;
      diagnostics?: ModuleDiagnostics[];
    }[] = [];
    const maxInFlight = this.strategy.maxInFlight ?? 1;
    let epochLossSum = 0;
    let epochSteps = 0;

    // Reads the oldest in-flight step's loss, checks it, and reports it.
    const settle = async () => {
      const f = inFlight.shift();
      if (!f) return;
      let value: number;
      try {
        value = (await f.loss)[0];
      } catch (e) {
        throw error('ERR_SYNTHGRAD_TRAINING', `fit: step ${f.step} failed: ${(e as Error).message}`);
      } finally {
        f.arena.dispose();
      }
      if (!Number.isFinite(value))
        throw error(
          'ERR_SYNTHGRAD_TRAINING',
          `fit: the loss became ${value} at step ${f.step} (epoch ${f.epoch}); ` +
            'lower the learning rate or check the inputs for NaN/Infinity',
        );
      epochLossSum += value;
      epochSteps++;
      const diagnostics = f.diagnostics;
      const report = options.onStep && (f.step % logEvery === 0 || diagnostics);
      if (report) await options.onStep!({ step: f.step, epoch: f.epoch, loss: value, lr: f.lr, ...(diagnostics ? { diagnostics } : {}) });
    };

    let stopped = false; // by options.signal
    try {
      for (let epoch = resumed?.epoch ?? 1; epoch <= maxEpochs && step < maxSteps; epoch++) {
        if (signal?.aborted) {
          stopped = true;
          break;
        }
        const epochStart = Date.now();
        const shuffleState = shuffleRng ? shuffleRng.state() : null; // where this epoch's order came from
        const order = data.order(shuffleRng);
        const resuming = resumed !== undefined && epoch === resumed.epoch;
        let samples = resuming ? resumed!.samples : 0;
        epochLossSum = resuming ? resumed!.lossSum : 0;
        epochSteps = resuming ? resumed!.lossSteps : 0;
        // Every epoch takes a step: batchSize and data.count are at least minRows (checked above).
        for (let start = resuming ? resumed!.start : 0; start < data.count && step < maxSteps; start += batchSize) {
          const end = Math.min(data.count, start + batchSize);
          if (end - start < minRows) break; // with BatchNorm (two rows needed), a 1-row tail is dropped
          if (signal?.aborted) {
            stopped = true;
            break;
          }
          const batch = data.gather(order, start, end);
          const arena = new Arena();
          let loss: Promise<Float32Array | Int32Array>;
          const lr = this.currentLr();
          // The first step runs uncaptured: it creates the optimizers' state.
          const replay = useGraph && step > firstStep && end - start === batchSize && (this.strategy.captureReady?.() ?? true);
          try {
            if (replay) {
              captured ??= CapturedStep.capture(
                this.strategy,
                this.device,
                this.stream,
                [batchSize, ...example],
                data.task === 'regression' ? data.outputs : 0,
              );
              loss = captured.run(batch.inputs, batch.targets, this.stream);
            } else {
              // No synchronous upload inside a step: the batch is written in the order of a stream.
              const { x, y, batchWritten } = this.writeBatch(batch, [end - start, ...example], arena);
              const ctx: StepContext = { device: this.device, stream: this.stream, training: true, arena, batchWritten };
              loss = this.strategy.step(x, y, ctx).read(this.stream);
            }
          } catch (e) {
            arena.dispose();
            throw e;
          }
          step++;
          samples += end - start;
          const record: (typeof inFlight)[number] = { loss, arena, step, epoch, lr };
          inFlight.push(record);
          // The probe measures the state this step leaves: it runs before the next step is enqueued
          // (the host waits for this step here, every diagnoseEvery steps only).
          if (diagnoseEvery > 0 && step % diagnoseEvery === 0) record.diagnostics = await this.probe(probe, probeShape);
          while (inFlight.length > maxInFlight) await settle();
          if (checkpoint) {
            const epochOver = data.count - end < minRows;
            const config = checkpoint.config;
            const at = (): FitProgress =>
              epochOver
                ? {
                    step,
                    epoch: epoch + 1,
                    start: 0,
                    shuffle: shuffleRng ? shuffleRng.state() : null,
                    lossSum: 0,
                    lossSteps: 0,
                    samples: 0,
                    batchSize,
                    rows: data.count,
                    config,
                  }
                : {
                    step,
                    epoch,
                    start: end,
                    shuffle: shuffleState,
                    lossSum: epochLossSum,
                    lossSteps: epochSteps,
                    samples,
                    batchSize,
                    rows: data.count,
                    config,
                  };
            positionAt = at;
            if (step % checkpoint.every === 0) await save(at);
          }
        }
        while (inFlight.length) await settle();
        if (stopped) break; // the epoch is not over: a resumed run reports it when it is
        const seconds = (Date.now() - epochStart) / 1000;
        const m: EpochMetrics = {
          epoch,
          steps: epochSteps,
          loss: epochSteps ? epochLossSum / epochSteps : NaN,
          seconds,
          samplesPerSecond: samples / Math.max(seconds, 1e-9),
        };
        if (options.validation) m.validation = await this.evaluate(options.validation);
        history.push(m);
        if (options.onEpoch) await options.onEpoch(m);
      }
      if (checkpoint && positionAt && step % checkpoint.every !== 0) await save(positionAt);
    } finally {
      for (const f of inFlight.splice(0)) {
        await f.loss.catch(() => undefined);
        f.arena.dispose();
      }
      captured?.dispose();
    }
    return {
      steps: step,
      ...(resumed ? { resumedFrom: resumed.step } : {}),
      ...(stopped ? { stopped } : {}),
      epochs: history,
      seconds: (Date.now() - started) / 1000,
    };
  }

  /**
   * Saves the model's weights and the training state (optimizer moments and step counts,
   * random generators) to `path`; load() restores them into a trainer built the same way.
   */
  async save(path: string): Promise<void> {
    if (typeof path !== 'string' || path === '') throw typeError(`save: 'path' must be a file path, got ${describe(path)}`);
    if (this.busy)
      throw error('ERR_SYNTHGRAD_STATE', "save: this trainer is running fit(); use fit's checkpoint option, or await fit first");
    await this.writeState(path, undefined);
  }

  /** Restores what save() (or a fit checkpoint) wrote; the model must be built the same way. */
  async load(path: string): Promise<void> {
    if (typeof path !== 'string' || path === '') throw typeError(`load: 'path' must be a file path, got ${describe(path)}`);
    if (this.busy) throw error('ERR_SYNTHGRAD_STATE', 'load: this trainer is running fit(); await it first');
    await this.restore(await readCheckpoint(path));
  }

  /** Every tensor a checkpoint holds, named (the model's, then the strategy's), and the strategy's host state. */
  private namedState(): { tensors: NamedTensor[]; strategy: unknown } {
    if (!this.strategy.checkpointState) throw error('ERR_SYNTHGRAD_CHECKPOINT', 'checkpoint: this training strategy cannot be saved');
    const model = this.model.stateTensors().map((tensor, i) => ({ name: `model.${i}`, tensor }));
    const { tensors, host } = this.strategy.checkpointState();
    return { tensors: [...model, ...tensors], strategy: host };
  }

  private async writeState(path: string, progress: FitProgress | undefined): Promise<void> {
    const { tensors, strategy } = this.namedState();
    const record: TrainerRecord = { model: this.model.name, rng: this.rng.state(), strategy, ...(progress ? { progress } : {}) };
    await writeCheckpoint(path, tensors, record, this.stream);
  }

  private async restore(saved: LoadedCheckpoint): Promise<void> {
    const record = saved.host as TrainerRecord | null;
    if (!record || typeof record.model !== 'string')
      throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${saved.path} has no trainer record`);
    if (record.model !== this.model.name)
      throw error(
        'ERR_SYNTHGRAD_CHECKPOINT',
        `checkpoint: ${saved.path} was saved from ${record.model}; this trainer trains ${this.model.name}`,
      );
    await restoreTensors(saved, this.namedState().tensors, this.stream);
    this.rng.restore(record.rng);
    this.strategy.restoreState!(record.strategy);
  }

  /** The model's outputs on `input` in evaluation mode, on the trainer's stream (see predict()). */
  async predict(input: Tensor | Float32Array | Dataset, options: { batchSize?: number } = {}): Promise<Predictions> {
    checkOptions('predict', options, ['batchSize']);
    return predict(this.model, input, { ...options, stream: this.stream });
  }

  /** Mean loss and accuracy of the model (inference mode) on `data`. */
  // Safe during fit (e.g. from a callback): it runs on the trainer's stream, which waits for
  // every step enqueued so far.
  async evaluate(data: Dataset, options: { batchSize?: number } = {}): Promise<Evaluation> {
    if (!(data instanceof Dataset)) throw typeError(`evaluate: 'data' must be a Dataset, got ${describe(data)}`);
    checkOptions('evaluate', options, ['batchSize']);
    const batchSize = positiveInt('evaluate', 'batchSize', options.batchSize ?? 1000);
    const example = this.checkData('evaluate', 'data', data);
    // The mean over no rows is 0/0: an error, not a NaN accuracy a caller might log and go on with.
    if (data.count === 0) throw rangeError(`evaluate: 'data' (${data.name}) is empty`);
    let lossSum = 0;
    let correct = 0;
    const order = data.order();
    for (let start = 0; start < data.count; start += batchSize) {
      const end = Math.min(data.count, start + batchSize);
      const arena = new Arena();
      try {
        const batch = data.gather(order, start, end);
        const ctx: StepContext = { device: this.device, stream: this.stream, training: false, arena };
        const x = Tensor.fromArray(batch.inputs, [end - start, ...example], { device: this.device, arena });
        const out = this.model.forward(x, ctx).output;
        const logits = await out.readFloat32(this.stream);
        const classes = out.shape[1];
        if (data.task === 'regression') {
          // The sum of squared errors in float64; the mean below is over every value (as the mse loss).
          for (let k = 0; k < logits.length; k++) lossSum += (logits[k] - batch.targets[k]) ** 2;
          continue;
        }
        for (let r = 0; r < end - start; r++) {
          const row = logits.subarray(r * classes, (r + 1) * classes);
          let best = 0;
          for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
          if (best === batch.labels[r]) correct++;
          // log-softmax in float64
          let sum = 0;
          for (let c = 0; c < classes; c++) sum += Math.exp(row[c] - row[best]);
          lossSum += -(row[batch.labels[r]] - row[best] - Math.log(sum));
        }
      } finally {
        arena.dispose();
      }
    }
    if (data.task === 'regression') return { loss: lossSum / (data.count * data.outputs), count: data.count };
    return { loss: lossSum / data.count, accuracy: correct / data.count, count: data.count };
  }

  /**
   * Throws, naming `arg`, when `data` does not fit the model: its shape, [rows, features], through
   * the model's outputShape (each layer's input shape against the one before), its classes against
   * the model's outputs (a 5-class set on a 10-output model trains outputs no label ever
   * selects; more classes than outputs index past them), and every label (the Dataset checked
   * them when built, but its labels array may have been written since).
   */
  private checkData(owner: string, arg: string, data: Dataset): number[] {
    const example = this.exampleShape(owner, arg, data);
    let output: number[];
    try {
      output = this.model.outputShape([data.count, ...example]);
    } catch (e) {
      throw rangeError(`${owner}: '${arg}' (${data.name}) does not fit the model: ${(e as Error).message}`);
    }
    if (output.length !== 2)
      throw rangeError(
        `${owner}: the model's output for '${arg}' (${data.name}) has shape [${output.join(', ')}]; ` +
          `the loss ${this.loss.name} takes [batch, outputs]`,
      );
    const outputs = output[1];
    const wants = this.loss.targetDType === 'int32' ? 'classification' : 'regression';
    if (data.task !== wants)
      throw typeError(
        `${owner}: '${arg}' (${data.name}) is ${data.task} data (${data.task === 'classification' ? 'int32 labels' : 'float values'}), ` +
          `but the loss ${this.loss.name} takes ${wants === 'classification' ? 'int32 labels' : 'float values'}` +
          (wants === 'classification' ? ": use the Trainer's loss: 'mse'" : ''),
      );
    if (data.task === 'regression') {
      if (data.outputs !== outputs)
        throw rangeError(
          `${owner}: '${arg}' (${data.name}) has ${data.outputs} target values per row but the model has ${outputs} outputs`,
        );
      if (hasStrategy(this.model) && this.model.labelClasses?.() !== undefined)
        throw typeError(`${owner}: '${arg}' (${data.name}) is regression data: conditioned (cDNI) synthesizers need class labels`);
      return example;
    }
    if (data.classes !== outputs)
      throw rangeError(`${owner}: '${arg}' (${data.name}) has ${data.classes} classes but the model has ${outputs} outputs`);
    const oneHot = hasStrategy(this.model) ? this.model.labelClasses?.() : undefined;
    if (oneHot !== undefined && data.classes > oneHot)
      throw rangeError(`${owner}: '${arg}' (${data.name}) has ${data.classes} classes but the synthesizers one-hot encode ${oneHot}`);
    const labels = data.labels;
    for (let i = 0; i < labels.length; i++)
      if (!(labels[i] >= 0 && labels[i] < outputs))
        throw rangeError(`${owner}: '${arg}' (${data.name}) has label ${labels[i]} at row ${i}, outside the model's ${outputs} outputs`);
    return example;
  }

  /**
   * The shape one example of `data` is fed as (a batch is [rows, ...it]): its image shape to a
   * model that takes images (or any shape, e.g. Flatten first); [features] to a model that
   * takes rows, whatever the Dataset's shape (an MNIST Dataset of [1, 28, 28] images trains an
   * mlp()). Throws, naming `arg`, when the model takes images and the Dataset's rows are not.
   */
  private exampleShape(owner: string, arg: string, data: Dataset): number[] {
    const takes = this.model.inputShape();
    if (takes?.kind === 'images') {
      if (data.shape.length !== 3)
        throw rangeError(
          `${owner}: '${arg}' (${data.name}) has rows of shape [${data.shape.join(', ')}], but the model takes images ` +
            `[${takes.channels ?? 'channels'}, height, width]: give the Dataset its image shape (Dataset.fromArrays(x, y, { shape }))`,
        );
      return [...data.shape];
    }
    return takes?.kind === 'any' ? [...data.shape] : [data.features];
  }

  /**
   * The fewest rows a training step takes on examples of shape `example`, and the layer that
   * needs them: 2 where the model has a BatchNorm1d (the batch statistics of one row are
   * undefined), or a BatchNorm2d that one row would reach as 1x1 images (its statistics are
   * over the batch and the pixels: one row of larger images is enough); else 1.
   */
  private minRowsFor(example: readonly number[]): { rows: number; layer?: Module } {
    if (this.batchNorm) return { rows: 2, layer: this.batchNorm };
    const chain = (m: Module): Module[] => (m instanceof Sequential ? m.layers.flatMap(chain) : [m]);
    let shape = [1, ...example];
    for (const layer of chain(inferenceModule(this.model))) {
      if (layer instanceof BatchNorm2d && shape.length === 4 && shape[2] * shape[3] < 2) return { rows: 2, layer };
      try {
        shape = layer.outputShape(shape);
      } catch {
        break; // a shape that does not fit: checkData reports it
      }
    }
    return { rows: 1 };
  }

  /**
   * `batch` written to new tensors of `arena` on the upload stream (stream-ordered: the host
   * does not wait); `stream` waits for `batchWritten`, recorded after the two writes.
   * `shape`: the inputs' shape, [rows, ...example].
   */
  private writeBatch(batch: Batch, shape: number[], arena: Arena): { x: Tensor; y: Tensor; batchWritten: Event } {
    const x = Tensor.empty(shape, { device: this.device, arena });
    const y = Tensor.empty(targetShape(batch.targets, shape[0]), {
      device: this.device,
      dtype: batch.targets instanceof Int32Array ? 'int32' : 'float32',
      arena,
    });
    const uploads = (this.uploads ??= { stream: new Stream(this.device), batchWritten: new Event(this.device) });
    x.write(batch.inputs, uploads.stream);
    y.write(batch.targets, uploads.stream);
    this.stream.wait(uploads.batchWritten.record(uploads.stream));
    return { x, y, batchWritten: uploads.batchWritten };
  }

  /** `shape`: the probe batch's input shape, [rows, ...example]. Written as a step's batch is. */
  private async probe(batch: Batch, shape: number[]): Promise<ModuleDiagnostics[]> {
    const arena = new Arena();
    try {
      const { x, y, batchWritten } = this.writeBatch(batch, shape, arena);
      return await this.strategy.diagnose!(x, y, { device: this.device, stream: this.stream, training: true, arena, batchWritten });
    } finally {
      arena.dispose();
    }
  }

  /** Frees the optimizer state and the model's parameters. */
  dispose(): void {
    this.strategy.dispose();
    this.model.dispose();
    for (const m of modulesOf(this.model)) if (boundTo.get(m) === this) boundTo.delete(m);
  }

  /** The learning rate the strategy reports for its next step (NaN when it reports none). */
  private currentLr(): number {
    return this.strategy.learningRate?.() ?? NaN;
  }
}
