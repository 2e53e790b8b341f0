// Losses: forward returns the mean loss as a [1] tensor (read it to see the number) and a
// closure giving the gradient w.r.t. the network's output.
import { native } from '../native';
import { Tensor } from '../tensor';
import { StepContext } from './module';

const ops = native.ops;

export interface LossForward {
  loss: Tensor;
  /** The gradient of the mean loss w.r.t. the output (scaled by `scale`, default 1). */
  backward(ctx: StepContext, scale?: number): Tensor;
}

export interface Loss {
  readonly name: string;
  /** The dtype of the targets: int32 class labels or float32 values. */
  readonly targetDType: 'int32' | 'float32';
  forward(output: Tensor, target: Tensor, ctx: StepContext): LossForward;
}

/** Softmax over the last dimension, then the mean negative log-likelihood of int32 labels. */
export class SoftmaxCrossEntropy implements Loss {
  readonly name = 'softmax-cross-entropy';
  readonly targetDType = 'int32';

  forward(logits: Tensor, labels: Tensor, ctx: StepContext): LossForward {
    if (logits.shape.length !== 2) throw new RangeError(`softmax-cross-entropy: the output must be [batch, classes], got [${logits.shape.join(', ')}]`);
    const opts = { device: ctx.device, arena: ctx.arena };
    const probs = Tensor.empty(logits.shape, opts);
    const loss = Tensor.empty([1], opts);
    ops.softmaxCrossEntropyForward(ctx.stream.handle, logits.handle, labels.handle, probs.handle, loss.handle);
    return {
      loss,
      backward: (bctx, scale = 1) => {
        const d = Tensor.empty(logits.shape, { device: bctx.device, arena: bctx.arena });
        ops.softmaxCrossEntropyBackward(bctx.stream.handle, probs.handle, labels.handle, d.handle, scale);
        return d;
      },
    };
  }
}

/** Mean over all elements of (output - target)². */
export class MeanSquaredError implements Loss {
  readonly name = 'mse';
  readonly targetDType = 'float32';

  forward(pred: Tensor, target: Tensor, ctx: StepContext): LossForward {
    const opts = { device: ctx.device, arena: ctx.arena };
    const loss = Tensor.empty([1], opts);
    ops.mseForward(ctx.stream.handle, pred.handle, target.handle, loss.handle);
    return {
      loss,
      backward: (bctx, scale = 1) => {
        const d = Tensor.empty(pred.shape, { device: bctx.device, arena: bctx.arena });
        ops.mseBackward(bctx.stream.handle, pred.handle, target.handle, d.handle, scale);
        return d;
      },
    };
  }
}

export type LossName = 'softmax-cross-entropy' | 'mse';

export function lossFrom(loss: LossName | Loss): Loss {
  if (loss === 'softmax-cross-entropy') return new SoftmaxCrossEntropy();
  if (loss === 'mse') return new MeanSquaredError();
  if (loss && typeof loss === 'object' && typeof loss.forward === 'function') return loss;
  throw new TypeError(`loss: expected 'softmax-cross-entropy', 'mse' or a Loss, got ${String(loss)}`);
}
