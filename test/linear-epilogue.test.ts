// linearForward applies its bias and activation to each tile of y inside the GEMM (the
// epilogue of native/cpu/gemm.cpp). On every GEMM path (avx512, avx2, generic, each forced in
// a child process through SYNTHGRAD_SGEMM_ISA) and for every activation, with and without a
// bias, it must give
//   - y = act(x Wᵀ + b) within float32 rounding of a float64 reference, and
//   - bit for bit what the unfused ops give (gemm, then addBias, then activationForward).
// The shapes reach every kind of tile the driver runs: edge tiles narrower and shorter than
// the micro-kernels' (14 x 32, 6 x 16, 4 x 8), K past the 256-deep K block (the epilogue must
// wait for the last K slice), 10 columns (the output layer's width, read without packing x),
// 10 and 4 rows (y is then computed transposed, as yᵀ = W xᵀ, where the path's tile is at
// least that high), and a product large enough to be split among threads.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { Random } from '../ts/random';
import * as ref from './helpers/reference';
import { expectClose, expectExact } from './helpers/reference';

type Act = ref.ActivationName | null;
interface Data {
  M: number;
  K: number;
  N: number;
  x: Float32Array;
  w: Float32Array;
  bias: Float32Array;
}
interface Run {
  data: number;
  bias: boolean;
  act: Act;
}

const U = 2 ** -24;
const FWD_TOL = 1e-5; // the activations' polynomial error, as in ops.test.ts
const runner = path.join(__dirname, 'fixtures', 'linear-epilogue-run.js');

const shapes = [
  { M: 33, K: 65, N: 17 },
  { M: 45, K: 600, N: 37 },
  { M: 300, K: 20, N: 10 },
  { M: 10, K: 300, N: 70 },
  { M: 4, K: 300, N: 70 }, // within one tile's rows on every path: y computed as its transpose
  { M: 200, K: 330, N: 150 }, // 9.9M multiply-adds: more than one thread's share
];
const acts: Act[] = [null, 'relu', 'tanh', 'sigmoid'];

const rng = new Random(2026);
const data: Data[] = shapes.map(({ M, K, N }) => {
  const bound = 1 / Math.sqrt(K); // a layer's initial scale: pre-activations of order 1
  return {
    M,
    K,
    N,
    x: ref.uniformArray(rng, M * K, -1, 1),
    w: ref.uniformArray(rng, N * K, -bound, bound),
    bias: ref.uniformArray(rng, N, -1, 1),
  };
});
const runs: Run[] = data.flatMap((_, i) => acts.flatMap((act) => [true, false].map((bias) => ({ data: i, bias, act }))));

// Per data set: x Wᵀ in float64 and its error scale sum_k |x_ik w_jk|.
const products = data.map((d) => {
  const dims = { M: d.M, N: d.N, K: d.K };
  return {
    xw: ref.gemm(false, true, dims, 1, d.x, d.w, 0, null),
    scale: ref.gemmErrorScale(false, true, dims, 1, d.x, d.w, 0, null),
  };
});

function decode(base64: string): Float32Array {
  const bytes = Buffer.from(base64, 'base64');
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Both outputs of every run, computed in a child process on GEMM path `isa` (undefined: the default). */
function runOnPath(isa: string | undefined): { isa: string; results: { fused: Float32Array; unfused: Float32Array }[] } {
  const env = { ...process.env };
  delete env.SYNTHGRAD_SGEMM_ISA;
  if (isa) env.SYNTHGRAD_SGEMM_ISA = isa;
  const input = JSON.stringify({
    data: data.map((d) => ({ ...d, x: Array.from(d.x), w: Array.from(d.w), bias: Array.from(d.bias) })),
    runs,
  });
  const r = spawnSync(process.execPath, [runner], { input, env, encoding: 'utf8', timeout: 120000, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`linear-epilogue-run.js exited with ${r.status ?? r.signal}:\n${r.stderr}`);
  const out = JSON.parse(r.stdout) as { isa: string; results: { fused: string; unfused: string }[] };
  return { isa: out.isa, results: out.results.map((x) => ({ fused: decode(x.fused), unfused: decode(x.unfused) })) };
}

function checkAll(isa: string, results: { fused: Float32Array; unfused: Float32Array }[]): void {
  expect(results).toHaveLength(runs.length);
  runs.forEach((run, i) => {
    const d = data[run.data];
    const { xw, scale } = products[run.data];
    const what = `[${isa}] ${d.M}x${d.K}x${d.N} bias=${run.bias} act=${run.act}`;
    const pre = run.bias ? ref.addBias(xw, d.bias, d.M, d.N) : xw;
    const want = run.act ? ref.activation(run.act, pre) : pre;
    // The pre-activation's float32 error is at most ~(K + 1) u of sum |x w| + |b|; the
    // activations pass it on with a slope of at most 1 and add their own few ulp.
    const yardstick = Float64Array.from(scale, (s, k) => s + (run.bias ? Math.abs(d.bias[k % d.N]) : 0));
    const { fused, unfused } = results[i];
    expectClose(`${what} against float64`, fused, want, 2 * (d.K + 3) * U + FWD_TOL, yardstick);
    expectExact(`${what} against gemm + addBias + activationForward`, fused, unfused);
  });
}

describe('linearForward: bias and activation in the GEMM epilogue', () => {
  test('the default GEMM path', () => {
    const out = runOnPath(undefined);
    checkAll(out.isa, out.results);
  });

  test.each(['avx512', 'avx2', 'generic'])('forced path %s (skipped where this CPU or build lacks it)', (isa) => {
    const out = runOnPath(isa);
    if (out.isa !== isa) {
      // A path the CPU cannot run falls back to the best one it can: avx512 -> avx2 -> generic.
      expect(['avx512', 'avx2']).toContain(isa);
      return;
    }
    checkAll(isa, out.results);
  });
});
