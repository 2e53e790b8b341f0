// The functional ops layer: every native op the library's modules, losses, optimizers and
// trainers enqueue goes through here, so nothing above this file touches a tensor's native
// handle or `native.ops` (scripts/check-layers.js checks the imports).
//
// Two kinds of function:
// - allocating ones take an OpContext (device, stream, arena) and return new Tensors, made in
//   the context's arena (so they live until the step is over), e.g. `linear`, `mse`;
// - writing ones take a StreamContext and write into tensors the caller passes and owns
//   (parameter gradients, optimizer state, persistent inputs), e.g. `copy`, `gemm`, `fill`.
// Each is a thin wrapper: one call enqueues exactly the native ops the caller would have
// enqueued itself, in the same order on the same stream, so seeded runs stay bit-identical.
import { Device } from './device';
import { native, ActivationName, NativeTensor } from './native';
import { Stream } from './stream';
import { Arena, Tensor } from './tensor';

export type { ActivationName } from './native';

/** Where writing ops enqueue their work. */
export interface StreamContext {
  readonly stream: Stream;
}

/** Where allocating ops enqueue their work and make their outputs. */
export interface OpContext extends StreamContext {
  readonly device: Device;
  /** owns the outputs; undefined: the caller disposes of them */
  readonly arena?: Arena;
}

const ops = native.ops;

function empty(ctx: OpContext, shape: readonly number[]): Tensor {
  return Tensor.empty(shape, { device: ctx.device, arena: ctx.arena });
}

// ---- writing ops: outputs given by the caller ----

/** dst = src */
export function copy(ctx: StreamContext, src: Tensor, dst: Tensor): void {
  ops.copy(ctx.stream.handle, src.handle, dst.handle);
}

/** y[:] = value */
export function fill(ctx: StreamContext, y: Tensor, value: number): void {
  ops.fill(ctx.stream.handle, y.handle, value);
}

/** y = a·x + b·y */
export function axpby(ctx: StreamContext, a: number, x: Tensor, b: number, y: Tensor): void {
  ops.axpby(ctx.stream.handle, a, x.handle, b, y.handle);
}

/** c = alpha·op(a)·op(b) + beta·c, op transposing when asked */
export function gemm(
  ctx: StreamContext,
  a: Tensor,
  b: Tensor,
  c: Tensor,
  transA: boolean,
  transB: boolean,
  alpha: number,
  beta: number,
): void {
  ops.gemm(ctx.stream.handle, a.handle, b.handle, c.handle, transA, transB, alpha, beta);
}

/** y += bias, row by row (in place) */
export function addBias(ctx: StreamContext, y: Tensor, bias: Tensor): void {
  ops.addBias(ctx.stream.handle, y.handle, bias.handle);
}

/** dbias += the column sums of dy */
export function biasBackward(ctx: StreamContext, dy: Tensor, dbias: Tensor): void {
  ops.biasBackward(ctx.stream.handle, dy.handle, dbias.handle);
}

/** dx = dy · act'(y) into `dx` (which may be `dy`: masking in place) */
export function activationBackwardInto(ctx: StreamContext, act: ActivationName, y: Tensor, dy: Tensor, dx: Tensor): void {
  ops.activationBackward(ctx.stream.handle, act, y.handle, dy.handle, dx.handle);
}

/**
 * One LSTM step into caller-owned state: gates [B, 4H] (pre-activations in blocks i, f, g, o)
 * become σ(i), σ(f), tanh(g), σ(o) in place (the backward needs them); c = f⊙cPrev + i⊙g and
 * h = o⊙tanh(c) are written into `c` and `h` [B, H], which must not be cPrev or gates.
 */
export function lstmCellForwardInto(ctx: StreamContext, gates: Tensor, cPrev: Tensor, c: Tensor, h: Tensor): void {
  ops.lstmCellForward(ctx.stream.handle, gates.handle, cPrev.handle, c.handle, h.handle);
}

