// Feedback alignment (FA, Lillicrap et al. 2016) and direct feedback alignment (DFA, Nøkland
// 2016) as training strategies for Sequential models of Linear, BatchNorm1d and activation
// layers. The rules, and how they map onto synthgrad's synthesizers: docs/methods/feedback-alignment.md.
//
//   FA   the backward pass of backprop, except that each Linear sends the error down through a
//        fixed random matrix B (the shape of its weight W) instead of W: dx = dy·B, not dy·W.
//        Its own gradients (dW = dyᵀx, db) and the other layers' backward are backprop's.
//   DFA  the model is cut before every Linear into blocks (block k: Linear_k and the layers up
//        to the next Linear). The output error e = ∂loss/∂output reaches the output of every
//        block but the last as e·D_k, D_k [outputs, width_k] fixed and random; each block
//        backpropagates that through its own layers only. No error passes between blocks.
//
// The fixed matrices are drawn once, when the Trainer initializes the model (from `seed`, or
// else from the Trainer's seed), each like the weight it stands in for: U(-1/√n, 1/√n), n the
// width of the layer the signal arrives at (for FA, the Linear's input width). They are saved
// in checkpoints with the strategy, so a resumed run has the very same ones.
import { booleanOption, checkOptions, shown } from '../check';
import { Device } from '../device';
import { BatchNorm1d, Linear, Sequential } from '../nn/layers';
import type { Loss } from '../nn/losses';
import type { StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { TrainingStrategy } from '../train/strategy';
import { LayerForwards, MethodNetwork, MethodTraining, checkSequential, isSupportedLayer, outputWidth } from './sequential';
import { error, rangeError, typeError } from '../errors';

export interface FeedbackAlignmentOptions {
  /** DFA (true): every block gets the output error through its own fixed matrix; FA (false, default): layer by layer */
  direct?: boolean;
  /** seeds the fixed random matrices; default: drawn from the Trainer's seed */
  seed?: number;
}

/** Where DFA's signal arrives: block k = layers [start, end), its output width. */
export interface FeedbackBlock {
  start: number;
  end: number;
  width: number;
}

/**
 * A Sequential model trained by feedback alignment (FA) or direct feedback alignment (DFA): its
 * forward pass is the model's; its training strategy sends errors down through fixed random
 * matrices (`feedback`, drawn when a Trainer initializes it).
 */
export class FeedbackAlignmentNetwork extends MethodNetwork {
  readonly name: string;
  readonly direct: boolean;
  readonly seed?: number;
  /** the model's output width (DFA's error e is [batch, outputs]) */
  readonly outputs: number;
  /** DFA: the blocks, each starting at a Linear (layers before the first Linear join the first block) */
  readonly blocks: FeedbackBlock[];
  /**
   * The fixed matrices once initialized. FA: one per Linear that sends its error down (all but
   * a first layer), B_l [out, in] as its weight, keyed by layer index. DFA: D_k [outputs,
   * width_k] for every block but the last, keyed by block index.
   */
  readonly feedback = new Map<number, Tensor>();
  /** per layer, whether its input gradient is used (some layer below it has parameters) */
  private readonly downward: boolean[];

  constructor(model: Sequential, options: FeedbackAlignmentOptions = {}) {
    checkSequential('feedbackAlignment', model);
    super(model);
    const owner = 'feedbackAlignment';
    if (!options || typeof options !== 'object') throw typeError(`${owner}: options must be an object`);
    checkOptions(owner, options, ['direct', 'seed']);
    this.direct = booleanOption(owner, 'direct', options.direct, false);
    if (options.seed !== undefined && !Number.isInteger(options.seed))
      throw typeError(`${owner}: 'seed' must be an integer, got ${shown(options.seed)}`);
    this.seed = options.seed;
    const kind = this.direct ? 'DFA' : 'FA';
    this.layers.forEach((l, i) => {
      if (!isSupportedLayer(l))
        throw typeError(
          `${owner}: layer ${i} (${l.name}) is not supported: ${kind} trains Linear, BatchNorm1d and activation layers ` +
            '(it replaces the weights a Linear sends the error through; other modules have no rule here)',
        );
    });
    const linears = this.layers.flatMap((l, i) => (l instanceof Linear ? [i] : []));
    if (linears.length < 2)
      throw rangeError(
        `${owner}: the model has ${linears.length} Linear layer${linears.length === 1 ? '' : 's'}; ${kind} needs at least 2 ` +
          '(with one, no error is sent below the output layer and the method is backprop)',
      );
    this.outputs = outputWidth(owner, model);
    // Block k runs from the k-th Linear to the next; the first also takes the layers before it.
    this.blocks = linears.map((start, k) => {
      const end = k + 1 < linears.length ? linears[k + 1] : this.layers.length;
      return { start: k === 0 ? 0 : start, end, width: (this.layers[end] as Linear | undefined)?.inFeatures ?? this.outputs };
    });
    this.downward = this.layers.map((_, i) => this.layers.slice(0, i).some((l) => l instanceof Linear || l instanceof BatchNorm1d));
    this.name = `${kind}(${model.name})`;
  }

  initialize(device: Device, rng: Random): void {
    super.initialize(device, rng);
    this.disposeFeedback();
    const draw = this.seed === undefined ? rng.fork() : new Random(this.seed);
    const matrix = (rows: number, cols: number, fanIn: number) => {
      const bound = 1 / Math.sqrt(fanIn);
      return Tensor.fromArray(draw.uniformArray(rows * cols, -bound, bound), [rows, cols], { device });
    };
    if (this.direct) {
      this.blocks.slice(0, -1).forEach((b, k) => this.feedback.set(k, matrix(this.outputs, b.width, b.width)));
    } else {
      this.layers.forEach((l, i) => {
        if (l instanceof Linear && this.sendsDown(i)) this.feedback.set(i, matrix(l.outFeatures, l.inFeatures, l.inFeatures));
      });
    }
  }

  /** Whether layer i's input gradient is used: some layer below it has parameters. */
  sendsDown(i: number): boolean {
    return this.downward[i];
  }

  trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
    this.initializedWith();
    const fixed = [...this.feedback].map(([k, tensor]) => ({ name: `${this.direct ? 'feedback.block' : 'feedback.layer'}${k}`, tensor }));
    const backward = this.direct ? this.directBackward.bind(this) : this.alignedBackward.bind(this);
    return new MethodTraining(this, options.loss, options.optimizer(0), backward, fixed);
  }

  /** The fixed matrix `key`; throws before initialize(). */
  private matrix(key: number): Tensor {
    const m = this.feedback.get(key);
    if (!m) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
    return m;
  }

  /** FA: backprop from the top, each Linear sending dy·B down instead of dy·W. */
  private alignedBackward(f: LayerForwards, outputGradient: Tensor, ctx: StepContext): void {
    let g: Tensor | undefined = outputGradient;
    for (let i = this.layers.length - 1; i >= 0 && g; i--) {
      const down = this.sendsDown(i);
      if (this.layers[i] instanceof Linear) {
        f.forwards[i].backward(g, ctx, false); // dW += dyᵀx, db += Σ dy
        g = down ? ops.matmul(ctx, g, this.matrix(i)) : undefined;
      } else {
        g = f.forwards[i].backward(g, ctx, down);
      }
    }
  }

  /** DFA: block k's output gets e·D_k (the last block gets e), backpropagated within the block. */
  private directBackward(f: LayerForwards, e: Tensor, ctx: StepContext): void {
    const last = this.blocks.length - 1;
    this.blocks.forEach((b, k) => {
      let g: Tensor | undefined = k === last ? e : ops.matmul(ctx, e, this.matrix(k));
      for (let i = b.end - 1; i >= b.start && g; i--) g = f.forwards[i].backward(g, ctx, i > b.start && this.sendsDown(i));
    });
  }

  private disposeFeedback(): void {
    for (const m of this.feedback.values()) m.dispose();
    this.feedback.clear();
  }

  dispose(): void {
    super.dispose();
    this.disposeFeedback();
  }
}

/**
 * Wraps a Sequential model of Linear, BatchNorm1d and activation layers for training by
 * feedback alignment (`direct: false`, the default) or direct feedback alignment (`direct:
 * true`). The result is a Module that brings its own training strategy, like decouple()'s:
 * give it to a Trainer as the model.
 */
export function feedbackAlignment(model: Sequential, options: FeedbackAlignmentOptions = {}): FeedbackAlignmentNetwork {
  return new FeedbackAlignmentNetwork(model, options);
}
