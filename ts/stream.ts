// Streams and events: the same semantics on every device.
//
// Work enqueued on one stream runs in order. `event.record(stream)` marks the current end of
// a stream; `other.wait(event)` makes later work on `other` wait for that mark. The host waits
// with Promises (`synchronize()`), which never block the Node.js event loop. On the CPU a
// stream is a FIFO served by one process-wide pool of threads (a wait parks the stream, it
// blocks no thread); on a GPU it is a CUDA stream.
//
// Queued work and exit: Node.js does not exit while a read() or synchronize() Promise is
// pending, so work that is awaited always completes. When the process or a Worker ends, the
// CPU ops it queued that have not started are dropped (nothing could observe their results),
// so exit and Worker.terminate() do not wait for them; process.exit() stops at once. To stop
// early while running, `stream.cancel()` or `device.cancelAll()` drops the ops not yet
// started (the running one completes) and the next synchronize() or read() on that stream
// rejects with a "cancelled" error. On a GPU, work already handed to the device cannot be
// withdrawn: it completes, also at exit, and cancel returns 0.
//
// Debugging the order: with SYNTHGRAD_CHECK_STREAMS=1 (or native.checkStreams(true)) every op,
// read, record and wait is checked when it is enqueued, and an access to memory that another
// stream wrote (or, for a write, read) with no wait for an event recorded after that access,
// and no resolved synchronize() covering it, throws an Error ('stream order: ...') that names
// the op, the tensor and both streams (native/core/stream_order.h).
import { describe } from './check';
import { Device } from './device';
import { native, NativeEvent, NativeStream } from './native';
import { typeError } from './errors';

function checkDevice(fn: string, device: unknown): void {
  if (!(device instanceof Device)) throw typeError(`${fn}: 'device' must be a Device, got ${describe(device)}`);
}

export class Stream {
  private static defaults = new Map<string, Stream>();

  readonly handle: NativeStream;

  constructor(
    readonly device: Device,
    handle?: NativeStream,
  ) {
    checkDevice('Stream', device);
    this.handle = handle ?? new native.Stream(device.name);
  }

  /** The device's default stream, used when no stream is given. */
  static default(device: Device): Stream {
    checkDevice('Stream.default', device);
    let s = Stream.defaults.get(device.name);
    if (!s) {
      s = new Stream(device, native.defaultStream(device.name));
      Stream.defaults.set(device.name, s);
    }
    return s;
  }

  /** Later work on this stream waits until `event` (its latest record) has completed. */
  wait(event: Event): this {
    if (!(event instanceof Event)) throw typeError(`Stream.wait: 'event' must be an Event, got ${describe(event)}`);
    this.handle.wait(event.handle);
    return this;
  }

  /** Resolves once all work enqueued so far has run; rejects with the first op failure. */
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }

  /**
   * Drops the ops this thread enqueued on the stream that have not started yet and returns
   * how many (see the file comment; 0 on a GPU). Event records and waits still happen.
   */
  cancel(): number {
    return this.handle.cancel();
  }
}

export class Event {
  readonly handle: NativeEvent;

  constructor(readonly device: Device) {
    checkDevice('Event', device);
    this.handle = new native.Event(device.name);
  }

  /** Marks the current end of `stream`'s queue. */
  record(stream: Stream): this {
    if (!(stream instanceof Stream)) throw typeError(`Event.record: 'stream' must be a Stream, got ${describe(stream)}`);
    this.handle.record(stream.handle);
    return this;
  }

  /** Resolves once the latest record has completed (at once if never recorded). */
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }
}
