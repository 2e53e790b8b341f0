// A training step captured once into a graph (fit's `graph` option, see ../graph.ts): fixed
// input and output tensors, replayed per batch by writing the batch into the inputs.
import type { Device } from '../device';
import { Graph } from '../graph';
import type { StepContext } from '../nn/module';
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

  /**
   * Writes the batch into the graph's inputs in the stream's order (after the previous launch
   * has read them; the host does not wait for it), launches the graph, and reads the loss.
   */
  run(inputs: Float32Array, targets: Int32Array | Float32Array, stream: Stream): Promise<Float32Array | Int32Array> {
    this.x.write(inputs, stream);
    this.y.write(targets, stream);
    for (const update of this.hooks) update(stream);
    this.graph.launch(stream);
    return this.loss.read(stream);
  }

  /** The graph first: it waits for its last launch, then the memory it used is released. */
  dispose(): void {
    this.graph.dispose();
    this.arena.dispose();
  }
}
