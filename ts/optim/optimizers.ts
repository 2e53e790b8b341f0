// Optimizers (PyTorch semantics) and learning-rate schedules.
//
// step() applies the accumulated gradients to the parameters and zeroes the gradients, all
// enqueued on the given stream; the optimizer counts its own steps for the schedule and for
// Adam's bias correction.
import { native } from '../native';
import { Parameter } from '../nn/module';
import { Stream } from '../stream';
import { Tensor } from '../tensor';

const ops = native.ops;

/** The learning rate as a function of the step number (0-based). */
export type Schedule = (step: number) => number;

export const schedules = {
  constant(lr: number): Schedule {
    checkLr('constant', lr);
    return () => lr;
  },
  /** lr multiplied by `gamma` at each milestone step (e.g. 3e-5, [300000, 400000], 0.1). */
  stepDecay(lr: number, milestones: number[], gamma = 0.1): Schedule {
    checkLr('stepDecay', lr);
    if (!Array.isArray(milestones) || milestones.some((m) => !Number.isInteger(m) || m < 0))
      throw new TypeError(`stepDecay: 'milestones' must be an array of non-negative integers, got ${String(milestones)}`);
    if (!(gamma > 0)) throw new RangeError(`stepDecay: 'gamma' must be > 0, got ${gamma}`);
    const sorted = [...milestones].sort((a, b) => a - b);
    return (step) => lr * Math.pow(gamma, sorted.filter((m) => step >= m).length);
  },
};

function checkLr(owner: string, lr: unknown): void {
  if (typeof lr !== 'number' || !(lr > 0) || !Number.isFinite(lr))
    throw new RangeError(`${owner}: 'lr' must be a finite number > 0, got ${String(lr)}`);
}

export interface OptimizerOptions {
  /** a constant learning rate or a schedule */
  lr: number | Schedule;
  weightDecay?: number;
}

export abstract class Optimizer {
  protected readonly schedule: Schedule;
  protected readonly weightDecay: number;
  /** steps taken so far */
  steps = 0;

  constructor(owner: string, options: OptimizerOptions) {
    if (!options || typeof options !== 'object') throw new TypeError(`${owner}: expects an options object { lr, ... }`);
    if (typeof options.lr === 'function') {
      this.schedule = options.lr;
    } else {
      checkLr(owner, options.lr);
      this.schedule = schedules.constant(options.lr);
    }
    this.weightDecay = options.weightDecay ?? 0;
    if (!(this.weightDecay >= 0)) throw new RangeError(`${owner}: 'weightDecay' must be >= 0, got ${this.weightDecay}`);
  }

  /** The learning rate the next step will use. */
  get lr(): number {
    return this.schedule(this.steps);
  }

  /** Updates `params` from their gradients and zeroes the gradients. */
  step(params: readonly Parameter[], stream: Stream): void {
    const lr = this.lr;
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new RangeError(`optimizer: the schedule gave lr = ${lr} at step ${this.steps}`);
    this.steps++;
    for (const p of params) {
      this.update(p, lr, stream);
      ops.fill(stream.handle, p.grad.handle, 0);
    }
  }

  protected abstract update(p: Parameter, lr: number, stream: Stream): void;

  /** Frees the optimizer's state tensors. */
  abstract dispose(): void;
}

export class SGD extends Optimizer {
  readonly momentum: number;
  private velocity = new Map<Parameter, Tensor>();

  constructor(options: OptimizerOptions & { momentum?: number }) {
    super('SGD', options);
    this.momentum = options.momentum ?? 0;
    if (!(this.momentum >= 0 && this.momentum < 1)) throw new RangeError(`SGD: 'momentum' must be in [0, 1), got ${this.momentum}`);
  }

  protected update(p: Parameter, lr: number, stream: Stream): void {
    let v: Tensor | null = null;
    if (this.momentum > 0) {
      v = this.velocity.get(p) ?? Tensor.zeros(p.value.shape, { device: p.value.device });
      this.velocity.set(p, v);
    }
    ops.sgdStep(stream.handle, p.value.handle, p.grad.handle, v?.handle ?? null, lr, this.momentum, this.weightDecay);
  }

  dispose(): void {
    for (const v of this.velocity.values()) v.dispose();
    this.velocity.clear();
  }
}

export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  private moments = new Map<Parameter, { m: Tensor; v: Tensor }>();

  constructor(options: OptimizerOptions & { beta1?: number; beta2?: number; eps?: number }) {
    super('Adam', options);
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    for (const [k, v] of [['beta1', this.beta1], ['beta2', this.beta2]] as const)
      if (!(v >= 0 && v < 1)) throw new RangeError(`Adam: '${k}' must be in [0, 1), got ${v}`);
    if (!(this.eps > 0)) throw new RangeError(`Adam: 'eps' must be > 0, got ${this.eps}`);
  }

  protected update(p: Parameter, lr: number, stream: Stream): void {
    let state = this.moments.get(p);
    if (!state) {
      const opts = { device: p.value.device };
      state = { m: Tensor.zeros(p.value.shape, opts), v: Tensor.zeros(p.value.shape, opts) };
      this.moments.set(p, state);
    }
    ops.adamStep(stream.handle, p.value.handle, p.grad.handle, state.m.handle, state.v.handle, lr,
      this.beta1, this.beta2, this.eps, this.weightDecay, this.steps);
  }

  dispose(): void {
    for (const s of this.moments.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.moments.clear();
  }
}
