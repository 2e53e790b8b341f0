// The convolution-family ops on the CPU device: conv2dForward/Backward, maxPool2dForward/Backward,
// avgPool2dForward/Backward and swapLastAxes (NCHW float32).
//   - forwards and backwards against float64 references written here as direct loops over
//     the windows, evaluated on the very float32 values the tensors hold: batch 1 and 3,
//     channels 1/3/8, non-square images and kernels, stride 2, size-preserving padding for odd
//     kernels, 1x1 kernels, and a batch large enough that the CPU kernel takes it in several
//     groups of images;
//   - backwards against float64 central finite differences of the reference forward of a
//     scalar objective (small cases);
//   - max pooling's ties and NaNs, average pooling's divisor (padding not counted);
//   - bit-identical results for 1 and 2 threads; argument errors that name the argument.
// Tolerances: a convolution output is a sum of C KH KW products, so it is judged relative to
// the sum of the magnitudes of its terms (1e-5: float32 sums of <= 200 terms are off by a few
// 1e-7 of that); pools and transposes are exact or one rounding; analytic gradients against
// finite differences 1e-4 with a floor of 1e-2 of the gradient's scale. A wrong index (a
// flipped kernel, a missing stride) is off by O(1).
import { native, NativeTensor } from '../ts/native';
import { Random } from '../ts/random';
import * as ref from './helpers/reference';
import { expectClose, expectExact } from './helpers/reference';
import { cpuTensors } from './helpers/native-tensors';
import { expectThrows } from './helpers/errors';

const stream = new native.Stream('cpu');
const ops = native.ops;
const { upload, filled, read } = cpuTensors(stream);

// ---- geometry and float64 references -------------------------------------------------------

interface Geo {
  N: number;
  C: number;
  H: number;
  W: number;
  /** output channels (a pool: C) */
  K: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
}

function outDims(g: Geo): { OH: number; OW: number } {
  return { OH: Math.floor((g.H + 2 * g.ph - g.kh) / g.sh) + 1, OW: Math.floor((g.W + 2 * g.pw - g.kw) / g.sw) + 1 };
}

function tag(g: Geo): string {
  return `x [${g.N}, ${g.C}, ${g.H}, ${g.W}] K ${g.K} kernel ${g.kh}x${g.kw} stride ${g.sh},${g.sw} pad ${g.ph},${g.pw}`;
}

/**
 * The convolution's terms as three flat index lists (output, filter, input), for every product
 * of an output's window with its image elements (padding skipped), built once per geometry:
 * the references below then run plain loops over typed arrays.
 */
const termCache = new Map<string, { yi: Int32Array; wi: Int32Array; xi: Int32Array }>();
function terms(g: Geo): { yi: Int32Array; wi: Int32Array; xi: Int32Array } {
  const cached = termCache.get(tag(g));
  if (cached) return cached;
  const { OH, OW } = outDims(g);
  const max = g.N * g.K * OH * OW * g.C * g.kh * g.kw;
  const yi = new Int32Array(max),
    wi = new Int32Array(max),
    xi = new Int32Array(max);
  let e = 0;
  for (let n = 0; n < g.N; n++)
    for (let k = 0; k < g.K; k++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++)
          for (let c = 0; c < g.C; c++)
            for (let i = 0; i < g.kh; i++) {
              const ih = oh * g.sh - g.ph + i;
              if (ih < 0 || ih >= g.H) continue;
              for (let j = 0; j < g.kw; j++) {
                const iw = ow * g.sw - g.pw + j;
                if (iw < 0 || iw >= g.W) continue;
                yi[e] = ((n * g.K + k) * OH + oh) * OW + ow;
                wi[e] = ((k * g.C + c) * g.kh + i) * g.kw + j;
                xi[e++] = ((n * g.C + c) * g.H + ih) * g.W + iw;
              }
            }
  const t = { yi: yi.subarray(0, e), wi: wi.subarray(0, e), xi: xi.subarray(0, e) };
  termCache.set(tag(g), t);
  return t;
}

