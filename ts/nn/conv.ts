// Convolutional layers on NCHW images [batch, channels, height, width]: Conv2d, MaxPool2d,
// AvgPool2d, BatchNorm2d and Flatten, and the cnn() builder. Each states its output shape for an
// input shape (Module.outputShape), so a model's shapes are checked as a chain before training,
// and checks the tensor it is given in forward.
import { booleanOption, checkOptions, describe, positiveInt } from '../check';
import { Device } from '../device';
import { error, rangeError, typeError } from '../errors';
import * as ops from '../ops';
import type { Window2d } from '../ops';
import { Random } from '../random';
import { Tensor } from '../tensor';
import { BatchNormLayer, Linear, ReLU, Sequential } from './layers';
import { checkShape, Forwarded, InputShape, Module, Parameter, Shape, StepContext } from './module';

type Pair = readonly [number, number];

/** A size given as one integer (both axes) or [rows, columns], each at least `min`. */
function pairOption(owner: string, name: string, v: unknown, min: number): Pair {
  const ok = (d: unknown): d is number => Number.isInteger(d) && (d as number) >= min && (d as number) <= 2 ** 31;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  throw rangeError(`${owner}: '${name}' must be an integer >= ${min} or a pair [rows, columns] of them, got ${describe(v)}`);
}

function pairText(p: Pair): string {
  return p[0] === p[1] ? `${p[0]}` : `${p[0]}x${p[1]}`;
}

/** [N, C, H, W] of an image input shape; throws naming the module unless it is one (with C = channels). */
function imageShape(owner: string, input: Shape, channels?: number): [number, number, number, number] {
  checkShape(`${owner}.outputShape`, 'input', input);
  if (input.length !== 4 || (channels !== undefined && input[1] !== channels))
    throw rangeError(`${owner}: expects images [batch, ${channels ?? 'channels'}, height, width], got shape [${input.join(', ')}]`);
  return [input[0], input[1], input[2], input[3]];
}

/** The output shape of a window over [N, C, H, W] producing `channels`; throws unless it fits the padded image. */
function windowedShape(owner: string, input: readonly number[], channels: number, win: Window2d): number[] {
  const [N, , H, W] = input;
  const [kh, kw] = win.kernel,
    [ph, pw] = win.padding;
  if (H + 2 * ph < kh || W + 2 * pw < kw || H < 1 || W < 1)
    throw rangeError(
      `${owner}: the ${kh}x${kw} window does not fit ${H}x${W} images padded by ${ph}x${pw} (a kernel larger than the padded input)`,
    );
  return [N, channels, ops.windowOutputSize(H, kh, win.stride[0], ph), ops.windowOutputSize(W, kw, win.stride[1], pw)];
}

/** Checks that x is a float32 image batch [N, C, H, W] (C = channels when given) on the context's device. */
function checkImages(owner: string, x: Tensor, ctx: StepContext, channels?: number): void {
  if (!(x instanceof Tensor)) throw typeError(`${owner}: the input must be a Tensor`);
  if (x.dtype !== 'float32') throw typeError(`${owner}: the input must be float32, got ${x.dtype}`);
  imageShape(owner, x.shape, channels);
  if (!x.device.equals(ctx.device)) throw typeError(`${owner}: the input is on ${x.device.name} but the module runs on ${ctx.device.name}`);
}

export interface Conv2dOptions {
  inChannels: number;
  outChannels: number;
  /** the filters' size: one integer (square) or [rows, columns] */
  kernel: number | [number, number];
  /** default 1 */
  stride?: number | [number, number];
  /**
   * Zero padding on each side (default 0), or 'same': (kernel - 1) / 2 for an odd kernel, which
   * keeps the image size at stride 1 (ceil(size / stride) in general).
   */
  padding?: number | [number, number] | 'same';
  /** default true (a convolution followed by BatchNorm needs none) */
  bias?: boolean;
  /** 'zeros': weights and bias start at 0 (a synthesizer's last layer, so that it starts by predicting 0) */
  init?: 'default' | 'zeros';
}

