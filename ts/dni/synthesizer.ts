// A synthesizer M: predicts the loss gradient at a module's output, ĝ = M(h) ≈ ∂L/∂h, and
// learns by L2 regression onto a target gradient (bootstrapped or true).
//
// Architecture (Jaderberg et al. 2017): hidden layers Linear → BatchNorm → ReLU, then a Linear
// initialised to zero, so M starts by predicting 0 and the module is first left alone.
// Conditioned (cDNI): M sees the label too, as [h, onehot(y)].
//
// At a cut of images h [B, C, H, W] M is convolutional (the paper's CIFAR-10 synthesizers):
// hidden Conv2d(5x5, 128 filters, size-preserving padding) → BatchNorm2d → ReLU layers, then a
// zero-initialised 5x5 Conv2d to C channels. cDNI there gives M the label as `classes` extra
// input channels: channel C + c is all ones where the label is c and all zeros elsewhere (one
// constant map per class), i.e. M's input is [h ‖ onehot(y) broadcast over H×W] along the
// channels. It is built from existing ops: the one-hot rows times a row of ones make the maps
// (a [B·classes, 1]·[1, HW] matmul), and since NCHW stores each example's channels one after the
// other, concatenating the flattened [B, C·HW] and [B, classes·HW] rows is the channel concat.
//
// Target scale (`targetScale`, docs/synthesizer-scale.md): the network's loss is a mean over
// the batch, so the true gradient δ at row n is (1/B)·∂ℓ_n/∂h_n and shrinks with the batch
// size B. 'per-example' (the default) models ∂ℓ_n/∂h_n instead: M's targets are B·δ and its
// predictions are used as M(h)/B, the same function whatever B, with targets large enough that
// Adam's fixed-size first steps do not overshoot them by orders of magnitude. 'batch-mean'
// regresses δ itself and uses M(h) as it is (as other implementations do).
import { Device } from '../device';
import { BatchNorm2d, Conv2d } from '../nn/conv';
import { BatchNorm1d, Linear, ReLU, Sequential } from '../nn/layers';
import { Forwarded, Module, Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import { error, rangeError, typeError } from '../errors';

/** What M regresses onto: the per-example gradient B·δ (M(h)/B used), or the batch-mean loss's δ (M(h) used). */
export type TargetScale = 'per-example' | 'batch-mean';

export const TARGET_SCALES: readonly TargetScale[] = ['per-example', 'batch-mean'];

export interface SynthesizerOptions {
  /** widths of the hidden layers (row cuts); default: [] when conditioned (cDNI), else [1024, 1024] */
  hidden?: number[];
  /** image cuts: filters of the hidden conv layers (each Conv2d → BatchNorm2d → ReLU); default [128, 128] */
  filters?: number[];
  /** image cuts: the conv layers' (odd) kernel size, with size-preserving padding; default 5 */
  kernel?: number;
  /** cDNI: condition on the label, M([h, onehot(y)]); default false */
  conditioned?: boolean;
  /** weight of the L2 loss; default 1 */
  lossWeight?: number;
  /**
   * Optimizer steps M takes on each target (default 1); each after the first predicts afresh
   * with the updated weights. Meant to let M keep up with a module that moves under it; 2 did
   * not help on the MNIST FCN (docs/dni-at-depth.md).
   */
  updatesPerTarget?: number;
  /** the synthesizers' optimizer factory, called with the index of the module each serves; default: the model's */
  optimizer?: (module: number) => Optimizer;
  /**
   * A custom synthesizer network from `inputs` features (h, plus the one-hot label when
   * conditioned) to `outputs` = h's width. Replaces `hidden`; its last layer should start at 0.
   * At an image cut the two numbers are channels (h's, plus one per class when conditioned, to
   * h's) and the network maps [B, inputs, H, W] to [B, outputs, H, W].
   */
  network?: (inputs: number, outputs: number) => Module;
  /**
   * Centre ĝ over the batch (subtract each feature's batch mean). Exact where the next module
   * starts with (Linear →) BatchNorm in training mode: the true gradient there has zero batch
   * mean, so the projection can only bring ĝ closer to it. `decouple` applies it at those cuts
   * only. Default false. Row cuts only: at an image cut the gradient's batch mean per
   * feature is not known to be 0 (BatchNorm2d zeroes a channel's mean over the batch and
   * the pixels together, and the conv or pool in front of it does not keep even that).
   */
  center?: boolean;
  /**
   * Regress only on the units the module's closing ReLU lets through (h > 0): elsewhere ĝ is
   * thrown away by the ReLU's backward, so fitting it there spends the synthesizer's capacity
   * on values nothing uses. `decouple` applies it to modules that end with a ReLU only.
   * Default false.
   */
  maskInactive?: boolean;
  /**
   * 'per-example' (default): M regresses B·δ and ĝ = M(h)/B; 'batch-mean': M regresses δ, the
   * gradient of the batch-mean loss, and ĝ = M(h). See the file comment.
   */
  targetScale?: TargetScale;
}

/** One prediction, with what it needs to learn from a target later. */
export interface Prediction {
  /** ĝ, the synthetic gradient of the mean loss [batch, width] */
  gradient: Tensor;
  /**
   * Regresses M onto `target` for this prediction's input; returns the L2 loss as a [1] tensor.
   * `late`: M may have been updated since it predicted (a pipelined target), so it predicts
   * afresh from the saved input with its current weights; otherwise it regresses the saved
   * prediction (the same weights, no second forward). Either way the optimizer step is the
   * gradient of the current weights' error, never a stale one.
   */
  learn(target: Tensor, ctx: StepContext, late?: boolean): Tensor;
}

export class Synthesizer {
  readonly network: Module;
  /** the values per example of h (and ĝ): h's features, or C·H·W for images */
  readonly width: number;
  /** the shape of one example of h: [features], or [C, H, W] at an image cut */
  readonly shape: readonly number[];
  /** M's input features (row cuts) or channels (image cuts): h's, plus the classes when conditioned */
  readonly inputs: number;
  readonly conditioned: boolean;
  readonly lossWeight: number;
  readonly updatesPerTarget: number;
  readonly center: boolean;
  readonly maskInactive: boolean;
  readonly targetScale: TargetScale;
  optimizer?: Optimizer;
  private params: Parameter[] = [];

  /** `shape`: h's features (a number, or [features]) or its image shape [C, H, W]. */
  constructor(
    readonly name: string,
    shape: number | readonly number[],
    readonly classes: number,
    options: SynthesizerOptions = {},
  ) {
    this.shape = typeof shape === 'number' ? [shape] : [...shape];
    if (this.shape.length !== 1 && this.shape.length !== 3)
      throw rangeError(`${name}: h must be rows [features] or images [channels, height, width], got [${this.shape.join(', ')}]`);
    this.width = this.shape.reduce((a, b) => a * b, 1);
    const images = this.shape.length === 3;
    this.conditioned = options.conditioned ?? false;
    this.lossWeight = options.lossWeight ?? 1;
    this.updatesPerTarget = options.updatesPerTarget ?? 1;
    if (!Number.isInteger(this.updatesPerTarget) || this.updatesPerTarget < 1)
      throw rangeError(`${name}: 'updatesPerTarget' must be an integer >= 1, got ${JSON.stringify(options.updatesPerTarget)}`);
    this.center = options.center ?? false;
    this.maskInactive = options.maskInactive ?? false;
    for (const key of ['center', 'maskInactive'] as const)
      if (typeof this[key] !== 'boolean') throw typeError(`${name}: '${key}' must be true or false, got ${JSON.stringify(this[key])}`);
    this.targetScale = options.targetScale ?? 'per-example';
    if (!TARGET_SCALES.includes(this.targetScale))
      throw typeError(`${name}: 'targetScale' must be 'per-example' or 'batch-mean', got ${JSON.stringify(options.targetScale)}`);
    if (images && this.center) throw rangeError(`${name}: 'center' applies to row cuts only (h here is images)`);
    if (options.optimizer !== undefined && typeof options.optimizer !== 'function')
      throw typeError(`${name}: 'optimizer' must be a function returning an Optimizer, got ${typeof options.optimizer}`);
    if (!(this.lossWeight > 0) || !Number.isFinite(this.lossWeight))
      throw rangeError(`${name}: 'lossWeight' must be a finite number > 0, got ${this.lossWeight}`);
    if (images) {
      this.inputs = this.shape[0] + (this.conditioned ? classes : 0);
      this.network = convNetwork(name, this.shape, this.inputs, options);
      return;
    }
    const width = this.width;
    this.inputs = width + (this.conditioned ? classes : 0);
    if (options.network) {
      this.network = options.network(this.inputs, width);
      if (!(this.network instanceof Module)) throw typeError(`${name}: 'network' must return a Module`);
      let out: number;
      try {
        out = this.network.outputFeatures(this.inputs);
      } catch (e) {
        throw rangeError(`${name}: the synthesizer network does not accept ${this.inputs} input features (${(e as Error).message})`);
      }
      if (out !== width) throw rangeError(`${name}: the synthesizer network outputs ${out} features, the module's output has ${width}`);
    } else {
      const hidden = options.hidden ?? (this.conditioned ? [] : [1024, 1024]);
      if (!Array.isArray(hidden) || hidden.some((h) => !Number.isInteger(h) || h < 1))
        throw rangeError(`${name}: 'hidden' must be an array of positive integers, got ${JSON.stringify(hidden)}`);
      const layers: Module[] = [];
      let w = this.inputs;
      for (const h of hidden) {
        layers.push(new Linear(w, h), new BatchNorm1d(h), new ReLU());
        w = h;
      }
      layers.push(new Linear(w, width, { init: 'zeros' }));
      this.network = new Sequential(layers);
    }
  }

  initialize(device: Device, rng: Random, optimizer: Optimizer): void {
    this.network.initialize(device, rng);
    this.params = this.network.parameters();
    this.optimizer = optimizer;
  }

  parameters(): Parameter[] {
    return this.params;
  }

  /** ĝ = M(h) (or M([h, onehot(labels)])), enqueued on ctx.stream. */
  predict(h: Tensor, labels: Tensor, ctx: StepContext): Prediction {
    let input = h;
    if (this.conditioned) {
      input =
        this.shape.length === 3
          ? withLabelChannels(h, labels, this.classes, ctx)
          : ops.concatColumns(ctx, h, ops.oneHot(ctx, labels, this.classes));
    }
    const optimizer = this.optimizer;
    if (!optimizer) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize()`);
    const f = this.network.forward(input, ctx);
    const batch = h.shape[0];
    const out = this.output(f, ctx);
    const factor = this.targetFactor(batch);
    // New tensors (a scale by 1 copies exactly): the module's backward and the masking below may write into them.
    const gradient = ops.scale(ctx, 1 / factor, out); // ĝ = M(h)/B or M(h)
    return {
      gradient,
      learn: (target, lctx, late = false) => {
        const scaled = ops.scale(lctx, factor, target); // B·δ or δ
        // Zero the target where h = 0 (and the prediction below): those units then add nothing.
        if (this.maskInactive) ops.activationBackwardInto(lctx, 'relu', h, scaled, scaled);
        let loss: Tensor | undefined;
        for (let k = 0; k < this.updatesPerTarget; k++) {
          // A fresh forward leaves BatchNorm's running statistics alone: this batch already counted once.
          const current = k === 0 && !late ? f : this.network.forward(input, { ...lctx, freezeStatistics: true });
          loss = this.regress(h, current, k === 0 && !late ? out : this.output(current, lctx), scaled, lctx, optimizer);
        }
        return loss!;
      },
    };
  }

  /** What M's targets are, in units of δ (the batch-mean loss's gradient) on a batch of `batch` rows: B or 1. */
  targetFactor(batch: number): number {
    return this.targetScale === 'per-example' ? batch : 1;
  }

  /** M's output, centred over the batch into a copy when `center` (its last layer's backward may read the original). */
  private output(f: Forwarded, ctx: StepContext): Tensor {
    return this.center ? centred(f.output, ctx) : f.output;
  }

  /** One optimizer step of M on the L2 loss between its (centred) output `out` and `target`. */
  private regress(h: Tensor, f: Forwarded, out: Tensor, target: Tensor, ctx: StepContext, optimizer: Optimizer): Tensor {
    const predicted = this.maskInactive ? ops.activationBackward(ctx, 'relu', h, out) : out;
    const loss = ops.mse(ctx, predicted, target);
    const d = ops.mseBackward(ctx, predicted, target, this.lossWeight);
    // Back through the centring: it is a projection, so its backward is the same projection.
    f.backward(this.center ? centred(d, ctx) : d, ctx, false);
    optimizer.step(this.params, ctx.stream, ctx.capture);
    return loss;
  }

  dispose(): void {
    this.network.dispose();
    this.optimizer?.dispose();
  }
}

/** The convolutional M for h of one example's shape [C, H, W], from `inputs` channels (see the header). */
function convNetwork(name: string, shape: readonly number[], inputs: number, options: SynthesizerOptions): Module {
  const [C, H, W] = shape;
  if (options.network) {
    const network = options.network(inputs, C);
    if (!(network instanceof Module)) throw typeError(`${name}: 'network' must return a Module`);
    let out: number[];
    try {
      out = network.outputShape([1, inputs, H, W]);
    } catch (e) {
      throw rangeError(`${name}: the synthesizer network does not accept [batch, ${inputs}, ${H}, ${W}] images (${(e as Error).message})`);
    }
    if (out.join() !== [1, C, H, W].join())
      throw rangeError(
        `${name}: the synthesizer network outputs [${out.join(', ')}] for one example; the module's output is [1, ${C}, ${H}, ${W}]`,
      );
    return network;
  }
  const filters = options.filters ?? [128, 128];
  if (!Array.isArray(filters) || filters.some((f) => !Number.isInteger(f) || f < 1))
    throw rangeError(`${name}: 'filters' must be an array of positive integers, got ${JSON.stringify(filters)}`);
  const kernel = options.kernel ?? 5;
  if (!Number.isInteger(kernel) || kernel < 1 || kernel % 2 === 0)
    throw rangeError(`${name}: 'kernel' must be an odd positive integer (size-preserving padding), got ${JSON.stringify(kernel)}`);
  const layers: Module[] = [];
  let channels = inputs;
  for (const f of filters) {
    layers.push(new Conv2d({ inChannels: channels, outChannels: f, kernel, padding: 'same', bias: false }), new BatchNorm2d(f), new ReLU());
    channels = f;
  }
  layers.push(new Conv2d({ inChannels: channels, outChannels: C, kernel, padding: 'same', init: 'zeros' }));
  return new Sequential(layers);
}

/** [h ‖ one constant map per class] along the channels: [B, C, H, W] → [B, C + classes, H, W] (see the header). */
function withLabelChannels(h: Tensor, labels: Tensor, classes: number, ctx: StepContext): Tensor {
  const [B, C, H, W] = h.shape;
  const oneHot = ops.oneHot(ctx, labels, classes).reshape([B * classes, 1], ctx.arena);
  const maps = ops.matmul(ctx, oneHot, ops.full(ctx, [1, H * W], 1)); // [B·classes, HW]
  const rows = ops.concatColumns(ctx, h.reshape([B, C * H * W], ctx.arena), maps.reshape([B, classes * H * W], ctx.arena));
  return rows.reshape([B, C + classes, H, W], ctx.arena);
}

/** x less its mean over the batch (rows), per column, as a new tensor on ctx.stream. */
function centred(x: Tensor, ctx: StepContext): Tensor {
  const negMean = ops.full(ctx, [x.shape[1]], 0);
  ops.biasBackward(ctx, x, negMean); // column sums
  ops.axpby(ctx, 0, negMean, -1 / x.shape[0], negMean);
  const y = ops.clone(ctx, x);
  ops.addBias(ctx, y, negMean);
  return y;
}
