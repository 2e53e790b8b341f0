// A training step captured once into a graph (fit's `graph` option, see ../graph.ts): fixed
// input and output tensors, replayed per batch by copying the batch into the inputs.
import type { Device } from '../device';
import { Graph } from '../graph';
import type { StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import type { TrainingStrategy } from './strategy';

/** A training step captured once: fixed input and output tensors, replayed per batch. */
export class CapturedStep {
  private constructor(
    private readonly x: Tensor,
    private readonly y: Tensor,
    private readonly loss: Tensor,
    private readonly graph: Graph,
    private readonly arena: Arena,
    private readonly hooks: ((stream: Stream) => void)[],
  ) {}

  /** `input`: the batch's shape [rows, ...example]; `outputs`: 0 for int32 labels [rows], else the float32 targets' width [rows, outputs]. */
  static capture(strategy: TrainingStrategy, device: Device, stream: Stream, input: readonly number[], outputs: number): CapturedStep {
    const arena = new Arena();
    const hooks: ((stream: Stream) => void)[] = [];
    const rows = input[0];
    try {
      const x = Tensor.empty(input, { device, arena });
      const y = outputs === 0 ? Tensor.empty([rows], { device, dtype: 'int32', arena }) : Tensor.empty([rows, outputs], { device, arena });
      const ctx: StepContext = { device, stream, training: true, arena, capture: { beforeLaunch: (f) => hooks.push(f) } };
      let loss: Tensor | undefined;
      const graph = Graph.capture(stream, () => {
        loss = strategy.step(x, y, ctx);
      });
      return new CapturedStep(x, y, loss!, graph, arena, hooks);
    } catch (e) {
      arena.dispose();
      throw e;
    }
  }

  /** Copies the batch into the graph's inputs, launches it, and reads the loss. */
  run(inputs: Float32Array, targets: Int32Array | Float32Array, stream: Stream): Promise<Float32Array | Int32Array> {
    const staging = new Arena(); // fresh memory: the previous launch may still read x and y
    try {
      const opts = { device: this.x.device, arena: staging };
      ops.copy({ stream }, Tensor.fromArray(inputs, this.x.shape, opts), this.x);
      ops.copy({ stream }, Tensor.fromArray(targets, this.y.shape, opts), this.y);
      for (const update of this.hooks) update(stream);
      this.graph.launch(stream);
      return this.loss.read(stream);
    } finally {
      staging.dispose(); // enqueued copies keep their memory alive
    }
  }

  /** The graph first: it waits for its last launch, then the memory it used is released. */
  dispose(): void {
    this.graph.dispose();
    this.arena.dispose();
  }
}
