// The Synthesizer on its own: its options checked where it is built (each error names the
// synthesizer and the option), the network it builds by default (hidden layers, a last layer
// that starts at zero), several regression steps per target (updatesPerTarget) with masking or
// centring against a float64 hand computation, BatchNorm's running statistics counted once per
// target, and dispose(). Small shapes: every test runs in milliseconds.
import { Arena, BatchNorm1d, Device, Linear, Random, ReLU, SGD, Sequential, Stream, Synthesizer, Tensor } from '../ts';
import type { SynthesizerOptions } from '../ts';
import { Module } from '../ts/nn/module';
import { StepContext } from '../ts/nn/module';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

function context(stream: Stream, arena: Arena): StepContext {
  return { device: cpu, stream, training: true, arena };
}

async function values(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 1e-5, floor = 1e-6): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

describe('options are checked where the synthesizer is built', () => {
  const make = (options: SynthesizerOptions) => () => new Synthesizer('synthesizer 1', 4, 3, options);
  test.each([
    [{ updatesPerTarget: 0 }, RangeError, /^synthesizer 1: 'updatesPerTarget' must be an integer >= 1, got 0$/],
    [{ updatesPerTarget: 2.5 }, RangeError, /'updatesPerTarget' must be an integer >= 1, got 2.5/],
    [{ updatesPerTarget: -3 }, RangeError, /'updatesPerTarget' must be an integer >= 1, got -3/],
    [{ center: 1 as never }, TypeError, /^synthesizer 1: 'center' must be true or false, got 1$/],
    [{ maskInactive: 'yes' as never }, TypeError, /^synthesizer 1: 'maskInactive' must be true or false, got "yes"$/],
    [{ optimizer: 5 as never }, TypeError, /^synthesizer 1: 'optimizer' must be a function returning an Optimizer, got number$/],
    [{ lossWeight: 0 }, RangeError, /^synthesizer 1: 'lossWeight' must be a finite number > 0, got 0$/],
    [{ lossWeight: -2 }, RangeError, /'lossWeight' must be a finite number > 0, got -2/],
    [{ lossWeight: Infinity }, RangeError, /'lossWeight' must be a finite number > 0, got Infinity/],
    [{ network: () => ({}) as never }, TypeError, /^synthesizer 1: 'network' must return a Module$/],
    [
      { network: (i: number) => new Linear(i, 5) },
      RangeError,
      /^synthesizer 1: the synthesizer network outputs 5 features, the module's output has 4$/,
    ],
    [{ network: () => new Linear(7, 4) }, RangeError, /^synthesizer 1: the synthesizer network does not accept 4 input features/],
    [{ hidden: [0] }, RangeError, /^synthesizer 1: 'hidden' must be an array of positive integers, got \[0\]$/],
    [{ hidden: [3, 1.5] }, RangeError, /'hidden' must be an array of positive integers, got \[3,1.5\]/],
    [{ hidden: 8 as never }, RangeError, /'hidden' must be an array of positive integers, got 8/],
  ])('%j', (options, type, message) => {
    expect(make(options)).toThrow(type);
    expect(make(options)).toThrow(message);
  });

  test('the edges of the valid values are accepted', () => {
    const s = new Synthesizer('s', 4, 3, { updatesPerTarget: 1, lossWeight: 1e-9, hidden: [1], center: false, maskInactive: false });
    expect([s.updatesPerTarget, s.lossWeight, s.center, s.maskInactive]).toEqual([1, 1e-9, false, false]);
    expect(new Synthesizer('s', 4, 3, { optimizer: () => new SGD({ lr: 0.1 }) }).network).toBeInstanceOf(Sequential);
  });
});

