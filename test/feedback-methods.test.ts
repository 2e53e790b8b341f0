// Feedback alignment, direct feedback alignment and Kickback (ts/methods/) against float64
// hand computations of one update on tiny networks (the rules written out on arrays below,
// sharing no code with ts/methods/), the fixed matrices staying fixed (and saved with a
// checkpoint), models a method does not cover refused before training, and a short seeded run
// whose loss falls.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  BatchNorm1d,
  Dataset,
  Device,
  FeedbackAlignmentNetwork,
  Linear,
  Module,
  Random,
  ReLU,
  SGD,
  Sequential,
  Tanh,
  Trainer,
  Adam,
  feedbackAlignment,
  kickback,
  mlp,
} from '../ts';
import type { Forwarded, Tensor } from '../ts';
import * as ref from './helpers/reference';
import { B, ceGrad, down, expectUpdate, linear, lr, read, sgd, weightGrad } from './helpers/method-reference';

const cpu = Device.cpu();

/** Every parameter's values, in the model's order. */
async function weights(trainer: Trainer): Promise<Float64Array[]> {
  return Promise.all(trainer.model.parameters().map((p) => read(trainer, p.value)));
}

/** A dataset of B rows: inputs in ±[0.1, 1), regression targets or labels. */
function batch(rng: Random, features: number, outputs: number, task: 'regression' | 'classification'): Dataset {
  const x = ref.randomArray(rng, B * features);
  if (task === 'classification') return new Dataset('batch', x, ref.randomLabels(rng, B, outputs), features, outputs);
  return new Dataset('batch', x, ref.randomArray(rng, B * outputs), features, outputs);
}

/** One SGD step (no momentum) of the model, run by the library; returns the weights before and after. */
async function oneStep(trainer: Trainer, data: Dataset) {
  const before = await weights(trainer);
  await trainer.fit(data, { steps: 1, batchSize: B, shuffle: false });
  return { before, after: await weights(trainer) };
}

// ---- float64 helpers: a Linear layer, its gradients, BatchNorm's backward ----------------------

const mseGrad = (out: Float64Array, y: ArrayLike<number>) => out.map((o, k) => (2 * (o - y[k])) / out.length);

/** Training-mode BatchNorm's backward for x [B, F] (gamma, eps 1e-5): dx, dgamma, dbeta. */
function batchNormBackward(x: Float64Array, dy: Float64Array, gamma: Float64Array, F: number) {
  const bn = ref.batchNormTraining(x, gamma, new Float64Array(F), new Float64Array(F), new Float64Array(F).fill(1), B, F, 0.1, 1e-5);
  const dx = new Float64Array(B * F);
  const dgamma = new Float64Array(F);
  const dbeta = new Float64Array(F);
  for (let c = 0; c < F; c++) {
    let sum = 0;
    let sumXhat = 0;
    for (let r = 0; r < B; r++) {
      const xhat = (x[r * F + c] - bn.mean[c]) * bn.invStd[c];
      dgamma[c] += dy[r * F + c] * xhat;
      dbeta[c] += dy[r * F + c];
      sum += dy[r * F + c] * gamma[c];
      sumXhat += dy[r * F + c] * gamma[c] * xhat;
    }
    for (let r = 0; r < B; r++) {
      const xhat = (x[r * F + c] - bn.mean[c]) * bn.invStd[c];
      dx[r * F + c] = bn.invStd[c] * (dy[r * F + c] * gamma[c] - sum / B - (xhat * sumXhat) / B);
    }
  }
  return { y: bn.y, dx, dgamma, dbeta };
}

