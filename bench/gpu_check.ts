// GPU verification: every native op on cuda:0 against the CPU backend, the CUDA runtime
// (read-back, streams, events, fences, errors, out of memory) and MNIST training CPU vs GPU.
// Writes bench/results/gpu-check.{md,json} after every section; exit 0 when everything
// passes, 1 when anything fails, 2 when there is no CUDA device (nothing is written then; the
// runtime's error, e.g. cudaErrorInsufficientDriver, is printed).
//
//   npm run gpu:check                      (node dist/bench/gpu_check.js)
//   node dist/bench/gpu_check.js [--seed N] [--epochs 2] [--skip-mnist] [--time-limit 420]
//                                [--only gemm,batchnorm,...] [--device cpu (a dry run of the harness)]
//                                [--no-isolate] [--small]
// Each section runs in a process of its own (this script started again with --only SECTION
// --part FILE), so that a kernel fault, which poisons the process's CUDA context for good, is
// reported against its own section and the later sections still run; --no-isolate runs them
// all in this process. Run with CUDA_LAUNCH_BLOCKING=1 (scripts/gpu-run.sh does) so that an
// asynchronous fault is reported by the launch that caused it.
// On a GPU machine without Node.js: scripts/gpu-run.sh (it also runs bench/gpu.ts and test/gpu).
//
// Method. Each case draws fresh random inputs (seeded; the seed is in the report), builds the
// same tensors on the CPU and on cuda:0, runs the op on both, reads every output back and
// compares the GPU's value a with the CPU's value b element by element:
//     err = |a - b| / max(s, floor)
// where s is the element's error scale (below) and floor only keeps 0/0 away. A NaN or an
// infinity in either output is an infinite error (it never passes), except in the
// "writes nothing" checks, which compare a NaN-filled buffer bit for bit.
//
// Error scales and tolerances (u = 2^-24, the float32 unit roundoff). The CPU backend is
// checked against float64 references by test/ops.test.ts; here both backends are compared
// with each other, so a bound is the sum of the two backends' bounds:
//   - data movement (copy, fill, oneHot, concatColumns, splitColumns): bit for bit (tol 0).
//   - results of a few float32 roundings (axpby, addBias, activations, BatchNorm, losses,
//     optimizers): tol 1e-5 relative to the magnitude of the terms that were rounded, e.g.
//     |a x| + |b y| for a x + b y, so that a sum cancelling to ~0 is judged on the absolute
//     error its inputs allow; each backend is within a few u (< 1e-6) of that scale, a wrong
//     formula or a missing term is off by >= 1e-3. Where no cancellation can happen
//     (tanh, sigmoid, softmax probabilities, variances, inverse std, Adam's v) s = |b| and
//     floor = 1e-30 (relative all the way down, below float32's normal range only for
//     sigmoid(-100) ~ 4e-44, which either backend may flush to 0: an error of 4e-14).
//   - optimizer states that are signed sums (param, velocity, m): floor 0.1, the scale of the
//     parameters and moments (as OPT_FLOOR in test/ops.test.ts): both drift a few u of that
//     scale per step, a missing weight-decay term moves them by >= 1e-4 of it.
//   - GEMM: s = |alpha| sum_k |op(A)_ik op(B)_kj| + |beta| |C_ij| and tol = 2 (K + 2) u: the
//     classic float32 dot-product bound (K + 2) u s for each backend, so twice it for their
//     difference (for K >= 82 this is looser than 1e-5 relative to s, as it must be: both
//     sum K products in a different order).
//   - TF32 (native.gemmTf32(true)): tol 2 (2^-11 + (K + 2) u) relative to s.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, CopyTask, Device, Module, SGD, Trainer, datasets, decouple, mlp, native, learningRateSchedules } from '../ts';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentMethod, RecurrentTraining } from '../ts/recurrent/training';
import type { Split } from '../ts/data/datasets';
import type { ActivationName, DTypeName, DeviceName, NativeStream, NativeTensor } from '../ts/native';
import { Random } from '../ts/random';
import {
  CompareReport,
  TOL,
  U,
  compare,
  compareBits,
  describeReport as describeValues,
  fmt,
  gemmTolerance,
  mapF64,
} from '../test/helpers/compare';
import { randomArray, randomLabels } from '../test/helpers/reference';
import { cudaUnavailableReason } from '../ts/build-info';
import { benchFlags, numberFlag } from './flags';
import { adamStep, sgdStep } from '../test/helpers/optimizer-steps';
import { projectRoot as root, resultsDir } from './paths';

const f32 = Math.fround;

/** A report with the GPU as `got` and the CPU as `want`. */
function describeReport(r: CompareReport): string {
  return describeValues(r, { got: 'gpu', want: 'cpu' });
}

// =============================================================================================
// the check
// =============================================================================================

type Side = 'cpu' | 'gpu';
/** The device under test: cuda:0 (or, for a dry run of this harness without a GPU, --device cpu). */
let GPU: DeviceName = 'cuda:0';
const ops = native.ops;

interface OpCase {
  op: string;
  case: string;
  output: string;
  worst: number;
  tol: number;
  pass: boolean;
  detail: string;
}

interface RuntimeCheck {
  name: string;
  pass: boolean;
  /** informational checks never fail the run */
  info?: boolean;
  detail: string;
  seconds: number;
}

interface MnistRun {
  method: 'backprop' | 'cdni';
  device: string;
  accuracy: number;
  testLoss: number;
  epochLosses: number[];
  firstLosses: number[];
  seconds: number;
  error?: string;
}

const state = {
  started: Date.now(),
  section: 'start',
  opCases: [] as OpCase[],
  runtime: [] as RuntimeCheck[],
  mnist: [] as MnistRun[],
  mnistComparisons: [] as { name: string; pass: boolean; detail: string }[],
  tf32: { reachable: false, detail: '' },
  fatal: [] as string[],
  complete: false,
};

let cpuS: NativeStream;
let gpuS: NativeStream;
let rng: Random;

/** Tensors created by the current case; disposed when it ends. */
let live: NativeTensor[] = [];

function track<T extends NativeTensor>(t: T): T {
  live.push(t);
  return t;
}

function disposeLive(): void {
  for (const t of live) if (!t.disposed) t.dispose();
  live = [];
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The same tensor on the CPU and on cuda:0. */
class Both {
  constructor(
    readonly cpu: NativeTensor,
    readonly gpu: NativeTensor,
  ) {}

  static of(data: Float32Array | Int32Array, shape: number[]): Both {
    const dtype: DTypeName = data instanceof Int32Array ? 'int32' : 'float32';
    return new Both(track(new native.Tensor(shape, dtype, 'cpu', data)), track(new native.Tensor(shape, dtype, GPU, data)));
  }

  /** A float32 tensor filled with `value` (default NaN: an output that must be overwritten). */
  static full(shape: number[], value = NaN): Both {
    return Both.of(new Float32Array(numel(shape)).fill(value), shape);
  }

  pick(side: Side): NativeTensor {
    return side === 'cpu' ? this.cpu : this.gpu;
  }

  async read(): Promise<{ cpu: Float32Array; gpu: Float32Array }> {
    const [c, g] = await Promise.all([this.cpu.read(cpuS), this.gpu.read(gpuS)]);
    return { cpu: c as Float32Array, gpu: g as Float32Array };
  }

  async readInt(): Promise<{ cpu: Int32Array; gpu: Int32Array }> {
    const [c, g] = await Promise.all([this.cpu.read(cpuS), this.gpu.read(gpuS)]);
    return { cpu: c as Int32Array, gpu: g as Int32Array };
  }
}

/** Pick the tensor of one side (or null). */
function on(side: Side, b: Both | null): NativeTensor | null {
  return b ? b.pick(side) : null;
}

/** Enqueues the same work on the CPU and on the GPU (each on its stream). */
function both(f: (side: Side, s: NativeStream) => void): void {
  f('cpu', cpuS);
  f('gpu', gpuS);
}

function record(op: string, name: string, output: string, r: CompareReport, tol: number): void {
  const pass = r.worst <= tol && !r.lengthMismatch;
  state.opCases.push({ op, case: name, output, worst: r.worst, tol, pass, detail: describeReport(r) });
  if (!pass) console.log(`  FAIL ${op} [${name}] ${output}: ${describeReport(r)} (tolerance ${fmt(tol)})`);
}

/** Compares one output of a case: relative/scale (tol) or bit for bit (tol 0). */
async function expectOut(
  op: string,
  name: string,
  output: string,
  t: Both,
  tol: number,
  opts: { scale?: ArrayLike<number> | ((cpu: Float32Array) => ArrayLike<number>); floor?: number; byValue?: boolean } = {},
): Promise<{ cpu: Float32Array; gpu: Float32Array }> {
  const r = await t.read();
  if (tol === 0 && !opts.byValue) {
    record(op, name, output, compareBits(r.gpu, r.cpu), 0);
  } else {
    const scale = typeof opts.scale === 'function' ? opts.scale(r.cpu) : opts.scale;
    // A bit-identical NaN in both is still a failure (compare treats non-finite as infinite).
    record(op, name, output, compare(r.gpu, r.cpu, { scale, floor: opts.floor }), tol);
  }
  return r;
}

/** Runs one case; an exception is recorded as a failure of that case. */
async function opCase(op: string, name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    state.opCases.push({ op, case: name, output: '(exception)', worst: Infinity, tol: 0, pass: false, detail: msg });
    console.log(`  FAIL ${op} [${name}]: threw ${msg}`);
  } finally {
    disposeLive();
  }
}

async function runtimeCheck(name: string, body: () => Promise<string>, info = false): Promise<void> {
  const t0 = Date.now();
  try {
    const detail = await body();
    state.runtime.push({ name, pass: true, info, detail, seconds: (Date.now() - t0) / 1000 });
    console.log(`  ok   ${name}: ${detail}`);
  } catch (e) {
    const detail = (e as Error).message ?? String(e);
    state.runtime.push({ name, pass: info, info, detail, seconds: (Date.now() - t0) / 1000 });
    console.log(`  ${info ? 'info' : 'FAIL'} ${name}: ${detail}`);
  } finally {
    disposeLive();
  }
}

