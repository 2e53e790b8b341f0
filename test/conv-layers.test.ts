// The convolutional layers (ts/nn/conv.ts) on the CPU device: Conv2d, MaxPool2d, AvgPool2d,
// BatchNorm2d, Flatten and cnn().
//   - shapes: outputShape for 'same' and strided convolutions, pools and Flatten; errors at
//     construction and in forward that name the layer and the argument;
//   - BatchNorm2d against a float64 per-channel batch norm over (N, H, W) written here directly
//     on NCHW (not through the channels-last transform the layer uses): output, running
//     statistics, and the backward's dx, dgamma, dbeta;
//   - backpropagation through Conv2d → BatchNorm2d → ReLU → MaxPool2d → Flatten → Linear against
//     float64 central finite differences of a float64 reference of the same network;
//   - a tiny CNN trained a few SGD steps on random data: its loss goes down;
//   - cnn(): its layers and shapes.
// Tolerances: the network's gradients are float32 computations judged against float64 finite
// differences: 1e-3 of the gradient's scale (a wrong term is off by far more; float32 rounding
// of ~10^2-term sums is ~1e-6 relative).
import {
  Arena,
  AvgPool2d,
  BatchNorm2d,
  cnn,
  Conv2d,
  Device,
  Flatten,
  Linear,
  MaxPool2d,
  Random,
  ReLU,
  Sequential,
  SGD,
  SoftmaxCrossEntropy,
  Stream,
  Tensor,
} from '../ts';
import type { StepContext } from '../ts';
import * as ref from './helpers/reference';
import { expectClose } from './helpers/reference';

const cpu = Device.cpu();
const stream = Stream.default(cpu);

async function read(t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

function step(arena: Arena, training = true): StepContext {
  return { device: cpu, stream, training, arena };
}

// ---- float64 references on NCHW ------------------------------------------------------------

interface Img {
  N: number;
  C: number;
  H: number;
  W: number;
}

/** 'same' 3x3 convolution, stride 1: w [K, C, 3, 3], b [K] (or none). */
function convSame3(x: ref.Vec, s: Img, w: ref.Vec, K: number, b: ref.Vec | null): Float64Array {
  const y = new Float64Array(s.N * K * s.H * s.W);
  for (let n = 0; n < s.N; n++)
    for (let k = 0; k < K; k++)
      for (let h = 0; h < s.H; h++)
        for (let v = 0; v < s.W; v++) {
          let acc = b ? b[k] : 0;
          for (let c = 0; c < s.C; c++)
            for (let i = 0; i < 3; i++)
              for (let j = 0; j < 3; j++) {
                const ih = h - 1 + i,
                  iw = v - 1 + j;
                if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
                  acc += w[((k * s.C + c) * 3 + i) * 3 + j] * x[((n * s.C + c) * s.H + ih) * s.W + iw];
              }
          y[((n * K + k) * s.H + h) * s.W + v] = acc;
        }
  return y;
}

/** Per-channel training-mode batch norm over (N, H, W), biased variance. */
function batchNorm2d(x: ref.Vec, s: Img, gamma: ref.Vec, beta: ref.Vec, eps: number) {
  const m = s.N * s.H * s.W,
    hw = s.H * s.W;
  const mean = new Float64Array(s.C),
    variance = new Float64Array(s.C);
  for (let n = 0; n < s.N; n++) for (let c = 0; c < s.C; c++) for (let q = 0; q < hw; q++) mean[c] += x[(n * s.C + c) * hw + q] / m;
  for (let n = 0; n < s.N; n++)
    for (let c = 0; c < s.C; c++) for (let q = 0; q < hw; q++) variance[c] += (x[(n * s.C + c) * hw + q] - mean[c]) ** 2 / m;
  const y = new Float64Array(x.length);
  for (let n = 0; n < s.N; n++)
    for (let c = 0; c < s.C; c++)
      for (let q = 0; q < hw; q++) {
        const i = (n * s.C + c) * hw + q;
        y[i] = ((x[i] - mean[c]) / Math.sqrt(variance[c] + eps)) * gamma[c] + beta[c];
      }
  return { y, mean, variance };
}

/** 2x2 max pool, stride 2 (even sizes). */
function maxPool2(x: ref.Vec, s: Img): Float64Array {
  const OH = s.H / 2,
    OW = s.W / 2;
  const y = new Float64Array(s.N * s.C * OH * OW);
  for (let p = 0; p < s.N * s.C; p++)
    for (let h = 0; h < OH; h++)
      for (let v = 0; v < OW; v++) {
        let best = -Infinity;
        for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) best = Math.max(best, x[(p * s.H + 2 * h + i) * s.W + 2 * v + j]);
        y[(p * OH + h) * OW + v] = best;
      }
  return y;
}

