// GPU benchmark: one run on cuda:0, synthgrad against PyTorch on the same GPU.
//   (a) a training step of the MNIST FCN with 6 hidden layers of 256 (BatchNorm + ReLU, batch
//       256, Adam): backprop, cDNI and DNI, decoupled runs on one stream ('single') and on one
//       stream per module ('per-module'), op by op and captured once into a CUDA graph; the
//       host reads every step's loss, as a training loop that logs does (PyTorch: loss.item());
//   (b) the same in PyTorch: bench/reference/torch_mlp.py (backprop) and
//       bench/reference/torch_dni.py --time (DNI, cDNI; --streams per-module), with the
//       machine's python3 (PYTHON=... overrides);
//   (c) SGEMM GFLOP/s, square n x n x n: synthgrad's CUDA kernel (fp32; TF32 when the addon
//       exposes it) against cuBLAS through PyTorch (bench/reference/torch_gemm.py, fp32 with
//       TF32 off, and TF32 on for reference);
//   (d) what fit() does: Trainer.fit on host data, so every step gathers a batch on the host
//       and uploads it (the rows of (a) train on one resident batch), with onStep reading
//       every loss; backprop and cDNI, with and without graph capture.
// Prints the tables with ratios and writes bench/results/gpu.{json,md} after every part (a
// later part that fails or runs out of time leaves the earlier ones written). Exits 2 without
// a CUDA device.
//
//   npm run bench:gpu     (node dist/bench/gpu.js [--steps 300] [--warmup 30] [--sizes 256,...] [--skip-torch] [--skip-gemm])
//   node dist/bench/gpu.js --device cpu --steps 5 --sizes 256   a dry run of the script without a GPU
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Module, Random, Trainer, decouple, mlp, native } from '../ts';
import { benchFlags, numberFlag } from './flags';
import { cudaUnavailableReason } from '../ts/build-info';
import { projectRoot as root, resultsDir } from './paths';
import { Method, Streams, stepTime } from './step_time';

const hidden = new Array(6).fill(256) as number[];
const batch = 256;
const python = process.env.PYTHON || 'python3';

interface StepRow {
  method: Method;
  streams: Streams;
  /** captured once into a CUDA graph and replayed */
  graph: boolean;
  steps: number;
  msPerStep: number;
  samplesPerSecond: number;
  torchMsPerStep: number | null;
  torchNote?: string;
}

function stepTimeOn(device: Device, method: Method, streams: Streams, graph: boolean, steps: number, warmup: number): Promise<number> {
  return stepTime({ device, hidden, batch, method, streams, graph, steps, warmup });
}

interface FitRow {
  method: 'backprop' | 'cdni';
  graph: boolean;
  steps: number;
  msPerStep: number;
}

/**
 * Milliseconds per step of Trainer.fit over host data (a batch gathered and uploaded every
 * step, every loss read by onStep), timed from the end of step `warmup` to the end of the run.
 */
async function fitStepMs(device: Device, method: 'backprop' | 'cdni', graph: boolean, steps: number, warmup: number): Promise<number> {
  const rng = new Random(1);
  const rows = batch * 40;
  const data = new Dataset(
    'random',
    rng.uniformArray(rows * 784, 0, 1),
    Int32Array.from({ length: rows }, () => rng.int(10)),
    784,
    10,
  );
  const model = mlp(784, hidden, 10);
  const net: Module = method === 'backprop' ? model : decouple(model, { synthesizer: { conditioned: true } });
  const trainer = new Trainer(net, { device, optimizer: () => new Adam({ lr: 1e-4 }), seed: 1 });
  let t0 = 0;
  try {
    const t = Date.now();
    await trainer.fit(data, {
      steps: warmup + steps,
      batchSize: batch,
      graph,
      logEvery: 1,
      onStep: (m) => {
        if (m.step === warmup) t0 = Date.now();
      },
    });
    return (Date.now() - (t0 || t)) / (t0 ? steps : warmup + steps);
  } finally {
    trainer.dispose();
  }
}

/** Runs a Python script and parses the last line of its stdout as JSON. */
function runPython(script: string, args: string[], timeoutMs: number): { json?: Record<string, unknown>; error?: string } {
  const file = path.join(root, 'bench/reference', script);
  if (!fs.existsSync(file)) return { error: `${path.relative(root, file)} is absent` };
  try {
    const out = execFileSync(python, [file, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      cwd: root,
      maxBuffer: 64 << 20,
    });
    const last = out.trim().split('\n').pop() ?? '';
    return { json: JSON.parse(last) as Record<string, unknown> };
  } catch (e) {
    const err = e as Error & { stderr?: string; signal?: string; status?: number | null };
    const tail = (err.stderr ?? '').trim().split('\n').slice(-1).join('').slice(0, 200);
    const how = err.signal
      ? `killed by ${err.signal} (timeout ${timeoutMs / 1000} s?)`
      : typeof err.status === 'number'
        ? `exit ${err.status}`
        : err.message.split('\n')[0].slice(0, 200);
    return { error: `${script} ${how}${tail ? `: ${tail}` : ''}` };
  }
}

