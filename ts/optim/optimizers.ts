// Optimizers (PyTorch semantics) and learning-rate schedules.
//
// step() applies the accumulated gradients to the parameters and zeroes the gradients, all
// enqueued on the given stream as one fused op over the whole parameter group; the optimizer
// counts its own steps for the schedule and for Adam's bias correction. The step-dependent
// scalars (learning rate, bias corrections) reach the op through a small device tensor written
// just before it, so a step captured into a graph reads fresh values at every launch.
// An optimizer serves one parameter group (one module): its scalars tensor is shared.
import { checkOptions, describe, numberOption, shown } from '../check';
import type { CaptureHooks } from '../graph';
import { Parameter } from '../nn/module';
import * as ops from '../ops';
import { TensorGroup } from '../ops';
import { Stream } from '../stream';
import { Tensor } from '../tensor';
import { rangeError, typeError } from '../errors';

/**
 * The learning rate as a function of the step number (0-based). Not to be confused with the
 * decoupled networks' UpdateSchedule (../dni/network.ts), which orders the modules' updates.
 */
export type LearningRateSchedule = (step: number) => number;

/** Ready-made learning-rate schedules. */
export const learningRateSchedules = {
  constant(lr: number): LearningRateSchedule {
    checkLr('constant', lr);
    return () => lr;
  },
  /** lr multiplied by `gamma` at each milestone step (e.g. 3e-5, [300000, 400000], 0.1). */
  stepDecay(lr: number, milestones: number[], gamma = 0.1): LearningRateSchedule {
    checkLr('stepDecay', lr);
    if (!Array.isArray(milestones) || milestones.some((m) => !Number.isInteger(m) || m < 0))
      throw typeError(`stepDecay: 'milestones' must be an array of non-negative integers, got ${shown(milestones)}`);
    if (typeof gamma !== 'number') throw typeError(`stepDecay: 'gamma' must be a number, got ${describe(gamma)}`);
    if (!(gamma > 0) || !Number.isFinite(gamma)) throw rangeError(`stepDecay: 'gamma' must be a finite number > 0, got ${gamma}`);
    const sorted = [...milestones].sort((a, b) => a - b);
    return (step) => lr * Math.pow(gamma, sorted.filter((m) => step >= m).length);
  },
};

function checkLr(owner: string, lr: unknown): void {
  if (typeof lr !== 'number' || !(lr > 0) || !Number.isFinite(lr))
    throw rangeError(`${owner}: 'lr' must be a finite number > 0, got ${shown(lr)}`);
}

export interface OptimizerOptions {
  /** a constant learning rate or a schedule */
  lr: number | LearningRateSchedule;
  weightDecay?: number;
}

/**
 * Adam's step-dependent scalars [lr / (1 - beta1^step), sqrt(1 - beta2^step)] as float32
 * values, computed as the native adamScalars (native/core/op_types.h) computes them: the
 * float32 inputs widened to double, the same double operations in the same order, one
 * rounding to float32 at the end; step < 1 counts as 1. Computing them here saves a call into
 * the addon per step. Math.pow and the C library's pow are both within an ulp of the exact
 * power in double, so the float32 results agree (test/adam-scalars.test.ts checks 400,000
 * (lr, beta1, beta2, step) cases against the native function).
 */
export function adamStepScalars(lr: number, beta1: number, beta2: number, step: number): [number, number] {
  const f32 = Math.fround;
  const t = step < 1 ? 1 : step;
  return [f32(f32(lr) / (1 - Math.pow(f32(beta1), t))), f32(Math.sqrt(1 - Math.pow(f32(beta2), t)))];
}

export abstract class Optimizer {
  protected readonly schedule: LearningRateSchedule;
  protected readonly weightDecay: number;
  /** steps taken so far */
  steps = 0;
  /** the step-dependent scalars on the parameters' device, written before each fused update */
  private hyper?: Tensor;