/**
 * 2-D convolution (cross-correlation, as PyTorch's Conv2d) of [N, inChannels, H, W] images with
 * outChannels filters [outChannels, inChannels, KH, KW] and a bias per filter, initialised like
 * Linear (and PyTorch): U(-1/√fanIn, 1/√fanIn), fanIn = inChannels KH KW.
 */
export class Conv2d extends Module {
  readonly name: string;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly window: Window2d;
  readonly hasBias: boolean;
  private readonly zeroInit: boolean;
  weight?: Parameter;
  bias?: Parameter;

  constructor(options: Conv2dOptions) {
    super();
    if (!options || typeof options !== 'object')
      throw typeError(`Conv2d: expects an options object { inChannels, outChannels, kernel, ... }, got ${describe(options)}`);
    checkOptions('Conv2d', options, ['inChannels', 'outChannels', 'kernel', 'stride', 'padding', 'bias', 'init']);
    if (options.init !== undefined && options.init !== 'default' && options.init !== 'zeros')
      throw typeError(`Conv2d: 'init' must be 'default' or 'zeros', got ${describe(options.init)}`);
    this.zeroInit = options.init === 'zeros';
    this.inChannels = positiveInt('Conv2d', 'inChannels', options.inChannels);
    this.outChannels = positiveInt('Conv2d', 'outChannels', options.outChannels);
    const kernel = pairOption('Conv2d', 'kernel', options.kernel, 1);
    const stride = pairOption('Conv2d', 'stride', options.stride ?? 1, 1);
    let padding: Pair;
    if (options.padding === 'same') {
      if (kernel[0] % 2 === 0 || kernel[1] % 2 === 0)
        throw rangeError(`Conv2d: padding 'same' needs an odd kernel (equal padding on both sides), got ${pairText(kernel)}`);
      padding = [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2];
    } else {
      padding = pairOption('Conv2d', 'padding', options.padding ?? 0, 0);
    }
    this.hasBias = booleanOption('Conv2d', 'bias', options.bias, true);
    this.window = { kernel, stride, padding };
    const extras = [
      stride[0] !== 1 || stride[1] !== 1 ? `stride ${pairText(stride)}` : '',
      padding[0] || padding[1] ? `padding ${pairText(padding)}` : '',
    ];
    this.name = `Conv2d(${this.inChannels}→${this.outChannels}, ${pairText(kernel)}${extras
      .filter((e) => e)
      .map((e) => `, ${e}`)
      .join('')})`;
  }

  initialize(device: Device, rng: Random): void {
    this.dispose();
    const [kh, kw] = this.window.kernel;
    const fanIn = this.inChannels * kh * kw;
    const bound = this.zeroInit ? 0 : 1 / Math.sqrt(fanIn);
    const shape = [this.outChannels, this.inChannels, kh, kw];
    this.weight = Parameter.create(`${this.name}.weight`, rng.uniformArray(this.outChannels * fanIn, -bound, bound), shape, device);
    if (this.hasBias)
      this.bias = Parameter.create(`${this.name}.bias`, rng.uniformArray(this.outChannels, -bound, bound), [this.outChannels], device);
  }

  inputShape(): InputShape {
    return { kind: 'images', channels: this.inChannels };
  }

  outputShape(input: Shape): number[] {
    return windowedShape(this.name, imageShape(this.name, input, this.inChannels), this.outChannels, this.window);
  }

  parameters(): Parameter[] {
    return [this.weight, this.bias].filter((p): p is Parameter => p !== undefined);
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    const weight = this.initialized(this.weight);
    checkImages(this.name, x, ctx, this.inChannels);
    this.outputShape(x.shape);
    const bias = this.bias;
    const y = ops.conv2d(ctx, x, weight.value, bias?.value ?? null, this.window);
    return {
      output: y,
      backward: (dy, bctx, needInputGrad) =>
        ops.conv2dBackward(bctx, x, weight.value, dy, weight.grad, bias?.grad ?? null, needInputGrad, this.window),
    };
  }
}

export interface Pool2dOptions {
  /** the window: one integer (square) or [rows, columns] */
  kernel: number | [number, number];
  /** default: the kernel (windows side by side) */
  stride?: number | [number, number];
  /** zero padding on each side, at most half the kernel (default 0): padding never wins a max and is not counted in a mean */
  padding?: number | [number, number];
}

