// Command-line flags of the benchmark and experiment scripts, with the convention of `npm start`
// (ts/cli/flags.ts: --kebab-case, `--flag value` or `--flag=value`, unknown flags an error that
// lists the known ones).
import { numberFlag } from '../ts/cli/flags';
export { flagValues as benchFlags, numberFlag } from '../ts/cli/flags';

/** `on` or `off` as a boolean; anything else is an error that names the flag. */
export function onOff(flag: string, v: string): boolean {
  if (v !== 'on' && v !== 'off') throw new Error(`${flag} must be on or off, got ${v}`);
  return v === 'on';
}

/**
 * A results file's base name (bench/results/NAME.md or experiments/EXPERIMENT/results/NAME.md):
 * letters, digits, '.', '_' and '-' only.
 */
export function resultName(flag: string, v: string): string {
  if (!/^[\w.-]+$/.test(v)) throw new Error(`${flag} must be a file name without a directory, got ${v}`);
  return v;
}

// The model-optimizer choice is the one `npm start` offers.
export type { OptimizerKind } from '../ts/cli/options';
export { modelOptimizer, optimizerKind, optimizerName } from '../ts/cli/options';

/** A flag's value as a positive integer (e.g. `--rounds 3`). */
export function positiveIntFlag(flag: string, v: string): number {
  const n = numberFlag(flag, v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${v}`);
  return n;
}