// ---- shapes and errors -----------------------------------------------------------------------

describe('shapes', () => {
  test('outputShape of each layer', () => {
    expect(new Conv2d({ inChannels: 3, outChannels: 8, kernel: 5, padding: 'same' }).outputShape([2, 3, 32, 30])).toEqual([2, 8, 32, 30]);
    expect(new Conv2d({ inChannels: 3, outChannels: 8, kernel: 3, padding: 'same', stride: 2 }).outputShape([2, 3, 7, 8])).toEqual([
      2, 8, 4, 4,
    ]);
    expect(new Conv2d({ inChannels: 1, outChannels: 2, kernel: [3, 1] }).outputShape([1, 1, 5, 5])).toEqual([1, 2, 3, 5]);
    expect(new MaxPool2d({ kernel: 3, stride: 2, padding: 1 }).outputShape([4, 6, 32, 31])).toEqual([4, 6, 16, 16]);
    expect(new AvgPool2d({ kernel: 2 }).outputShape([4, 6, 9, 8])).toEqual([4, 6, 4, 4]);
    expect(new BatchNorm2d(6).outputShape([4, 6, 9, 8])).toEqual([4, 6, 9, 8]);
    expect(new Flatten().outputShape([4, 6, 9, 8])).toEqual([4, 432]);
    const net = new Sequential([
      new Conv2d({ inChannels: 3, outChannels: 4, kernel: 3, padding: 1 }),
      new ReLU(),
      new MaxPool2d({ kernel: 2 }),
      new Flatten(),
      new Linear(64, 10),
    ]);
    expect(net.outputShape([5, 3, 8, 8])).toEqual([5, 10]);
    expect(() => net.outputShape([5, 3, 10, 8])).toThrow(/Linear\(64→10\): expects 64 input features, got 80/);
  });

  test('construction errors name the layer and the argument', () => {
    expect(errorOf(() => new Conv2d({ inChannels: 3, outChannels: 8, kernel: 4, padding: 'same' })).message).toMatch(
      /Conv2d: padding 'same' needs an odd kernel/,
    );
    expect(errorOf(() => new Conv2d({ inChannels: 3, outChannels: 8, kernel: 0 })).message).toMatch(
      /Conv2d: 'kernel' must be an integer >= 1/,
    );
    expect(errorOf(() => new Conv2d({ inChannels: 3, outChannels: 8, kernel: 3, stride: 0 })).message).toMatch(
      /Conv2d: 'stride' must be an integer >= 1/,
    );
    expect(errorOf(() => new Conv2d({ inChannels: 3, outChannels: 8, kernel: 3, padding: -1 })).message).toMatch(
      /Conv2d: 'padding' must be an integer >= 0/,
    );
    expect(errorOf(() => new Conv2d({ inChannels: 0, outChannels: 8, kernel: 3 })).message).toMatch(/Conv2d: 'inChannels'/);
    expect(errorOf(() => new Conv2d({ inChannels: 3, outChannels: 8, kernel: 3, strides: 2 } as never)).message).toMatch(/strides/);
    expect(errorOf(() => new MaxPool2d({ kernel: 2, padding: 2 })).message).toMatch(/MaxPool2d: 'padding' must be at most half the kernel/);
    expect(errorOf(() => new AvgPool2d({ kernel: [2, 2.5] as never })).message).toMatch(/AvgPool2d: 'kernel'/);
    expect(errorOf(() => new BatchNorm2d(0)).message).toMatch(/BatchNorm2d: 'channels'/);
  });

  test('shape errors name the layer', () => {
    const conv = new Conv2d({ inChannels: 3, outChannels: 8, kernel: 5 });
    expect(errorOf(() => conv.outputShape([2, 4, 8, 8])).message).toMatch(
      /Conv2d\(3→8, 5\): expects images \[batch, 3, height, width\], got shape \[2, 4, 8, 8\]/,
    );
    expect(errorOf(() => conv.outputShape([2, 3, 4, 8])).message).toMatch(/the 5x5 window does not fit 4x8 images/);
    expect(errorOf(() => conv.outputShape([2, 48])).message).toMatch(/expects images/);
    expect(errorOf(() => new MaxPool2d({ kernel: 2 }).outputShape([2, 3, 1, 4])).message).toMatch(
      /MaxPool2d\(2\): the 2x2 window does not fit 1x4 images/,
    );
    expect(errorOf(() => new Flatten().outputShape([5])).message).toMatch(/Flatten: expects \[batch, \.\.\.\]/);
  });

  test('forward checks its input', () => {
    const arena = new Arena();
    const conv = new Conv2d({ inChannels: 3, outChannels: 2, kernel: 3 });
    expect(errorOf(() => conv.forward(Tensor.zeros([1, 3, 5, 5], { device: cpu, arena }), step(arena))).message).toMatch(
      /before initialize/,
    );
    conv.initialize(cpu, new Random(1));
    expect(errorOf(() => conv.forward(Tensor.zeros([1, 2, 5, 5], { device: cpu, arena }), step(arena))).message).toMatch(
      /expects images \[batch, 3, height, width\]/,
    );
    expect(errorOf(() => conv.forward(Tensor.zeros([1, 3, 2, 5], { device: cpu, arena }), step(arena))).message).toMatch(
      /does not fit 2x5 images/,
    );
    const bn = new BatchNorm2d(3);
    bn.initialize(cpu);
    expect(errorOf(() => bn.forward(Tensor.zeros([1, 3, 1, 1], { device: cpu, arena }), step(arena))).message).toMatch(
      /BatchNorm2d\(3\): training needs at least 2 values per channel/,
    );
    conv.dispose();
    bn.dispose();
    arena.dispose();
  });
});

