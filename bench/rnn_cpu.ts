// CPU benchmark of recurrent training, one run:
//   1. time per window of truncated BPTT, DNI and DNI + Aux at T = 5 (the Copy task's LSTM
//      sequence model: LSTM 128, batch 64, one-hot input of 10 symbols, Adam; the default
//      linear synthesizer on [h, c]), DNI's synthesizer on the trainer's stream ('single') and
//      on a stream of its own ('separate'); BPTT has no synthesizer, so it has one layout only.
//      Ratios against BPTT;
//   2. the LSTM layer's forward + backward over a window of T = 5 and T = 50 (same sizes, input
//      10 features, parameter gradients only) against PyTorch's nn.LSTM on the CPU
//      (bench/reference/torch_lstm.py) at the same thread count, ratio printed; also, since on
//      a loaded machine PyTorch's spinning OpenMP threads can slow it by 100x, at the same
//      thread count with OMP_WAIT_POLICY=PASSIVE and at one thread (each PyTorch run stops
//      after --torch-seconds).
// Both sides run from this one process tree, interleaved: each of `--rounds` rounds times every
// configuration once (synthgrad, then PyTorch), and the table gives each one's median over
// the rounds, so that a change of the shared machine's load hits both sides alike. The load
// average at the start and the end is written with the results.
// Writes bench/results/rnn_cpu.json and .md (NAME.json and .md with --out NAME).
//
//   npm run bench:rnn [-- --rounds 3 --windows 200 --warmup 20 --iterations 200 --torch-seconds 20 --out rnn_cpu]
// --windows: windows timed per configuration and round (after --warmup); --iterations: LSTM
// windows timed per T and round, on each side.
import { execFileSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import { Adam, Arena, CopyTask, Device, Random, Stream, Tensor, native } from '../ts';
import { LSTM } from '../ts/nn/lstm';
import type { StepContext } from '../ts/nn/module';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentMethod, RecurrentTraining } from '../ts/recurrent/training';
import { resultName } from './flags';
import { projectRoot as root, writeResults } from './paths';
import { loadNow, median } from './stats';

const python = '/usr/bin/python3';
const hidden = 128;
const batch = 64;
const truncation = 5;
const inputs = 10; // the Copy task's input symbols (8 items, blank, delimiter)
const lstmWindows = [5, 50];

interface Args {
  rounds: number;
  windows: number;
  warmup: number;
  iterations: number;
  torchSeconds: number;
  out: string;
}

function parse(argv: string[]): Args {
  const a: Args = { rounds: 3, windows: 200, warmup: 20, iterations: 200, torchSeconds: 20, out: 'rnn_cpu' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    const int = (min: number) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new Error(`${k} must be an integer >= ${min}, got ${v}`);
      return n;
    };
    if (k === '--rounds') a.rounds = int(1);
    else if (k === '--windows') a.windows = int(1);
    else if (k === '--warmup') a.warmup = int(0);
    else if (k === '--iterations') a.iterations = int(1);
    else if (k === '--torch-seconds') a.torchSeconds = int(1);
    else if (k === '--out') a.out = resultName(k, v);
    else throw new Error(`unknown option ${k} (see the file header of bench/rnn_cpu.ts)`);
  }
  return a;
}

interface Config {
  method: RecurrentMethod;
  streams: 'single' | 'separate';
}
const configs: Config[] = [
  { method: 'bptt', streams: 'single' },
  { method: 'dni', streams: 'single' },
  { method: 'dni', streams: 'separate' },
  { method: 'dni-aux', streams: 'single' },
  { method: 'dni-aux', streams: 'separate' },
];

/** Milliseconds per training window: each step awaited as trainSequences does, both streams drained at the end. */
async function windowTime(c: Config, a: Args): Promise<number> {
  const source = new CopyTask(batch, { seed: 0, curriculum: { level: 3 } });
  const windows = Array.from({ length: a.warmup + a.windows }, () => source.nextWindow(truncation));
  const model = new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden });
  const tr = new RecurrentTraining(model, {
    method: c.method,
    streams: c.streams,
    optimizer: () => new Adam({ lr: 1e-3 }),
    seed: 0,
    ...(c.method === 'bptt' ? {} : { synthesizer: {} }),
  });
  try {
    for (const w of windows.slice(0, a.warmup)) await tr.step(w);
    await tr.synchronize();
    const t0 = process.hrtime.bigint();
    for (const w of windows.slice(a.warmup)) await tr.step(w);
    await tr.synchronize();
    return Number(process.hrtime.bigint() - t0) / 1e6 / a.windows;
  } finally {
    tr.dispose();
  }
}

