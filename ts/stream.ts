// Streams and events: the same semantics on every device.
//
// Work enqueued on one stream runs in order. `event.record(stream)` marks the current end of
// a stream; `other.wait(event)` makes later work on `other` wait for that mark. The host waits
// with Promises (`synchronize()`), which never block the Node.js event loop. On the CPU a
// stream is a worker thread with a FIFO; on a GPU it is a CUDA stream.
import { Device } from './device';
import { native, NativeEvent, NativeStream } from './native';

export class Stream {
  private static defaults = new Map<string, Stream>();

  readonly handle: NativeStream;

  constructor(readonly device: Device, handle?: NativeStream) {
    this.handle = handle ?? new native.Stream(device.name);
  }

  /** The device's default stream, used when no stream is given. */
  static default(device: Device): Stream {
    let s = Stream.defaults.get(device.name);
    if (!s) {
      s = new Stream(device, native.defaultStream(device.name));
      Stream.defaults.set(device.name, s);
    }
    return s;
  }

  /** Later work on this stream waits until `event` (its latest record) has completed. */
  wait(event: Event): this {
    this.handle.wait(event.handle);
    return this;
  }

  /** Resolves once all work enqueued so far has run; rejects with the first op failure. */
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }
}

export class Event {
  readonly handle: NativeEvent;

  constructor(readonly device: Device) {
    this.handle = new native.Event(device.name);
  }

  /** Marks the current end of `stream`'s queue. */
  record(stream: Stream): this {
    this.handle.record(stream.handle);
    return this;
  }

  /** Resolves once the latest record has completed (at once if never recorded). */
  synchronize(): Promise<void> {
    return this.handle.synchronize();
  }
}