describe('one update equals a float64 hand computation', () => {
  test('FA: Linear → Tanh → Linear → ReLU → Linear, mse: each Linear sends dy·B down, not dy·W', async () => {
    const rng = new Random(11);
    const model = new Sequential([new Linear(3, 5), new Tanh(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
    const net = feedbackAlignment(model, { seed: 5 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), loss: 'mse', seed: 3 });
    // Matrices for layers 2 and 4 (the Linear at layer 0 sends nothing down), shaped as their weights.
    expect([...net.feedback.keys()]).toEqual([2, 4]);
    expect(net.feedback.get(2)!.shape).toEqual([4, 5]);
    expect(net.feedback.get(4)!.shape).toEqual([2, 4]);
    const B2 = await read(trainer, net.feedback.get(2)!);
    const B4 = await read(trainer, net.feedback.get(4)!);
    // Drawn like the weight it stands in for: U(-1/√in, 1/√in), and not the weight itself.
    expect(ref.maxAbs(B2)).toBeLessThanOrEqual(1 / Math.sqrt(5));
    expect(ref.maxAbs(B4)).toBeLessThanOrEqual(1 / Math.sqrt(4));
    const data = batch(rng, 3, 2, 'regression');
    const { before, after } = await oneStep(trainer, data);
    const [W0, b0, W2, b2, W4, b4] = before;
    expect(ref.maxAbs(W2.map((w, i) => w - B2[i]))).toBeGreaterThan(0.01);

    const x = ref.f64(data.inputs);
    const z0 = linear(x, W0, b0, 3, 5);
    const h1 = ref.activation('tanh', z0);
    const z2 = linear(h1, W2, b2, 5, 4);
    const h3 = ref.activation('relu', z2);
    const out = linear(h3, W4, b4, 4, 2);
    const e = mseGrad(out, data.values);
    const g3 = down(e, B4, 4, 2); // FA: through B4, not W4
    const dz2 = g3.map((g, k) => (z2[k] > 0 ? g : 0));
    const g1 = down(dz2, B2, 5, 4);
    const dz0 = g1.map((g, k) => g * (1 - h1[k] * h1[k]));
    const want = [
      sgd(W0, weightGrad(dz0, x, 3, 5)),
      sgd(b0, ref.columnSums(dz0, B, 5)),
      sgd(W2, weightGrad(dz2, h1, 5, 4)),
      sgd(b2, ref.columnSums(dz2, B, 4)),
      sgd(W4, weightGrad(e, h3, 4, 2)),
      sgd(b4, ref.columnSums(e, B, 2)),
    ];
    want.forEach((w, i) => expectUpdate(`parameter ${i}`, after[i], w));
    // The hidden layers' update is not backprop's (which would send e·W4 down).
    const bp = down(e, W4, 4, 2).map((g, k) => (z2[k] > 0 ? g : 0));
    const fa = weightGrad(dz2, h1, 5, 4);
    expect(ref.maxAbs(weightGrad(bp, h1, 5, 4).map((g, i) => g - fa[i]))).toBeGreaterThan(1e-3);
    trainer.dispose();
  });

  test('DFA: mlp(3, [5, 4], 2) with BatchNorm, softmax cross-entropy: each block gets e·D_k', async () => {
    const rng = new Random(12);
    const net = feedbackAlignment(mlp(3, [5, 4], 2), { direct: true, seed: 9 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 4 });
    // Blocks: [Linear, BN, ReLU] ×2, then the output Linear; D_k [outputs, width_k] for the first two.
    expect(net.blocks).toEqual([
      { start: 0, end: 3, width: 5 },
      { start: 3, end: 6, width: 4 },
      { start: 6, end: 7, width: 2 },
    ]);
    expect([...net.feedback.keys()]).toEqual([0, 1]);
    expect(net.feedback.get(0)!.shape).toEqual([2, 5]);
    const D0 = await read(trainer, net.feedback.get(0)!);
    const D1 = await read(trainer, net.feedback.get(1)!);
    expect(ref.maxAbs(D0)).toBeLessThanOrEqual(1 / Math.sqrt(5));
    const data = batch(rng, 3, 2, 'classification');
    const { before, after } = await oneStep(trainer, data);
    const [W0, b0, g0, be0, W3, b3, g3, be3, W6, b6] = before;

    const x = ref.f64(data.inputs);
    const z0 = linear(x, W0, b0, 3, 5);
    const bn1 = batchNormBackward(z0, new Float64Array(B * 5), g0, 5); // its forward (dy unused)
    const n1 = ref.addBias(bn1.y, be0, B, 5); // beta is 0 at start, added for the rule's sake
    const h2 = ref.activation('relu', n1);
    const z3 = linear(h2, W3, b3, 5, 4);
    const bn4 = batchNormBackward(z3, new Float64Array(B * 4), g3, 4);
    const n4 = ref.addBias(bn4.y, be3, B, 4);
    const h5 = ref.activation('relu', n4);
    const out = linear(h5, W6, b6, 4, 2);
    const e = ceGrad(out, data.labels, 2);
    // Block 2 (the output Linear): e itself. Block 1: e·D1 at h5. Block 0: e·D0 at h2.
    const d5 = ref.gemm(false, false, { M: B, N: 4, K: 2 }, 1, e, D1, 0, null).map((g, k) => (n4[k] > 0 ? g : 0));
    const bnB1 = batchNormBackward(z3, d5, g3, 4);
    const d2 = ref.gemm(false, false, { M: B, N: 5, K: 2 }, 1, e, D0, 0, null).map((g, k) => (n1[k] > 0 ? g : 0));
    const bnB0 = batchNormBackward(z0, d2, g0, 5);
    const want = [
      sgd(W0, weightGrad(bnB0.dx, x, 3, 5)),
      sgd(b0, ref.columnSums(bnB0.dx, B, 5)),
      sgd(g0, bnB0.dgamma),
      sgd(be0, bnB0.dbeta),
      sgd(W3, weightGrad(bnB1.dx, h2, 5, 4)),
      sgd(b3, ref.columnSums(bnB1.dx, B, 4)),
      sgd(g3, bnB1.dgamma),
      sgd(be3, bnB1.dbeta),
      sgd(W6, weightGrad(e, h5, 4, 2)),
      sgd(b6, ref.columnSums(e, B, 2)),
    ];
    // BatchNorm removes the batch mean from its input gradient: the biases before it get ~0 (floor 1e-5).
    want.forEach((w, i) => expectUpdate(`parameter ${i}`, after[i], w));
    trainer.dispose();
  });

  test("Kickback: Linear → ReLU → Linear → ReLU → Linear(·, 1), mse: β times each unit's kick τ", async () => {
    const rng = new Random(13);
    const model = new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 1)]);
    const net = kickback(model);
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), loss: 'mse', seed: 6 });
    const data = batch(rng, 3, 1, 'regression');
    const { before, after } = await oneStep(trainer, data);
    const [W0, b0, W2, b2, W4, b4] = before;

    const x = ref.f64(data.inputs);
    const z0 = linear(x, W0, b0, 3, 5);
    const h1 = ref.activation('relu', z0);
    const z2 = linear(h1, W2, b2, 5, 4);
    const h3 = ref.activation('relu', z2);
    const out = linear(h3, W4, b4, 4, 1);
    const beta = mseGrad(out, data.values); // [B]: the global error of each example
    // Written unit by unit, as the paper states it: τ_j = Σ_k W_kj · 1[k active].
    const kick = (rows: number, width: number, next: number, Wn: Float64Array, active: (r: number, k: number) => boolean) => {
      const dz = new Float64Array(rows * width);
      for (let r = 0; r < rows; r++)
        for (let j = 0; j < width; j++) {
          let tau = 0;
          for (let k = 0; k < next; k++) if (active(r, k)) tau += Wn[k * width + j];
          dz[r * width + j] = beta[r] * tau;
        }
      return dz;
    };
    // Last hidden layer: the output unit is linear (always active): τ_j = W4_j, exactly backprop.
    const dz2 = kick(B, 4, 1, W4, () => true).map((g, k) => (z2[k] > 0 ? g : 0));
    // First hidden layer: its kick counts the active units of layer 2, whatever their own errors.
    const dz0 = kick(B, 5, 4, W2, (r, k) => z2[r * 4 + k] > 0).map((g, k) => (z0[k] > 0 ? g : 0));
    const want = [
      sgd(W0, weightGrad(dz0, x, 3, 5)),
      sgd(b0, ref.columnSums(dz0, B, 5)),
      sgd(W2, weightGrad(dz2, h1, 5, 4)),
      sgd(b2, ref.columnSums(dz2, B, 4)),
      sgd(W4, weightGrad(beta, h3, 4, 1)),
      sgd(b4, ref.columnSums(beta, B, 1)),
    ];
    want.forEach((w, i) => expectUpdate(`parameter ${i}`, after[i], w));
    trainer.dispose();
  });
});