function assert(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

/** Rejects after ms (the GPU's Promises must settle; a hang is a failure, not a stuck run). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms / 1000} s`)), ms);
    }),
  ]);
}

// ---- ops ------------------------------------------------------------------------------------

async function checkDataMovement(): Promise<void> {
  for (const n of [12, (1 << 20) + 3]) {
    await opCase('copy', `float32 n=${n} (dst reshaped)`, async () => {
      const src = Both.of(randomArray(rng, n), [n]);
      const dst = Both.full(n === 12 ? [3, 4] : [n]);
      both((d, s) => ops.copy(s, src.pick(d), dst.pick(d)));
      await expectOut('copy', `float32 n=${n}`, 'dst', dst, 0);
    });
  }
  await opCase('copy', 'int32 extremes', async () => {
    const src = Both.of(Int32Array.from([3, -1, 2147483647, -2147483648, 0, 42, 7]), [7]);
    const dst = Both.of(new Int32Array(7).fill(-5), [7]);
    both((d, s) => ops.copy(s, src.pick(d), dst.pick(d)));
    const r = await dst.readInt();
    record('copy', 'int32 extremes', 'dst', compareBits(r.gpu, r.cpu), 0);
  });

  for (const [n, value] of [
    [63, 3.25],
    [63, -0.1],
    [(1 << 20) + 7, -2.5],
  ] as const) {
    await opCase('fill', `float32 n=${n} value=${value}`, async () => {
      const y = Both.of(randomArray(rng, n), [n]);
      both((d, s) => ops.fill(s, y.pick(d), value));
      await expectOut('fill', `float32 n=${n} value=${value}`, 'y', y, 0);
    });
  }
  for (const n of [5, (1 << 20) + 1]) {
    await opCase('fill', `int32 n=${n} value=-7`, async () => {
      const y = Both.of(new Int32Array(n).fill(9), [n]);
      both((d, s) => ops.fill(s, y.pick(d), -7));
      const r = await y.readInt();
      record('fill', `int32 n=${n}`, 'y', compareBits(r.gpu, r.cpu), 0);
      assert(
        r.gpu.every((v) => v === -7),
        'int fill: not every element is -7',
      );
    });
  }

  for (const [rows, classes] of [
    [12, 5],
    [20000, 10],
    [300, 1000],
  ]) {
    await opCase('oneHot', `[${rows}, ${classes}]`, async () => {
      const labels = Both.of(randomLabels(rng, rows, classes), [rows]);
      const out = Both.full([rows, classes]);
      both((d, s) => ops.oneHot(s, labels.pick(d), out.pick(d)));
      await expectOut('oneHot', `[${rows}, ${classes}]`, 'out', out, 0);
    });
  }

  for (const [rows, ca, cb] of [
    [5, 3, 4],
    [20000, 3, 4],
    [4, 1, 9],
    [1000, 256, 10],
  ]) {
    const name = `[${rows}, ${ca}] | [${rows}, ${cb}]`;
    await opCase('concatColumns', name, async () => {
      const a = Both.of(randomArray(rng, rows * ca), [rows, ca]);
      const b = Both.of(randomArray(rng, rows * cb), [rows, cb]);
      const out = Both.full([rows, ca + cb]);
      both((d, s) => ops.concatColumns(s, a.pick(d), b.pick(d), out.pick(d)));
      await expectOut('concatColumns', name, 'out', out, 0);
    });
    await opCase('splitColumns', name, async () => {
      const dout = Both.of(randomArray(rng, rows * (ca + cb)), [rows, ca + cb]);
      const da = Both.full([rows, ca]),
        db = Both.full([rows, cb]);
      both((d, s) => ops.splitColumns(s, dout.pick(d), da.pick(d), db.pick(d)));
      await expectOut('splitColumns', name, 'da', da, 0);
      await expectOut('splitColumns', name, 'db', db, 0);
      // Null halves: the other side is written, nothing else.
      const da2 = Both.full([rows, ca]),
        db2 = Both.full([rows, cb]);
      both((d, s) => ops.splitColumns(s, dout.pick(d), da2.pick(d), null));
      both((d, s) => ops.splitColumns(s, dout.pick(d), null, db2.pick(d)));
      await expectOut('splitColumns', `${name}, db null`, 'da', da2, 0);
      await expectOut('splitColumns', `${name}, da null`, 'db', db2, 0);
    });
  }
}

async function checkAxpby(): Promise<void> {
  for (const [a, b, n] of [
    [1.5, -0.75, 50],
    [1, 1, 50],
    [-0.3, 2.5, (1 << 20) + 5],
  ]) {
    const name = `y = ${a} x + ${b} y, n=${n}`;
    await opCase('axpby', name, async () => {
      const x0 = randomArray(rng, n),
        y0 = randomArray(rng, n);
      const x = Both.of(x0, [n]),
        y = Both.of(y0, [n]);
      both((d, s) => ops.axpby(s, a, x.pick(d), b, y.pick(d)));
      const scale = mapF64({ length: n }, (_, i) => Math.abs(f32(a) * x0[i]) + Math.abs(f32(b) * y0[i]));
      await expectOut('axpby', name, 'y', y, TOL, { scale });
    });
  }
  await opCase('axpby', 'b = 0 over NaN y', async () => {
    const x0 = randomArray(rng, 1000);
    const x = Both.of(x0, [1000]),
      y = Both.full([1000]);
    both((d, s) => ops.axpby(s, 1.25, x.pick(d), 0, y.pick(d)));
    await expectOut('axpby', 'b = 0 over NaN y', 'y', y, TOL);
  });
}

/** [M, K, N] as in test/ops.test.ts: op(A) [M, K], op(B) [K, N]. */
const gemmSizes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 65, 17],
  [1, 300, 1],
  [1, 300, 9],
  [9, 1, 31],
  [5, 0, 7],
  [40, 1100, 3],
  [130, 257, 70],
  [256, 256, 256],
  [1024, 1024, 1024],
  [1000, 1000, 999],
  // ceil(M/128) ceil(N/128) >= the SM count: the 128 x 128 tile kernel (smaller ones use 64 x 64)
  [1537, 129, 1543],
  [2048, 64, 2048],
  [1100, 1501, 2100],
];