/**
 * The LSTM step's backward into caller-owned buffers: dgates [B, 4H] (gradients w.r.t. the
 * pre-activations) and dcPrev [B, H] are overwritten; dc null means no gradient reaches c from
 * later steps. dcPrev may be dc (the carried cell gradient, updated in place).
 */
export function lstmCellBackwardInto(
  ctx: StreamContext,
  gates: Tensor,
  cPrev: Tensor,
  c: Tensor,
  dh: Tensor,
  dc: Tensor | null,
  dgates: Tensor,
  dcPrev: Tensor,
): void {
  ops.lstmCellBackward(
    ctx.stream.handle,
    gates.handle,
    cPrev.handle,
    c.handle,
    dh.handle,
    dc?.handle ?? null,
    dgates.handle,
    dcPrev.handle,
  );
}

/** dlogits = scale · (probs − targets) into `dlogits` (which may be probs or targets) */
export function sigmoidCrossEntropyBackwardInto(ctx: StreamContext, probs: Tensor, targets: Tensor, dlogits: Tensor, scale: number): void {
  ops.sigmoidCrossEntropyBackward(ctx.stream.handle, probs.handle, targets.handle, dlogits.handle, scale);
}

/** y[i] = values[i] when the stream gets there (1..16 values). */
export function writeScalars(ctx: StreamContext, y: Tensor, values: number[]): void {
  ops.writeScalars(ctx.stream.handle, y.handle, values);
}

/** [lr / (1 - beta1^t), sqrt(1 - beta2^t)], computed natively exactly as the Adam step does. */
export function adamScalars(lr: number, beta1: number, beta2: number, step: number): number[] {
  return native.adamScalars(lr, beta1, beta2, step);
}

/**
 * A fixed list of tensors in the form the grouped optimizer ops take, built once (optimizers
 * cache it per parameter list rather than rebuilding it every step).
 */
export class TensorGroup {
  private readonly handles: NativeTensor[];

  constructor(readonly tensors: readonly Tensor[]) {
    this.handles = tensors.map((t) => t.handle);
  }

  get length(): number {
    return this.handles.length;
  }

  /** @internal the native handles, for this file's grouped ops */
  static handlesOf(g: TensorGroup): NativeTensor[] {
    return g.handles;
  }
}

/** One SGD step over a group, lr read from hyper = [lr] when it runs; zeroes the grads. */
export function sgdStepGroup(
  ctx: StreamContext,
  params: TensorGroup,
  grads: TensorGroup,
  velocities: TensorGroup | null,
  hyper: Tensor,
  momentum: number,
  weightDecay: number,
): void {
  ops.sgdStepGroup(
    ctx.stream.handle,
    TensorGroup.handlesOf(params),
    TensorGroup.handlesOf(grads),
    velocities ? TensorGroup.handlesOf(velocities) : null,
    hyper.handle,
    momentum,
    weightDecay,
  );
}

/** One Adam step over a group, hyper = adamScalars(...) read when it runs; zeroes the grads. */
export function adamStepGroup(
  ctx: StreamContext,
  params: TensorGroup,
  grads: TensorGroup,
  ms: TensorGroup,
  vs: TensorGroup,
  hyper: Tensor,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
): void {
  ops.adamStepGroup(
    ctx.stream.handle,
    TensorGroup.handlesOf(params),
    TensorGroup.handlesOf(grads),
    TensorGroup.handlesOf(ms),
    TensorGroup.handlesOf(vs),
    hyper.handle,
    beta1,
    beta2,
    eps,
    weightDecay,
  );
}

// ---- allocating ops: outputs made in ctx.arena ----

/** A new tensor of `shape` with every element `value` */
export function full(ctx: OpContext, shape: readonly number[], value: number): Tensor {
  const y = empty(ctx, shape);
  fill(ctx, y, value);
  return y;
}

/** A copy of x. */
export function clone(ctx: OpContext, x: Tensor): Tensor {
  const y = empty(ctx, x.shape);
  copy(ctx, x, y);
  return y;
}

/** a·x (x [..] → same shape) */
export function scale(ctx: OpContext, a: number, x: Tensor): Tensor {
  const y = empty(ctx, x.shape);
  axpby(ctx, a, x, 0, y);
  return y;
}

