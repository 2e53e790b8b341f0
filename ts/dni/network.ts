// decouple(): cuts a Sequential model into modules and attaches a synthesizer to every cut.
// A cut of [batch, features] rows gets a fully connected synthesizer, a cut of [batch, C, H, W]
// images (a CNN cut after an activation) a convolutional one (synthesizer.ts).
//
// The result is a Module (its forward is the plain network, for evaluation) that brings its
// own training strategy (training.ts), so Trainer.fit/evaluate accept it like any model.
import { booleanOption, checkOptions, describe, shown } from '../check';
import { Device } from '../device';
import { Activation, BatchNorm1d, Linear, Sequential, endsWithReLU } from '../nn/layers';
import { Loss } from '../nn/losses';
import { Forwarded, InputShape, Module, Parameter, Shape, StepContext } from '../nn/module';
import { Optimizer, optimizerFor } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { HasTrainingStrategy, TrainingStrategy } from '../train/strategy';
import { Synthesizer, SynthesizerOptions } from './synthesizer';
import { DecoupledTraining } from './training';
import { InputModel, UnlockOptions, moduleOutputShapes, unlockOptions } from './unlock';
import { rangeError, typeError } from '../errors';

/**
 * When the modules and their synthesizers update (DESIGN.md, "Schedules"). Not to be confused
 * with a LearningRateSchedule (../optim/optimizers.ts).
 */
export type UpdateSchedule =
  /** one mini-batch at a time; modules overlap within a step; no weight is ever stale */
  | { kind: 'lockstep'; pUpdate?: number }
  /**
   * Module i may run up to `depth` mini-batches ahead of module i+1. Synthesizer targets then
   * arrive up to `depth` steps late, and the synthesizer (and module) weights that produced a
   * prediction may have been updated since: the regression uses the saved activations of the
   * late batch with the synthesizer's current weights.
   */
  | { kind: 'pipelined'; depth: number; pUpdate?: number };

export interface DecoupleOptions {
  /**
   * Where to cut: after every activation layer (default), after every layer, or after the
   * given layer indices (0-based positions in the Sequential; not the last layer).
   */
  at?: 'every-activation' | 'every-layer' | number[];
  synthesizer?: SynthesizerOptions;
  /** default { kind: 'lockstep', pUpdate: 1 } */
  schedule?: UpdateSchedule;
  /**
   * BP(λ): each module is updated with (1-λ)·ĝ + λ·δ, δ being the gradient the module above
   * sends down. 0 (default) is pure DNI; 1 is backpropagation (with synthesizers still learning).
   */
  lambda?: number;
  /** steps of plain backprop (synthesizers learning the true gradients) before decoupling */
  warmupSteps?: number;
  /** one stream per module (default), or everything on the trainer's stream */
  streams?: 'per-module' | 'single';
  /** number of classes for cDNI's one-hot labels; default: the model's output width */
  classes?: number;
  /**
   * The complete unlock (docs/unlock.md): modules 2..N train on synthetic inputs Î_i = I_i(x)
   * predicted from the network's input, so that within a step no module waits for another
   * (forward, backward or update). I_i regresses (L2) onto the real h_{i-1} of the same batch
   * in the same step, after module i's own work: the targets are never stale (0 steps), and
   * the weights that made a prediction are the ones that learn from it. The training loss is
   * the last module's on its synthetic input; evaluation (forward) uses the true path.
   * Lockstep schedule only, with lambda 0 and no warm-up. Default off.
   */
  unlock?: boolean | UnlockOptions;
  /**
   * The shape of one input example, e.g. [1, 28, 28]: needed for a model that takes images
   * (its cuts' image sizes follow from it); a model on rows infers [features] from its first
   * layer. Training data must then have this shape.
   */
  input?: number[];
}

/** The resolved, checked configuration. */
export interface DecoupledConfig {
  cuts: number[];
  schedule: Required<UpdateSchedule>;
  lambda: number;
  warmupSteps: number;
  streams: 'per-module' | 'single';
  /** the complete unlock is on (absent when off) */
  unlock?: true;
}

export class DecoupledNetwork extends Module implements HasTrainingStrategy {
  readonly name: string;
  /** module i = layers (cuts[i-1], cuts[i]] */
  readonly modules: Sequential[];
  /** synthesizers[i] predicts the gradient at modules[i]'s output (none for the last module) */
  readonly synthesizers: Synthesizer[];
  readonly config: DecoupledConfig;
  /** with `unlock`: inputModels[i-1] predicts modules[i]'s input from x (i = 1..N-1); else empty */
  readonly inputModels: InputModel[] = [];
  private readonly inputOptimizer?: (module: number) => Optimizer;
  /** the shape of one input example (options.input, or [features] for a model on rows) */
  readonly input: readonly number[];
  private readonly synthesizerOptimizer?: (module: number) => Optimizer;
  private device?: Device;
  private rng?: Random;