/** Max or average pooling over each channel's windows; no parameters. */
abstract class Pool2d extends Module {
  readonly name: string;
  readonly window: Window2d;

  constructor(
    readonly kind: 'max' | 'avg',
    owner: string,
    options: Pool2dOptions,
  ) {
    super();
    if (!options || typeof options !== 'object')
      throw typeError(`${owner}: expects an options object { kernel, stride?, padding? }, got ${describe(options)}`);
    checkOptions(owner, options, ['kernel', 'stride', 'padding']);
    const kernel = pairOption(owner, 'kernel', options.kernel, 1);
    const stride = pairOption(owner, 'stride', options.stride ?? kernel, 1);
    const padding = pairOption(owner, 'padding', options.padding ?? 0, 0);
    if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2)
      throw rangeError(`${owner}: 'padding' must be at most half the kernel (${pairText(kernel)}), got ${pairText(padding)}`);
    this.window = { kernel, stride, padding };
    const extras = [
      stride[0] !== kernel[0] || stride[1] !== kernel[1] ? `stride ${pairText(stride)}` : '',
      padding[0] || padding[1] ? `padding ${pairText(padding)}` : '',
    ];
    this.name = `${owner}(${pairText(kernel)}${extras
      .filter((e) => e)
      .map((e) => `, ${e}`)
      .join('')})`;
  }

  initialize(): void {}

  inputShape(): InputShape {
    return { kind: 'images' };
  }

  outputShape(input: Shape): number[] {
    const shape = imageShape(this.name, input);
    return windowedShape(this.name, shape, shape[1], this.window);
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    checkImages(this.name, x, ctx);
    this.outputShape(x.shape);
    const y = ops.pool2d(ctx, this.kind, x, this.window);
    return {
      output: y,
      backward: (dy, bctx, needInputGrad) => (needInputGrad ? ops.pool2dBackward(bctx, this.kind, x, dy, this.window) : undefined),
    };
  }
}

/** Max pooling: each output is its window's largest element (ties: the first in row-major order). */
export class MaxPool2d extends Pool2d {
  constructor(options: Pool2dOptions) {
    super('max', 'MaxPool2d', options);
  }
}

/** Average pooling: each output is the mean of its window's image elements (padding not counted). */
export class AvgPool2d extends Pool2d {
  constructor(options: Pool2dOptions) {
    super('avg', 'AvgPool2d', options);
  }
}

/** [N, d1, d2, ...] → [N, d1 d2 ...]: images to rows of features (a view: no copy). */
export class Flatten extends Module {
  readonly name = 'Flatten';

  initialize(): void {}

  inputShape(): InputShape {
    return { kind: 'any' };
  }

  outputShape(input: Shape): number[] {
    checkShape(`${this.name}.outputShape`, 'input', input);
    if (input.length < 2)
      throw rangeError(`${this.name}: expects [batch, ...] with at least 2 dimensions, got shape [${input.join(', ')}]`);
    return [input[0], input.slice(1).reduce((a, b) => a * b, 1)];
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    if (!(x instanceof Tensor)) throw typeError(`${this.name}: the input must be a Tensor`);
    const y = x.reshape(this.outputShape(x.shape), ctx.arena);
    return {
      output: y,
      backward: (dy, bctx, needInputGrad) => (needInputGrad ? dy.reshape(x.shape, bctx.arena) : undefined),
    };
  }
}

/**
 * Batch normalisation per channel over the batch and the pixels of [N, C, H, W] images (PyTorch's
 * BatchNorm2d: biased variance to normalise, unbiased in the running estimate,
 * running = (1 - momentum) running + momentum batch).
 *
 * It runs the existing BatchNorm op (batchNormForward/Backward) on channels-last rows:
 * [N, C, HW] → (swapLastAxes) [N, HW, C] = [N HW, C] rows, and back. The transposes are copies
 * (exact), so the statistics and the normalisation are exactly BatchNorm1d's over those rows;
 * they cost two memory passes each way, small beside the convolution before the layer.
 */
export class BatchNorm2d extends BatchNormLayer {
  constructor(
    readonly channels: number,
    options: { momentum?: number; eps?: number } = {},
  ) {
    super('BatchNorm2d', 'channels', channels, options);
  }

