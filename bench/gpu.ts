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
//   (e) recurrent training (ts/recurrent/training.ts, the Copy task's model: one-hot input of 10
//       symbols, LSTM 128 or 512, batch 64 or 256, T = 5, Adam): time per window of truncated
//       BPTT, DNI and DNI + Aux (M on the trainer's stream and on its own, 'separate'), each
//       window's batch uploaded from the host and its loss read, timed two ways: every window
//       awaited before the next is enqueued (the Copy task's curriculum needs each loss first)
//       and one window enqueued ahead of the awaited one (what trainSequences does on text);
//       against PyTorch's nn.LSTM (cuDNN) training window on the same GPU
//       (bench/reference/torch_lstm_window.py: BPTT, Adam, loss.item() per window) and the bare
//       forward + backward of each side's LSTM layer.
//   (f) a convolutional training step: cnn() (the DNI paper's CIFAR-10 network: 3 blocks of 5x5
//       convolutions with 128 filters, BatchNorm2d, ReLU, 3x3 pools) on [64, 3, 32, 32]
//       images, backprop with Adam, a new batch written from the host every step
//       (Tensor.write, as fit() does) and every loss read; op by op and captured in a graph.
//       No PyTorch row (the kernels are the direct ones of cuda/conv.cu: a first measure).
// Prints the tables with ratios and writes bench/results/gpu.{json,md} after every part (a
// later part that fails or runs out of time leaves the earlier ones written). Exits 2 without
// a CUDA device.
//
//   npm run bench:gpu     (node dist/bench/gpu.js [--steps 300] [--warmup 30] [--sizes 256,...] [--skip-torch] [--skip-gemm]
//                          [--parts steps,fit,gemm,recurrent,conv] [--merge] [--windows 200]
//                          [--conv-filters 128] [--conv-batch 64])
//   node dist/bench/gpu.js --device cpu --steps 5 --sizes 256   a dry run of the script without a GPU
// --parts runs only some parts ((a)+(b) are 'steps'); --merge keeps the other parts' rows from
// the existing bench/results/gpu.json (scripts/gpu-run.sh runs 'conv' and 'recurrent' as
// processes of their own, each with its own timeout). --windows: recurrent windows timed per configuration.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  Arena,
  Backpropagation,
  CopyTask,
  Dataset,
  Device,
  Graph,
  LSTM,
  Module,
  Random,
  SoftmaxCrossEntropy,
  Stream,
  Tensor,
  Trainer,
  cnn,
  decouple,
  mlp,
  native,
} from '../ts';
import type { StepContext } from '../ts/nn/module';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentMethod, RecurrentTraining, WindowMetrics } from '../ts/recurrent/training';
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

interface ConvRow {
  graph: boolean;
  batch: number;
  filters: number;
  steps: number;
  msPerStep: number;
}

/**
 * Milliseconds per backprop step of cnn() on [batch, 3, 32, 32] random images, a batch written
 * from the host every step (two alternating host batches) and every loss read; op by op or
 * captured once into a graph after the warm-up.
 */
async function convStepMs(
  device: Device,
  graph: boolean,
  batchSize: number,
  filters: number,
  steps: number,
  warmup: number,
): Promise<number> {
  const rng = new Random(5);
  const model = cnn({ channels: 3, height: 32, width: 32, classes: 10, filters });
  model.initialize(device, rng);
  const strategy = new Backpropagation(model, new SoftmaxCrossEntropy(), new Adam({ lr: 1e-4 }));
  const stream = new Stream(device);
  const hostX = [0, 1].map(() => rng.uniformArray(batchSize * 3 * 32 * 32, 0, 1));
  const hostY = [0, 1].map(() => Int32Array.from({ length: batchSize }, () => rng.int(10)));
  const x = Tensor.empty([batchSize, 3, 32, 32], { device });
  const y = Tensor.empty([batchSize], { device, dtype: 'int32' });
  const captureArena = new Arena();
  let g: Graph | undefined;
  try {
    let i = 0;
    const upload = () => {
      x.write(hostX[i % 2], stream);
      y.write(hostY[i % 2], stream);
      i++;
    };
    let step = async () => {
      const arena = new Arena();
      upload();
      await strategy.step(x, y, { device, stream, training: true, arena }).read(stream);
      arena.dispose();
    };
    for (let k = 0; k < Math.max(warmup, 1); k++) await step(); // the first creates Adam's state
    if (graph) {
      const hooks: ((s: Stream) => void)[] = [];
      let loss: Tensor | undefined;
      g = Graph.capture(stream, () => {
        loss = strategy.step(x, y, {
          device,
          stream,
          training: true,
          arena: captureArena,
          capture: { beforeLaunch: (f) => hooks.push(f) },
        });
      });
      const captured = g;
      step = async () => {
        upload();
        for (const update of hooks) update(stream);
        captured.launch(stream);
        await loss!.read(stream);
      };
      for (let k = 0; k < warmup; k++) await step();
    }
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < steps; k++) await step();
    return Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  } finally {
    g?.dispose();
    captureArena.dispose();
    strategy.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
  }
}