describe('the fixed matrices', () => {
  test('stay fixed across steps, come from the seed, and are saved with a checkpoint', async () => {
    const rng = new Random(21);
    const make = (seed: number | undefined, trainerSeed: number) => {
      const net = feedbackAlignment(mlp(3, [5, 4], 2), seed === undefined ? {} : { seed });
      return { net, trainer: new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: trainerSeed }) };
    };
    const matrices = (t: Trainer, n: FeedbackAlignmentNetwork) => Promise.all([...n.feedback.values()].map((m) => read(t, m)));
    const a = make(undefined, 1);
    const start = await matrices(a.trainer, a.net);
    const w0 = await weights(a.trainer);
    const data = batch(rng, 3, 2, 'classification');
    await a.trainer.fit(data, { steps: 3, batchSize: B });
    const w3 = await weights(a.trainer);
    expect(ref.maxAbs(w3[0].map((v, i) => v - w0[0][i]))).toBeGreaterThan(0);
    (await matrices(a.trainer, a.net)).forEach((m, i) => ref.expectExact(`matrix ${i} after 3 steps`, m, start[i]));
    // Without a seed they come from the Trainer's; with one, from it whatever the Trainer's.
    const b = make(undefined, 2);
    expect(ref.maxAbs((await matrices(b.trainer, b.net))[0].map((v, i) => v - start[0][i]))).toBeGreaterThan(0);
    const s1 = make(7, 1);
    const s2 = make(7, 2);
    ref.expectExact('seeded matrices', (await matrices(s1.trainer, s1.net))[0], (await matrices(s2.trainer, s2.net))[0]);
    // A checkpoint holds them: a trainer built with another seed loads the saved ones.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-fa-'));
    try {
      const file = path.join(dir, 'fa.ckpt');
      await a.trainer.save(file);
      await b.trainer.load(file);
      (await matrices(b.trainer, b.net)).forEach((m, i) => ref.expectExact(`matrix ${i} loaded`, m, start[i]));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    for (const t of [a, b, s1, s2]) t.trainer.dispose();
  });
});