async function checkGemm(tf32 = false): Promise<void> {
  const opName = tf32 ? 'gemm (TF32)' : 'gemm';
  const transposes: [boolean, boolean][] = [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ];
  // --small (the compute-sanitizer runs, 10-100x slower): both tile sizes still, no large products.
  const largest = options.small ? 256 * 256 * 256 : tf32 ? 1100 * 1100 * 1100 : Infinity;
  const sizes = gemmSizes.filter(([M, K, N]) => M * K * N <= largest || (options.small && M === 2048 && K === 64));
  for (const [M, K, N] of sizes) {
    for (const [ta, tb] of transposes) {
      const base = `M=${M} K=${K} N=${N} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
      await opCase(opName, base, async () => {
        const a = randomArray(rng, M * K),
          b = randomArray(rng, K * N);
        const shapeA = ta ? [K, M] : [M, K],
          shapeB = tb ? [N, K] : [K, N];
        const A = Both.of(a, shapeA),
          B = Both.of(b, shapeB);
        // |op(A)| |op(B)| with the CPU backend (all terms >= 0: relative error <= K u, fine for a scale).
        const absA = track(new native.Tensor(shapeA, 'float32', 'cpu', a.map(Math.abs)));
        const absB = track(new native.Tensor(shapeB, 'float32', 'cpu', b.map(Math.abs)));
        const absAB = track(new native.Tensor([M, N], 'float32', 'cpu', 'zeros'));
        ops.gemm(cpuS, absA, absB, absAB, ta, tb, 1, 0);
        const ab = (await absAB.read(cpuS)) as Float32Array;
        const tol = tf32 ? 2 * (2 ** -11 + (K + 2) * U) : gemmTolerance(K);
        for (const [alpha, beta, nanC] of [
          [1.25, -0.5, false],
          [0.75, 0, true],
        ] as const) {
          const c0 = nanC ? new Float32Array(M * N).fill(NaN) : randomArray(rng, M * N);
          const C = Both.of(c0, [M, N]);
          both((d, s) => ops.gemm(s, A.pick(d), B.pick(d), C.pick(d), ta, tb, alpha, beta));
          const scale = mapF64(ab, (v, i) => Math.abs(f32(alpha)) * v + (beta === 0 ? 0 : Math.abs(f32(beta) * c0[i])));
          await expectOut(opName, `${base} alpha=${alpha} beta=${beta}${nanC ? ' over NaN C' : ''}`, 'C', C, tol, { scale });
        }
      });
    }
  }
}

async function checkBias(): Promise<void> {
  for (const [rows, cols] of [
    [7, 13],
    [300, 257],
    [4096, 1000],
  ]) {
    const name = `[${rows}, ${cols}]`;
    await opCase('addBias', name, async () => {
      const y0 = randomArray(rng, rows * cols),
        b0 = randomArray(rng, cols);
      const y = Both.of(y0, [rows, cols]),
        bias = Both.of(b0, [cols]);
      both((d, s) => ops.addBias(s, y.pick(d), bias.pick(d)));
      const scale = mapF64(y0, (v, i) => Math.abs(v) + Math.abs(b0[i % cols]));
      await expectOut('addBias', name, 'y', y, TOL, { scale });
    });
  }
  // linearForward: the GEMM with its fused bias + activation epilogue. Relative to the scale
  // of the pre-activation (sum |x||w| + |b|), as gemm; activations change it by at most ~1.
  for (const [batch, inF, outF] of [
    [256, 784, 256],
    [37, 65, 17],
  ]) {
    for (const act of [null, 'relu', 'tanh', 'sigmoid'] as const) {
      const name = `x [${batch}, ${inF}] w [${outF}, ${inF}] ${act ?? 'no activation'}`;
      await opCase('linearForward', name, async () => {
        const x0 = randomArray(rng, batch * inF, -1, 1),
          w0 = randomArray(rng, outF * inF, -1, 1),
          b0 = randomArray(rng, outF, -1, 1);
        const x = Both.of(x0, [batch, inF]),
          w = Both.of(w0, [outF, inF]),
          b = Both.of(b0, [outF]);
        const y = Both.full([batch, outF]);
        both((d, s) => ops.linearForward(s, x.pick(d), w.pick(d), b.pick(d), y.pick(d), act));
        const scale = new Float64Array(batch * outF);
        for (let r = 0; r < batch; r++)
          for (let o = 0; o < outF; o++) {
            let acc = Math.abs(b0[o]);
            for (let k = 0; k < inF; k++) acc += Math.abs(x0[r * inF + k] * w0[o * inF + k]);
            scale[r * outF + o] = acc;
          }
        await expectOut('linearForward', name, 'y', y, gemmTolerance(inF), { scale });
      });
    }
  }
  for (const [rows, cols] of [
    [7, 13],
    [3000, 70],
    [5, 5000],
    [1025, 3],
    [256, 256],
  ]) {
    const name = `[${rows}, ${cols}] accumulated`;
    await opCase('biasBackward', name, async () => {
      const dy0 = randomArray(rng, rows * cols),
        d0 = randomArray(rng, cols);
      const dy = Both.of(dy0, [rows, cols]),
        dbias = Both.of(d0, [cols]);
      both((d, s) => ops.biasBackward(s, dy.pick(d), dbias.pick(d)));
      const scale = mapF64(d0, Math.abs);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scale[c] += Math.abs(dy0[r * cols + c]);
      await expectOut('biasBackward', name, 'dbias', dbias, TOL, { scale });
    });
  }
}

async function checkActivations(): Promise<void> {
  for (const act of ['relu', 'tanh', 'sigmoid'] as ActivationName[]) {
    for (const n of [37 * 29, (1 << 20) + 11]) {
      const name = `${act} n=${n}`;
      await opCase('activationForward', name, async () => {
        const x0 = randomArray(rng, n, 1e-3, 6);
        x0.set([1e-30, -1e-30, 50, -50, 100, -100, 1e-7, -1e-7]);
        const x = Both.of(x0, [n]),
          y = Both.full([n]);
        both((d, s) => ops.activationForward(s, act, x.pick(d), y.pick(d)));
        // relu is exact; tanh and sigmoid are relative-accurate (no cancellation).
        // relu: exact up to the sign of zero (max(x, 0) and x (x > 0) may differ there).
        const out = await expectOut('activationForward', name, 'y', y, act === 'relu' ? 0 : TOL, { byValue: true });
        const xy = Both.of(x0, [n]);
        both((d, s) => ops.activationForward(s, act, xy.pick(d), xy.pick(d)));
        const inPlace = await xy.read();
        record('activationForward', `${name} in place`, 'x', compareBits(inPlace.gpu, out.gpu), 0);
      });
      await opCase('activationBackward', name, async () => {
        const y0 =
          act === 'relu'
            ? randomArray(rng, n, 0.1, 3).map((v) => Math.max(v, 0))
            : act === 'tanh'
              ? randomArray(rng, n, 1e-3, 0.99999)
              : rng.uniformArray(n, 1e-4, 0.9999);
        if (act === 'relu') for (let i = 0; i < n; i += 7) y0[i] = 0;
        const dy0 = randomArray(rng, n);
        const y = Both.of(y0, [n]),
          dy = Both.of(dy0, [n]),
          dx = Both.full([n]);
        both((d, s) => ops.activationBackward(s, act, y.pick(d), dy.pick(d), dx.pick(d)));
        // Scale of dy f'(y): tanh |dy| (1 + y^2) (1 - y^2 cancels near |y| = 1), sigmoid |dy| (|y| + y^2).
        const scale = mapF64(
          dy0,
          (g, i) => Math.abs(g) * (act === 'relu' ? 1 : act === 'tanh' ? 1 + y0[i] * y0[i] : Math.abs(y0[i]) + y0[i] * y0[i]),
        );
        const out = await expectOut('activationBackward', name, 'dx', dx, act === 'relu' ? 0 : TOL, { scale, byValue: true });
        const dyIn = Both.of(dy0, [n]);
        both((d, s) => ops.activationBackward(s, act, y.pick(d), dyIn.pick(d), dyIn.pick(d)));
        const inPlace = await dyIn.read();
        record('activationBackward', `${name} in place`, 'dy', compareBits(inPlace.gpu, out.gpu), 0);
      });
    }
  }
}

/** x [rows, cols] with per-column offsets and spreads (|mean| >> std when offset is large). */
function bnInputs(rows: number, cols: number, offset: number) {
  const noise = randomArray(rng, rows * cols);
  const x = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) x[r * cols + c] = offset + 0.5 * (c % 9) - 1 + (0.5 + (c % 7) * 0.3) * noise[r * cols + c];
  return {
    x,
    gamma: randomArray(rng, cols, 0.5, 2),
    beta: randomArray(rng, cols),
    runningMean: randomArray(rng, cols),
    runningVar: rng.uniformArray(cols, 0.5, 1.5),
  };
}

function columnMeanAbs(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const m = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[c] += Math.abs(x[r * cols + c]);
  return m.map((v) => v / rows);
}

async function checkBatchNorm(): Promise<void> {
  const momentum = 0.1,
    eps = 1e-5;
  const M = f32(momentum);
  for (const [rows, cols, offset] of [
    [2, 4, 0],
    [16, 5, 0],
    [256, 256, 0],
    [2500, 3, 0],
    [64, 7, 1000],
    [1100, 300, 100],
  ]) {
    const name = `[${rows}, ${cols}] offset ${offset}`;
    let saved: { x: Float32Array; gamma: Float32Array; mean: Float32Array; invStd: Float32Array } | undefined;
    await opCase('batchNormForward', `training ${name}`, async () => {
      const inp = bnInputs(rows, cols, offset);
      const x = Both.of(inp.x, [rows, cols]),
        gamma = Both.of(inp.gamma, [cols]),
        beta = Both.of(inp.beta, [cols]);
      const y = Both.full([rows, cols]),
        rm = Both.of(inp.runningMean, [cols]),
        rv = Both.of(inp.runningVar, [cols]);
      const sm = Both.full([cols], 42),
        si = Both.full([cols], 43);
      both((d, s) =>
        ops.batchNormForward(
          s,
          x.pick(d),
          gamma.pick(d),
          beta.pick(d),
          y.pick(d),
          rm.pick(d),
          rv.pick(d),
          sm.pick(d),
          si.pick(d),
          momentum,
          eps,
          true,
        ),
      );
      const mean = (await sm.read()).cpu,
        invStd = (await si.read()).cpu;
      // y = xhat gamma + beta: scale |xhat gamma| + |beta| (as test/ops.test.ts).
      const yScale = mapF64(inp.x, (v, i) => {
        const c = i % cols;
        return Math.abs((v - mean[c]) * invStd[c] * inp.gamma[c]) + Math.abs(inp.beta[c]);
      });
      const ma = columnMeanAbs(inp.x, rows, cols);
      await expectOut('batchNormForward', `training ${name}`, 'y', y, TOL, { scale: yScale });
      await expectOut('batchNormForward', `training ${name}`, 'saveMean', sm, TOL, { scale: ma });
      await expectOut('batchNormForward', `training ${name}`, 'saveInvStd', si, TOL);
      await expectOut('batchNormForward', `training ${name}`, 'runningMean', rm, TOL, {
        scale: mapF64(ma, (v, c) => (1 - M) * Math.abs(inp.runningMean[c]) + M * v),
      });
      await expectOut('batchNormForward', `training ${name}`, 'runningVar', rv, TOL);
      saved = { x: inp.x, gamma: inp.gamma, mean, invStd };
    });
    await opCase('batchNormForward', `inference ${name}`, async () => {
      const inp = bnInputs(rows, cols, offset);
      const rmean = Float32Array.from(inp.runningMean, (v) => v + offset);
      const x = Both.of(inp.x, [rows, cols]),
        gamma = Both.of(inp.gamma, [cols]),
        beta = Both.of(inp.beta, [cols]);
      const y = Both.full([rows, cols]),
        rm = Both.of(rmean, [cols]),
        rv = Both.of(inp.runningVar, [cols]);
      const sm = Both.full([cols], 42),
        si = Both.full([cols], 43);
      both((d, s) =>
        ops.batchNormForward(
          s,
          x.pick(d),
          gamma.pick(d),
          beta.pick(d),
          y.pick(d),
          rm.pick(d),
          rv.pick(d),
          sm.pick(d),
          si.pick(d),
          momentum,
          eps,
          false,
        ),
      );
      const yScale = mapF64(inp.x, (v, i) => {
        const c = i % cols;
        return ((Math.abs(v) + Math.abs(rmean[c])) * Math.abs(inp.gamma[c])) / Math.sqrt(inp.runningVar[c] + eps) + Math.abs(inp.beta[c]);
      });
      await expectOut('batchNormForward', `inference ${name}`, 'y', y, TOL, { scale: yScale });
      // Inference leaves the running and saved stats untouched (bit for bit).
      const r = await rm.read(),
        v = await rv.read(),
        m = await sm.read(),
        s2 = await si.read();
      record('batchNormForward', `inference ${name} untouched`, 'runningMean', compareBits(r.gpu, rmean), 0);
      record('batchNormForward', `inference ${name} untouched`, 'runningVar', compareBits(v.gpu, inp.runningVar), 0);
      record('batchNormForward', `inference ${name} untouched`, 'saveMean', compareBits(m.gpu, new Float32Array(cols).fill(42)), 0);
      record('batchNormForward', `inference ${name} untouched`, 'saveInvStd', compareBits(s2.gpu, new Float32Array(cols).fill(43)), 0);
    });
    if (!saved) continue;
    const sv = saved;
    await opCase('batchNormBackward', name, async () => {
      // The saved stats are the CPU's, uploaded to both (so both differentiate the same forward).
      const dy0 = randomArray(rng, rows * cols),
        dg0 = randomArray(rng, cols),
        db0 = randomArray(rng, cols);
      const x = Both.of(sv.x, [rows, cols]),
        dy = Both.of(dy0, [rows, cols]),
        gamma = Both.of(sv.gamma, [cols]);
      const sm = Both.of(sv.mean, [cols]),
        si = Both.of(sv.invStd, [cols]);
      const dx = Both.full([rows, cols]),
        dgamma = Both.of(dg0, [cols]),
        dbeta = Both.of(db0, [cols]);
      both((d, s) =>
        ops.batchNormBackward(s, x.pick(d), dy.pick(d), gamma.pick(d), sm.pick(d), si.pick(d), dx.pick(d), dgamma.pick(d), dbeta.pick(d)),
      );
      // dx = gamma invStd (dy - mean(dy) - xhat mean(dy xhat)): scale of each term's magnitude.
      const xhat = mapF64(sv.x, (v, i) => (v - sv.mean[i % cols]) * sv.invStd[i % cols]);
      const mAbsDy = new Float64Array(cols),
        mAbsDyX = new Float64Array(cols),
        sAbsDy = new Float64Array(cols),
        sAbsDyX = new Float64Array(cols);
      for (let i = 0; i < rows * cols; i++) {
        const c = i % cols;
        sAbsDy[c] += Math.abs(dy0[i]);
        sAbsDyX[c] += Math.abs(dy0[i] * xhat[i]);
      }
      for (let c = 0; c < cols; c++) {
        mAbsDy[c] = sAbsDy[c] / rows;
        mAbsDyX[c] = sAbsDyX[c] / rows;
      }
      const dxScale = mapF64(dy0, (g, i) => {
        const c = i % cols;
        return Math.abs(sv.gamma[c]) * sv.invStd[c] * (Math.abs(g) + mAbsDy[c] + Math.abs(xhat[i]) * mAbsDyX[c]);
      });
      await expectOut('batchNormBackward', name, 'dx', dx, TOL, { scale: dxScale });
      await expectOut('batchNormBackward', name, 'dgamma', dgamma, TOL, { scale: mapF64(dg0, (v, c) => Math.abs(v) + sAbsDyX[c]) });
      await expectOut('batchNormBackward', name, 'dbeta', dbeta, TOL, { scale: mapF64(db0, (v, c) => Math.abs(v) + sAbsDy[c]) });
    });
  }
}

async function checkLosses(): Promise<void> {
  for (const [rows, classes, offset] of [
    [11, 7, 0],
    [11, 7, 80],
    [11, 7, -1000],
    [256, 10, 0],
    [4096, 10, 0],
    [300, 1000, 0],
  ]) {
    const name = `[${rows}, ${classes}] logits offset ${offset}`;
    await opCase('softmaxCrossEntropyForward', name, async () => {
      const z = randomArray(rng, rows * classes, 0.1, 3).map((v) => v + offset);
      const lab = randomLabels(rng, rows, classes);
      const logits = Both.of(z, [rows, classes]),
        labels = Both.of(lab, [rows]);
      const probs = Both.full([rows, classes]),
        loss = Both.full([1]);
      both((d, s) => ops.softmaxCrossEntropyForward(s, logits.pick(d), labels.pick(d), probs.pick(d), loss.pick(d)));
      const p = await expectOut('softmaxCrossEntropyForward', name, 'probs', probs, TOL);
      await expectOut('softmaxCrossEntropyForward', name, 'loss', loss, TOL);
      for (const scale of [1, 0.5]) {
        const dl = Both.full([rows, classes]);
        both((d, s) => ops.softmaxCrossEntropyBackward(s, probs.pick(d), labels.pick(d), dl.pick(d), scale));
        // dlogits = scale (p - onehot) / rows: scale |scale| (p + onehot) / rows.
        const sc = mapF64(p.cpu, (v, i) => ((Math.abs(v) + (lab[Math.floor(i / classes)] === i % classes ? 1 : 0)) * scale) / rows);
        await expectOut('softmaxCrossEntropyBackward', `${name} scale ${scale}`, 'dlogits', dl, TOL, { scale: sc });
      }
    });
  }
  await opCase('softmaxCrossEntropyForward', '[300, 10] every third row ignored (label -1)', async () => {
    const rows = 300,
      classes = 10,
      name = '[300, 10] label -1 rows';
    const lab = randomLabels(rng, rows, classes).map((l, r) => (r % 3 === 0 ? -1 : l));
    const logits = Both.of(randomArray(rng, rows * classes, 0.1, 3), [rows, classes]),
      labels = Both.of(lab, [rows]);
    const probs = Both.full([rows, classes]),
      loss = Both.full([1]);
    both((d, s) => ops.softmaxCrossEntropyForward(s, logits.pick(d), labels.pick(d), probs.pick(d), loss.pick(d)));
    const p = await expectOut('softmaxCrossEntropyForward', name, 'probs', probs, TOL);
    await expectOut('softmaxCrossEntropyForward', name, 'loss', loss, TOL);
    const dl = Both.full([rows, classes]);
    both((d, s) => ops.softmaxCrossEntropyBackward(s, probs.pick(d), labels.pick(d), dl.pick(d), 1));
    // Ignored rows are 0 on both sides (error 0 whatever the scale).
    const sc = mapF64(p.cpu, (v, i) => (Math.abs(v) + (lab[Math.floor(i / classes)] === i % classes ? 1 : 0)) / rows);
    await expectOut('softmaxCrossEntropyBackward', name, 'dlogits', dl, TOL, { scale: sc, floor: 1e-30 });
  });
  // The recurrent read-out's shapes: Copy (8 symbols) and text (65 characters) at batch 64 and
  // 256; about half the rows ignored (-1), as in a Copy window's answer phase; and a batch with
  // every row ignored (the loss is 0 and so is every gradient, on both sides).
  for (const [rows, classes, ignored] of [
    [64, 8, 0.5],
    [256, 8, 0.5],
    [256, 65, 0.5],
    [64, 8, 1],
  ]) {
    const name = `[${rows}, ${classes}] ${ignored === 1 ? 'every row' : 'about half the rows'} ignored (label -1)`;
    await opCase('softmaxCrossEntropyForward', name, async () => {
      const lab = randomLabels(rng, rows, classes).map((l) => (ignored === 1 || rng.uniform(0, 1) < ignored ? -1 : l));
      const logits = Both.of(randomArray(rng, rows * classes, 0.1, 3), [rows, classes]),
        labels = Both.of(lab, [rows]);
      const probs = Both.full([rows, classes]),
        loss = Both.full([1]);
      both((d, s) => ops.softmaxCrossEntropyForward(s, logits.pick(d), labels.pick(d), probs.pick(d), loss.pick(d)));
      const p = await expectOut('softmaxCrossEntropyForward', name, 'probs', probs, TOL);
      // All rows ignored: both losses must be exactly 0 (a scale of 1 makes any other value fail).
      await expectOut('softmaxCrossEntropyForward', name, 'loss', loss, TOL, ignored === 1 ? { scale: [1] } : {});
      const dl = Both.full([rows, classes]);
      both((d, s) => ops.softmaxCrossEntropyBackward(s, probs.pick(d), labels.pick(d), dl.pick(d), 1));
      if (ignored === 1) {
        const zeros = Both.full([rows, classes], 0);
        const r = await dl.read();
        const z = await zeros.read();
        record('softmaxCrossEntropyBackward', name, 'dlogits (all 0)', compareBits(r.gpu, z.gpu), 0);
        record('softmaxCrossEntropyBackward', name, 'dlogits (all 0, cpu)', compareBits(r.cpu, z.cpu), 0);
      } else {
        const sc = mapF64(p.cpu, (v, i) => (Math.abs(v) + (lab[Math.floor(i / classes)] === i % classes ? 1 : 0)) / rows);
        await expectOut('softmaxCrossEntropyBackward', name, 'dlogits', dl, TOL, { scale: sc, floor: 1e-30 });
      }
    });
  }
  for (const [r, c] of [
    [1, 8],
    [64, 8],
    [256, 8],
    [300, 33],
    [4096, 1],
  ]) {
    const name = `[${r}, ${c}]`;
    await opCase('sigmoidCrossEntropyForward', name, async () => {
      const z0 = randomArray(rng, r * c, 0.1, 6),
        t0 = rng.uniformArray(r * c, 0, 1);
      const logits = Both.of(z0, [r, c]),
        targets = Both.of(t0, [r, c]);
      const probs = Both.full([r, c]),
        loss = Both.full([1]);
      both((d, s) => ops.sigmoidCrossEntropyForward(s, logits.pick(d), targets.pick(d), probs.pick(d), loss.pick(d)));
      const p = await expectOut('sigmoidCrossEntropyForward', name, 'probs', probs, TOL, { floor: 1e-30 });
      await expectOut('sigmoidCrossEntropyForward', name, 'loss', loss, TOL);
      for (const scale of [1, 0.25]) {
        const dl = Both.full([r, c]);
        both((d, s) => ops.sigmoidCrossEntropyBackward(s, probs.pick(d), targets.pick(d), dl.pick(d), scale));
        // The same probs on both sides (each its own): scale (|p| + |t|) bounds the rounding.
        const sc = mapF64(p.cpu, (v, i) => scale * (Math.abs(v) + t0[i]));
        await expectOut('sigmoidCrossEntropyBackward', `${name} scale ${scale}`, 'dlogits', dl, TOL, { scale: sc, floor: 1e-30 });
      }
    });
  }
  for (const [r, c] of [
    [9, 13],
    [100003, 1],
    [4097, 3],
    [256, 784],
  ]) {
    const name = `[${r}, ${c}]`;
    await opCase('mseForward', name, async () => {
      const p0 = randomArray(rng, r * c),
        t0 = randomArray(rng, r * c);
      const pred = Both.of(p0, [r, c]),
        target = Both.of(t0, [r, c]),
        loss = Both.full([1]);
      both((d, s) => ops.mseForward(s, pred.pick(d), target.pick(d), loss.pick(d)));
      await expectOut('mseForward', name, 'loss', loss, TOL);
      for (const scale of [1, 3]) {
        const dp = Both.full([r, c]);
        both((d, s) => ops.mseBackward(s, pred.pick(d), target.pick(d), dp.pick(d), scale));
        const sc = mapF64(p0, (v, i) => (2 * scale * (Math.abs(v) + Math.abs(t0[i]))) / (r * c));
        await expectOut('mseBackward', `${name} scale ${scale}`, 'dpred', dp, TOL, { scale: sc });
      }
    });
  }
}

/**
 * The LSTM cell: forward (activations in place, c, h), then the backward on the same inputs on
 * both sides (the CPU forward's activations and c), with and without dc. Error scales are the
 * magnitudes of the terms each output rounds: |f cPrev| + |i g| for c (which may cancel), |h|
 * plus c's for h; for the gradients, 1 - t, 1 - i, ... are rounded at the scale of 1, so
 * dcTotal's scale is |dc| + |dh o| (1 + |tanh c|) and, e.g., the input gate's |dcTotal g i|.
 * (tanh(c) differs between the backends by a few ulp; near |tanh c| = 1 that is a large
 * relative change of 1 - tanh^2 c, but a few u of these scales.)
 */
async function checkLstm(): Promise<void> {
  // The recurrent benchmark's shapes (batch 64/256, hidden 128/512) and two odd ones; --small
  // (compute-sanitizer) keeps the batch-64 ones.
  const shapes = [
    [1, 1],
    [7, 5],
    [64, 128],
    [64, 512],
    [256, 128],
    [256, 512],
  ].filter(([B]) => !options.small || B <= 64);
  for (const [B, H] of shapes) {
    const name = `[${B}, ${H}]`;
    await opCase('lstmCellForward', name, async () => {
      const pre = randomArray(rng, B * 4 * H, 0.1, 4),
        cp = randomArray(rng, B * H, 0.1, 2);
      const gates = Both.of(pre, [B, 4 * H]),
        cPrev = Both.of(cp, [B, H]);
      const c = Both.full([B, H]),
        h = Both.full([B, H]);
      both((d, s) => ops.lstmCellForward(s, gates.pick(d), cPrev.pick(d), c.pick(d), h.pick(d)));
      const a = await expectOut('lstmCellForward', name, 'gates', gates, TOL, { floor: 1e-30 });
      const gate = (k: number, e: number) => a.cpu[Math.floor(e / H) * 4 * H + k * H + (e % H)];
      const cScale = mapF64(cp, (v, e) => Math.abs(gate(1, e) * v) + Math.abs(gate(0, e) * gate(2, e)));
      const cv = await expectOut('lstmCellForward', name, 'c', c, TOL, { scale: cScale, floor: 1e-30 });
      await expectOut('lstmCellForward', name, 'h', h, TOL, { scale: (hc) => mapF64(hc, (v, e) => Math.abs(v) + cScale[e]), floor: 1e-30 });

      const act = Both.of(a.cpu, [B, 4 * H]),
        cIn = Both.of(cv.cpu, [B, H]);
      const dh0 = randomArray(rng, B * H),
        dc0 = randomArray(rng, B * H);
      const dh = Both.of(dh0, [B, H]);
      for (const withDc of [false, true]) {
        const dc = withDc ? Both.of(dc0, [B, H]) : null;
        const dg = Both.full([B, 4 * H]),
          dcp = Both.full([B, H]);
        both((d, s) => ops.lstmCellBackward(s, act.pick(d), cPrev.pick(d), cIn.pick(d), dh.pick(d), on(d, dc), dg.pick(d), dcp.pick(d)));
        const dct = mapF64(
          cv.cpu,
          (v, e) => (withDc ? Math.abs(dc0[e]) : 0) + Math.abs(dh0[e] * gate(3, e)) * (1 + Math.abs(Math.tanh(v))),
        );
        const gScale = new Float64Array(B * 4 * H);
        for (let e = 0; e < B * H; e++) {
          const r = Math.floor(e / H),
            j = e % H,
            base = r * 4 * H + j;
          const i = gate(0, e),
            f = gate(1, e),
            g = gate(2, e),
            o = gate(3, e);
          gScale[base] = dct[e] * Math.abs(g) * i;
          gScale[base + H] = dct[e] * Math.abs(cp[e]) * f;
          gScale[base + 2 * H] = dct[e] * i * (1 + Math.abs(g));
          gScale[base + 3 * H] = Math.abs(dh0[e] * Math.tanh(cv.cpu[e])) * o;
        }
        const tag = `${name}${withDc ? ' with dc' : ' without dc'}`;
        await expectOut('lstmCellBackward', tag, 'dgates', dg, TOL, { scale: gScale, floor: 1e-30 });
        await expectOut('lstmCellBackward', tag, 'dcPrev', dcp, TOL, { scale: mapF64(dct, (v, e) => v * gate(1, e)), floor: 1e-30 });
      }
    });
  }
}

/**
 * The convolution family (cuda/conv.cu) against the CPU (native/cpu/conv.cpp, pool.cpp), NCHW.
 * conv2d forward and backward: direct sums of C KH KW (forward), K KH KW (dx) or N OH OW (dw,
 * db) products, summed in another order on each side (the GPU's filter gradients in double):
 * tolerance gemmTolerance(terms) relative to the sum of the terms' magnitudes, as for gemm.
 * Pools and swapLastAxes: bit for bit (the CUDA kernels gather the CPU's terms in its order,
 * with explicit roundings). Shapes: odd ones, strided and rectangular windows, and the cnn()
 * model's (5x5 'same' convolutions, 3x3 pools with stride 2 and padding 1) at batch 8 and 32
 * filters; --small keeps the small ones.
 */
async function checkConv(): Promise<void> {
  interface ConvCase {
    n: number;
    c: number;
    h: number;
    w: number;
    k: number;
    kernel: [number, number];
    stride: [number, number];
    pad: [number, number];
    bias: boolean;
  }
  const convCases: ConvCase[] = [
    { n: 3, c: 2, h: 7, w: 5, k: 4, kernel: [3, 3], stride: [1, 1], pad: [1, 1], bias: true },
    { n: 2, c: 3, h: 9, w: 11, k: 5, kernel: [5, 3], stride: [2, 1], pad: [2, 1], bias: true },
    { n: 8, c: 3, h: 32, w: 32, k: 32, kernel: [5, 5], stride: [1, 1], pad: [2, 2], bias: false },
    { n: 8, c: 32, h: 16, w: 16, k: 32, kernel: [5, 5], stride: [1, 1], pad: [2, 2], bias: false },
  ].filter((_, i) => !options.small || i < 2) as ConvCase[];
  for (const cc of convCases) {
    const { n, c, h, w, k } = cc;
    const [kh, kw] = cc.kernel,
      [sh, sw] = cc.stride,
      [ph, pw] = cc.pad;
    const oh = Math.floor((h + 2 * ph - kh) / sh) + 1,
      ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
    const name = `x [${n}, ${c}, ${h}, ${w}] w [${k}, ${c}, ${kh}, ${kw}] stride [${sh}, ${sw}] padding [${ph}, ${pw}]${cc.bias ? ' bias' : ''}`;
    // Every in-image term (output, input, filter element) of the convolution, once.
    const eachTerm = (f: (yi: number, xi: number, wi: number, ni: number, ki: number) => void) => {
      for (let ni = 0; ni < n; ni++)
        for (let ki = 0; ki < k; ki++)
          for (let y0 = 0; y0 < oh; y0++)
            for (let x0 = 0; x0 < ow; x0++) {
              const yi = ((ni * k + ki) * oh + y0) * ow + x0;
              for (let ci = 0; ci < c; ci++)
                for (let i = 0; i < kh; i++) {
                  const ih = y0 * sh - ph + i;
                  if (ih < 0 || ih >= h) continue;
                  for (let j = 0; j < kw; j++) {
                    const iw = x0 * sw - pw + j;
                    if (iw < 0 || iw >= w) continue;
                    f(yi, ((ni * c + ci) * h + ih) * w + iw, ((ki * c + ci) * kh + i) * kw + j, ni, ki);
                  }
                }
            }
    };
    const x0 = randomArray(rng, n * c * h * w),
      w0 = randomArray(rng, k * c * kh * kw),
      b0 = randomArray(rng, k),
      dy0 = randomArray(rng, n * k * oh * ow);
    await opCase('conv2dForward', name, async () => {
      const x = Both.of(x0, [n, c, h, w]),
        wt = Both.of(w0, [k, c, kh, kw]),
        b = cc.bias ? Both.of(b0, [k]) : null,
        y = Both.full([n, k, oh, ow]);
      both((d, s) => ops.conv2dForward(s, x.pick(d), wt.pick(d), on(d, b), y.pick(d), sh, sw, ph, pw));
      const scale = new Float64Array(n * k * oh * ow);
      if (cc.bias) for (let e = 0; e < scale.length; e++) scale[e] = Math.abs(b0[Math.floor(e / (oh * ow)) % k]);
      eachTerm((yi, xi, wi) => (scale[yi] += Math.abs(x0[xi] * w0[wi])));
      await expectOut('conv2dForward', name, 'y', y, gemmTolerance(c * kh * kw + 1), { scale, floor: 1e-30 });
    });
    for (const needInputGrad of [true, false]) {
      const tag = `${name}, ${needInputGrad ? 'dx, dw, db' : 'dw only'}`;
      await opCase('conv2dBackward', tag, async () => {
        const dw0 = randomArray(rng, k * c * kh * kw, 0.01, 0.1),
          db0 = randomArray(rng, k, 0.01, 0.1);
        const x = Both.of(x0, [n, c, h, w]),
          wt = Both.of(w0, [k, c, kh, kw]),
          dy = Both.of(dy0, [n, k, oh, ow]),
          dx = needInputGrad ? Both.full([n, c, h, w]) : null,
          dw = Both.of(dw0, [k, c, kh, kw]),
          db = needInputGrad ? Both.of(db0, [k]) : null;
        both((d, s) => ops.conv2dBackward(s, x.pick(d), wt.pick(d), dy.pick(d), on(d, dx), dw.pick(d), on(d, db), sh, sw, ph, pw));
        const dxScale = new Float64Array(n * c * h * w),
          dwScale = mapF64(dw0, Math.abs),
          dbScale = mapF64(db0, Math.abs);
        eachTerm((yi, xi, wi) => {
          dxScale[xi] += Math.abs(dy0[yi] * w0[wi]);
          dwScale[wi] += Math.abs(dy0[yi] * x0[xi]);
        });
        for (let e = 0; e < dy0.length; e++) dbScale[Math.floor(e / (oh * ow)) % k] += Math.abs(dy0[e]);
        if (dx) await expectOut('conv2dBackward', tag, 'dx', dx, gemmTolerance(k * kh * kw), { scale: dxScale, floor: 1e-30 });
        await expectOut('conv2dBackward', tag, 'dw', dw, gemmTolerance(n * oh * ow + 1), { scale: dwScale, floor: 1e-30 });
        if (db) await expectOut('conv2dBackward', tag, 'db', db, gemmTolerance(n * oh * ow + 1), { scale: dbScale, floor: 1e-30 });
      });
    }
  }

  const poolCases: [number[], [number, number], [number, number], [number, number]][] = [
    [
      [4, 3, 8, 8],
      [2, 2],
      [2, 2],
      [0, 0],
    ],
    [
      [2, 3, 7, 9],
      [3, 3],
      [2, 2],
      [1, 1],
    ],
    [
      [2, 2, 6, 5],
      [3, 2],
      [1, 2],
      [1, 0],
    ],
    [
      [8, 32, 32, 32],
      [3, 3],
      [2, 2],
      [1, 1],
    ], // cnn()'s pools after a 32x32 block
  ];
  for (const [shape, [kh, kw], [sh, sw], [ph, pw]] of poolCases.filter(([s]) => !options.small || numel(s) <= 4096)) {
    const [n, c, h, w] = shape;
    const oh = Math.floor((h + 2 * ph - kh) / sh) + 1,
      ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
    const name = `x [${shape.join(', ')}] window [${kh}, ${kw}] stride [${sh}, ${sw}] padding [${ph}, ${pw}]`;
    for (const kind of ['max', 'avg'] as const) {
      const fwd = kind === 'max' ? 'maxPool2dForward' : 'avgPool2dForward';
      const bwd = kind === 'max' ? 'maxPool2dBackward' : 'avgPool2dBackward';
      await opCase(fwd, name, async () => {
        const x0 = randomArray(rng, n * c * h * w);
        if (kind === 'max') x0.set([0.5, 0.5, 0.5, 0.5]); // ties: the first in row-major order wins on both
        const x = Both.of(x0, shape),
          y = Both.full([n, c, oh, ow]),
          dy = Both.of(randomArray(rng, n * c * oh * ow), [n, c, oh, ow]),
          dx = Both.full(shape);
        both((d, s) =>
          kind === 'max'
            ? ops.maxPool2dForward(s, x.pick(d), y.pick(d), kh, kw, sh, sw, ph, pw)
            : ops.avgPool2dForward(s, x.pick(d), y.pick(d), kh, kw, sh, sw, ph, pw),
        );
        await expectOut(fwd, name, 'y', y, 0);
        both((d, s) =>
          kind === 'max'
            ? ops.maxPool2dBackward(s, x.pick(d), dy.pick(d), dx.pick(d), kh, kw, sh, sw, ph, pw)
            : ops.avgPool2dBackward(s, dy.pick(d), dx.pick(d), kh, kw, sh, sw, ph, pw),
        );
        await expectOut(bwd, name, 'dx', dx, 0);
      });
    }
  }

  for (const shape of [
    [3, 7, 5],
    [8, 32, 1024], // BatchNorm2d's transpose of a [8, 32, 32, 32] activation
  ]) {
    const name = `[${shape.join(', ')}]`;
    await opCase('swapLastAxes', name, async () => {
      const x = Both.of(randomArray(rng, numel(shape)), shape),
        y = Both.full([shape[0], shape[2], shape[1]]);
      both((d, s) => ops.swapLastAxes(s, x.pick(d), y.pick(d)));
      await expectOut('swapLastAxes', name, 'y', y, 0);
    });
  }
}

/**
 * Whole recurrent windows (ts/recurrent/training.ts): the same RecurrentTraining on the CPU and
 * on the GPU, same seed, same Copy-task windows (resets inside windows, rows ignored with -1),
 * compared window by window: the window's loss, the carried state, and every weight of the
 * core, the read-out, M and (DNI + Aux) the Aux head. SGD (lr 0.1): Adam turns a gradient that
 * is rounding noise on both sides into a full-size step of either sign.
 * Tolerances. The per-op bounds above do not carry over: differences compound through T steps
 * and the windows, and a GEMM of K = I + H terms may differ by up to 2 (K + 2) u of its terms'
 * magnitude (6e-5 at K = 522). So: the loss relative (floor 1e-3), h and c absolute, and each
 * weight's UPDATE (its change since the initial weights, identical on both sides) relative to
 * max(|its update|, the tensor's mean |update|), all within WINDOW_TOL = 1e-3: some 20 times
 * the worst bound of the GEMMs and far above the typical error (sqrt(K) u), while a wrong
 * kernel (a gate's derivative, a missed row, ĝ from the wrong state) is off by O(1) of the
 * update and by >= 1e-2 in the state.
 */
const WINDOW_TOL = 1e-3;

async function checkRecurrent(): Promise<void> {
  const windows = 6;
  type Config = { method: RecurrentMethod; streams: 'single' | 'separate'; batch: number; hidden: number };
  const configs: Config[] = [
    { method: 'dni', streams: 'separate', batch: 64, hidden: 128 },
    { method: 'dni', streams: 'separate', batch: 256, hidden: 512 },
    { method: 'dni-aux', streams: 'separate', batch: 64, hidden: 128 },
    { method: 'bptt', streams: 'single', batch: 64, hidden: 128 },
  ];
  for (const c of configs.filter((c) => !options.small || c.batch <= 64)) {
    const name = `${c.method} streams '${c.streams}', batch ${c.batch}, LSTM ${c.hidden}, T = 5`;
    await opCase('RecurrentTraining.step', name, async () => {
      const source = new CopyTask(c.batch, { seed: options.seed, curriculum: { level: 3 } });
      const data = Array.from({ length: windows }, () => source.nextWindow(5));
      const make = (device: Device) =>
        new RecurrentTraining(
          new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden: c.hidden }),
          {
            method: c.method,
            streams: c.streams,
            device,
            seed: options.seed,
            optimizer: () => new SGD({ lr: 0.1 }),
            ...(c.method === 'bptt' ? {} : { synthesizer: {} }),
          },
        );
      const cpu = make(Device.cpu()),
        gpu = make(Device.parse(GPU));
      const weights = (t: RecurrentTraining) => [
        ...t.model.parameters().map((p, i) => ({ name: `model.${i}`, tensor: p.value })),
        ...(t.synthesizer?.parameters() ?? []).map((p, i) => ({ name: `synthesizer.${i}`, tensor: p.value })),
        ...(t.aux?.parameters() ?? []).map((p, i) => ({ name: `aux.${i}`, tensor: p.value })),
      ];
      const readAll = (t: RecurrentTraining) => Promise.all(weights(t).map((w) => w.tensor.readFloat32(t.stream)));
      try {
        const initial = await readAll(cpu);
        const g0 = await readAll(gpu);
        // The same host-side initialisation, uploaded: bit for bit.
        initial.forEach((w, i) => record('RecurrentTraining.step', name, `initial ${weights(cpu)[i].name}`, compareBits(g0[i], w), 0));
        for (let w = 0; w < windows; w++) {
          // Both enqueued before either is awaited, as a training loop would.
          const [a, b] = await Promise.all([gpu.step(data[w]), cpu.step(data[w])]);
          await Promise.all([gpu.synchronize(), cpu.synchronize()]);
          const tag = `${name} window ${w + 1}`;
          record('RecurrentTraining.step', tag, 'loss', compare([a.loss], [b.loss], { floor: 1e-3 }), WINDOW_TOL);
          for (const k of ['h', 'c'] as const) {
            const [g, q] = await Promise.all([gpu.state![k].readFloat32(gpu.stream), cpu.state![k].readFloat32(cpu.stream)]);
            record('RecurrentTraining.step', tag, `state.${k}`, compare(g, q, { scale: new Float64Array(q.length), floor: 1 }), WINDOW_TOL);
          }
          if (w === 0 || w === windows - 1) {
            const [gw, cw] = await Promise.all([readAll(gpu), readAll(cpu)]);
            cw.forEach((q, i) => {
              const dq = mapF64(q, (v, e) => v - initial[i][e]);
              const dg = mapF64(gw[i], (v, e) => v - initial[i][e]);
              const mean = dq.reduce((s, v) => s + Math.abs(v), 0) / Math.max(1, dq.length);
              const r = compare(dg, dq, { scale: mapF64(dq, (v) => Math.abs(v)), floor: Math.max(mean, 1e-30) });
              record('RecurrentTraining.step', tag, `${weights(cpu)[i].name} update`, r, WINDOW_TOL);
            });
          }
        }
      } finally {
        cpu.dispose();
        gpu.dispose();
      }
    });
  }
}

/** One tensor's SGD and Adam steps, as one-element group steps (test/helpers/optimizer-steps). */
async function checkOptimizers(): Promise<void> {
  const FLOOR = 0.1;
  for (const [n, momentum, wd, v0Random] of [
    [42, 0, 0.01, false],
    [42, 0.9, 0.01, false],
    [42, 0.9, 0.05, true],
    [42, 0.5, 0, true],
    [300001, 0.9, 0.01, true],
  ] as const) {
    const name = `n=${n} momentum ${momentum} weight decay ${wd}${v0Random ? ' (random v0)' : ''}`;
    await opCase('sgdStep', name, async () => {
      const param = Both.of(randomArray(rng, n), [n]);
      const vel = momentum === 0 ? null : Both.of(v0Random ? randomArray(rng, n) : new Float32Array(n), [n]);
      for (let step = 1; step <= 5; step++) {
        const g = Both.of(randomArray(rng, n), [n]);
        both((d, s) => sgdStep(s, param.pick(d), g.pick(d), on(d, vel), 0.1, momentum, wd));
        await expectOut('sgdStep', `${name} step ${step}`, 'param', param, TOL, { floor: FLOOR });
        if (vel) await expectOut('sgdStep', `${name} step ${step}`, 'velocity', vel, TOL, { floor: FLOOR });
      }
    });
  }
  for (const [n, lr, b1, b2, eps, wd] of [
    [42, 0.01, 0.9, 0.999, 1e-8, 0],
    [42, 0.01, 0.9, 0.999, 1e-8, 0.01],
    [42, 0.003, 0.8, 0.99, 1e-3, 0.1],
    [300001, 0.001, 0.9, 0.999, 1e-8, 0],
  ]) {
    const name = `n=${n} lr ${lr} betas (${b1}, ${b2}) eps ${eps} weight decay ${wd}`;
    await opCase('adamStep', name, async () => {
      const param = Both.of(randomArray(rng, n), [n]);
      const m = Both.full([n], 0),
        v = Both.full([n], 0);
      for (let step = 1; step <= 6; step++) {
        const g = Both.of(randomArray(rng, n), [n]);
        both((d, s) => adamStep(s, param.pick(d), g.pick(d), m.pick(d), v.pick(d), lr, b1, b2, eps, wd, step));
        await expectOut('adamStep', `${name} step ${step}`, 'm', m, TOL, { floor: FLOOR });
        await expectOut('adamStep', `${name} step ${step}`, 'v', v, TOL); // v > 0: relative
        await expectOut('adamStep', `${name} step ${step}`, 'param', param, TOL, { floor: FLOOR });
      }
    });
  }
}

/** The fused parameter-group steps (what the optimizers use), scalars written on the stream. */
async function checkGroupOptimizers(): Promise<void> {
  const FLOOR = 0.1;
  // The second group has more than the 32 tensors of one launch, empty ones among them (each
  // tensor must be stepped exactly once: a packing bug once stepped those past the 32nd twice).
  const groups = [
    [[300, 257], [257], [1], [70001]],
    Array.from({ length: 40 }, (_, i) => (i % 9 === 4 ? [0] : i === 6 ? [2101] : [1 + ((i * 977) % 2600)])),
  ];
  for (const shapes of groups)
    for (const adam of [false, true]) {
      for (const momentum of adam ? [0] : [0, 0.9]) {
        const op = adam ? 'adamStepGroup' : 'sgdStepGroup';
        const name = `${shapes.length} tensors${adam ? '' : ` momentum ${momentum}`}`;
        await opCase(op, name, async () => {
          const params = shapes.map((sh) => Both.of(randomArray(rng, numel(sh)), sh));
          const s0 = shapes.map((sh) => Both.full(sh, 0)),
            s1 = shapes.map((sh) => Both.full(sh, 0));
          const hyper = Both.full([adam ? 2 : 1], 0);
          const [lr, b1, b2, eps, wd] = [0.01, 0.9, 0.999, 1e-8, 0.01];
          for (let step = 1; step <= (shapes.length > 32 ? 2 : 4); step++) {
            const grads = shapes.map((sh) => Both.of(randomArray(rng, numel(sh)), sh));
            const scalars = adam ? native.adamScalars(lr, b1, b2, step) : [lr];
            const pick = (list: Both[], d: Side) => list.map((b) => b.pick(d));
            both((d, s) => {
              ops.writeScalars(s, hyper.pick(d), scalars);
              if (adam) ops.adamStepGroup(s, pick(params, d), pick(grads, d), pick(s0, d), pick(s1, d), hyper.pick(d), b1, b2, eps, wd);
              else ops.sgdStepGroup(s, pick(params, d), pick(grads, d), momentum ? pick(s0, d) : null, hyper.pick(d), momentum, wd);
            });
            for (let t = 0; t < shapes.length; t++) {
              const at = `tensor ${t} step ${step}`;
              await expectOut(op, `${name} ${at}`, 'param', params[t], TOL, { floor: FLOOR });
              await expectOut(op, `${name} ${at}`, 'grad (zeroed)', grads[t], 0);
              if (adam || momentum) await expectOut(op, `${name} ${at}`, adam ? 'm' : 'velocity', s0[t], TOL, { floor: FLOOR });
              if (adam) await expectOut(op, `${name} ${at}`, 'v', s1[t], TOL);
            }
          }
        });
      }
    }
}

/** fit({ graph: true }) replays CUDA graphs: same device, same kernels, so bit-identical results. */
async function checkGraphs(): Promise<void> {
  const device = Device.parse(GPU);
  const { train } = await datasets.mnist();
  const data = train.head(256 * 12 + 100); // 12 full batches and a 100-row tail per epoch
  for (const method of ['backprop', 'cdni'] as const) {
    await runtimeCheck(
      `fit({ graph: true }) equals fit() bit for bit on the GPU (${method}${method === 'cdni' ? ', one stream per module' : ''})`,
      async () => {
        const run = async (graph: boolean) => {
          const model = mlp(784, [256, 256, 256], 10);
          const net: Module =
            method === 'backprop' ? model : decouple(model, { synthesizer: { conditioned: true }, streams: 'per-module' });
          const lr = learningRateSchedules.stepDecay(1e-3, [10], 0.1);
          const trainer = new Trainer(net, { device, optimizer: () => new Adam({ lr }), seed: options.seed });
          const losses: number[] = [];
          try {
            await trainer.fit(data, {
              epochs: 2,
              batchSize: 256,
              graph,
              onStep: (m) => {
                losses.push(m.loss);
              },
            });
            const params = await Promise.all(net.parameters().map((p) => p.value.readFloat32(trainer.stream)));
            return { losses, params };
          } finally {
            trainer.dispose();
          }
        };
        const eager = await run(false);
        const replay = await run(true);
        assert(
          eager.losses.length === 26 && replay.losses.length === 26,
          `expected 26 steps, got ${eager.losses.length} and ${replay.losses.length}`,
        );
        const lossDiff = eager.losses.findIndex((v, i) => !Object.is(v, replay.losses[i]));
        assert(lossDiff < 0, `losses differ from step ${lossDiff + 1}: ${eager.losses[lossDiff]} vs ${replay.losses[lossDiff]}`);
        const worst = Math.max(...eager.params.map((p, i) => compareBits(replay.params[i], p).worst));
        assert(worst === 0, `parameters differ (worst ${fmt(worst)})`);
        return `26 steps (24 replayed from a graph), final loss ${eager.losses[25].toFixed(4)}`;
      },
    );
  }
  await runtimeCheck('a capturing stream refuses host reads; an unjoined stream fails endCapture; the device works after', async () => {
    const s = new native.Stream(GPU),
      side = new native.Stream(GPU);
    const e = new native.Event(GPU);
    const t = track(new native.Tensor([4], 'float32', GPU, 'zeros'));
    native.beginCapture(s);
    let readError = '';
    try {
      void t.read(s);
    } catch (err) {
      readError = (err as Error).message;
    }
    native.endCapture(s).dispose();
    assert(/being captured/.test(readError), `read during capture: ${readError || 'no error'}`);
    native.beginCapture(s);
    e.record(s);
    side.wait(e);
    ops.fill(side, t, 1);
    let endError = '';
    try {
      native.endCapture(s).dispose();
    } catch (err) {
      endError = (err as Error).message;
    }
    assert(endError !== '', 'endCapture with an unjoined stream did not fail');
    ops.fill(s, t, 2);
    const back = (await within(t.read(s), 10000, 'read after the failed capture')) as Float32Array;
    assert(
      back.every((v) => v === 2),
      `after the failed capture: ${Array.from(back).join(', ')}`,
    );
    return `endCapture error: ${endError}`;
  });
}

/** An out-of-range label must reject the stream's Promise, write nothing, and leave the stream usable. */
async function checkLabelErrors(): Promise<void> {
  await runtimeCheck('softmaxCrossEntropyForward with an out-of-range label rejects the stream and writes nothing', async () => {
    const s = new native.Stream(GPU);
    const logits = track(new native.Tensor([2, 3], 'float32', GPU, Float32Array.from([1, 2, 3, 4, 5, 6])));
    const probs = track(new native.Tensor([2, 3], 'float32', GPU, new Float32Array(6).fill(NaN)));
    const loss = track(new native.Tensor([1], 'float32', GPU, new Float32Array(1).fill(NaN)));
    for (const bad of [
      [0, 3],
      [-2, 1],
    ]) {
      // -1 is not an error: a row without a target
      const labels = track(new native.Tensor([2], 'int32', GPU, Int32Array.from(bad)));
      ops.softmaxCrossEntropyForward(s, logits, labels, probs, loss);
      let error: Error | undefined;
      await within(s.synchronize(), 30000, 'synchronize').catch((e: Error) => {
        error = e;
      });
      assert(!!error, `labels [${bad}]: synchronize() resolved; it must reject`);
      assert(/label/.test(error.message), `labels [${bad}]: rejected with '${error.message}', expected a message about the label`);
      const p = (await probs.read(s)) as Float32Array,
        l = (await loss.read(s)) as Float32Array;
      assert(compareBits(p, new Float32Array(6).fill(NaN)).worst === 0, `labels [${bad}]: probs were written`);
      assert(compareBits(l, new Float32Array(1).fill(NaN)).worst === 0, `labels [${bad}]: loss was written`);
    }
    // The stream keeps working: a valid call gives the CPU's result.
    const good = track(new native.Tensor([2], 'int32', GPU, Int32Array.from([2, 0])));
    ops.softmaxCrossEntropyForward(s, logits, good, probs, loss);
    await within(s.synchronize(), 30000, 'synchronize after the error');
    const cl = track(new native.Tensor([1], 'float32', 'cpu', 'zeros')),
      cp = track(new native.Tensor([2, 3], 'float32', 'cpu', 'zeros'));
    ops.softmaxCrossEntropyForward(
      cpuS,
      track(new native.Tensor([2, 3], 'float32', 'cpu', Float32Array.from([1, 2, 3, 4, 5, 6]))),
      track(new native.Tensor([2], 'int32', 'cpu', Int32Array.from([2, 0]))),
      cp,
      cl,
    );
    const r = compare((await loss.read(s)) as Float32Array, (await cl.read(cpuS)) as Float32Array);
    assert(r.worst <= TOL, `after the error, the loss differs from the CPU's: ${describeReport(r)}`);
    return `rejected with a label error twice (labels [0, 3] and [-2, 1] for 3 classes), nothing written, stream usable after (loss err ${fmt(r.worst)})`;
  });
  await runtimeCheck('oneHot with an out-of-range label rejects the stream', async () => {
    const s = new native.Stream(GPU);
    for (const bad of [
      [0, 5, 1],
      [0, -1, 1],
    ]) {
      const out = track(new native.Tensor([3, 5], 'float32', GPU, 'zeros'));
      ops.oneHot(s, track(new native.Tensor([3], 'int32', GPU, Int32Array.from(bad))), out);
      let error: Error | undefined;
      await within(s.synchronize(), 30000, 'synchronize').catch((e: Error) => {
        error = e;
      });
      assert(
        !!error && /label/.test(error.message),
        `labels [${bad}]: expected a rejection about the label, got ${error ? `'${error.message}'` : 'a resolved Promise'}`,
      );
    }
    const out = track(new native.Tensor([3, 5], 'float32', GPU, 'zeros'));
    ops.oneHot(s, track(new native.Tensor([3], 'int32', GPU, Int32Array.from([4, 0, 2]))), out);
    const v = (await out.read(s)) as Float32Array;
    assert(v[4] === 1 && v[5] === 1 && v[12] === 1 && v.reduce((a, b) => a + b, 0) === 3, 'oneHot after the error gave a wrong result');
    return 'labels [0, 5, 1] and [0, -1, 1] for 5 classes rejected; the stream works after';
  });
}

