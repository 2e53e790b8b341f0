// What the methods compared with DNI (feedback alignment, direct feedback alignment, Kickback)
// share: each wraps a Sequential model into a Module that brings its own training strategy
// (like decouple(), ../dni/network.ts), and each strategy is "forward, loss, a backward pass of
// its own, one optimizer step". Only the backward pass differs; it is given the forward pass's
// per-layer closures and outputs.
//
// Like ../dni/, this file imports from train/ only the strategy interfaces.
import { describe } from '../check';
import { Device } from '../device';
import { Activation, BatchNorm1d, Linear, Sequential } from '../nn/layers';
import type { Loss } from '../nn/losses';
import { Forwarded, InputShape, Module, Parameter, Shape, StepContext } from '../nn/module';
import type { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Tensor } from '../tensor';
import type { NamedTensor } from '../train/checkpoint';
import { HasTrainingStrategy, StrategyState, TrainingStrategy, stepCount } from '../train/strategy';
import { typeError } from '../errors';

/** The layers of a Sequential, nested Sequentials flattened (their layers run in the same order). */
export function flatLayers(model: Sequential): Module[] {
  return model.layers.flatMap((l) => (l instanceof Sequential ? flatLayers(l) : [l]));
}

/** Whether a layer is one these methods know how to train: Linear, BatchNorm1d, an activation. */
export function isSupportedLayer(l: Module): boolean {
  return l instanceof Linear || l instanceof BatchNorm1d || l instanceof Activation;
}

/** Throws, naming `owner`, unless `model` is a Sequential. */
export function checkSequential(owner: string, model: unknown): asserts model is Sequential {
  if (!(model instanceof Sequential)) throw typeError(`${owner}: 'model' must be a Sequential, got ${describe(model)}`);
}

/** A model's output width (through the outputShape chain from one row of its input). */
export function outputWidth(owner: string, model: Sequential): number {
  const inputs = model.inputFeatures();
  if (inputs === undefined) throw typeError(`${owner}: cannot infer the input width of the model (start it with a Linear or BatchNorm1d)`);
  const out = model.outputShape([1, inputs]);
  if (out.length !== 2) throw typeError(`${owner}: the model outputs shape [${out.join(', ')}], not [batch, outputs] rows`);
  return out[1];
}

/** One step's forward pass, layer by layer. */
export interface LayerForwards {
  /** the layers' inputs and outputs: outputs[0] = x, outputs[i + 1] = layer i's output */
  outputs: Tensor[];
  forwards: Forwarded[];
}

/**
 * A Sequential model wrapped with a training method: its forward pass (evaluation, predict) is
 * the plain model's, its parameters and state are the model's; the method's own fixed tensors
 * (feedback matrices) are the strategy's, saved in checkpoints with it.
 */
export abstract class MethodNetwork extends Module implements HasTrainingStrategy {
  /** the model's layers, nested Sequentials flattened */
  readonly layers: Module[];
  protected device?: Device;
  protected rng?: Random;

  constructor(readonly model: Sequential) {
    super();
    this.layers = flatLayers(model);
  }

  /** The model (so that the Trainer finds its BatchNorm layers and binds it). */
  children(): readonly Module[] {
    return [this.model];
  }

  initialize(device: Device, rng: Random): void {
    this.model.initialize(device, rng);
    this.device = device;
    this.rng = rng;
  }

  outputShape(input: Shape): number[] {
    return this.model.outputShape(input);
  }

  inputShape(): InputShape | undefined {
    return this.model.inputShape();
  }

  inputFeatures(): number | undefined {
    return this.model.inputFeatures();
  }

  parameters(): Parameter[] {
    return this.model.parameters();
  }

  stateTensors(): Tensor[] {
    return this.model.stateTensors();
  }

  forward(x: Tensor, ctx: StepContext): Forwarded {
    return this.model.forward(x, ctx);
  }

  /** Runs the layers one by one, keeping every output and backward closure. */
  forwardLayers(x: Tensor, ctx: StepContext): LayerForwards {
    const outputs = [x];
    const forwards: Forwarded[] = [];
    for (const layer of this.layers) {
      const f = layer.forward(outputs[outputs.length - 1], ctx);
      forwards.push(f);
      outputs.push(f.output);
    }
    return { outputs, forwards };
  }

  abstract trainingStrategy(options: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy;

  /** The device and generator initialize() was given (the Trainer calls it before trainingStrategy()). */
  protected initializedWith(): { device: Device; rng: Random } {
    return { device: this.initialized(this.device), rng: this.initialized(this.rng) };
  }

  dispose(): void {
    this.model.dispose();
  }
}

/**
 * Forward, loss, the method's backward pass (accumulating into the parameters' gradients), one
 * optimizer step over all the model's parameters; checkpoints hold the optimizer's state and
 * the method's fixed tensors.
 */
export class MethodTraining implements TrainingStrategy {
  /** the model's parameters, then the method's own trained ones (e.g. DTP's inverses) */
  protected readonly params: Parameter[];

  constructor(
    readonly network: MethodNetwork,
    readonly loss: Loss,
    readonly optimizer: Optimizer,
    /** given the forward pass and the loss gradient at the output, accumulates the parameter gradients */
    private readonly backward: (f: LayerForwards, outputGradient: Tensor, ctx: StepContext) => void,
    /** tensors the method keeps fixed (saved with checkpoints so that a resumed run has the same ones) */
    readonly fixed: NamedTensor[] = [],
    /** parameters the method trains besides the model's (stepped by the same optimizer) */
    extra: Parameter[] = [],
  ) {
    this.params = [...network.parameters(), ...extra];
  }

  step(x: Tensor, y: Tensor, ctx: StepContext): Tensor {
    const f = this.network.forwardLayers(x, ctx);
    const l = this.loss.forward(f.outputs[f.outputs.length - 1], y, ctx);
    this.backward(f, l.backward(ctx), ctx);
    this.optimizer.step(this.params, ctx.stream, ctx.capture);
    return l.loss;
  }

  learningRate(): number {
    return this.optimizer.lr;
  }

  /** Every step enqueues the same ops on the trainer's stream: it may be captured. */
  captureBlocker(): string | undefined {
    return undefined;
  }

  checkpointState(): StrategyState {
    return {
      tensors: [...this.optimizer.stateTensors(this.params).map((tensor, i) => ({ name: `optimizer.${i}`, tensor })), ...this.fixed],
      host: { optimizerSteps: this.optimizer.steps },
    };
  }

  restoreState(host: unknown): void {
    this.optimizer.steps = stepCount((host as { optimizerSteps?: unknown } | null)?.optimizerSteps, 'optimizerSteps');
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
