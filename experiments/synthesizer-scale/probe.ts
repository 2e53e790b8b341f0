// Traces one DNI or cDNI run of the MNIST FCN (the paper's setup, as experiments/dni-mnist) and,
// at chosen steps, probes its synthesizers on a fixed batch of training rows (nothing updated):
//   - per cut: cos(ĝ, g) and |ĝ|/|g|, g the true gradient of the batch-mean loss (on the units
//     with h > 0, as the trainer's diagnostics);
//   - at the last cut (h below the output Linear W, where g = (p - onehot(y)) W / B exactly):
//     the calibration temperature T* (the T minimising the probe's cross-entropy of
//     softmax(logits / T)), the expected gradient over the labels a synthesizer that does not
//     see them can at best predict, e = (p - q) W / B with q = softmax(logits / T*) standing
//     for the labels' distribution given h, and cos(ĝ, e), |e|/|g| (the largest cosine to g a
//     label-blind prediction can expect when q is right) and |ĝ|/|e|; and split by rows, those
//     the model gets right (p(y) >= 0.5) and the others: the others' share of |g|², and the
//     cosine of ĝ to g on each.
// Every probe is a JSON line in experiments/synthesizer-scale/results/NAME.jsonl, written as it
// is taken; the test error at the end.
//
//   node dist/experiments/synthesizer-scale/probe.js --method dni|cdni [--depth 3] [--steps 1500]
//        [--probe-at 0,1,2,5,10,20,50,100,250,500,1000,1500] [--synth-scale per-example|batch-mean]
//        [--batch-size 256] [--lr 3e-5] [--synth-lr 1e-3] [--probe-rows 1024] [--stop-after N] [--seed 0] --out NAME
// --stop-after N: stop after step N of a run planned for --steps (its learning-rate schedule).
import * as fs from 'fs';
import * as path from 'path';
import { Adam, Arena, Device, Random, SoftmaxCrossEntropy, Stream, Tensor, decouple, datasets, learningRateSchedules, mlp } from '../../ts';
import * as ops from '../../ts/ops';
import type { DecoupledTraining, Linear, TargetScale } from '../../ts';
import type { Forwarded, StepContext } from '../../ts/nn/module';
import { experimentResultsDir } from '../../bench/paths';

interface Args {
  method: 'dni' | 'cdni';
  depth: number;
  steps: number;
  probeAt: number[];
  synthScale?: TargetScale;
  batchSize: number;
  lr: number;
  synthLr: number;
  probeRows: number;
  stopAfter?: number;
  seed: number;
  out: string;
}

function parse(argv: string[]): Args {
  const a: Args = {
    method: 'dni',
    depth: 3,
    steps: 1500,
    probeAt: [0, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 1500],
    batchSize: 256,
    lr: 3e-5,
    synthLr: 1e-3,
    probeRows: 1024,
    seed: 0,
    out: '',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--method') a.method = v as Args['method'];
    else if (k === '--depth') a.depth = Number(v);
    else if (k === '--steps') a.steps = Number(v);
    else if (k === '--probe-at') a.probeAt = v.split(',').map(Number);
    else if (k === '--synth-scale')
      a.synthScale = v as TargetScale; // checked by decouple
    else if (k === '--batch-size') a.batchSize = Number(v);
    else if (k === '--lr') a.lr = Number(v);
    else if (k === '--synth-lr') a.synthLr = Number(v);
    else if (k === '--probe-rows') a.probeRows = Number(v);
    else if (k === '--stop-after') a.stopAfter = Number(v);
    else if (k === '--seed') a.seed = Number(v);
    else if (k === '--out') a.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (a.method !== 'dni' && a.method !== 'cdni') throw new Error(`--method must be dni or cdni, got ${a.method}`);
  if (!/^[\w.-]+$/.test(a.out)) throw new Error('--out NAME is needed (letters, digits, . _ -)');
  return a;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const norm = (a: ArrayLike<number>) => Math.sqrt(dot(a, a));
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / (norm(a) * norm(b) || 1);

/** Row-wise softmax of logits / T. */
function softmax(logits: Float32Array, rows: number, classes: number, T = 1): Float64Array {
  const p = new Float64Array(rows * classes);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[r * classes + k] / T);
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += p[r * classes + k] = Math.exp(logits[r * classes + k] / T - max);
    for (let k = 0; k < classes; k++) p[r * classes + k] /= sum;
  }
  return p;
}

/** The temperature minimising the mean cross-entropy of softmax(logits / T) (golden-section search on log T). */
function calibrationTemperature(logits: Float32Array, labels: Int32Array, classes: number): number {
  const rows = labels.length;
  const nll = (logT: number) => {
    const p = softmax(logits, rows, classes, Math.exp(logT));
    let s = 0;
    for (let r = 0; r < rows; r++) s -= Math.log(Math.max(p[r * classes + labels[r]], 1e-300));
    return s / rows;
  };
  let [lo, hi] = [Math.log(0.01), Math.log(1000)];
  const g = (Math.sqrt(5) - 1) / 2;
  for (let i = 0; i < 60; i++) {
    const [a, b] = [hi - g * (hi - lo), lo + g * (hi - lo)];
    if (nll(a) < nll(b)) hi = b;
    else lo = a;
  }
  return Math.exp((lo + hi) / 2);
}

