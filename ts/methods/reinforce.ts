// REINFORCE for hidden units (Williams 1992, "Simple statistical gradient-following algorithms for
// connectionist reinforcement learning", Machine Learning 8) as a training strategy. The rule:
// docs/methods/reinforce.md.
//
// The class: Linear → Sigmoid blocks, then an output Linear. Every hidden unit is a Bernoulli
// unit: it fires (h = 1) with probability p = σ(z), z its pre-activation, independently per
// example and unit; the sampled 0/1 activations go forward. The reward of example b is minus its
// loss, r_b = −L_b (L_b the example's share of the mean loss: its cross-entropy, or the mean of
// its squared errors). With ∂ log π(h | z)/∂z = h − p, every hidden Linear gets
//   dz = (1/B) · diag(L − β) · (H − P),     then dW = dzᵀ·input, db = Σ_b dz
// (gradient descent on the expected loss is ascent on the expected reward). β is a running
// mean of the batches' mean losses, β ← d·β + (1 − d)·mean_b L_b after each step (d: `decay`,
// default 0.9; β starts at 0); it uses earlier batches only, so the estimate stays unbiased.
// The output layer is trained by its true gradient given the sampled units.
// Evaluation (Trainer.evaluate, predict) runs the plain model: the units output p (mean field).
//
// With no random or per-example-loss op in synthgrad, this is assembled from existing ops:
// the uniform draws u are made on the host (the network's generator, which checkpoints save)
// and the sample is 1[z − logit(u) > 0], ReLU's backward used as the step function; diag(·)
// masks a broadcast with the identity the same way; a cross-entropy per example comes from one
// loss op per row with the other rows' logits masked to 0 (each scoring exactly ln C). That
// costs 3B small ops per step, and the host draws block graph capture.
import { checkOptions, describe, shown } from '../check';
import { Device } from '../device';
import { Activation, Linear, Sequential } from '../nn/layers';
import { Loss, MeanSquaredError, SoftmaxCrossEntropy } from '../nn/losses';
import type { Forwarded, Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { NamedTensor } from '../train/checkpoint';
import type { StrategyState, TrainingStrategy } from '../train/strategy';
import { LayerForwards, MethodNetwork, MethodTraining, checkSequential, outputWidth } from './sequential';
import { error, rangeError, typeError } from '../errors';

export interface ReinforceOptions {
  /** d: the baseline's running-mean decay, β ← d·β + (1 − d)·(the batch's mean loss); in [0, 1), default 0.9 */
  decay?: number;
  /** seeds the units' sampling; default: drawn from the Trainer's seed */
  seed?: number;
}

/** The network class, for `label`'s refusals. */
const networkClass = (label: string) =>
  `${label} here trains networks of stochastic Bernoulli units: Linear → Sigmoid blocks (the sigmoid gives each ` +
  "unit's firing probability), then an output Linear";

/** Constants for a batch of B rows (and C outputs), made once per batch size. */
export interface BatchConstants {
  identity: Tensor; // [B, B]
  onesColumn: Tensor; // [B, 1]
  onesRow: Tensor; // [1, B]
  rowMasks: Tensor[]; // B of [B, C]: 1 on row b (cross-entropy only)
  units: Tensor[]; // B of [B, 1]: e_b (cross-entropy only)
}

/**
 * What REINFORCE and coagent networks (./coagent.ts) share: Bernoulli hidden units sampled on the
 * host, the per-example losses, and the likelihood-ratio update of every hidden Linear from
 * (L_b − baseline_b); a subclass says what the baseline is and how it learns.
 */
export abstract class BernoulliUnitsNetwork extends MethodNetwork {
  readonly seed?: number;
  readonly outputs: number;
  /** the Linear layers' indices (each but the last followed by its Sigmoid) */
  readonly linears: number[];
  /** the units' sampler (host side), made at initialize() */
  sampler?: Random;
  private readonly constants = new Map<number, BatchConstants>();

  /** `owner`: the name in errors; `label`: the method in prose; `keys`: the options it accepts. */
  constructor(
    readonly owner: string,
    readonly label: string,
    model: Sequential,
    options: { seed?: number },
    keys: string[],
  ) {
    checkSequential(owner, model);
    super(model);
    if (!options || typeof options !== 'object') throw typeError(`${owner}: options must be an object`);
    checkOptions(owner, options, keys);
    if (options.seed !== undefined && !Number.isInteger(options.seed))
      throw typeError(`${owner}: 'seed' must be an integer, got ${shown(options.seed)}`);
    this.seed = options.seed;
    const CLASS = networkClass(label);
    this.layers.forEach((l, i) => {
      const ok = i % 2 === 0 ? l instanceof Linear : l instanceof Activation && l.kind === 'sigmoid';
      if (!ok) throw typeError(`${owner}: layer ${i} is ${l.name} where ${i % 2 === 0 ? 'a Linear' : 'a Sigmoid'} belongs: ${CLASS}`);
    });
    if (this.layers.length % 2 === 0)
      throw typeError(`${owner}: the model ends with ${this.layers[this.layers.length - 1].name}, not a Linear: ${CLASS}`);
    if (this.layers.length < 3)
      throw rangeError(`${owner}: the model has no hidden layer (it is one Linear, which backprop trains): ${CLASS}`);
    this.outputs = outputWidth(owner, model);
    this.linears = this.layers.flatMap((l, i) => (l instanceof Linear ? [i] : []));
  }

  initialize(device: Device, rng: Random): void {
    super.initialize(device, rng);
    this.disposeConstants();
    this.sampler = this.seed === undefined ? rng.fork() : new Random(this.seed);
  }

  /** Refuses a loss with no per-example reading (the reward is minus each example's loss). */
  protected checkLoss(loss: Loss): asserts loss is SoftmaxCrossEntropy | MeanSquaredError {
    if (!(loss instanceof SoftmaxCrossEntropy) && !(loss instanceof MeanSquaredError))
      throw typeError(
        `${this.owner}: the loss must be 'softmax-cross-entropy' or 'mse' (the reward is minus each example's loss), got ${loss?.name ?? describe(loss)}`,
      );
  }

  /** L − baseline [B, 1] for the batch's inputs x and per-example losses L (before any update). */
  protected abstract advantage(x: Tensor, perExample: Tensor, c: BatchConstants, ctx: StepContext): Tensor;

  /** The baseline's own update, after the step's use of it; `meanLoss` [1]. */
  protected abstract updateBaseline(meanLoss: Tensor, ctx: StepContext): void;

  /** Throws unless initialize() made the method's state. */
  protected abstract checkInitialized(): void;

  /** The forward pass with every hidden unit sampled: outputs[i + 1] of a Sigmoid is the 0/1 sample, its forward's output p. */
  forwardLayers(x: Tensor, ctx: StepContext): LayerForwards {
    const sampler = this.sampler;
    if (!sampler) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
    const outputs = [x];
    const forwards: Forwarded[] = [];
    for (const layer of this.layers) {
      const input = outputs[outputs.length - 1];
      const f = layer.forward(input, ctx);
      forwards.push(f);
      if (!(layer instanceof Activation)) {
        outputs.push(f.output);
        continue;
      }
      // h = 1[u < σ(z)] = 1[z − logit(u) > 0], u uniform in (0, 1), row-major.
      const thresholds = new Float32Array(input.size);
      for (let k = 0; k < thresholds.length; k++) {
        const u = (sampler.nextUint32() + 0.5) / 4294967296;
        thresholds[k] = Math.log(u / (1 - u));
      }
      const s = Tensor.fromArray(thresholds, input.shape, { device: ctx.device, arena: ctx.arena });
      ops.axpby(ctx, 1, input, -1, s); // s = z − logit(u)
      outputs.push(ops.activationBackward(ctx, 'relu', s, ops.full(ctx, input.shape, 1)));
    }
    return { outputs, forwards };
  }

  /**
   * One REINFORCE estimate on a batch: a sampled forward pass, the output layer's true gradient
   * and the hidden layers' estimates accumulated into the gradients, the baseline updated; returns the
   * mean loss [1]. (The training step is this plus an optimizer step; tests call it directly.)
   */
  accumulate(x: Tensor, y: Tensor, loss: Loss, ctx: StepContext): Tensor {
    this.checkInitialized();
    const f = this.forwardLayers(x, ctx);
    const out = f.outputs[f.outputs.length - 1];
    const l = loss.forward(out, y, ctx);
    const lin = this.linears;
    f.forwards[lin[lin.length - 1]].backward(l.backward(ctx), ctx, false);
    const rows = out.shape[0];
    const c = this.batchConstants(rows, loss instanceof SoftmaxCrossEntropy);
    const perExample = loss instanceof SoftmaxCrossEntropy ? this.crossEntropies(out, y, c, ctx) : this.squaredErrors(out, y, c, ctx);
    // diag(L − β): (L − β)·1ᵀ [B, B], kept on the diagonal by the identity mask.
    const advantage = this.advantage(x, perExample, c, ctx);
    const broadcast = ops.matmul(ctx, advantage, c.onesRow);
    const diag = ops.activationBackward(ctx, 'relu', c.identity, broadcast);
    for (let k = 0; k < lin.length - 1; k++) {
      const p = f.forwards[lin[k] + 1].output;
      const score = ops.clone(ctx, f.outputs[lin[k] + 2]); // h − p
      ops.axpby(ctx, -1, p, 1, score);
      const dz = Tensor.empty(score.shape, { device: ctx.device, arena: ctx.arena });
      ops.gemm(ctx, diag, score, dz, false, false, 1 / rows, 0);
      f.forwards[lin[k]].backward(dz, ctx, false);
    }
    this.updateBaseline(l.loss, ctx); // after its use: earlier batches only
    return l.loss;
  }

  /** L_b = −log softmax(out_b)[y_b] [B, 1]: one loss op per row, the other rows' logits 0 (each scoring ln C). */
  private crossEntropies(out: Tensor, labels: Tensor, c: BatchConstants, ctx: StepContext): Tensor {
    const rows = out.shape[0];
    const sums = ops.full(ctx, [rows, 1], 0);
    for (let b = 0; b < rows; b++) {
      const masked = ops.activationBackward(ctx, 'relu', c.rowMasks[b], out);
      const { loss } = ops.softmaxCrossEntropy(ctx, masked, labels); // (L_b + (B − 1)·ln C) / B
      ops.gemm(ctx, c.units[b], loss.reshape([1, 1], ctx.arena), sums, false, false, 1, 1);
    }
    const result = ops.full(ctx, [rows, 1], -(rows - 1) * Math.log(this.outputs));
    ops.axpby(ctx, rows, sums, 1, result);
    return result;
  }

  /** L_b = (1/K)·Σ_k (out − y)²_bk [B, 1]: the diagonal of D·Dᵀ. */
  private squaredErrors(out: Tensor, target: Tensor, c: BatchConstants, ctx: StepContext): Tensor {
    const rows = out.shape[0];
    const d = ops.clone(ctx, out);
    ops.axpby(ctx, -1, target, 1, d);
    const gram = Tensor.empty([rows, rows], { device: ctx.device, arena: ctx.arena });
    ops.gemm(ctx, d, d, gram, false, true, 1, 0);
    const diag = ops.activationBackward(ctx, 'relu', c.identity, gram);
    const result = Tensor.empty([rows, 1], { device: ctx.device, arena: ctx.arena });
    ops.gemm(ctx, diag, c.onesColumn, result, false, false, 1 / this.outputs, 0);
    return result;
  }

  private batchConstants(rows: number, crossEntropy: boolean): BatchConstants {
    let c = this.constants.get(rows);
    const device = this.initializedWith().device;
    if (!c) {
      const eye = new Float32Array(rows * rows);
      for (let b = 0; b < rows; b++) eye[b * rows + b] = 1;
      c = {
        identity: Tensor.fromArray(eye, [rows, rows], { device }),
        onesColumn: Tensor.fromArray(new Float32Array(rows).fill(1), [rows, 1], { device }),
        onesRow: Tensor.fromArray(new Float32Array(rows).fill(1), [1, rows], { device }),
        rowMasks: [],
        units: [],
      };
      this.constants.set(rows, c);
    }
    if (crossEntropy && c.rowMasks.length === 0) {
      for (let b = 0; b < rows; b++) {
        const mask = new Float32Array(rows * this.outputs);
        mask.fill(1, b * this.outputs, (b + 1) * this.outputs);
        c.rowMasks.push(Tensor.fromArray(mask, [rows, this.outputs], { device }));
        const unit = new Float32Array(rows);
        unit[b] = 1;
        c.units.push(Tensor.fromArray(unit, [rows, 1], { device }));
      }
    }
    return c;
  }

  private disposeConstants(): void {
    for (const c of this.constants.values()) for (const t of [c.identity, c.onesColumn, c.onesRow, ...c.rowMasks, ...c.units]) t.dispose();
    this.constants.clear();
  }

  dispose(): void {
    super.dispose();
    this.disposeConstants();
  }
}

/** A network of Bernoulli hidden units trained by REINFORCE, with a running-mean baseline β. */
export class ReinforceNetwork extends BernoulliUnitsNetwork {
  readonly name: string;
  readonly decay: number;
  /** β [1], made at initialize() */
  baseline?: Tensor;

  constructor(model: Sequential, options: ReinforceOptions = {}) {
    super('reinforce', 'REINFORCE', model, options, ['decay', 'seed']);
    const d = options.decay ?? 0.9;
    if (typeof d !== 'number' || !(d >= 0 && d < 1)) throw rangeError(`reinforce: 'decay' must be in [0, 1), got ${shown(d)}`);
    this.decay = d;
    this.name = `REINFORCE(${model.name})`;
  }

  initialize(device: Device, rng: Random): void {
    super.initialize(device, rng);
    this.baseline?.dispose();
    this.baseline = Tensor.zeros([1], { device });
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    this.initializedWith();
    this.checkLoss(options.loss);
    return new BernoulliUnitsTraining(this, options.loss, options.optimizer(0), [{ name: 'baseline', tensor: this.baseline! }]);
  }

  protected checkInitialized(): void {
    if (!this.baseline)
      throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
  }

  protected advantage(_x: Tensor, perExample: Tensor, c: BatchConstants, ctx: StepContext): Tensor {
    const advantage = ops.clone(ctx, perExample);
    ops.gemm(ctx, c.onesColumn, this.baseline!.reshape([1, 1], ctx.arena), advantage, false, false, -1, 1);
    return advantage;
  }

  protected updateBaseline(meanLoss: Tensor, ctx: StepContext): void {
    ops.axpby(ctx, 1 - this.decay, meanLoss, this.decay, this.baseline!);
  }

  dispose(): void {
    super.dispose();
    this.baseline?.dispose();
    this.baseline = undefined;
  }
}

/**
 * A step of a BernoulliUnitsNetwork: its estimate, then one optimizer step (over the model's
 * parameters and `extra`); the sampler's position and `fixed` (the baseline's state) in checkpoints.
 */
export class BernoulliUnitsTraining extends MethodTraining {
  constructor(
    readonly units: BernoulliUnitsNetwork,
    loss: Loss,
    optimizer: Optimizer,
    fixed: NamedTensor[],
    extra: Parameter[] = [],
  ) {
    super(units, loss, optimizer, () => undefined, fixed, extra);
  }

  step(x: Tensor, y: Tensor, ctx: StepContext): Tensor {
    const loss = this.units.accumulate(x, y, this.loss, ctx);
    this.optimizer.step(this.params, ctx.stream, ctx.capture);
    return loss;
  }

  captureBlocker(): string {
    return `${this.units.label} draws its units' samples on the host at every step`;
  }

  checkpointState(): StrategyState {
    const s = super.checkpointState();
    return { tensors: s.tensors, host: { ...(s.host as object), sampler: this.units.sampler?.state() } };
  }

  restoreState(host: unknown): void {
    super.restoreState(host);
    const state = (host as { sampler?: unknown } | null)?.sampler;
    if (!Array.isArray(state))
      throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${this.units.label}'s 'sampler' is missing (got ${describe(state)})`);
    this.units.sampler?.restore(state as number[]);
  }
}

/**
 * Wraps a network of Linear → Sigmoid blocks and an output Linear for training by REINFORCE, its
 * hidden units made stochastic (Bernoulli, firing with the sigmoid's probability); the Trainer's
 * loss must be 'softmax-cross-entropy' or 'mse'. Other networks are refused, naming the layer.
 */
export function reinforce(model: Sequential, options: ReinforceOptions = {}): ReinforceNetwork {
  return new ReinforceNetwork(model, options);
}