/** x [B, in] · wᵀ [in, out] + bias [out] → [B, out] */
export function linear(ctx: OpContext, x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const y = empty(ctx, [x.shape[0], w.shape[0]]);
  ops.linearForward(ctx.stream.handle, x.handle, w.handle, bias?.handle ?? null, y.handle, null);
  return y;
}

/** a [M, K] · b [K, N] → [M, N] (no transposes: the linear layer's input gradient dy·W) */
export function matmul(ctx: OpContext, a: Tensor, b: Tensor): Tensor {
  const c = empty(ctx, [a.shape[0], b.shape[1]]);
  gemm(ctx, a, b, c, false, false, 1, 0);
  return c;
}

/** act(x) */
export function activation(ctx: OpContext, act: ActivationName, x: Tensor): Tensor {
  const y = empty(ctx, x.shape);
  ops.activationForward(ctx.stream.handle, act, x.handle, y.handle);
  return y;
}

/** dy · act'(y), where y = act(x) */
export function activationBackward(ctx: OpContext, act: ActivationName, y: Tensor, dy: Tensor): Tensor {
  const dx = empty(ctx, y.shape);
  activationBackwardInto(ctx, act, y, dy, dx);
  return dx;
}

export interface BatchNormSaved {
  y: Tensor;
  saveMean: Tensor;
  saveInvStd: Tensor;
  /** y is max(BatchNorm(x), 0): the forward applied a ReLU, which the backward goes through */
  relu?: boolean;
}

/**
 * Batch normalisation of x [B, F]; in training mode updates runningMean/runningVar in place
 * (by `momentum`) and saves the batch statistics the backward pass needs. With `relu`, y is
 * ReLU(BatchNorm(x)) from one op (bit for bit the two ops), and batchNormBackward takes the
 * gradient of that y.
 */
export function batchNorm(
  ctx: OpContext,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  momentum: number,
  eps: number,
  training: boolean,
  relu = false,
): BatchNormSaved {
  const features = x.shape[x.shape.length - 1];
  const y = empty(ctx, x.shape);
  const saveMean = empty(ctx, [features]);
  const saveInvStd = empty(ctx, [features]);
  const args = [
    ctx.stream.handle,
    x.handle,
    gamma.handle,
    beta.handle,
    y.handle,
    runningMean.handle,
    runningVar.handle,
    saveMean.handle,
    saveInvStd.handle,
    momentum,
    eps,
    training,
  ] as const;
  if (relu) ops.batchNormReluForward(...args);
  else ops.batchNormForward(...args);
  return relu ? { y, saveMean, saveInvStd, relu } : { y, saveMean, saveInvStd };
}

/** Returns dx (through the ReLU when the forward applied one); accumulates into dgamma and dbeta. */
export function batchNormBackward(
  ctx: OpContext,
  x: Tensor,
  dy: Tensor,
  gamma: Tensor,
  saved: BatchNormSaved,
  dgamma: Tensor,
  dbeta: Tensor,
): Tensor {
  const dx = empty(ctx, x.shape);
  const [mean, invStd] = [saved.saveMean.handle, saved.saveInvStd.handle];
  if (saved.relu)
    ops.batchNormReluBackward(
      ctx.stream.handle,
      x.handle,
      saved.y.handle,
      dy.handle,
      gamma.handle,
      mean,
      invStd,
      dx.handle,
      dgamma.handle,
      dbeta.handle,
    );
  else ops.batchNormBackward(ctx.stream.handle, x.handle, dy.handle, gamma.handle, mean, invStd, dx.handle, dgamma.handle, dbeta.handle);
  return dx;
}

/**
 * softmax(logits) and the mean cross-entropy against int32 labels ([1]); a label of -1 scores
 * nothing at its row (no loss, zero gradient), and the mean still divides by every row.
 */
