// A/B timing of two checkouts (each with its built dist/ and addon) on the CPU backprop step of
// the MNIST FCN 784-256-256-256-10 (Linear → BatchNorm → ReLU, Adam, batch 256), with the op
// profile: each round times the step once per checkout, in child processes that load that
// checkout's package, alternating which goes first; prints per-round ratios, the medians, and
// the profiled milliseconds per step of each op kind, GEMM and the rest apart. For changes to
// the non-GEMM kernels (issue 19: per-ISA builds, BatchNorm + ReLU, the optimizer pass), whose
// TypeScript side changes with them, so that SYNTHGRAD_ADDON (bench/addon_ab.ts) is not enough.
//
//   node dist/bench/kernels_ab.js --before DIR --after DIR [--rounds 6] [--steps 100] [--out NAME]
//   (SYNTHGRAD_SGEMM_ISA set for the run forces one ISA on both sides)
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { benchFlags, positiveIntFlag, resultName } from './flags';
import { writeResults } from './paths';

/** What a child prints: the timed step and the profiled op milliseconds per step. */
interface ChildResult {
  stepMs: number;
  ops: Record<string, number>;
  gemm: string;
  kernels: string;
}

// Run with `node -e` in the child: argv[1] the checkout, argv[2] the steps.
const childScript = `
const root = process.argv[1], steps = Number(process.argv[2]);
const { fcnStep } = require(root + '/dist/bench/step_time');
const { Device, native } = require(root + '/dist/ts');
(async () => {
  const s = fcnStep({ device: Device.cpu(), hidden: [256, 256, 256], batch: 256, method: 'backprop', streams: 'single' });
  for (let i = 0; i < 30; i++) await s.step();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await s.step();
  const stepMs = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  native.profile('start');
  for (let i = 0; i < steps; i++) await s.step();
  const ops = {};
  for (const p of native.profile('read')) ops[p.op] = (p.seconds * 1000) / steps;
  native.profile('stop');
  s.dispose();
  const info = native.buildInfo();
  console.log(JSON.stringify({ stepMs, ops, gemm: info.cpuGemm, kernels: info.cpuKernels ?? 'generic (built for baseline x86-64)' }));
})();
`;

function runChild(root: string, steps: number): ChildResult {
  const out = execFileSync(process.execPath, ['-e', childScript, root, String(steps)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const GEMM_OPS = new Set(['gemm', 'linearForward']);

function main(): void {
  const f = benchFlags(process.argv.slice(2), { before: '', after: '', rounds: '6', steps: '100', out: 'kernels-ab' });
  for (const which of ['before', 'after'] as const)
    if (!f[which] || !fs.existsSync(path.join(f[which], 'dist', 'bench', 'step_time.js')))
      throw new Error(`--${which} must name a checkout with a built dist/ (dist/bench/step_time.js), got '${f[which]}'`);
  const rounds = positiveIntFlag('--rounds', f.rounds);
  const steps = positiveIntFlag('--steps', f.steps);
  const loadBefore = os.loadavg()[0];
  const runs: Record<'before' | 'after', ChildResult[]> = { before: [], after: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const which of order) runs[which].push(runChild(path.resolve(f[which]), steps));
    const [b, a] = [runs.before[r].stepMs, runs.after[r].stepMs];
    console.log(`round ${r + 1}: before ${b.toFixed(2)} ms, after ${a.toFixed(2)} ms, after/before ${(a / b).toFixed(3)}`);
  }
  const load = ((loadBefore + os.loadavg()[0]) / 2).toFixed(1);

  // Per op kind: the median over rounds of the profiled ms per step (0 where a side lacks it).
  const kinds = [...new Set([...runs.before, ...runs.after].flatMap((x) => Object.keys(x.ops)))].sort();
  const opMs = (which: 'before' | 'after', op: string) => median(runs[which].map((x) => x.ops[op] ?? 0));
  const sumMs = (which: 'before' | 'after', gemm: boolean) =>
    median(runs[which].map((x) => Object.entries(x.ops).reduce((s, [op, ms]) => s + (GEMM_OPS.has(op) === gemm ? ms : 0), 0)));
  const stepRatio = median(runs.before.map((b, i) => runs.after[i].stepMs / b.stepMs));
  const row = (name: string, b: number, a: number) =>
    `| ${name} | ${b.toFixed(3)} | ${a.toFixed(3)} | ${b > 0 ? (a / b).toFixed(3) : 'n/a'} |`;

  const md = [
    `# CPU kernels A/B: ${path.basename(path.resolve(f.before))} vs ${path.basename(path.resolve(f.after))}`,
    '',
    `MNIST FCN 784-256-256-256-10 backprop step (Linear → BatchNorm → ReLU, Adam), batch 256, CPU, ${rounds} interleaved rounds of ${steps} timed + ${steps} profiled steps per side.`,
    `${os.cpus()[0]?.model ?? 'CPU'}, ${os.cpus().length} CPUs, load average ${load} (a shared machine: compare the ratios, not the absolute times).`,
    `Before: GEMM ${runs.before[0].gemm}, other kernels ${runs.before[0].kernels}; after: GEMM ${runs.after[0].gemm}, other kernels ${runs.after[0].kernels}.`,
    `Command: node dist/bench/kernels_ab.js ${process.argv.slice(2).join(' ')}${process.env.SYNTHGRAD_SGEMM_ISA ? ` (SYNTHGRAD_SGEMM_ISA=${process.env.SYNTHGRAD_SGEMM_ISA})` : ''}`,
    '',
    `Median after/before of the step time: **${stepRatio.toFixed(3)}** (per round: ${runs.before.map((b, i) => (runs.after[i].stepMs / b.stepMs).toFixed(3)).join(', ')}).`,
    '',
    '| ms per step (median) | before | after | after/before |',
    '|---|---:|---:|---:|',
    row('step (timed, unprofiled)', median(runs.before.map((x) => x.stepMs)), median(runs.after.map((x) => x.stepMs))),
    row('GEMM ops (profiled)', sumMs('before', true), sumMs('after', true)),
    row('all other ops (profiled)', sumMs('before', false), sumMs('after', false)),
    ...kinds.map((op) => row(`  ${op}`, opMs('before', op), opMs('after', op))),
    '',
  ].join('\n');
  console.log(`\n${md}`);
  writeResults(resultName('--out', f.out), { load: Number(load), rounds, steps, command: process.argv.slice(2), runs }, md);
}

main();