/** y = conv(x, w) + b and, per output, the sum of the magnitudes of its terms. */
function convRef(xv: ref.Vec, wv: ref.Vec, b: ref.Vec | null, g: Geo): { y: Float64Array; scale: Float64Array } {
  const x = ref.f64(xv),
    w = ref.f64(wv);
  const { OH, OW } = outDims(g);
  const y = new Float64Array(g.N * g.K * OH * OW),
    scale = new Float64Array(y.length);
  for (let n = 0; n < g.N; n++)
    for (let k = 0; k < g.K; k++)
      for (let q = 0; q < OH * OW; q++) {
        const o = (n * g.K + k) * OH * OW + q;
        y[o] = b ? b[k] : 0;
        scale[o] = b ? Math.abs(b[k]) : 0;
      }
  const { yi, wi, xi } = terms(g);
  for (let e = 0; e < yi.length; e++) {
    const p = w[wi[e]] * x[xi[e]];
    y[yi[e]] += p;
    scale[yi[e]] += Math.abs(p);
  }
  return { y, scale };
}

/** dx, dw, db of the convolution for the output gradient dy, with their error scales. */
function convBackwardRef(xv: ref.Vec, wv: ref.Vec, dyv: ref.Vec, g: Geo) {
  const x = ref.f64(xv),
    w = ref.f64(wv),
    dy = ref.f64(dyv);
  const dx = new Float64Array(x.length),
    dw = new Float64Array(w.length),
    db = new Float64Array(g.K);
  const dxScale = new Float64Array(x.length),
    dwScale = new Float64Array(w.length),
    dbScale = new Float64Array(g.K);
  const { yi, wi, xi } = terms(g);
  for (let e = 0; e < yi.length; e++) {
    const a = dy[yi[e]] * w[wi[e]],
      b = dy[yi[e]] * x[xi[e]];
    dx[xi[e]] += a;
    dxScale[xi[e]] += Math.abs(a);
    dw[wi[e]] += b;
    dwScale[wi[e]] += Math.abs(b);
  }
  const { OH, OW } = outDims(g);
  for (let n = 0; n < g.N; n++)
    for (let k = 0; k < g.K; k++)
      for (let q = 0; q < OH * OW; q++) {
        db[k] += dy[(n * g.K + k) * OH * OW + q];
        dbScale[k] += Math.abs(dy[(n * g.K + k) * OH * OW + q]);
      }
  return { dx, dw, db, dxScale, dwScale, dbScale };
}

/** The image elements of each output's window, in row-major order, as plane-relative indices. */
const windowCache = new Map<string, { plane: number; out: number; idx: number[] }[]>();
function windows(g: Geo): { plane: number; out: number; idx: number[] }[] {
  const cached = windowCache.get(tag(g));
  if (cached) return cached;
  const { OH, OW } = outDims(g);
  const list: { plane: number; out: number; idx: number[] }[] = [];
  for (let p = 0; p < g.N * g.C; p++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        const idx: number[] = [];
        for (let i = 0; i < g.kh; i++)
          for (let j = 0; j < g.kw; j++) {
            const ih = oh * g.sh - g.ph + i,
              iw = ow * g.sw - g.pw + j;
            if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) idx.push(p * g.H * g.W + ih * g.W + iw);
          }
        list.push({ plane: p, out: (p * OH + oh) * OW + ow, idx });
      }
  windowCache.set(tag(g), list);
  return list;
}

/** The first maximum in row-major order; the first NaN wins over numbers. */
function argmaxOf(x: ref.Vec, idx: number[]): number {
  let best = idx[0];
  for (const i of idx) if (x[i] > x[best] || (x[i] !== x[i] && x[best] === x[best])) best = i;
  return best;
}

function poolRef(kind: 'max' | 'avg', x: ref.Vec, g: Geo): Float64Array {
  const { OH, OW } = outDims(g);
  const y = new Float64Array(g.N * g.C * OH * OW);
  for (const win of windows(g)) {
    if (kind === 'max') y[win.out] = x[argmaxOf(x, win.idx)];
    else y[win.out] = win.idx.reduce((s, i) => s + x[i], 0) / win.idx.length;
  }
  return y;
}

function poolBackwardRef(kind: 'max' | 'avg', x: ref.Vec, dy: ref.Vec, g: Geo): Float64Array {
  const dx = new Float64Array(g.N * g.C * g.H * g.W);
  for (const win of windows(g)) {
    if (kind === 'max') dx[argmaxOf(x, win.idx)] += dy[win.out];
    else for (const i of win.idx) dx[i] += dy[win.out] / win.idx.length;
  }
  return dx;
}

// ---- native calls ---------------------------------------------------------------------------