export function softmaxCrossEntropy(ctx: OpContext, logits: Tensor, labels: Tensor): { probs: Tensor; loss: Tensor } {
  const probs = empty(ctx, logits.shape);
  const loss = empty(ctx, [1]);
  ops.softmaxCrossEntropyForward(ctx.stream.handle, logits.handle, labels.handle, probs.handle, loss.handle);
  return { probs, loss };
}

/** scale · d(cross-entropy)/d(logits), from the forward pass's probabilities */
export function softmaxCrossEntropyBackward(ctx: OpContext, probs: Tensor, labels: Tensor, scale: number): Tensor {
  const d = empty(ctx, probs.shape);
  ops.softmaxCrossEntropyBackward(ctx.stream.handle, probs.handle, labels.handle, d.handle, scale);
  return d;
}

/**
 * σ(logits) and the binary cross-entropy against float32 targets in [0, 1], summed over the
 * columns and averaged over the rows ([1]).
 */
export function sigmoidCrossEntropy(ctx: OpContext, logits: Tensor, targets: Tensor): { probs: Tensor; loss: Tensor } {
  const probs = empty(ctx, logits.shape);
  const loss = empty(ctx, [1]);
  ops.sigmoidCrossEntropyForward(ctx.stream.handle, logits.handle, targets.handle, probs.handle, loss.handle);
  return { probs, loss };
}

/** scale · (probs − targets); with scale = s / B, s times the gradient of sigmoidCrossEntropy's loss */
export function sigmoidCrossEntropyBackward(ctx: OpContext, probs: Tensor, targets: Tensor, scale: number): Tensor {
  const d = empty(ctx, probs.shape);
  sigmoidCrossEntropyBackwardInto(ctx, probs, targets, d, scale);
  return d;
}

/** One LSTM step: c, h [B, H] made in the arena; gates [B, 4H] become their activations in place. */
export function lstmCellForward(ctx: OpContext, gates: Tensor, cPrev: Tensor): { c: Tensor; h: Tensor } {
  const c = empty(ctx, cPrev.shape);
  const h = empty(ctx, cPrev.shape);
  lstmCellForwardInto(ctx, gates, cPrev, c, h);
  return { c, h };
}

/** The LSTM step's backward: dgates [B, 4H] and dcPrev [B, H] made in the arena (dc null: none). */
export function lstmCellBackward(
  ctx: OpContext,
  gates: Tensor,
  cPrev: Tensor,
  c: Tensor,
  dh: Tensor,
  dc: Tensor | null,
): { dgates: Tensor; dcPrev: Tensor } {
  const dgates = empty(ctx, gates.shape);
  const dcPrev = empty(ctx, cPrev.shape);
  lstmCellBackwardInto(ctx, gates, cPrev, c, dh, dc, dgates, dcPrev);
  return { dgates, dcPrev };
}

/** the mean squared error ([1]) */
export function mse(ctx: OpContext, pred: Tensor, target: Tensor): Tensor {
  const loss = empty(ctx, [1]);
  ops.mseForward(ctx.stream.handle, pred.handle, target.handle, loss.handle);
  return loss;
}

/** scale · d(mse)/d(pred) */
export function mseBackward(ctx: OpContext, pred: Tensor, target: Tensor, scale: number): Tensor {
  const d = empty(ctx, pred.shape);
  ops.mseBackward(ctx.stream.handle, pred.handle, target.handle, d.handle, scale);
  return d;
}

/** int32 labels [B] → one-hot rows [B, classes] */
export function oneHot(ctx: OpContext, labels: Tensor, classes: number): Tensor {
  const out = empty(ctx, [labels.shape[0], classes]);
  ops.oneHot(ctx.stream.handle, labels.handle, out.handle);
  return out;
}

/** [B, m] ‖ [B, n] → [B, m + n] */
export function concatColumns(ctx: OpContext, a: Tensor, b: Tensor): Tensor {
  const out = empty(ctx, [a.shape[0], a.shape[1] + b.shape[1]]);
  ops.concatColumns(ctx.stream.handle, a.handle, b.handle, out.handle);
  return out;
}

