// Layers: Linear, BatchNorm1d and the activations. Each forward enqueues native ops on the
// step's stream; each backward closure does the same for the gradients.
import { booleanOption, checkOptions, describe, hostArray, numberOption, positiveInt, shown } from '../check';
import { Device } from '../device';
import * as ops from '../ops';
import type { ActivationName } from '../ops';
import { Random } from '../random';
import { Tensor } from '../tensor';
import { Backward, checkInput, checkShape, Forwarded, InputShape, Module, Parameter, Shape, StepContext } from './module';
import { error, rangeError, typeError } from '../errors';

/**
 * y = x Wᵀ + b, with W [out, in] initialised like PyTorch: U(-1/√in, 1/√in), b too; or all
 * zeros with `init: 'zeros'` (a synthesizer's last layer, so that it starts by predicting 0).
 */
export class Linear extends Module {
  readonly name: string;
  weight?: Parameter;
  bias?: Parameter;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly options: { bias?: boolean; init?: 'default' | 'zeros' } = {},
  ) {
    super();
    positiveInt('Linear', 'inFeatures', inFeatures);
    positiveInt('Linear', 'outFeatures', outFeatures);
    checkOptions('Linear', options, ['bias', 'init']);
    booleanOption('Linear', 'bias', options.bias, true);
    if (options.init !== undefined && options.init !== 'default' && options.init !== 'zeros')
      throw typeError(`Linear: 'init' must be 'default' or 'zeros', got ${describe(options.init)}`);
    this.name = `Linear(${inFeatures}→${outFeatures})`;
  }

  initialize(device: Device, rng: Random): void {
    this.dispose();
    const bound = this.options.init === 'zeros' ? 0 : 1 / Math.sqrt(this.inFeatures);
    const n = this.outFeatures * this.inFeatures;
    this.weight = Parameter.create(
      `${this.name}.weight`,
      hostArray(this.name, 'its weight', n, () => rng.uniformArray(n, -bound, bound)),
      [this.outFeatures, this.inFeatures],
      device,
    );
    if (this.options.bias !== false)
      this.bias = Parameter.create(`${this.name}.bias`, rng.uniformArray(this.outFeatures, -bound, bound), [this.outFeatures], device);
  }

  inputShape(): InputShape {
    return { kind: 'rows', features: this.inFeatures };
  }

  outputFeatures(inputFeatures: number): number {
    if (inputFeatures !== this.inFeatures)
      throw rangeError(`${this.name}: expects ${this.inFeatures} input features, got ${inputFeatures}`);
    return this.outFeatures;
  }

  parameters(): Parameter[] {
    return [this.weight, this.bias].filter((p): p is Parameter => p !== undefined);
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    const weight = this.initialized(this.weight);
    checkInput(this.name, x, this.inFeatures, ctx);
    const bias = this.bias;
    const y = ops.linear(ctx, x, weight.value, bias?.value ?? null); // y = x Wᵀ + b
    return {
      output: y,
      backward: (dy, bctx, needInputGrad) => {
        ops.gemm(bctx, dy, x, weight.grad, true, false, 1, 1); // dW += dyᵀ x
        if (bias) ops.biasBackward(bctx, dy, bias.grad);
        if (!needInputGrad) return undefined;
        return ops.matmul(bctx, dy, weight.value); // dx = dy W
      },
    };
  }
}

/**
 * What BatchNorm1d and BatchNorm2d share: per-feature scale and shift, running statistics,
 * PyTorch's semantics (biased batch variance to normalise, unbiased in the running estimate,
 * running = (1 - momentum) running + momentum batch), and the op over [rows, width] rows.
 */
export abstract class BatchNormLayer extends Module {
  readonly name: string;
  gamma?: Parameter;
  beta?: Parameter;
  runningMean?: Tensor;
  runningVar?: Tensor;
  readonly momentum: number;
  readonly eps: number;

