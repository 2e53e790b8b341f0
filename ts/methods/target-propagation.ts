// Difference target propagation (DTP; Lee, Zhang, Fischer & Bengio, ECML-PKDD 2015, "Difference
// Target Propagation") as a training strategy. The rule: docs/methods/target-propagation.md.
//
// The model is cut into blocks, each a Linear and the activation after it (if any): block k
// maps h_{k-1} to h_k = f_k(h_{k-1}), h_{-1} = x, and the last block is the output layer. Per
// step, with L_b the loss of example b (so ∂L_b/∂h = B·∂(mean loss)/∂h):
//   top hidden target    ĥ_{K-2} = h_{K-2} − η̂ · ∂L_b/∂h_{K-2}           (η̂: `targetStep`)
//   difference targets   ĥ_{k-1} = h_{k-1} + g_k(ĥ_k) − g_k(h_k)          k = K-2 … 1
//   layer-local losses   hidden block k: (1/B) Σ_b ||h_k − ĥ_k||², gradient into block k only
//   output block         the true gradient of the loss
//   inverses             g_k = act_{k-1}(V_k h + c_k) (a Linear and block k−1's activation),
//                        trained on (1/B) Σ_b ||g_k(f_k(h̃)) − h̃||², h̃ = h_{k-1} + ε, ε ~ N(0, σ²)
//                        (σ: `noise`), gradient into g_k only
// The targets are computed with the inverses as they were before the step; then one optimizer
// step moves the model and the inverses together. With η̂ = 1/2 the top hidden block's local
// gradient 2(h − ĥ)/B is exactly backprop's, so the default learning rates carry over.
//
// The noise is drawn on the host (synthgrad has no random op) from the network's generator,
// which checkpoints save; so a DTP step cannot be captured into a graph.
import { checkOptions, describe, shown } from '../check';
import { Device } from '../device';
import { Activation, Linear, Sequential } from '../nn/layers';
import type { Loss } from '../nn/losses';
import type { Forwarded, Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { StrategyState, TrainingStrategy } from '../train/strategy';
import { LayerForwards, MethodNetwork, MethodTraining, checkSequential } from './sequential';
import { error, rangeError, typeError } from '../errors';

export interface TargetPropagationOptions {
  /** η̂: the top hidden target is h − η̂·∂L_b/∂h (L_b one example's loss); default 0.5 (backprop's step there) */
  targetStep?: number;
  /** σ: the standard deviation of the Gaussian noise the inverses are trained on; default 0.1 */
  noise?: number;
  /** seeds the noise generator; default: drawn from the Trainer's seed */
  seed?: number;
}

/** Block k: layers [start, end) of the flattened model, a Linear and, if any, the activation after it. */
export interface TargetBlock {
  start: number;
  end: number;
  /** the block's output width */
  width: number;
  activation?: Activation;
}

/** An inverse g_k: a Linear from block k's width to block k−1's, then block k−1's activation. */
export interface InverseLayer {
  linear: Linear;
  activation?: Activation;
}

const CLASS =
  'difference target propagation (Lee et al. 2015) trains a stack of blocks, each a Linear and optionally one ' +
  'activation (tanh, sigmoid or relu; Lee et al. use tanh), the last block being the output layer';

/** A Sequential model of Linear(+activation) blocks trained by difference target propagation. */
export class TargetPropagationNetwork extends MethodNetwork {
  readonly name: string;
  readonly blocks: TargetBlock[];
  readonly targetStep: number;
  readonly noise: number;
  readonly seed?: number;
  /** g_k for the hidden blocks k = 1 … K−2 (index k; undefined elsewhere), made at initialize() */
  readonly inverses: (InverseLayer | undefined)[] = [];
  /** the noise generator (host side), made at initialize() */
  noiseRandom?: Random;

  constructor(model: Sequential, options: TargetPropagationOptions = {}) {
    const owner = 'targetPropagation';
    checkSequential(owner, model);
    super(model);
    if (!options || typeof options !== 'object') throw typeError(`${owner}: options must be an object`);
    checkOptions(owner, options, ['targetStep', 'noise', 'seed']);
    const positive = (key: 'targetStep' | 'noise', v: unknown, fallback: number, zeroOk: boolean): number => {
      if (v === undefined) return fallback;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!zeroOk && v === 0))
        throw rangeError(`${owner}: '${key}' must be a finite number ${zeroOk ? '>= 0' : '> 0'}, got ${shown(v)}`);
      return v;
    };
    this.targetStep = positive('targetStep', options.targetStep, 0.5, false);
    this.noise = positive('noise', options.noise, 0.1, true);
    if (options.seed !== undefined && !Number.isInteger(options.seed))
      throw typeError(`${owner}: 'seed' must be an integer, got ${shown(options.seed)}`);
    this.seed = options.seed;
    const layers = this.layers;
    this.blocks = [];
    for (let i = 0; i < layers.length;) {
      const l = layers[i];
      if (!(l instanceof Linear))
        throw typeError(
          `${owner}: layer ${i} (${l.name}) is not a Linear where a block starts ` +
            `(${l instanceof Activation ? 'two activations in a row' : 'no rule for this module'}): ${CLASS}`,
        );
      const next = layers[i + 1];
      const activation = next instanceof Activation ? next : undefined;
      const end = activation ? i + 2 : i + 1;
      this.blocks.push({ start: i, end, width: l.outFeatures, activation });
      i = end;
    }
    if (this.blocks.length < 2)
      throw rangeError(
        `${owner}: the model is one block (${layers.map((l) => l.name).join(' → ')}): it has no hidden layer to send a target to: ${CLASS}`,
      );
    this.blocks.forEach((b, k) => {
      const prev = k === 0 ? model.inputFeatures() : this.blocks[k - 1].width;
      const lin = layers[b.start] as Linear;
      if (prev !== undefined && lin.inFeatures !== prev)
        throw rangeError(`${owner}: layer ${b.start} (${lin.name}) takes ${lin.inFeatures} features but gets ${prev}`);
    });
    this.name = `DTP(${model.name})`;
  }

  initialize(device: Device, rng: Random): void {
    super.initialize(device, rng);
    this.disposeInverses();
    const init = rng.fork();
    for (let k = 1; k < this.blocks.length - 1; k++) {
      const below = this.blocks[k - 1];
      const linear = new Linear(this.blocks[k].width, below.width);
      linear.initialize(device, init);
      this.inverses[k] = { linear, activation: below.activation ? new Activation(below.activation.kind) : undefined };
    }
    this.noiseRandom = this.seed === undefined ? rng.fork() : new Random(this.seed);
  }

  /** The inverses' parameters, block by block (weight, bias). */
  inverseParameters(): Parameter[] {
    return this.inverses.flatMap((g) => (g ? g.linear.parameters() : []));
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    this.initializedWith();
    const extra = this.inverseParameters();
    const fixed = extra.map((p, i) => ({ name: `inverse.${i}`, tensor: p.value }));
    return new TargetPropagationTraining(this, options.loss, options.optimizer(0), (f, e, ctx) => this.backward(f, e, ctx), fixed, extra);
  }

  /** Block k's output h_k in the forward pass (h_{-1} = x for k = -1). */
  private out(f: LayerForwards, k: number): Tensor {
    return f.outputs[k < 0 ? 0 : this.blocks[k].end];
  }

  /** g_k(h): the inverse's forward (its closures, for training it, in the result). */
  private inverseForward(k: number, h: Tensor, ctx: StepContext): Forwarded[] {
    const g = this.inverses[k];
    if (!g) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
    const fs = [g.linear.forward(h, ctx)];
    if (g.activation) fs.push(g.activation.forward(fs[0].output, ctx));
    return fs;
  }

  /** Backpropagates dy through closures `fs` (last first), the first one's input gradient unused. */
  private static through(fs: Forwarded[], dy: Tensor, ctx: StepContext): void {
    let g: Tensor | undefined = dy;
    for (let i = fs.length - 1; i >= 0 && g; i--) g = fs[i].backward(g, ctx, i > 0);
  }

  /**
   * The targets ĥ_0 … ĥ_{K-2} (the output block's gradient accumulated on the way: its true
   * gradient). Public so that tests can compare them with a hand computation.
   */
  targets(f: LayerForwards, outputGradient: Tensor, ctx: StepContext): Tensor[] {
    const K = this.blocks.length;
    const top = this.blocks[K - 1];
    let g: Tensor | undefined = outputGradient;
    for (let i = top.end - 1; i >= top.start && g; i--) g = f.forwards[i].backward(g, ctx, true);
    const rows = outputGradient.shape[0];
    const targets: Tensor[] = [];
    // ĥ = h − η̂·B·∂(mean loss)/∂h: a step on each example's own loss.
    const t = ops.clone(ctx, this.out(f, K - 2));
    ops.axpby(ctx, -this.targetStep * rows, g!, 1, t);
    targets[K - 2] = t;
    for (let k = K - 2; k >= 1; k--) {
      const gTarget = this.inverseForward(k, targets[k], ctx).pop()!.output;
      const gOut = this.inverseForward(k, this.out(f, k), ctx).pop()!.output;
      const below = ops.clone(ctx, this.out(f, k - 1));
      ops.axpby(ctx, 1, gTarget, 1, below);
      ops.axpby(ctx, -1, gOut, 1, below);
      targets[k - 1] = below;
    }
    return targets;
  }

  /** The whole DTP backward pass: targets, the hidden blocks' local losses, the inverses' losses. */
  private backward(f: LayerForwards, e: Tensor, ctx: StepContext): void {
    const K = this.blocks.length;
    // The noise is drawn first, in block order, so that its order does not depend on the rest.
    const corrupted: Tensor[] = [];
    for (let k = 1; k < K - 1; k++) corrupted[k] = this.corrupt(this.out(f, k - 1), ctx);
    const targets = this.targets(f, e, ctx);
    for (let k = 0; k < K - 1; k++) {
      const b = this.blocks[k];
      // (1/B)·Σ ||h − ĥ||²: mse's gradient 2(h − ĥ)/(B·width), times width.
      const dh = ops.mseBackward(ctx, this.out(f, k), targets[k], b.width);
      let g: Tensor | undefined = dh;
      for (let i = b.end - 1; i >= b.start && g; i--) g = f.forwards[i].backward(g, ctx, i > b.start);
    }
    for (let k = 1; k < K - 1; k++) {
      const h = corrupted[k];
      const b = this.blocks[k];
      // f_k(h̃) with the block's own layers; their closures are dropped (no gradient into f_k).
      let a = h;
      for (let i = b.start; i < b.end; i++) a = this.layers[i].forward(a, ctx).output;
      const fs = this.inverseForward(k, a, ctx);
      const dr = ops.mseBackward(ctx, fs[fs.length - 1].output, h, this.blocks[k - 1].width);
      TargetPropagationNetwork.through(fs, dr, ctx);
    }
  }

  /** h + ε, ε ~ N(0, σ²) drawn on the host, row-major. */
  private corrupt(h: Tensor, ctx: StepContext): Tensor {
    const rng = this.noiseRandom;
    if (!rng) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
    const eps = new Float32Array(h.size);
    for (let i = 0; i < eps.length; i++) eps[i] = this.noise * rng.normal();
    const out = Tensor.fromArray(eps, h.shape, { device: ctx.device, arena: ctx.arena });
    ops.axpby(ctx, 1, h, 1, out);
    return out;
  }

  private disposeInverses(): void {
    for (const g of this.inverses) g?.linear.dispose();
    this.inverses.length = 0;
  }

  dispose(): void {
    super.dispose();
    this.disposeInverses();
  }
}