function conv(g: Geo, x: NativeTensor, w: NativeTensor, b: NativeTensor | null): NativeTensor {
  const { OH, OW } = outDims(g);
  const y = filled([g.N, g.K, OH, OW]);
  ops.conv2dForward(stream, x, w, b, y, g.sh, g.sw, g.ph, g.pw);
  return y;
}

function pool(kind: 'max' | 'avg', g: Geo, x: NativeTensor): NativeTensor {
  const { OH, OW } = outDims(g);
  const y = filled([g.N, g.C, OH, OW]);
  const f = kind === 'max' ? ops.maxPool2dForward : ops.avgPool2dForward;
  f(stream, x, y, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw);
  return y;
}

function poolBackward(kind: 'max' | 'avg', g: Geo, x: NativeTensor, dy: NativeTensor): NativeTensor {
  const dx = filled([g.N, g.C, g.H, g.W]);
  if (kind === 'max') ops.maxPool2dBackward(stream, x, dy, dx, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw);
  else ops.avgPool2dBackward(stream, dy, dx, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw);
  return dx;
}

function geo(
  N: number,
  C: number,
  H: number,
  W: number,
  K: number,
  k: number | [number, number],
  s: number | [number, number],
  p: number | [number, number],
): Geo {
  const [kh, kw] = typeof k === 'number' ? [k, k] : k;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  const [ph, pw] = typeof p === 'number' ? [p, p] : p;
  return { N, C, H, W, K, kh, kw, sh, sw, ph, pw };
}

const CONV_CASES: Geo[] = [
  geo(1, 1, 5, 5, 1, 3, 1, 1), // 'same' 3x3, batch 1, one channel
  geo(3, 3, 7, 9, 8, 3, 2, 1), // stride 2, non-square image
  geo(3, 8, 6, 5, 3, 5, 1, 2), // 'same' 5x5
  geo(1, 3, 8, 4, 8, 1, 1, 0), // 1x1
  geo(2, 8, 9, 11, 5, [3, 2], [2, 3], [0, 1]), // non-square kernel, strides and padding
  geo(3, 1, 4, 6, 2, [4, 6], 1, 0), // the kernel covers the image: 1x1 outputs
  // Sizes that cut the CPU kernel's blocks inside images and rows: forward blocks of 2592
  // columns across 6 images of 30 x 30 pixels (C KH KW = 25); dx in blocks of 5 output rows
  // (C KH KW = 400), and of 12 rows with stride 2 (C KH KW = 576, 21 output rows); the filter
  // gradient's depth slices of at most 256 columns everywhere.
  geo(6, 1, 30, 30, 3, 5, 1, 2),
  geo(2, 16, 30, 31, 4, 5, 1, 2),
  geo(2, 64, 41, 19, 3, 3, 2, 1),
];

// =============================================================================================