describe('the network it builds', () => {
  const shape = (s: Synthesizer) =>
    (s.network as Sequential).layers.map((l) =>
      l instanceof Linear
        ? `Linear(${l.inFeatures},${l.outFeatures})`
        : l instanceof BatchNorm1d
          ? `BN(${l.features})`
          : l instanceof ReLU
            ? 'ReLU'
            : '?',
    );

  test('by default: two hidden layers of 1024 for DNI, none for cDNI (which sees [h, onehot(y)])', () => {
    expect(shape(new Synthesizer('s', 4, 3))).toEqual([
      'Linear(4,1024)',
      'BN(1024)',
      'ReLU',
      'Linear(1024,1024)',
      'BN(1024)',
      'ReLU',
      'Linear(1024,4)',
    ]);
    const c = new Synthesizer('s', 4, 3, { conditioned: true });
    expect(shape(c)).toEqual(['Linear(7,4)']);
    expect(c.inputs).toBe(7);
  });

  test('hidden [3, 2]: Linear → BatchNorm → ReLU per hidden layer, then a Linear that starts at zero', async () => {
    const s = new Synthesizer('s', 4, 3, { hidden: [3, 2] });
    expect(shape(s)).toEqual(['Linear(4,3)', 'BN(3)', 'ReLU', 'Linear(3,2)', 'BN(2)', 'ReLU', 'Linear(2,4)']);
    s.initialize(cpu, new Random(1), new SGD({ lr: 0.1 }));
    const stream = new Stream(cpu);
    const arena = new Arena();
    const h = Tensor.fromArray(ref.randomArray(new Random(2), 5 * 4), [5, 4], { device: cpu, arena });
    const labels = Tensor.zeros([5], { device: cpu, dtype: 'int32', arena });
    // Zero last layer: ĝ is exactly 0 whatever h, while the hidden layers are not zero.
    expect(ref.maxAbs(await values(s.predict(h, labels, context(stream, arena)).gradient, stream))).toBe(0);
    const first = (s.network as Sequential).layers[0] as Linear;
    expect(ref.maxAbs(await values(first.weight!.value, stream))).toBeGreaterThan(0);
    arena.dispose();
    s.dispose();
  });

  test('a custom network is used as given', () => {
    const net = new Sequential([new Linear(4, 6), new ReLU(), new Linear(6, 4)]);
    const s = new Synthesizer('s', 4, 3, { network: () => net, hidden: [1024] });
    expect(s.network).toBe(net);
    expect(s.network).toBeInstanceOf(Module);
  });
});

