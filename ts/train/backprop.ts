// Plain backpropagation as a training strategy (./strategy.ts): forward, loss, backward through
// the whole network, one optimizer step. The Trainer uses it for every model that does not
// bring its own strategy.
import type { Loss } from '../nn/losses';
import type { Module, Parameter, StepContext } from '../nn/module';
import type { Optimizer } from '../optim/optimizers';
import type { Tensor } from '../tensor';
import { StrategyState, TrainingStrategy, stepCount } from './strategy';

/** Forward, loss, backward through the whole network, one optimizer step. */
export class Backpropagation implements TrainingStrategy {
  private readonly params: Parameter[];

  constructor(
    readonly model: Module,
    readonly loss: Loss,
    readonly optimizer: Optimizer,
  ) {
    this.params = model.parameters();
  }

  step(x: Tensor, y: Tensor, ctx: StepContext): Tensor {
    const f = this.model.forward(x, ctx);
    const l = this.loss.forward(f.output, y, ctx);
    f.backward(l.backward(ctx), ctx, false);
    this.optimizer.step(this.params, ctx.stream, ctx.capture);
    return l.loss;
  }

  learningRate(): number {
    return this.optimizer.lr;
  }

  captureBlocker(): undefined {
    return undefined;
  }

  checkpointState(): StrategyState {
    return {
      tensors: this.optimizer.stateTensors(this.params).map((tensor, i) => ({ name: `optimizer.${i}`, tensor })),
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