  constructor(
    readonly model: Sequential,
    options: DecoupleOptions = {},
  ) {
    super();
    if (!(model instanceof Sequential)) throw typeError(`decouple: 'model' must be a Sequential, got ${describe(model)}`);
    if (!options || typeof options !== 'object') throw typeError('decouple: options must be an object');
    checkOptions('decouple', options, ['at', 'synthesizer', 'schedule', 'lambda', 'warmupSteps', 'streams', 'classes', 'unlock', 'input']);
    checkOptions('decouple', options.synthesizer, SYNTHESIZER_OPTIONS, 'synthesizer');
    // The Synthesizer takes any truthy value as cDNI: "no" would quietly condition on the labels.
    booleanOption('decouple', 'synthesizer.conditioned', options.synthesizer?.conditioned, false);
    const layers = model.layers;
    this.config = {
      cuts: resolveCuts(options.at ?? 'every-activation', model),
      schedule: resolveSchedule(options.schedule),
      lambda: options.lambda ?? 0,
      warmupSteps: options.warmupSteps ?? 0,
      streams: options.streams ?? 'per-module',
      // Present only when on: the configuration of other runs is as it was.
      ...(options.unlock !== undefined && options.unlock !== false ? { unlock: true } : {}),
    };
    const { lambda, warmupSteps, streams } = this.config;
    if (typeof lambda !== 'number' || !(lambda >= 0 && lambda <= 1))
      throw rangeError(`decouple: 'lambda' must be in [0, 1], got ${shown(lambda)}`);
    if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
      throw rangeError(`decouple: 'warmupSteps' must be a non-negative integer, got ${shown(warmupSteps)}`);
    if (streams !== 'per-module' && streams !== 'single')
      throw typeError(`decouple: 'streams' must be 'per-module' or 'single', got ${shown(streams)}`);

    const bounds = [-1, ...this.config.cuts, layers.length - 1];
    this.modules = bounds.slice(1).map((end, i) => new Sequential(layers.slice(bounds[i] + 1, end + 1) as Module[]));
    this.input = inputExample(model, options.input);
    // The shape at every cut, through each module's outputShape from one input example (one
    // stands for any batch): a synthesizer takes [batch, features] rows or [batch, C, H, W] images.
    let shape: number[] = [1, ...this.input];
    const cutShapes = this.modules.map((m, i) => {
      try {
        shape = m.outputShape(shape);
      } catch (e) {
        if (i > 0 || options.input === undefined) throw e;
        throw rangeError(`decouple: 'input' [${this.input.join(', ')}] does not fit the model: ${(e as Error).message}`);
      }
      const last = i === this.modules.length - 1;
      if (shape.length !== 2 && (last || shape.length !== 4))
        throw rangeError(
          `decouple: module ${i + 1} (${m.name}) outputs shape [${shape.join(', ')}]; ` +
            (last
              ? 'the loss takes [batch, outputs]'
              : 'a synthesizer takes [batch, features] rows or [batch, channels, height, width] images'),
        );
      return shape.slice(1);
    });
    const classes = options.classes ?? cutShapes[cutShapes.length - 1][0];
    if (!Number.isInteger(classes) || classes < 1)
      throw rangeError(`decouple: 'classes' must be a positive integer, got ${shown(classes)}`);
    this.synthesizers = this.modules.slice(0, -1).map(
      (_, i) =>
        new Synthesizer(`synthesizer ${i + 1} (after layer ${this.config.cuts[i]})`, cutShapes[i], classes, {
          ...options.synthesizer,
          center: centerAt(options.synthesizer?.center, this.modules[i + 1], cutShapes[i].length === 3),
          maskInactive: maskAt(options.synthesizer?.maskInactive, this.modules[i]),
        }),
    );
    const unlock = unlockOptions(options.unlock);
    if (unlock) this.inputModels = this.unlocked(unlock, this.input);
    const kind = (options.synthesizer?.conditioned ? 'cDNI' : 'DNI') + (unlock ? '+unlock' : '');
    this.name = `${kind}(${this.modules.length} modules, cuts after layers ${this.config.cuts.join(', ')})`;
    this.synthesizerOptimizer = options.synthesizer?.optimizer;
    this.inputOptimizer = unlock?.optimizer;
  }

