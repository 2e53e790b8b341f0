// A sequence model: symbols in (one-hot), an LSTM core, a per-step linear read-out scored with
// softmax cross-entropy (one symbol per step) or sigmoid cross-entropy (multi-bit targets).
//
// A window's loss is the SUM over its steps of each step's loss, each the mean over the batch
// (rows not scored count in the divisor: the op divides by B whatever is scored). Summing over
// time, not averaging, keeps the loss of a stream the same whatever the truncation T, which is
// what a synthetic gradient at a window's end stands for: the gradient of every later step's
// loss, on the same scale as the steps inside the window. Steps where no row is scored skip the
// read-out altogether (a Copy task's presentation phase).
import { Device } from '../device';
import { Linear } from '../nn/layers';
import { LSTM, LSTMState, LSTMStateGradient } from '../nn/lstm';
import { Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Random } from '../random';
import type { Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { checkOptions, numberOption, positiveInt } from '../check';
import { rangeError, typeError } from '../errors';

export type SequenceLossName = 'softmax-cross-entropy' | 'sigmoid-cross-entropy';

export interface SequenceModelOptions {
  /** one-hot input width (the source's inputSymbols) */
  inputSymbols: number;
  /** read-out width: classes (softmax) or bits (sigmoid) */
  outputs: number;
  /** LSTM units */
  hidden: number;
  /** the LSTM's forget-gate bias; default 1 */
  forgetBias?: number;
  /** default 'softmax-cross-entropy' */
  loss?: SequenceLossName;
}

/** A window on the device: per step, the input symbols and the targets (undefined: not scored). */
export interface WindowTensors {
  /** int32 [B] symbol ids per step */
  readonly inputs: Tensor[];
  /** int32 [B] labels (-1: row not scored) or, for sigmoid, float32 [B, outputs]; undefined: step not scored */
  readonly targets: (Tensor | undefined)[];
  /** the state is zeroed before step t */
  readonly resets: readonly boolean[];
}

export interface SequenceForward {
  /** h_t per step */
  readonly outputs: Tensor[];
  /** the state after the window */
  readonly state: LSTMState;
  /** shape [1]: the sum over steps of each step's batch-mean loss (nats) */
  readonly loss: Tensor;
  /**
   * Backpropagates the window's loss plus `dFinal` (the gradient arriving at the final state)
   * plus `dOutputs[t]` (extra gradients w.r.t. h_t, e.g. an auxiliary loss's), accumulating
   * parameter gradients; returns the gradient w.r.t. the state the window started from.
   */
  backward(dFinal: LSTMStateGradient | undefined, ctx: StepContext, dOutputs?: readonly (Tensor | undefined)[]): LSTMState;
}

export class LSTMSequenceModel {
  readonly core: LSTM;
  readonly readout: Linear;
  readonly inputSymbols: number;
  readonly outputs: number;
  readonly hidden: number;
  readonly loss: SequenceLossName;

  constructor(options: SequenceModelOptions) {
    if (options === null || typeof options !== 'object')
      throw typeError(`LSTMSequenceModel: 'options' must be an object, got ${String(options)}`);
    checkOptions('LSTMSequenceModel', options, ['inputSymbols', 'outputs', 'hidden', 'forgetBias', 'loss']);
    this.inputSymbols = positiveInt('LSTMSequenceModel', 'inputSymbols', options.inputSymbols);
    this.outputs = positiveInt('LSTMSequenceModel', 'outputs', options.outputs);
    this.hidden = positiveInt('LSTMSequenceModel', 'hidden', options.hidden);
    numberOption('LSTMSequenceModel', 'forgetBias', options.forgetBias, 1);
    this.loss = options.loss ?? 'softmax-cross-entropy';
    if (this.loss !== 'softmax-cross-entropy' && this.loss !== 'sigmoid-cross-entropy')
      throw typeError(`LSTMSequenceModel: 'loss' must be 'softmax-cross-entropy' or 'sigmoid-cross-entropy', got ${String(options.loss)}`);
    this.core = new LSTM(this.inputSymbols, this.hidden, { forgetBias: options.forgetBias });
    this.readout = new Linear(this.hidden, this.outputs);
  }

  /** Draws the core's weights, then the read-out's, from `rng`. */
  initialize(device: Device, rng: Random): void {
    this.core.initialize(device, rng);
    this.readout.initialize(device, rng);
  }

  parameters(): Parameter[] {
    return [...this.core.parameters(), ...this.readout.parameters()];
  }

  dispose(): void {
    this.core.dispose();
    this.readout.dispose();
  }

  /** Runs the window from `state`; see SequenceForward. */
  forward(window: WindowTensors, state: LSTMState, ctx: StepContext): SequenceForward {
    const steps = window.inputs.length;
    if (window.targets.length !== steps)
      throw rangeError(`LSTMSequenceModel: the window has ${steps} input steps and ${window.targets.length} target steps`);
    const xs = window.inputs.map((labels, t) => {
      if (!(labels instanceof Tensor) || labels.dtype !== 'int32' || labels.shape.length !== 1)
        throw typeError(`LSTMSequenceModel: 'inputs[${t}]' must be an int32 [batch] tensor of symbols`);
      return ops.oneHot(ctx, labels, this.inputSymbols);
    });
    const core = this.core.forward(xs, state, ctx, window.resets);
    const loss = ops.full(ctx, [1], 0);
    const lossBackward: (((bctx: StepContext) => Tensor) | undefined)[] = [];
    const readoutBackward: (((dy: Tensor, bctx: StepContext) => Tensor) | undefined)[] = [];
    for (let t = 0; t < steps; t++) {
      const target = window.targets[t];
      if (!target) continue;
      const h = core.outputs[t];
      const r = this.readout.forward(h, ctx);
      const batch = h.shape[0];
      if (this.loss === 'softmax-cross-entropy') {
        if (target.dtype !== 'int32' || target.shape.length !== 1 || target.shape[0] !== batch)
          throw rangeError(
            `LSTMSequenceModel: 'targets[${t}]' must be int32 [${batch}] labels for softmax cross-entropy, got ${target.dtype} [${target.shape.join(', ')}]`,
          );
        const f = ops.softmaxCrossEntropy(ctx, r.output, target);
        ops.axpby(ctx, 1, f.loss, 1, loss);
        lossBackward[t] = (bctx) => ops.softmaxCrossEntropyBackward(bctx, f.probs, target, 1);
      } else {
        if (target.dtype !== 'float32' || target.shape.length !== 2 || target.shape[0] !== batch || target.shape[1] !== this.outputs)
          throw rangeError(
            `LSTMSequenceModel: 'targets[${t}]' must be float32 [${batch}, ${this.outputs}] for sigmoid cross-entropy, got ${target.dtype} [${target.shape.join(', ')}]`,
          );
        const f = ops.sigmoidCrossEntropy(ctx, r.output, target);
        ops.axpby(ctx, 1, f.loss, 1, loss);
        // The op's loss is a sum over bits divided by B; its backward leaves the 1/B to the scale.
        lossBackward[t] = (bctx) => ops.sigmoidCrossEntropyBackward(bctx, f.probs, target, 1 / batch);
      }
      readoutBackward[t] = (dy, bctx) => r.backward(dy, bctx, true)!;
    }
    return {
      outputs: core.outputs,
      state: core.state,
      loss,
      backward: (dFinal, bctx, dOutputs) => {
        const dh: (Tensor | undefined)[] = [];
        for (let t = 0; t < steps; t++) {
          let g = lossBackward[t] ? readoutBackward[t]!(lossBackward[t]!(bctx), bctx) : undefined;
          const extra = dOutputs?.[t];
          if (extra) {
            if (g) ops.axpby(bctx, 1, extra, 1, g);
            else g = extra;
          }
          dh.push(g);
        }
        return core.backward(dh, dFinal, bctx).dState;
      },
    };
  }
}

/**
 * A symbol window (time-major Int32Arrays, -1 = not scored) as per-step device tensors in
 * `arena`: int32 [B] inputs and labels; a step whose targets are all -1 gets no target. One
 * upload per window: the inputs and targets of all steps in one buffer, each step's tensors
 * views of it; on `stream` (in its order, the host not waiting) when one is given.
 */
export function uploadWindow(
  window: { steps: number; batch: number; inputs: Int32Array; targets: Int32Array; resets: readonly boolean[] },
  device: Device,
  arena: Arena,
  stream?: Stream,
): WindowTensors {
  const { steps, batch } = window;
  if (window.inputs.length !== steps * batch || window.targets.length !== steps * batch)
    throw rangeError(
      `uploadWindow: 'inputs' and 'targets' must have steps * batch = ${steps * batch} elements, got ${window.inputs.length} and ${window.targets.length}`,
    );
  const [inputs, targets] = uploadSteps([window.inputs, window.targets], steps, batch, device, arena, stream);
  return { inputs, targets: scoredOnly(window.targets, targets, batch), resets: window.resets };
}

/**
 * Per-step labels (time-major, `steps` x `batch`, -1 = not scored) as int32 [batch] device
 * tensors in `arena`, in one upload (as uploadWindow); undefined for a step whose labels are
 * all -1. On `stream` (in its order, the host not waiting) when one is given.
 */
export function uploadStepLabels(
  labels: Int32Array,
  steps: number,
  batch: number,
  device: Device,
  arena: Arena,
  stream?: Stream,
): (Tensor | undefined)[] {
  if (labels.length !== steps * batch)
    throw rangeError(`uploadStepLabels: 'labels' must have steps * batch = ${steps * batch} elements, got ${labels.length}`);
  return scoredOnly(labels, uploadSteps([labels], steps, batch, device, arena, stream)[0], batch);
}

/** The `steps` x `batch` arrays in one buffer, one upload: per array, per step, a [batch] view. */
function uploadSteps(
  arrays: readonly Int32Array[],
  steps: number,
  batch: number,
  device: Device,
  arena: Arena,
  stream: Stream | undefined,
): Tensor[][] {
  // Each step's B values start at a multiple of 64 elements, as views must.
  const stride = Math.ceil(batch / 64) * 64;
  const host = new Int32Array(arrays.length * steps * stride);
  arrays.forEach((a, i) => {
    for (let t = 0; t < steps; t++) host.set(a.subarray(t * batch, (t + 1) * batch), (i * steps + t) * stride);
  });
  let all: Tensor;
  if (stream) {
    all = Tensor.empty([host.length], { device, dtype: 'int32', arena });
    all.write(host, stream);
  } else {
    all = Tensor.fromArray(host, [host.length], { device, arena });
  }
  return arrays.map((_, i) => Array.from({ length: steps }, (_, t) => all.view((i * steps + t) * stride, [batch], arena)));
}

/** The views of the steps whose labels are not all -1; undefined for the others. */
function scoredOnly(labels: Int32Array, views: Tensor[], batch: number): (Tensor | undefined)[] {
  return views.map((v, t) => (labels.subarray(t * batch, (t + 1) * batch).some((l) => l !== -1) ? v : undefined));
}
