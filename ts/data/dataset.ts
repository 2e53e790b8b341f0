// In-memory classification data: rows of float32 features with int32 labels.
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
    if (!(inputs instanceof Float32Array)) throw new TypeError(`Dataset ${name}: 'inputs' must be a Float32Array`);
    if (!(labels instanceof Int32Array)) throw new TypeError(`Dataset ${name}: 'labels' must be an Int32Array`);
    if (!Number.isInteger(features) || features < 1) throw new RangeError(`Dataset ${name}: 'features' must be a positive integer`);
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

  /** The first `n` rows (views, no copy). */
  head(n: number): Dataset {
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