  constructor(owner: string, options: OptimizerOptions) {
    if (!options || typeof options !== 'object') throw typeError(`${owner}: expects an options object { lr, ... }`);
    if (typeof options.lr === 'function') {
      this.schedule = options.lr;
    } else {
      checkLr(owner, options.lr);
      this.schedule = learningRateSchedules.constant(options.lr);
    }
    this.weightDecay = numberOption(owner, 'weightDecay', options.weightDecay, 0);
    if (!(this.weightDecay >= 0) || !Number.isFinite(this.weightDecay))
      throw rangeError(`${owner}: 'weightDecay' must be a finite number >= 0, got ${this.weightDecay}`);
  }

  /** The learning rate the next step will use. */
  get lr(): number {
    return this.schedule(this.steps);
  }

  /**
   * Updates `params` from their gradients and zeroes the gradients, on `stream`. While the
   * step is captured (`capture` given), the scalars are written before each launch instead.
   */
  step(params: readonly Parameter[], stream: Stream, capture?: CaptureHooks): void {
    if (params.length === 0) {
      this.steps++;
      return;
    }
    const device = params[0].value.device;
    if (!this.hyper || !this.hyper.device.equals(device)) {
      this.hyper?.dispose();
      this.hyper = Tensor.zeros([this.scalarCount], { device });
    }
    const hyper = this.hyper;
    if (capture) capture.beforeLaunch((s) => this.advance(s, hyper));
    else this.advance(stream, hyper);
    this.update(params, hyper, stream);
  }

  /** Counts a step and writes its scalars into `hyper` on `stream`. */
  private advance(stream: Stream, hyper: Tensor): void {
    const lr = this.lr;
    if (!(lr >= 0) || !Number.isFinite(lr)) throw rangeError(`optimizer: the schedule gave lr = ${lr} at step ${this.steps}`);
    this.steps++;
    ops.writeScalars({ stream }, hyper, this.scalars(lr, this.steps));
  }

  /**
   * The state tensors kept for `params` (momentum, moments), created (as zeros, which is what
   * the first step would start from) when missing, in a fixed order. Checkpoints save these.
   */
  abstract stateTensors(params: readonly Parameter[]): Tensor[];

  /** the number of step-dependent scalars the fused op reads */
  protected abstract readonly scalarCount: number;
  /** the scalars of step `step` (1-based) */
  protected abstract scalars(lr: number, step: number): number[];
  /** Enqueues the fused update of the group, reading its scalars from `hyper`. */
  protected abstract update(params: readonly Parameter[], hyper: Tensor, stream: Stream): void;

  /** Frees the optimizer's state tensors. */
  dispose(): void {
    this.hyper?.dispose();
    this.hyper = undefined;
    this.disposeState();
  }

  protected abstract disposeState(): void;
}

/**
 * Checks that `options` holds only the base options (lr, weightDecay) and `own`; returns it.
 * The built-in optimizers call it (a subclass of Optimizer with options of its own checks its own).
 */
function known<T>(owner: string, options: T, own: readonly string[]): T {
  if (options !== null && typeof options === 'object') checkOptions(owner, options, ['lr', 'weightDecay', ...own]);
  return options;
}

/** Calls an optimizer factory for `module`; a factory that returns something else is an error naming `owner`. */
export function optimizerFor(owner: string, make: (module: number) => Optimizer, module: number): Optimizer {
  const o = make(module);
  if (!(o instanceof Optimizer)) throw typeError(`${owner}: the 'optimizer' factory returned ${describe(o)}, not an Optimizer`);
  return o;
}

/** A parameter group and its state as the grouped ops take them, built once per parameter list. */
interface Group {
  params: TensorGroup;
  grads: TensorGroup;
  state: TensorGroup[];
}

function groupOf<P extends readonly Parameter[]>(cache: WeakMap<P, Group>, params: P, state: (p: Parameter) => Tensor[]): Group {
  let g = cache.get(params);
  if (!g || g.params.length !== params.length) {
    const perParam = params.map(state);
    g = {
      params: new TensorGroup(params.map((p) => p.value)),
      grads: new TensorGroup(params.map((p) => p.grad)),
      state: perParam.length ? perParam[0].map((_, k) => new TensorGroup(perParam.map((s) => s[k]))) : [],
    };
    cache.set(params, g);
  }
  return g;
}

