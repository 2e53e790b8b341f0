// Options that no other test reaches, each against an independent computation: decouple's
// at: 'every-layer' and classes, the synthesizer's lossWeight and custom network, Tanh and
// Sigmoid layers, evaluation with BatchNorm's running statistics, Device.best/Device.parse,
// SYNTHGRAD_DEVICE and SYNTHGRAD_NUM_THREADS.
import { spawnSync } from 'child_process';
import * as path from 'path';
import {
  Arena,
  BatchNorm1d,
  Dataset,
  Device,
  Linear,
  MeanSquaredError,
  native,
  SoftmaxCrossEntropy,
  Random,
  ReLU,
  SGD,
  Sequential,
  Sigmoid,
  Stream,
  Tanh,
  Tensor,
  Trainer,
  decouple,
  mlp,
} from '../ts';
import { StepContext } from '../ts/nn/module';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 1e-5, floor = 1e-6): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

async function values(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function context(stream: Stream, arena: Arena, training = true): StepContext {
  return { device: cpu, stream, training, arena };
}

describe("decouple's cuts and classes", () => {
  test("at: 'every-layer' makes one module per layer, each with a synthesizer of its output's width", () => {
    const model = mlp(8, [6, 5], 3); // Linear BN ReLU Linear BN ReLU Linear: 7 layers
    const net = decouple(model, { at: 'every-layer' });
    expect(net.config.cuts).toEqual([0, 1, 2, 3, 4, 5]);
    expect(net.modules.map((m) => m.layers)).toEqual(model.layers.map((l) => [l]));
    expect(net.synthesizers.map((s) => s.width)).toEqual([6, 6, 6, 5, 5, 5]);
  });

  test('cuts after Tanh and Sigmoid too (every-activation)', () => {
    const net = decouple(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 4), new Sigmoid(), new Linear(4, 2)]));
    expect(net.config.cuts).toEqual([1, 3]);
  });

  test('classes: a cDNI synthesizer predicts from [h, onehot(y, classes)] (float64)', async () => {
    const B = 7,
      width = 4,
      classes = 7;
    const net = decouple(new Sequential([new Linear(3, width), new Linear(width, 3)]), {
      at: [0],
      classes,
      synthesizer: { conditioned: true, hidden: [] },
    });
    const rng = new Random(2);
    net.initialize(cpu, rng.fork());
    const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new SGD({ lr: 0.1 }) });
    const synth = net.synthesizers[0];
    expect(synth.inputs).toBe(width + classes);
    const linear = (synth.network as Sequential).layers[0] as Linear;
    const A = ref.randomArray(rng, width * (width + classes)),
      c = ref.randomArray(rng, width);
    await linear.weight!.assign(A);
    await linear.bias!.assign(c);
    const stream = new Stream(cpu),
      arena = new Arena();
    const hs = ref.randomArray(rng, B * width);
    const labels = Int32Array.from({ length: B }, (_, i) => i % classes); // every class, beyond the output's 3
    const p = synth.predict(
      Tensor.fromArray(hs, [B, width], { device: cpu, arena }),
      Tensor.fromArray(labels, [B], { device: cpu, arena }),
      context(stream, arena),
    );
    const input = ref.concatColumns(hs, ref.oneHot(labels, classes), B, width, classes);
    const want = ref
      .addBias(ref.gemm(false, true, { M: B, N: width, K: width + classes }, 1, input, A, 0, null), c, B, width)
      .map((v) => v / B);
    expectClose(await values(p.gradient, stream), want, 'ĝ');
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });
});

