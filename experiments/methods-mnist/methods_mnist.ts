// The methods DNI is compared with (issue 20), side by side at a small fixed budget, in one
// process: test error on MNIST of backprop, DNI, cDNI, feedback alignment (FA) and direct
// feedback alignment (DFA), each built exactly as `npm start -- --method M` builds it (ts/cli/
// configure.ts: 784-256-256-256-10, BatchNorm + ReLU, Adam lr 1e-3, batch 256, seed 0), and the
// time per step of each against backprop's in the same run. Kickback is defined for scalar
// regression only (docs/methods/kickback.md), so it cannot run on MNIST; a second table runs it,
// with backprop, FA and DFA, on its own class: a rectifier network regressing a fixed random
// rectifier "teacher" network's scalar output.
// Writes experiments/methods-mnist/results/NAME.md and .json.
//
// Difference target propagation (dtp) and REINFORCE run on their own networks (a Tanh stack, a
// Sigmoid stack of Bernoulli units), again as `npm start` builds them.
// --methods picks the MNIST methods (default all; METHOD@WIDTHS runs it with --hidden WIDTHS, e.g.
// reinforce@256); --regression-steps 0 skips the second table.
//
//   node dist/experiments/methods-mnist/methods_mnist.js [--steps 300] [--regression-steps 2000] [--methods a,b] [--out NAME]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Linear, ReLU, Random, Sequential, Trainer, datasets, feedbackAlignment, kickback, native } from '../../ts';
import type { Module } from '../../ts';
import { configure } from '../../ts/cli/configure';
import { parseArgs } from '../../ts/cli/options';
import { experimentResultsDir } from '../../bench/paths';

const resultsDir = experimentResultsDir('methods-mnist');

/** What each method leaves locked (docs/methods/feedback-alignment.md, "Which locks they remove"). */
const LOCKS: Record<string, string> = {
  backprop: 'none removed',
  dni: 'update and backward',
  cdni: 'update and backward',
  fa: 'none removed (no weight transport)',
  dfa: 'backward (between layers)',
  kickback: 'backward (between layers)',
  dtp: 'none removed (no weight transport; targets still pass down layer by layer)',
  reinforce: 'backward (between layers: each layer needs only the per-example loss)',
  coagent: 'backward (between layers: each coagent needs only the per-example TD error)',
};

/** How each MNIST method's network is built (ts/cli/configure.ts). */
const NETWORK: Record<string, string> = {
  dtp: '784-256-256-256-10 Linear → Tanh, inverses Linear → Tanh, η̂ 0.5, σ 0.1',
  reinforce: '784-256-256-256-10 Linear → Sigmoid, Bernoulli units, baseline decay 0.9',
  coagent: '784-256-256-256-10 Linear → Sigmoid, Bernoulli-unit coagents, linear critic of the input',
};
const MNIST_METHODS = ['backprop', 'dni', 'cdni', 'fa', 'dfa', 'dtp', 'reinforce', 'coagent'];

interface Row {
  method: string;
  /** MNIST: test error in %, regression: test mean squared error */
  score: number;
  msPerStep: number;
  steps: number;
}

function parse(argv: string[]) {
  const a = { steps: 300, regressionSteps: 2000, methods: MNIST_METHODS, out: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === '--steps') a.steps = Number(v);
    else if (k === '--regression-steps') a.regressionSteps = Number(v);
    else if (k === '--out') a.out = v;
    else if (k === '--methods') a.methods = (v ?? '').split(',');
    else throw new Error(`unknown option ${k} (known: --steps, --regression-steps, --methods, --out)`);
  }
  for (const [k, v] of [
    ['--steps', a.steps],
    ['--regression-steps', a.regressionSteps],
  ] as const)
    if (!Number.isInteger(v) || v < (k === '--steps' ? 1 : 0))
      throw new Error(`${k} must be a whole number >= ${k === '--steps' ? 1 : 0}, got ${v}`);
  const unknown = a.methods.find((m) => !MNIST_METHODS.includes(m.split('@')[0]));
  if (unknown !== undefined) throw new Error(`--methods: '${unknown}' is not one of ${MNIST_METHODS.join(', ')}`);
  a.out ||= `methods-mnist-${a.steps}`;
  return a;
}