describe('conv2dForward / conv2dBackward against float64 direct loops', () => {
  test.each(CONV_CASES.map((g) => [tag(g), g] as const))('%s', async (_, g) => {
    const rng = new Random(7 + g.N * 31 + g.C * 7 + g.kh);
    const { OH, OW } = outDims(g);
    const xs = ref.randomArray(rng, g.N * g.C * g.H * g.W);
    const ws = ref.randomArray(rng, g.K * g.C * g.kh * g.kw);
    const bs = ref.randomArray(rng, g.K);
    const dys = ref.randomArray(rng, g.N * g.K * OH * OW);
    const x = upload(xs, [g.N, g.C, g.H, g.W]),
      w = upload(ws, [g.K, g.C, g.kh, g.kw]);
    const want = convRef(xs, ws, bs, g);
    expectClose(`y ${tag(g)}`, await read(conv(g, x, w, upload(bs, [g.K]))), want.y, 1e-5, want.scale);
    const noBias = convRef(xs, ws, null, g);
    expectClose(`y without bias`, await read(conv(g, x, w, null)), noBias.y, 1e-5, noBias.scale);

    // dw and db accumulate onto what they hold; dx is overwritten (NaN before).
    const dw0 = ref.randomArray(rng, ws.length),
      db0 = ref.randomArray(rng, g.K);
    const dx = filled([g.N, g.C, g.H, g.W]),
      dw = upload(dw0, [g.K, g.C, g.kh, g.kw]),
      db = upload(db0, [g.K]);
    ops.conv2dBackward(stream, x, w, upload(dys, [g.N, g.K, OH, OW]), dx, dw, db, g.sh, g.sw, g.ph, g.pw);
    const r = convBackwardRef(xs, ws, dys, g);
    const plus = (a: ref.Vec, b: ref.Vec) => Float64Array.from(a, (v, i) => v + b[i]);
    const withAbs = (s: ref.Vec, a: ref.Vec) => Float64Array.from(s, (v, i) => v + Math.abs(a[i]));
    expectClose(
      'dx',
      await read(dx),
      r.dx,
      1e-5,
      Float64Array.from(r.dxScale, (v) => Math.max(v, 1e-30)),
    );
    expectClose('dw', await read(dw), plus(r.dw, dw0), 1e-5, withAbs(r.dwScale, dw0));
    expectClose('db', await read(db), plus(r.db, db0), 1e-6, withAbs(r.dbScale, db0));
  });

  test('each gradient alone (the others null) equals its part of the full call', async () => {
    const g = geo(3, 3, 7, 9, 8, 3, 2, 1);
    const { OH, OW } = outDims(g);
    const rng = new Random(11);
    const x = upload(ref.randomArray(rng, g.N * g.C * g.H * g.W), [g.N, g.C, g.H, g.W]);
    const w = upload(ref.randomArray(rng, g.K * g.C * 9), [g.K, g.C, 3, 3]);
    const dy = upload(ref.randomArray(rng, g.N * g.K * OH * OW), [g.N, g.K, OH, OW]);
    const all = [filled([g.N, g.C, g.H, g.W]), filled([g.K, g.C, 3, 3], 0), filled([g.K], 0)];
    ops.conv2dBackward(stream, x, w, dy, all[0], all[1], all[2], 2, 2, 1, 1);
    const dx = filled([g.N, g.C, g.H, g.W]),
      dw = filled([g.K, g.C, 3, 3], 0),
      db = filled([g.K], 0);
    ops.conv2dBackward(stream, x, w, dy, dx, null, null, 2, 2, 1, 1);
    ops.conv2dBackward(stream, x, w, dy, null, dw, null, 2, 2, 1, 1);
    ops.conv2dBackward(stream, x, w, dy, null, null, db, 2, 2, 1, 1);
    expectExact('dx', await read(dx), await read(all[0]));
    expectExact('dw', await read(dw), await read(all[1]));
    expectExact('db', await read(db), await read(all[2]));
  });

  test('a batch taken in several groups of images equals image-by-image calls', async () => {
    // (C KH KW + K) OH OW = 148 x 20000 floats per image: the CPU kernel's budget of 2^23 floats
    // per group of images takes these 3 images in 2 groups, one image alone in 1. sgemm sums
    // each output over C KH KW (y) or K (dx) in the same order either way: y and dx are
    // bit-identical; dw sums the groups' parts in a different order: close.
    const g = geo(3, 3, 100, 200, 1, 7, 1, 3);
    const plane = g.C * g.H * g.W;
    const rng = new Random(3);
    const xs = ref.randomArray(rng, g.N * plane),
      ws = ref.randomArray(rng, g.C * 49),
      dys = ref.randomArray(rng, g.N * g.H * g.W);
    const w = upload(ws, [1, g.C, 7, 7]);
    const x = upload(xs, [g.N, g.C, g.H, g.W]);
    const y = conv(g, x, w, null),
      dx = filled([g.N, g.C, g.H, g.W]),
      dw = filled([1, g.C, 7, 7], 0);
    ops.conv2dBackward(stream, x, w, upload(dys, [g.N, 1, g.H, g.W]), dx, dw, null, 1, 1, 3, 3);
    const one = { ...g, N: 1 };
    const ys: number[] = [],
      dxs: number[] = [],
      dwSum = new Float64Array(ws.length),
      dwScale = new Float64Array(ws.length);
    for (let n = 0; n < g.N; n++) {
      const xn = upload(xs.subarray(n * plane, (n + 1) * plane), [1, g.C, g.H, g.W]);
      ys.push(...(await read(conv(one, xn, w, null))));
      const dxn = filled([1, g.C, g.H, g.W]),
        dwn = filled([1, g.C, 7, 7], 0);
      ops.conv2dBackward(
        stream,
        xn,
        w,
        upload(dys.subarray(n * g.H * g.W, (n + 1) * g.H * g.W), [1, 1, g.H, g.W]),
        dxn,
        dwn,
        null,
        1,
        1,
        3,
        3,
      );
      dxs.push(...(await read(dxn)));
      (await read(dwn)).forEach((v, i) => {
        dwSum[i] += v;
        dwScale[i] += Math.abs(v);
      });
    }
    expectExact('y', await read(y), ys);
    expectExact('dx', await read(dx), dxs);
    expectClose('dw', await read(dw), dwSum, 1e-4, dwScale); // sums of 20000 terms each, regrouped
  });

  test('an empty batch writes nothing and accumulates nothing', async () => {
    const x = filled([0, 2, 5, 5]),
      w = upload(
        [...Array(2 * 2 * 9)].map((_, i) => i + 1),
        [2, 2, 3, 3],
      );
    const y = filled([0, 2, 5, 5]);
    ops.conv2dForward(stream, x, w, null, y, 1, 1, 1, 1);
    const dw = filled([2, 2, 3, 3], 1),
      db = filled([2], 1);
    ops.conv2dBackward(stream, x, w, filled([0, 2, 5, 5]), filled([0, 2, 5, 5]), dw, db, 1, 1, 1, 1);
    expectExact('dw', await read(dw), new Float32Array(36).fill(1));
    expectExact('db', await read(db), [1, 1]);
  });
});