describe('synthesizer options', () => {
  test('lossWeight scales the regression gradient (float64, SGD)', async () => {
    const B = 5,
      width = 4,
      lr = 0.1,
      weight = 3;
    const net = decouple(new Sequential([new Linear(3, width), new Linear(width, 2)]), {
      at: [0],
      synthesizer: { hidden: [], lossWeight: weight, optimizer: () => new SGD({ lr }) },
    });
    expect(net.synthesizers[0].lossWeight).toBe(weight);
    const rng = new Random(4);
    net.initialize(cpu, rng.fork());
    const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new SGD({ lr }) });
    const synth = net.synthesizers[0];
    const linear = (synth.network as Sequential).layers[0] as Linear;
    const A = ref.randomArray(rng, width * width),
      c = ref.randomArray(rng, width);
    await linear.weight!.assign(A);
    await linear.bias!.assign(c);
    const stream = new Stream(cpu),
      arena = new Arena();
    const hs = ref.randomArray(rng, B * width),
      ts = ref.randomArray(rng, B * width, 0.01, 0.2);
    const ctx = context(stream, arena);
    const p = synth.predict(
      Tensor.fromArray(hs, [B, width], { device: cpu, arena }),
      Tensor.zeros([B], { device: cpu, dtype: 'int32', arena }),
      ctx,
    );
    const loss = (await values(p.learn(Tensor.fromArray(ts, [B, width], { device: cpu, arena }), ctx), stream))[0];
    const raw = ref.addBias(ref.gemm(false, true, { M: B, N: width, K: width }, 1, hs, A, 0, null), c, B, width);
    const err = raw.map((v, k) => v - B * ts[k]);
    expectClose([loss], [ref.dot(err, err) / err.length], 'loss (unweighted)');
    const dRaw = err.map((e) => (weight * 2 * e) / err.length);
    const gA = ref.gemm(true, false, { M: width, N: width, K: B }, 1, dRaw, hs, 0, null);
    expectClose(
      await values(linear.weight!.value, stream),
      ref.f64(A).map((a, k) => a - lr * gA[k]),
      'A',
    );
    expectClose(
      await values(linear.bias!.value, stream),
      ref.f64(c).map((v, k) => v - lr * ref.columnSums(dRaw, B, width)[k]),
      'c',
    );
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });

  test('a custom network is built with (inputs, outputs) and is what predicts (float64, Tanh inside)', async () => {
    const B = 4,
      width = 5;
    const calls: [number, number][] = [];
    const net = decouple(new Sequential([new Linear(3, width), new ReLU(), new Linear(width, 2)]), {
      synthesizer: {
        conditioned: true,
        network: (i, o) => {
          calls.push([i, o]);
          return new Sequential([new Linear(i, 6), new Tanh(), new Linear(6, o)]);
        },
      },
    });
    expect(calls).toEqual([[width + 2, width]]);
    const rng = new Random(6);
    net.initialize(cpu, rng.fork());
    const strategy = net.trainingStrategy({ loss: new SoftmaxCrossEntropy(), optimizer: () => new SGD({ lr: 0.1 }) });
    const [l1, , l2] = (net.synthesizers[0].network as Sequential).layers as Linear[];
    const W1 = ref.randomArray(rng, 6 * (width + 2)),
      b1 = ref.randomArray(rng, 6),
      W2 = ref.randomArray(rng, width * 6),
      b2 = ref.randomArray(rng, width);
    await l1.weight!.assign(W1);
    await l1.bias!.assign(b1);
    await l2.weight!.assign(W2);
    await l2.bias!.assign(b2);
    const stream = new Stream(cpu),
      arena = new Arena();
    const hs = ref.randomArray(rng, B * width),
      labels = Int32Array.from([0, 1, 1, 0]);
    const p = net.synthesizers[0].predict(
      Tensor.fromArray(hs, [B, width], { device: cpu, arena }),
      Tensor.fromArray(labels, [B], { device: cpu, arena }),
      context(stream, arena),
    );
    const input = ref.concatColumns(hs, ref.oneHot(labels, 2), B, width, 2);
    const hidden = ref.activation(
      'tanh',
      ref.addBias(ref.gemm(false, true, { M: B, N: 6, K: width + 2 }, 1, input, W1, 0, null), b1, B, 6),
    );
    const want = ref.addBias(ref.gemm(false, true, { M: B, N: width, K: 6 }, 1, hidden, W2, 0, null), b2, B, width).map((v) => v / B);
    expectClose(await values(p.gradient, stream), want, 'ĝ');
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });
});

