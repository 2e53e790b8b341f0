// Policy-gradient coagent networks (Thomas 2011, "Policy gradient coagent networks", NIPS 24) as
// a training strategy. The rule, and how it relates to ./reinforce.ts: docs/methods/coagent.md.
//
// The class is REINFORCE's: Linear → Sigmoid blocks, then an output Linear. Every hidden layer
// is one coagent, a policy over its units' 0/1 outputs given its input (independent Bernoulli
// units, firing with p = σ(z)); the output layer is trained by its true gradient. A coagent's
// update uses only its own input, its own sample h and probabilities p, and one broadcast scalar
// per example: the critic's TD error. Here each example is a one-step episode, so the TD error
// is δ_b = r_b − V(x_b) with r_b = −L_b, and
//   hidden Linear k      dz_k = −(1/B) · diag(δ) · (H_k − P_k)   (= (1/B)·diag(L + V)·(H − P))
//   critic V(x) = w·x + c, a Linear(inputs, 1) starting at 0, trained by the same optimizer on
//   the regression of the reward: ∂/∂V of (1/2B)·Σ_b (V(x_b) − r_b)² = (V − r)/B = −δ/B
// V is read before the step's update and depends on the input only, so the estimate stays
// unbiased; where REINFORCE's running mean β is one number for every example, V(x) follows how
// hard each input is. Sampling, per-example losses and the update: BernoulliUnitsNetwork.
import { Device } from '../device';
import { Linear, Sequential } from '../nn/layers';
import type { Loss } from '../nn/losses';
import type { StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { TrainingStrategy } from '../train/strategy';
import { BatchConstants, BernoulliUnitsNetwork, BernoulliUnitsTraining } from './reinforce';
import { error } from '../errors';

export interface CoagentOptions {
  /** seeds the units' sampling; default: drawn from the Trainer's seed */
  seed?: number;
}

/** A network of Bernoulli-unit coagents, one per hidden layer, trained by the TD error of a linear critic. */
export class CoagentNetwork extends BernoulliUnitsNetwork {
  readonly name: string;
  /** V(x) = w·x + c, made (at zero) at initialize() */
  critic?: Linear;

  constructor(model: Sequential, options: CoagentOptions = {}) {
    super('coagent', 'the coagent method', model, options, ['seed']);
    this.name = `Coagent(${model.name})`;
  }

  initialize(device: Device, rng: Random): void {
    super.initialize(device, rng);
    this.critic?.dispose();
    // Zero weights need no draws: the Trainer's generator is left as REINFORCE leaves it.
    this.critic = new Linear(this.model.inputFeatures()!, 1, { init: 'zeros' });
    this.critic.initialize(device, new Random(0));
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    this.initializedWith();
    this.checkLoss(options.loss);
    const critic = this.critic!.parameters();
    const fixed = critic.map((p, i) => ({ name: `critic.${i}`, tensor: p.value }));
    return new BernoulliUnitsTraining(this, options.loss, options.optimizer(0), fixed, critic);
  }

  protected checkInitialized(): void {
    if (!this.critic) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
  }

  /** −δ = L + V(x) [B, 1] (the TD error, negated for descent); accumulates the critic's gradient −δ/B. */
  protected advantage(x: Tensor, perExample: Tensor, _c: BatchConstants, ctx: StepContext): Tensor {
    const value = this.critic!.forward(x, ctx);
    const negTd = ops.clone(ctx, perExample);
    ops.axpby(ctx, 1, value.output, 1, negTd);
    value.backward(ops.scale(ctx, 1 / x.shape[0], negTd), ctx, false);
    return negTd;
  }

  /** The critic moves with the optimizer's step. */
  protected updateBaseline(): void {}

  dispose(): void {
    super.dispose();
    this.critic?.dispose();
    this.critic = undefined;
  }
}

/**
 * Wraps a network of Linear → Sigmoid blocks and an output Linear as a coagent network: each
 * hidden layer a stochastic policy (Bernoulli units firing with the sigmoid's probability)
 * updated from its own input and sample and the TD error of a linear critic of the input; the
 * Trainer's loss must be 'softmax-cross-entropy' or 'mse'. Other networks are refused, naming the layer.
 */
export function coagent(model: Sequential, options: CoagentOptions = {}): CoagentNetwork {
  return new CoagentNetwork(model, options);
}