describe('conv2dBackward against float64 finite differences', () => {
  test.each(
    [geo(1, 1, 4, 5, 1, 3, 1, 1), geo(3, 3, 5, 4, 2, 3, 2, 1), geo(2, 2, 6, 5, 3, [2, 3], [1, 2], [1, 0])].map((g) => [tag(g), g] as const),
  )('%s', async (_, g) => {
    const rng = new Random(23 + g.N);
    const { OH, OW } = outDims(g);
    const xs = ref.randomArray(rng, g.N * g.C * g.H * g.W),
      ws = ref.randomArray(rng, g.K * g.C * g.kh * g.kw),
      bs = ref.randomArray(rng, g.K),
      wts = ref.randomArray(rng, g.N * g.K * OH * OW);
    // objective sum(wts ⊙ conv(x, w) + b): its gradient w.r.t. the output is wts
    const objective = (xv: ref.Vec, wv: ref.Vec, bv: ref.Vec) => ref.dot(wts, convRef(xv, wv, bv, g).y);
    const dx = filled([g.N, g.C, g.H, g.W]),
      dw = filled([g.K, g.C, g.kh, g.kw], 0),
      db = filled([g.K], 0);
    const x = upload(xs, [g.N, g.C, g.H, g.W]),
      w = upload(ws, [g.K, g.C, g.kh, g.kw]);
    ops.conv2dBackward(stream, x, w, upload(wts, [g.N, g.K, OH, OW]), dx, dw, db, g.sh, g.sw, g.ph, g.pw);
    const grads: [string, NativeTensor, Float64Array][] = [
      ['dx', dx, ref.numericGrad((v) => objective(v, ws, bs), xs)],
      ['dw', dw, ref.numericGrad((v) => objective(xs, v, bs), ws)],
      ['db', db, ref.numericGrad((v) => objective(xs, ws, v), bs)],
    ];
    for (const [what, t, want] of grads) {
      expect(ref.maxAbs(want)).toBeGreaterThan(0);
      expectClose(what, await read(t), want, 1e-4, 1e-2 * ref.maxAbs(want));
    }
  });
});

// =============================================================================================

const POOL_CASES: Geo[] = [
  geo(1, 1, 6, 6, 1, 2, 2, 0), // 2x2 stride 2
  geo(3, 3, 7, 9, 3, 3, 2, 1), // 3x3 stride 2 padded, non-square
  geo(3, 8, 5, 6, 8, 3, 1, 1), // size-preserving 3x3
  geo(2, 3, 9, 4, 3, [3, 2], [2, 1], [1, 1]), // non-square window
  geo(1, 1, 1, 1, 1, 1, 1, 0), // 1x1 image
];

