// The CPU kernels other than GEMM are compiled once per instruction set (native/cpu/
// kernels_isa.h) and run with the ISA that the GEMM uses. These tests run child processes with
// SYNTHGRAD_SGEMM_ISA forcing each ISA this CPU has and check that
//   - the kernels report that ISA (buildInfo().cpuKernels, which each per-ISA translation
//     unit derives from its own compiler flags): the variable forces both;
//   - every ISA computes bit-identical results: a digest of many kernels' outputs is equal.
// The children load the compiled package (dist/), as the CLI tests do.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { buildInfo } from '../ts';

const root = path.join(__dirname, '..');

// Runs the ops with CPU-sized shapes (several parallel chunks each) on seeded data and prints
// the ISAs and a SHA-256 of every output's bytes.
const child = `
const crypto = require('crypto');
const { native } = require('./dist/ts/native');
const ops = native.ops;
const s = new native.Stream('cpu');
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2;
const t = (shape, f = rand) => new native.Tensor(shape, 'float32', 'cpu', Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f));
const ti = (shape, f) => new native.Tensor(shape, 'int32', 'cpu', Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f));
const outs = [];
const out = (shape) => { const y = t(shape, () => 0); outs.push(y); return y; };
const R = 300, C = 700;
const x = t([R, C]), dy = t([R, C]);
for (const act of ['relu', 'tanh', 'sigmoid']) {
  const y = out([R, C]);
  ops.activationForward(s, act, x, y);
  ops.activationBackward(s, act, y, dy, out([R, C]));
}
const gamma = t([C]), beta = t([C]), rm = t([C]), rv = t([C], () => 1);
for (const fused of [false, true]) {
  const y = out([R, C]), sm = out([C]), si = out([C]);
  (fused ? ops.batchNormReluForward : ops.batchNormForward).call(ops, s, x, gamma, beta, y, rm, rv, sm, si, 0.1, 1e-5, true);
  const dx = out([R, C]), dg = out([C]), db = out([C]);
  if (fused) ops.batchNormReluBackward(s, x, y, dy, gamma, sm, si, dx, dg, db);
  else ops.batchNormBackward(s, x, dy, gamma, sm, si, dx, dg, db);
}
outs.push(rm, rv);
const labels = ti([R], (_, i) => (i * 7) % C);
const probs = out([R, C]), loss = out([1]);
ops.softmaxCrossEntropyForward(s, x, labels, probs, loss);
ops.softmaxCrossEntropyBackward(s, probs, labels, out([R, C]), 0.5);
const sig = out([R, C]), sloss = out([1]), targets = t([R, C], () => Math.abs(rand()) / 2);
ops.sigmoidCrossEntropyForward(s, x, targets, sig, sloss);
ops.mseForward(s, x, dy, out([1]));
ops.mseBackward(s, x, dy, out([R, C]), 0.25);
ops.biasBackward(s, dy, out([C]));
const H = 175, gates = t([R, 4 * H]), cPrev = t([R, H]), c = out([R, H]), h = out([R, H]);
ops.lstmCellForward(s, gates, cPrev, c, h);
outs.push(gates);
ops.lstmCellBackward(s, gates, cPrev, c, t([R, H]), t([R, H]), out([R, 4 * H]), out([R, H]));
const params = [t([R, C]), t([C]), t([50, 3])];
const grads = params.map((p) => t(p.shape));
const ms = params.map((p) => t(p.shape, () => 0)), vs = params.map((p) => t(p.shape, () => 0));
const hyper = t([2], () => 0);
for (let step = 1; step <= 3; step++) {
  ops.writeScalars(s, hyper, native.adamScalars(1e-3, 0.9, 0.999, step));
  ops.adamStepGroup(s, params, grads, ms, vs, hyper, 0.9, 0.999, 1e-8, 1e-4);
  grads.forEach((g, i) => ops.axpby(s, 1, params[i], 0.5, g));
}
const sparams = params.map((p) => t(p.shape)), vel = params.map((p) => t(p.shape, () => 0));
const lr = t([1], () => 0.05);
ops.sgdStepGroup(s, sparams, params.map((p) => t(p.shape)), vel, lr, 0.9, 1e-4);
outs.push(...params, ...ms, ...vs, ...sparams, ...vel);
(async () => {
  const hash = crypto.createHash('sha256');
  for (const o of outs) hash.update(Buffer.from((await o.read(s)).buffer));
  const info = native.buildInfo();
  console.log(JSON.stringify({ gemm: info.cpuGemm, kernels: info.cpuKernels, digest: hash.digest('hex') }));
})();
`;

function runWith(isa: string): { gemm: string; kernels: string; digest: string } {
  const r = spawnSync(process.execPath, ['-e', child], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SYNTHGRAD_SGEMM_ISA: isa },
  });
  if (r.status !== 0) throw new Error(`child with SYNTHGRAD_SGEMM_ISA=${isa} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('buildInfo() reports the kernels on the same ISA as the GEMM', () => {
  const info = buildInfo();
  expect(['avx512', 'avx2', 'generic']).toContain(info.cpuKernels);
  expect(info.cpuKernels).toBe(info.cpuGemm);
});

test('SYNTHGRAD_SGEMM_ISA forces the kernels too, and every ISA gives bit-identical results', () => {
  const results = ['generic', 'avx2', 'avx512'].map((isa) => ({ isa, ...runWith(isa) }));
  // generic runs everywhere; an ISA this CPU lacks falls back to the best one it has.
  expect(results[0].gemm).toBe('generic');
  for (const r of results) expect(r.kernels).toBe(r.gemm);
  const forced = results.filter((r) => r.gemm === r.isa);
  // This machine's CPU has the ISA the default build picked: at least generic and that one.
  expect(forced.map((r) => r.isa)).toContain(buildInfo().cpuGemm);
  for (const r of forced) expect(`${r.isa}: ${r.digest}`).toBe(`${r.isa}: ${forced[0].digest}`);
}, 300_000);
