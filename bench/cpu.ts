// CPU benchmark: one run, synthgrad against its peers on this machine.
//   1. a training step of the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU, batch 256,
//      Adam) in synthgrad and in PyTorch (bench/reference/torch_mlp.py);
//   2. synthgrad's SGEMM against OpenBLAS sgemm at 256..2048 (bench/gemm/gemm_vs_openblas).
// The training steps run in rounds, each round timing synthgrad and every PyTorch setting one
// after another, so a load that comes and goes hits both sides alike; the table gives each
// side's median over the rounds (every round is in the JSON, with the load average).
// Prints the ratios and writes bench/results/cpu.json and cpu.md (NAME.json and NAME.md with
// --out NAME, to keep another machine's results beside these).
//
//   bash bench/setup.sh && npm run bench:cpu [-- --rounds 3 --out NAME]
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { benchFlags, positiveIntFlag, resultName } from './flags';
import { projectRoot as root, resultsDir as results } from './paths';
import { loadNow, median } from './stats';
import { stepTime } from './step_time';

const python = '/usr/bin/python3';
const hidden = [256, 256, 256];
const batch = 256;
const steps = 100; // per round
const warmup = 20;

async function synthgradStep(): Promise<{ msPerStep: number; samplesPerSecond: number }> {
  const ms = await stepTime({ device: Device.cpu(), hidden, batch, method: 'backprop', streams: 'single', steps, warmup });
  return { msPerStep: ms, samplesPerSecond: (1000 * batch) / ms };
}

// OpenBLAS as this machine's environment configures it (OPENBLAS_CORETYPE may pin an older
// kernel for safety) and, when it is pinned, also with OpenBLAS's own choice of kernel.
interface BlasSetting {
  label: string;
  env: NodeJS.ProcessEnv;
}
function blasSettings(): BlasSetting[] {
  const pinned = process.env.OPENBLAS_CORETYPE;
  const asIs: BlasSetting = { label: pinned ? `OPENBLAS_CORETYPE=${pinned}` : 'OpenBLAS default', env: process.env };
  if (!pinned) return [asIs];
  const own = { ...process.env };
  delete own.OPENBLAS_CORETYPE;
  delete own.OPENBLAS_L2_SIZE;
  return [asIs, { label: 'OpenBLAS auto-detected kernel', env: own }];
}

interface TorchRun {
  ms_per_step: number;
  torch: string;
  threads: number;
  blas: string;
}

