// In-memory data: rows of float32 features, each with a target. Classification: int32 labels
// in [0, classes), one per row. Regression: float32 values, `outputs` per row (the model's output
// width). The constructor checks every label against `classes`, so a Dataset's labels fit it
// (as long as nobody writes into `labels` afterwards; the trainer checks again before training).
// Each row may have a shape (images: [channels, height, width]); the trainer then feeds
// batches of [rows, ...shape]. Without one a row is a vector of `features` values.
import { describe } from '../check';
import { Random } from '../random';
import { rangeError, typeError } from '../errors';

export type Task = 'classification' | 'regression';

/** Rows copied out of a Dataset: the inputs and the targets (labels, or regression values). */
export interface Batch {
  inputs: Float32Array;
  /** int32 labels [rows], or float32 values [rows, outputs] */
  targets: Int32Array | Float32Array;
  /** the labels, for classification data (empty for regression) */
  labels: Int32Array;
}

export class Dataset {
  readonly task: Task;
  /** classification: one label per row; regression: empty */
  readonly labels: Int32Array;
  /** regression: [count, outputs] row-major; classification: empty */
  readonly values: Float32Array;
  /** classification: the number of classes; regression: 0 */
  readonly classes: number;
  /** the width of the model's output the targets need: the classes, or the values per row */
  readonly outputs: number;
  /** the shape of one row (e.g. [1, 28, 28]); its product is `features`; default [features] */
  readonly shape: readonly number[];

  /**
   * `targets` decides the task: an Int32Array of labels (classification; `classes` is their
   * count) or a Float32Array of values (regression; `classes` is then the number of values per
   * row, the model's output width). Dataset.fromArrays() takes plain arrays.
   */
  constructor(
    readonly name: string,
    /** [count, features], row-major */
    readonly inputs: Float32Array,
    targets: Int32Array | Float32Array,
    readonly features: number,
    classes: number,
    shape?: readonly number[],
  ) {
    if (typeof name !== 'string') throw typeError(`Dataset: 'name' must be a string, got ${describe(name)}`);
    if (!(inputs instanceof Float32Array)) throw typeError(`Dataset ${name}: 'inputs' must be a Float32Array`);
    if (!(targets instanceof Int32Array) && !(targets instanceof Float32Array))
      throw typeError(
        `Dataset ${name}: 'labels' must be an Int32Array (classes) or a Float32Array (regression values), got ${describe(targets)}`,
      );
    sizeArgument(name, 'features', features);
    // NaN or a missing count would let every label through the range check below.
    sizeArgument(name, 'classes', classes);
    this.shape = rowShape(name, shape, features);
    this.task = targets instanceof Int32Array ? 'classification' : 'regression';
    this.outputs = classes;
    if (targets instanceof Int32Array) {
      this.labels = targets;
      this.values = new Float32Array(0);
      this.classes = classes;
      if (inputs.length !== targets.length * features)
        throw rangeError(`Dataset ${name}: ${inputs.length} input values do not make ${targets.length} rows of ${features}`);
      for (let i = 0; i < targets.length; i++) {
        if (targets[i] < 0 || targets[i] >= classes)
          throw rangeError(`Dataset ${name}: label ${targets[i]} at row ${i} is outside [0, ${classes})`);
      }
    } else {
      this.labels = new Int32Array(0);
      this.values = targets;
      this.classes = 0;
      if (inputs.length % features !== 0 || targets.length !== (inputs.length / features) * classes)
        throw rangeError(
          `Dataset ${name}: ${inputs.length} input values in rows of ${features} and ${targets.length} target values in rows of ${classes} do not make the same number of rows`,
        );
      const bad = firstNonFinite(targets);
      if (bad >= 0) throw rangeError(`Dataset ${name}: target value ${targets[bad]} at row ${Math.floor(bad / classes)} is not finite`);
    }
  }

