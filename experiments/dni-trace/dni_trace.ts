// Traces how well DNI's synthesizers work during one MNIST FCN run: every N steps, per module,
// the cosine similarity of ĝ to the true backpropagated gradient and to its own (bootstrapped)
// target, and the norm ratio |ĝ|/|g|, on a training probe batch; the training loss; at the end
// the test error.
// A tool for finding what limits DNI with depth; it writes nothing unless --out is given (then
// experiments/dni-trace/results/NAME.md).
//
//   node dist/experiments/dni-trace/dni_trace.js [--depth 5] [--method dni|cdni] [--steps 3000] [--every 500]
//        [--lr 3e-5] [--synth-lr 1e-3] [--synth-hidden 1024,1024] [--center on|off] [--mask-inactive on|off]
//        [--optimizer adam|sgd] [--synth-loss-weight 1] [--synth-updates 1] [--freeze-model-after N] [--freeze-modules K]
//        [--seed 0] [--out NAME]
// --center on: the synthesizers centre ĝ over the batch where the next module starts with
// Linear → BatchNorm (decouple's `center`); default off. --mask-inactive on: they regress only
// on units with h > 0 (decouple's `maskInactive`); default off. Cosines and norms are taken over
// the units that reach the module's parameters (h > 0), with or without it.
// --freeze-model-after N: from step N the model's learning rate is 0 while the synthesizers go
// on learning; shows how well they track a model that stands still. --optimizer sgd: the model
// uses SGD with momentum 0.9 at --lr instead of Adam (the synthesizers keep Adam at --synth-lr).
// --freeze-modules K: the first K modules keep their initial weights throughout (learning rate 0),
// a yardstick for how much the lower modules' DNI updates add over random features.
// --synth-updates K: each synthesizer takes K optimizer steps per target (`updatesPerTarget`).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, Trainer, datasets, decouple, mlp, native } from '../../ts';
import { OptimizerKind, modelOptimizer, onOff, optimizerKind, optimizerName } from '../../bench/flags';
import { experimentResultsDir } from '../../bench/paths';

const resultsDir = experimentResultsDir('dni-trace');

interface Args {
  depth: number;
  method: 'dni' | 'cdni';
  steps: number;
  every: number;
  lr: number;
  synthLr?: number;
  synthHidden?: number[];
  center?: boolean;
  maskInactive?: boolean;
  synthLossWeight?: number;
  synthUpdates?: number;
  freezeModelAfter?: number;
  frozenModules: number;
  optimizer: OptimizerKind;
  seed: number;
  out?: string;
}

