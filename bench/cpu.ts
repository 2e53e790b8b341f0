// CPU benchmark: one run, synthgrad against its peers on this machine.
//   1. a training step of the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU, batch 256,
//      Adam) in synthgrad and in PyTorch (bench/reference/torch_mlp.py);
//   2. synthgrad's SGEMM against OpenBLAS sgemm at 256..2048 (bench/gemm/gemm_vs_openblas).
// Prints the ratios and writes bench/results/cpu.json and cpu.md.
//
//   bash bench/setup.sh && npm run bench:cpu
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { projectRoot as root, resultsDir as results } from './paths';
import { stepTime } from './step_time';

const python = '/usr/bin/python3';
const hidden = [256, 256, 256];
const batch = 256;
const steps = 300;
const warmup = 30;

async function synthgradStep(): Promise<{ msPerStep: number; samplesPerSecond: number }> {
  const ms = await stepTime({ device: Device.cpu(), hidden, batch, method: 'backprop', streams: 'single', steps, warmup });
  return { msPerStep: ms, samplesPerSecond: (1000 * batch) / ms };
}

function torchStep(threads: number): { ms_per_step: number; torch: string; threads: number } | undefined {
  try {
    const out = execFileSync(python, [path.join(root, 'bench/reference/torch_mlp.py'), '--hidden', hidden.join(','),
      '--batch', String(batch), '--steps', String(steps), '--warmup', String(warmup), '--threads', String(threads)],
    { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!);
  } catch (e) {
    console.error(`PyTorch reference failed (run 'bash bench/setup.sh' first): ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

interface GemmRow { n: number; ours_gflops: number; openblas_gflops: number; ratio: number }

function gemmVsOpenblas(): { rows: GemmRow[]; raw: unknown } | undefined {
  const bin = path.join(root, 'build/bench/gemm_vs_openblas');
  try {
    execFileSync('bash', [path.join(root, 'bench/gemm/build.sh')], { stdio: 'inherit', cwd: root });
    const json = path.join(os.tmpdir(), `synthgrad-gemm-${process.pid}.json`);
    execFileSync(bin, ['--json', json], { stdio: 'inherit', cwd: root });
    const raw = JSON.parse(fs.readFileSync(json, 'utf8'));
    return { rows: raw.sizes as GemmRow[], raw };
  } catch (e) {
    console.error(`GEMM benchmark failed: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const threads = native.threads();
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  const date = new Date().toISOString();
  console.log(`synthgrad CPU benchmark on ${cpuModel}, ${os.cpus().length} cores, synthgrad threads ${threads}, GEMM ${native.buildInfo().cpuGemm}`);

  const ours = await synthgradStep();
  console.log(`synthgrad training step: ${ours.msPerStep.toFixed(3)} ms (${Math.round(ours.samplesPerSecond)} samples/s)`);
  const torchSame = torchStep(threads);
  const torchOne = threads === 1 ? torchSame : torchStep(1);
  const torchRuns = [torchSame, torchOne].filter((r): r is NonNullable<typeof r> => !!r);
  for (const r of torchRuns) console.log(`PyTorch ${r.torch} (${r.threads} thread(s)): ${r.ms_per_step.toFixed(3)} ms  -> synthgrad is ${(r.ms_per_step / ours.msPerStep).toFixed(2)}x faster`);
  const torchBest = torchRuns.length ? Math.min(...torchRuns.map((r) => r.ms_per_step)) : NaN;

  const gemm = gemmVsOpenblas();
  const report = {
    date, machine: { cpu: cpuModel, cores: os.cpus().length, node: process.version },
    command: 'npm run bench:cpu',
    training_step: {
      model: `784-${hidden.join('-')}-10 BatchNorm+ReLU, batch ${batch}, Adam, ${steps} timed steps after ${warmup} warm-up`,
      synthgrad: { threads, ms_per_step: ours.msPerStep, samples_per_s: ours.samplesPerSecond },
      pytorch: torchRuns,
      speedup_same_threads: torchSame ? torchSame.ms_per_step / ours.msPerStep : null,
      speedup_vs_best_pytorch: torchBest / ours.msPerStep,
    },
    gemm: gemm?.raw ?? null,
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'cpu.json'), JSON.stringify(report, null, 2) + '\n');
  const md = [
    `# CPU benchmark`, '',
    `${date}, ${cpuModel}, ${os.cpus().length} cores, Node ${process.version}; command: \`npm run bench:cpu\`.`, '',
    `## Training step (${report.training_step.model})`, '',
    '| implementation | threads | ms/step | samples/s | synthgrad speed-up |', '|---|---|---|---|---|',
    `| synthgrad | ${threads} | ${ours.msPerStep.toFixed(3)} | ${Math.round(ours.samplesPerSecond)} | 1.00x |`,
    ...torchRuns.map((r) => `| PyTorch ${r.torch} | ${r.threads} | ${r.ms_per_step.toFixed(3)} | ${Math.round((batch * 1000) / r.ms_per_step)} | ${(r.ms_per_step / ours.msPerStep).toFixed(2)}x |`),
    '',
    ...(gemm ? ['## SGEMM (square, n x n x n)', '', '| n | synthgrad GFLOP/s | OpenBLAS GFLOP/s | ratio |', '|---|---|---|---|',
      ...gemm.rows.map((r) => `| ${r.n} | ${r.ours_gflops.toFixed(1)} | ${r.openblas_gflops.toFixed(1)} | ${r.ratio.toFixed(2)} |`), ''] : []),
  ].join('\n');
  fs.writeFileSync(path.join(results, 'cpu.md'), md);
  console.log(`\nwrote ${path.relative(root, path.join(results, 'cpu.json'))} and cpu.md`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