/** A module none of the methods knows (it doubles its input). */
class Doubling extends Module {
  readonly name = 'Doubling';
  initialize(): void {}
  outputFeatures(n: number): number {
    return n;
  }
  forward(x: Tensor): Forwarded {
    return { output: x, backward: (dy) => dy };
  }
}

describe('a model a method does not cover is an error naming the problem, before training', () => {
  test('FA and DFA', () => {
    expect(() => feedbackAlignment(new Sequential([new Linear(3, 4), new Doubling(), new Linear(4, 2)]))).toThrow(
      /feedbackAlignment: layer 1 \(Doubling\) is not supported: FA trains Linear, BatchNorm1d and activation layers/,
    );
    expect(() => feedbackAlignment(new Sequential([new Linear(3, 2), new ReLU()]), { direct: true })).toThrow(
      /the model has 1 Linear layer; DFA needs at least 2/,
    );
    expect(() => feedbackAlignment(mlp(3, [4], 2), { direkt: true } as never)).toThrow(/direkt/);
    expect(() => feedbackAlignment(mlp(3, [4], 2), { seed: 0.5 })).toThrow(/'seed' must be an integer, got 0.5/);
    expect(() => feedbackAlignment(new Linear(3, 2) as never)).toThrow(/'model' must be a Sequential/);
  });

  test('Kickback: BatchNorm, tanh, several outputs, a loss other than mse', () => {
    expect(() => kickback(mlp(3, [4], 1))).toThrow(
      /kickback: layer 1 is BatchNorm1d\(4\) where a ReLU belongs: Kickback .* rectifier networks/,
    );
    expect(() => kickback(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 1)]))).toThrow(
      /layer 1 is Tanh where a ReLU belongs/,
    );
    expect(() => kickback(new Sequential([new Linear(3, 4), new ReLU(), new Linear(4, 10)]))).toThrow(
      /the model has 10 outputs; Kickback broadcasts one scalar error to every unit/,
    );
    expect(() => kickback(new Sequential([new Linear(3, 4), new ReLU()]))).toThrow(/ends with ReLU, not a Linear/);
    expect(() => kickback(new Sequential([new Linear(3, 1)]))).toThrow(/no hidden layer/);
    // The loss is known when the Trainer is built: refused then, before any step.
    const net = kickback(new Sequential([new Linear(3, 4), new ReLU(), new Linear(4, 1)]));
    expect(() => new Trainer(net, { device: cpu, optimizer: new SGD({ lr }) })).toThrow(
      /kickback: the loss must be 'mse', got softmax-cross-entropy/,
    );
  });
});