describe.each(['max', 'avg'] as const)('%sPool2dForward / Backward against float64 loops', (kind) => {
  test.each(POOL_CASES.map((g) => [tag(g), g] as const))('%s', async (_, g) => {
    const rng = new Random(41 + g.H);
    const { OH, OW } = outDims(g);
    const xs = ref.randomArray(rng, g.N * g.C * g.H * g.W),
      dys = ref.randomArray(rng, g.N * g.C * OH * OW);
    const x = upload(xs, [g.N, g.C, g.H, g.W]);
    const y = await read(pool(kind, g, x));
    const dx = await read(poolBackward(kind, g, x, upload(dys, [g.N, g.C, OH, OW])));
    if (kind === 'max') {
      expectExact('y', y, poolRef(kind, xs, g)); // a copy of an input element
    } else {
      expectClose('y', y, poolRef(kind, xs, g), 1e-6, 1);
    }
    // float32 sums of the (few) terms of overlapping windows
    expectClose('dx', dx, poolBackwardRef(kind, xs, dys, g), 1e-6, 1);
    // finite differences of sum(dy ⊙ pool(x)) (the values are distinct: max is smooth here)
    const want = ref.numericGrad((v) => ref.dot(dys, poolRef(kind, v, g)), xs);
    expectClose('dx vs finite differences', dx, want, 1e-4, 1e-2 * ref.maxAbs(want));
  });
});

describe('pooling semantics', () => {
  test('max: ties go to the first element in row-major window order; NaN wins', async () => {
    // one 2x3 window: values 5 at (0,1) and (1,0); a NaN plane; -inf everywhere
    const g = geo(3, 1, 2, 3, 1, [2, 3], 1, 0);
    const xs = [1, 5, 2, 5, 0, 5, 0, NaN, 1, NaN, 7, 0, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity];
    const x = upload(xs, [3, 1, 2, 3]);
    const y = await read(pool('max', g, x));
    expectExact('y', y, [5, NaN, -Infinity]);
    const dx = await read(poolBackward('max', g, x, upload([10, 20, 30], [3, 1, 1, 1])));
    expectExact('dx', dx, [0, 10, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 30, 0, 0, 0, 0, 0]);
  });

  test('max in wide rows (four windows at a time on x86): ties, NaNs, infinities, strides 1-3', async () => {
    // values from a small set, so that most windows hold ties, and some NaNs and infinities
    const rng = new Random(17);
    const choices = [-1, 0, 1, 2, NaN, -Infinity, Infinity];
    for (const g of [geo(2, 3, 9, 29, 3, 3, 2, 1), geo(1, 2, 7, 23, 2, [2, 3], 1, [1, 1]), geo(1, 2, 8, 40, 2, [3, 5], 3, [0, 2])]) {
      const { OH, OW } = outDims(g);
      const xs = Float32Array.from({ length: g.N * g.C * g.H * g.W }, () => {
        const r = rng.int(20);
        return r < choices.length ? choices[r] : choices[r % 4];
      });
      const dys = ref.randomArray(rng, g.N * g.C * OH * OW);
      const x = upload(xs, [g.N, g.C, g.H, g.W]);
      const wantY: number[] = [];
      const wantDx = new Float32Array(xs.length); // float32 sums in output order, as the kernel adds
      for (const win of windows(g)) {
        const i = argmaxOf(xs, win.idx);
        wantY[win.out] = xs[i];
        wantDx[i] = Math.fround(wantDx[i] + dys[win.out]);
      }
      expectExact(`y ${tag(g)}`, await read(pool('max', g, x)), wantY);
      expectExact(`dx ${tag(g)}`, await read(poolBackward('max', g, x, upload(dys, [g.N, g.C, OH, OW]))), wantDx);
    }
  });

  test('avg: padding is not counted (count_include_pad false)', async () => {
    // 3x3 windows, stride 1, padding 1 over a 2x2 image of ones: every window's mean is 1
    const g = geo(1, 1, 2, 2, 1, 3, 1, 1);
    const y = await read(pool('avg', g, upload([1, 1, 1, 1], [1, 1, 2, 2])));
    expectExact('y', y, [1, 1, 1, 1]);
    // corner window of a 3x3 image holds 4 elements: its dy is split in quarters
    const g3 = geo(1, 1, 3, 3, 1, 3, 2, 1);
    const dx = await read(poolBackward('avg', g3, filled([1, 1, 3, 3], 0), upload([4, 0, 0, 0], [1, 1, 2, 2])));
    expectExact('dx', dx, [1, 1, 0, 1, 1, 0, 0, 0, 0]);
  });
});

describe('swapLastAxes', () => {
  test.each([
    [1, 1, 1],
    [2, 3, 5],
    [3, 40, 70],
  ])('[%i, %i, %i]', async (B, M, N) => {
    const rng = new Random(5);
    const xs = ref.randomArray(rng, B * M * N);
    const y = filled([B, N, M]);
    ops.swapLastAxes(stream, upload(xs, [B, M, N]), y);
    const want = new Float32Array(B * M * N);
    for (let b = 0; b < B; b++) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) want[(b * N + j) * M + i] = xs[(b * M + i) * N + j];
    expectExact('y', await read(y), want);
  });
});

