// Command-line values shared by the benchmark scripts.
import { Adam, Optimizer, SGD } from '../ts';
import type { Schedule } from '../ts';

/** `on` or `off` as a boolean; anything else is an error that names the flag. */
export function onOff(flag: string, v: string): boolean {
  if (v !== 'on' && v !== 'off') throw new Error(`${flag} must be on or off, got ${v}`);
  return v === 'on';
}

/** The model's optimizer: the paper's Adam, or SGD with momentum 0.9 (`--optimizer`). */
export type OptimizerKind = 'adam' | 'sgd';

export function optimizerKind(flag: string, v: string): OptimizerKind {
  if (v !== 'adam' && v !== 'sgd') throw new Error(`${flag} must be adam or sgd, got ${v}`);
  return v;
}

export function modelOptimizer(kind: OptimizerKind, lr: number | Schedule): Optimizer {
  return kind === 'sgd' ? new SGD({ lr, momentum: 0.9 }) : new Adam({ lr });
}

/** How a results file names the optimizer. */
export function optimizerName(kind: OptimizerKind): string {
  return kind === 'sgd' ? 'SGD (momentum 0.9)' : 'Adam';
}