// ---- runtime --------------------------------------------------------------------------------

async function checkRuntime(): Promise<void> {
  await runtimeCheck('tensor upload / read-back round trip (bit for bit)', async () => {
    const sizes = [0, 1, 1023, (2 << 20) + 1, (3 << 20) + 5, 16 << 20]; // up to 64 MiB (upload chunks are 4 MiB)
    const s = new native.Stream(GPU);
    for (const n of sizes) {
      const data = randomArray(rng, n);
      const t = track(new native.Tensor([n], 'float32', GPU, data));
      const back = (await within(t.read(), 60000, `read of ${n} floats`)) as Float32Array; // default stream
      assert(compareBits(back, data).worst === 0, `float32 n=${n}: read-back differs from the upload`);
      const back2 = (await t.read(s)) as Float32Array;
      assert(compareBits(back2, data).worst === 0, `float32 n=${n}: read-back on another stream differs`);
      t.dispose();
    }
    const ints = Int32Array.from({ length: (3 << 20) + 3 }, (_, i) => (i * 2654435761) | 0);
    ints.set([2147483647, -2147483648, 0, -1]);
    const ti = track(new native.Tensor([ints.length], 'int32', GPU, ints));
    assert(compareBits((await ti.read(s)) as Int32Array, ints).worst === 0, 'int32 read-back differs');
    const z = track(new native.Tensor([1000], 'float32', GPU, 'zeros'));
    assert(
      ((await z.read()) as Float32Array).every((v) => Object.is(v, 0)),
      "'zeros' tensor is not all +0",
    );
    return `float32 sizes ${sizes.join(', ')} and int32 ${ints.length}: exact, on the default and on another stream; 'zeros' init ok`;
  });

  await runtimeCheck('a stream runs its work in order', async () => {
    const s = new native.Stream(GPU);
    const x = track(new native.Tensor([100000], 'float32', GPU, new Float32Array(100000).fill(1)));
    const y = track(new native.Tensor([100000], 'float32', GPU, new Float32Array(100000).fill(3)));
    let expected = 3;
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 0) {
        ops.axpby(s, 1, x, 2, y);
        expected = f32(2 * expected + 1);
      } else {
        ops.axpby(s, -1, x, 0.5, y);
        expected = f32(0.5 * expected - 1);
      }
    }
    const out = (await within(y.read(s), 30000, 'read')) as Float32Array;
    assert(
      out.every((v) => v === expected),
      `got ${out[0]} .. ${out[out.length - 1]}, expected ${expected} everywhere`,
    );
    return `300 dependent axpby calls: every element ${expected}`;
  });

  await runtimeCheck('synchronize() on several streams at once', async () => {
    const streams = Array.from({ length: 4 }, () => new native.Stream(GPU));
    const ys = streams.map((s, k) => {
      const y = track(new native.Tensor([1 << 18], 'float32', GPU, 'zeros'));
      const x = track(new native.Tensor([1 << 18], 'float32', GPU, new Float32Array(1 << 18).fill(k + 1)));
      for (let i = 0; i < 50; i++) ops.axpby(s, 1, x, 1, y);
      return y;
    });
    await within(Promise.all(streams.map((s) => s.synchronize())), 30000, 'Promise.all(synchronize)');
    for (let k = 0; k < 4; k++) {
      const v = (await ys[k].read(streams[k])) as Float32Array;
      assert(
        v.every((e) => e === 50 * (k + 1)),
        `stream ${k}: got ${v[0]}, expected ${50 * (k + 1)}`,
      );
    }
    return '4 streams, 50 ops each, all settled with the right values';
  });

  // A long, exactly representable accumulation: c += A A with A = 1/1024 (n = 2048) adds 2^-9 per gemm.
  const n = 2048,
    reps = 40;
  const final = reps * 2 ** -9;
  const longWork = (s: NativeStream) => {
    const a = track(new native.Tensor([n, n], 'float32', GPU, new Float32Array(n * n).fill(1 / 1024)));
    const c = track(new native.Tensor([n, n], 'float32', GPU, 'zeros'));
    for (let i = 0; i < reps; i++) ops.gemm(s, a, a, c, false, false, 1, 1);
    return c;
  };

  await runtimeCheck('stream.wait(event) orders work across streams', async () => {
    const s1 = new native.Stream(GPU),
      s2 = new native.Stream(GPU);
    const c = longWork(s1);
    const e = new native.Event(GPU);
    e.record(s1);
    s2.wait(e);
    const d = track(new native.Tensor([n, n], 'float32', GPU, new Float32Array(n * n).fill(NaN)));
    ops.copy(s2, c, d);
    const v = (await within(d.read(s2), 60000, 'read')) as Float32Array;
    assert(
      v.every((x) => x === final),
      `the copy on s2 saw ${v[0]} (expected ${final}): it did not wait for s1`,
    );
    return `s2 copied the result of ${reps} gemms on s1 after waiting on s1's event: ${final} everywhere`;
  });

  await runtimeCheck(
    '(control) without the wait the copy may race',
    async () => {
      const s1 = new native.Stream(GPU),
        s2 = new native.Stream(GPU);
      const c = longWork(s1);
      const d = track(new native.Tensor([n, n], 'float32', GPU, new Float32Array(n * n).fill(NaN)));
      ops.copy(s2, c, d);
      const v = (await within(d.read(s2), 60000, 'read')) as Float32Array;
      await s1.synchronize();
      return v[0] === final
        ? 'no race seen (s1 finished first): the wait check above may not be sensitive'
        : `race seen (copy read ${v[0]} before s1 finished): the wait check above is sensitive`;
    },
    true,
  );

  await runtimeCheck('event.synchronize()', async () => {
    const never = new native.Event(GPU);
    await within(never.synchronize(), 5000, 'synchronize of an event never recorded');
    const s1 = new native.Stream(GPU);
    const c = longWork(s1);
    const e = new native.Event(GPU);
    e.record(s1);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = Date.now();
    await within(e.synchronize(), 60000, 'event.synchronize');
    clearInterval(timer);
    const ms = Date.now() - t0;
    // The host waited for the event: a fresh stream (no wait) sees the final values.
    const v = (await c.read(new native.Stream(GPU))) as Float32Array;
    assert(
      v.every((x) => x === final),
      `after event.synchronize() a fresh stream read ${v[0]}, expected ${final}`,
    );
    assert(ms < 20 || ticks > 2, `the event loop was blocked: ${ticks} timer ticks in ${ms} ms`);
    return `never recorded: resolves at once; after a record: resolved after the work (${ms} ms, ${ticks} timer ticks meanwhile)`;
  });

  await runtimeCheck('memory released while another stream still uses it is not reused early (fences)', async () => {
    const s1 = new native.Stream(GPU),
      s2 = new native.Stream(GPU);
    const m = 4 << 20;
    longWork(s1); // keeps s1 busy for a while
    const x = new native.Tensor([m], 'float32', GPU, new Float32Array(m).fill(1));
    const y = track(new native.Tensor([m], 'float32', GPU, 'zeros'));
    for (let i = 0; i < 20; i++) ops.axpby(s1, 1, x, 1, y);
    x.dispose(); // its queued reads on s1 have not run yet
    const zs: NativeTensor[] = [];
    for (let i = 0; i < 4; i++) {
      const z = track(new native.Tensor([m], 'float32', GPU));
      ops.fill(s2, z, -7); // would corrupt y if z got x's block while s1 still reads it
      zs.push(z);
    }
    await s2.synchronize();
    const v = (await within(y.read(s1), 60000, 'read')) as Float32Array;
    assert(
      v.every((e) => e === 20),
      `y = ${v[0]}: x's memory was reused while s1 still read it`,
    );
    return 'x disposed with 20 reads queued behind a long s1 queue; 4 new tensors filled on s2; y = 20 exactly';
  });

  if (GPU !== 'cpu')
    await runtimeCheck('an op on a CPU tensor with a CUDA stream is rejected with an Error', async () => {
      const t = track(new native.Tensor([4], 'float32', 'cpu', 'zeros'));
      let error: Error | undefined;
      try {
        ops.fill(gpuS, t, 1);
      } catch (e) {
        error = e as Error;
      }
      assert(!!error, 'no error thrown');
      return `${error.name}: ${error.message}`;
    });
}

