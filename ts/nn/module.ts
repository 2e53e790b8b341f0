// Modules: the building blocks of a network.
//
// A module's forward pass enqueues its work on the step's stream and returns its output with
// a `backward` closure over what it saved. Closures (rather than state stored in the module)
// let several forward passes be in flight at once, which pipelined decoupled training needs.
// backward() overwrites the input gradient it returns and ACCUMULATES (+=) into the
// parameters' gradients; an optimizer step consumes and zeroes them.
//
// Shapes: a module states the shape of its output for an input shape (outputShape), so that a
// model's shapes are checked as a chain before training starts. Inputs have the example
// dimensions first ([B, F] rows, [B, C, H, W] images, [T, B, F] sequences); layers on rows
// state their shapes through outputFeatures(). What a module takes as input is inputShape().
import { Device } from '../device';
import type { CaptureHooks } from '../graph';
import { Random } from '../random';
import * as ops from '../ops';
import { Event, Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { describe } from '../check';
import { error, rangeError, typeError } from '../errors';

/** What a forward or backward pass runs with. */
export interface StepContext {
  readonly device: Device;
  readonly stream: Stream;
  /** training mode: BatchNorm uses batch statistics and updates its running ones */
  readonly training: boolean;
  /** owns the tensors made during this step; disposed of when the step is over */
  readonly arena: Arena;
  /** training-mode forward that leaves BatchNorm's running statistics alone (probe batches) */
  readonly freezeStatistics?: boolean;
  /** present while the step is being captured into a graph (see graph.ts) */
  readonly capture?: CaptureHooks;
  /**
   * Set by fit's uncaptured step, which writes the batch (x, y) on a stream of its own:
   * recorded after those writes. `stream` already waits for it; a strategy that reads x or y
   * on other streams makes them wait for it too.
   */
  readonly batchWritten?: Event;
}

/**
 * Backpropagates `dy` (the loss gradient w.r.t. the output) through the module, accumulating
 * parameter gradients. Returns the gradient w.r.t. the input, or undefined when
 * `needInputGrad` is false (the first module of a network skips that work).
 */
export type Backward = (dy: Tensor, ctx: StepContext, needInputGrad: boolean) => Tensor | undefined;

export interface Forwarded {
  output: Tensor;
  backward: Backward;
}

/** A trainable tensor and its gradient (same shape, same device). */
export class Parameter {
  constructor(
    readonly name: string,
    readonly value: Tensor,
    readonly grad: Tensor,
  ) {}

  static create(name: string, init: Float32Array, shape: number[], device: Device): Parameter {
    return new Parameter(name, Tensor.fromArray(init, shape, { device }), Tensor.zeros(shape, { device }));
  }

  /** Replaces the values (e.g. loaded weights); resolves once the copy is done. */
  async assign(values: Float32Array): Promise<void> {
    const src = Tensor.fromArray(values, this.value.shape, { device: this.value.device });
    const stream = Stream.default(this.value.device);
    ops.copy({ stream }, src, this.value);
    await stream.synchronize();
    src.dispose();
  }

  dispose(): void {
    this.value.dispose();
    this.grad.dispose();
  }
}

export abstract class Module {
  /** e.g. 'Linear(784→256)' */
  abstract readonly name: string;

  /** Creates the parameters and buffers on `device`, drawing initial values from `rng`. */
  abstract initialize(device: Device, rng: Random): void;

  abstract forward(x: Tensor, ctx: StepContext): Forwarded;

  /**
   * The shape of the output for an input of shape `input`; throws a RangeError naming the
   * module when the input does not fit. The default is for modules on [batch, features] rows:
   * it takes rank-2 shapes only and maps the features through outputFeatures(). A module on
   * other shapes overrides this (and then need not implement outputFeatures()).
   */
  outputShape(input: Shape): number[] {
    checkShape(`${this.name}.outputShape`, 'input', input);
    if (input.length !== 2) throw rangeError(`${this.name}: expects a [batch, features] input, got shape [${input.join(', ')}]`);
    return [input[0], this.outputFeatures(input[1])];
  }

  /**
   * Number of output features for `inputFeatures` input features (throws if incompatible): a
   * module on [batch, features] rows implements this or outputShape(); the default asks
   * outputShape() about one row.
   */
  outputFeatures(inputFeatures: number): number {
    // Each default is written in terms of the other: a module must override one of them.
    if (this.outputShape === Module.prototype.outputShape)
      throw typeError(`${this.name}: implements neither outputShape() nor outputFeatures()`);
    const out = this.outputShape([1, inputFeatures]);
    if (out.length !== 2)
      throw rangeError(`${this.name}: maps [batch, ${inputFeatures}] rows to shape [${out.join(', ')}], not to rows of features`);
    return out[1];
  }

  /**
   * What input the module takes (see InputShape): the trainer feeds a Dataset's rows as
   * [rows, features] or as [rows, ...dataset.shape] by it. Undefined (the default) for a module
   * that takes any shape and passes it through (an activation): a Sequential then asks its
   * next layer.
   */
  inputShape(): InputShape | undefined {
    return undefined;
  }

  /** The number of input features the module requires, when it takes rows of a fixed width. */
  inputFeatures(): number | undefined {
    const takes = this.inputShape();
    return takes?.kind === 'rows' ? takes.features : undefined;
  }

  parameters(): Parameter[] {
    return [];
  }

  /**
   * The modules this one is built from (a Sequential's layers), so that a model can be walked:
   * the trainer finds the BatchNorm layers (which need two rows per batch) and binds every
   * part of a model to one trainer. A module that holds others should return them.
   */
  children(): readonly Module[] {
    return [];
  }

  /**
   * The tensors holding what the module has learned, in a fixed order: parameter values, then
   * buffers (BatchNorm's running statistics). Checkpoints save and restore exactly these.
   */
  stateTensors(): Tensor[] {
    return this.parameters().map((p) => p.value);
  }

  /** Frees the parameters and buffers. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }

  /** Throws a clear error when used before initialize(). */
  protected initialized<T>(value: T | undefined): T {
    if (value === undefined)
      throw error('ERR_SYNTHGRAD_STATE', `${this.name}: used before initialize(device, rng) (a Trainer does this for you)`);
    return value;
  }
}

/**
 * The input a module takes: [batch, features] rows of a fixed width; [batch, channels, height,
 * width] images (channels fixed or not; any height and width the module's windows fit); or any
 * shape of at least two dimensions, which the module maps to what comes next (Flatten).
 */
export type InputShape = { kind: 'rows'; features: number } | { kind: 'images'; channels?: number } | { kind: 'any' };

/**
 * A tensor's shape: its sizes, the example dimensions first, e.g. [B, F], [B, C, H, W] or
 * [T, B, F].
 */
export type Shape = readonly number[];

/** Throws, naming `owner` and `arg`, unless `shape` is a non-empty array of non-negative integers. */
export function checkShape(owner: string, arg: string, shape: unknown): asserts shape is Shape {
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d >= 0))
    throw typeError(`${owner}: '${arg}' must be a shape (a non-empty array of non-negative integers), got ${describe(shape)}`);
}

/** Checks that x is a [batch, features] float32 tensor on the context's device. */
export function checkInput(module: string, x: Tensor, features: number, ctx: StepContext): void {
  if (!(x instanceof Tensor)) throw typeError(`${module}: the input must be a Tensor`);
  if (x.dtype !== 'float32') throw typeError(`${module}: the input must be float32, got ${x.dtype}`);
  if (x.shape.length !== 2 || x.shape[1] !== features)
    throw rangeError(`${module}: the input must have shape [batch, ${features}], got [${x.shape.join(', ')}]`);
  if (!x.device.equals(ctx.device))
    throw typeError(`${module}: the input is on ${x.device.name} but the module runs on ${ctx.device.name}`);
}

/** `module` and every module below it, depth first. */
export function modulesOf(module: Module): Module[] {
  return [module, ...module.children().flatMap(modulesOf)];
}
