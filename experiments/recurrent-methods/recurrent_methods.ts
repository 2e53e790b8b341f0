// Copy at truncation T: the largest length solved within a fixed budget of windows by truncated
// BPTT, DNI, DNI + Aux, UORO and RTRL, all at the same small LSTM (RTRL's cost grows as H⁴), with
// the time per window of each. Issue 20's recurrent comparison; the question and the results
// are in README.md beside this file.
//
//   node dist/experiments/recurrent-methods/recurrent_methods.js [--budget 10000] [--hidden 8]
//        [--batch 16] [--truncations 3,5] [--methods bptt,dni,dni-aux,uoro,rtrl] [--lr 1e-3]
//        [--seed 0] [--timing-windows 40] [--out NAME (default budget-WINDOWS)] [--mode run|table|timing]
//        [--minutes M] [--reference DIR]
//
// --minutes M: each run stops after M minutes of wall time if its budget is not spent by then
// (its score says `stopped` and the windows it trained), for methods too slow for the budget on
// a shared machine. --reference DIR (relative to experiments/, e.g. recurrent-copy/results/long):
// runs of another experiment at the same core, batch, lr and seed (checked); the table then
// also gives, for every T, the largest N each of them had solved by the window this
// experiment's runs stopped at (their score's `rises`), beside this experiment's runs.
//
// First the time per window of every method and T, measured in turns in this process (so under
// the same load), at the curriculum's first level (timing(), below; --mode timing measures
// again); then one trainSequences run per
// method and T (the curriculum of experiments/recurrent-copy/: the level rises at a mean error
// below 0.15 bits over the last 10 windows), in one process one after another, cheapest first.
// Each run appends its progress to results/NAME/ID.jsonl and writes its score to
// results/NAME/ID.json as it goes; a rerun skips the runs that have a score (no checkpoints:
// RTRL's and UORO's sensitivities are not saved). The table: results/NAME.md.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, CopyTask, LSTMSequenceModel, RecurrentTraining, trainSequences } from '../../ts';
import type { RecurrentMethod } from '../../ts/recurrent/training';
import { resultName } from '../../bench/flags';
import { projectRoot } from '../../bench/paths';
import { flags, intFlag, intListFlag, listFlag } from '../recurrent-copy/runs';

const METHODS: readonly RecurrentMethod[] = ['bptt', 'dni', 'dni-aux', 'uoro', 'rtrl'];
const KNOWN = [
  '--budget',
  '--hidden',
  '--batch',
  '--truncations',
  '--methods',
  '--lr',
  '--seed',
  '--timing-windows',
  '--out',
  '--mode',
  '--minutes',
  '--reference',
];

interface Args {
  budget: number;
  hidden: number;
  batch: number;
  truncations: number[];
  methods: RecurrentMethod[];
  lr: number;
  seed: number;
  timingWindows: number;
  out: string;
  mode: 'run' | 'table' | 'timing';
  minutes?: number;
  reference?: string;
}

function parse(argv: string[]): Args {
  const f = flags(argv, KNOWN);
  const budget = intFlag(f, '--budget', 10000);
  const lr = Number(f.get('--lr') ?? '1e-3');
  if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`--lr must be a number > 0, got ${f.get('--lr')}`);
  const mode = f.get('--mode') ?? 'run';
  if (mode !== 'run' && mode !== 'table' && mode !== 'timing') throw new Error(`--mode must be run, table or timing, got ${mode}`);
  const minutes = f.has('--minutes') ? Number(f.get('--minutes')) : undefined;
  if (minutes !== undefined && !(minutes > 0 && Number.isFinite(minutes)))
    throw new Error(`--minutes must be a number > 0, got ${f.get('--minutes')}`);
  const reference = f.get('--reference');
  if (reference !== undefined && !fs.existsSync(path.join(projectRoot, 'experiments', reference)))
    throw new Error(`--reference: no directory experiments/${reference}`);
  return {
    minutes,
    reference,
    budget,
    hidden: intFlag(f, '--hidden', 8),
    batch: intFlag(f, '--batch', 16),
    truncations: intListFlag(f, '--truncations', [3, 5]),
    methods: listFlag(f, '--methods', METHODS, METHODS),
    lr,
    seed: intFlag(f, '--seed', 0, 0),
    timingWindows: intFlag(f, '--timing-windows', 40),
    out: resultName('--out', f.get('--out') ?? `budget-${budget}`),
    mode,
  };
}

const resultsDir = (a: Args) => path.join(projectRoot, 'experiments', 'recurrent-methods', 'results', a.out);
const runId = (method: RecurrentMethod, truncation: number) => `copy-${method}-T${truncation}`;

/** Warm-up windows before timing (the host methods' loops are compiled by the JIT as they run). */
const WARM_UP = 50;
const ROUNDS = 3;

/**
 * Milliseconds per window of each method and T at the curriculum's first level: every trainer
 * warmed up by WARM_UP windows, then ROUNDS rounds that time `timingWindows` windows of each in
 * turn (so a change of the machine's load falls on all of them); the median round. `force`:
 * measure again even if timing.json exists.
 */