  /** `layer` names the class in errors, `widthName` the width argument. */
  protected constructor(
    layer: string,
    widthName: string,
    readonly width: number,
    options: { momentum?: number; eps?: number },
  ) {
    super();
    positiveInt(layer, widthName, width);
    checkOptions(layer, options, ['momentum', 'eps']);
    this.momentum = numberOption(layer, 'momentum', options.momentum, 0.1);
    this.eps = numberOption(layer, 'eps', options.eps, 1e-5);
    if (!(this.momentum >= 0 && this.momentum <= 1)) throw rangeError(`${layer}: 'momentum' must be in [0, 1], got ${this.momentum}`);
    if (!(this.eps > 0) || !Number.isFinite(this.eps)) throw rangeError(`${layer}: 'eps' must be a finite number > 0, got ${this.eps}`);
    this.name = `${layer}(${width})`;
  }

  initialize(device: Device): void {
    this.dispose();
    const n = this.width;
    const ones = hostArray(this.name, 'its scale', n, () => new Float32Array(n).fill(1));
    this.gamma = Parameter.create(`${this.name}.gamma`, ones, [n], device);
    this.beta = Parameter.create(`${this.name}.beta`, new Float32Array(n), [n], device);
    this.runningMean = Tensor.zeros([n], { device });
    this.runningVar = Tensor.fromArray(new Float32Array(n).fill(1), [n], { device });
  }

  parameters(): Parameter[] {
    return [this.gamma, this.beta].filter((p): p is Parameter => p !== undefined);
  }

  stateTensors(): Tensor[] {
    return [...super.stateTensors(), this.initialized(this.runningMean), this.initialized(this.runningVar)];
  }

  dispose(): void {
    super.dispose();
    this.runningMean?.dispose();
    this.runningVar?.dispose();
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    return this.normalize(x, ctx, false);
  }

  /**
   * forward followed by a ReLU, as one op each way (bit for bit the two layers): Sequential
   * runs a BatchNorm and the ReLU right after it so.
   */
  forwardWithReLU(x: Tensor, ctx: StepContext): Forwarded {
    return this.normalize(x, ctx, true);
  }

  /** The forward, with the ReLU applied to its output when `relu`. */
  protected abstract normalize(x: Tensor, ctx: StepContext, relu: boolean): Forwarded;