/** (P - Q) W / B: rows [B, classes] times W [classes, width]. */
function backThroughLinear(
  P: Float64Array,
  Q: ArrayLike<number>,
  W: Float32Array,
  rows: number,
  classes: number,
  width: number,
): Float64Array {
  const g = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < classes; k++) {
      const d = (P[r * classes + k] - Q[r * classes + k]) / rows;
      if (d !== 0) for (let j = 0; j < width; j++) g[r * width + j] += d * W[k * width + j];
    }
  return g;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const { train, test } = await datasets.mnist();
  const device = Device.best();
  const decaySteps = [Math.round(0.6 * args.steps), Math.round(0.8 * args.steps)];
  const decayed = (base: number) => learningRateSchedules.stepDecay(base, decaySteps, 0.1);
  const conditioned = args.method === 'cdni';
  const model = mlp(784, new Array(args.depth).fill(256), 10);
  const net = decouple(model, {
    // As experiments/dni-mnist: DNI's synthesizers on their own Adam, cDNI's linear ones on the model's.
    synthesizer: conditioned
      ? { conditioned, hidden: [], targetScale: args.synthScale }
      : { conditioned, hidden: [1024, 1024], optimizer: () => new Adam({ lr: decayed(args.synthLr) }), targetScale: args.synthScale },
    streams: 'single',
  });
  const rng = new Random(args.seed);
  net.initialize(device, rng.fork());
  const strategy = net.trainingStrategy({
    loss: new SoftmaxCrossEntropy(),
    optimizer: () => new Adam({ lr: decayed(args.lr) }),
  }) as DecoupledTraining;
  const stream = Stream.default(device);
  const n = net.modules.length;
  const output = model.layers[model.layers.length - 1] as Linear;

  // The probe: fixed training rows, the same at every probe.
  const probeOrder = train.order(new Random(args.seed + 1000));
  const probe = train.gather(probeOrder, 0, args.probeRows);
  const file = path.join(experimentResultsDir('synthesizer-scale'), `${args.out}.jsonl`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    JSON.stringify({ command: `node dist/experiments/synthesizer-scale/probe.js ${process.argv.slice(2).join(' ')}`, args }) + '\n',
  );

  const probeNow = async (step: number, loss: number) => {
    const arena = new Arena();
    try {
      const B = args.probeRows;
      const ctx: StepContext = { device, stream, training: true, freezeStatistics: true, arena };
      const x = Tensor.fromArray(probe.inputs, [B, 784], { device, arena });
      const y = Tensor.fromArray(probe.labels, [B], { device, dtype: 'int32', arena });
      const forwards: Forwarded[] = [];
      const synthetic: Tensor[] = [];
      let h = x;
      for (let i = 0; i < n; i++) {
        const f = net.modules[i].forward(h, ctx);
        forwards.push(f);
        h = f.output;
        if (i < n - 1) synthetic.push(net.synthesizers[i].predict(h, y, ctx).gradient);
      }
      let g: Tensor | undefined = new SoftmaxCrossEntropy().forward(h, y, ctx).backward(ctx);
      const truth: Tensor[] = [];
      for (let i = n - 1; i > 0; i--) {
        g = forwards[i].backward(g!, ctx, true);
        truth[i - 1] = g!;
      }
      for (const p of net.parameters()) ops.fill(ctx, p.grad, 0); // the probe's backward accumulated into them
      const cuts = [];
      for (let i = 0; i < n - 1; i++) {
        const [a, b, hv] = await Promise.all([synthetic[i], truth[i], forwards[i].output].map((t) => t.readFloat32(stream)));
        for (let k = 0; k < hv.length; k++) if (!(hv[k] > 0)) a[k] = b[k] = 0; // the units that reach module i's parameters
        cuts.push({ cut: i + 1, cosine: cosine(a, b), normRatio: norm(a) / norm(b) });
      }
      // The last cut, where g = (p - onehot(y)) W / B.
      const logits = await forwards[n - 1].output.readFloat32(stream);
      const W = await output.weight!.value.readFloat32(stream);
      const width = W.length / 10;
      const labels = probe.labels;
      const T = calibrationTemperature(logits, labels, 10);
      const P = softmax(logits, B, 10);
      const Q = softmax(logits, B, 10, T);
      const onehot = new Float64Array(B * 10);
      labels.forEach((l, r) => (onehot[r * 10 + l] = 1));
      const gTrue = backThroughLinear(P, onehot, W, B, 10, width);
      const expected = backThroughLinear(P, Q, W, B, 10, width);
      const gHat = await synthetic[n - 2].readFloat32(stream);
      const hLast = await forwards[n - 2].output.readFloat32(stream);
      for (let k = 0; k < hLast.length; k++) if (!(hLast[k] > 0)) gHat[k] = gTrue[k] = expected[k] = 0;
      let correct = 0;
      for (let r = 0; r < B; r++) {
        let best = 0;
        for (let k = 1; k < 10; k++) if (P[r * 10 + k] > P[r * 10 + best]) best = k;
        if (best === labels[r]) correct++;
      }
      // Rows the model already gets right (p(y) >= 0.5) against the others: a label-blind M can
      // learn the first rows' gradients (their labels follow from h), not the second's.
      const rowsWhere = (easy: boolean, v: ArrayLike<number>) =>
        Float64Array.from(v, (x, k) => (P[Math.floor(k / width) * 10 + labels[Math.floor(k / width)]] >= 0.5 === easy ? x : 0));
      const [gEasy, gHard] = [true, false].map((easy) => rowsWhere(easy, gTrue));
      const [sEasy, sHard] = [true, false].map((easy) => rowsWhere(easy, gHat));
      let hardRows = 0;
      for (let r = 0; r < B; r++) if (P[r * 10 + labels[r]] < 0.5) hardRows++;
      const last = {
        hardRows: hardRows / B,
        hardShareOfTrue: dot(gHard, gHard) / dot(gTrue, gTrue),
        cosineEasy: cosine(sEasy, gEasy),
        cosineHard: cosine(sHard, gHard),
        temperature: T,
        probeError: 1 - correct / B,
        cosineToTrue: cosine(gHat, gTrue),
        cosineToExpected: cosine(gHat, expected),
        expectedOverTrue: norm(expected) / norm(gTrue),
        synthOverTrue: norm(gHat) / norm(gTrue),
        synthOverExpected: norm(gHat) / norm(expected),
      };
      const record = { step, trainLoss: loss, cuts, last };
      fs.appendFileSync(file, JSON.stringify(record) + '\n');
      console.log(
        `step ${step} loss ${loss.toFixed(4)} T* ${T.toFixed(3)} | ` +
          cuts.map((c) => `${c.cosine.toFixed(3)}/${c.normRatio.toExponential(2)}`).join(' ') +
          ` | last: cos(ĝ,g) ${last.cosineToTrue.toFixed(3)} cos(ĝ,e) ${last.cosineToExpected.toFixed(3)} |e|/|g| ${last.expectedOverTrue.toFixed(3)}` +
          ` hard rows ${last.hardRows.toFixed(3)} (share of |g|² ${last.hardShareOfTrue.toFixed(3)}) cos easy/hard ${last.cosineEasy.toFixed(3)}/${last.cosineHard.toFixed(3)}`,
      );
    } finally {
      arena.dispose();
    }
  };

  const shuffle = rng.fork();
  let order = train.order(shuffle);
  let at = 0;
  let lossSum = 0;
  let lossCount = 0;
  const started = Date.now();
  if (args.probeAt.includes(0)) await probeNow(0, NaN);
  for (let step = 1; step <= Math.min(args.steps, args.stopAfter ?? Infinity); step++) {
    if (at + args.batchSize > train.count) {
      order = train.order(shuffle);
      at = 0;
    }
    const batch = train.gather(order, at, at + args.batchSize);
    at += args.batchSize;
    const arena = new Arena();
    const ctx: StepContext = { device, stream, training: true, arena };
    const x = Tensor.fromArray(batch.inputs, [args.batchSize, 784], { device, arena });
    const y = Tensor.fromArray(batch.labels, [args.batchSize], { device, dtype: 'int32', arena });
    const loss = (await strategy.step(x, y, ctx).readFloat32(stream))[0];
    arena.dispose();
    lossSum += loss;
    lossCount++;
    if (args.probeAt.includes(step)) {
      await probeNow(step, lossSum / lossCount);
      lossSum = lossCount = 0;
    }
  }
  // Test error with the plain network (BatchNorm's running statistics).
  let correct = 0;
  const evalArena = new Arena();
  const ectx: StepContext = { device, stream, training: false, arena: evalArena };
  for (let s = 0; s < test.count; s += 1000) {
    const rows = test.gather(test.order(), s, Math.min(test.count, s + 1000));
    const count = rows.labels.length;
    const out = await net
      .forward(Tensor.fromArray(rows.inputs, [count, 784], { device, arena: evalArena }), ectx)
      .output.readFloat32(stream);
    for (let r = 0; r < count; r++) {
      let best = 0;
      for (let k = 1; k < 10; k++) if (out[r * 10 + k] > out[r * 10 + best]) best = k;
      if (best === rows.labels[r]) correct++;
    }
  }
  evalArena.dispose();
  const testError = 100 * (1 - correct / test.count);
  fs.appendFileSync(file, JSON.stringify({ testError, seconds: (Date.now() - started) / 1000 }) + '\n');
  console.log(`test error ${testError.toFixed(2)}%`);
  strategy.dispose();
  net.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
