// The roofline of each method's CPU training step: how far the measured step time is from a
// lower bound made of the step's GEMM FLOPs at our measured GEMM throughput plus the bytes
// every other op must move at the measured memory bandwidth (test/helpers/op-work.ts counts
// both from the ops the step enqueues), and where the step's time goes, op by op (the native
// op profile, native.profile).
//
// Steps (one stream, Adam): backprop, DNI and cDNI on the MNIST FCN (3 and 6 hidden layers of
// 256, batch 256; as bench/dni_cpu.ts), the Copy task's LSTM window (LSTM 128, batch 64, T = 5;
// BPTT and DNI; as bench/rnn_cpu.ts) and cnn() with 16 filters on 28x28 images (batch 64).
// The rates: the GEMM's peak is our gemm op on square matrices, the best of 256, 512 and 1024
// (the bound's rate), and the step's own GEMM shapes are timed too (a second bound, "at the
// step's shapes"); the memory bandwidth is the faster of our axpby and copy ops streaming 64 MiB
// arrays (bytes counted as the op's reads + writes, not the cache's write-allocate reads).
// Writes bench/results/roofline.{json,md} (NAME.{json,md} with --out NAME).
//
//   npm run bench:roofline [-- --rounds 5 --steps 10 --warmup 10 --cases fcn3-backprop,lstm-bptt --out roofline]
// Per step: --warmup steps, then --rounds rounds of (the rates, --steps timed steps), then
// --steps steps profiled and traced.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, CopyTask, Device, Stream, Tensor, native } from '../ts';
import * as ops from '../ts/ops';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentMethod, RecurrentTraining } from '../ts/recurrent/training';
import { benchFlags, numberFlag, resultName } from './flags';
import { resultsDir } from './paths';
import { commandLine, cpuModel } from './stats';
import { OpCall, Work, boundMs, stepWork, traceOps } from '../test/helpers/op-work';
import { Method, fcnStep } from './step_time';

const device = Device.cpu();

interface Step {
  step(): Promise<void>;
  dispose(): void;
}

interface Case {
  name: string;
  about: string;
  make(steps: number): Step;
}

function fcnCase(depth: number, method: Method): Case {
  return {
    name: `fcn${depth}-${method}`,
    about: `MNIST FCN, ${depth} hidden layers of 256, batch 256, ${method}`,
    make: () => fcnStep({ device, hidden: new Array(depth).fill(256), batch: 256, method, streams: 'single' }),
  };
}

function lstmCase(method: RecurrentMethod): Case {
  return {
    name: `lstm-${method}`,
    about: `Copy task LSTM 128, batch 64, window T = 5, ${method}`,
    make: (steps) => {
      const source = new CopyTask(64, { seed: 0, curriculum: { level: 3 } });
      const windows = Array.from({ length: steps }, () => source.nextWindow(5));
      const model = new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden: 128 });
      const tr = new RecurrentTraining(model, {
        method,
        streams: 'single',
        optimizer: () => new Adam({ lr: 1e-3 }),
        seed: 0,
        ...(method === 'bptt' ? {} : { synthesizer: {} }),
      });
      let i = 0;
      return {
        step: async () => {
          await tr.step(windows[i++ % windows.length]);
          await tr.synchronize();
        },
        dispose: () => tr.dispose(),
      };
    },
  };
}

function convCase(): Case {
  const batch = 64;
  return {
    name: 'cnn16-backprop',
    about: `cnn() with 16 filters (3 blocks, 5x5), 1x28x28 images, batch ${batch}, backprop`,
    make: () =>
      fcnStep({ device, hidden: [], cnn: { filters: 16, blocks: 3, synthFilters: [] }, batch, method: 'backprop', streams: 'single' }),
  };
}