export class SGD extends Optimizer {
  readonly momentum: number;
  protected readonly scalarCount = 1;
  private velocity = new Map<Parameter, Tensor>();
  private groups = new WeakMap<readonly Parameter[], Group>();

  constructor(options: OptimizerOptions & { momentum?: number }) {
    super('SGD', known('SGD', options, ['momentum']));
    this.momentum = numberOption('SGD', 'momentum', options.momentum, 0);
    if (!(this.momentum >= 0 && this.momentum < 1)) throw rangeError(`SGD: 'momentum' must be in [0, 1), got ${this.momentum}`);
  }

  protected scalars(lr: number): number[] {
    return [lr];
  }

  stateTensors(params: readonly Parameter[]): Tensor[] {
    return params.flatMap((p) => this.stateOf(p));
  }

  private stateOf(p: Parameter): Tensor[] {
    if (this.momentum === 0) return [];
    let v = this.velocity.get(p);
    if (!v) this.velocity.set(p, (v = Tensor.zeros(p.value.shape, { device: p.value.device })));
    return [v];
  }

  protected update(params: readonly Parameter[], hyper: Tensor, stream: Stream): void {
    const g = groupOf(this.groups, params, (p) => this.stateOf(p));
    ops.sgdStepGroup({ stream }, g.params, g.grads, this.momentum > 0 ? g.state[0] : null, hyper, this.momentum, this.weightDecay);
  }

  protected disposeState(): void {
    for (const v of this.velocity.values()) v.dispose();
    this.velocity.clear();
    this.groups = new WeakMap();
  }
}

export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  protected readonly scalarCount = 2;
  private moments = new Map<Parameter, { m: Tensor; v: Tensor }>();
  private groups = new WeakMap<readonly Parameter[], Group>();

  constructor(options: OptimizerOptions & { beta1?: number; beta2?: number; eps?: number }) {
    super('Adam', known('Adam', options, ['beta1', 'beta2', 'eps']));
    this.beta1 = numberOption('Adam', 'beta1', options.beta1, 0.9);
    this.beta2 = numberOption('Adam', 'beta2', options.beta2, 0.999);
    this.eps = numberOption('Adam', 'eps', options.eps, 1e-8);
    for (const [k, v] of [
      ['beta1', this.beta1],
      ['beta2', this.beta2],
    ] as const)
      // in float32 too, as the update uses them (0.999999999 is 1 there)
      if (!(v >= 0 && Math.fround(v) < 1)) throw rangeError(`Adam: '${k}' must be in [0, 1), got ${v}`);
    if (!(this.eps > 0) || !Number.isFinite(this.eps)) throw rangeError(`Adam: 'eps' must be a finite number > 0, got ${this.eps}`);
  }

  /** [lr / (1 - beta1^t), sqrt(1 - beta2^t)], the float32 values the native adamScalars gives. */
  protected scalars(lr: number, step: number): number[] {
    if (!Number.isFinite(Math.fround(lr))) throw rangeError(`Adam: the learning rate ${lr} overflows float32`);
    return adamStepScalars(lr, this.beta1, this.beta2, step);
  }

  stateTensors(params: readonly Parameter[]): Tensor[] {
    return params.flatMap((p) => this.stateOf(p));
  }

  private stateOf(p: Parameter): Tensor[] {
    let s = this.moments.get(p);
    if (!s) {
      const opts = { device: p.value.device };
      this.moments.set(p, (s = { m: Tensor.zeros(p.value.shape, opts), v: Tensor.zeros(p.value.shape, opts) }));
    }
    return [s.m, s.v];
  }

  protected update(params: readonly Parameter[], hyper: Tensor, stream: Stream): void {
    const g = groupOf(this.groups, params, (p) => this.stateOf(p));
    ops.adamStepGroup({ stream }, g.params, g.grads, g.state[0], g.state[1], hyper, this.beta1, this.beta2, this.eps, this.weightDecay);
  }

  protected disposeState(): void {
    for (const s of this.moments.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.moments.clear();
    this.groups = new WeakMap();
  }
}
