// The DNI paper's MNIST CNNs (issue 18): CNN-3 and CNN-4 × {backprop, DNI, cDNI, and DNI/cDNI with
// the complete unlock (`decouple(..., { unlock: true })`, docs/unlock.md)}, built as
// `npm start -- --model cnn --blocks B --method M` builds them (ts/cli/configure.ts: cnn() and
// decouple() cut after every block's ReLU), except that the synthesizers' filter count is a
// parameter here (--synth-filters; the paper's and the CLI's: 128). Default optimiser: the
// paper's (Adam, lr 3e-5, constant) and batch 256; the iteration count is a parameter. --synth-lr
// gives the synthesizers (and the unlock's input models) their own Adam lr (default: --lr).
// One run after another in one process; each run's result is appended to results/NAME.jsonl as
// it finishes, and results/NAME.md is rewritten after every run. --eval-every N also measures
// the test error every N steps (results/NAME-curve.jsonl); --minutes M stops each run after M
// minutes of training (fit's signal) and reports it at the step it reached.
//
//   node dist/experiments/mnist-cnn/mnist_cnn.js [--steps 500] [--filters 128] [--synth-filters 128] [--blocks 3,4]
//       [--methods backprop,dni,cdni,dni-unlock,cdni-unlock] [--lr 3e-5] [--synth-lr LR] [--batch-size 256]
//       [--test-rows 10000] [--eval-every N] [--minutes M] [--out NAME]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, Trainer, cnn, datasets, decouple, native } from '../../ts';
import { experimentResultsDir } from '../../bench/paths';

const resultsDir = experimentResultsDir('mnist-cnn');

const methods = ['backprop', 'dni', 'cdni', 'dni-unlock', 'cdni-unlock'];

interface Args {
  steps: number;
  filters: number;
  synthFilters: number;
  blocks: number[];
  methods: string[];
  lr: number;
  synthLr: number | undefined;
  batchSize: number;
  testRows: number;
  evalEvery: number;
  minutes: number;
  out: string;
}

interface CurvePoint {
  model: string;
  method: string;
  step: number;
  testError: number;
}

interface Row {
  model: string;
  method: string;
  steps: number;
  testError: number;
  trainLoss: number;
  msPerStep: number;
}