function torchStep(threads: number, blas: BlasSetting): TorchRun | undefined {
  try {
    const out = execFileSync(
      python,
      [
        path.join(root, 'bench/reference/torch_mlp.py'),
        '--hidden',
        hidden.join(','),
        '--batch',
        String(batch),
        '--steps',
        String(steps),
        '--warmup',
        String(warmup),
        '--threads',
        String(threads),
      ],
      { encoding: 'utf8', env: blas.env },
    );
    return { ...JSON.parse(out.trim().split('\n').pop()!), blas: blas.label };
  } catch (e) {
    console.error(`PyTorch reference failed (run 'bash bench/setup.sh' first): ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

interface GemmRow {
  n: number;
  ours_gflops: number;
  openblas_gflops: number;
  ratio: number;
}

function gemmVsOpenblas(blas: BlasSetting): { rows: GemmRow[]; raw: unknown } | undefined {
  const bin = path.join(root, 'build/bench/gemm_vs_openblas');
  try {
    if (!fs.existsSync(bin)) execFileSync('bash', [path.join(root, 'bench/gemm/build.sh')], { stdio: 'inherit', cwd: root });
    const json = path.join(os.tmpdir(), `synthgrad-gemm-${process.pid}.json`);
    execFileSync(bin, ['--json', json], { stdio: 'inherit', cwd: root, env: blas.env });
    const raw = JSON.parse(fs.readFileSync(json, 'utf8'));
    return { rows: raw.sizes as GemmRow[], raw: { blas: blas.label, ...raw } };
  } catch (e) {
    console.error(`GEMM benchmark failed: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function parseArgs(argv: string[]): { out: string; rounds: number } {
  const f = benchFlags(argv, { out: 'cpu', rounds: '3' }, 'usage: npm run bench:cpu [-- --rounds 3 --out NAME]');
  return { out: resultName('--out', f.out), rounds: positiveIntFlag('--rounds', f.rounds) };
}

async function main(): Promise<void> {
  const { out, rounds } = parseArgs(process.argv.slice(2));
  const threads = native.threads();
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  const date = new Date().toISOString();
  const loadStart = loadNow();
  console.log(
    `synthgrad CPU benchmark on ${cpuModel}, ${os.cpus().length} cores, synthgrad threads ${threads}, GEMM ${native.buildInfo().cpuGemm}`,
  );

  // Every PyTorch setting: each BLAS setting at our thread count and at 1 thread.
  const settings = blasSettings().flatMap((blas) => (threads === 1 ? [1] : [threads, 1]).map((t) => ({ blas, threads: t })));
  const oursRounds: number[] = [];
  const torchRounds: (TorchRun | undefined)[][] = settings.map(() => []);
  for (let round = 1; round <= rounds; round++) {
    const ours = await synthgradStep();
    oursRounds.push(ours.msPerStep);
    console.log(`round ${round}: synthgrad training step ${ours.msPerStep.toFixed(3)} ms (${Math.round(ours.samplesPerSecond)} samples/s)`);
    settings.forEach((s, i) => {
      const r = torchStep(s.threads, s.blas);
      torchRounds[i].push(r);
      if (r)
        console.log(
          `round ${round}: PyTorch ${r.torch} (${r.threads} thread(s), ${r.blas}): ${r.ms_per_step.toFixed(3)} ms -> synthgrad ${(r.ms_per_step / ours.msPerStep).toFixed(2)}x`,
        );
    });
  }
  const ours = { msPerStep: median(oursRounds), samplesPerSecond: (1000 * batch) / median(oursRounds) };
  // A setting counts if it ran in every round; its time is the median of its rounds.
  const torchRuns: (TorchRun & { rounds: number[] })[] = torchRounds.flatMap((runs) => {
    const done = runs.filter((r): r is TorchRun => !!r);
    if (done.length !== rounds) return [];
    const times = done.map((r) => r.ms_per_step);
    return [{ ...done[0], ms_per_step: median(times), rounds: times }];
  });
  const sameThreads = torchRuns.filter((r) => r.threads === threads).map((r) => r.ms_per_step);
  const torchBest = torchRuns.length ? Math.min(...torchRuns.map((r) => r.ms_per_step)) : NaN;
  const gemms = blasSettings()
    .map(gemmVsOpenblas)
    .filter((g): g is NonNullable<typeof g> => !!g);

  const report = {
    date,
    machine: { cpu: cpuModel, cores: os.cpus().length, node: process.version },
    command: `npm run bench:cpu -- --rounds ${rounds}${out === 'cpu' ? '' : ` --out ${out}`}`,
    load: { start: loadStart, end: loadNow() },
    training_step: {
      model: `784-${hidden.join('-')}-10 BatchNorm+ReLU, batch ${batch}, Adam, ${steps} timed steps after ${warmup} warm-up, median of ${rounds} interleaved rounds`,
      synthgrad: { threads, ms_per_step: ours.msPerStep, samples_per_s: ours.samplesPerSecond, rounds: oursRounds },
      pytorch: torchRuns,
      speedup_same_threads_worst: sameThreads.length ? Math.min(...sameThreads) / ours.msPerStep : null,
      speedup_vs_best_pytorch: torchBest / ours.msPerStep,
    },
    gemm: gemms.map((g) => g.raw),
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, `${out}.json`), JSON.stringify(report, null, 2) + '\n');
  const md = [
    `# CPU benchmark`,
    '',
    `${date}, ${cpuModel}, ${os.cpus().length} cores, Node ${process.version}; command: \`${report.command}\`; ` +
      `load average (1 / 5 / 15 min) ${report.load.start.join(' / ')} at the start, ${report.load.end.join(' / ')} at the end.`,
    '',
    `## Training step (${report.training_step.model})`,
    '',
    '| implementation | threads | BLAS | ms/step | samples/s | synthgrad speed-up |',
    '|---|---|---|---|---|---|',
    `| synthgrad | ${threads} | own SGEMM (${native.buildInfo().cpuGemm}) | ${ours.msPerStep.toFixed(3)} | ${Math.round(ours.samplesPerSecond)} | 1.00x |`,
    ...torchRuns.map(
      (r) =>
        `| PyTorch ${r.torch} | ${r.threads} | ${r.blas} | ${r.ms_per_step.toFixed(3)} | ${Math.round((batch * 1000) / r.ms_per_step)} | ${(r.ms_per_step / ours.msPerStep).toFixed(2)}x |`,
    ),
    '',
    ...gemms.flatMap((g) => [
      `## SGEMM, square n x n x n, ${threads} threads, against OpenBLAS (${(g.raw as { blas: string }).blas})`,
      '',
      '| n | synthgrad GFLOP/s | OpenBLAS GFLOP/s | ratio |',
      '|---|---|---|---|',
      ...g.rows.map((r) => `| ${r.n} | ${r.ours_gflops.toFixed(1)} | ${r.openblas_gflops.toFixed(1)} | ${r.ratio.toFixed(2)} |`),
      '',
    ]),
  ].join('\n');
  fs.writeFileSync(path.join(results, `${out}.md`), md);
  console.log(`\nwrote ${path.relative(root, path.join(results, `${out}.json`))} and ${out}.md`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