async function checkOutOfMemory(): Promise<void> {
  await runtimeCheck('out of memory: a clear Error, the process lives and the device recovers', async () => {
    const notes: string[] = [];
    // 1e12 bytes in one tensor: refused before any allocation (2^32 elements at most).
    try {
      track(new native.Tensor([250000, 1000000], 'float32', GPU));
      throw new Error('a 1e12-byte tensor was created');
    } catch (e) {
      const err = e as Error;
      assert(err.message !== 'a 1e12-byte tensor was created', err.message);
      notes.push(`1e12 bytes: ${err.name}: ${err.message}`);
    }
    // Real exhaustion: 16 GiB tensors until cudaMalloc fails.
    const big: NativeTensor[] = [];
    let oom: Error | undefined;
    try {
      for (let i = 0; i < 64 && !oom; i++) {
        try {
          big.push(new native.Tensor([65536, 65536], 'float32', GPU));
        } catch (e) {
          oom = e as Error;
        }
      }
      assert(!!oom, `allocated ${big.length} x 16 GiB without an error`);
      assert(
        /out of memory/i.test(oom.message),
        `allocation ${big.length + 1} threw '${oom.message}', expected a clear out-of-memory message`,
      );
      notes.push(`after ${big.length} x 16 GiB: ${oom.name}: ${oom.message}`);
    } finally {
      for (const t of big) t.dispose();
    }
    // Recovery: new allocations, ops and a read.
    const m = 1 << 26; // 256 MiB
    const t = track(new native.Tensor([m], 'float32', GPU));
    const u = track(new native.Tensor([m], 'float32', GPU));
    ops.fill(gpuS, t, 2.5);
    ops.axpby(gpuS, 2, t, 0, u);
    const v = (await within(u.read(gpuS), 60000, 'read after out of memory')) as Float32Array;
    assert(
      v.every((e) => e === 5),
      'ops after the out-of-memory error gave wrong results',
    );
    notes.push('then 2 x 256 MiB allocations, fill, axpby and a read were right');
    return notes.join('; ');
  });
}

