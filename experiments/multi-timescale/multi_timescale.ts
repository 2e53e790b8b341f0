// Two recurrent cores on two timescales (ts/recurrent/multiscale.ts) on the two-timescale count
// task (ts/data/multiscale.ts): for each method (bptt, dni, none) one run of --budget windows,
// one after another in this process, each evaluated at 25/50/75/100% of the budget on a fixed
// held-out stream; then a table of B's and A's bits and accuracy at those points.
//
//   node dist/experiments/multi-timescale/multi_timescale.js [--budget 3000] [--methods bptt,dni,none]
//        [--hidden 32] [--slow-hidden 32] [--batch 32] [--truncation 8] [--period 4] [--blocks 2]
//        [--fast-span 2] [--lr 0.003] [--seed 0] [--eval-windows 25] [--threads 1] [--out NAME] [--readme off]
// --out: the results' base name (default budget-WINDOWS); --readme on: also fills the table
// section of experiments/multi-timescale/README.md.
// Writes experiments/multi-timescale/results/NAME.md and NAME.json.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, LSTMSequenceModel, MultiTimescaleCountTask, MultiTimescaleTraining, threads } from '../../ts';
import type { MultiTimescaleEvaluation, MultiTimescaleMethod } from '../../ts';
import { benchFlags, numberFlag, onOff, resultName } from '../../bench/flags';
import { experimentResultsDir, projectRoot } from '../../bench/paths';

const EXPERIMENT = 'multi-timescale';
const METHODS: readonly MultiTimescaleMethod[] = ['bptt', 'dni', 'none'];
const FRACTIONS = [0.25, 0.5, 0.75, 1];

const DEFAULTS = {
  budget: '3000',
  methods: METHODS.join(','),
  hidden: '32',
  'slow-hidden': '32',
  batch: '32',
  truncation: '8',
  period: '4',
  blocks: '2',
  'fast-span': '2',
  lr: '0.003',
  seed: '0',
  'eval-windows': '25',
  threads: '1',
  out: '',
  readme: 'off',
};

interface Point extends MultiTimescaleEvaluation {
  window: number;
  seconds: number;
}

