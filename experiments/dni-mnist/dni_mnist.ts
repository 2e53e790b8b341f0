// Reproduces the MNIST FCN experiments of Jaderberg et al. (2017): test error of backprop, DNI
// and cDNI for 3..6 hidden layers of 256 units (Linear → BatchNorm → ReLU), Adam, batch 256,
// learning rate divided by 10 at 60% and 80% of training (the paper: 3e-5, 300k and 400k of
// 500k iterations); DNI synthesizers with two hidden layers of 1024, cDNI with a linear one on
// [h, onehot(y)]. Also the stochastic-update experiment: cDNI with update probability p.
// Writes a markdown table (and JSON) to experiments/dni-mnist/results/ with the iteration count and machine.
//
//   node dist/experiments/dni-mnist/dni_mnist.js --iterations 500000 [--lr 3e-5] [--depths 3,4,5,6]
//        [--methods backprop,dni,cdni] [--stochastic 0.2,1] [--synth-lr 1e-4] [--out dni-mnist]
//        [--optimizer adam|sgd] [--synth-lr-decay on|off] [--center on|off] [--mask-inactive on|off]
//        [--checkpoint-dir experiments/dni-mnist/checkpoints] [--synth-scale per-example|batch-mean]
// --synth-lr gives the DNI synthesizers their own Adam learning rate (same decay); default: the
// model's. cDNI's linear synthesizers keep the model's, as in the paper. --synth-lr-decay off:
// the DNI synthesizers keep their learning rate while the model's decays (default on).
// --optimizer sgd: the model (and cDNI's synthesizers) use SGD with momentum 0.9 at --lr instead
// of the paper's Adam; DNI's synthesizers keep Adam at --synth-lr.
// --center on: the synthesizers centre ĝ over the batch (decouple's `center`: every cut but the
// last in these models); default off. --mask-inactive on: they regress only on the units with
// h > 0 (decouple's `maskInactive`: every cut in these models); default off.
// --synth-scale: the synthesizers' targetScale (docs/synthesizer-scale.md); default: the library's.
// --checkpoint-dir: each run saves itself there every 1000 steps, and a rerun of the same
// command resumes every run where it stopped (finished ones are only evaluated), so a long
// reproduction can span several sittings. The time columns then cover the timed segments.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, DecoupledNetwork, Device, Trainer, datasets, decouple, mlp, native, learningRateSchedules } from '../../ts';
import type { Module, TargetScale } from '../../ts';
import { OptimizerKind, modelOptimizer, onOff, optimizerKind, optimizerName } from '../../bench/flags';
import { experimentResultsDir } from '../../bench/paths';

const resultsDir = experimentResultsDir('dni-mnist');

interface Args {
  iterations: number;
  lr: number;
  synthLr?: number;
  synthLrDecay: boolean;
  optimizer: OptimizerKind;
  center?: boolean;
  maskInactive?: boolean;
  depths: number[];
  methods: string[];
  stochastic: number[];
  batchSize: number;
  seed: number;
  out: string;
  checkpointDir?: string;
  synthScale?: TargetScale;
}

function parse(argv: string[]): Args {
  const a: Args = { iterations: 500_000, lr: 3e-5, depths: [3, 4, 5, 6], methods: ['backprop', 'dni', 'cdni'], stochastic: [0.2, 1],
    synthLrDecay: true, optimizer: 'adam', batchSize: 256, seed: 0, out: 'dni-mnist' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    const list = () => (v === '' || v === 'none' ? [] : v.split(','));
    if (k === '--iterations') a.iterations = Number(v);
    else if (k === '--lr') a.lr = Number(v);
    else if (k === '--synth-lr') a.synthLr = Number(v);
    else if (k === '--optimizer') a.optimizer = optimizerKind(k, v);
    else if (k === '--synth-lr-decay') a.synthLrDecay = onOff(k, v);
    else if (k === '--center') a.center = onOff(k, v);
    else if (k === '--mask-inactive') a.maskInactive = onOff(k, v);
    else if (k === '--depths') a.depths = list().map(Number);
    else if (k === '--methods') a.methods = list();
    else if (k === '--stochastic') a.stochastic = list().map(Number);
    else if (k === '--batch-size') a.batchSize = Number(v);
    else if (k === '--seed') a.seed = Number(v);
    else if (k === '--out') a.out = v;
    else if (k === '--checkpoint-dir') a.checkpointDir = v;
    else if (k === '--synth-scale') a.synthScale = v as TargetScale; // checked by decouple
    else throw new Error(`unknown option ${k}`);
  }
  if (!(a.iterations > 0)) throw new Error('--iterations must be > 0');
  if (a.synthLr !== undefined && !(a.synthLr > 0)) throw new Error('--synth-lr must be > 0');
  if (a.optimizer === 'sgd' && a.synthLr === undefined && a.methods.includes('dni')) throw new Error('--optimizer sgd needs --synth-lr (DNI synthesizers keep Adam)');
  if (!a.synthLrDecay && a.synthLr === undefined) throw new Error('--synth-lr-decay off needs --synth-lr');
  return a;
}