  /** The input models of the complete unlock, after checking that the other options allow it. */
  private unlocked(unlock: UnlockOptions, input: readonly number[]): InputModel[] {
    const { schedule, lambda, warmupSteps } = this.config;
    // Each of these makes a module wait for another within a step, which the unlock removes.
    if (schedule.kind !== 'lockstep')
      throw rangeError(`decouple: 'unlock' needs the lockstep schedule, got 'schedule.kind' '${schedule.kind}'`);
    if (lambda !== 0) throw rangeError(`decouple: 'unlock' needs 'lambda' 0 (BP(λ) waits for δ from the module above), got ${lambda}`);
    if (warmupSteps !== 0)
      throw rangeError(`decouple: 'unlock' needs 'warmupSteps' 0 (warm-up is backprop through the true path), got ${warmupSteps}`);
    const shapes = moduleOutputShapes(this.modules, [...input]);
    return this.modules
      .slice(1)
      .map(
        (_, k) => new InputModel(`input model ${k + 2} (before layer ${this.config.cuts[k] + 1})`, k + 1, [...input], shapes[k], unlock),
      );
  }

  /** The model, then the synthesizers' networks. */
  children(): readonly Module[] {
    return [this.model, ...this.synthesizers.map((s) => s.network), ...this.inputModels.map((m) => m.network)];
  }

  initialize(device: Device, rng: Random): void {
    this.model.initialize(device, rng);
    this.device = device;
    this.rng = rng;
  }

  /** The model's, for examples of the shape the synthesizers were built for (`input`; rows: the model checks their width). */
  outputShape(input: Shape): number[] {
    const example = input.slice(1);
    if (this.input.length > 1 && (example.length !== this.input.length || example.some((d, k) => d !== this.input[k])))
      throw rangeError(
        `${this.name}: built for examples of shape [${this.input.join(', ')}] (decouple's 'input'), got [${example.join(', ')}]`,
      );
    return this.model.outputShape(input);
  }

  inputShape(): InputShape | undefined {
    return this.model.inputShape();
  }

  /** The modules' parameters (the synthesizers' are separate: synthesizerParameters()). */
  parameters(): Parameter[] {
    return this.model.parameters();
  }

  /** The modules' state, then the synthesizers', then the input models'. */
  stateTensors(): Tensor[] {
    return [
      ...this.model.stateTensors(),
      ...this.synthesizers.flatMap((s) => s.network.stateTensors()),
      ...this.inputModels.flatMap((m) => m.network.stateTensors()),
    ];
  }

  synthesizerParameters(): Parameter[] {
    return this.synthesizers.flatMap((s) => s.parameters());
  }

  /** The input models' parameters (empty without `unlock`). */
  inputModelParameters(): Parameter[] {
    return this.inputModels.flatMap((m) => m.parameters());
  }

  /** The plain network (as used for evaluation). */
  forward(x: Tensor, ctx: StepContext): Forwarded {
    return this.model.forward(x, ctx);
  }

  /** The classes a cDNI synthesizer one-hot encodes (labels beyond them cannot be encoded); undefined for DNI. */
  labelClasses(): number | undefined {
    const conditioned = this.synthesizers.find((s) => s.conditioned);
    return conditioned?.classes;
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    const device = this.initialized(this.device);
    const rng = this.initialized(this.rng);
    const own = this.synthesizerOptimizer;
    this.synthesizers.forEach((s, i) => s.initialize(device, rng, own ? optimizerFor(s.name, own, i) : options.optimizer(i)));
    const input = this.inputOptimizer;
    this.inputModels.forEach((m) => m.initialize(device, rng, input ? optimizerFor(m.name, input, m.module) : options.optimizer(m.module)));
    return new DecoupledTraining(
      this,
      device,
      options.loss,
      this.modules.map((_, i) => options.optimizer(i)),
      rng.fork(),
    );
  }

  dispose(): void {
    this.model.dispose();
    for (const s of this.synthesizers) s.dispose();
    for (const m of this.inputModels) m.dispose();
  }
}

/** The keys of SynthesizerOptions (synthesizer.ts), checked here, where users pass them. */
const SYNTHESIZER_OPTIONS = [
  'hidden',
  'filters',
  'kernel',
  'conditioned',
  'lossWeight',
  'updatesPerTarget',
  'optimizer',
  'network',
  'center',
  'maskInactive',
  'targetScale',
] as const;

/** Cuts a Sequential model into decoupled modules with a synthesizer at each cut. */
export function decouple(model: Sequential, options: DecoupleOptions = {}): DecoupledNetwork {
  return new DecoupledNetwork(model, options);
}

