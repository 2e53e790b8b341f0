// Graphs: a training step's work recorded once and replayed, without the per-op cost of the
// JavaScript → native calls (and, on a GPU, of each kernel launch).
//
// Graph.capture(stream, body) records the work `body` enqueues on `stream` and on every stream
// that waits for an event recorded during the capture; each of those streams must in turn be
// waited for by `stream` before the body ends. Nothing runs while capturing, and the host
// cannot wait on a capturing stream (read(), synchronize() throw). A graph replays the same
// kernels on the same memory: values that change from step to step must live in tensors that
// are written before each launch (inputs, learning rates), not in arguments fixed at capture.
// On a GPU this is a CUDA graph; on the CPU, a recorded list of tasks. One capture at a time
// per device: a capture whose body throws is discarded, and so (in the native module) is one
// whose graph is disposed of or garbage-collected before it ended, so none stays open.
import { describe } from './check';
import { Device } from './device';
import { native, NativeGraph } from './native';
import { Stream } from './stream';
import { typeError } from './errors';

export class Graph {
  private constructor(
    readonly device: Device,
    private readonly handle: NativeGraph,
  ) {}

  /**
   * Records what `body` enqueues (see the file comment). If `body` throws, so does capture,
   * and the capture is discarded.
   */
  static capture(stream: Stream, body: () => void): Graph {
    if (!(stream instanceof Stream)) throw typeError(`Graph.capture: 'stream' must be a Stream, got ${describe(stream)}`);
    if (typeof body !== 'function') throw typeError(`Graph.capture: 'body' must be a function, got ${describe(body)}`);
    // Disposing of the capturing graph discards the capture: after a failed body, nothing is
    // left open to block the next capture.
    const capturing = native.beginCapture(stream.handle);
    try {
      // Work enqueued after an await would escape the capture.
      const result: unknown = body();
      if (result && typeof (result as PromiseLike<unknown>).then === 'function')
        throw typeError("Graph.capture: 'body' must be synchronous (it returned a Promise)");
    } catch (e) {
      capturing.dispose();
      throw e;
    }
    return new Graph(stream.device, native.endCapture(stream.handle));
  }

  /** Enqueues the recorded work after what `stream` has so far; later work waits for all of it. */
  launch(stream: Stream): void {
    if (!(stream instanceof Stream)) throw typeError(`launch: 'stream' must be a Stream, got ${describe(stream)}`);
    this.handle.launch(stream.handle);
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  /** Frees the graph (work already launched completes first). */
  dispose(): void {
    this.handle.dispose();
  }
}

/** Given to a training step while it is captured: per-launch host work goes here. */
export interface CaptureHooks {
  /** Runs `update` before every launch, with the stream the graph is launched on. */
  beforeLaunch(update: (stream: Stream) => void): void;
}