interface RnnRow {
  method: RecurrentMethod;
  streams: 'single' | 'separate';
  batch: number;
  hidden: number;
  windows: number;
  /** every window awaited before the next is enqueued */
  msPerWindow: number;
  /** one window enqueued ahead of the one awaited */
  msPerWindowAhead: number;
  /** the bare LSTM layer's forward + backward over the window (the 'bptt' rows only) */
  lstmMs?: number;
  torchWindowMs?: number | null;
  torchLstmMs?: number | null;
  torchNote?: string;
}

const rnnShapes: [number, number][] = [
  [64, 128],
  [256, 128],
  [64, 512],
  [256, 512],
];
const rnnConfigs: [RecurrentMethod, 'single' | 'separate'][] = [
  ['bptt', 'single'],
  ['dni', 'single'],
  ['dni', 'separate'],
  ['dni-aux', 'separate'],
];
const rnnSteps = 5;

/**
 * Milliseconds per recurrent training window (Copy task windows, level 3, made beforehand): each
 * window's batch is uploaded and its loss read, as trainSequences does. `ahead`: the next window
 * is enqueued before the previous one's loss is awaited.
 */
async function rnnWindowMs(
  device: Device,
  method: RecurrentMethod,
  streams: 'single' | 'separate',
  batch: number,
  hidden: number,
  windows: number,
  warmup: number,
  ahead: boolean,
): Promise<number> {
  const source = new CopyTask(batch, { seed: 0, curriculum: { level: 3 } });
  const data = Array.from({ length: 32 }, () => source.nextWindow(rnnSteps));
  const model = new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden });
  const tr = new RecurrentTraining(model, {
    method,
    streams,
    device,
    optimizer: () => new Adam({ lr: 1e-3 }),
    seed: 0,
    ...(method === 'bptt' ? {} : { synthesizer: {} }),
  });
  const run = async (n: number, offset: number) => {
    let pending: Promise<WindowMetrics> | undefined;
    for (let i = 0; i < n; i++) {
      const p = tr.step(data[(offset + i) % data.length]);
      if (!ahead) await p;
      else {
        if (pending) await pending;
        pending = p;
      }
    }
    if (pending) await pending;
    await tr.synchronize();
  };
  try {
    await run(warmup, 0);
    const t0 = process.hrtime.bigint();
    await run(windows, warmup);
    return Number(process.hrtime.bigint() - t0) / 1e6 / windows;
  } finally {
    tr.dispose();
  }
}