/** The shape of one input example: `given` (checked), else [features] of a model on rows. */
function inputExample(model: Sequential, given: unknown): number[] {
  if (given !== undefined) {
    if (!Array.isArray(given) || given.length === 0 || !given.every((d) => Number.isInteger(d) && d > 0))
      throw typeError(`decouple: 'input' must be the shape of one example (positive integers, e.g. [1, 28, 28]), got ${shown(given)}`);
    return [...(given as number[])];
  }
  const takes = model.inputShape();
  if (takes?.kind === 'rows') return [takes.features];
  throw typeError(
    takes?.kind === 'images'
      ? "decouple: the model takes images: give 'input', the shape of one example [channels, height, width] (e.g. [1, 28, 28])"
      : "decouple: cannot infer the input width of the model (start it with a Linear or BatchNorm1d, or give 'input')",
  );
}

function resolveCuts(at: DecoupleOptions['at'], model: Sequential): number[] {
  const last = model.layers.length - 1;
  let cuts: number[];
  if (at === 'every-activation') {
    cuts = model.layers.flatMap((l, i) => (l instanceof Activation && i < last ? [i] : []));
  } else if (at === 'every-layer') {
    cuts = model.layers.slice(0, -1).map((_, i) => i);
  } else if (Array.isArray(at)) {
    for (const i of at)
      if (!Number.isInteger(i) || i < 0 || i >= last)
        throw rangeError(
          `decouple: cut index ${String(i)} is out of range: cuts go after layers 0..${last - 1} of the ${last + 1}-layer model`,
        );
    cuts = [...new Set(at)].sort((a, b) => a - b);
  } else {
    throw typeError(`decouple: 'at' must be 'every-activation', 'every-layer' or an array of layer indices, got ${shown(at)}`);
  }
  if (cuts.length === 0) throw rangeError('decouple: no cut: the model would be a single module (give layer indices in `at`)');
  return cuts;
}

function resolveSchedule(s: UpdateSchedule | undefined): Required<UpdateSchedule> {
  const schedule = s ?? { kind: 'lockstep' };
  if (!schedule || typeof schedule !== 'object') throw typeError("decouple: 'schedule' must be an object");
  // depth belongs to the pipelined schedule only: on lockstep it would be silently meaningless.
  if (schedule.kind === 'lockstep' || schedule.kind === 'pipelined')
    checkOptions('decouple', schedule, schedule.kind === 'pipelined' ? ['kind', 'depth', 'pUpdate'] : ['kind', 'pUpdate'], 'schedule');
  const pUpdate = schedule.pUpdate ?? 1;
  if (typeof pUpdate !== 'number' || !(pUpdate > 0 && pUpdate <= 1))
    throw rangeError(`decouple: 'schedule.pUpdate' must be in (0, 1], got ${shown(pUpdate)}`);
  if (schedule.kind === 'lockstep') return { kind: 'lockstep', pUpdate };
  if (schedule.kind === 'pipelined') {
    if (!Number.isInteger(schedule.depth) || schedule.depth < 1)
      throw rangeError(`decouple: 'schedule.depth' must be a positive integer, got ${shown(schedule.depth)}`);
    return { kind: 'pipelined', depth: schedule.depth, pUpdate };
  }
  throw typeError(`decouple: 'schedule.kind' must be 'lockstep' or 'pipelined', got ${shown((schedule as { kind: unknown }).kind)}`);
}

/**
 * Whether a synthesizer in front of `next` centres ĝ: where asked to and where it is exact, i.e.
 * the gradient at next's input has zero batch mean whatever arrives at its output. That holds
 * when next starts with BatchNorm1d, or Linear → BatchNorm1d (in training mode BatchNorm's
 * backward removes the batch mean, and a Linear's backward keeps column means at zero). Never at
 * a cut of images: BatchNorm2d zeroes a channel's mean over the batch and the pixels together,
 * not each pixel's mean over the batch, and a conv or pool in front of it keeps neither.
 */
function centerAt(asked: boolean | undefined, next: Sequential, images: boolean): boolean | undefined {
  if (asked !== true) return asked; // false, undefined, or a bad value for the Synthesizer to report
  if (images) return false;
  const [first, second] = next.layers;
  return first instanceof BatchNorm1d || (first instanceof Linear && second instanceof BatchNorm1d);
}

/** Whether the synthesizer after `module` regresses on active units only: where asked to and where `module` ends with a ReLU. */
function maskAt(asked: boolean | undefined, module: Sequential): boolean | undefined {
  return asked === true ? endsWithReLU(module) : asked;
}
