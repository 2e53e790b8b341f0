// Training strategies: how one training step is carried out. The Trainer (./trainer.ts) runs
// any strategy; plain backpropagation (./backprop.ts) is the default, and a model may bring its
// own (a decoupled network, ../dni/training.ts).
//
// This file sits below the trainer: nn, dni and optim may import it (the interfaces and
// stepCount), so that a strategy does not depend on the trainer that runs it. It imports only
// types from above the low-level layer.
import type { ModuleDiagnostics } from '../dni/diagnostics';
import type { Loss } from '../nn/losses';
import type { StepContext } from '../nn/module';
import type { Optimizer } from '../optim/optimizers';
import type { Tensor } from '../tensor';
import type { NamedTensor } from './checkpoint';
import { error } from '../errors';

/**
 * How one training step is carried out. Plain backpropagation is the default; a decoupled
 * network brings its own.
 */
export interface TrainingStrategy {
  /**
   * Enqueues one step and returns the mean loss as a [1] tensor; reading it on `ctx.stream`
   * must wait for all of the step's work.
   */
  step(x: Tensor, y: Tensor, ctx: StepContext): Tensor;
  /** how many steps may be in flight before the host waits for the oldest; default 1 */
  readonly maxInFlight?: number;
  /**
   * The learning rate the next step uses (of the model's first optimizer), which fit reports
   * in StepMetrics.lr; undefined (or no method) when there is none to report, and lr is NaN.
   */
  learningRate?(): number | undefined;
  /** Measures the strategy's synthesizers on a probe batch (fit's diagnoseEvery). */
  diagnose?(x: Tensor, y: Tensor, ctx: StepContext): Promise<ModuleDiagnostics[]>;
  /**
   * Graph capture support: undefined when step() may be captured (see graph.ts), else why
   * not. Strategies without this method cannot be captured.
   */
  captureBlocker?(): string | undefined;
  /** whether the next step may be the captured one (e.g. warm-up is over); default true */
  captureReady?(): boolean;
  /** Its state for a checkpoint; throws, saying why, when it cannot be saved. */
  checkpointState?(): StrategyState;
  /** Restores the host part of checkpointState() (the trainer has copied the tensors back). */
  restoreState?(host: unknown): void;
  dispose(): void;
}

/** What a training strategy keeps beyond the model: optimizer state, step counts. */
export interface StrategyState {
  tensors: NamedTensor[];
  /** JSON-serialisable */
  host: unknown;
}

/** A model that chooses its own training strategy (e.g. a decoupled network). */
export interface HasTrainingStrategy {
  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy;
  /** The number of classes its training step one-hot encodes (cDNI), which the data's labels must fit. */
  labelClasses?(): number | undefined;
}

/** Whether `m` is a model that brings its own training strategy. */
export function hasStrategy(m: unknown): m is HasTrainingStrategy {
  return typeof (m as HasTrainingStrategy).trainingStrategy === 'function';
}

/** A step count read back from a checkpoint (a strategy's restoreState). */
export function stepCount(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: '${what}' must be a step count, got ${JSON.stringify(v)}`);
  return v;
}
