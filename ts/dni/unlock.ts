// The complete unlock (Jaderberg et al. 2017): a synthetic input model I_i predicts module i's
// input from the network's input x, Î_i = I_i(x) ≈ h_{i-1}, so that module i runs forward
// (and, with its synthesizer, backward and update) without waiting for module i-1. I_i learns
// by L2 regression onto the real h_{i-1} once module i-1 has produced it. Only training uses
// I_i: evaluation runs the modules on the true forward path (docs/unlock.md).
//
// An input model is built from row shapes (the batch dimension left out): x's and h_{i-1}'s.
// The first builder in `inputModelBuilders` that accepts the shapes builds it; the default
// ones take feature rows to feature rows (an MLP) and images to images or rows (a small CNN).
import { Device } from '../device';
import { AvgPool2d, BatchNorm2d, Conv2d, Flatten } from '../nn/conv';
import { BatchNorm1d, Linear, ReLU, Sequential } from '../nn/layers';
import { Forwarded, Module, Parameter, Shape, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import { checkOptions, describe, shown } from '../check';
import { error, rangeError, typeError } from '../errors';

export interface UnlockOptions {
  /**
   * The default input model's hidden layers: for feature rows x, the MLP's widths (Linear →
   * BatchNorm1d → ReLU each; default [1024]); for images x, the CNN's filters (5x5 Conv2d →
   * BatchNorm2d → ReLU each; default one layer as wide as the module input's channels, or 32
   * filters when that input is a row of features).
   */
  hidden?: number[];
  /**
   * A custom input model, built from the row shapes (no batch dimension) of x and of the
   * module input it predicts, e.g. ([784], [256]). Replaces `hidden`.
   */
  network?: (input: Shape, output: Shape) => Module;
  /** the input models' optimizer factory, called with the 0-based index of the module each feeds; default: the model's */
  optimizer?: (module: number) => Optimizer;
}

/**
 * Builds an input model from x's row shape to a module input's row shape, or returns undefined
 * when it does not handle those shapes. `hidden`: unlock.hidden, undefined for the builder's default.
 */
export type InputModelBuilder = (input: Shape, output: Shape, hidden?: readonly number[]) => Module | undefined;

/** Feature rows to feature rows: hidden layers Linear → BatchNorm1d → ReLU (default [1024]), then a Linear. */
export function mlpInputModel(input: Shape, output: Shape, hidden: readonly number[] = [1024]): Module | undefined {
  if (input.length !== 1 || output.length !== 1) return undefined;
  const layers: Module[] = [];
  let width = input[0];
  for (const h of hidden) {
    layers.push(new Linear(width, h), new BatchNorm1d(h), new ReLU());
    width = h;
  }
  layers.push(new Linear(width, output[0]));
  return new Sequential(layers);
}

/** The hidden filters of convInputModel's layers when the module input is a row of features. */
const ROW_OUTPUT_FILTERS = 32;

/**
 * Images x [C, H, W] to a module input [C', H', W'] or to a row [F]: hidden layers 5x5 Conv2d
 * ('same') → BatchNorm2d → ReLU, then for an image output stride-2 3x3 average pools (padding 1)
 * until the size is H' x W' and a 5x5 conv to C' channels; for a row output Flatten → Linear.
 * The pools are cnn()'s, so the sizes they reach are exactly the sizes of cnn()'s cuts; they
 * follow the first hidden layer so that the later ones run on the smaller images. The last
 * layer has no ReLU (a regression onto h, as the MLP's last Linear). Undefined when the pools
 * never reach H' x W' (e.g. a larger module input).
 */
export function convInputModel(input: Shape, output: Shape, hidden?: readonly number[]): Module | undefined {
  if (input.length !== 3 || (output.length !== 3 && output.length !== 1)) return undefined;
  const [channels, height, width] = input;
  const image = output.length === 3;
  const filters = hidden ?? [image ? output[0] : ROW_OUTPUT_FILTERS];
  let pools = 0;
  if (image) {
    let [h, w] = [height, width];
    while (h > output[1] || w > output[2]) {
      [h, w] = [ops.windowOutputSize(h, 3, 2, 1), ops.windowOutputSize(w, 3, 2, 1)];
      pools++;
    }
    if (h !== output[1] || w !== output[2]) return undefined;
  }
  const layers: Module[] = [];
  const downsample = () => {
    for (; pools > 0; pools--) layers.push(new AvgPool2d({ kernel: 3, stride: 2, padding: 1 }));
  };
  let inChannels = channels;
  for (const f of filters) {
    layers.push(new Conv2d({ inChannels, outChannels: f, kernel: 5, padding: 'same', bias: false }), new BatchNorm2d(f), new ReLU());
    downsample();
    inChannels = f;
  }
  if (image) {
    downsample(); // with no hidden layer
    layers.push(new Conv2d({ inChannels, outChannels: output[0], kernel: 5, padding: 'same' }));
  } else layers.push(new Flatten(), new Linear(inChannels * height * width, output[0]));
  return new Sequential(layers);
}

/** The default builders, tried in order. */
export const inputModelBuilders: InputModelBuilder[] = [mlpInputModel, convInputModel];

/** The keys of UnlockOptions, checked where users pass them. */
export const UNLOCK_OPTIONS = ['hidden', 'network', 'optimizer'] as const;

/** `decouple`'s `unlock` option: undefined when off, else the checked options. */
export function unlockOptions(unlock: unknown): UnlockOptions | undefined {
  if (unlock === undefined || unlock === false) return undefined;
  if (unlock === true) return {};
  if (unlock === null || typeof unlock !== 'object' || Array.isArray(unlock))
    throw typeError(`decouple: 'unlock' must be true, false or an object { hidden?, network?, optimizer? }, got ${describe(unlock)}`);
  checkOptions('decouple', unlock, UNLOCK_OPTIONS, 'unlock');
  const o = unlock as UnlockOptions;
  if (o.hidden !== undefined && (!Array.isArray(o.hidden) || o.hidden.some((h) => !Number.isInteger(h) || h < 1)))
    throw rangeError(`decouple: 'unlock.hidden' must be an array of positive integers, got ${shown(o.hidden)}`);
  if (o.network !== undefined && typeof o.network !== 'function')
    throw typeError(`decouple: 'unlock.network' must be a function (input shape, output shape) => Module, got ${describe(o.network)}`);
  if (o.optimizer !== undefined && typeof o.optimizer !== 'function')
    throw typeError(`decouple: 'unlock.optimizer' must be a function returning an Optimizer, got ${describe(o.optimizer)}`);
  return o;
}

/** One prediction Î = I(x), with what it needs to learn from the real input later. */
export interface InputPrediction {
  /** Î, the synthetic input [batch, ...the module input's row shape] */
  input: Tensor;
  /** Regresses I onto `target` (the real h_{i-1} of the same batch); returns the L2 loss as a [1] tensor. */
  learn(target: Tensor, ctx: StepContext): Tensor;
}

export class InputModel {
  readonly network: Module;
  optimizer?: Optimizer;
  private params: Parameter[] = [];

  /**
   * `module`: the 0-based index of the module it feeds (1..N-1); `input`, `output`: the row
   * shapes of x and of that module's input.
   */
  constructor(
    readonly name: string,
    readonly module: number,
    readonly input: Shape,
    readonly output: Shape,
    options: UnlockOptions,
  ) {
    let network: Module | undefined;
    if (options.network) {
      network = options.network([...input], [...output]);
      if (!(network instanceof Module)) throw typeError(`${name}: 'unlock.network' must return a Module, got ${describe(network)}`);
    } else {
      for (const build of inputModelBuilders) if ((network = build(input, output, options.hidden))) break;
      if (!network)
        throw rangeError(
          `${name}: no default input model maps rows of shape [${input.join(', ')}] to [${output.join(', ')}]; give 'unlock.network'`,
        );
    }
    let out: number[];
    try {
      out = network.outputShape([1, ...input]);
    } catch (e) {
      throw rangeError(`${name}: the input model does not accept x's rows [${input.join(', ')}] (${(e as Error).message})`);
    }
    if (out.length !== output.length + 1 || out.slice(1).some((d, k) => d !== output[k]))
      throw rangeError(`${name}: the input model outputs rows [${out.slice(1).join(', ')}], the module's input has [${output.join(', ')}]`);
    this.network = network;
  }

  initialize(device: Device, rng: Random, optimizer: Optimizer): void {
    this.network.initialize(device, rng);
    this.params = this.network.parameters();
    this.optimizer = optimizer;
  }

  parameters(): Parameter[] {
    return this.params;
  }

  /** Î = I(x), enqueued on ctx.stream. */
  predict(x: Tensor, ctx: StepContext): InputPrediction {
    const optimizer = this.optimizer;
    if (!optimizer) throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize()`);
    const f: Forwarded = this.network.forward(x, ctx);
    return {
      input: f.output,
      // The weights that predicted Î are the ones that learn (the regression follows in the
      // same step), so the saved forward is regressed, with no second one.
      learn: (target, lctx) => {
        const loss = ops.mse(lctx, f.output, target);
        f.backward(ops.mseBackward(lctx, f.output, target, 1), lctx, false);
        optimizer.step(this.params, lctx.stream, lctx.capture);
        return loss;
      },
    };
  }

  dispose(): void {
    this.network.dispose();
    this.optimizer?.dispose();
  }
}

/** Row shapes (no batch dimension) of each module's output, from x's row shape. */
export function moduleOutputShapes(modules: readonly Module[], input: Shape): number[][] {
  let shape = [1, ...input];
  return modules.map((m) => {
    shape = m.outputShape(shape);
    return shape.slice(1);
  });
}