async function timing(a: Args, force = false): Promise<Record<string, number>> {
  const file = path.join(resultsDir(a), 'timing.json');
  if (fs.existsSync(file) && !force) return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, number>;
  const runs = a.truncations.flatMap((truncation) =>
    a.methods.map((method) => {
      const task = new CopyTask(a.batch, { seed: a.seed });
      const model = new LSTMSequenceModel({ inputSymbols: task.inputSymbols, outputs: task.outputSymbols, hidden: a.hidden });
      const trainer = new RecurrentTraining(model, { method, optimizer: () => new Adam({ lr: a.lr }), seed: a.seed });
      return { id: runId(method, truncation), truncation, task, trainer, rounds: [] as number[] };
    }),
  );
  try {
    for (const r of runs) for (let i = 0; i < WARM_UP; i++) await r.trainer.step(r.task.nextWindow(r.truncation));
    for (let round = 0; round < ROUNDS; round++)
      for (const r of runs) {
        const started = process.hrtime.bigint();
        for (let i = 0; i < a.timingWindows; i++) await r.trainer.step(r.task.nextWindow(r.truncation));
        r.rounds.push(Number(process.hrtime.bigint() - started) / 1e6 / a.timingWindows);
      }
  } finally {
    for (const r of runs) r.trainer.dispose();
  }
  const times: Record<string, number> = {};
  for (const r of runs) {
    times[r.id] = [...r.rounds].sort((x, y) => x - y)[Math.floor(ROUNDS / 2)];
    console.log(`timing ${r.id}: ${times[r.id].toFixed(2)} ms/window (rounds ${r.rounds.map((v) => v.toFixed(2)).join(', ')})`);
  }
  fs.writeFileSync(file, JSON.stringify(times, null, 2) + '\n');
  return times;
}

interface Score {
  solved: { level: number; length: number };
  windows: number;
  stopped: boolean;
  seconds: number;
  /** the window each level was first reached in */
  rises: { level: number; window: number }[];
}

async function run(a: Args, method: RecurrentMethod, truncation: number): Promise<void> {
  const id = runId(method, truncation);
  const scoreFile = path.join(resultsDir(a), `${id}.json`);
  if (fs.existsSync(scoreFile)) return;
  const progressFile = path.join(resultsDir(a), `${id}.jsonl`);
  fs.writeFileSync(progressFile, '');
  console.log(`${id}: ${a.budget} windows${a.minutes ? ` or ${a.minutes} minutes` : ''}`);
  const timeUp = new AbortController();
  const timer = a.minutes ? setTimeout(() => timeUp.abort(), a.minutes * 60_000) : undefined;
  const score = await trainSequences({
    task: 'copy',
    method,
    truncation,
    steps: a.budget,
    hidden: a.hidden,
    batch: a.batch,
    lr: a.lr,
    seed: a.seed,
    logEvery: 250,
    onProgress: (p) => fs.appendFileSync(progressFile, JSON.stringify(p) + '\n'),
    signal: timeUp.signal,
  }).finally(() => clearTimeout(timer));
  fs.writeFileSync(scoreFile, JSON.stringify(score, null, 2) + '\n');
  console.log(
    `${id}: largest N solved ${score.solved!.length} (level ${score.solved!.level}) in ${score.windows} windows, ` +
      `${score.seconds.toFixed(0)} s${score.stopped ? ' (stopped by --minutes)' : ''}`,
  );
}

