// The label-free DNI puzzle (docs/synthesizer-scale.md): what a synthesizer that does not see the
// label can predict at the last cut, as the classifier above it trains. A backprop MNIST FCN
// (3 hidden layers of 256, Adam 1e-3, batch 256) is trained in stages; at each stage, with the
// model frozen (evaluation mode), a fresh label-free synthesizer (DNI: 2x1024, Adam 1e-3) and a
// fresh label-conditioned one (cDNI: linear on [h, onehot(y)], Adam 1e-3) regress the true
// gradient at the last hidden layer, g = (p - onehot(y)) W / B, for --synth-steps batches. Then,
// on probe rows of the training set: the calibration temperature T* (as probe.ts), the share of
// |g|² on the rows the model misclassifies, and cos(ĝ, g) on all rows, on the correctly
// classified ones and on the misclassified ones (on the units with h > 0). JSON lines in
// experiments/synthesizer-scale/results/NAME.jsonl, written as each stage ends.
//
//   node dist/experiments/synthesizer-scale/calibration.js [--stages 50,200,1000,3000] [--synth-steps 400]
//        [--probe-rows 2048] [--seed 0] --out NAME
import * as fs from 'fs';
import * as path from 'path';
import { Adam, Arena, Device, Random, Sequential, Stream, Synthesizer, Tensor, Trainer, datasets, mlp } from '../../ts';
import type { Linear } from '../../ts';
import type { StepContext } from '../../ts/nn/module';
import { experimentResultsDir } from '../../bench/paths';

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / (Math.sqrt(dot(a, a) * dot(b, b)) || 1);

function softmax(logits: ArrayLike<number>, rows: number, T = 1): Float64Array {
  const p = new Float64Array(rows * 10);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let k = 0; k < 10; k++) max = Math.max(max, logits[r * 10 + k] / T);
    let sum = 0;
    for (let k = 0; k < 10; k++) sum += p[r * 10 + k] = Math.exp(logits[r * 10 + k] / T - max);
    for (let k = 0; k < 10; k++) p[r * 10 + k] /= sum;
  }
  return p;
}