/** Milliseconds per forward + backward of the LSTM layer over `steps` steps (parameter gradients only). */
async function lstmTime(steps: number, a: Args): Promise<number> {
  const device = Device.cpu();
  const rng = new Random(0);
  const lstm = new LSTM(inputs, hidden);
  lstm.initialize(device, rng);
  const stream = new Stream(device);
  const resident = (n: number, shape: number[], lo: number, hi: number) => Tensor.fromArray(rng.uniformArray(n, lo, hi), shape, { device });
  const xs = Array.from({ length: steps }, () => resident(batch * inputs, [batch, inputs], 0, 1));
  const dOut = Array.from({ length: steps }, () => resident(batch * hidden, [batch, hidden], -0.5, 0.5));
  const state = { h: resident(batch * hidden, [batch, hidden], -0.5, 0.5), c: resident(batch * hidden, [batch, hidden], -0.5, 0.5) };
  const iteration = async () => {
    const arena = new Arena();
    const ctx: StepContext = { device, stream, training: true, arena };
    lstm.forward(xs, state, ctx).backward(dOut, undefined, ctx);
    await stream.synchronize();
    arena.dispose();
  };
  try {
    for (let i = 0; i < a.warmup; i++) await iteration();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < a.iterations; i++) await iteration();
    return Number(process.hrtime.bigint() - t0) / 1e6 / a.iterations;
  } finally {
    for (const t of [...xs, ...dOut, state.h, state.c]) t.dispose();
    lstm.dispose();
  }
}

interface TorchLstm {
  ms_per_window: number;
  iterations: number;
  torch: string;
  threads: number;
  mkldnn: boolean;
}

/** A PyTorch setting: threads and the OpenMP environment. */
interface TorchSetting {
  label: string;
  threads: number;
  env: NodeJS.ProcessEnv;
}