interface Run {
  experiment: string;
  depth: number;
  method: string;
  pUpdate: number;
  testError: number;
  seconds: number;
  msPerStep: number;
}

/**
 * Claims a checkpointed run for this process (two processes resuming the same run would both
 * write its checkpoint); a lock left by a process that no longer runs is taken over.
 */
function lock(checkpoint: string): () => void {
  const file = `${checkpoint}.lock`;
  if (fs.existsSync(file)) {
    const pid = Number(fs.readFileSync(file, 'utf8'));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = pid !== process.pid;
    } catch {
      alive = false;
    }
    if (alive) throw new Error(`${path.basename(checkpoint)} is being trained by process ${pid}; wait for it or stop it`);
  }
  fs.writeFileSync(file, String(process.pid));
  return () => fs.rmSync(file, { force: true });
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const { train, test } = await datasets.mnist();
  const device = Device.best();
  const runs: Run[] = [];
  fs.mkdirSync(resultsDir, { recursive: true });
  if (args.checkpointDir) fs.mkdirSync(args.checkpointDir, { recursive: true });

  const runOne = async (experiment: string, depth: number, method: string, pUpdate: number) => {
    const model = mlp(784, new Array(depth).fill(256), 10);
    const decayed = (base: number) => learningRateSchedules.stepDecay(base, [Math.round(0.6 * args.iterations), Math.round(0.8 * args.iterations)], 0.1);
    const dniSynthOptimizer = args.synthLr === undefined ? undefined : () => new Adam({ lr: args.synthLrDecay ? decayed(args.synthLr!) : args.synthLr! });
    const refinements = { center: args.center, maskInactive: args.maskInactive, targetScale: args.synthScale };
    const net: Module = method === 'backprop' ? model : decouple(model, {
      synthesizer: method === 'cdni'
        ? { conditioned: true, hidden: [], ...refinements }
        : { conditioned: false, hidden: [1024, 1024], optimizer: dniSynthOptimizer, ...refinements },
      schedule: { kind: 'lockstep', pUpdate },
    });
    const lr = decayed(args.lr);
    const trainer = new Trainer(net, { device, optimizer: () => modelOptimizer(args.optimizer, lr), seed: args.seed });
    const log = Math.max(1, Math.round(args.iterations / 10));
    // Everything that shapes the run is in the name: a rerun with other settings starts afresh.
    const synthesizers = net instanceof DecoupledNetwork ? net.synthesizers : [];
    const name = `${experiment}-${depth}layers-${method}-p${pUpdate}-${args.iterations}it-lr${args.lr}` +
      `-synthlr${method === 'dni' ? args.synthLr ?? 'model' : 'model'}${method === 'dni' && !args.synthLrDecay ? '-constant' : ''}-batch${args.batchSize}-seed${args.seed}${args.optimizer === 'sgd' ? '-sgd' : ''}` +
      (synthesizers.some((s) => s.center) ? '-centered' : '') + (synthesizers.some((s) => s.maskInactive) ? '-masked' : '') +
      (synthesizers.some((s) => s.targetScale === 'batch-mean') ? '-batchmean' : '');
    const checkpoint = args.checkpointDir ? path.join(args.checkpointDir, `${name}.ckpt`) : undefined;
    const timing = checkpoint ? `${checkpoint}.time.json` : undefined;
    // Time of the completed segments of this run (a segment killed mid-way is not timed).
    const timed: { seconds: number; steps: number } = timing && fs.existsSync(timing)
      ? JSON.parse(fs.readFileSync(timing, 'utf8')) : { seconds: 0, steps: 0 };
    const unlock = checkpoint ? lock(checkpoint) : () => undefined;
    let result;
    try {
      result = await trainer.fit(train, {
        steps: args.iterations, batchSize: args.batchSize, logEvery: log,
        checkpoint: checkpoint ? { path: checkpoint, every: 1000 } : undefined,
        onStep: (m) => { process.stdout.write(`  ${experiment} depth ${depth} ${method} p=${pUpdate}: step ${m.step} loss ${m.loss.toFixed(4)}\n`); },
      });
    } finally {
      unlock();
    }
    if (result.resumedFrom !== undefined) console.log(`  ${name}: resumed after step ${result.resumedFrom}`);
    const segmentSteps = result.steps - (result.resumedFrom ?? 0);
    if (segmentSteps > 0) {
      timed.seconds += result.seconds;
      timed.steps += segmentSteps;
      if (timing) fs.writeFileSync(timing, JSON.stringify(timed) + '\n');
    }
    const accuracy = (await trainer.evaluate(test)).accuracy!; // MNIST: classification
    trainer.dispose();
    const msPerStep = timed.steps ? (1000 * timed.seconds) / timed.steps : NaN;
    const run = { experiment, depth, method, pUpdate, testError: 100 * (1 - accuracy), seconds: (msPerStep * args.iterations) / 1000, msPerStep };
    console.log(`${experiment} depth ${depth} ${method} p=${pUpdate}: test error ${run.testError.toFixed(2)}% (${run.seconds.toFixed(0)} s)`);
    runs.push(run);
  };

  for (const depth of args.depths) for (const method of args.methods) await runOne('depth', depth, method, 1);
  for (const p of args.stochastic) await runOne('stochastic', 3, 'cdni', p);

  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, device ${device.name} (${device.describe()}), ${native.threads()} threads`;
  const errorOf = (depth: number, method: string) => runs.find((r) => r.experiment === 'depth' && r.depth === depth && r.method === method)?.testError;
  const fmt = (v: number | undefined) => (v === undefined ? '–' : `${v.toFixed(2)}%`);
  const md = [
    '# MNIST FCN: test error of backprop, DNI and cDNI', '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/experiments/dni-mnist/dni_mnist.js ${process.argv.slice(2).join(' ')}\`.`, '',
    `Iterations: **${args.iterations}** (the paper: 500,000), batch ${args.batchSize}, ${optimizerName(args.optimizer)} lr ${args.lr}${args.synthLr === undefined ? '' : ` (DNI synthesizers${args.optimizer === 'sgd' ? ': Adam' : ''} ${args.synthLr}${args.synthLrDecay ? '' : ', not decayed'})`} divided by 10 at 60% and 80%, seed ${args.seed}; synthesizers centre ĝ over the batch: ${args.center ? 'yes, where the next module starts with Linear → BatchNorm' : 'no'}; synthesizers regress only on active units (h > 0): ${args.maskInactive ? 'yes' : 'no'}; synthesizers' target scale: ${args.synthScale ?? 'default (per-example)'}.`, '',
    '| hidden layers | backprop | DNI | cDNI | DNI - backprop | cDNI - backprop |', '|---|---|---|---|---|---|',
    ...args.depths.map((d) => {
      const [bp, dni, cdni] = ['backprop', 'dni', 'cdni'].map((m) => errorOf(d, m));
      const diff = (v: number | undefined) => (v === undefined || bp === undefined ? '–' : `${(v - bp) >= 0 ? '+' : ''}${(v - bp).toFixed(2)}`);
      return `| ${d} | ${fmt(bp)} | ${fmt(dni)} | ${fmt(cdni)} | ${diff(dni)} | ${diff(cdni)} |`;
    }),
    '',
    ...(args.stochastic.length ? ['## Stochastic updates (cDNI, 3 hidden layers)', '', '| update probability p | test error |', '|---|---|',
      ...runs.filter((r) => r.experiment === 'stochastic').map((r) => `| ${r.pUpdate} | ${fmt(r.testError)} |`), ''] : []),
    '## Time', '',
    ...(args.checkpointDir ? ['Runs resumable from checkpoints: ms/step is over the segments timed to their end; total s = ms/step × iterations.', ''] : []),
    '| experiment | hidden layers | method | p | ms/step | total s |', '|---|---|---|---|---|---|',
    ...runs.map((r) => `| ${r.experiment} | ${r.depth} | ${r.method} | ${r.pUpdate} | ${r.msPerStep.toFixed(2)} | ${r.seconds.toFixed(0)} |`), '',
  ].join('\n');
  fs.writeFileSync(path.join(resultsDir, `${args.out}.md`), md);
  fs.writeFileSync(path.join(resultsDir, `${args.out}.json`), JSON.stringify({ date: new Date().toISOString(), machine, args, runs }, null, 2) + '\n');
  console.log(`\n${md}\nwrote experiments/dni-mnist/results/${args.out}.md and .json`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