// =============================================================================================

describe('results do not depend on the thread count', () => {
  const original = native.threads();
  afterAll(() => native.threads(original));

  async function runAll(threads: number): Promise<Float32Array[]> {
    native.threads(threads);
    const rng = new Random(99);
    const out: Float32Array[] = [];
    {
      // several groups of images (see CONV_CASES)
      const g = geo(3, 3, 100, 200, 1, 7, 1, 3);
      const x = upload(ref.randomArray(rng, g.N * g.C * g.H * g.W), [g.N, g.C, g.H, g.W]);
      const w = upload(ref.randomArray(rng, g.K * g.C * 49), [g.K, g.C, 7, 7]);
      const dx = filled([g.N, g.C, g.H, g.W]),
        dw = filled([g.K, g.C, 7, 7], 0);
      ops.conv2dBackward(stream, x, w, upload(ref.randomArray(rng, g.N * g.H * g.W), [g.N, 1, g.H, g.W]), dx, dw, null, 1, 1, 3, 3);
      out.push(await read(conv(g, x, w, null)), await read(dx), await read(dw));
    }
    const g = geo(10, 8, 40, 36, 8, 5, 2, 2);
    const { OH, OW } = outDims(g);
    const x = upload(ref.randomArray(rng, g.N * g.C * g.H * g.W), [g.N, g.C, g.H, g.W]);
    const w = upload(ref.randomArray(rng, g.K * g.C * 25), [g.K, g.C, 5, 5]);
    const dy = upload(ref.randomArray(rng, g.N * g.K * OH * OW), [g.N, g.K, OH, OW]);
    const y = conv(g, x, w, upload(ref.randomArray(rng, g.K), [g.K]));
    const dx = filled([g.N, g.C, g.H, g.W]),
      dw = filled([g.K, g.C, 5, 5], 0),
      db = filled([g.K], 0);
    ops.conv2dBackward(stream, x, w, dy, dx, dw, db, g.sh, g.sw, g.ph, g.pw);
    const p = geo(10, 8, 40, 36, 8, 3, 2, 1);
    const { OH: PH, OW: PW } = outDims(p);
    const pdy = upload(ref.randomArray(rng, p.N * p.C * PH * PW), [p.N, p.C, PH, PW]);
    const t = filled([10, 40 * 36, 8]);
    ops.swapLastAxes(stream, x.reshape([10, 8, 40 * 36]), t);
    return [
      ...out,
      await read(y),
      await read(dx),
      await read(dw),
      await read(db),
      await read(pool('max', p, x)),
      await read(poolBackward('max', p, x, pdy)),
      await read(pool('avg', p, x)),
      await read(poolBackward('avg', p, x, pdy)),
      await read(t),
    ];
  }

  test('1 thread vs 2 threads: bit-identical convolution and pooling results', async () => {
    const one = await runAll(1);
    const two = await runAll(2);
    one.forEach((arr, i) => expectExact(`result ${i}`, two[i], arr));
  });
});

// =============================================================================================