  /** Normalises [rows, width] rows (checked by the caller), then ReLU when `relu`; backward gives d(rows). */
  protected normalizeRows(rows: Tensor, ctx: StepContext, relu: boolean): Forwarded {
    const gamma = this.initialized(this.gamma);
    const beta = this.initialized(this.beta);
    const saved = ops.batchNorm(
      ctx,
      rows,
      gamma.value,
      beta.value,
      this.runningMean!,
      this.runningVar!,
      ctx.freezeStatistics ? 0 : this.momentum,
      this.eps,
      ctx.training,
      relu,
    );
    return {
      output: saved.y,
      backward: (dy, bctx, needInputGrad) => {
        if (!ctx.training) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: backward of an inference-mode forward`);
        // BatchNorm's parameter gradients come with dx; it is cheap, so always computed.
        const dx = ops.batchNormBackward(bctx, rows, dy, gamma.value, saved, gamma.grad, beta.grad);
        return needInputGrad ? dx : undefined;
      },
    };
  }
}

/** Batch normalisation over the batch dimension of [batch, features] inputs (BatchNormLayer). */
export class BatchNorm1d extends BatchNormLayer {
  constructor(
    readonly features: number,
    options: { momentum?: number; eps?: number } = {},
  ) {
    super('BatchNorm1d', 'features', features, options);
  }

  inputShape(): InputShape {
    return { kind: 'rows', features: this.features };
  }

  outputFeatures(inputFeatures: number): number {
    if (inputFeatures !== this.features) throw rangeError(`${this.name}: expects ${this.features} input features, got ${inputFeatures}`);
    return this.features;
  }

  protected normalize(x: Tensor, ctx: StepContext, relu: boolean): Forwarded {
    this.initialized(this.gamma);
    checkInput(this.name, x, this.features, ctx);
    if (ctx.training && x.shape[0] < 2) throw rangeError(`${this.name}: training needs a batch of at least 2, got ${x.shape[0]}`);
    return this.normalizeRows(x, ctx, relu);
  }
}

/** An elementwise activation; its backward uses the saved output. */
export class Activation extends Module {
  readonly name: string;

  constructor(readonly kind: ActivationName) {
    super();
    if (!['relu', 'tanh', 'sigmoid'].includes(kind))
      throw typeError(`Activation: 'kind' must be 'relu', 'tanh' or 'sigmoid', got ${shown(kind)}`);
    this.name = kind === 'relu' ? 'ReLU' : kind === 'tanh' ? 'Tanh' : 'Sigmoid';
  }

  initialize(): void {}

  /** Elementwise: any shape, unchanged. */
  outputShape(input: Shape): number[] {
    checkShape(`${this.name}.outputShape`, 'input', input);
    return [...input];
  }

  outputFeatures(inputFeatures: number): number {
    return inputFeatures;
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    if (!(x instanceof Tensor)) throw typeError(`${this.name}: the input must be a Tensor`);
    const y = ops.activation(ctx, this.kind, x);
    return {
      output: y,
      backward: (dy, bctx, needInputGrad) => {
        if (!needInputGrad) return undefined;
        return ops.activationBackward(bctx, this.kind, y, dy);
      },
    };
  }
}

export class ReLU extends Activation {
  constructor() {
    super('relu');
  }
}

export class Tanh extends Activation {
  constructor() {
    super('tanh');
  }
}

export class Sigmoid extends Activation {
  constructor() {
    super('sigmoid');
  }
}

/** Modules applied in order. */
export class Sequential extends Module {
  readonly name: string;
  readonly layers: readonly Module[];

  constructor(layers: Module[]) {
    super();
    if (!Array.isArray(layers) || layers.length === 0) throw typeError('Sequential: expects a non-empty array of modules');
    layers.forEach((l, i) => {
      if (!(l instanceof Module)) throw typeError(`Sequential: layers[${i}] is not a Module`);
    });
    this.layers = [...layers];
    this.name = `Sequential(${this.layers.map((l) => l.name).join(', ')})`;
  }

  initialize(device: Device, rng: Random): void {
    for (const l of this.layers) l.initialize(device, rng);
  }

  /** Each layer's output shape is the next one's input shape; the first that does not fit throws. */
  outputShape(input: Shape): number[] {
    checkShape(`${this.name}.outputShape`, 'input', input);
    return this.layers.reduce<number[]>((shape, l) => l.outputShape(shape), [...input]);
  }

  /** The first layer's input, past the elementwise layers in front (which take any shape). */
  inputShape(): InputShape | undefined {
    for (const l of this.layers) {
      const takes = l.inputShape();
      if (takes !== undefined) return takes;
    }
    return undefined;
  }

  parameters(): Parameter[] {
    return this.layers.flatMap((l) => l.parameters());
  }

  children(): readonly Module[] {
    return this.layers;
  }

  stateTensors(): Tensor[] {
    return this.layers.flatMap((l) => l.stateTensors());
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    const backwards: Backward[] = [];
    let h = x;
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i];
      const next = this.layers[i + 1];
      if (layer instanceof BatchNormLayer && next instanceof Activation && next.kind === 'relu') {
        // One op each way for both layers; the ReLU's backward is inside the BatchNorm's.
        const f = layer.forwardWithReLU(h, ctx);
        backwards.push(f.backward, (dy) => dy);
        h = f.output;
        i++;
        continue;
      }
      const f = layer.forward(h, ctx);
      backwards.push(f.backward);
      h = f.output;
    }
    return {
      output: h,
      backward: (dy, bctx, needInputGrad) => {
        let g: Tensor | undefined = dy;
        for (let i = backwards.length - 1; i >= 0 && g; i--) g = backwards[i](g, bctx, i > 0 || needInputGrad);
        return g;
      },
    };
  }
}

/** Whether a Sequential ends with a ReLU, whose backward drops the gradient wherever its output is 0. */
export function endsWithReLU(module: Sequential): boolean {
  const last = module.layers[module.layers.length - 1];
  return last instanceof Activation && last.kind === 'relu';
}
