// Decoupled CNNs: a DNI and a cDNI step with a convolutional synthesizer against a float64 hand
// computation, one stream against one per module bit for bit, the trainer on image batches
// (fit, evaluate, predict, diagnostics, checkpoints), cDNI's label reaching the synthesizer,
// and the errors a bad image shape gives before anything runs.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  Arena,
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  Dataset,
  DecoupledTraining,
  Device,
  Flatten,
  Linear,
  Random,
  ReLU,
  SGD,
  Sequential,
  SoftmaxCrossEntropy,
  Stream,
  Synthesizer,
  Tensor,
  Trainer,
  cnn,
  decouple,
  mlp,
  predict,
} from '../ts';
import { StepContext } from '../ts/nn/module';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

async function values(t: Tensor, stream?: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel = 1e-4, floor = 1e-6): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`mismatch: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

/** An image batch's geometry: B examples of C channels, H×W. */
interface Img {
  B: number;
  C: number;
  H: number;
  W: number;
}

/** Cross-correlation of x [B, C, H, W] with w [O, C, K, K] (odd K, size-preserving zero padding) + b, in float64. */
function convSame(x: ref.Vec, s: Img, w: ref.Vec, O: number, K: number, b: ref.Vec | null): Float64Array {
  const { B, C, H, W } = s;
  const p = (K - 1) / 2;
  const y = new Float64Array(B * O * H * W);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) {
          let v = b ? b[o] : 0;
          for (let c = 0; c < C; c++)
            for (let u = 0; u < K; u++)
              for (let q = 0; q < K; q++) {
                const r = i + u - p,
                  t = j + q - p;
                if (r >= 0 && r < H && t >= 0 && t < W) v += w[((o * C + c) * K + u) * K + q] * x[((n * C + c) * H + r) * W + t];
              }
          y[((n * O + o) * H + i) * W + j] = v;
        }
  return y;
}

/** convSame's weight gradient [O, C, K, K] and bias gradient [O] for dy [B, O, H, W], in float64. */
function convGrads(x: ref.Vec, s: Img, dy: ref.Vec, O: number, K: number): { dw: Float64Array; db: Float64Array } {
  const { B, C, H, W } = s;
  const p = (K - 1) / 2;
  const dw = new Float64Array(O * C * K * K);
  const db = new Float64Array(O);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) {
          const g = dy[((n * O + o) * H + i) * W + j];
          db[o] += g;
          for (let c = 0; c < C; c++)
            for (let u = 0; u < K; u++)
              for (let q = 0; q < K; q++) {
                const r = i + u - p,
                  t = j + q - p;
                if (r >= 0 && r < H && t >= 0 && t < W) dw[((o * C + c) * K + u) * K + q] += g * x[((n * C + c) * H + r) * W + t];
              }
        }
  return { dw, db };
}

/** A classification Dataset of `rows` random images of `shape` with labels 0..classes-1 in turn. */
function images(rng: Random, rows: number, shape: number[], classes: number, name = 'images'): Dataset {
  const size = shape.reduce((a, b) => a * b, 1);
  const labels = Int32Array.from({ length: rows }, (_, i) => i % classes);
  return Dataset.fromArrays(ref.uniformArray(rng, rows * size, -1, 1), labels, { shape, name, classes });
}

/** The tiny CNN of the hand computations: Conv2d(2→2, 3x3 same) → ReLU | Flatten → Linear(32→3). */
function tinyCnn(): Sequential {
  return new Sequential([
    new Conv2d({ inChannels: 2, outChannels: 2, kernel: 3, padding: 'same' }),
    new ReLU(),
    new Flatten(),
    new Linear(32, 3),
  ]);
}

describe('one step of a decoupled CNN', () => {
  test.each([
    ['DNI', false, false],
    ['cDNI, regressing on active units (maskInactive)', true, true],
  ])('%s equals the update computed by hand (float64)', async (_, conditioned, maskInactive) => {
    // Module 1 = conv → ReLU, module 2 = flatten → linear, softmax cross-entropy, B = 3 images of
    // 2×4×4. The synthesizer is one 3x3 conv (no hidden layers): ĝ = conv(h ‖ label maps)/B.
    const s: Img = { B: 3, C: 2, H: 4, W: 4 };
    const classes = 3,
      lr = 0.1,
      lrSynth = 0.05;
    const model = tinyCnn();
    const net = decouple(model, {
      input: [2, 4, 4],
      synthesizer: { conditioned, maskInactive, filters: [], kernel: 3, optimizer: () => new SGD({ lr: lrSynth }) },
    });
    expect(net.config.cuts).toEqual([1]);
    const rng = new Random(21);
    net.initialize(cpu, rng.fork());
    const strategy = net.trainingStrategy({ loss: new SoftmaxCrossEntropy(), optimizer: () => new SGD({ lr }) }) as DecoupledTraining;
    const conv = model.layers[0] as Conv2d;
    const linear = model.layers[3] as Linear;
    const synth = (net.synthesizers[0].network as Sequential).layers[0] as Conv2d;
    const inC = 2 + (conditioned ? classes : 0); // the synthesizer's input channels
    expect(synth.inChannels).toBe(inC);
    // It starts at zero (the paper's initialisation); the test gives it weights so that ĝ ≠ 0.
    expect(ref.maxAbs(await values(synth.weight!.value))).toBe(0);
    const init = {
      W1: ref.uniformArray(rng, 2 * 2 * 9, -0.5, 0.5),
      b1: ref.uniformArray(rng, 2, -0.2, 0.2),
      W2: ref.uniformArray(rng, 3 * 32, -0.3, 0.3),
      b2: ref.uniformArray(rng, 3, -0.1, 0.1),
      A: ref.uniformArray(rng, 2 * inC * 9, -0.3, 0.3),
      c: ref.uniformArray(rng, 2, -0.1, 0.1),
    };
    await conv.weight!.assign(init.W1);
    await conv.bias!.assign(init.b1);
    await linear.weight!.assign(init.W2);
    await linear.bias!.assign(init.b2);
    await synth.weight!.assign(init.A);
    await synth.bias!.assign(init.c);
    const xs = ref.uniformArray(rng, 3 * 32, -1, 1);
    const labels = Int32Array.from([2, 0, 1]);

    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const x = Tensor.fromArray(xs, [3, 2, 4, 4], { device: cpu, arena });
    const y = Tensor.fromArray(labels, [3], { device: cpu, arena });
    const loss = await values(strategy.step(x, y, ctx), stream);

    // The hand computation.
    const { B } = s;
    const h = convSame(xs, s, init.W1, 2, 3, init.b1).map((v) => Math.max(v, 0));
    const logits = ref.addBias(ref.gemm(false, true, { M: B, N: 3, K: 32 }, 1, h, init.W2, 0, null), init.b2, B, 3);
    const probs = ref.softmax(logits, B, 3);
    const dOut = probs.map((v, k) => (v - (k % 3 === labels[Math.floor(k / 3)] ? 1 : 0)) / B);
    const delta = ref.gemm(false, false, { M: B, N: 32, K: 3 }, 1, dOut, init.W2, 0, null); // with the old W2
    const W2 = ref.f64(init.W2).map((w, k) => w - lr * ref.gemm(true, false, { M: 3, N: 32, K: B }, 1, dOut, h, 0, null)[k]);
    const b2 = ref.f64(init.b2).map((v, k) => v - lr * ref.columnSums(dOut, B, 3)[k]);
    // The synthesizer's input: h, then one constant map per class (1 where the label is that class).
    const input = new Float64Array(B * inC * 16);
    for (let n = 0; n < B; n++)
      for (let c = 0; c < inC; c++)
        for (let p = 0; p < 16; p++) input[(n * inC + c) * 16 + p] = c < 2 ? h[(n * 2 + c) * 16 + p] : c - 2 === labels[n] ? 1 : 0;
    const raw = convSame(input, { ...s, C: inC }, init.A, 2, 3, init.c);
    const synthetic = raw.map((v) => v / B);
    const dPre = synthetic.map((g, k) => (h[k] > 0 ? g : 0)); // through the ReLU
    const g1 = convGrads(xs, s, dPre, 2, 3);
    const W1 = ref.f64(init.W1).map((w, k) => w - lr * g1.dw[k]);
    const b1 = ref.f64(init.b1).map((v, k) => v - lr * g1.db[k]);
    // L2 onto the target B·δ (masked: only where h > 0, on both sides).
    const active = (k: number) => !maskInactive || h[k] > 0;
    const dRaw = raw.map((v, k) => (active(k) ? (2 * (v - B * delta[k])) / raw.length : 0));
    const gs = convGrads(input, { ...s, C: inC }, dRaw, 2, 3);
    const A = ref.f64(init.A).map((a, k) => a - lrSynth * gs.dw[k]);
    const c = ref.f64(init.c).map((v, k) => v - lrSynth * gs.db[k]);

    const ceLoss = ref.softmaxCrossEntropy(logits, labels, B, 3);
    expectClose([loss[0]], [ceLoss], 1e-5);
    expectClose(await values(linear.weight!.value, stream), W2);
    expectClose(await values(linear.bias!.value, stream), b2);
    expectClose(await values(conv.weight!.value, stream), W1);
    expectClose(await values(conv.bias!.value, stream), b1);
    expectClose(await values(synth.weight!.value, stream), A);
    expectClose(await values(synth.bias!.value, stream), c);
    // The module's update came from ĝ: it moved.
    expect(ref.compare(await values(conv.weight!.value, stream), init.W1).worst).toBeGreaterThan(1e-3);
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });
});

describe('the paper-style convolutional synthesizer', () => {
  test('image cuts get conv synthesizers, row cuts linear ones; centring applies at exact row cuts only', () => {
    const model = new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 2, kernel: 3, padding: 'same' }),
      new ReLU(),
      new Flatten(),
      new Linear(32, 6),
      new ReLU(),
      new Linear(6, 4),
      new BatchNorm1d(4),
      new ReLU(),
      new Linear(4, 2),
    ]);
    const net = decouple(model, { input: [1, 4, 4], synthesizer: { center: true, maskInactive: true, hidden: [5], filters: [3] } });
    expect(net.config.cuts).toEqual([1, 4, 7]);
    expect(net.synthesizers.map((s) => s.shape)).toEqual([[2, 4, 4], [6], [4]]);
    // Only the cut in front of Linear → BatchNorm1d centres; the image cut never does.
    expect(net.synthesizers.map((s) => s.center)).toEqual([false, true, false]);
    expect(net.synthesizers.map((s) => s.maskInactive)).toEqual([true, true, true]);
    expect(net.synthesizers.map((s) => s.network.name)).toEqual([
      'Sequential(Conv2d(2→3, 5, padding 2), BatchNorm2d(3), ReLU, Conv2d(3→2, 5, padding 2))',
      'Sequential(Linear(6→5), BatchNorm1d(5), ReLU, Linear(5→6))',
      'Sequential(Linear(4→5), BatchNorm1d(5), ReLU, Linear(5→4))',
    ]);
  });

  test('is hidden 5x5 conv → BatchNorm2d → ReLU layers of 128 filters and a zero 5x5 conv to the channels', () => {
    const net = decouple(cnn({ channels: 1, height: 12, width: 12, classes: 10, filters: 8, blocks: 2 }), {
      input: [1, 12, 12],
      synthesizer: { conditioned: true },
    });
    expect(net.synthesizers.map((s) => s.shape)).toEqual([
      [8, 12, 12],
      [8, 6, 6],
    ]);
    expect(net.synthesizers[0].network.name).toBe(
      'Sequential(Conv2d(18→128, 5, padding 2), BatchNorm2d(128), ReLU, Conv2d(128→128, 5, padding 2), BatchNorm2d(128), ReLU, ' +
        'Conv2d(128→8, 5, padding 2))',
    );
  });
});

/** Trains a small decoupled CNN (cDNI, BatchNorm2d in the model and the synthesizers) and returns every state tensor's values. */
async function trainedState(options: { streams: 'single' | 'per-module'; graph?: boolean; steps: number; checkpoint?: string }) {
  const rng = new Random(3);
  const data = images(rng, 40, [1, 6, 6], 3);
  const net = decouple(cnn({ channels: 1, height: 6, width: 6, classes: 3, filters: 3, blocks: 2, kernel: 3 }), {
    input: [1, 6, 6],
    streams: options.streams,
    synthesizer: { conditioned: true, filters: [4], kernel: 3 },
  });
  const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: 9 });
  try {
    await trainer.fit(data, {
      steps: options.steps,
      batchSize: 16,
      graph: options.graph ?? false,
      ...(options.checkpoint ? { checkpoint: { path: options.checkpoint, every: 2 } } : {}),
    });
    return await Promise.all(net.stateTensors().map((t) => values(t, trainer.stream)));
  } finally {
    trainer.dispose();
  }
}

describe('streams, graphs and checkpoints of a decoupled CNN', () => {
  test('one stream per module gives the same weights as one stream, bit for bit (and a captured step too)', async () => {
    const single = await trainedState({ streams: 'single', steps: 6 });
    const perModule = await trainedState({ streams: 'per-module', steps: 6 });
    const graph = await trainedState({ streams: 'per-module', steps: 6, graph: true });
    expect(single.length).toBeGreaterThan(10);
    single.forEach((v, i) => {
      ref.expectExact(`tensor ${i}, per-module`, perModule[i], v);
      ref.expectExact(`tensor ${i}, graph`, graph[i], v);
    });
  });

  test('a run resumed from its checkpoint ends where the uninterrupted run does (weights, BatchNorm2d statistics, synthesizers)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conv-dni-'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const whole = await trainedState({ streams: 'per-module', steps: 5 });
      await trainedState({ streams: 'per-module', steps: 2, checkpoint: file });
      const resumed = await trainedState({ streams: 'per-module', steps: 5, checkpoint: file });
      whole.forEach((v, i) => ref.expectExact(`tensor ${i}`, resumed[i], v));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cDNI on images', () => {
  test('the label reaches the synthesizer: once trained, the same h with other labels gives another ĝ', async () => {
    const rng = new Random(4);
    const data = images(rng, 48, [1, 6, 6], 3);
    const net = decouple(cnn({ channels: 1, height: 6, width: 6, classes: 3, filters: 3, blocks: 1, kernel: 3 }), {
      input: [1, 6, 6],
      synthesizer: { conditioned: true, filters: [4], kernel: 3 },
    });
    const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: 2 });
    const synth = net.synthesizers[0];
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream: trainer.stream, training: true, freezeStatistics: true, arena };
    const h = Tensor.fromArray(ref.uniformArray(rng, 4 * 3 * 36, 0, 1), [4, 3, 6, 6], { device: cpu, arena });
    const ghat = async (labels: number[]) =>
      values(synth.predict(h, Tensor.fromArray(Int32Array.from(labels), [4], { device: cpu, arena }), ctx).gradient, trainer.stream);
    try {
      // Untrained, M's last conv is zero: ĝ = 0 whatever the label.
      expect(ref.maxAbs(await ghat([0, 1, 2, 0]))).toBe(0);
      await trainer.fit(data, { steps: 6, batchSize: 16 });
      const a = await ghat([0, 1, 2, 0]);
      const b = await ghat([1, 2, 0, 2]);
      expect(ref.maxAbs(a)).toBeGreaterThan(0);
      // Differences of at least 1e-3 of ĝ's size: far above float32 rounding (~1e-7 relative).
      expect(ref.maxAbs(a.map((v, k) => v - b[k]))).toBeGreaterThan(1e-3 * ref.maxAbs(a));
    } finally {
      arena.dispose();
      trainer.dispose();
    }
  });
});

describe('the trainer on images', () => {
  test('evaluate and predict feed [rows, C, H, W] and agree with a float64 forward pass', async () => {
    const rng = new Random(8);
    const data = images(rng, 5, [2, 4, 4], 3);
    const model = tinyCnn();
    const trainer = new Trainer(model, { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    try {
      const [W1, b1, W2, b2] = await Promise.all(model.parameters().map((p) => values(p.value)));
      const h = convSame(data.inputs, { B: 5, C: 2, H: 4, W: 4 }, W1, 2, 3, b1).map((v) => Math.max(v, 0));
      const logits = ref.addBias(ref.gemm(false, true, { M: 5, N: 3, K: 32 }, 1, h, W2, 0, null), b2, 5, 3);
      expectClose((await trainer.predict(data, { batchSize: 2 })).outputs, logits);
      const evaluation = await trainer.evaluate(data, { batchSize: 3 });
      expectClose([evaluation.loss], [ref.softmaxCrossEntropy(logits, data.labels, 5, 3)], 1e-5);
      const tensor = Tensor.fromArray(data.inputs, [5, 2, 4, 4], { device: cpu });
      expectClose((await predict(model, tensor)).outputs, logits);
      tensor.dispose();
    } finally {
      trainer.dispose();
    }
  });

  test('an mlp() trains on image-shaped data as [rows, features]; a CNN model states that it takes images', async () => {
    const rng = new Random(1);
    const data = images(rng, 20, [1, 4, 4], 2);
    const trainer = new Trainer(mlp(16, [8], 2), { device: cpu, optimizer: new Adam({ lr: 0.01 }) });
    try {
      const result = await trainer.fit(data, { steps: 3, batchSize: 8 });
      expect(result.steps).toBe(3);
      expect((await trainer.predict(data)).rows).toBe(20);
    } finally {
      trainer.dispose();
    }
    const model = cnn({ channels: 1, height: 28, width: 28, classes: 10, filters: 4 });
    expect(model.inputShape()).toEqual({ kind: 'images', channels: 1 });
    expect(model.inputFeatures()).toBeUndefined(); // it used to be the classifier's width
    expect(mlp(784, [8], 10).inputShape()).toEqual({ kind: 'rows', features: 784 });
  });

  test('the diagnostics probe measures the synthesizers on image batches', async () => {
    const rng = new Random(6);
    const data = images(rng, 32, [1, 6, 6], 3);
    const net = decouple(cnn({ channels: 1, height: 6, width: 6, classes: 3, filters: 3, blocks: 2, kernel: 3 }), {
      input: [1, 6, 6],
      synthesizer: { filters: [4], kernel: 3 },
    });
    const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }) });
    const seen: number[][] = [];
    try {
      await trainer.fit(data, {
        steps: 4,
        batchSize: 16,
        diagnoseEvery: 2,
        onStep: (m) => {
          if (m.diagnostics) seen.push(m.diagnostics.map((d) => d.module));
          for (const d of m.diagnostics ?? [])
            for (const v of [d.synthesizerLoss, d.cosine, d.normRatio]) expect(Number.isFinite(v)).toBe(true);
        },
      });
    } finally {
      trainer.dispose();
    }
    expect(seen).toEqual([
      [1, 2],
      [1, 2],
    ]);
  });

  test('BatchNorm2d needs 2 rows only where one row reaches it as 1x1 images', async () => {
    const net = () =>
      new Sequential([
        new Conv2d({ inChannels: 1, outChannels: 2, kernel: 1 }),
        new BatchNorm2d(2),
        new ReLU(),
        new Flatten(),
        new Linear(2, 2),
      ]);
    const rng = new Random(2);
    const tiny = new Trainer(net(), { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    await expect(tiny.fit(images(rng, 4, [1, 1, 1], 2), { steps: 1, batchSize: 1 })).rejects.toThrow(
      /'batchSize' must be at least 2 for this model, got 1: BatchNorm2d\(2\) normalises with batch statistics/,
    );
    tiny.dispose();
    const wide = new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 2, kernel: 1 }),
      new BatchNorm2d(2),
      new ReLU(),
      new Flatten(),
      new Linear(8, 2),
    ]);
    const trainer = new Trainer(wide, { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    try {
      expect((await trainer.fit(images(rng, 3, [1, 2, 2], 2), { epochs: 1, batchSize: 1 })).steps).toBe(3);
    } finally {
      trainer.dispose();
    }
  });
});

describe('errors before anything runs', () => {
  const rng = new Random(5);

  test.each([
    [
      'images of other channels',
      [3, 8, 8],
      /fit: 'data' \(images\) does not fit the model: Conv2d\(1→4, 5, padding 2\): expects images \[batch, 1, height, width\], got shape \[8, 3, 8, 8\]/,
    ],
    [
      'an image smaller than the kernel after padding',
      [1, 2, 2],
      /fit: 'data' \(images\) does not fit the model: .*a kernel larger than the padded input/,
    ],
    [
      'rows without an image shape',
      [64],
      /fit: 'data' \(images\) has rows of shape \[64\], but the model takes images \[1, height, width\]: give the Dataset its image shape/,
    ],
  ])('fit on %s', async (_, shape, message) => {
    // kernel 5 without padding in front of the pools makes 2x2 images too small for the first conv.
    const model = new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 4, kernel: 5, padding: shape[1] === 2 ? 0 : 'same' }),
      new ReLU(),
      new Flatten(),
      new Linear(shape[1] === 2 ? 4 : 256, 2),
    ]);
    const trainer = new Trainer(model, { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    try {
      const data = images(rng, 8, shape, 2);
      await expect(trainer.fit(data, { steps: 1 })).rejects.toThrow(message);
      await expect(trainer.evaluate(data)).rejects.toThrow(new RegExp(message.source.replace("fit: 'data'", "evaluate: 'data'")));
    } finally {
      trainer.dispose();
    }
  });

  test("decouple on images needs 'input', and checks it and the data against it", async () => {
    const model = () => cnn({ channels: 1, height: 8, width: 8, classes: 2, filters: 2, blocks: 1, kernel: 3 });
    expect(() => decouple(model())).toThrow(/decouple: the model takes images: give 'input', the shape of one example/);
    expect(() => decouple(model(), { input: [3, 8, 8] })).toThrow(
      /decouple: 'input' \[3, 8, 8\] does not fit the model: Conv2d\(1→2, 3, padding 1\)/,
    );
    expect(() => decouple(model(), { input: [1, -8, 8] as never })).toThrow(/decouple: 'input' must be the shape of one example/);
    expect(() => decouple(model(), { input: [1, 8, 8], synthesizer: { kernel: 4 } })).toThrow(/'kernel' must be an odd positive integer/);
    expect(() => decouple(model(), { input: [1, 8, 8], synthesizer: { filters: [0] } })).toThrow(
      /'filters' must be an array of positive integers/,
    );
    expect(() => new Synthesizer('s', [2, 4, 4], 3, { center: true })).toThrow(/s: 'center' applies to row cuts only/);
    const trainer = new Trainer(decouple(model(), { input: [1, 8, 8] }), { device: cpu, optimizer: () => new SGD({ lr: 0.1 }) });
    try {
      await expect(trainer.fit(images(rng, 8, [1, 6, 6], 2), { steps: 1 })).rejects.toThrow(
        /fit: 'data' \(images\) does not fit the model: DNI\(2 modules, cuts after layers 2\): built for examples of shape \[1, 8, 8\] \(decouple's 'input'\), got \[1, 6, 6\]/,
      );
    } finally {
      trainer.dispose();
    }
  });
});