function checkTf32Reachable(): boolean {
  if (native.buildInfo().cuda) {
    state.tf32 = {
      reachable: true,
      detail: 'native.gemmTf32(true): the TF32 GEMM was checked (tolerance 2 (2^-11 + (K+2) u) of the scale)',
    };
    return true;
  }
  state.tf32 = { reachable: false, detail: 'this build has no CUDA backend' };
  return false;
}

// ---- MNIST ----------------------------------------------------------------------------------

async function trainMnist(device: Device, method: 'backprop' | 'cdni', epochs: number, seed: number, data: Split): Promise<MnistRun> {
  const batchSize = 256;
  const model = mlp(784, [256, 256, 256], 10);
  const net: Module = method === 'backprop' ? model : decouple(model, { synthesizer: { conditioned: true }, streams: 'per-module' });
  const total = epochs * Math.ceil(data.train.count / batchSize);
  const lr = learningRateSchedules.stepDecay(1e-3, [Math.round(0.6 * total), Math.round(0.85 * total)], 0.1);
  const trainer = new Trainer(net, { device, optimizer: () => new Adam({ lr }), seed });
  const firstLosses: number[] = [];
  const t0 = Date.now();
  try {
    const fit = await trainer.fit(data.train, {
      epochs,
      batchSize,
      logEvery: 1,
      onStep: (m) => {
        if (firstLosses.length < 20) firstLosses.push(m.loss);
      },
    });
    const ev = await trainer.evaluate(data.test);
    return {
      method,
      device: device.name,
      accuracy: ev.accuracy!,
      testLoss: ev.loss,
      epochLosses: fit.epochs.map((e) => e.loss),
      firstLosses,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    trainer.dispose();
  }
}

async function checkMnist(epochs: number, seed: number): Promise<void> {
  let data: Split;
  try {
    data = await datasets.mnist();
  } catch (e) {
    state.mnistComparisons.push({ name: 'MNIST data', pass: false, detail: (e as Error).message });
    return;
  }
  for (const method of ['backprop', 'cdni'] as const) {
    const runs: MnistRun[] = [];
    for (const device of [Device.cpu(), Device.parse(GPU)]) {
      state.section = `MNIST ${method} on ${device.name}`;
      try {
        const r = await trainMnist(device, method, epochs, seed, data);
        console.log(
          `  ${method} on ${device.name}: test accuracy ${(100 * r.accuracy).toFixed(2)}%, test loss ${r.testLoss.toFixed(4)}, ${r.seconds.toFixed(1)} s`,
        );
        runs.push(r);
      } catch (e) {
        const r: MnistRun = {
          method,
          device: device.name,
          accuracy: NaN,
          testLoss: NaN,
          epochLosses: [],
          firstLosses: [],
          seconds: 0,
          error: (e as Error).message,
        };
        console.log(`  FAIL ${method} on ${device.name}: ${r.error}`);
        runs.push(r);
      }
      state.mnist.push(runs[runs.length - 1]);
      flush();
    }
    const [cpu, gpu] = runs;
    const dAcc = 100 * Math.abs(gpu.accuracy - cpu.accuracy);
    state.mnistComparisons.push({
      name: `${method}: GPU test accuracy within 0.5 points of the CPU's`,
      pass: dAcc <= 0.5,
      detail:
        `CPU ${(100 * cpu.accuracy).toFixed(2)}%, GPU ${(100 * gpu.accuracy).toFixed(2)}%, difference ${dAcc.toFixed(2)} points` +
        (cpu.error || gpu.error ? ` (${cpu.error ?? gpu.error})` : ''),
    });
    // Step 1's loss depends only on the (seeded, identical) initial weights and the first batch.
    const r1 =
      cpu.firstLosses.length && gpu.firstLosses.length
        ? Math.abs(gpu.firstLosses[0] - cpu.firstLosses[0]) / Math.abs(cpu.firstLosses[0])
        : Infinity;
    state.mnistComparisons.push({
      name: `${method}: the first step's loss matches (relative difference <= 1e-4)`,
      pass: r1 <= 1e-4,
      detail:
        `CPU ${cpu.firstLosses[0]}, GPU ${gpu.firstLosses[0]}, relative difference ${fmt(r1)}; ` +
        `max relative difference over the first ${Math.min(cpu.firstLosses.length, gpu.firstLosses.length)} steps ` +
        fmt(
          Math.max(0, ...cpu.firstLosses.map((v, i) => (i < gpu.firstLosses.length ? Math.abs(gpu.firstLosses[i] - v) / Math.abs(v) : 0))),
        ) +
        `; epoch train losses CPU [${cpu.epochLosses.map((v) => v.toFixed(4)).join(', ')}] GPU [${gpu.epochLosses.map((v) => v.toFixed(4)).join(', ')}]`,
    });
  }
}

// ---- report ---------------------------------------------------------------------------------

interface OpSummary {
  op: string;
  cases: number;
  failed: number;
  worst: number;
  tol: number;
  worstCase: string;
  pass: boolean;
}

function summarize(): OpSummary[] {
  const byOp = new Map<string, OpCase[]>();
  for (const c of state.opCases) byOp.set(c.op, [...(byOp.get(c.op) ?? []), c]);
  return [...byOp.entries()].map(([op, cases]) => {
    const ratio = (c: OpCase) => (c.tol === 0 ? (c.worst === 0 ? 0 : Infinity) : c.worst / c.tol);
    const w = cases.reduce((a, b) => (ratio(b) > ratio(a) ? b : a));
    return {
      op,
      cases: cases.length,
      failed: cases.filter((c) => !c.pass).length,
      worst: w.worst,
      tol: w.tol,
      worstCase: `${w.case}: ${w.output}`,
      pass: cases.every((c) => c.pass),
    };
  });
}

const sectionKeys = [
  'data',
  'axpby',
  'gemm',
  'bias',
  'activations',
  'batchnorm',
  'losses',
  'lstm',
  'conv',
  'recurrent',
  'optimizers',
  'labels',
  'runtime',
  'graphs',
  'tf32',
  'mnist',
  'oom',
];
let options = {
  seed: 0,
  epochs: 2,
  skipMnist: false,
  timeLimit: 420,
  device: 'cuda:0',
  only: sectionKeys,
  command: '',
  isolate: true,
  part: '',
  small: false,
};
let deviceName = '';

function allPass(): boolean {
  return (
    state.complete &&
    state.fatal.length === 0 &&
    state.opCases.every((c) => c.pass) &&
    state.runtime.every((c) => c.pass) &&
    state.mnistComparisons.every((c) => c.pass)
  );
}

/** Text for a markdown table cell. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** What a section's process hands back to the parent (--part FILE). */
interface Part {
  deviceName: string;
  opCases: OpCase[];
  runtime: RuntimeCheck[];
  mnist: MnistRun[];
  mnistComparisons: { name: string; pass: boolean; detail: string }[];
  tf32: { reachable: boolean; detail: string };
  fatal: string[];
  complete: boolean;
}

function flush(): void {
  if (options.part) {
    const part: Part = {
      deviceName,
      opCases: state.opCases,
      runtime: state.runtime,
      mnist: state.mnist,
      mnistComparisons: state.mnistComparisons,
      tf32: state.tf32,
      fatal: state.fatal,
      complete: state.complete,
    };
    fs.writeFileSync(
      options.part,
      JSON.stringify(part, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
    );
    return;
  }
  const ops_ = summarize();
  const date = new Date(state.started).toISOString();
  const info = native.buildInfo();
  const pass = allPass();
  const report = {
    status: !state.complete
      ? 'incomplete'
      : !pass
        ? 'fail'
        : options.only.length < sectionKeys.length || options.skipMnist
          ? 'pass (partial)'
          : 'pass',
    sections: options.only,
    device: deviceName,
    date,
    command: options.command,
    seed: options.seed,
    seconds: (Date.now() - state.started) / 1000,
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, build: info },
    tolerances: {
      relative: TOL,
      gemm: '2 (K + 2) 2^-24 of |alpha| sum |a||b| + |beta||c|',
      dataMovement: 'bit for bit',
      optimizerFloor: 0.1,
      mnistAccuracyPoints: 0.5,
    },
    ops: ops_,
    opCases: state.opCases,
    runtime: state.runtime,
    tf32: state.tf32,
    mnist: { epochs: options.epochs, runs: state.mnist, comparisons: state.mnistComparisons },
    fatal: state.fatal,
    lastSection: state.section,
  };
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(
    path.join(resultsDir, 'gpu-check.json'),
    JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2) + '\n',
  );
  const failed = state.opCases.filter((c) => !c.pass);
  const md = [
    '# GPU check: CUDA backend against the CPU backend',
    '',
    `${date}; device **${deviceName}**; ${os.cpus().length} CPU cores (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}; ` +
      `command: \`${options.command}\`; seed ${options.seed}; ${report.seconds.toFixed(0)} s.`,
    '',
    `**Result: ${report.status.toUpperCase()}**` +
      (state.complete ? '' : ` (stopped in: ${state.section})`) +
      ` — ${state.opCases.length - failed.length}/${state.opCases.length} op comparisons, ` +
      `${state.runtime.filter((c) => c.pass).length}/${state.runtime.length} runtime checks, ` +
      `${state.mnistComparisons.filter((c) => c.pass).length}/${state.mnistComparisons.length} MNIST comparisons passed.`,
    '',
    ...(state.fatal.length ? ['Fatal: ' + state.fatal.join('; '), ''] : []),
    '## Ops (GPU vs CPU, worst over all cases and outputs)',
    '',
    'err = |gpu - cpu| / max(scale, floor); tolerance 0 means bit for bit; see the top of bench/gpu_check.ts for the scales.',
    '',
    '| op | comparisons | failed | worst error | tolerance | worst case | result |',
    '|---|---|---|---|---|---|---|',
    ...ops_.map(
      (o) =>
        `| ${o.op} | ${o.cases} | ${o.failed} | ${fmt(o.worst)} | ${fmt(o.tol)} | ${cell(o.worstCase)} | ${o.pass ? 'pass' : '**FAIL**'} |`,
    ),
    '',
    ...(failed.length
      ? [
          '### Failed comparisons',
          '',
          ...failed.slice(0, 50).map((c) => `- ${c.op} [${c.case}] ${c.output}: ${c.detail} (tolerance ${fmt(c.tol)})`),
          ...(failed.length > 50 ? [`- ... and ${failed.length - 50} more (see gpu-check.json)`] : []),
          '',
        ]
      : []),
    '## Runtime',
    '',
    '| check | result | detail |',
    '|---|---|---|',
    ...state.runtime.map((c) => `| ${cell(c.name)} | ${c.info ? 'info' : c.pass ? 'pass' : '**FAIL**'} | ${cell(c.detail)} |`),
    '',
    `TF32 GEMM: ${state.tf32.detail}.`,
    '',
    `## MNIST, 784-256-256-256-10, ${options.epochs} epochs, batch 256, Adam 1e-3 (x0.1 at 60% and 85%), seed ${options.seed}`,
    '',
    ...(options.skipMnist || !options.only.includes('mnist')
      ? ['skipped', '']
      : [
          '| method | device | test accuracy | test loss | seconds |',
          '|---|---|---|---|---|',
          ...state.mnist.map(
            (r) =>
              `| ${r.method} | ${r.device} | ${r.error ? `error: ${r.error}` : `${(100 * r.accuracy).toFixed(2)}%`} | ${r.testLoss.toFixed(4)} | ${r.seconds.toFixed(1)} |`,
          ),
          '',
          ...state.mnistComparisons.map((c) => `- ${c.pass ? 'pass' : '**FAIL**'}: ${c.name}: ${c.detail}`),
          '',
        ]),
    '## Not covered',
    '',
    '- a stream or event disposed while its work is pending (the JavaScript API has no explicit dispose for them);',
    '- GEMM operands at unaligned addresses (every tensor starts at an aligned allocation; odd leading dimensions are covered);',
    ...(state.tf32.reachable ? [] : ['- the TF32 GEMM kernel (no binding from JavaScript);']),
    '',
  ].join('\n');
  fs.writeFileSync(path.join(resultsDir, 'gpu-check.md'), md);
}

