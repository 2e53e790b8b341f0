// Devices: where tensors live and ops run.
import { native, DeviceName } from './native';
import { rangeError, typeError } from './errors';

export class Device {
  private constructor(readonly name: DeviceName) {}

  static cpu(): Device {
    return new Device('cpu');
  }

  /** The i-th CUDA device; throws a RangeError when it is absent or CUDA is not built in. */
  static cuda(index = 0): Device {
    if (!Number.isInteger(index) || index < 0) throw rangeError(`Device.cuda: 'index' must be a non-negative integer, got ${index}`);
    const count = native.buildInfo().cudaDevices;
    if (index >= count) {
      const why = native.buildInfo().cuda ? `${count} CUDA device(s) present` : 'this build has no CUDA backend';
      throw rangeError(`Device.cuda: cuda:${index} is not available (${why})`);
    }
    return new Device(`cuda:${index}`);
  }

  /** Every device this build can use. */
  static list(): Device[] {
    const n = native.buildInfo().cudaDevices;
    return [Device.cpu(), ...Array.from({ length: n }, (_, i) => Device.cuda(i))];
  }

  /**
   * The fastest device: cuda:0 when present, else the CPU. SYNTHGRAD_DEVICE=cpu|cuda:N
   * overrides the choice.
   */
  static best(): Device {
    const forced = process.env.SYNTHGRAD_DEVICE;
    if (forced) return Device.parse(forced);
    return native.buildInfo().cudaDevices > 0 ? Device.cuda(0) : Device.cpu();
  }

  /** 'cpu' or 'cuda:N' */
  static parse(name: string): Device {
    if (name === 'cpu') return Device.cpu();
    const m = /^cuda:(\d+)$/.exec(name);
    if (!m) throw typeError(`Device.parse: expected 'cpu' or 'cuda:N', got '${name}'`);
    return Device.cuda(Number(m[1]));
  }

  get isCuda(): boolean {
    return this.name !== 'cpu';
  }

  /**
   * Cancels the queued work of this device that this thread (this Worker, or the main
   * thread) enqueued and that has not started: on the CPU those ops are dropped, on every
   * stream, and the next synchronize() or read() on each such stream rejects with a
   * "cancelled" error; event records and waits still happen, so nothing waits forever.
   * Returns the number of ops dropped. On a GPU, work already handed to the device cannot be
   * withdrawn: it completes, and this returns 0.
   *
   * Process exit: Node.js does not exit while a read() or synchronize() Promise is pending;
   * once it ends (or a Worker is terminated), the CPU ops it queued that have not started are
   * dropped, as if by cancelAll(). See the file comment of stream.ts.
   */
  cancelAll(): number {
    return native.cancelQueued(this.name);
  }

  /** A human-readable description, e.g. the GPU's model. */
  describe(): string {
    return native.deviceName(this.name);
  }

  equals(other: Device): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }
}