/** Milliseconds per forward + backward of the LSTM layer over the window (parameter gradients only), synchronised after each. */
async function lstmLayerMs(device: Device, batch: number, hidden: number, iterations: number, warmup: number): Promise<number> {
  const inputs = 10;
  const rng = new Random(0);
  const lstm = new LSTM(inputs, hidden);
  lstm.initialize(device, rng);
  const stream = new Stream(device);
  const resident = (n: number, shape: number[], lo: number, hi: number) => Tensor.fromArray(rng.uniformArray(n, lo, hi), shape, { device });
  const xs = Array.from({ length: rnnSteps }, () => resident(batch * inputs, [batch, inputs], 0, 1));
  const dOut = Array.from({ length: rnnSteps }, () => resident(batch * hidden, [batch, hidden], -0.5, 0.5));
  const state = { h: resident(batch * hidden, [batch, hidden], -0.5, 0.5), c: resident(batch * hidden, [batch, hidden], -0.5, 0.5) };
  const iteration = async () => {
    const arena = new Arena();
    const ctx: StepContext = { device, stream, training: true, arena };
    lstm.forward(xs, state, ctx).backward(dOut, undefined, ctx);
    await stream.synchronize();
    arena.dispose();
  };
  try {
    for (let i = 0; i < warmup; i++) await iteration();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) await iteration();
    return Number(process.hrtime.bigint() - t0) / 1e6 / iterations;
  } finally {
    for (const t of [...xs, ...dOut, state.h, state.c]) t.dispose();
    lstm.dispose();
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
    parts: 'steps,fit,gemm,recurrent,conv',
    merge: false,
    windows: '200',
    'conv-filters': '128',
    'conv-batch': '64',
  });
  const allParts = ['steps', 'fit', 'gemm', 'recurrent', 'conv'];
  const parts = flags.parts.split(',');
  const badPart = parts.find((p) => !allParts.includes(p));
  if (badPart) throw new Error(`--parts: unknown part '${badPart}'; known: ${allParts.join(', ')}`);
  const rnnWindows = numberFlag('--windows', flags.windows);
  const convFilters = numberFlag('--conv-filters', flags['conv-filters']);
  const convBatch = numberFlag('--conv-batch', flags['conv-batch']);
  const steps = numberFlag('--steps', flags.steps);
  const warmup = numberFlag('--warmup', flags.warmup);
  const sizes = flags.sizes.split(',').map((n) => numberFlag('--sizes', n));
  // --device cpu: a dry run of this script without a GPU (numbers meaningless, PyTorch on CUDA skipped).
  const dryRun = flags.device !== 'cuda:0';
  // A dry run calls Python only when PYTHON names an interpreter (e.g. a stub that prints JSON).
  const skipTorch = flags['skip-torch'] || (dryRun && !process.env.PYTHON);
  const skipGemm = flags['skip-gemm'] || !parts.includes('gemm');
  const why = dryRun ? null : cudaUnavailableReason();
  if (why) {
    console.error(`bench:gpu: no CUDA device: ${why}. Nothing was measured.`);
    process.exit(2);
  }
  const device = dryRun ? Device.parse(flags.device) : Device.cuda(0);
  const gpuName = dryRun ? `${device.name} (DRY RUN, not a GPU)` : device.describe();
  const date = new Date().toISOString();
  let command = ['node', 'dist/bench/gpu.js', ...argv].join(' ');
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
  let rows: StepRow[] = [];
  const torchRuns = new Map<string, ReturnType<typeof torchStep>>();
  let torchVersion: string | undefined;
  const tf32Reachable = native.buildInfo().cuda;
  let gemm: { n: number; ours: number; oursTf32?: number; cublas?: number; cublasTf32?: number }[] = [];
  let gemmNote = '';
  let torchGemmInfo: Record<string, unknown> | undefined;
  let fitRows: FitRow[] = [];
  let rnnRows: RnnRow[] = [];
  let rnnTorch: Record<string, unknown> | undefined;
  let convRows: ConvRow[] = [];
  // --merge: the parts not run now keep their rows from the last report (written by an earlier process of the same run).
  const reportFile = path.join(resultsDir, 'gpu.json');
  if (flags.merge && fs.existsSync(reportFile)) {
    try {
      const old = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as {
        command?: string;
        torch?: string;
        training_step?: { rows?: StepRow[] };
        fit?: { rows?: FitRow[] };
        gemm?: { rows?: typeof gemm; torch?: Record<string, unknown> | null; error?: string | null };
        recurrent?: { rows?: RnnRow[]; torch?: Record<string, unknown> | null };
        conv?: { rows?: ConvRow[] };
      };
      const num = (v: unknown) => (v === null ? NaN : v);
      const revive = <T>(list: T[] | undefined): T[] =>
        (list ?? []).map(
          (r) => Object.fromEntries(Object.entries(r as object).map(([k, v]) => [k, k.startsWith('torch') ? v : num(v)])) as T,
        );
      if (!parts.includes('steps')) rows = revive(old.training_step?.rows);
      if (!parts.includes('fit')) fitRows = revive(old.fit?.rows);
      if (!parts.includes('gemm')) {
        gemm = revive(old.gemm?.rows);
        torchGemmInfo = old.gemm?.torch ?? undefined;
        gemmNote = old.gemm?.error ?? '';
      }
      if (!parts.includes('conv')) convRows = revive(old.conv?.rows);
      if (!parts.includes('recurrent')) {
        rnnRows = revive(old.recurrent?.rows);
        rnnTorch = old.recurrent?.torch ?? undefined;
      }
      torchVersion = old.torch;
      if (old.command) command = `${old.command}; then ${command}`;
    } catch (e) {
      console.error(
        `--merge: ${path.relative(root, reportFile)} could not be read (${(e as Error).message}); writing the parts run now only`,
      );
    }
  }
  for (const [method, streams, graph] of parts.includes('steps') ? configs : []) {
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

  /** Writes gpu.{json,md} with what has been measured so far. */
  const write = (): void => {
    const torchLabel = torchVersion ? `PyTorch ${torchVersion}` : 'PyTorch';
    const fix = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
    const ratio = (a: number | null | undefined, b: number | null | undefined) =>
      a && b && Number.isFinite(a) && Number.isFinite(b) ? `${(a / b).toFixed(2)}x` : '–';
    const bp = rows[0]?.msPerStep;
    const stepTable = !rows.length
      ? []
      : [
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
    const bptt = (r: RnnRow) => rnnRows.find((x) => x.method === 'bptt' && x.batch === r.batch && x.hidden === r.hidden);
    const rnnTable = rnnRows.length
      ? [
          `| method | M's stream | batch | LSTM | ms/window (each awaited) | ms/window (one ahead) | vs synthgrad BPTT (awaited) | ${torchLabel} nn.LSTM BPTT window ms | synthgrad speed-up vs PyTorch (awaited) | LSTM fwd+bwd ms: synthgrad | PyTorch | speed-up |`,
          '|---|---|---|---|---|---|---|---|---|---|---|---|',
          ...rnnRows.map((r) => {
            const b = bptt(r);
            return (
              `| ${r.method} | ${r.method === 'bptt' ? '–' : r.streams} | ${r.batch} | ${r.hidden} | ${fix(r.msPerWindow)} | ${fix(r.msPerWindowAhead)} | ${ratio(b?.msPerWindow, r.msPerWindow)} | ` +
              `${b?.torchWindowMs !== undefined && b.torchWindowMs !== null ? fix(b.torchWindowMs) : `– (${b?.torchNote ?? 'not run'})`} | ${ratio(b?.torchWindowMs, r.msPerWindow)} | ` +
              (r.method === 'bptt' ? `${fix(r.lstmMs)} | ${fix(r.torchLstmMs)} | ${ratio(r.torchLstmMs, r.lstmMs)} |` : '| | |')
            );
          }),
        ]
      : [];
    if (rnnTable.length) console.log(`\n${rnnTable.join('\n')}\n`);
    const convTable = convRows.length
      ? [
          '| CUDA graph | batch | filters | ms/step | images/s |',
          '|---|---|---|---|---|',
          ...convRows.map(
            (r) =>
              `| ${r.graph ? 'captured' : 'no'} | ${r.batch} | ${r.filters} | ${fix(r.msPerStep)} | ${Number.isFinite(r.msPerStep) ? Math.round((1000 * r.batch) / r.msPerStep) : '–'} |`,
          ),
        ]
      : [];
    if (convTable.length) console.log(`\n${convTable.join('\n')}\n`);
    const report = {
      date,
      device: gpuName,
      command,
      torch: torchVersion ?? null,
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
      recurrent: {
        model: `the Copy task's LSTM sequence model (one-hot input of 10 symbols, LSTM, read-out of 8 with softmax cross-entropy, label -1 ignored), T = ${rnnSteps}, Adam lr 1e-3; DNI: linear M on [h, c]`,
        note: "Copy task windows (level 3) made beforehand, each uploaded from the host by step() and its loss read; 'each awaited': the next window is enqueued once the previous loss has arrived (as trainSequences on Copy, whose curriculum needs it); 'one ahead': the next window is enqueued before the previous loss is awaited (as trainSequences on text). PyTorch: nn.LSTM (cuDNN, TF32 off) BPTT window with Adam and loss.item() per window (bench/reference/torch_lstm_window.py); LSTM fwd+bwd: the layer alone, parameter gradients only, synchronised after each",
        rows: rnnRows,
        torch: rnnTorch ?? null,
      },
      conv: {
        model:
          "cnn(): 3 blocks of Conv2d 5x5 'same' (no bias) -> BatchNorm2d -> ReLU -> 3x3 pool, stride 2, padding 1 (max, then average), Linear to 10; input [batch, 3, 32, 32]; backprop, Adam",
        note: 'random images, two host batches alternated, each step written with Tensor.write on the trainer stream and its loss read; direct convolution kernels (cuda/conv.cu)',
        rows: convRows,
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
      ...(stepTable.length
        ? [
            `## Training step (${report.training_step.model})`,
            '',
            ...stepTable,
            '',
            `${rows[0].steps} timed steps after the warm-up (DNI: ${rows.find((r) => r.method === 'dni')?.steps} steps). 'per-module': one CUDA stream per module, with events between them; ` +
              "'single': everything on the trainer's stream. 'captured': the step captured once into a CUDA graph (Graph.capture) and launched each step. " +
              'PyTorch: bench/reference/torch_mlp.py (backprop) and torch_dni.py --time, eager.',
            '',
          ]
        : []),
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
      ...(convTable.length
        ? [
            `## Convolutional training step (${report.conv.model})`,
            '',
            ...convTable,
            '',
            `${report.conv.note}; ${convRows[0].steps} timed steps after the warm-up.`,
            '',
          ]
        : []),
      ...(rnnTable.length
        ? [
            `## Recurrent training windows (${report.recurrent.model})`,
            '',
            ...rnnTable,
            '',
            `${report.recurrent.note}. ${rnnRows[0].windows} windows timed per row after a warm-up.`,
            '',
          ]
        : []),
    ].join('\n');
    fs.writeFileSync(path.join(resultsDir, 'gpu.md'), md);
    console.log(`wrote ${path.relative(root, path.join(resultsDir, 'gpu.json'))} and gpu.md`);
  };
  write();

  // (e) first when asked for alone; otherwise last (below)
  const recurrent = async (): Promise<void> => {
    const w = Math.min(20, rnnWindows);
    for (const [batchSize, hiddenSize] of rnnShapes) {
      for (const [method, streams] of rnnConfigs) {
        const row: RnnRow = {
          method,
          streams,
          batch: batchSize,
          hidden: hiddenSize,
          windows: rnnWindows,
          msPerWindow: NaN,
          msPerWindowAhead: NaN,
        };
        try {
          row.msPerWindow = await rnnWindowMs(device, method, streams, batchSize, hiddenSize, rnnWindows, w, false);
          row.msPerWindowAhead = await rnnWindowMs(device, method, streams, batchSize, hiddenSize, rnnWindows, w, true);
          if (method === 'bptt') row.lstmMs = await lstmLayerMs(device, batchSize, hiddenSize, rnnWindows, w);
        } catch (e) {
          console.error(`synthgrad recurrent ${method} ${streams} [${batchSize}, ${hiddenSize}] failed: ${(e as Error).message}`);
        }
        rnnRows.push(row);
        console.log(
          `recurrent ${method.padEnd(7)} ${streams.padEnd(8)} batch ${batchSize} LSTM ${hiddenSize}: ${row.msPerWindow.toFixed(3)} ms/window awaited, ${row.msPerWindowAhead.toFixed(3)} one ahead` +
            (row.lstmMs !== undefined ? `; LSTM fwd+bwd ${row.lstmMs.toFixed(3)} ms` : ''),
        );
      }
      write();
    }
    // PyTorch: one process for every shape (its start and CUDA initialisation once).
    const bpttRows = rnnRows.filter((r) => r.method === 'bptt');
    if (skipTorch) for (const r of bpttRows) r.torchNote = 'skipped';
    else {
      const r = runPython(
        'torch_lstm_window.py',
        [
          '--device',
          dryRun ? 'cpu' : 'cuda',
          '--steps',
          String(rnnSteps),
          '--shapes',
          rnnShapes.map(([b, h]) => `${b}x${h}`).join(','),
          '--windows',
          String(rnnWindows),
          '--warmup',
          String(w),
        ],
        240000,
      );
      if (r.json) rnnTorch = r.json;
      const got = (r.json?.rows ?? []) as { batch: number; hidden: number; window_ms: number; lstm_ms: number }[];
      for (const row of bpttRows) {
        const t = got.find((g) => g.batch === row.batch && g.hidden === row.hidden);
        row.torchWindowMs = t && Number.isFinite(t.window_ms) ? t.window_ms : null;
        row.torchLstmMs = t && Number.isFinite(t.lstm_ms) ? t.lstm_ms : null;
        if (!t) row.torchNote = r.error ?? 'no row for this shape in its output';
      }
      if (typeof r.json?.torch === 'string' && !torchVersion) torchVersion = r.json.torch;
    }
    write();
  };

  // (d)
  for (const [method, graph] of (parts.includes('fit')
    ? [
        ['backprop', false],
        ['backprop', true],
        ['cdni', false],
        ['cdni', true],
      ]
    : []) as ['backprop' | 'cdni', boolean][]) {
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

  // (f)
  for (const graph of parts.includes('conv') ? [false, true] : []) {
    const n = Math.max(5, Math.round(steps / 15)),
      w = Math.min(3, n);
    let ms = NaN;
    try {
      ms = await convStepMs(device, graph, convBatch, convFilters, n, w);
    } catch (e) {
      console.error(`synthgrad conv step${graph ? ' graph' : ''} failed: ${(e as Error).message}`);
    }
    convRows.push({ graph, batch: convBatch, filters: convFilters, steps: n, msPerStep: ms });
    console.log(`conv step ${graph ? 'graph' : 'eager'} batch ${convBatch} filters ${convFilters}: ${ms.toFixed(3)} ms/step`);
    write();
  }

  if (parts.includes('recurrent')) await recurrent();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