const usage =
  'usage: node dist/bench/gpu_check.js [--seed N] [--epochs 2] [--skip-mnist] [--time-limit 420]\n' +
  '  --device cpu   dry run of this harness without a GPU: the CPU against itself (no out-of-memory check)\n' +
  `  --only a,b     run only these sections (${sectionKeys.join(', ')}); the report then says 'partial'\n` +
  '  --no-isolate   run every section in this process (default: one process per section)\n' +
  '  --small        GEMM cases up to 256^3 only (and one 128x128-tile case), small conv/pool shapes: for compute-sanitizer';

function parseArgs(argv: string[]): typeof options {
  const flags = benchFlags(
    argv,
    {
      seed: String(Date.now() % 1000000),
      epochs: '2',
      'time-limit': '420',
      device: 'cuda:0',
      only: sectionKeys.join(','),
      part: '',
      'skip-mnist': false,
      'no-isolate': false,
      small: false,
      help: false,
    },
    'try --help',
  );
  if (flags.help) {
    console.log(usage);
    process.exit(0);
  }
  const only = flags.only.split(',');
  const bad = only.filter((k) => !sectionKeys.includes(k));
  if (bad.length) throw new Error(`--only: unknown section(s) ${bad.join(', ')}; known: ${sectionKeys.join(', ')}`);
  return {
    seed: numberFlag('--seed', flags.seed),
    epochs: numberFlag('--epochs', flags.epochs),
    timeLimit: numberFlag('--time-limit', flags['time-limit']),
    skipMnist: flags['skip-mnist'],
    device: flags.device,
    only,
    part: flags.part,
    // a part (one section run by the parent process) runs in this process
    isolate: !flags['no-isolate'] && flags.part === '',
    small: flags.small,
    command: ['node', path.relative(root, process.argv[1] ?? 'dist/bench/gpu_check.js'), ...argv].join(' '),
  };
}

