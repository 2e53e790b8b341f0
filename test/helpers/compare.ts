// The one comparison of computed values against a reference: for the tests (against the float64
// references of ./reference.ts) and for `npm run gpu:check` (bench/gpu_check.ts: the CUDA
// backend against the CPU backend, on a GPU machine). Both judge a result by its worst
// element's error relative to a yardstick; they differ only in options:
//   - the yardstick: |want[i]| (default) or a per-element error scale (`scale`, e.g. the sum of
//     the magnitudes of the terms a GEMM added, when they cancel), never below `floor`;
//   - non-finite values: by default a NaN or infinity never passes (the GPU check: a kernel
//     that produces one is wrong); with nonFinite: 'equal-passes', one that the reference holds
//     too passes (a float64 reference of an op whose result overflows or is NaN by design).
// It imports nothing from jest, so that the benchmark harness can use it outside the tests.

export type Vec = ArrayLike<number>;

/** float32's unit roundoff. */
export const U = 2 ** -24;

/** The fp32 tolerance of one backend against another (DESIGN.md, "Measuring"). */
export const TOL = 1e-5;

export interface CompareReport {
  /** max over i of |got[i] - want[i]| / max(yardstick[i], floor); Infinity for a failing non-finite value or a length mismatch */
  worst: number;
  /** where the worst error is (-1 when the arrays are empty) */
  index: number;
  got: number;
  want: number;
  /** elements where got or want is NaN or infinite and the pair does not pass */
  nonFinite: number;
  /** set when the lengths differ */
  lengthMismatch?: string;
}

export interface CompareOptions {
  /** the per-element error scale; default |want[i]| */
  scale?: Vec;
  /** the least yardstick, one for all or one per element; default 1e-30 */
  floor?: number | Vec;
  /** default 'fails' */
  nonFinite?: 'fails' | 'equal-passes';
}

/** Worst relative error of `got` against the reference `want` (see the file's header). */
export function compare(got: Vec, want: Vec, options: CompareOptions = {}): CompareReport {
  const { scale, floor = 1e-30, nonFinite = 'fails' } = options;
  const r: CompareReport = { worst: 0, index: -1, got: NaN, want: NaN, nonFinite: 0 };
  if (got.length !== want.length || (scale && scale.length !== want.length)) {
    r.worst = Infinity;
    r.lengthMismatch = `got ${got.length} elements, want ${want.length}` + (scale ? `, scale ${scale.length}` : '');
    return r;
  }
  for (let i = 0; i < want.length; i++) {
    const a = got[i],
      b = want[i];
    let err: number;
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      const same = a === b || (Number.isNaN(a) && Number.isNaN(b));
      err = nonFinite === 'equal-passes' && same ? 0 : Infinity;
      if (err !== 0) r.nonFinite++;
    } else {
      const s = scale ? scale[i] : Math.abs(b);
      err = Math.abs(a - b) / Math.max(s, typeof floor === 'number' ? floor : floor[i]);
      if (Number.isNaN(err)) err = Infinity;
    }
    if (err > r.worst || r.index < 0) {
      r.worst = err;
      r.index = i;
      r.got = a;
      r.want = b;
    }
  }
  return r;
}

/** Bit-for-bit equality (NaN payloads included); worst is 0 or Infinity. */
export function compareBits(got: Float32Array | Int32Array, want: Float32Array | Int32Array): CompareReport {
  const r: CompareReport = { worst: 0, index: -1, got: NaN, want: NaN, nonFinite: 0 };
  if (got.length !== want.length) {
    r.worst = Infinity;
    r.lengthMismatch = `got ${got.length} elements, want ${want.length}`;
    return r;
  }
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) {
      if (r.index < 0) {
        r.worst = Infinity;
        r.index = i;
        r.got = got[i];
        r.want = want[i];
      }
      r.nonFinite += Number.isFinite(got[i]) && Number.isFinite(want[i]) ? 0 : 1;
    }
  }
  if (r.index < 0) r.index = w.length ? 0 : -1;
  return r;
}

/** A report as one line; `names` says what got and want are (e.g. gpu and cpu). */
export function describeReport(r: CompareReport, names: { got: string; want: string } = { got: 'got', want: 'want' }): string {
  if (r.lengthMismatch) return `length mismatch: ${r.lengthMismatch}`;
  if (r.index < 0) return 'empty';
  return (
    `worst relative error ${fmt(r.worst)} at [${r.index}]: ${names.got} ${r.got}, ${names.want} ${r.want}` +
    (r.nonFinite ? ` (${r.nonFinite} non-finite)` : '')
  );
}

/** The GEMM tolerance between two float32 backends: the dot-product bound (K + 2) u, twice. */
export function gemmTolerance(K: number): number {
  return 2 * (K + 2) * U;
}

/** fn over the elements of a, as float64 (a plain loop: Float64Array.from(a, fn) is slow on typed arrays). */
export function mapF64(a: Vec, fn: (v: number, i: number) => number): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = fn(a[i], i);
  return out;
}

/** A number in reports: 0, Infinity/NaN, else 3 significant digits. */
export function fmt(x: number): string {
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  return x.toExponential(2);
}
