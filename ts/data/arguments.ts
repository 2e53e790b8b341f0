// Argument checks shared by the sequence sources (./copy.ts, ./text.ts, ./curriculum.ts).
import { describe } from '../check';
import { rangeError, typeError } from '../errors';

/** The `steps` argument of nextWindow(): a positive integer (TypeError for a non-number). */
export function stepsArgument(owner: string, steps: unknown): number {
  if (typeof steps !== 'number') throw typeError(`${owner}: 'steps' must be a positive integer, got ${describe(steps)}`);
  if (!Number.isInteger(steps) || steps < 1) throw rangeError(`${owner}: 'steps' must be a positive integer, got ${steps}`);
  return steps;
}

/** A count option (batch, window, …): a positive integer (TypeError for a non-number). */
export function countArgument(owner: string, name: string, v: unknown): number {
  if (typeof v !== 'number') throw typeError(`${owner}: '${name}' must be a positive integer, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1) throw rangeError(`${owner}: '${name}' must be a positive integer, got ${v}`);
  return v;
}