describe('updatesPerTarget = 2 against a float64 hand computation', () => {
  // A linear synthesizer M(h) = h Aᵀ + c on SGD. Each of the two steps regresses a fresh
  // prediction with the weights the step before left: step 1 from A0, step 2 from A1.
  const width = 4,
    B = 6,
    lr = 0.2;
  const centerRows = (v: ref.Vec) => {
    const mu = ref.columnSums(v, B, width).map((x) => x / B);
    return Float64Array.from(v, (x, k) => x - mu[k % width]);
  };
  test.each([
    ['masked (h > 0 only)', { maskInactive: true }],
    ['centred', { center: true }],
  ] as [string, SynthesizerOptions][])('%s', async (_, options) => {
    const rng = new Random(31);
    const hs = ref.f64(ref.randomArray(rng, B * width)).map((v) => Math.max(0, v));
    expect(hs.filter((v) => v === 0).length).toBeGreaterThan(3);
    const ts = ref.f64(ref.randomArray(rng, B * width, 0.01, 0.2));
    let A = ref.f64(ref.randomArray(rng, width * width, 0.05, 0.3)),
      c = ref.f64(ref.randomArray(rng, width, 0.05, 0.3));
    const s = new Synthesizer('s', width, 1, { hidden: [], updatesPerTarget: 2, ...options });
    s.initialize(cpu, new Random(3), new SGD({ lr }));
    const linear = (s.network as Sequential).layers[0] as Linear;
    await linear.weight!.assign(ref.toF32(A));
    await linear.bias!.assign(ref.toF32(c));
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx = context(stream, arena);
    const labels = Tensor.zeros([B], { device: cpu, dtype: 'int32', arena });
    const prediction = s.predict(Tensor.fromArray(ref.toF32(hs), [B, width], { device: cpu, arena }), labels, ctx);
    const loss = (await values(prediction.learn(Tensor.fromArray(ref.toF32(ts), [B, width], { device: cpu, arena }), ctx), stream))[0];

    let lastLoss = NaN;
    for (let k = 0; k < 2; k++) {
      const raw = ref.addBias(ref.gemm(false, true, { M: B, N: width, K: width }, 1, hs, A, 0, null), c, B, width);
      const m = options.center ? centerRows(raw) : raw;
      const active = (k2: number) => !options.maskInactive || hs[k2] > 0;
      const err = m.map((v, k2) => (active(k2) ? v - B * ts[k2] : 0));
      lastLoss = ref.dot(err, err) / err.length;
      const dOut = err.map((e) => (2 * e) / err.length);
      const dRaw = options.center ? centerRows(dOut) : dOut;
      A = A.map((a, k2) => a - lr * ref.gemm(true, false, { M: width, N: width, K: B }, 1, dRaw, hs, 0, null)[k2]);
      c = c.map((v, k2) => v - lr * ref.columnSums(dRaw, B, width)[k2]);
    }
    expectClose([loss], [lastLoss], 'the loss of the second step');
    expectClose(await values(linear.weight!.value, stream), A, 'A after two steps');
    expectClose(await values(linear.bias!.value, stream), c, 'c after two steps');
    arena.dispose();
    s.dispose();
  });

  test("BatchNorm's running statistics count each target's batch once, however many steps", async () => {
    const width = 3,
      B = 5;
    const s = new Synthesizer('s', width, 1, { hidden: [4], updatesPerTarget: 3 });
    s.initialize(cpu, new Random(4), new SGD({ lr: 0.1 }));
    const [first, bn] = (s.network as Sequential).layers as [Linear, BatchNorm1d];
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx = context(stream, arena);
    const hs = ref.randomArray(new Random(5), B * width);
    const W = await values(first.weight!.value, stream),
      b = await values(first.bias!.value, stream);
    const labels = Tensor.zeros([B], { device: cpu, dtype: 'int32', arena });
    const prediction = s.predict(Tensor.fromArray(hs, [B, width], { device: cpu, arena }), labels, ctx);
    await prediction
      .learn(Tensor.fromArray(ref.randomArray(new Random(6), B * width), [B, width], { device: cpu, arena }), ctx)
      .read(stream);
    // One update of the running statistics from the prediction's forward (momentum 0.1).
    const z = ref.addBias(ref.gemm(false, true, { M: B, N: 4, K: width }, 1, hs, W, 0, null), b, B, 4);
    const want = ref.batchNormTraining(
      z,
      new Float64Array(4).fill(1),
      new Float64Array(4),
      new Float64Array(4),
      new Float64Array(4).fill(1),
      B,
      4,
      0.1,
      1e-5,
    );
    expectClose(await values(bn.runningMean!, stream), want.runningMean, 'running mean', 1e-4);
    expectClose(await values(bn.runningVar!, stream), want.runningVar, 'running variance', 1e-4);
    arena.dispose();
    s.dispose();
  });
});

test("dispose() frees the network's parameters and the optimizer's state", async () => {
  const s = new Synthesizer('s', 3, 1, { hidden: [] });
  const o = new SGD({ lr: 0.1, momentum: 0.9 });
  s.initialize(cpu, new Random(1), o);
  const tensors = [...s.parameters().map((p) => p.value), ...o.stateTensors(s.parameters())];
  expect(tensors.length).toBe(4);
  expect(tensors.every((t) => !t.disposed)).toBe(true);
  s.dispose();
  expect(tensors.every((t) => t.disposed)).toBe(true);
});