const allCases: Case[] = [
  ...[3, 6].flatMap((d) => (['backprop', 'dni', 'cdni'] as const).map((m) => fcnCase(d, m))),
  lstmCase('bptt'),
  lstmCase('dni'),
  convCase(),
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Milliseconds of each of `reps` runs of `run` (each awaited). */
async function timesMs(run: () => Promise<void>, reps: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times;
}

// The machine's rates are the best seen, not the median: on a shared machine a long run of a
// kernel is cut by other processes more often than a short step is, and the bound must stay
// below what the step could reach.
const bestMs = async (run: () => Promise<void>, reps: number) => Math.min(...(await timesMs(run, reps)));

// ---- the machine's rates ------------------------------------------------------------------

interface GemmShape {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

/** Milliseconds of one gemm op c[m,n] = op(a) op(b) (the best of `reps`, after a warm-up). */
async function gemmMs(g: GemmShape, reps: number): Promise<number> {
  const stream = new Stream(device);
  const zeros = (shape: number[]) => Tensor.zeros(shape, { device });
  const a = zeros(g.transA ? [g.k, g.m] : [g.m, g.k]);
  const b = zeros(g.transB ? [g.n, g.k] : [g.k, g.n]);
  const c = zeros([g.m, g.n]);
  // Several GEMMs per timing, so that a small one is not lost in the synchronize.
  const per = Math.max(1, Math.min(200, Math.round(2e8 / (2 * g.m * g.n * g.k))));
  const run = async () => {
    for (let i = 0; i < per; i++) ops.gemm({ stream }, a, b, c, g.transA, g.transB, 1, 0);
    await stream.synchronize();
  };
  await run();
  const ms = (await bestMs(run, reps)) / per;
  for (const t of [a, b, c]) t.dispose();
  return ms;
}

interface Rates {
  /** our gemm op on square matrices: the best of 256, 512 and 1024 */
  peakGflops: number;
  /** the faster of the streaming axpby and copy over 64 MiB arrays */
  gbPerSecond: number;
  axpbyGbPerSecond: number;
  copyGbPerSecond: number;
  /** copy over 512 KiB arrays (in cache), for comparison */
  cachedCopyGbPerSecond: number;
}

async function streamGbPerSecond(kind: 'axpby' | 'copy', elements: number, perTiming: number, reps: number): Promise<number> {
  const stream = new Stream(device);
  const x = Tensor.zeros([elements], { device });
  const y = Tensor.zeros([elements], { device });
  const run = async () => {
    for (let i = 0; i < perTiming; i++) {
      if (kind === 'axpby') ops.axpby({ stream }, 0.5, x, 0.5, y);
      else ops.copy({ stream }, x, y);
    }
    await stream.synchronize();
  };
  await run();
  const ms = await bestMs(run, reps);
  x.dispose();
  y.dispose();
  const bytes = (kind === 'axpby' ? 3 : 2) * 4 * elements * perTiming; // reads + writes
  return bytes / (ms * 1e6);
}

async function measureRates(reps: number): Promise<Rates> {
  // The best of three square sizes: on a loaded machine the larger ones, which work out of the
  // shared L3 cache, can lose most of their speed to the other processes.
  let peakGflops = 0;
  for (const n of [256, 512, 1024])
    peakGflops = Math.max(peakGflops, (2 * n * n * n) / ((await gemmMs({ m: n, n, k: n, transA: false, transB: false }, reps)) * 1e6));
  const big = 1 << 24; // 64 MiB a tensor
  const axpbyGbPerSecond = await streamGbPerSecond('axpby', big, 1, reps);
  const copyGbPerSecond = await streamGbPerSecond('copy', big, 1, reps);
  const cachedCopyGbPerSecond = await streamGbPerSecond('copy', 1 << 17, 200, reps);
  return {
    peakGflops,
    gbPerSecond: Math.max(axpbyGbPerSecond, copyGbPerSecond),
    axpbyGbPerSecond,
    copyGbPerSecond,
    cachedCopyGbPerSecond,
  };
}

/** The GEMM shapes of the traced calls that are gemm or linearForward ops. */
function gemmShapes(calls: OpCall[]): GemmShape[] {
  const shape = (v: unknown) => (v as { shape: number[] }).shape;
  return calls.flatMap((c): GemmShape[] => {
    if (c.op === 'gemm') {
      const [m, n] = shape(c.args.c);
      const a = shape(c.args.a);
      return [{ m, n, k: c.args.transA ? a[0] : a[1], transA: c.args.transA as boolean, transB: c.args.transB as boolean }];
    }
    if (c.op === 'linearForward') {
      const [m, k] = shape(c.args.x);
      return [{ m, n: shape(c.args.w)[0], k, transA: false, transB: true }];
    }
    return [];
  });
}

/** Milliseconds of the calls' gemm and linearForward GEMMs at their own shapes. */
async function gemmAtShapesMs(calls: OpCall[]): Promise<number> {
  const shapeTimes = new Map<string, number>();
  let total = 0;
  for (const g of gemmShapes(calls)) {
    const key = JSON.stringify(g);
    if (!shapeTimes.has(key)) shapeTimes.set(key, await gemmMs(g, 5));
    total += shapeTimes.get(key)!;
  }
  return total;
}

/** stepWork() of `steps` steps, per step. */
function perStep(w: ReturnType<typeof stepWork>, steps: number): ReturnType<typeof stepWork> {
  const scale = (x: Work) => ({ gemmFlops: x.gemmFlops / steps, bytes: x.bytes / steps });
  return {
    total: scale(w.total),
    byOp: new Map([...w.byOp].map(([op, x]) => [op, { ...scale(x), calls: x.calls / steps }])),
  };
}

// ---- one step's measurements --------------------------------------------------------------

interface OpRow {
  op: string;
  calls: number;
  /** profiled milliseconds per step */
  ms: number;
  /** share of the measured step */
  share: number;
  boundMs: number;
  gemmFlops: number;
  bytes: number;
}

interface Result {
  name: string;
  about: string;
  /** measured just before this step's timing */
  rates: Rates;
  /** median */
  stepMs: number;
  bestStepMs: number;
  gemmFlops: number;
  bytes: number;
  gemmBoundMs: number;
  memoryBoundMs: number;
  boundMs: number;
  /** bound / median step */
  fraction: number;
  /** bound / best step */
  fractionBest: number;
  /** the bound with the GEMMs at their own shapes' measured times (convolutions at the peak) */
  boundAtShapesMs: number;
  fractionAtShapes: number;
  /** step time of the profiled steps (the profile's cost shows as the difference to stepMs) */
  profiledStepMs: number;
  /** profiled op time per step, all ops */
  opsMs: number;
  ops: OpRow[];
}

/** Each field's best over the rounds. */
function bestRates(rs: Rates[]): Rates {
  const keys = Object.keys(rs[0]) as (keyof Rates)[];
  return Object.fromEntries(keys.map((k) => [k, Math.max(...rs.map((r) => r[k]))])) as unknown as Rates;
}

async function measure(c: Case, steps: number, warmup: number, rounds: number): Promise<Result> {
  const s = c.make(warmup + (rounds + 1) * steps);
  try {
    for (let i = 0; i < warmup; i++) await s.step();
    // Rounds of the machine's rates, then `steps` steps: a change of the shared machine's load
    // hits the bound and the step alike. The rates' best, the steps' median (and best).
    const times: number[] = [];
    const roundRates: Rates[] = [];
    for (let r = 0; r < rounds; r++) {
      roundRates.push(await measureRates(3));
      times.push(...(await timesMs(() => s.step(), steps)));
    }
    const rates = bestRates(roundRates);
    // The profiled steps are traced too (the trace costs the host microseconds an op): their
    // work is averaged over the steps, as an LSTM window's op count varies.
    native.profile('start');
    const t0 = process.hrtime.bigint();
    const calls = await traceOps(async () => {
      for (let i = 0; i < steps; i++) await s.step();
    });
    const profiledStepMs = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
    native.profile('stop');
    const profile = native.profile('read');
    const { total, byOp } = perStep(stepWork(calls), steps);
    const stepMs = median(times);
    const bestStepMs = Math.min(...times);
    const gemmBoundMs = boundMs({ gemmFlops: total.gemmFlops, bytes: 0 }, rates.peakGflops, rates.gbPerSecond);
    const memoryBoundMs = boundMs({ gemmFlops: 0, bytes: total.bytes }, rates.peakGflops, rates.gbPerSecond);
    const convFlops = [...byOp].filter(([op]) => op.startsWith('conv2d')).reduce((f, [, w]) => f + w.gemmFlops, 0);
    const boundAtShapesMs = (await gemmAtShapesMs(calls)) / steps + convFlops / (rates.peakGflops * 1e6) + memoryBoundMs;
    const names = new Set([...byOp.keys(), ...profile.map((p) => p.op)]);
    const rows: OpRow[] = [...names].map((op) => {
      const w: Work & { calls?: number } = byOp.get(op) ?? { gemmFlops: 0, bytes: 0 };
      const p = profile.find((e) => e.op === op);
      const ms = p ? (p.seconds * 1000) / steps : 0;
      return {
        op,
        calls: (p?.calls ?? 0) / steps,
        ms,
        share: ms / profiledStepMs,
        boundMs: boundMs(w, rates.peakGflops, rates.gbPerSecond),
        gemmFlops: w.gemmFlops,
        bytes: w.bytes,
      };
    });
    rows.sort((a, b) => b.ms - a.ms);
    const opsMs = rows.reduce((t, r) => t + r.ms, 0);
    return {
      name: c.name,
      about: c.about,
      rates,
      stepMs,
      bestStepMs,
      gemmFlops: total.gemmFlops,
      bytes: total.bytes,
      gemmBoundMs,
      memoryBoundMs,
      boundMs: gemmBoundMs + memoryBoundMs,
      fraction: (gemmBoundMs + memoryBoundMs) / stepMs,
      fractionBest: (gemmBoundMs + memoryBoundMs) / bestStepMs,
      boundAtShapesMs,
      fractionAtShapes: boundAtShapesMs / stepMs,
      profiledStepMs,
      opsMs,
      ops: rows,
    };
  } finally {
    native.profile('stop');
    s.dispose();
  }
}

// ---- output -------------------------------------------------------------------------------

const f2 = (v: number) => v.toFixed(2);
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;

function opTable(r: Result, top: number): string[] {
  const lines = [
    '| op | calls/step | ms/step | % of step | bound ms | bound / ms | GEMM MFLOP | MB moved |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const o of r.ops.slice(0, top))
    lines.push(
      `| ${o.op} | ${Number.isInteger(o.calls) ? o.calls : o.calls.toFixed(1)} | ${f2(o.ms)} | ${pct(o.share)} | ${o.boundMs.toFixed(3)} | ${o.ms > 0 ? pct(o.boundMs / o.ms) : '–'} | ` +
        `${(o.gemmFlops / 1e6).toFixed(1)} | ${(o.bytes / 1e6).toFixed(2)} |`,
    );
  const rest = r.ops.slice(top);
  if (rest.length)
    lines.push(
      `| ${rest.length} other ops | | ${f2(rest.reduce((t, o) => t + o.ms, 0))} | ${pct(rest.reduce((t, o) => t + o.share, 0))} | | | | |`,
    );
  lines.push(
    `| outside the ops (host, dispatch, waits) | | ${f2(r.profiledStepMs - r.opsMs)} | ${pct(1 - r.opsMs / r.profiledStepMs)} | | | | |`,
  );
  return lines;
}

function rateText(r: Rates): string {
  return (
    `GEMM ${r.peakGflops.toFixed(1)} GFLOP/s (best of 256^3, 512^3, 1024^3); memory ${r.gbPerSecond.toFixed(1)} GB/s ` +
    `(axpby ${r.axpbyGbPerSecond.toFixed(1)}, copy ${r.copyGbPerSecond.toFixed(1)}; in-cache copy ${r.cachedCopyGbPerSecond.toFixed(1)})`
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, { rounds: '5', steps: '10', warmup: '10', cases: allCases.map((c) => c.name).join(','), out: 'roofline' });
  const rounds = numberFlag('--rounds', flags.rounds);
  const steps = numberFlag('--steps', flags.steps);
  const warmup = numberFlag('--warmup', flags.warmup);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be an integer >= 1, got ${flags.rounds}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be an integer >= 1, got ${flags.steps}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`--warmup must be an integer >= 0, got ${flags.warmup}`);
  const cases = flags.cases.split(',').map((name) => {
    const c = allCases.find((k) => k.name === name);
    if (!c) throw new Error(`--cases: unknown case '${name}'; the cases: ${allCases.map((k) => k.name).join(', ')}`);
    return c;
  });
  const out = resultName('--out', flags.out);
  const loadStart = os.loadavg();
  const results: Result[] = [];
  for (const c of cases) {
    const r = await measure(c, steps, warmup, rounds);
    results.push(r);
    console.log(
      `\n${r.name}: ${rateText(r.rates)}\n${f2(r.stepMs)} ms/step (best ${f2(r.bestStepMs)}); bound ${f2(r.boundMs)} ms (GEMM ${f2(r.gemmBoundMs)} + memory ${f2(r.memoryBoundMs)}), ` +
        `achieved ${pct(r.fraction)} (of the best step ${pct(r.fractionBest)}); at the step's GEMM shapes ${f2(r.boundAtShapesMs)} ms, ${pct(r.fractionAtShapes)}`,
    );
    for (const line of opTable(r, 6)) console.log(line);
  }
  const loadEnd = os.loadavg();
  const machine = `${cpuModel()}, ${os.cpus().length} cores, ${native.threads()} threads, CPU GEMM kernel ${native.buildInfo().cpuGemm}`;
  const load = `load average ${loadStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${loadEnd.map((l) => l.toFixed(2)).join(' ')} at the end`;
  const command = commandLine('dist/bench/roofline.js', argv);
  const md = [
    '# Roofline of the CPU training steps',
    '',
    `${new Date().toISOString()}; ${machine}; ${load}; command: \`${command}\`; ` +
      `after ${warmup} warm-up steps, ${rounds} rounds of (the rates, ${steps} timed steps); then ${steps} steps profiled; ` +
      'one stream. The machine was shared with other processes (see the load average).',
    '',
    'Rates, measured in each round, the best of all rounds (a lower bound must not take a rate cut by other processes): GEMM GFLOP/s of our gemm op on square matrices, the best of 256, 512 and 1024 (n x n x n); memory GB/s, the faster of ' +
      'our axpby and copy ops over 64 MiB arrays (reads + writes; the copy within the cache, 512 KiB arrays, for comparison). ' +
      'Bound = GEMM FLOPs / GEMM rate + bytes / memory rate (test/helpers/op-work.ts); achieved = bound / the median step time (and / the best step time). ' +
      '"At shapes": the GEMMs timed at the step\'s own shapes instead of at the peak rate.',
    '',
    '| step | GEMM GFLOP/s | GB/s (in cache) | ms/step: median (best) | GEMM GFLOP | non-GEMM MB | GEMM bound ms | memory bound ms | bound ms | achieved (of best) | bound at shapes ms | achieved at shapes | op time outside GEMM ops |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const gemmOps = r.ops.filter((o) => o.gemmFlops > 0).reduce((t, o) => t + o.ms, 0);
      return (
        `| ${r.name} | ${r.rates.peakGflops.toFixed(1)} | ${r.rates.gbPerSecond.toFixed(1)} (${r.rates.cachedCopyGbPerSecond.toFixed(1)}) | ` +
        `${f2(r.stepMs)} (${f2(r.bestStepMs)}) | ${(r.gemmFlops / 1e9).toFixed(3)} | ${(r.bytes / 1e6).toFixed(2)} | ${f2(r.gemmBoundMs)} | ` +
        `${f2(r.memoryBoundMs)} | ${f2(r.boundMs)} | ${pct(r.fraction)} (${pct(r.fractionBest)}) | ${f2(r.boundAtShapesMs)} | ${pct(r.fractionAtShapes)} | ` +
        `${pct((r.profiledStepMs - gemmOps) / r.profiledStepMs)} |`
      );
    }),
    '',
    'Last column: the share of the profiled step not spent in the ops that hold GEMMs (gemm, linearForward, the convolutions): ' +
      'the other ops plus the time outside any op.',
    '',
    '## Per-op profile',
    '',
    "Time per op kind (native.profile: each op timed on its stream's worker around its kernels), per step; " +
      '"bound ms" is the op\'s share of the bound, "bound / ms" how close the op comes to it. ' +
      '"Outside the ops": the step time the worker spent on no op (the host building the step, dispatch, waiting for the host to read the loss).',
    '',
    ...results.flatMap((r) => [
      `### ${r.name}: ${r.about}`,
      '',
      `${f2(r.profiledStepMs)} ms/step while profiled (${f2(r.stepMs)} without).`,
      '',
      ...opTable(r, 8),
      '',
    ]),
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${out}.md`), md);
  fs.writeFileSync(
    path.join(resultsDir, `${out}.json`),
    JSON.stringify({ date: new Date().toISOString(), machine, loadStart, loadEnd, command, rounds, steps, warmup, results }, null, 2) +
      '\n',
  );
  console.log(`\nwrote bench/results/${out}.md and .json`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