/** Trains `model` for `steps` steps and returns its ms per step (fit's wall time, all steps). */
async function timedFit(trainer: Trainer, data: Dataset, steps: number, batchSize: number): Promise<number> {
  const result = await trainer.fit(data, { steps, epochs: 1000, batchSize });
  return (1000 * result.seconds) / result.steps;
}

/** The regression task: y = teacher(x), the teacher a fixed random 8-32-32-1 ReLU network (float64). */
function teacherData(rows: number, rng: Random, teacher: Float64Array[]): Dataset {
  const [W1, W2, W3] = teacher;
  const x = rng.uniformArray(rows * 8, -1, 1);
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const h1 = Array.from({ length: 32 }, (_, j) =>
      Math.max(
        0,
        x.slice(r * 8, r * 8 + 8).reduce((s, v, i) => s + v * W1[j * 8 + i], 0),
      ),
    );
    const h2 = Array.from({ length: 32 }, (_, j) =>
      Math.max(
        0,
        h1.reduce((s, v, i) => s + v * W2[j * 32 + i], 0),
      ),
    );
    y[r] = h2.reduce((s, v, i) => s + v * W3[i], 0);
  }
  return new Dataset('teacher', x, y, 8, 1);
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const device = Device.best();
  const { train, test } = await datasets.mnist();

  // MNIST, as `npm start` builds each method; the synthesizer diagnostics are off (they would be timed).
  const mnistRows: Row[] = [];
  for (const method of args.methods) {
    const [name, hidden] = method.split('@');
    const flags = ['--method', name, '--steps', String(args.steps), '--device', device.name, ...(hidden ? ['--hidden', hidden] : [])];
    const c = configure(parseArgs(flags), train.count);
    const trainer = new Trainer(c.model, c.trainer);
    const msPerStep = await timedFit(trainer, train, args.steps, c.fit.batchSize!);
    const accuracy = (await trainer.evaluate(test)).accuracy!;
    trainer.dispose();
    const row = { method, score: 100 * (1 - accuracy), msPerStep, steps: args.steps };
    console.log(`MNIST ${method}: test error ${row.score.toFixed(2)}%, ${msPerStep.toFixed(2)} ms/step`);
    mnistRows.push(row);
  }

  // Kickback's class: scalar regression with a rectifier network, no BatchNorm.
  const rng = new Random(0);
  const teacher = [32 * 8, 32 * 32, 32].map((n, i) => {
    const bound = Math.sqrt(6 / [8, 32, 32][i]); // He-uniform: the teacher's units stay active
    return Float64Array.from(rng.uniformArray(n, -bound, bound));
  });
  const regTrain = teacherData(4000, rng, teacher);
  const regTest = teacherData(1000, rng, teacher);
  const mean = regTest.values.reduce((s, v) => s + v, 0) / regTest.count;
  const variance = regTest.values.reduce((s, v) => s + (v - mean) ** 2, 0) / regTest.count;
  const student = () => new Sequential([new Linear(8, 64), new ReLU(), new Linear(64, 64), new ReLU(), new Linear(64, 1)]);
  const regressionRows: Row[] = [];
  for (const method of args.regressionSteps > 0 ? ['backprop', 'fa', 'dfa', 'kickback'] : []) {
    const model: Module =
      method === 'kickback'
        ? kickback(student())
        : method === 'backprop'
          ? student()
          : feedbackAlignment(student(), { direct: method === 'dfa' });
    const trainer = new Trainer(model, { device, optimizer: () => new Adam({ lr: 1e-3 }), loss: 'mse', seed: 0 });
    const msPerStep = await timedFit(trainer, regTrain, args.regressionSteps, 64);
    const mse = (await trainer.evaluate(regTest)).loss;
    trainer.dispose();
    console.log(
      `regression ${method}: test mse ${mse.toPrecision(4)} (target variance ${variance.toPrecision(4)}), ${msPerStep.toFixed(2)} ms/step`,
    );
    regressionRows.push({ method, score: mse, msPerStep, steps: args.regressionSteps });
  }

  const load = os
    .loadavg()
    .map((v) => v.toFixed(1))
    .join(', ');
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, device ${device.name} (${device.describe()}), ${native.threads()} threads`;
  const ratio = (rows: Row[], r: Row) => (r.msPerStep / (rows.find((b) => b.method === 'backprop')?.msPerStep ?? NaN)).toFixed(2);
  const md: string[] = [
    '# The methods DNI is compared with: MNIST at a small budget',
    '',
    `${new Date().toISOString()}; ${machine}; load average at the end ${load}; ` +
      `command: \`node dist/experiments/methods-mnist/methods_mnist.js ${process.argv.slice(2).join(' ')}\`.`,
    '',
    `## MNIST: ${args.steps} steps`,
    '',
    'Each method as `npm start -- --method M --steps ' +
      args.steps +
      '` builds it: 784-256-256-256-10 (Linear → BatchNorm → ReLU), ' +
      'Adam lr 1e-3 (the decay steps lie beyond this budget), batch 256, seed 0; DNI synthesizers 2 × 1024 hidden, cDNI linear on [h, onehot(y)]. ' +
      'One run each; time per step is fit’s wall time over all steps, in this one process, and ×backprop divides it by backprop’s. ' +
      'Kickback: not run (defined for scalar regression; see the next table).',
    '',
    '| method | test error | ms/step | × backprop | locks removed |',
    '|---|---|---|---|---|',
    ...mnistRows.map(
      (r) =>
        `| ${r.method} | ${r.score.toFixed(2)}% | ${r.msPerStep.toFixed(2)} | ${ratio(mnistRows, r)} | ${LOCKS[r.method.split('@')[0]]} |`,
    ),
    '| kickback | – (refused: 10 classes, no scalar error) | – | – | ' + LOCKS.kickback + ' |',
    '',
    ...mnistRows
      .filter((r) => NETWORK[r.method.split('@')[0]])
      .map((r) => {
        const [name, hidden] = r.method.split('@');
        const net = hidden ? NETWORK[name].replace('256-256-256', hidden.split(',').join('-')) : NETWORK[name];
        return `${r.method}: ${net} (no BatchNorm), Adam lr 1e-3, batch 256, seed 0.`;
      }),
    '',
    ...(args.regressionSteps > 0 ? [] : ['Regression table: not run in this invocation (--regression-steps 0).', '']),
  ];
  if (args.regressionSteps > 0)
    md.push(
      `## Kickback's class: scalar regression, ${args.regressionSteps} steps`,
      '',
      'Student 8-64-64-1 (Linear → ReLU, no BatchNorm), mean squared error, Adam lr 1e-3, batch 64, seed 0; data: 4,000 training and 1,000 test rows, ' +
        `x ~ U(-1, 1)^8, y = a fixed random 8-32-32-1 ReLU teacher network's output. Predicting the mean scores the targets' variance, **${variance.toPrecision(4)}**.`,
      '',
      '| method | test mse | ms/step | × backprop |',
      '|---|---|---|---|',
      ...regressionRows.map((r) => `| ${r.method} | ${r.score.toPrecision(4)} | ${r.msPerStep.toFixed(3)} | ${ratio(regressionRows, r)} |`),
      '',
    );
  const text = md.join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${args.out}.md`), text);
  fs.writeFileSync(
    path.join(resultsDir, `${args.out}.json`),
    JSON.stringify(
      { date: new Date().toISOString(), machine, load, args, mnist: mnistRows, regression: { variance, rows: regressionRows } },
      null,
      2,
    ) + '\n',
  );
  console.log(`\n${text}\nwrote experiments/methods-mnist/results/${args.out}.md and .json`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