describe('layers before the first Linear', () => {
  test.each([false, true])('direct %s: a leading BatchNorm1d gets an error and is trained', async (direct) => {
    const rng = new Random(51);
    const net = feedbackAlignment(new Sequential([new BatchNorm1d(3), new Linear(3, 4), new ReLU(), new Linear(4, 2)]), { direct });
    // DFA: the leading BatchNorm joins the first block; FA: the first Linear sends dy·B down to it.
    if (direct)
      expect(net.blocks).toEqual([
        { start: 0, end: 3, width: 4 },
        { start: 3, end: 4, width: 2 },
      ]);
    else expect([...net.feedback.keys()]).toEqual([]); // drawn at initialize()
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 2 });
    expect([...net.feedback.keys()]).toEqual(direct ? [0] : [1, 3]);
    const { before, after } = await oneStep(trainer, batch(rng, 3, 2, 'classification'));
    // gamma (parameter 0) moves: an error reached the BatchNorm.
    expect(ref.maxAbs(after[0].map((v, i) => v - before[0][i]))).toBeGreaterThan(1e-6);
    trainer.dispose();
  });
});

describe('graph capture', () => {
  test.each(['fa', 'dfa', 'kickback'])('%s: captured steps give the same weights as uncaptured ones', async (method) => {
    const rng = new Random(41);
    const regression = method === 'kickback';
    const rows = 48;
    const x = ref.randomArray(rng, rows * 3);
    const data = regression
      ? new Dataset('d', x, ref.randomArray(rng, rows), 3, 1)
      : new Dataset('d', x, ref.randomLabels(rng, rows, 2), 3, 2);
    const run = async (graph: boolean) => {
      const model =
        method === 'kickback'
          ? kickback(new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 1)]))
          : feedbackAlignment(mlp(3, [5, 4], 2), { direct: method === 'dfa' });
      const trainer = new Trainer(model, {
        device: cpu,
        optimizer: () => new Adam({ lr: 0.01 }),
        seed: 1,
        ...(regression ? { loss: 'mse' as const } : {}),
      });
      await trainer.fit(data, { steps: 5, batchSize: 16, graph });
      const w = await weights(trainer);
      trainer.dispose();
      return w;
    };
    const [plain, captured] = [await run(false), await run(true)];
    captured.forEach((w, i) => ref.expectExact(`parameter ${i}`, w, plain[i]));
  });
});

describe('a short seeded run on a tiny problem: the loss falls', () => {
  // Two classes (and a regression target) from the sign of a fixed direction of the inputs.
  const rows = 64;
  const rng = new Random(31);
  const x = ref.randomArray(rng, rows * 4);
  const score = (r: number) => x[r * 4] + 0.5 * x[r * 4 + 1] - x[r * 4 + 2];
  const labels = Int32Array.from({ length: rows }, (_, r) => (score(r) > 0 ? 1 : 0));
  const targets = Float32Array.from({ length: rows }, (_, r) => Math.max(0, score(r)));
  const classes = new Dataset('blobs', x, labels, 4, 2);
  const regression = new Dataset('ramp', x, targets, 4, 1);

  async function losses(model: Module, data: Dataset, loss?: 'mse'): Promise<number[]> {
    const trainer = new Trainer(model, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: 2, ...(loss ? { loss } : {}) });
    const first = (await trainer.evaluate(data)).loss;
    await trainer.fit(data, { epochs: 30, batchSize: 16 });
    const last = (await trainer.evaluate(data)).loss;
    trainer.dispose();
    return [first, last];
  }

  test.each([
    ['FA', false],
    ['DFA', true],
  ])('%s on mlp(4, [8, 8], 2)', async (_, direct) => {
    const [first, last] = await losses(feedbackAlignment(mlp(4, [8, 8], 2), { direct }), classes);
    expect(last).toBeLessThan(0.6 * first);
  });

  test('Kickback on a rectifier regression net', async () => {
    const model = new Sequential([new Linear(4, 8), new ReLU(), new Linear(8, 8), new ReLU(), new Linear(8, 1)]);
    const [first, last] = await losses(kickback(model), regression, 'mse');
    expect(last).toBeLessThan(0.6 * first);
  });
});