describe('Tanh and Sigmoid layers', () => {
  test('forward and backward of Linear → Tanh → Linear → Sigmoid (float64)', async () => {
    const B = 5;
    const l1 = new Linear(3, 4),
      l2 = new Linear(4, 2);
    const model = new Sequential([l1, new Tanh(), l2, new Sigmoid()]);
    const rng = new Random(8);
    model.initialize(cpu, rng.fork());
    const stream = new Stream(cpu),
      arena = new Arena();
    const W1 = await values(l1.weight!.value, stream),
      b1 = await values(l1.bias!.value, stream);
    const W2 = await values(l2.weight!.value, stream),
      b2 = await values(l2.bias!.value, stream);
    const xs = ref.randomArray(rng, B * 3),
      dy = ref.randomArray(rng, B * 2);
    const f = model.forward(Tensor.fromArray(xs, [B, 3], { device: cpu, arena }), context(stream, arena));
    const dx = f.backward(Tensor.fromArray(dy, [B, 2], { device: cpu, arena }), context(stream, arena), true)!;
    const forward = (x: ArrayLike<number>) => {
      const t = ref.activation('tanh', ref.addBias(ref.gemm(false, true, { M: B, N: 4, K: 3 }, 1, x, W1, 0, null), b1, B, 4));
      return ref.activation('sigmoid', ref.addBias(ref.gemm(false, true, { M: B, N: 2, K: 4 }, 1, t, W2, 0, null), b2, B, 2));
    };
    expectClose(await values(f.output, stream), forward(xs), 'output');
    const numeric = ref.numericGrad((x) => ref.dot(dy, forward(x)), xs, 1e-6);
    expectClose(await values(dx, stream), numeric, 'dx', 1e-4, 1e-6);
    const gW1 = ref.numericGrad(
      (w) => {
        const t = ref.activation('tanh', ref.addBias(ref.gemm(false, true, { M: B, N: 4, K: 3 }, 1, xs, w, 0, null), b1, B, 4));
        return ref.dot(
          dy,
          ref.activation('sigmoid', ref.addBias(ref.gemm(false, true, { M: B, N: 2, K: 4 }, 1, t, W2, 0, null), b2, B, 2)),
        );
      },
      W1,
      1e-6,
    );
    expectClose(await values(l1.weight!.grad, stream), gW1, 'dW1', 1e-4, 1e-6);
    arena.dispose();
    model.dispose();
  });
});

describe('evaluation', () => {
  test("uses BatchNorm's running statistics, not the batch's (float64 loss and accuracy)", async () => {
    const rng = new Random(12);
    const features = 6,
      classes = 3;
    const train = new Dataset('train', rng.uniformArray(128 * features, 0, 2), ref.randomLabels(rng, 128, classes), features, classes);
    const test = new Dataset('test', rng.uniformArray(40 * features, -1, 3), ref.randomLabels(rng, 40, classes), features, classes);
    const model = mlp(features, [5], classes); // Linear BN ReLU Linear
    const net = decouple(model);
    const trainer = new Trainer(net, { device: cpu, optimizer: () => new SGD({ lr: 0.1 }), seed: 3 });
    await trainer.fit(train, { steps: 5, batchSize: 32 });
    const got = await trainer.evaluate(test, { batchSize: 16 }); // batches of 16, 16, 8: batch statistics would differ per batch
    const s = trainer.stream;
    const [l1, bn, , l2] = model.layers as [Linear, BatchNorm1d, ReLU, Linear];
    const mean = await values(bn.runningMean!, s),
      variance = await values(bn.runningVar!, s);
    expect(ref.maxAbs(mean)).toBeGreaterThan(0.01); // moved from their initial 0 and 1
    expect(ref.maxAbs(variance.map((v) => v - 1))).toBeGreaterThan(0.01);
    const n = test.count;
    const z = ref.addBias(
      ref.gemm(false, true, { M: n, N: 5, K: features }, 1, test.inputs, await values(l1.weight!.value, s), 0, null),
      await values(l1.bias!.value, s),
      n,
      5,
    );
    const h = ref.activation(
      'relu',
      ref.batchNormInference(z, await values(bn.gamma!.value, s), await values(bn.beta!.value, s), mean, variance, n, 5, bn.eps),
    );
    const logits = ref.addBias(
      ref.gemm(false, true, { M: n, N: classes, K: 5 }, 1, h, await values(l2.weight!.value, s), 0, null),
      await values(l2.bias!.value, s),
      n,
      classes,
    );
    let correct = 0;
    for (let r = 0; r < n; r++) {
      const row = Array.from(logits.subarray(r * classes, (r + 1) * classes));
      if (row.indexOf(Math.max(...row)) === test.labels[r]) correct++;
    }
    expectClose([got.loss], [ref.softmaxCrossEntropy(logits, test.labels, n, classes)], 'loss', 1e-5);
    expect(got.accuracy).toBe(correct / n);
    trainer.dispose();
  });
});

