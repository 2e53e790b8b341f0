// In-memory classification data: rows of float32 features with int32 labels in [0, classes).
// The constructor checks every label against `classes`, so a Dataset's labels fit it (as long
// as nobody writes into `labels` afterwards; the trainer checks again before training).
import { describe } from '../check';
import { Random } from '../random';

export class Dataset {
  constructor(
    readonly name: string,
    /** [count, features], row-major */
    readonly inputs: Float32Array,
    readonly labels: Int32Array,
    readonly features: number,
    readonly classes: number,
  ) {
    if (typeof name !== 'string') throw new TypeError(`Dataset: 'name' must be a string, got ${describe(name)}`);
    if (!(inputs instanceof Float32Array)) throw new TypeError(`Dataset ${name}: 'inputs' must be a Float32Array`);
    if (!(labels instanceof Int32Array)) throw new TypeError(`Dataset ${name}: 'labels' must be an Int32Array`);
    sizeArgument(name, 'features', features);
    // NaN or a missing count would let every label through the range check below.
    sizeArgument(name, 'classes', classes);
    if (inputs.length !== labels.length * features)
      throw new RangeError(`Dataset ${name}: ${inputs.length} input values do not make ${labels.length} rows of ${features}`);
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] < 0 || labels[i] >= classes)
        throw new RangeError(`Dataset ${name}: label ${labels[i]} at row ${i} is outside [0, ${classes})`);
    }
  }

  get count(): number {
    return this.labels.length;
  }

  /** The first `n` rows (views, no copy); all of them when there are fewer. */
  head(n: number): Dataset {
    if (typeof n !== 'number') throw new TypeError(`Dataset.head: 'n' must be a number, got ${describe(n)}`);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`Dataset.head: 'n' must be a non-negative integer, got ${n}`);
    n = Math.min(n, this.count);
    return new Dataset(`${this.name}[:${n}]`, this.inputs.subarray(0, n * this.features), this.labels.subarray(0, n),
      this.features, this.classes);
  }

  /** Copies the rows `indices[start..end)` into a batch. */
  gather(indices: ArrayLike<number>, start: number, end: number): { inputs: Float32Array; labels: Int32Array } {
    const n = end - start;
    const f = this.features;
    const inputs = new Float32Array(n * f);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const row = indices[start + i];
      inputs.set(this.inputs.subarray(row * f, row * f + f), i * f);
      labels[i] = this.labels[row];
    }
    return { inputs, labels };
  }

  /** Row order for one epoch: shuffled with `rng`, or in order without it. */
  order(rng?: Random): Uint32Array {
    const idx = new Uint32Array(this.count);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    return rng ? rng.shuffle(idx) : idx;
  }
}

/** A count argument of the constructor: a number (TypeError) that is a positive integer (RangeError). */
function sizeArgument(dataset: string, name: string, v: unknown): void {
  if (typeof v !== 'number') throw new TypeError(`Dataset ${dataset}: '${name}' must be a positive integer, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`Dataset ${dataset}: '${name}' must be a positive integer, got ${v}`);
}