/** Splits dout [B, m + n] into da [B, m] and db [B, n] (either may be null: not wanted); the gradient of concatColumns */
export function splitColumns(ctx: StreamContext, dout: Tensor, da: Tensor | null, db: Tensor | null): void {
  ops.splitColumns(ctx.stream.handle, dout.handle, da?.handle ?? null, db?.handle ?? null);
}

// ---- the convolution family (NCHW float32) ----

/** A 2-D window: its size, strides and zero padding, rows then columns. */
export interface Window2d {
  readonly kernel: readonly [number, number];
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
}

/** The output size along one axis: floor((size + 2 padding - kernel) / stride) + 1. */
export function windowOutputSize(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

function pooledShape(x: Tensor, channels: number, win: Window2d): number[] {
  const [N, , H, W] = x.shape;
  return [
    N,
    channels,
    windowOutputSize(H, win.kernel[0], win.stride[0], win.padding[0]),
    windowOutputSize(W, win.kernel[1], win.stride[1], win.padding[1]),
  ];
}

/** conv(x [N, C, H, W], w [K, C, KH, KW]) + bias [K] → [N, K, OH, OW] (the window's kernel is w's) */
export function conv2d(ctx: OpContext, x: Tensor, w: Tensor, bias: Tensor | null, win: Window2d): Tensor {
  const y = empty(ctx, pooledShape(x, w.shape[0], win));
  ops.conv2dForward(
    ctx.stream.handle,
    x.handle,
    w.handle,
    bias?.handle ?? null,
    y.handle,
    win.stride[0],
    win.stride[1],
    win.padding[0],
    win.padding[1],
  );
  return y;
}

/**
 * conv2d's backward: accumulates into dw and db (when given) and returns dx, or undefined
 * when `needInputGrad` is false (dx is then never computed).
 */
export function conv2dBackward(
  ctx: OpContext,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  dw: Tensor | null,
  db: Tensor | null,
  needInputGrad: boolean,
  win: Window2d,
): Tensor | undefined {
  const dx = needInputGrad ? empty(ctx, x.shape) : undefined;
  if (!dx && !dw && !db) return undefined;
  ops.conv2dBackward(
    ctx.stream.handle,
    x.handle,
    w.handle,
    dy.handle,
    dx?.handle ?? null,
    dw?.handle ?? null,
    db?.handle ?? null,
    win.stride[0],
    win.stride[1],
    win.padding[0],
    win.padding[1],
  );
  return dx;
}

/** Max or average pooling of x [N, C, H, W] → [N, C, OH, OW] (average: padding not counted). */
export function pool2d(ctx: OpContext, kind: 'max' | 'avg', x: Tensor, win: Window2d): Tensor {
  const y = empty(ctx, pooledShape(x, x.shape[1], win));
  const f = kind === 'max' ? ops.maxPool2dForward : ops.avgPool2dForward;
  f(ctx.stream.handle, x.handle, y.handle, win.kernel[0], win.kernel[1], win.stride[0], win.stride[1], win.padding[0], win.padding[1]);
  return y;
}

/** pool2d's backward: dx shaped like x (max: to each window's argmax, recomputed from x). */
export function pool2dBackward(ctx: OpContext, kind: 'max' | 'avg', x: Tensor, dy: Tensor, win: Window2d): Tensor {
  const dx = empty(ctx, x.shape);
  const [kh, kw] = win.kernel,
    [sh, sw] = win.stride,
    [ph, pw] = win.padding;
  if (kind === 'max') ops.maxPool2dBackward(ctx.stream.handle, x.handle, dy.handle, dx.handle, kh, kw, sh, sw, ph, pw);
  else ops.avgPool2dBackward(ctx.stream.handle, dy.handle, dx.handle, kh, kw, sh, sw, ph, pw);
  return dx;
}

/** x [B, M, N] → [B, N, M] */
export function swapLastAxes(ctx: OpContext, x: Tensor): Tensor {
  const y = empty(ctx, [x.shape[0], x.shape[2], x.shape[1]]);
  ops.swapLastAxes(ctx.stream.handle, x.handle, y.handle);
  return y;
}