function temperature(logits: Float64Array, labels: Int32Array): number {
  const rows = labels.length;
  const nll = (logT: number) => {
    const p = softmax(logits, rows, Math.exp(logT));
    let s = 0;
    for (let r = 0; r < rows; r++) s -= Math.log(Math.max(p[r * 10 + labels[r]], 1e-300));
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

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const a = { stages: [50, 200, 1000, 3000], synthSteps: 400, probeRows: 2048, seed: 0, out: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === '--stages') a.stages = v.split(',').map(Number);
    else if (k === '--synth-steps') a.synthSteps = Number(v);
    else if (k === '--probe-rows') a.probeRows = Number(v);
    else if (k === '--seed') a.seed = Number(v);
    else if (k === '--out') a.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (!/^[\w.-]+$/.test(a.out)) throw new Error('--out NAME is needed (letters, digits, . _ -)');
  const file = path.join(experimentResultsDir('synthesizer-scale'), `${a.out}.jsonl`);
  fs.writeFileSync(
    file,
    JSON.stringify({ command: `node dist/experiments/synthesizer-scale/calibration.js ${argv.join(' ')}`, args: a }) + '\n',
  );

  const { train } = await datasets.mnist();
  const device = Device.best();
  const stream = Stream.default(device);
  const model = mlp(784, [256, 256, 256], 10);
  const trainer = new Trainer(model, { device, optimizer: () => new Adam({ lr: 1e-3 }), seed: a.seed });
  const body = new Sequential(model.layers.slice(0, -1)); // up to the last hidden layer's ReLU
  const output = model.layers[model.layers.length - 1] as Linear;
  const rng = new Random(a.seed + 7);
  const probe = train.gather(train.order(new Random(a.seed + 1000)), 0, a.probeRows);

  /** h (the last hidden layer, evaluation mode) and g = (p - onehot(y)) W / B for some rows. */
  const gradientAt = async (inputs: Float32Array, labels: Int32Array, arena: Arena) => {
    const B = labels.length;
    const ctx: StepContext = { device, stream, training: false, arena };
    const h = body.forward(Tensor.fromArray(inputs, [B, 784], { device, arena }), ctx).output;
    const hv = await h.readFloat32(stream);
    const W = await output.weight!.value.readFloat32(stream);
    const b = await output.bias!.value.readFloat32(stream);
    const width = W.length / 10;
    const logits = new Float64Array(B * 10);
    for (let r = 0; r < B; r++)
      for (let k = 0; k < 10; k++)
        logits[r * 10 + k] = b[k] + dot(hv.subarray(r * width, (r + 1) * width), W.subarray(k * width, (k + 1) * width));
    const p = softmax(logits, B);
    const g = new Float32Array(B * width);
    for (let r = 0; r < B; r++)
      for (let k = 0; k < 10; k++) {
        const d = (p[r * 10 + k] - (labels[r] === k ? 1 : 0)) / B;
        for (let j = 0; j < width; j++) g[r * width + j] += d * W[k * width + j];
      }
    return { h, hv, g, logits, p, width };
  };

  let trained = 0;
  for (const stage of a.stages) {
    await trainer.fit(train, { steps: stage - trained, batchSize: 256 });
    trained = stage;
    const synths = {
      dni: new Synthesizer('dni', 256, 10, { hidden: [1024, 1024] }),
      cdni: new Synthesizer('cdni', 256, 10, { conditioned: true, hidden: [] }),
    };
    for (const s of Object.values(synths)) s.initialize(device, rng.fork(), new Adam({ lr: 1e-3 }));
    const order = train.order(rng.fork());
    for (let step = 0; step < a.synthSteps; step++) {
      const start = (step * 256) % (train.count - 256);
      const batch = train.gather(order, start, start + 256);
      const arena = new Arena();
      const { h, g } = await gradientAt(batch.inputs, batch.labels, arena);
      const ctx: StepContext = { device, stream, training: true, arena };
      const y = Tensor.fromArray(batch.labels, [256], { device, dtype: 'int32', arena });
      const target = Tensor.fromArray(g, [256, 256], { device, arena });
      for (const s of Object.values(synths)) await s.predict(h, y, ctx).learn(target, ctx).read(stream);
      arena.dispose();
    }
    const arena = new Arena();
    const B = a.probeRows;
    const { h, hv, g, logits, p, width } = await gradientAt(probe.inputs, probe.labels, arena);
    const wrong = (r: number) => {
      let best = 0;
      for (let k = 1; k < 10; k++) if (p[r * 10 + k] > p[r * 10 + best]) best = k;
      return best !== probe.labels[r];
    };
    const mask = (v: ArrayLike<number>, rows: 'all' | 'right' | 'wrong') =>
      Float64Array.from(v, (x, k) => {
        const r = Math.floor(k / width);
        return hv[k] > 0 && (rows === 'all' || wrong(r) === (rows === 'wrong')) ? x : 0;
      });
    let wrongRows = 0;
    for (let r = 0; r < B; r++) if (wrong(r)) wrongRows++;
    const gAll = mask(g, 'all');
    const gWrong = mask(g, 'wrong');
    const record: Record<string, unknown> = {
      modelSteps: stage,
      probeError: wrongRows / B,
      temperature: temperature(logits, probe.labels),
      wrongShareOfTrue: dot(gWrong, gWrong) / dot(gAll, gAll),
    };
    const ctx: StepContext = { device, stream, training: false, arena };
    const y = Tensor.fromArray(probe.labels, [B], { device, dtype: 'int32', arena });
    for (const [name, s] of Object.entries(synths)) {
      const ghat = await s.predict(h, y, ctx).gradient.readFloat32(stream);
      record[name] = {
        cosine: cosine(mask(ghat, 'all'), gAll),
        cosineRight: cosine(mask(ghat, 'right'), mask(g, 'right')),
        cosineWrong: cosine(mask(ghat, 'wrong'), gWrong),
        normRatio: Math.sqrt(dot(mask(ghat, 'all'), mask(ghat, 'all')) / dot(gAll, gAll)),
      };
      s.dispose();
    }
    arena.dispose();
    fs.appendFileSync(file, JSON.stringify(record) + '\n');
    console.log(JSON.stringify(record));
  }
  trainer.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