  /**
   * A Dataset from plain arrays. `inputs`: rows (number[][]) or a Float32Array with
   * `features`. `targets`: labels (an Int32Array, or numbers with `classes` given) make a
   * classification set, with `classes` defaulting to the largest label + 1; anything else
   * (a Float32Array, rows of numbers, or numbers without `classes`) is regression targets.
   */
  static fromArrays(
    inputs: Float32Array | readonly (readonly number[])[],
    targets: Int32Array | Float32Array | readonly number[] | readonly (readonly number[])[],
    options: { name?: string; features?: number; classes?: number; shape?: readonly number[] } = {},
  ): Dataset {
    if (!options || typeof options !== 'object')
      throw typeError(`Dataset.fromArrays: 'options' must be an object, got ${describe(options)}`);
    for (const key of Object.keys(options))
      if (!['name', 'features', 'classes', 'shape'].includes(key))
        throw typeError(`Dataset.fromArrays: unknown option '${key}' (known: name, features, classes, shape)`);
    const name = options.name ?? 'data';
    const shape = options.shape;
    // A shape alone says how many values a row has.
    if (options.features === undefined && Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d > 0))
      options = { ...options, features: shape.reduce((a, b) => a * b, 1) };
    let x: Float32Array;
    let features: number;
    if (inputs instanceof Float32Array) {
      if (options.features === undefined)
        throw typeError("Dataset.fromArrays: a Float32Array of inputs needs 'features' (the values per row)");
      x = inputs;
      features = options.features;
    } else if (Array.isArray(inputs)) {
      if (inputs.length === 0) throw rangeError("Dataset.fromArrays: 'inputs' has no rows");
      features = rowsWidth('inputs', inputs);
      if (options.features !== undefined && options.features !== features)
        throw rangeError(`Dataset.fromArrays: 'features' is ${options.features} but the input rows have ${features} values`);
      x = Float32Array.from(inputs.flat());
    } else {
      throw typeError(`Dataset.fromArrays: 'inputs' must be a Float32Array or an array of rows, got ${describe(inputs)}`);
    }
    const rows = features > 0 ? x.length / features : 0;
    if (targets instanceof Int32Array) return new Dataset(name, x, targets, features, options.classes ?? maxLabel(targets) + 1, shape);
    if (targets instanceof Float32Array) return new Dataset(name, x, targets, features, rows > 0 ? targets.length / rows : 1, shape);
    if (!Array.isArray(targets)) throw typeError(`Dataset.fromArrays: 'targets' must be an array, got ${describe(targets)}`);
    if (targets.length > 0 && Array.isArray(targets[0])) {
      const rowsOfTargets = targets as readonly (readonly number[])[];
      return new Dataset(name, x, Float32Array.from(rowsOfTargets.flat()), features, rowsWidth('targets', rowsOfTargets), shape);
    }
    const flat = targets as readonly number[];
    if (options.classes !== undefined) {
      const bad = flat.findIndex((v) => !Number.isInteger(v));
      if (bad >= 0)
        throw rangeError(`Dataset.fromArrays: with 'classes', targets are labels: ${flat[bad]} at row ${bad} is not an integer`);
      return new Dataset(name, x, Int32Array.from(flat), features, options.classes, shape);
    }
    return new Dataset(name, x, Float32Array.from(flat), features, 1, shape);
  }

  get count(): number {
    return this.inputs.length / this.features;
  }

  /** The targets of every row: the labels, or the regression values. */
  get targets(): Int32Array | Float32Array {
    return this.task === 'classification' ? this.labels : this.values;
  }

  /** The first `n` rows (views, no copy); all of them when there are fewer. */
  head(n: number): Dataset {
    if (typeof n !== 'number') throw typeError(`Dataset.head: 'n' must be a number, got ${describe(n)}`);
    if (!Number.isInteger(n) || n < 0) throw rangeError(`Dataset.head: 'n' must be a non-negative integer, got ${n}`);
    n = Math.min(n, this.count);
    const targets = this.task === 'classification' ? this.labels.subarray(0, n) : this.values.subarray(0, n * this.outputs);
    return new Dataset(`${this.name}[:${n}]`, this.inputs.subarray(0, n * this.features), targets, this.features, this.outputs, this.shape);
  }

  /** Copies the rows `indices[start..end)` into a batch. */
  gather(indices: ArrayLike<number>, start: number, end: number): Batch {
    const where = `Dataset ${this.name}: gather`;
    if (indices === null || typeof indices !== 'object' || typeof indices.length !== 'number')
      throw typeError(`${where}: 'indices' must be an array of row numbers, got ${describe(indices)}`);
    if (typeof start !== 'number' || !Number.isInteger(start) || start < 0 || start > indices.length)
      throw rangeError(`${where}: 'start' must be an integer in [0, ${indices.length}], got ${shown(start)}`);
    if (typeof end !== 'number' || !Number.isInteger(end) || end < start || end > indices.length)
      throw rangeError(`${where}: 'end' must be an integer in [${start}, ${indices.length}], got ${shown(end)}`);
    for (let i = start; i < end; i++) {
      const row = indices[i];
      if (!Number.isInteger(row) || row < 0 || row >= this.count)
        throw rangeError(`${where}: 'indices[${i}]' must be a row number in [0, ${this.count}), got ${shown(row)}`);
    }
    const n = end - start;
    const f = this.features;
    const inputs = new Float32Array(n * f);
    for (let i = 0; i < n; i++) {
      const row = indices[start + i];
      inputs.set(this.inputs.subarray(row * f, row * f + f), i * f);
    }
    if (this.task === 'regression') {
      const w = this.outputs;
      const values = new Float32Array(n * w);
      for (let i = 0; i < n; i++) values.set(this.values.subarray(indices[start + i] * w, indices[start + i] * w + w), i * w);
      return { inputs, targets: values, labels: new Int32Array(0) };
    }
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) labels[i] = this.labels[indices[start + i]];
    return { inputs, targets: labels, labels };
  }

  /** Row order for one epoch: shuffled with `rng`, or in order without it. */
  order(rng?: Random): Uint32Array {
    const idx = new Uint32Array(this.count);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    return rng ? rng.shuffle(idx) : idx;
  }
}

