// Float64 pieces of one training step on a batch of B rows, shared by the tests that check a
// training method's update by hand (test/feedback-methods.test.ts, test/target-methods.test.ts).
import type { Tensor, Trainer } from '../../ts';
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
