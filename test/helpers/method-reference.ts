// Float64 pieces of one training step on a batch of B rows, shared by the tests that check a
// training method's update by hand (test/feedback-methods.test.ts, test/target-methods.test.ts).
import { Adam, Arena, Dataset, Device, Linear, Random, Sequential, Sigmoid, Tensor, Trainer } from '../../ts';
import type { Loss, Module, Parameter, StepContext } from '../../ts';
import * as ops from '../../ts/ops';
import * as ref from './reference';

/** The batch size and the SGD learning rate of the hand computations. */
export const B = 4;
export const lr = 0.1;

/** Reads a tensor as float64. */
export async function read(trainer: Trainer, t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(trainer.stream));
}

/** x [B, in] · Wᵀ + b */
export const linear = (x: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, inF: number, outF: number) =>
  ref.addBias(ref.gemm(false, true, { M: B, N: outF, K: inF }, 1, x, W, 0, null), b, B, outF);
/** dy [B, out] · M [out, in] → [B, in] (M the weight, or the matrix standing in for it) */
export const down = (dy: ArrayLike<number>, M: ArrayLike<number>, inF: number, outF: number) =>
  ref.gemm(false, false, { M: B, N: inF, K: outF }, 1, dy, M, 0, null);
/** dyᵀ x: a Linear's weight gradient [out, in] */
export const weightGrad = (dy: ArrayLike<number>, x: ArrayLike<number>, inF: number, outF: number) =>
  ref.gemm(true, false, { M: outF, N: inF, K: B }, 1, dy, x, 0, null);
/** p - lr·g */
export const sgd = (p: Float64Array, g: ArrayLike<number>) => p.map((v, i) => v - lr * g[i]);

/** d(mean cross-entropy)/d(logits) */
export function ceGrad(logits: Float64Array, labels: ArrayLike<number>, classes: number): Float64Array {
  const p = ref.softmax(logits, B, classes);
  return p.map((v, k) => (v - (k % classes === labels[Math.floor(k / classes)] ? 1 : 0)) / B);
}

/** The library's updated weights against the hand computation's (float32 against float64). */
export function expectUpdate(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  ref.expectClose(what, got, want, 1e-4, 1e-5);
}

/**
 * Checks that a stochastic-unit method's gradient estimate is unbiased on Linear(2, 3) →
 * Sigmoid (Bernoulli units) → Linear(3, 2) at one example x0 = [0.7, -0.4] with label 1: the
 * exact gradient of the expected loss sums all 2³ unit configurations in float64; the mean of
 * M = 150 batch estimates (R = 32 rows each, every row sampling its own units) must lie within 4
 * standard errors of it in every coordinate, and 4 standard errors must be well below the hidden
 * gradient's size (so that the check can fail).
 */
export async function expectUnbiasedEstimate(
  trainer: Trainer,
  net: { parameters(): Parameter[]; accumulate(x: Tensor, y: Tensor, loss: Loss, ctx: StepContext): Tensor },
): Promise<void> {
  const R = 32;
  const M = 150;
  const cpu = Device.cpu();
  const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
  const [W0, b0, W1, b1] = await Promise.all(net.parameters().map((p) => read(trainer, p.value)));
  const x0 = [0.7, -0.4];
  const label = 1;
  // Exact: E[L] = Σ_h π(h) L(h); ∂E/∂z_j = Σ_h π(h) L(h) (h_j − p_j); the output layer's E[∂L/∂W1].
  const z = [0, 1, 2].map((j) => W0[j * 2] * x0[0] + W0[j * 2 + 1] * x0[1] + b0[j]);
  const p = z.map(sigmoid);
  const gz = [0, 0, 0];
  const gW1 = new Float64Array(6);
  const gb1 = new Float64Array(2);
  for (let m = 0; m < 8; m++) {
    const h = [0, 1, 2].map((j) => (m >> j) & 1);
    const pi = h.reduce((s, hj, j) => s * (hj ? p[j] : 1 - p[j]), 1);
    const logits = [0, 1].map((k) => b1[k] + h.reduce((s, hj, j) => s + W1[k * 3 + j] * hj, 0));
    const sm = ref.softmax(Float64Array.from(logits), 1, 2);
    const L = -Math.log(sm[label]);
    h.forEach((hj, j) => (gz[j] += pi * L * (hj - p[j])));
    for (let k = 0; k < 2; k++) {
      const d = sm[k] - (k === label ? 1 : 0);
      gb1[k] += pi * d;
      for (let j = 0; j < 3; j++) gW1[k * 3 + j] += pi * d * h[j];
    }
  }
  const exact = [Float64Array.from({ length: 6 }, (_, i) => gz[Math.floor(i / 2)] * x0[i % 2]), Float64Array.from(gz), gW1, gb1];

  const x = Tensor.fromArray(
    Float32Array.from({ length: R * 2 }, (_, i) => x0[i % 2]),
    [R, 2],
    { device: cpu },
  );
  const y = Tensor.fromArray(new Int32Array(R).fill(label), [R], { device: cpu });
  const params = net.parameters();
  const sums = exact.map((g) => new Float64Array(g.length));
  const squares = exact.map((g) => new Float64Array(g.length));
  for (let m = 0; m < M; m++) {
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream: trainer.stream, training: true, arena };
    for (const q of params) ops.fill(ctx, q.grad, 0);
    net.accumulate(x, y, trainer.loss, ctx);
    const grads = await Promise.all(params.map((q) => read(trainer, q.grad))); // the mean of R estimates
    arena.dispose();
    grads.forEach((g, i) => g.forEach((v, k) => ((sums[i][k] += v), (squares[i][k] += v * v))));
  }
  exact.forEach((want, i) =>
    want.forEach((w, k) => {
      const mean = sums[i][k] / M;
      const se = Math.sqrt((squares[i][k] / M - mean * mean) / (M - 1));
      if (!(Math.abs(mean - w) <= 4 * se)) throw new Error(`parameter ${i}[${k}]: mean ${mean}, exact ${w}, standard error ${se}`);
    }),
  );
  const se0 = exact[0].map((_, k) => Math.sqrt((squares[0][k] / M - (sums[0][k] / M) ** 2) / (M - 1)));
  expect(4 * ref.maxAbs(se0)).toBeLessThan(0.5 * ref.maxAbs(exact[0]));
  x.dispose();
  y.dispose();
}

/**
 * A Bernoulli-unit method (`wrap` of Linear(4, 16) → Sigmoid → Linear(16, 2)) learns a linearly
 * separable two-class problem: after 60 epochs the loss is below 0.7 of its start.
 */
export async function expectLossFalls(wrap: (model: Sequential) => Module): Promise<void> {
  const rows = 64;
  const x = ref.randomArray(new Random(31), rows * 4);
  const labels = Int32Array.from({ length: rows }, (_, r) => (x[r * 4] + 0.5 * x[r * 4 + 1] - x[r * 4 + 2] > 0 ? 1 : 0));
  const data = new Dataset('blobs', x, labels, 4, 2);
  const trainer = new Trainer(wrap(new Sequential([new Linear(4, 16), new Sigmoid(), new Linear(16, 2)])), {
    device: Device.cpu(),
    optimizer: () => new Adam({ lr: 0.02 }),
    seed: 2,
  });
  const first = (await trainer.evaluate(data)).loss;
  await trainer.fit(data, { epochs: 60, batchSize: 16 });
  const last = (await trainer.evaluate(data)).loss;
  expect(last).toBeLessThan(0.7 * first);
  trainer.dispose();
}