function int(flag: string, v: string, min = 1): number {
  const n = numberFlag(`--${flag}`, v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const f = benchFlags(process.argv.slice(2), DEFAULTS);
  const budget = int('budget', f.budget, 4);
  const methods = f.methods.split(',').filter((m) => m !== '') as MultiTimescaleMethod[];
  for (const m of methods) if (!METHODS.includes(m)) throw new Error(`--methods: ${m} is not one of ${METHODS.join(', ')}`);
  const hidden = int('hidden', f.hidden);
  const slowHidden = int('slow-hidden', f['slow-hidden']);
  const batch = int('batch', f.batch);
  const truncation = int('truncation', f.truncation);
  const period = int('period', f.period);
  const blocks = int('blocks', f.blocks);
  const fastSpan = int('fast-span', f['fast-span']);
  const lr = numberFlag('--lr', f.lr);
  if (!(lr > 0)) throw new Error(`--lr must be > 0, got ${f.lr}`);
  const seed = int('seed', f.seed, 0);
  const evalWindows = int('eval-windows', f['eval-windows']);
  const out = resultName('--out', f.out || `budget-${budget}`);
  const readme = onOff('--readme', f.readme);
  threads(int('threads', f.threads)); // the machine is shared: one op thread unless asked
  const taskOptions = { batch, period, blocks, fastSpan };
  const checkpoints = FRACTIONS.map((x) => Math.round(x * budget));

  const results: Record<string, Point[]> = {};
  for (const method of methods) {
    const task = new MultiTimescaleCountTask({ ...taskOptions, seed });
    const model = new LSTMSequenceModel({ inputSymbols: task.inputSymbols, outputs: task.outputSymbols, hidden });
    const tr = new MultiTimescaleTraining(model, {
      method,
      period,
      slow: { hidden: slowHidden, outputs: task.slowSymbols },
      optimizer: () => new Adam({ lr }),
      seed,
    });
    const start = Date.now();
    const points: Point[] = [];
    for (let w = 1; w <= budget; w++) {
      await tr.step(task.nextWindow(truncation));
      if (checkpoints.includes(w)) {
        const held = new MultiTimescaleCountTask({ ...taskOptions, seed: seed + 1_000_000 }); // the same held-out stream every time
        let n = 0;
        const e = await tr.evaluate(() => (n++ < evalWindows ? held.nextWindow(truncation) : undefined));
        const p = { window: w, seconds: (Date.now() - start) / 1000, ...e };
        points.push(p);
        console.log(
          `${method} ${w}: B ${p.slowBits.toFixed(3)} bits ${(100 * p.slowAccuracy).toFixed(1)}%, A ${p.fastBits.toFixed(3)} bits ${(100 * p.fastAccuracy).toFixed(1)}% (${p.seconds.toFixed(1)} s)`,
        );
      }
    }
    results[method] = points;
    tr.dispose();
  }

  const spanBits = period * blocks;
  const entropy = binomialEntropy(spanBits);
  const lines = [
    `Two-timescale count: A's target the parity of the last ${fastSpan} bits; B ticks every ${period} steps, its target the count of ones in the last ${spanBits} bits (${spanBits + 1} classes; chance ${entropy.toFixed(3)} bits, ${(100 * binomialMode(spanBits)).toFixed(1)}% by guessing the mode).`,
    `LSTM A ${hidden}, B ${slowHidden}, batch ${batch}, T = ${truncation}, Adam lr ${lr}, seed ${seed}, budget ${budget} windows; held-out: ${evalWindows} windows of ${truncation} steps from zero states.`,
    '',
    `| method | ${FRACTIONS.map((x) => `B bits / acc @${100 * x}%`).join(' | ')} | ${FRACTIONS.map((x) => `A bits / acc @${100 * x}%`).join(' | ')} | seconds |`,
    `|---|${FRACTIONS.map(() => '---:').join('|')}|${FRACTIONS.map(() => '---:').join('|')}|---:|`,
    ...methods.map((m) => {
      const ps = results[m];
      const cell = (bits: number, acc: number) => `${bits.toFixed(3)} / ${(100 * acc).toFixed(1)}%`;
      return `| ${m} | ${ps.map((p) => cell(p.slowBits, p.slowAccuracy)).join(' | ')} | ${ps.map((p) => cell(p.fastBits, p.fastAccuracy)).join(' | ')} | ${ps[ps.length - 1].seconds.toFixed(0)} |`;
    }),
  ];
  const table = lines.join('\n');
  console.log(table);
  const dir = experimentResultsDir(EXPERIMENT);
  fs.mkdirSync(dir, { recursive: true });
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${threads()} op threads, node ${process.version}`;
  const command = `node dist/experiments/multi-timescale/multi_timescale.js ${process.argv.slice(2).join(' ')}`.trim();
  fs.writeFileSync(path.join(dir, `${out}.md`), `# ${out}\n\nCommand: \`${command}\`\n\nMachine: ${machine}\n\n${table}\n`);
  fs.writeFileSync(
    path.join(dir, `${out}.json`),
    JSON.stringify(
      { command, machine, budget, hidden, slowHidden, batch, truncation, period, blocks, fastSpan, lr, seed, evalWindows, results },
      null,
      1,
    ),
  );
  if (readme) {
    const file = path.join(projectRoot, 'experiments', EXPERIMENT, 'README.md');
    const text = fs.readFileSync(file, 'utf8');
    const a = text.indexOf('<!-- table:start -->');
    const b = text.indexOf('<!-- table:end -->');
    if (a < 0 || b < a) throw new Error(`${file} has no <!-- table:start --> ... <!-- table:end --> section`);
    fs.writeFileSync(file, `${text.slice(0, a + '<!-- table:start -->'.length)}\n${table}\n${text.slice(b)}`);
  }
}

/** The entropy in bits of the number of ones among n fair bits. */
function binomialEntropy(n: number): number {
  let h = 0;
  for (let k = 0; k <= n; k++) {
    const p = choose(n, k) / 2 ** n;
    h -= p * Math.log2(p);
  }
  return h;
}

/** The probability of the most likely count of ones among n fair bits. */
function binomialMode(n: number): number {
  return choose(n, Math.floor(n / 2)) / 2 ** n;
}

function choose(n: number, k: number): number {
  let c = 1;
  for (let i = 0; i < k; i++) c = (c * (n - i)) / (i + 1);
  return c;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