describe('devices', () => {
  const cudaDevices = native.buildInfo().cudaDevices;
  test('Device.parse', () => {
    expect(Device.parse('cpu').name).toBe('cpu');
    expect(Device.parse('cpu').equals(cpu)).toBe(true);
    expect(() => Device.parse('gpu')).toThrow(TypeError);
    expect(() => Device.parse('cuda:x')).toThrow(/Device.parse: expected 'cpu' or 'cuda:N', got 'cuda:x'/);
    if (cudaDevices > 0) expect(Device.parse('cuda:0').name).toBe('cuda:0');
    else expect(() => Device.parse('cuda:0')).toThrow(RangeError);
    expect(() => Device.parse(`cuda:${cudaDevices}`)).toThrow(/cuda:\d+ is not available/);
  });

  test('Device.best: cuda:0 when present, else the CPU; SYNTHGRAD_DEVICE overrides it', () => {
    const saved = process.env.SYNTHGRAD_DEVICE;
    try {
      delete process.env.SYNTHGRAD_DEVICE;
      expect(Device.best().name).toBe(cudaDevices > 0 ? 'cuda:0' : 'cpu');
      process.env.SYNTHGRAD_DEVICE = 'cpu';
      expect(Device.best().name).toBe('cpu');
      process.env.SYNTHGRAD_DEVICE = 'tpu:0';
      expect(() => Device.best()).toThrow(/got 'tpu:0'/);
    } finally {
      if (saved === undefined) delete process.env.SYNTHGRAD_DEVICE;
      else process.env.SYNTHGRAD_DEVICE = saved;
    }
  });
});

describe('SYNTHGRAD_NUM_THREADS', () => {
  // Read once when the addon loads: checked in a fresh process each time.
  const root = path.resolve(__dirname, '..');
  const probe =
    `const {native}=require(${JSON.stringify(path.join(root, 'dist/ts/native'))});` +
    'const {Tensor,Device,Stream}=require(' +
    JSON.stringify(path.join(root, 'dist/ts')) +
    ');' +
    // A GEMM big enough to be split across threads: its result must not depend on the count.
    'const cpu=Device.cpu(),s=new Stream(cpu),n=300,a=new Float32Array(n*n).map((_,i)=>Math.sin(i)),b=a.map((v)=>v*0.5);' +
    'const A=Tensor.fromArray(a,[n,n],{device:cpu}),B=Tensor.fromArray(b,[n,n],{device:cpu}),C=Tensor.zeros([n,n],{device:cpu});' +
    'native.ops.gemm(s.handle,A.handle,B.handle,C.handle,false,true,1,0);' +
    'C.readFloat32(s).then((c)=>{let h=0;for(const v of c)h=(h*31+Math.round(v*1e3))%1000000007;console.log(JSON.stringify({threads:native.threads(),hash:h}))});';
  const run = (threads: string) => {
    const r = spawnSync(process.execPath, ['-e', probe], {
      env: { ...process.env, SYNTHGRAD_NUM_THREADS: threads },
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number; hash: number };
  };
  test('sets the thread count, and results do not depend on it', () => {
    const one = run('1'),
      three = run('3');
    expect(one.threads).toBe(1);
    expect(three.threads).toBe(3);
    expect(three.hash).toBe(one.hash);
  });
});
