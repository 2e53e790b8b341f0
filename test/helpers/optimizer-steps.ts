// One parameter tensor's optimizer step, as a one-element group step: the native module steps
// whole parameter groups only (sgdStepGroup, adamStepGroup), which read their step-dependent
// scalars from a small tensor written on the stream and zero the gradient afterwards. The
// arguments are those of the per-tensor steps that the group ops replaced.
import { native, NativeStream, NativeTensor } from '../../ts/native';

/** SGD on one tensor: v = momentum v + g'; p -= lr v (momentum 0: p -= lr g', velocity unused). */
export function sgdStep(
  s: NativeStream,
  param: NativeTensor,
  grad: NativeTensor,
  velocity: NativeTensor | null,
  lr: number,
  momentum: number,
  weightDecay: number,
): void {
  const hyper = new native.Tensor([1], 'float32', s.device);
  try {
    native.ops.writeScalars(s, hyper, [lr]);
    native.ops.sgdStepGroup(s, [param], [grad], velocity ? [velocity] : null, hyper, momentum, weightDecay);
  } finally {
    hyper.dispose(); // the queued work holds its memory until it has run
  }
}

/** Adam on one tensor at step `step` (>= 1), with PyTorch's bias corrections. */
export function adamStep(
  s: NativeStream,
  param: NativeTensor,
  grad: NativeTensor,
  m: NativeTensor,
  v: NativeTensor,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
  step: number,
): void {
  const hyper = new native.Tensor([2], 'float32', s.device);
  try {
    native.ops.writeScalars(s, hyper, native.adamScalars(lr, beta1, beta2, step));
    native.ops.adamStepGroup(s, [param], [grad], [m], [v], hyper, beta1, beta2, eps, weightDecay);
  } finally {
    hyper.dispose();
  }
}