function torchStep(
  method: Method,
  streams: Streams,
  steps: number,
  warmup: number,
): { ms: number | null; note?: string; info?: Record<string, unknown> } {
  const common = [
    '--hidden',
    hidden.join(','),
    '--batch',
    String(batch),
    '--steps',
    String(steps),
    '--warmup',
    String(warmup),
    '--device',
    'cuda',
  ];
  const r =
    method === 'backprop'
      ? runPython('torch_mlp.py', common, 180000)
      : runPython(
          'torch_dni.py',
          ['--time', '--method', method, ...common, ...(streams === 'per-module' ? ['--streams', 'per-module'] : [])],
          180000,
        );
  const ms = r.json?.ms_per_step;
  if (typeof ms === 'number' && Number.isFinite(ms)) return { ms, info: r.json };
  return { ms: null, note: r.error ?? 'no ms_per_step in its output' };
}

/** synthgrad's SGEMM on cuda:0: C = A B, n x n, timed on the host around a queue of products. */
async function sgemmGflops(device: Device, n: number): Promise<{ n: number; ms: number; gflops: number; reps: number }> {
  const rng = new Random(n);
  const a = new native.Tensor([n, n], 'float32', device.name, rng.uniformArray(n * n, -1, 1));
  const b = new native.Tensor([n, n], 'float32', device.name, rng.uniformArray(n * n, -1, 1));
  const c = new native.Tensor([n, n], 'float32', device.name, 'zeros');
  const s = new native.Stream(device.name);
  try {
    for (let i = 0; i < 3; i++) native.ops.gemm(s, a, b, c, false, false, 1, 0);
    await s.synchronize();
    let t0 = process.hrtime.bigint();
    native.ops.gemm(s, a, b, c, false, false, 1, 0);
    await s.synchronize();
    const one = Math.max(Number(process.hrtime.bigint() - t0) / 1e6, 1e-3);
    const reps = Math.round(Math.min(2000, Math.max(5, 200 / one)));
    t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) native.ops.gemm(s, a, b, c, false, false, 1, 0);
    await s.synchronize();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
    return { n, ms, gflops: (2 * n ** 3) / (ms * 1e-3) / 1e9, reps };
  } finally {
    a.dispose();
    b.dispose();
    c.dispose();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, {
    steps: '300',
    warmup: '30',
    sizes: '256,512,1024,2048,4096,8192',
    device: 'cuda:0',
    'skip-torch': false,
    'skip-gemm': false,
  });
  const steps = numberFlag('--steps', flags.steps);
  const warmup = numberFlag('--warmup', flags.warmup);
  const sizes = flags.sizes.split(',').map((n) => numberFlag('--sizes', n));
  // --device cpu: a dry run of this script without a GPU (numbers meaningless, PyTorch on CUDA skipped).
  const dryRun = flags.device !== 'cuda:0';
  // A dry run calls Python only when PYTHON names an interpreter (e.g. a stub that prints JSON).
  const skipTorch = flags['skip-torch'] || (dryRun && !process.env.PYTHON);
  const skipGemm = flags['skip-gemm'];
  const why = dryRun ? null : cudaUnavailableReason();
  if (why) {
    console.error(`bench:gpu: no CUDA device: ${why}. Nothing was measured.`);
    process.exit(2);
  }
  const device = dryRun ? Device.parse(flags.device) : Device.cuda(0);
  const gpuName = dryRun ? `${device.name} (DRY RUN, not a GPU)` : device.describe();
  const date = new Date().toISOString();
  const command = ['node', 'dist/bench/gpu.js', ...argv].join(' ');
  console.log(`synthgrad GPU benchmark on ${gpuName}; python: ${python}`);

  // (a) + (b)
  // Graph rows are compared with the same (eager) PyTorch run as their uncaptured twins.
  const configs: [Method, Streams, boolean][] = [
    ['backprop', 'single', false],
    ['backprop', 'single', true],
    ['cdni', 'single', false],
    ['cdni', 'per-module', false],
    ['cdni', 'single', true],
    ['cdni', 'per-module', true],
    ['dni', 'single', false],
    ['dni', 'per-module', false],
    ['dni', 'per-module', true],
  ];
  const rows: StepRow[] = [];
  const torchRuns = new Map<string, ReturnType<typeof torchStep>>();
  let torchVersion: string | undefined;
  for (const [method, streams, graph] of configs) {
    const n = method === 'dni' ? Math.max(20, Math.round(steps / 2)) : steps;
    const w = Math.min(warmup, n);
    let ms = NaN;
    try {
      ms = await stepTimeOn(device, method, streams, graph, n, w);
    } catch (e) {
      console.error(`synthgrad ${method} ${streams}${graph ? ' graph' : ''} failed: ${(e as Error).message}`);
    }
    const key = `${method} ${streams}`;
    if (!torchRuns.has(key)) torchRuns.set(key, skipTorch ? { ms: null, note: 'skipped' } : torchStep(method, streams, n, w));
    const t = torchRuns.get(key)!;
    if ('info' in t && t.info && typeof t.info.torch === 'string') torchVersion = t.info.torch;
    const row: StepRow = { method, streams, graph, steps: n, msPerStep: ms, samplesPerSecond: (1000 * batch) / ms, torchMsPerStep: t.ms };
    if (t.note) row.torchNote = t.note;
    rows.push(row);
    console.log(
      `${method.padEnd(8)} ${streams.padEnd(10)} ${graph ? 'graph' : 'eager'} synthgrad ${ms.toFixed(3)} ms/step (${Math.round(row.samplesPerSecond)} samples/s)` +
        (t.ms !== null ? `  PyTorch ${t.ms.toFixed(3)} ms  -> synthgrad ${(t.ms / ms).toFixed(2)}x` : `  PyTorch: ${t.note}`),
    );
  }

  const tf32Reachable = native.buildInfo().cuda;
  const gemm: { n: number; ours: number; oursTf32?: number; cublas?: number; cublasTf32?: number }[] = [];
  let gemmNote = '';
  let torchGemmInfo: Record<string, unknown> | undefined;
  const fitRows: FitRow[] = [];

  /** Writes gpu.{json,md} with what has been measured so far. */
  const write = (): void => {
    const torchLabel = torchVersion ? `PyTorch ${torchVersion}` : 'PyTorch';
    const fix = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
    const ratio = (a: number | null | undefined, b: number | null | undefined) =>
      a && b && Number.isFinite(a) && Number.isFinite(b) ? `${(a / b).toFixed(2)}x` : '–';
    const bp = rows[0].msPerStep;
    const stepTable = [
      `| method | streams | CUDA graph | synthgrad ms/step | samples/s | vs synthgrad backprop | ${torchLabel} eager ms/step | synthgrad speed-up vs PyTorch |`,
      '|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.method} | ${r.streams} | ${r.graph ? 'captured' : 'no'} | ${fix(r.msPerStep)} | ${Number.isFinite(r.samplesPerSecond) ? Math.round(r.samplesPerSecond) : '–'} | ` +
          `${ratio(bp, r.msPerStep)} | ${r.torchMsPerStep !== null ? fix(r.torchMsPerStep) : `– (${r.torchNote})`} | ${ratio(r.torchMsPerStep, r.msPerStep)} |`,
      ),
    ];
    const gemmTable = gemm.length
      ? [
          `| n | synthgrad fp32 GFLOP/s | cuBLAS fp32 GFLOP/s | synthgrad / cuBLAS (fp32) | synthgrad TF32 GFLOP/s | cuBLAS TF32 GFLOP/s | synthgrad / cuBLAS (TF32) |`,
          '|---|---|---|---|---|---|---|',
          ...gemm.map(
            (g) =>
              `| ${g.n} | ${fix(g.ours, 0)} | ${fix(g.cublas, 0)} | ${ratio(g.ours, g.cublas)} | ` +
              `${tf32Reachable ? fix(g.oursTf32, 0) : 'not reachable'} | ${fix(g.cublasTf32, 0)} | ${ratio(g.oursTf32, g.cublasTf32)} |`,
          ),
        ]
      : [];
    console.log(`\n${stepTable.join('\n')}\n${gemmTable.length ? `\n${gemmTable.join('\n')}\n` : ''}`);

    const fitTable = fitRows.length
      ? [
          '| method | CUDA graph | fit() ms/step | samples/s | vs the resident-batch step above |',
          '|---|---|---|---|---|',
          ...fitRows.map((r) => {
            const resident = rows.find((x) => x.method === r.method && x.streams === 'single' && x.graph === r.graph)?.msPerStep;
            return `| ${r.method} | ${r.graph ? 'captured' : 'no'} | ${fix(r.msPerStep)} | ${Number.isFinite(r.msPerStep) ? Math.round((1000 * batch) / r.msPerStep) : '–'} | ${ratio(r.msPerStep, resident)} |`;
          }),
        ]
      : [];
    const report = {
      date,
      device: gpuName,
      command,
      machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, build: native.buildInfo(), python },
      training_step: {
        model: `784-${hidden.join('-')}-10 BatchNorm+ReLU, batch ${batch}, Adam; the host reads every step's loss; DNI synthesizers 1024-1024, cDNI linear + one-hot labels`,
        rows,
      },
      fit: {
        note: 'Trainer.fit on host data (random, 40 batches, shuffled): a batch gathered on the host and uploaded every step, onStep reading every loss',
        rows: fitRows,
      },
      gemm: {
        note: 'C = A B, square, float32; synthgrad timed on the host around a queue of products (enqueue cost included), cuBLAS with CUDA events; GFLOP/s = 2 n^3 / time',
        synthgrad_tf32: tf32Reachable ? 'measured' : 'not built (no CUDA backend)',
        rows: gemm,
        torch: torchGemmInfo ?? null,
        error: gemmNote || null,
      },
    };
    fs.mkdirSync(resultsDir, { recursive: true });
    fs.writeFileSync(
      path.join(resultsDir, 'gpu.json'),
      JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n',
    );
    const md = [
      '# GPU benchmark',
      '',
      `${date}; **${gpuName}**; ${os.cpus().length} CPU cores, Node ${process.version}; ${torchLabel} with \`${python}\`; command: \`${command}\`.`,
      '',
      `## Training step (${report.training_step.model})`,
      '',
      ...stepTable,
      '',
      `${steps} timed steps after ${warmup} warm-up (DNI: ${rows.find((r) => r.method === 'dni')?.steps} steps). 'per-module': one CUDA stream per module, with events between them; ` +
        "'single': everything on the trainer's stream. 'captured': the step captured once into a CUDA graph (Graph.capture) and launched each step. " +
        'PyTorch: bench/reference/torch_mlp.py (backprop) and torch_dni.py --time, eager.',
      '',
      ...(fitTable.length
        ? [
            '## fit(): batches uploaded every step',
            '',
            ...fitTable,
            '',
            `${report.fit.note}; ${fitRows[0].steps} timed steps after the warm-up. The last column: fit()'s step time over the resident-batch step of the first table (same method, single stream).`,
            '',
          ]
        : []),
      ...(gemmTable.length
        ? [
            '## SGEMM (square, n x n x n)',
            '',
            ...gemmTable,
            '',
            `${report.gemm.note}. synthgrad TF32: ${report.gemm.synthgrad_tf32}.${gemmNote ? ` cuBLAS: ${gemmNote}.` : ''}`,
            '',
          ]
        : []),
    ].join('\n');
    fs.writeFileSync(path.join(resultsDir, 'gpu.md'), md);
    console.log(`wrote ${path.relative(root, path.join(resultsDir, 'gpu.json'))} and gpu.md`);
  };
  write();

  // (d)
  for (const [method, graph] of [
    ['backprop', false],
    ['backprop', true],
    ['cdni', false],
    ['cdni', true],
  ] as ['backprop' | 'cdni', boolean][]) {
    const n = Math.max(20, Math.round(steps / 2)),
      w = Math.min(warmup, n);
    let ms = NaN;
    try {
      ms = await fitStepMs(device, method, graph, n, w);
    } catch (e) {
      console.error(`synthgrad fit() ${method}${graph ? ' graph' : ''} failed: ${(e as Error).message}`);
    }
    fitRows.push({ method, graph, steps: n, msPerStep: ms });
    console.log(`fit() ${method.padEnd(8)} ${graph ? 'graph' : 'eager'} ${ms.toFixed(3)} ms/step`);
  }
  write();

  // (c)
  if (!skipGemm) {
    for (const n of sizes) {
      try {
        const r = await sgemmGflops(device, n);
        const row: (typeof gemm)[number] = { n, ours: r.gflops };
        if (tf32Reachable) {
          native.gemmTf32(true);
          try {
            row.oursTf32 = (await sgemmGflops(device, n)).gflops;
          } finally {
            native.gemmTf32(false);
          }
        }
        gemm.push(row);
        console.log(`sgemm ${n}: synthgrad ${r.gflops.toFixed(0)} GFLOP/s (${r.ms.toFixed(3)} ms, ${r.reps} reps)`);
      } catch (e) {
        console.error(`synthgrad sgemm ${n} failed: ${(e as Error).message}`);
        gemm.push({ n, ours: NaN });
      }
    }
    if (!skipTorch) {
      const r = runPython('torch_gemm.py', ['--sizes', sizes.join(',')], 300000);
      if (r.json) {
        torchGemmInfo = r.json;
        const byN = (key: string) =>
          new Map(((r.json![key] as { n: number; gflops: number }[] | undefined) ?? []).map((e) => [e.n, e.gflops]));
        const f = byN('fp32'),
          t = byN('tf32');
        for (const row of gemm) {
          row.cublas = f.get(row.n);
          row.cublasTf32 = t.get(row.n);
        }
      } else gemmNote = r.error ?? '';
    }
  }

  write();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