describe('argument errors name the argument', () => {
  test('conv2dForward', () => {
    const x = filled([2, 3, 5, 5]),
      w = filled([4, 3, 3, 3]),
      y = filled([2, 4, 5, 5]);
    expectThrows(
      () => ops.conv2dForward(stream, x, w, null, y, 0, 1, 1, 1),
      'RangeError',
      /conv2dForward: 'strideH' must be an integer in \[1/,
    );
    expectThrows(() => ops.conv2dForward(stream, x, w, null, y, 1, 1, 1, -1), 'RangeError', /'padW' must be an integer in \[0/);
    expectThrows(() => ops.conv2dForward(stream, x, w, null, y, 1.5, 1, 1, 1), 'RangeError', /'strideH' must be an integer/);
    expectThrows(
      () => ops.conv2dForward(stream, x, filled([4, 2, 3, 3]), null, y, 1, 1, 1, 1),
      'RangeError',
      /'w' must have shape \[outChannels, 3, kernelH, kernelW\]/,
    );
    expectThrows(() => ops.conv2dForward(stream, filled([2, 3, 25]), w, null, y, 1, 1, 1, 1), 'RangeError', /'x' must be 4-D/);
    expectThrows(
      () => ops.conv2dForward(stream, x, filled([4, 3, 8, 3]), null, y, 1, 1, 1, 1),
      'RangeError',
      /the kernel of 'w' \(8 x 3\) does not fit the padded image \(7 x 7\)/,
    );
    expectThrows(
      () => ops.conv2dForward(stream, x, w, null, filled([2, 4, 3, 3]), 1, 1, 1, 1),
      'RangeError',
      /'y' must have shape \[2,4,5,5\]/,
    );
    expectThrows(() => ops.conv2dForward(stream, x, w, filled([3]), y, 1, 1, 1, 1), 'RangeError', /'bias' must have shape \[4\]/);
  });

  test('conv2dBackward', () => {
    const x = filled([2, 3, 5, 5]),
      w = filled([4, 3, 3, 3]),
      dy = filled([2, 4, 5, 5]);
    expectThrows(() => ops.conv2dBackward(stream, x, w, dy, null, null, null, 1, 1, 1, 1), 'TypeError', /give 'dx', 'dw', 'db'/);
    expectThrows(
      () => ops.conv2dBackward(stream, x, w, filled([2, 4, 4, 5]), filled([2, 3, 5, 5]), null, null, 1, 1, 1, 1),
      'RangeError',
      /'dy' must have shape \[2,4,5,5\]/,
    );
    expectThrows(() => ops.conv2dBackward(stream, x, w, dy, x, null, null, 1, 1, 1, 1), 'RangeError', /'dx' and 'x' must not share memory/);
    const dw = filled([4, 3, 3, 3]);
    expectThrows(() => ops.conv2dBackward(stream, x, w, dy, null, dw, dw, 1, 1, 1, 1), 'RangeError', /'db' must have shape \[4\]/);
    expectThrows(
      () => ops.conv2dBackward(stream, x, w, dy, null, filled([4, 3, 3, 2]), null, 1, 1, 1, 1),
      'RangeError',
      /'dw' must have shape \[4,3,3,3\]/,
    );
  });

  test('pools', () => {
    const x = filled([1, 2, 6, 6]);
    expectThrows(
      () => ops.maxPool2dForward(stream, x, filled([1, 2, 3, 3]), 3, 3, 2, 2, 2, 1),
      'RangeError',
      /maxPool2dForward: 'padH' must be at most kernelH \/ 2 = 1/,
    );
    expectThrows(
      () => ops.avgPool2dForward(stream, x, filled([1, 2, 3, 3]), 0, 3, 2, 2, 0, 0),
      'RangeError',
      /avgPool2dForward: 'kernelH' must be an integer in \[1/,
    );
    expectThrows(
      () => ops.maxPool2dForward(stream, x, filled([1, 2, 3, 3]), 7, 3, 2, 2, 0, 0),
      'RangeError',
      /the window \(7 x 3\) does not fit/,
    );
    expectThrows(
      () => ops.maxPool2dForward(stream, x, filled([1, 2, 3, 2]), 2, 2, 2, 2, 0, 0),
      'RangeError',
      /'y' must have shape \[1,2,3,3\]/,
    );
    expectThrows(
      () => ops.maxPool2dBackward(stream, x, filled([1, 2, 3, 3]), x, 2, 2, 2, 2, 0, 0),
      'RangeError',
      /'dx' and 'x' must not share memory/,
    );
    expectThrows(
      () => ops.avgPool2dBackward(stream, filled([1, 2, 2, 3]), x, 2, 2, 2, 2, 0, 0),
      'RangeError',
      /avgPool2dBackward: 'dy' must have shape \[1,2,3,3\]/,
    );
    expectThrows(
      () => ops.avgPool2dForward(stream, filled([1, 0, 6, 6]), filled([1, 0, 3, 3]), 2, 2, 2, 2, 0, 0),
      'RangeError',
      /'x' must have at least 1 channel/,
    );
    expectThrows(() => ops.swapLastAxes(stream, x, filled([1, 2, 6, 6])), 'RangeError', /swapLastAxes: 'x' must be 3-D/);
    expectThrows(
      () => ops.swapLastAxes(stream, filled([2, 3, 4]), filled([2, 3, 4])),
      'RangeError',
      /swapLastAxes: 'y' must have shape \[2,4,3\]/,
    );
  });
});