function table(a: Args, times: Record<string, number>): string {
  const lines = [
    `Budget ${a.budget} windows per run; LSTM ${a.hidden} (every method), batch ${a.batch}, Adam lr ${a.lr} ` +
      `(DNI's synthesizer: linear on [h, c], lr 1e-4, discount 0.5), Copy with 8 symbols and the curriculum of ` +
      `experiments/recurrent-copy/ (0.15 bits over the last 10 windows), seed ${a.seed}. Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ` +
      `${os.cpus().length} cores, shared with other work (times are relative, not benchmarks).`,
    '',
    `| T | ${a.methods.join(' | ')} |`,
    `|---|${a.methods.map(() => '---|').join('')}`,
  ];
  for (const T of a.truncations) {
    const cells = a.methods.map((m) => {
      const file = path.join(resultsDir(a), `${runId(m, T)}.json`);
      if (!fs.existsSync(file)) return '·';
      const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Score;
      const reached = s.rises.filter((r) => r.level === s.solved.level + 1)[0];
      const progress = fs
        .readFileSync(path.join(resultsDir(a), `${runId(m, T)}.jsonl`), 'utf8')
        .trim()
        .split('\n');
      const last = JSON.parse(progress[progress.length - 1]) as { bits: number; length: number };
      const solved = s.solved.level < 0 ? '–' : `N ${s.solved.length}`;
      const stopped = s.stopped ? `, stopped at window ${s.windows}` : '';
      return `${solved}${reached ? ` (w ${reached.window})` : ''}; ${last.bits.toFixed(2)} bits at N ${last.length}${stopped}`;
    });
    lines.push(`| ${T} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    '**Time per window (ms)**, first measured in turns in one process at the first level ' +
      `(${WARM_UP} warm-up windows, then the median of ${ROUNDS} rounds of ${a.timingWindows} windows each; the ratio to BPTT's in brackets), ` +
      'then the mean over the whole run (its seconds / windows, the runs one after another under varying load):',
    '',
  );
  const wholeRun = (m: RecurrentMethod, T: number) => {
    const file = path.join(resultsDir(a), `${runId(m, T)}.json`);
    if (!fs.existsSync(file)) return undefined;
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Score;
    return (1000 * s.seconds) / s.windows;
  };
  lines.push(`| T, measured | ${a.methods.join(' | ')} |`, `|---|${a.methods.map(() => '---|').join('')}`);
  for (const [what, ms] of [
    [`timed, median of ${ROUNDS} × ${a.timingWindows}`, (m: RecurrentMethod, T: number) => times[runId(m, T)]],
    ['whole run', wholeRun],
  ] as const)
    for (const T of a.truncations) {
      const bptt = ms('bptt', T);
      const cells = a.methods.map((m) => {
        const t = ms(m, T);
        if (t === undefined) return '·';
        return bptt !== undefined && m !== 'bptt' ? `${t.toFixed(2)} (${(t / bptt).toFixed(1)}×)` : t.toFixed(2);
      });
      lines.push(`| ${T}, ${what} | ${cells.join(' | ')} |`);
    }
  if (a.reference) lines.push('', ...referenceTable(a, times));
  lines.push(
    '',
    'N: the largest Copy length solved; (w W): the window the next level was reached in, i.e. when N was solved; then the mean error ' +
      "(bits per output symbol) over the last 250 windows, at the level then being trained (solved below 0.15); '–': none solved; '·': not run yet.",
  );
  return lines.join('\n') + '\n';
}

/**
 * For every T: the largest N solved by the window this experiment's runs at T stopped at (the
 * fewest, if they differ), by each run of `--reference` at T and by this experiment's runs, with
 * the window it was solved in; and each method's timed ms per window with its ratio to BPTT's.
 */
function referenceTable(a: Args, times: Record<string, number>): string[] {
  const refDir = path.join(projectRoot, 'experiments', a.reference!);
  const ours = (m: RecurrentMethod, T: number) => path.join(resultsDir(a), `${runId(m, T)}.json`);
  const read = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Score & { options?: Record<string, unknown> };
  const refMethods = METHODS.filter(
    (m) => !a.methods.includes(m) && a.truncations.some((T) => fs.existsSync(path.join(refDir, `${runId(m, T)}.json`))),
  );
  const methods = [...refMethods, ...a.methods];
  const lines = [
    `**Beside experiments/${a.reference}/** (${refMethods.join(', ')}; the same core, batch, lr and seed, checked): the largest N solved by ` +
      "window W, the window this experiment's runs stopped at; (w V): the window it was solved in; then the timed ms per window (ratio to BPTT's).",
    '',
    `| T | W | ${methods.join(' | ')} |`,
    `|---|---|${methods.map(() => '---|').join('')}`,
  ];
  for (const T of a.truncations) {
    const ran = a.methods.filter((m) => fs.existsSync(ours(m, T)));
    if (!ran.length) continue;
    const W = Math.min(...ran.map((m) => read(ours(m, T)).windows));
    const cells = methods.map((m) => {
      const file = refMethods.includes(m) ? path.join(refDir, `${runId(m, T)}.json`) : ours(m, T);
      if (!fs.existsSync(file)) return '·';
      const s = read(file);
      if (s.options) {
        const o = s.options;
        if (o.hidden !== a.hidden || o.batch !== a.batch || o.lr !== a.lr || o.seed !== a.seed)
          throw new Error(
            `--reference: ${file} ran hidden ${o.hidden}, batch ${o.batch}, lr ${o.lr}, seed ${o.seed}, not this experiment's`,
          );
      }
      if (s.windows < W) return `ran only ${s.windows} windows`;
      // Reaching level L means level L − 1, whose length is L, was solved.
      const rise = s.rises.filter((r) => r.window <= W).pop();
      const solved = rise ? `N ${rise.level} (w ${rise.window})` : '–';
      const ms = times[runId(m, T)];
      const bptt = times[runId('bptt', T)];
      return `${solved}; ${ms === undefined ? '·' : `${ms.toFixed(1)} ms${m !== 'bptt' && bptt ? ` (${(ms / bptt).toFixed(1)}×)` : ''}`}`;
    });
    lines.push(`| ${T} | ${W} | ${cells.join(' | ')} |`);
  }
  return lines;
}

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2));
  fs.mkdirSync(resultsDir(a), { recursive: true });
  const times =
    a.mode !== 'table'
      ? await timing(a, a.mode === 'timing')
      : (JSON.parse(fs.readFileSync(path.join(resultsDir(a), 'timing.json'), 'utf8')) as Record<string, number>);
  const write = () => fs.writeFileSync(path.join(resultsDir(a), '..', `${a.out}.md`), table(a, times));
  write();
  if (a.mode === 'run')
    for (const method of a.methods)
      for (const truncation of a.truncations) {
        await run(a, method, truncation);
        write();
      }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
