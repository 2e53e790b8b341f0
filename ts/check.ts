// Argument checks shared by the TypeScript API: errors name the function, the argument and
// what was expected, like the native addon's. Options objects are checked at run time, not
// only by the TypeScript types: JavaScript callers get no types, and a misspelled key that
// is silently ignored leaves a default in force that the caller believes they changed.
import { rangeError, typeError } from './errors';

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return `${typeof v} ${String(v)}`;
}

/** A value as error messages show it, never throwing: primitives as String() writes them, objects described. */
export function shown(v: unknown): string {
  if (Array.isArray(v) && v.every((x) => ['number', 'string', 'boolean'].includes(typeof x))) return String(v);
  return v !== null && (typeof v === 'object' || typeof v === 'function') ? describe(v) : String(v);
}

export function positiveInt(owner: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw typeof v === 'number'
      ? rangeError(`${owner}: '${name}' must be a positive integer, got ${v}`)
      : typeError(`${owner}: '${name}' must be a positive integer, got ${describe(v)}`);
  return v;
}

/**
 * `make()`, a host array of `n` values for `owner`'s `what`; a size the process cannot
 * allocate (V8's typed-array limit, or memory) is a RangeError naming them, not the engine's.
 */
export function hostArray<T>(owner: string, what: string, n: number, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if (e instanceof RangeError) throw rangeError(`${owner}: ${what} needs ${n} values on the host, more than this process can allocate`);
    throw e;
  }
}

/** `v`, or `fallback` when undefined; anything but a boolean is a TypeError (no truthiness: "no" is not false). */
export function booleanOption(owner: string, name: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw typeError(`${owner}: '${name}' must be a boolean, got ${describe(v)}`);
  return v;
}

/** `v`, or `fallback` when undefined; a non-number (e.g. the string "0.5") is a TypeError. */
export function numberOption(owner: string, name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw typeError(`${owner}: '${name}' must be a number, got ${describe(v)}`);
  return v;
}

/**
 * Checks an options object: undefined passes (the caller's defaults apply); anything but a
 * plain object is a TypeError, and so is any own key not in `known`, named with the closest
 * known key when one is near ("fit: unknown option 'batchsize' (did you mean 'batchSize'?)").
 * `name` is the options' path for nested objects (e.g. 'synthesizer'), used in both messages.
 */
export function checkOptions(owner: string, options: unknown, known: readonly string[], name?: string): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw typeError(`${owner}: '${name ?? 'options'}' must be an object, got ${describe(options)}`);
  const prefix = name ? `${name}.` : '';
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const near = closest(key, known);
    const hint = near !== undefined ? `did you mean '${prefix}${near}'?` : known.length ? `known: ${known.join(', ')}` : 'it takes none';
    throw typeError(`${owner}: unknown option '${prefix}${key}' (${hint})`);
  }
}

/**
 * The known key nearest to `key` (case-insensitive edit distance, adjacent swaps counting
 * one), when it is near enough to be a likely misspelling: within a third of the key's length.
 */
export function closest(key: string, known: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(key.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[(i - 1) * cols + j] + 1, d[i * cols + j - 1] + 1, d[(i - 1) * cols + j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[(i - 2) * cols + j - 2] + 1);
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1];
}
