// Copy and Repeat Copy with truncated BPTT, DNI and DNI + Aux (Jaderberg et al. 2017, section
// 3.1 and Table 1): for each task, truncation T and method, one trainSequences run of `--budget`
// windows with the curriculum (0.15 bits), then a table of the largest level solved and of the
// level reached at 25/50/75/100% of the budget. One child process per run, up to --jobs at
// once; resumable (see ./runs.ts: finished runs are skipped, interrupted ones resume from their
// checkpoints, and a larger --budget on the same --out continues every run).
//
//   node dist/experiments/recurrent-copy/recurrent_copy.js --budget WINDOWS [--jobs 1]
//        [--tasks copy,repeat-copy] [--truncations 2,3,4,5,8] [--methods bptt,dni,dni-aux]
//        [--hidden 128] [--batch 64] [--lr 1e-3] [--synth-lr 1e-4] [--discount 0.5] [--seed 0] [--checkpoint-every 1000]
//        [--log-every 100] [--out NAME (default budget-WINDOWS)] [--label TEXT] [--mode run|table]
//        [--readme on|off]
// --mode table: only (re)writes the table from the files so far (runs in progress included).
// --readme on: also fills the table section of experiments/recurrent-copy/README.md.
// --label: a line for the results file's header (e.g. "smoke run: shows the driver works, not a result").
// Writes experiments/recurrent-copy/results/NAME.md and NAME.json; each run's progress (JSONL)
// and score (JSON) in results/NAME/.
import * as os from 'os';
import * as fs from 'fs';
import * as path from 'path';
import { native, repeatCopyLevel } from '../../ts';
import type { RecurrentMethod } from '../../ts/recurrent/training';
import { onOff, resultName } from '../../bench/flags';
import { experimentResultsDir, projectRoot } from '../../bench/paths';
import { fillReadme, flags, intFlag, intListFlag, listFlag, readProgress, readScore, runAll, runChild, RunSpec, synthesizerFlags } from './runs';

const EXPERIMENT = 'recurrent-copy';
const TASKS = ['copy', 'repeat-copy'] as const;
type CopyTaskName = (typeof TASKS)[number];
const METHODS: readonly RecurrentMethod[] = ['bptt', 'dni', 'dni-aux'];
const KNOWN = ['--budget', '--jobs', '--tasks', '--truncations', '--methods', '--hidden', '--batch', '--lr', '--synth-lr', '--discount', '--seed', '--checkpoint-every',
  '--log-every', '--out', '--label', '--mode', '--readme'];
const FRACTIONS = [0.25, 0.5, 0.75, 1];

interface Args {
  budget: number;
  jobs: number;
  tasks: CopyTaskName[];
  truncations: number[];
  methods: RecurrentMethod[];
  hidden: number;
  batch: number;
  lr: number;
  synthLr: number;
  discount: number;
  seed: number;
  checkpointEvery: number;
  logEvery: number;
  out: string;
  label?: string;
  mode: 'run' | 'table';
  readme: boolean;
}

function parse(argv: string[]): Args {
  const f = flags(argv, KNOWN);
  if (!f.has('--budget')) throw new Error('--budget WINDOWS is required (the windows each run trains)');
  const budget = intFlag(f, '--budget', 0);
  const lr = Number(f.get('--lr') ?? '1e-3');
  if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`--lr must be a number > 0, got ${f.get('--lr')}`);
  const { synthLr, discount } = synthesizerFlags(f);
  const mode = f.get('--mode') ?? 'run';
  if (mode !== 'run' && mode !== 'table') throw new Error(`--mode must be run or table, got ${mode}`);
  return {
    budget, jobs: intFlag(f, '--jobs', 1), lr, synthLr, discount, mode,
    tasks: listFlag(f, '--tasks', TASKS, TASKS),
    truncations: intListFlag(f, '--truncations', [2, 3, 4, 5, 8]),
    methods: listFlag(f, '--methods', METHODS, METHODS),
    hidden: intFlag(f, '--hidden', 128), batch: intFlag(f, '--batch', 64), seed: intFlag(f, '--seed', 0, 0),
    checkpointEvery: intFlag(f, '--checkpoint-every', 1000), logEvery: intFlag(f, '--log-every', 100),
    out: resultName('--out', f.get('--out') ?? `budget-${budget}`), label: f.get('--label'),
    readme: onOff('--readme', f.get('--readme') ?? 'off'),
  };
}

function specs(a: Args): RunSpec[] {
  const out: RunSpec[] = [];
  for (const task of a.tasks)
    for (const truncation of a.truncations)
      for (const method of a.methods)
        out.push({
          id: `${task}-${method}-T${truncation}`, experiment: EXPERIMENT, name: a.out, checkpointEvery: a.checkpointEvery,
          options: { task, method, truncation, steps: a.budget, hidden: a.hidden, batch: a.batch, lr: a.lr,
          ...(method === 'bptt' ? {} : { synthesizerLr: a.synthLr, synthesizerDiscount: a.discount }), seed: a.seed, logEvery: a.logEvery },
        });
  return out;
}

/** A level as the paper scores it: Copy's N, Repeat Copy's N×R (and the level); '–' for none. */
function levelName(task: CopyTaskName, level: number): string {
  if (level < 0) return '–';
  if (task === 'copy') return String(level + 1);
  const { length, repeats } = repeatCopyLevel(level);
  return `${length}×${repeats}`;
}