/** A value for an error message: numbers as they are, anything else described. */
function shown(v: unknown): string {
  return typeof v === 'number' ? String(v) : describe(v);
}

/** A count argument of the constructor: a number (TypeError) that is a positive integer (RangeError). */
function sizeArgument(dataset: string, name: string, v: unknown): void {
  if (typeof v !== 'number') throw typeError(`Dataset ${dataset}: '${name}' must be a positive integer, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1) throw rangeError(`Dataset ${dataset}: '${name}' must be a positive integer, got ${v}`);
}

/** A row's shape: positive integers whose product is `features`; [features] when not given. */
function rowShape(dataset: string, shape: readonly number[] | undefined, features: number): readonly number[] {
  if (shape === undefined) return Object.freeze([features]);
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d > 0))
    throw rangeError(`Dataset ${dataset}: 'shape' must be a non-empty array of positive integers, got ${describe(shape)}`);
  const size = shape.reduce((a: number, b: number) => a * b, 1);
  if (size !== features)
    throw rangeError(`Dataset ${dataset}: 'shape' [${shape.join(', ')}] holds ${size} values per row, but rows have ${features} features`);
  return Object.freeze([...shape]);
}

/** The width of every row of a non-empty array of rows (they must agree). */
function rowsWidth(what: string, rows: readonly (readonly number[])[]): number {
  if (!Array.isArray(rows[0])) throw typeError(`Dataset.fromArrays: '${what}' must be an array of rows (arrays of numbers)`);
  const width = rows[0].length;
  const bad = rows.findIndex((r) => !Array.isArray(r) || r.length !== width);
  if (bad >= 0)
    throw rangeError(
      `Dataset.fromArrays: row ${bad} of '${what}' has ${Array.isArray(rows[bad]) ? rows[bad].length : 'no'} values, row 0 has ${width}`,
    );
  return width;
}

function maxLabel(labels: Int32Array): number {
  let max = -1;
  for (const l of labels) if (l > max) max = l;
  return max;
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}