function torchSettings(threads: number): TorchSetting[] {
  const settings: TorchSetting[] = [{ label: `${threads} thread(s)`, threads, env: process.env }];
  if (threads > 1) {
    settings.push({ label: `${threads} threads, OMP_WAIT_POLICY=PASSIVE`, threads, env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
    settings.push({ label: '1 thread', threads: 1, env: process.env });
  }
  return settings;
}

function torchLstmTime(steps: number, setting: TorchSetting, a: Args): TorchLstm | undefined {
  try {
    const out = execFileSync(
      python,
      [
        path.join(root, 'bench/reference/torch_lstm.py'),
        '--steps',
        String(steps),
        '--hidden',
        String(hidden),
        '--batch',
        String(batch),
        '--inputs',
        String(inputs),
        '--iterations',
        String(a.iterations),
        '--warmup',
        String(a.warmup),
        '--threads',
        String(setting.threads),
        '--max-seconds',
        String(a.torchSeconds),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: setting.env },
    );
    return JSON.parse(out.trim().split('\n').pop()!) as TorchLstm;
  } catch (e) {
    console.error(`PyTorch reference failed (${python} with torch, see bench/setup.sh): ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const a = parse(argv);
  const threads = native.threads();
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  const started = new Date().toISOString();
  const loadStart = loadNow();
  console.log(
    `synthgrad recurrent CPU benchmark on ${cpuModel}, ${os.cpus().length} cores, synthgrad threads ${threads}; load average ${loadStart.join(' / ')}`,
  );

  const windowMs = configs.map(() => [] as number[]);
  const settings = torchSettings(threads);
  const lstmMs = lstmWindows.map(() => [] as number[]);
  const torchMs = lstmWindows.map(() => settings.map(() => [] as number[]));
  const torchIterations = lstmWindows.map(() => settings.map(() => [] as number[]));
  let torchInfo: TorchLstm | undefined;
  for (let r = 0; r < a.rounds; r++) {
    for (const [i, c] of configs.entries()) {
      const ms = await windowTime(c, a);
      windowMs[i].push(ms);
      console.log(`round ${r + 1}: ${c.method.padEnd(7)} ${c.streams.padEnd(8)} ${ms.toFixed(3)} ms/window`);
    }
    for (const [i, steps] of lstmWindows.entries()) {
      const ours = await lstmTime(steps, a);
      lstmMs[i].push(ours);
      const line = [`round ${r + 1}: LSTM T=${steps}: synthgrad ${ours.toFixed(3)} ms`];
      for (const [j, setting] of settings.entries()) {
        const theirs = torchLstmTime(steps, setting, a);
        if (!theirs) continue;
        torchMs[i][j].push(theirs.ms_per_window);
        torchIterations[i][j].push(theirs.iterations);
        torchInfo = theirs;
        line.push(`PyTorch (${setting.label}) ${theirs.ms_per_window.toFixed(3)} ms`);
      }
      console.log(line.join(', '));
    }
  }
  const loadEnd = loadNow();

  const bptt = median(windowMs[0]);
  const methodRows = configs.map((c, i) => {
    const ms = median(windowMs[i]);
    const single =
      c.streams === 'separate' ? median(windowMs[configs.findIndex((d) => d.method === c.method && d.streams === 'single')]) : undefined;
    return {
      ...c,
      ms_per_window: ms,
      rounds_ms: windowMs[i],
      vs_bptt: ms / bptt,
      separate_vs_single: single !== undefined ? single / ms : null,
    };
  });
  const lstmRows = lstmWindows.map((steps, i) => {
    const ours = median(lstmMs[i]);
    const pytorch = settings.map((setting, j) => {
      const ms = torchMs[i][j].length ? median(torchMs[i][j]) : null;
      return {
        setting: setting.label,
        ms,
        rounds_ms: torchMs[i][j],
        iterations: torchIterations[i][j],
        synthgrad_speedup: ms !== null ? ms / ours : null,
      };
    });
    return { steps, synthgrad_ms: ours, synthgrad_rounds_ms: lstmMs[i], pytorch };
  });
  console.log('');
  for (const r of methodRows)
    console.log(
      `${r.method.padEnd(7)} ${r.streams.padEnd(8)} ${r.ms_per_window.toFixed(3)} ms/window  ${r.vs_bptt.toFixed(2)}x BPTT's time` +
        (r.separate_vs_single !== null ? `  (separate: ${r.separate_vs_single.toFixed(2)}x the speed of single)` : ''),
    );
  for (const r of lstmRows)
    for (const p of r.pytorch)
      console.log(
        `LSTM T=${r.steps}: synthgrad ${r.synthgrad_ms.toFixed(3)} ms, PyTorch (${p.setting}) ${p.ms?.toFixed(3) ?? '–'} ms` +
          (p.synthgrad_speedup !== null ? `  -> synthgrad is ${p.synthgrad_speedup.toFixed(2)}x PyTorch's speed` : ''),
      );

  const command = `npm run bench:rnn${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const report = {
    date: started,
    machine: { cpu: cpuModel, cores: os.cpus().length, node: process.version, load_average_start: loadStart, load_average_end: loadEnd },
    command,
    synthgrad_threads: threads,
    rounds: a.rounds,
    windows: {
      model: `Copy task (level 3), LSTM ${hidden}, batch ${batch}, T = ${truncation}, Adam lr 1e-3, linear synthesizer on [h, c]; ${a.windows} windows timed after ${a.warmup}`,
      rows: methodRows,
    },
    lstm: {
      model: `LSTM ${inputs}→${hidden}, batch ${batch}, forward + backward (parameter gradients), ${a.iterations} windows timed after ${a.warmup} (PyTorch: fewer once ${a.torchSeconds} s have passed)`,
      pytorch: torchInfo ? { torch: torchInfo.torch, threads: torchInfo.threads, mkldnn: torchInfo.mkldnn } : null,
      rows: lstmRows,
    },
  };
  const md = [
    '# Recurrent training on the CPU',
    '',
    `${started}; ${cpuModel}, ${os.cpus().length} cores, Node ${process.version}; synthgrad ${threads} threads; command: \`${command}\`. ` +
      `The machine is shared: load average (1 / 5 / 15 min) ${loadStart.join(' / ')} at the start, ${loadEnd.join(' / ')} at the end, on ${os.cpus().length} cores. ` +
      `Each figure is the median of ${a.rounds} interleaved rounds (every round's value is in the JSON).`,
    '',
    `## Time per window (${report.windows.model})`,
    '',
    '| method | streams | ms/window | vs BPTT | separate vs single |',
    '|---|---|---|---|---|',
    ...methodRows.map(
      (r) =>
        `| ${r.method} | ${r.streams} | ${r.ms_per_window.toFixed(3)} | ${r.vs_bptt.toFixed(2)}x | ${r.separate_vs_single !== null ? `${r.separate_vs_single.toFixed(2)}x` : '–'} |`,
    ),
    '',
    '"vs BPTT": the time per window over BPTT\'s (above 1: slower). "separate vs single": single\'s time over separate\'s (above 1: the second stream helps). ' +
      'BPTT has no synthesizer, so nothing runs on a second stream.',
    '',
    `## LSTM forward + backward against PyTorch (${report.lstm.model})`,
    '',
    `PyTorch ${torchInfo?.torch ?? '(not available)'}, nn.LSTM${torchInfo ? `, MKL-DNN ${torchInfo.mkldnn ? 'available' : 'not available'}` : ''} (bench/reference/torch_lstm.py); synthgrad ${threads} thread(s).`,
    '',
    '| T | synthgrad ms | PyTorch setting | PyTorch ms (windows timed per round) | synthgrad speed-up |',
    '|---|---|---|---|---|',
    ...lstmRows.flatMap((r) =>
      r.pytorch.map(
        (p) =>
          `| ${r.steps} | ${r.synthgrad_ms.toFixed(3)} | ${p.setting} | ${p.ms?.toFixed(3) ?? '–'} (${p.iterations.join(', ')}) | ${p.synthgrad_speedup !== null ? `${p.synthgrad_speedup.toFixed(2)}x` : '–'} |`,
      ),
    ),
    '',
    "The first PyTorch row is the comparison at the same thread count. On this shared, overloaded 2-core machine PyTorch's OpenMP threads " +
      'spin while they wait and lose their cores to other processes; OMP_WAIT_POLICY=PASSIVE (they sleep instead) or one thread avoids that, ' +
      'so those rows are the fairer measure of nn.LSTM itself.',
    '',
  ].join('\n');
  writeResults(a.out, report, md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