function parse(argv: string[]): Args {
  const a: Args = { depth: 5, method: 'dni', steps: 3000, every: 500, lr: 3e-5, frozenModules: 0, optimizer: 'adam', seed: 0 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--depth') a.depth = Number(v);
    else if (k === '--method') a.method = v as Args['method'];
    else if (k === '--steps') a.steps = Number(v);
    else if (k === '--every') a.every = Number(v);
    else if (k === '--lr') a.lr = Number(v);
    else if (k === '--synth-lr') a.synthLr = Number(v);
    else if (k === '--synth-hidden') a.synthHidden = v === '' ? [] : v.split(',').map(Number);
    else if (k === '--center') a.center = onOff(k, v);
    else if (k === '--mask-inactive') a.maskInactive = onOff(k, v);
    else if (k === '--synth-loss-weight') a.synthLossWeight = Number(v);
    else if (k === '--synth-updates') a.synthUpdates = Number(v);
    else if (k === '--optimizer') a.optimizer = optimizerKind(k, v);
    else if (k === '--freeze-model-after') a.freezeModelAfter = Number(v);
    else if (k === '--freeze-modules') a.frozenModules = Number(v);
    else if (k === '--seed') a.seed = Number(v);
    else if (k === '--out') a.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (a.method !== 'dni' && a.method !== 'cdni') throw new Error(`--method must be dni or cdni, got ${a.method}`);
  if (!Number.isInteger(a.frozenModules) || a.frozenModules < 0 || a.frozenModules > a.depth) {
    throw new Error(`--freeze-modules must be an integer in [0, ${a.depth}], got ${a.frozenModules}`);
  }
  if (a.optimizer === 'sgd' && a.synthLr === undefined) throw new Error('--optimizer sgd needs --synth-lr (the synthesizers keep Adam)');
  return a;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const { train, test } = await datasets.mnist();
  const device = Device.best();
  const conditioned = args.method === 'cdni';
  const lr = (step: number) => (step < (args.freezeModelAfter ?? Infinity) ? args.lr : 0);
  const net = decouple(mlp(784, new Array(args.depth).fill(256), 10), {
    synthesizer: {
      conditioned,
      hidden: args.synthHidden ?? (conditioned ? [] : [1024, 1024]),
      center: args.center,
      maskInactive: args.maskInactive,
      lossWeight: args.synthLossWeight,
      updatesPerTarget: args.synthUpdates,
      // The synthesizers never freeze: without --synth-lr they get the model's optimizer at --lr.
      optimizer: () => (args.synthLr === undefined ? modelOptimizer(args.optimizer, args.lr) : new Adam({ lr: args.synthLr })),
    },
  });
  const optimizer = (module: number) => modelOptimizer(args.optimizer, module < args.frozenModules ? () => 0 : lr);
  const trainer = new Trainer(net, { device, optimizer, seed: args.seed });
  const lines: string[] = [];
  const say = (s: string) => { console.log(s); lines.push(s); };
  say(`# DNI trace: ${args.depth} hidden layers, ${args.method}, ${optimizerName(args.optimizer)} lr ${args.lr}, synthesizer lr ${args.synthLr ?? args.lr}` +
    `${args.freezeModelAfter === undefined ? '' : `, model frozen from step ${args.freezeModelAfter}`}${args.frozenModules ? `, modules 1–${args.frozenModules} frozen at their initial weights` : ''}, synthesizer loss weight ${args.synthLossWeight ?? 1}${args.synthUpdates ? `, ${args.synthUpdates} synthesizer updates per target` : ''}, synthesizer hidden ${JSON.stringify(args.synthHidden ?? (conditioned ? [] : [1024, 1024]))}` +
    `, centred ĝ: ${net.synthesizers.map((s) => (s.center ? 'yes' : 'no')).join('/')}` +
    `, active units only: ${net.synthesizers.map((s) => (s.maskInactive ? 'yes' : 'no')).join('/')}, seed ${args.seed}`);
  say(`${os.cpus()[0]?.model ?? 'unknown CPU'}, ${native.threads()} threads; command: \`node dist/experiments/dni-trace/dni_trace.js ${process.argv.slice(2).join(' ')}\``);
  say('');
  say('| step | train loss (mean of every 20th step since the last row) | per module: cos(ĝ, g) / cos(ĝ, target) / |ĝ|/|g| / synthesizer loss |');
  say('|---|---|---|');
  let lossSum = 0;
  let lossCount = 0;
  await trainer.fit(train, {
    steps: args.steps, batchSize: 256, logEvery: 20, diagnoseEvery: args.every,
    onStep: (m) => {
      lossSum += m.loss;
      lossCount++;
      if (!m.diagnostics) return;
      const cells = m.diagnostics.map((d) => `${d.cosine.toFixed(2)}/${d.targetCosine.toFixed(2)}/${d.normRatio.toFixed(2)}/${d.synthesizerLoss.toExponential(1)}`).join('  ');
      say(`| ${m.step} | ${(lossSum / lossCount).toFixed(4)} | ${cells} |`);
      lossSum = 0;
      lossCount = 0;
    },
  });
  const accuracy = (await trainer.evaluate(test)).accuracy!; // MNIST: classification
  say('');
  say(`test error ${(100 * (1 - accuracy)).toFixed(2)}%`);
  trainer.dispose();
  if (args.out) {
    fs.mkdirSync(resultsDir, { recursive: true });
    fs.writeFileSync(path.join(resultsDir, `${args.out}.md`), lines.join('\n') + '\n');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