// ---- BatchNorm2d ---------------------------------------------------------------------------

describe('BatchNorm2d against a float64 per-channel batch norm', () => {
  test('forward, running statistics and backward', async () => {
    const s: Img = { N: 3, C: 4, H: 5, W: 3 };
    const rng = new Random(3);
    const bn = new BatchNorm2d(s.C, { momentum: 0.2 });
    bn.initialize(cpu);
    const gamma = ref.randomArray(rng, s.C, 0.5, 1.5),
      beta = ref.randomArray(rng, s.C);
    await bn.gamma!.assign(gamma);
    await bn.beta!.assign(beta);
    const xs = ref.randomArray(rng, s.N * s.C * s.H * s.W, 0.1, 2);
    const arena = new Arena();
    const x = Tensor.fromArray(xs, [s.N, s.C, s.H, s.W], { device: cpu, arena });
    const f = bn.forward(x, step(arena));
    const want = batchNorm2d(xs, s, gamma, beta, bn.eps);
    expectClose('y', await read(f.output), want.y, 1e-5, 1); // absolute near 0: x - mean cancels
    const m = s.N * s.H * s.W;
    expectClose(
      'runningMean',
      await read(bn.runningMean!),
      Float64Array.from(want.mean, (v) => 0.2 * v),
      1e-5,
      1e-6,
    );
    expectClose(
      'runningVar',
      await read(bn.runningVar!),
      Float64Array.from(want.variance, (v) => 0.8 + 0.2 * v * (m / (m - 1))),
      1e-5,
      1e-6,
    );

    // backward of sum(wts ⊙ y) against finite differences of the reference
    const wts = ref.randomArray(rng, xs.length);
    const dx = f.backward(Tensor.fromArray(wts, [s.N, s.C, s.H, s.W], { device: cpu, arena }), step(arena), true)!;
    const objective = (xv: ref.Vec, g: ref.Vec, b: ref.Vec) => ref.dot(wts, batchNorm2d(xv, s, g, b, bn.eps).y);
    const grads: [string, Float64Array, Float64Array][] = [
      ['dx', await read(dx), ref.numericGrad((v) => objective(v, gamma, beta), xs)],
      ['dgamma', await read(bn.gamma!.grad), ref.numericGrad((v) => objective(xs, v, beta), gamma)],
      ['dbeta', await read(bn.beta!.grad), ref.numericGrad((v) => objective(xs, gamma, v), beta)],
    ];
    for (const [what, got, wantGrad] of grads) expectClose(what, got, wantGrad, 1e-4, 1e-2 * ref.maxAbs(wantGrad));

    // inference: the running statistics
    const g = bn.forward(x, step(arena, false));
    const rm = await read(bn.runningMean!),
      rv = await read(bn.runningVar!);
    const hw = s.H * s.W;
    const inf = Float64Array.from(xs, (v, i) => {
      const c = Math.floor(i / hw) % s.C;
      return ((v - rm[c]) / Math.sqrt(rv[c] + bn.eps)) * gamma[c] + beta[c];
    });
    expectClose('inference y', await read(g.output), inf, 1e-5, 1);
    arena.dispose();
    bn.dispose();
  });
});