interface Cell {
  solved: number;
  curve: (number | undefined)[];
  windows: number;
  seconds?: number;
  done: boolean;
}

/** The largest level solved by each fraction of the budget (undefined: the run has not got there). */
function cell(spec: RunSpec): Cell | undefined {
  const progress = readProgress(spec);
  const score = readScore(spec);
  if (!progress.length && !score) return undefined;
  const reached = progress.length ? progress[progress.length - 1].window : 0;
  const solvedBy = (w: number) => Math.max(-1, ...progress.filter((p) => p.window <= w).map((p) => (p.level ?? 0) - 1));
  const curve = FRACTIONS.map((f) => {
    const w = Math.round(f * spec.options.steps);
    return reached >= w || (score && score.windows >= w) ? solvedBy(w) : undefined;
  });
  const done = score !== undefined && score.windows >= spec.options.steps;
  const solved = score && done ? score.solved!.level : solvedBy(reached);
  return { solved, curve, windows: Math.max(reached, score?.windows ?? 0), seconds: score?.seconds, done };
}

function table(a: Args, all: RunSpec[]): { md: string; json: unknown } {
  const lines: string[] = [];
  const json: Record<string, unknown>[] = [];
  for (const task of a.tasks) {
    const name = task === 'copy' ? 'Copy: largest N solved' : 'Repeat Copy: largest N×R solved';
    lines.push(`### ${name} in ${a.budget} windows`, '',
      `| T | ${a.methods.map((m) => m).join(' | ')} | ${a.methods.map((m) => `${m} at 25/50/75/100%`).join(' | ')} |`,
      `|---|${a.methods.map(() => '---|').join('')}${a.methods.map(() => '---|').join('')}`);
    for (const T of a.truncations) {
      const cells = a.methods.map((method) => {
        const spec = all.find((s) => s.options.task === task && s.options.method === method && s.options.truncation === T)!;
        const c = cell(spec);
        json.push({ task, method, truncation: T, ...(c ?? {}), solvedName: c ? levelName(task, c.solved) : null });
        return c;
      });
      const score = (c: Cell | undefined) => (c === undefined ? 'not run' : `${levelName(task, c.solved)}${c.done ? '' : ` (running, ${c.windows} windows)`}`);
      const curve = (c: Cell | undefined) => (c === undefined ? '' : c.curve.map((l) => (l === undefined ? '·' : levelName(task, l))).join(' / '));
      lines.push(`| ${T} | ${cells.map(score).join(' | ')} | ${cells.map(curve).join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push(`'–': no level solved; '·': the run has not reached that point. Level 0 is N = 1${a.tasks.includes('repeat-copy') ? ' (Repeat Copy: N = R = 1, then N and R grow in turn)' : ''}.`);
  // Time per run.
  const times = all.map((s) => ({ id: s.id, score: readScore(s) })).filter((r) => r.score);
  if (times.length) {
    const perK = times.map((r) => (1000 * r.score!.seconds) / Math.max(1, r.score!.windows - (r.score!.resumedFrom ?? 0)));
    lines.push('', `Seconds per 1000 windows (the last segment of each run, ${a.jobs} job(s) at once): median ${median(perK).toFixed(0)}, range ${Math.min(...perK).toFixed(0)}–${Math.max(...perK).toFixed(0)}.`);
  }
  return { md: lines.join('\n'), json };
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    await runChild(JSON.parse(argv[1]) as RunSpec);
    return;
  }
  const a = parse(argv);
  const all = specs(a);
  const started = new Date().toISOString();
  const loadStart = os.loadavg().map((v) => v.toFixed(1));
  let failed: string[] = [];
  if (a.mode === 'run') failed = await runAll(__filename, all, a.jobs);
  const { md, json } = table(a, all);
  const header = [
    `# Copy and Repeat Copy: truncated BPTT, DNI and DNI + Aux (${a.out})`, '',
    ...(a.label ? [`**${a.label}**`, ''] : []),
    `Command: \`node dist/experiments/recurrent-copy/recurrent_copy.js ${argv.map((x) => (/\s/.test(x) ? JSON.stringify(x) : x)).join(' ')}\`; table written ${new Date().toISOString()} ` +
      `(this invocation started ${started}). Budget ${a.budget} windows per run; LSTM ${a.hidden}, batch ${a.batch}, Adam lr ${a.lr} (core; synthesizer ` +
      `${a.synthLr}), linear synthesizer on [h, c] with discount γ = ${a.discount}, one of 8 symbols per item (softmax), state reset between sequences, curriculum 0.15 bits ` +
      `over the last 10 windows; seed ${a.seed}. Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ` +
      `${native.threads()} synthgrad threads per run, ${a.jobs} run(s) at once; load average ${loadStart.join(' / ')} at the start (shared machine).`,
    ...(failed.length ? ['', `Failed runs (see their .txt logs): ${failed.join(', ')}.`] : []), '',
  ].join('\n');
  const dir = experimentResultsDir(EXPERIMENT);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${a.out}.md`), `${header}\n${md}\n`);
  fs.writeFileSync(path.join(dir, `${a.out}.json`), JSON.stringify({ command: argv, budget: a.budget, cells: json }, null, 2) + '\n');
  if (a.readme) fillReadme(path.join(projectRoot, 'experiments', EXPERIMENT, 'README.md'), `${header.split('\n').slice(2).join('\n')}\n${md}`);
  console.log(`\n${md}\n\nwrote experiments/${EXPERIMENT}/results/${a.out}.md and .json`);
  if (failed.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