function parse(argv: string[]): Args {
  const a: Args = {
    steps: 500,
    filters: 128,
    synthFilters: 128,
    blocks: [3, 4],
    methods: ['backprop', 'dni', 'cdni'],
    lr: 3e-5,
    synthLr: undefined,
    batchSize: 256,
    testRows: 10000,
    evalEvery: 0,
    minutes: Infinity,
    out: '',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1] ?? ''];
    if (k === '--steps') a.steps = Number(v);
    else if (k === '--filters') a.filters = Number(v);
    else if (k === '--synth-filters') a.synthFilters = Number(v);
    else if (k === '--blocks') a.blocks = v.split(',').map(Number);
    else if (k === '--methods') a.methods = v.split(',');
    else if (k === '--lr') a.lr = Number(v);
    else if (k === '--synth-lr') a.synthLr = Number(v);
    else if (k === '--batch-size') a.batchSize = Number(v);
    else if (k === '--test-rows') a.testRows = Number(v);
    else if (k === '--eval-every') a.evalEvery = Number(v);
    else if (k === '--minutes') a.minutes = Number(v);
    else if (k === '--out') a.out = v;
    else
      throw new Error(
        `unknown option ${k} (known: --steps, --filters, --synth-filters, --blocks, --methods, --lr, --synth-lr, --batch-size, --test-rows, --eval-every, --minutes, --out)`,
      );
  }
  for (const [k, v] of [
    ['--steps', a.steps],
    ['--filters', a.filters],
    ['--synth-filters', a.synthFilters],
    ['--batch-size', a.batchSize],
    ['--test-rows', a.testRows],
    ...a.blocks.map((b) => ['--blocks', b] as const),
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a whole number >= 1, got ${v}`);
  if (!Number.isInteger(a.evalEvery) || a.evalEvery < 0) throw new Error(`--eval-every must be a whole number >= 0, got ${a.evalEvery}`);
  if (!(a.minutes > 0)) throw new Error(`--minutes must be > 0, got ${a.minutes}`);
  if (!(a.lr > 0)) throw new Error(`--lr must be > 0, got ${a.lr}`);
  if (a.synthLr !== undefined && !(a.synthLr > 0)) throw new Error(`--synth-lr must be > 0, got ${a.synthLr}`);
  const unknown = a.methods.find((m) => !methods.includes(m));
  if (unknown !== undefined) throw new Error(`--methods: '${unknown}' is not one of ${methods.join(', ')}`);
  a.out ||= `mnist-cnn-${a.steps}-f${a.filters}-s${a.synthFilters}`;
  return a;
}

function table(a: Args, rows: Row[], machine: string): string {
  return [
    `# MNIST CNNs: ${a.methods.join(', ')} at ${a.steps} steps`,
    '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/experiments/mnist-cnn/mnist_cnn.js ${process.argv.slice(2).join(' ')}\`.`,
    '',
    `Each model as \`npm start -- --model cnn --filters ${a.filters} --blocks B --method M\` builds it (but the synthesizers' filters): B blocks of ${a.filters} 5x5 ` +
      'filters (size-preserving), BatchNorm2d, ReLU, a 3x3 stride-2 max pool after the first block and average pools after the ' +
      `others, a linear classifier; DNI/cDNI cut after every block’s ReLU, synthesizers two 5x5 conv layers of ${a.synthFilters} filters ` +
      '(BatchNorm2d, ReLU) and a zero-initialised 5x5 conv (cDNI: + 10 one-hot label maps as input channels); ' +
      '-unlock: the complete unlock with the default convolutional input models (docs/unlock.md). ' +
      `Adam lr ${a.lr} (constant)${a.synthLr === undefined ? '' : `, synthesizers and input models Adam lr ${a.synthLr}`}, batch ${a.batchSize}, seed 0; test error on the first ${a.testRows} MNIST test images. ` +
      'ms/step: fit’s wall time over all steps on a shared machine (not a benchmark), less the --eval-every evaluations. ' +
      `A run with fewer than ${a.steps} steps was stopped by --minutes ${a.minutes}.`,
    '',
    '| model | method | steps | test error | training loss (mean of the last 100 steps) | ms/step |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.method} | ${r.steps} | ${r.testError.toFixed(2)}% | ${r.trainLoss.toFixed(4)} | ${r.msPerStep.toFixed(0)} |`,
    ),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2));
  const device = Device.best();
  const { train, test: fullTest } = await datasets.mnist(); // rows shaped [1, 28, 28] by the loader;
  const test = a.testRows < fullTest.count ? fullTest.head(a.testRows) : fullTest;
  fs.mkdirSync(resultsDir, { recursive: true });
  const jsonl = path.join(resultsDir, `${a.out}.jsonl`);
  const curve = path.join(resultsDir, `${a.out}-curve.jsonl`);
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, device ${device.name}, ${native.threads()} threads`;
  const rows: Row[] = [];
  for (const blocks of a.blocks)
    for (const method of a.methods) {
      const model = cnn({ channels: 1, height: 28, width: 28, classes: 10, filters: a.filters, blocks });
      const synthLr = a.synthLr;
      const synthOptimizer = synthLr === undefined ? undefined : () => new Adam({ lr: synthLr });
      const net =
        method === 'backprop'
          ? model
          : decouple(model, {
              input: [1, 28, 28],
              synthesizer: { conditioned: method.startsWith('cdni'), filters: [a.synthFilters, a.synthFilters], optimizer: synthOptimizer },
              ...(method.endsWith('-unlock') ? { unlock: { optimizer: synthOptimizer } } : {}),
            });
      const trainer = new Trainer(net, { device, optimizer: () => new Adam({ lr: a.lr }), seed: 0 });
      const losses: number[] = []; // the last 100 steps' (or all, in a shorter run)
      let evalSeconds = 0; // taken out of the step time
      const stop = new AbortController();
      const timer = Number.isFinite(a.minutes) ? setTimeout(() => stop.abort(), a.minutes * 60000) : undefined;
      const result = await trainer.fit(train, {
        steps: a.steps,
        epochs: 100000,
        batchSize: a.batchSize,
        signal: stop.signal,
        onStep: async (m) => {
          losses.push(m.loss);
          if (losses.length > 100) losses.shift();
          if (a.evalEvery > 0 && m.step % a.evalEvery === 0 && m.step < a.steps) {
            const started = Date.now();
            const point: CurvePoint = {
              model: `CNN-${blocks}`,
              method,
              step: m.step,
              testError: 100 * (1 - (await trainer.evaluate(test)).accuracy!),
            };
            evalSeconds += (Date.now() - started) / 1000;
            fs.appendFileSync(curve, `${JSON.stringify(point)}\n`);
            console.log(`${point.model} ${method} step ${m.step}: test error ${point.testError.toFixed(2)}%, loss ${m.loss.toFixed(4)}`);
          }
        },
      });
      clearTimeout(timer);
      const accuracy = (await trainer.evaluate(test)).accuracy!;
      trainer.dispose();
      const row: Row = {
        model: `CNN-${blocks}`,
        method,
        steps: result.steps,
        testError: 100 * (1 - accuracy),
        trainLoss: losses.reduce((x, y) => x + y, 0) / losses.length,
        msPerStep: (1000 * (result.seconds - evalSeconds)) / result.steps,
      };
      rows.push(row);
      fs.appendFileSync(jsonl, `${JSON.stringify(row)}\n`);
      fs.writeFileSync(path.join(resultsDir, `${a.out}.md`), table(a, rows, machine));
      console.log(`${row.model} ${method}: test error ${row.testError.toFixed(2)}%, ${row.msPerStep.toFixed(0)} ms/step`);
    }
}

main().catch((e) => {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});