// ---- backpropagation through a small CNN -------------------------------------------------------

describe('backpropagation through Conv2d → BatchNorm2d → ReLU → MaxPool2d → Flatten → Linear', () => {
  test('gradients against float64 finite differences', async () => {
    const s: Img = { N: 3, C: 2, H: 6, W: 4 };
    const K = 3,
      classes = 4,
      features = K * (s.H / 2) * (s.W / 2);
    const rng = new Random(17);
    const conv = new Conv2d({ inChannels: s.C, outChannels: K, kernel: 3, padding: 'same' });
    const bn = new BatchNorm2d(K);
    const linear = new Linear(features, classes);
    const net = new Sequential([conv, bn, new ReLU(), new MaxPool2d({ kernel: 2 }), new Flatten(), linear]);
    net.initialize(cpu, rng);
    const p = {
      w: ref.randomArray(rng, K * s.C * 9, 0.1, 0.6),
      b: ref.randomArray(rng, K),
      gamma: ref.randomArray(rng, K, 0.5, 1.5),
      beta: ref.randomArray(rng, K, 0.1, 0.5),
      lw: ref.randomArray(rng, classes * features),
      lb: ref.randomArray(rng, classes),
    };
    await conv.weight!.assign(p.w);
    await conv.bias!.assign(p.b);
    await bn.gamma!.assign(p.gamma);
    await bn.beta!.assign(p.beta);
    await linear.weight!.assign(p.lw);
    await linear.bias!.assign(p.lb);
    const xs = ref.randomArray(rng, s.N * s.C * s.H * s.W, 0.1, 2);
    const wts = ref.randomArray(rng, s.N * classes);

    // The same network in float64.
    const forward = (x: ref.Vec, w: ref.Vec, b: ref.Vec, gamma: ref.Vec, lw: ref.Vec): number => {
      const c = convSame3(x, s, w, K, b);
      const img: Img = { ...s, C: K };
      const h = batchNorm2d(c, img, gamma, p.beta, 1e-5).y.map((v) => Math.max(v, 0));
      const pooled = maxPool2(h, img); // [N, K, H/2, W/2] = rows of `features`
      const out = ref.addBias(ref.gemm(false, true, { M: s.N, N: classes, K: features }, 1, pooled, lw, 0, null), p.lb, s.N, classes);
      return ref.dot(wts, out);
    };

    const arena = new Arena();
    const f = net.forward(Tensor.fromArray(xs, [s.N, s.C, s.H, s.W], { device: cpu, arena }), step(arena));
    expect(f.output.shape).toEqual([s.N, classes]);
    const dx = f.backward(Tensor.fromArray(wts, [s.N, classes], { device: cpu, arena }), step(arena), true)!;
    const grads: [string, Float64Array, Float64Array][] = [
      ['dx', await read(dx), ref.numericGrad((v) => forward(v, p.w, p.b, p.gamma, p.lw), xs)],
      ['conv dw', await read(conv.weight!.grad), ref.numericGrad((v) => forward(xs, v, p.b, p.gamma, p.lw), p.w)],
      ['conv db', await read(conv.bias!.grad), ref.numericGrad((v) => forward(xs, p.w, v, p.gamma, p.lw), p.b)],
      ['bn dgamma', await read(bn.gamma!.grad), ref.numericGrad((v) => forward(xs, p.w, p.b, v, p.lw), p.gamma)],
      ['linear dw', await read(linear.weight!.grad), ref.numericGrad((v) => forward(xs, p.w, p.b, p.gamma, v), p.lw)],
    ];
    for (const [what, got, want] of grads) {
      if (what === 'conv db') {
        // BatchNorm removes a per-channel shift: the bias's true gradient is 0; judged on the
        // scale of the weights' gradient.
        expectClose(what, got, want, 1e-3, ref.maxAbs(grads[1][2]));
        continue;
      }
      expect(ref.maxAbs(want)).toBeGreaterThan(0);
      expectClose(what, got, want, 1e-3, 1e-2 * ref.maxAbs(want));
    }
    arena.dispose();
    net.dispose();
  });
});