async function section(key: string, name: string, body: () => Promise<void>): Promise<void> {
  if (!options.only.includes(key) || (key === 'mnist' && options.skipMnist)) return;
  state.section = name;
  const t0 = Date.now();
  console.log(`\n== ${name}`);
  try {
    await body();
  } catch (e) {
    state.fatal.push(`${name}: ${(e as Error).message}`);
    console.log(`  FATAL in ${name}: ${(e as Error).message}`);
  }
  disposeLive();
  console.log(`   (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  flush();
}

/**
 * Seconds a section's process may take at most (besides the run's --time-limit): the recurrent
 * windows run the CPU side at LSTM 512, batch 256, which a slow or loaded CPU could stretch
 * past the sections after it. (Its process's own watchdog reports what it got through.)
 */
const sectionSeconds: Partial<Record<string, number>> = { recurrent: 90 };

/** The sections this run covers, in order. */
function plannedSections(dryRun: boolean): string[] {
  return sectionKeys.filter((k) => options.only.includes(k) && !(k === 'mnist' && options.skipMnist) && !(k === 'oom' && dryRun));
}

/**
 * One process per section (see the file comment): each child writes its results to a part
 * file, merged here; a child that dies (a fault, a signal, the time limit) is a fatal error of
 * its section only. The report is rewritten after every section.
 */
function runIsolated(dryRun: boolean): never {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-check-'));
  const deadline = state.started + options.timeLimit * 1000;
  for (const key of plannedSections(dryRun)) {
    state.section = key;
    const left = Math.floor((deadline - Date.now()) / 1000);
    if (left < 5) {
      state.fatal.push(`time limit of ${options.timeLimit} s reached before section '${key}'`);
      break;
    }
    // A section with a limit of its own stops there and leaves the rest of the run's time to the others.
    const limit = Math.min(left, sectionSeconds[key] ?? left);
    const partFile = path.join(dir, `${key}.json`);
    const args = [
      process.argv[1],
      '--only',
      key,
      '--part',
      partFile,
      '--seed',
      String(options.seed),
      '--epochs',
      String(options.epochs),
      '--device',
      options.device,
      '--time-limit',
      String(limit),
      ...(options.small ? ['--small'] : []),
    ];
    const r = spawnSync(process.execPath, args, {
      stdio: 'inherit',
      env: process.env,
      timeout: (limit + 10) * 1000,
      killSignal: 'SIGKILL',
    });
    let part: Part | null = null;
    try {
      part = JSON.parse(fs.readFileSync(partFile, 'utf8'), (_, v) => (v === 'Infinity' ? Infinity : v === 'NaN' ? NaN : v)) as Part;
    } catch {
      /* the child wrote nothing: reported below */
    }
    if (part) {
      if (part.deviceName) deviceName = part.deviceName;
      state.opCases.push(...part.opCases);
      state.runtime.push(...part.runtime);
      state.mnist.push(...part.mnist);
      state.mnistComparisons.push(...part.mnistComparisons);
      if (key === 'tf32') state.tf32 = part.tf32;
      state.fatal.push(...part.fatal);
    }
    const how = r.signal ? `was killed by ${r.signal}` : r.error ? `failed: ${r.error.message}` : `exited with status ${r.status}`;
    if (!part || !part.complete || (r.status !== 0 && r.status !== 1))
      state.fatal.push(
        `section '${key}': its process ${how}${part ? (part.complete ? '' : ' before the section ended') : ' and wrote no results'}`,
      );
    flush();
  }
  fs.rmSync(dir, { recursive: true, force: true });
  state.complete = true;
  return finish();
}

/** Writes the report, prints the verdict and exits (0 pass, 1 fail). */
function finish(): never {
  flush();
  const pass = allPass();
  if (options.part) process.exit(pass ? 0 : 1);
  console.log(`\n${pass ? 'PASS' : 'FAIL'}: wrote ${path.relative(root, path.join(resultsDir, 'gpu-check.md'))} and gpu-check.json`);
  if (!pass) {
    for (const o of summarize().filter((s) => !s.pass))
      console.log(`  failed op: ${o.op} (${o.failed} of ${o.cases}), worst ${fmt(o.worst)} in ${o.worstCase}`);
    for (const c of state.runtime.filter((c) => !c.pass)) console.log(`  failed runtime check: ${c.name}: ${c.detail}`);
    for (const c of state.mnistComparisons.filter((c) => !c.pass)) console.log(`  failed MNIST comparison: ${c.name}: ${c.detail}`);
    for (const f of state.fatal) console.log(`  fatal: ${f}`);
  }
  process.exit(pass ? 0 : 1);
}

async function main(): Promise<void> {
  options = parseArgs(process.argv.slice(2));
  const dryRun = options.device !== 'cuda:0';
  const why = dryRun ? null : cudaUnavailableReason();
  if (why) {
    console.error(`gpu_check: no CUDA device: ${why}. Nothing was checked.`);
    process.exit(2);
  }
  if (options.isolate) {
    console.log(
      `synthgrad GPU check, one process per section (seed ${options.seed}; CUDA_LAUNCH_BLOCKING=${process.env.CUDA_LAUNCH_BLOCKING ?? 'unset'})`,
    );
    runIsolated(dryRun);
  }
  rng = new Random(options.seed);
  cpuS = new native.Stream('cpu');
  const dut = Device.parse(options.device);
  GPU = dut.name;
  gpuS = new native.Stream(GPU);
  deviceName = dryRun ? `${dut.name} (DRY RUN of the harness: ${dut.name} against the CPU)` : dut.describe();
  console.log(
    `synthgrad GPU check on ${deviceName} (seed ${options.seed}); CPU backend: ${native.threads()} threads, GEMM ${native.buildInfo().cpuGemm}`,
  );
  // A watchdog: a hung stream must end in a report, not in a killed process with nothing written.
  const watchdog = setTimeout(() => {
    state.fatal.push(`time limit of ${options.timeLimit} s reached in: ${state.section}`);
    console.error(`gpu_check: time limit of ${options.timeLimit} s reached in: ${state.section}`);
    flush();
    process.exit(1);
  }, options.timeLimit * 1000);
  watchdog.unref();

  await section('data', 'data movement: copy, fill, oneHot, concatColumns, splitColumns', checkDataMovement);
  await section('axpby', 'axpby', checkAxpby);
  await section('gemm', 'gemm (fp32)', () => checkGemm(false));
  await section('bias', 'addBias, linearForward, biasBackward', checkBias);
  await section('activations', 'activations', checkActivations);
  await section('batchnorm', 'BatchNorm', checkBatchNorm);
  await section('losses', 'losses', checkLosses);
  await section('lstm', 'LSTM cell', checkLstm);
  await section('conv', 'convolution, pooling, swapLastAxes', checkConv);
  await section('recurrent', 'recurrent windows: RecurrentTraining on the GPU vs the CPU', checkRecurrent);
  await section('optimizers', 'optimizers', async () => {
    await checkOptimizers();
    await checkGroupOptimizers();
  });
  await section('labels', 'label errors', checkLabelErrors);
  await section('runtime', 'runtime: read-back, streams, events, fences', checkRuntime);
  await section('graphs', 'CUDA graphs: fit({ graph: true }) vs fit()', checkGraphs);
  await section('tf32', 'TF32', async () => {
    if (!checkTf32Reachable()) {
      console.log(`  ${state.tf32.detail}`);
      return;
    }
    native.gemmTf32(true);
    try {
      await checkGemm(true);
    } finally {
      native.gemmTf32(false);
    }
  });
  await section('mnist', `MNIST ${options.epochs} epochs, CPU vs GPU`, () => checkMnist(options.epochs, options.seed));
  if (!dryRun) await section('oom', 'out of memory', checkOutOfMemory);
  state.complete = true;
  finish();
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    try {
      state.fatal.push(`uncaught: ${(e as Error).message}`);
      flush();
    } catch {
      /* nothing more to do */
    }
    process.exit(1);
  });
}