/** MethodTraining, plus the noise generator's position in checkpoints; not capturable (host noise). */
class TargetPropagationTraining extends MethodTraining {
  constructor(
    readonly dtp: TargetPropagationNetwork,
    loss: Loss,
    optimizer: Optimizer,
    backward: (f: LayerForwards, outputGradient: Tensor, ctx: StepContext) => void,
    fixed: { name: string; tensor: Tensor }[],
    extra: Parameter[],
  ) {
    super(dtp, loss, optimizer, backward, fixed, extra);
  }

  captureBlocker(): string {
    return "difference target propagation draws its inverses' training noise on the host at every step";
  }

  checkpointState(): StrategyState {
    const s = super.checkpointState();
    return { tensors: s.tensors, host: { ...(s.host as object), noiseRandom: this.dtp.noiseRandom?.state() } };
  }

  restoreState(host: unknown): void {
    super.restoreState(host);
    const state = (host as { noiseRandom?: unknown } | null)?.noiseRandom;
    if (!Array.isArray(state))
      throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: DTP's 'noiseRandom' is missing (got ${describe(state)})`);
    this.dtp.noiseRandom?.restore(state as number[]);
  }
}

/**
 * Wraps a Sequential model of Linear(+activation) blocks for training by difference target
 * propagation; give the result to a Trainer as the model. Other models are refused, naming the
 * layer that does not fit.
 */
export function targetPropagation(model: Sequential, options: TargetPropagationOptions = {}): TargetPropagationNetwork {
  return new TargetPropagationNetwork(model, options);
}