describe('training', () => {
  test('a tiny CNN trained a few SGD steps on random data: the loss goes down', async () => {
    const rng = new Random(5);
    const net = new Sequential([
      new Conv2d({ inChannels: 3, outChannels: 6, kernel: 3, padding: 'same', bias: false }),
      new BatchNorm2d(6),
      new ReLU(),
      new MaxPool2d({ kernel: 3, stride: 2, padding: 1 }),
      new Conv2d({ inChannels: 6, outChannels: 6, kernel: 3, padding: 'same' }),
      new ReLU(),
      new AvgPool2d({ kernel: 2 }),
      new Flatten(),
      new Linear(6 * 2 * 2, 3),
    ]);
    net.initialize(cpu, rng);
    const B = 12;
    const x = Tensor.fromArray(ref.randomArray(rng, B * 3 * 8 * 8), [B, 3, 8, 8], { device: cpu });
    const labels = Tensor.fromArray(ref.randomLabels(rng, B, 3), [B], { device: cpu, dtype: 'int32' });
    const loss = new SoftmaxCrossEntropy();
    const opt = new SGD({ lr: 0.1, momentum: 0.9 });
    const losses: number[] = [];
    for (let i = 0; i < 15; i++) {
      const arena = new Arena();
      const ctx = step(arena);
      const f = net.forward(x, ctx);
      const l = loss.forward(f.output, labels, ctx);
      f.backward(l.backward(ctx), ctx, false);
      opt.step(net.parameters(), stream);
      losses.push((await l.loss.readFloat32(stream))[0]);
      arena.dispose();
    }
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);
    x.dispose();
    labels.dispose();
    net.dispose();
  });
});

describe('cnn()', () => {
  test('the DNI paper CIFAR-10 network: 3 blocks of 128 5x5 filters', () => {
    const net = cnn({ channels: 3, height: 32, width: 32, classes: 10 });
    expect(net.layers.map((l) => l.name)).toEqual([
      'Conv2d(3→128, 5, padding 2)',
      'BatchNorm2d(128)',
      'ReLU',
      'MaxPool2d(3, stride 2, padding 1)',
      'Conv2d(128→128, 5, padding 2)',
      'BatchNorm2d(128)',
      'ReLU',
      'AvgPool2d(3, stride 2, padding 1)',
      'Conv2d(128→128, 5, padding 2)',
      'BatchNorm2d(128)',
      'ReLU',
      'AvgPool2d(3, stride 2, padding 1)',
      'Flatten',
      'Linear(2048→10)',
    ]);
    expect(net.outputShape([7, 3, 32, 32])).toEqual([7, 10]);
    expect(cnn({ channels: 1, height: 28, width: 20, classes: 5, filters: 4, blocks: 2, kernel: 3 }).outputShape([2, 1, 28, 20])).toEqual([
      2, 5,
    ]);
    expect(errorOf(() => cnn({ channels: 3, height: 32, width: 32, classes: 10, kernel: 4 })).message).toMatch(/cnn: 'kernel' must be odd/);
    expect(errorOf(() => cnn({ channels: 3, height: 32, width: 0, classes: 10 })).message).toMatch(/cnn: 'width'/);
  });
});