  inputShape(): InputShape {
    return { kind: 'images', channels: this.channels };
  }

  outputShape(input: Shape): number[] {
    return [...imageShape(this.name, input, this.channels)];
  }

  protected normalize(x: Tensor, ctx: StepContext, relu: boolean): Forwarded {
    this.initialized(this.gamma);
    checkImages(this.name, x, ctx, this.channels);
    const [N, C, H, W] = x.shape;
    if (ctx.training && N * H * W < 2)
      throw rangeError(`${this.name}: training needs at least 2 values per channel (batch × height × width), got ${N}×${H}×${W}`);
    // [N, C, H, W] → [N HW, C] rows and back: swapLastAxes copies, reshape is a view.
    const toRows = (t: Tensor, c: StepContext) => ops.swapLastAxes(c, t.reshape([N, C, H * W], c.arena)).reshape([N * H * W, C], c.arena);
    const toImages = (t: Tensor, c: StepContext) => ops.swapLastAxes(c, t.reshape([N, H * W, C], c.arena)).reshape([N, C, H, W], c.arena);
    const f = this.normalizeRows(toRows(x, ctx), ctx, relu);
    return {
      output: toImages(f.output, ctx),
      backward: (dy, bctx, needInputGrad) => {
        if (!ctx.training) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: backward of an inference-mode forward`);
        const dx = f.backward(toRows(dy, bctx), bctx, needInputGrad);
        return dx ? toImages(dx, bctx) : undefined;
      },
    };
  }
}

/** What cnn() builds: input images and the network's widths. */
export interface CnnOptions {
  /** input images: channels, height, width (e.g. CIFAR-10: 3, 32, 32) */
  channels: number;
  height: number;
  width: number;
  classes: number;
  /** filters per convolution, default 128 */
  filters?: number;
  /** convolution blocks, default 3 */
  blocks?: number;
  /** the convolutions' (odd) kernel size, default 5 */
  kernel?: number;
}

/**
 * The convolutional classifier of the DNI paper's CIFAR-10 experiments: `blocks` blocks of
 * Conv2d(`filters` kernel x kernel filters, size-preserving padding, no bias) → BatchNorm2d →
 * ReLU → 3x3 pooling with stride 2 and padding 1 (each halves the image, rounding up): max
 * pooling after the first block, average pooling after the others; then Flatten and a Linear
 * classifier. (The paper does not give the pools' stride; 2 is the usual choice with 3x3
 * windows.)
 */
export function cnn(options: CnnOptions): Sequential {
  if (!options || typeof options !== 'object')
    throw typeError(`cnn: expects an options object { channels, height, width, classes, ... }, got ${describe(options)}`);
  checkOptions('cnn', options, ['channels', 'height', 'width', 'classes', 'filters', 'blocks', 'kernel']);
  const channels = positiveInt('cnn', 'channels', options.channels);
  let height = positiveInt('cnn', 'height', options.height);
  let width = positiveInt('cnn', 'width', options.width);
  const classes = positiveInt('cnn', 'classes', options.classes);
  const filters = positiveInt('cnn', 'filters', options.filters ?? 128);
  const blocks = positiveInt('cnn', 'blocks', options.blocks ?? 3);
  const kernel = positiveInt('cnn', 'kernel', options.kernel ?? 5);
  if (kernel % 2 === 0) throw rangeError(`cnn: 'kernel' must be odd (size-preserving padding), got ${kernel}`);
  const layers: Module[] = [];
  let inChannels = channels;
  for (let b = 0; b < blocks; b++) {
    const pool = { kernel: 3, stride: 2, padding: 1 };
    layers.push(
      new Conv2d({ inChannels, outChannels: filters, kernel, padding: 'same', bias: false }),
      new BatchNorm2d(filters),
      new ReLU(),
      b === 0 ? new MaxPool2d(pool) : new AvgPool2d(pool),
    );
    inChannels = filters;
    height = ops.windowOutputSize(height, 3, 2, 1);
    width = ops.windowOutputSize(width, 3, 2, 1);
  }
  layers.push(new Flatten(), new Linear(filters * height * width, classes));
  return new Sequential(layers);
}
