// Kickback (Balduzzi, Vanchinathan & Buhmann, AAAI 2015, "Kickback cuts Backprop's red-tape")
// as a training strategy. The rule and the network class it assumes: docs/methods/kickback.md.
//
// The class: rectifier networks for scalar regression, i.e. Linear → ReLU → … → Linear → ReLU
// → Linear(·, 1), trained with the squared error. Every unit then receives one scalar, the
// global error β = ∂loss/∂output of its example, times its "kick": its influence on the next
// layer, the sum of its outgoing weights to the units of the next layer that are active
//   τ_j = Σ_k W_kj · 1[unit k active]      (the output unit, being linear, always is)
// so that, for an active unit j, the error at its output is β·τ_j instead of backprop's
// β·(sum over all active paths from j to the output of the products of their weights). For
// the last hidden layer the two agree; below it Kickback truncates the paths after one step.
// The output layer's own update is the true gradient.
//
// Anything else is refused before training, naming the reason: BatchNorm (which mixes the
// examples of a batch and is no rectifier unit), tanh or sigmoid units, more than one output
// (there is no scalar error to broadcast), a loss other than the squared error.
import { describe } from '../check';
import { Activation, Linear, Sequential } from '../nn/layers';
import { MeanSquaredError, Loss } from '../nn/losses';
import type { StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Optimizer } from '../optim/optimizers';
import { Tensor } from '../tensor';
import type { TrainingStrategy } from '../train/strategy';
import { LayerForwards, MethodNetwork, MethodTraining, checkSequential, outputWidth } from './sequential';
import { rangeError, typeError } from '../errors';

const CLASS =
  'Kickback (Balduzzi et al. 2015) is defined for rectifier networks doing scalar regression: ' +
  'Linear → ReLU blocks, then a Linear to one output, trained with the squared error';

/** A rectifier network for scalar regression, trained by Kickback. */
export class KickbackNetwork extends MethodNetwork {
  readonly name: string;
  /** the Linear layers' indices in `layers` (each but the last followed by a ReLU) */
  readonly linears: number[];

  constructor(model: Sequential) {
    checkSequential('kickback', model);
    super(model);
    const layers = this.layers;
    layers.forEach((l, i) => {
      const wanted = i % 2 === 0 ? 'a Linear' : 'a ReLU';
      const ok = i % 2 === 0 ? l instanceof Linear : l instanceof Activation && l.kind === 'relu';
      if (!ok) throw typeError(`kickback: layer ${i} is ${l.name} where ${wanted} belongs: ${CLASS}`);
    });
    if (layers.length % 2 === 0) throw typeError(`kickback: the model ends with ${layers[layers.length - 1].name}, not a Linear: ${CLASS}`);
    if (layers.length < 3) throw rangeError(`kickback: the model has no hidden layer (it is one Linear, which backprop trains): ${CLASS}`);
    const outputs = outputWidth('kickback', model);
    if (outputs !== 1)
      throw rangeError(
        `kickback: the model has ${outputs} outputs; Kickback broadcasts one scalar error to every unit, ` +
          `so it needs a single output (a ${outputs}-class classifier has no scalar error): ${CLASS}`,
      );
    this.linears = layers.flatMap((l, i) => (l instanceof Linear ? [i] : []));
    this.name = `Kickback(${model.name})`;
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    this.initializedWith();
    if (!(options.loss instanceof MeanSquaredError))
      throw typeError(`kickback: the loss must be 'mse', got ${options.loss?.name ?? describe(options.loss)}: ${CLASS}`);
    return new MethodTraining(this, options.loss, options.optimizer(0), (f, beta, ctx) => this.backward(f, beta, ctx));
  }

  /**
   * β [B, 1] is the global error of each example (the loss gradient at the output). The output
   * Linear gets it as backprop would; hidden block l (Linear_l → ReLU_l) gets β·τ at its ReLU's
   * output, τ = (1[active units of layer l+1] · W_{l+1}) row by row.
   */
  private backward(f: LayerForwards, beta: Tensor, ctx: StepContext): void {
    const lin = this.linears;
    const n = lin.length;
    f.forwards[lin[n - 1]].backward(beta, ctx, false); // the output layer: its true gradient
    const rows = beta.shape[0];
    for (let l = n - 2; l >= 0; l--) {
      const next = this.layers[lin[l + 1]] as Linear;
      // β broadcast over the next layer's units: [B, 1] · [1, width] (a rank-1 product).
      const broadcast = Tensor.empty([rows, next.outFeatures], { device: ctx.device, arena: ctx.arena });
      ops.gemm(ctx, beta, this.ones(ctx, next.outFeatures), broadcast, false, false, 1, 0);
      // Only the active units of the next layer pass it on (the output unit is linear: all do).
      const above = l + 1 < n - 1 ? ops.activationBackward(ctx, 'relu', f.outputs[lin[l + 1] + 2], broadcast) : broadcast;
      const kick = ops.matmul(ctx, above, next.weight!.value); // β_b · τ_bj  [B, width_l]
      const dz = f.forwards[lin[l] + 1].backward(kick, ctx, true)!; // the ReLU's own mask
      f.forwards[lin[l]].backward(dz, ctx, false); // dW += dzᵀx, db += Σ dz
    }
  }

  /** A [1, width] row of ones, made in the step's arena. */
  private ones(ctx: StepContext, width: number): Tensor {
    return ops.full(ctx, [1, width], 1);
  }
}

/**
 * Wraps a rectifier network for scalar regression (Linear → ReLU blocks, then a Linear to one
 * output) for training by Kickback; the Trainer's loss must be 'mse'. Other networks are
 * refused with an error naming what does not fit.
 */
export function kickback(model: Sequential): KickbackNetwork {
  return new KickbackNetwork(model);
}
