// Losses: forward returns the mean loss as a [1] tensor (read it to see the number) and a
// closure giving the gradient w.r.t. the network's output.
import { shown } from '../check';
import * as ops from '../ops';
import { Tensor } from '../tensor';
import { StepContext } from './module';
import { rangeError, typeError } from '../errors';

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
    if (logits.shape.length !== 2)
      throw rangeError(`softmax-cross-entropy: the output must be [batch, classes], got [${logits.shape.join(', ')}]`);
    const { probs, loss } = ops.softmaxCrossEntropy(ctx, logits, labels);
    return {
      loss,
      backward: (bctx, scale = 1) => {
        return ops.softmaxCrossEntropyBackward(bctx, probs, labels, scale);
      },
    };
  }
}

/** Mean over all elements of (output - target)². */
export class MeanSquaredError implements Loss {
  readonly name = 'mse';
  readonly targetDType = 'float32';

  forward(pred: Tensor, target: Tensor, ctx: StepContext): LossForward {
    const loss = ops.mse(ctx, pred, target);
    return {
      loss,
      backward: (bctx, scale = 1) => {
        return ops.mseBackward(bctx, pred, target, scale);
      },
    };
  }
}

export type LossName = 'softmax-cross-entropy' | 'mse';

export function lossFrom(loss: LossName | Loss): Loss {
  if (loss === 'softmax-cross-entropy') return new SoftmaxCrossEntropy();
  if (loss === 'mse') return new MeanSquaredError();
  if (loss && typeof loss === 'object' && typeof loss.forward === 'function') return loss;
  throw typeError(`loss: expected 'softmax-cross-entropy', 'mse' or a Loss, got ${shown(loss)}`);
}
