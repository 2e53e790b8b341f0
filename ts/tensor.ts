// Tensors: typed, shaped handles on native memory (float32, or int32 for labels).
//
// A tensor's memory is freed by dispose() (or, as a safety net, when it is garbage
// collected). Work already enqueued on a stream keeps the memory alive, so disposing of a
// tensor right after using it is always safe. A tensor larger than its device's memory is a
// RangeError raised before anything is allocated (CPU: physical memory, or a container's
// cgroup limit, or SYNTHGRAD_CPU_MEMORY=<bytes>; CUDA: the GPU's memory).
import { describe } from './check';
import { Device } from './device';
import { native, DTypeName, NativeTensor } from './native';
import { Stream } from './stream';
import { rangeError, typeError } from './errors';

export type DType = DTypeName;
export type TypedArrayOf<D extends DType> = D extends 'int32' ? Int32Array : Float32Array;

export interface TensorOptions {
  device?: Device;
  dtype?: DType;
  /** dispose of the tensor together with this arena */
  arena?: Arena;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;

  /** Wraps a native handle; use the static constructors instead. */
  constructor(
    readonly handle: NativeTensor,
    device?: Device,
  ) {
    this.shape = handle.shape;
    this.dtype = handle.dtype;
    this.device = device ?? Device.parse(handle.device ?? 'cpu');
  }

  /** A tensor whose contents are unspecified (for op outputs that overwrite it). */
  static empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return Tensor.create(shape, options, undefined);
  }

  static zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return Tensor.create(shape, options, 'zeros');
  }

  /**
   * A tensor holding a copy of `data`: a Float32Array (float32), an Int32Array (int32) or an
   * array of numbers (float32 unless options.dtype says int32).
   */
  static fromArray(data: Float32Array | Int32Array | readonly number[], shape: readonly number[], options: TensorOptions = {}): Tensor {
    checkOptions(options);
    let typed: Float32Array | Int32Array;
    if (data instanceof Float32Array || data instanceof Int32Array) {
      typed = data;
    } else if (Array.isArray(data)) {
      if (options.dtype === 'int32') {
        // Int32Array.from would turn NaN into 0 and wrap 1e10 around without a word.
        for (let i = 0; i < data.length; i++) {
          const v: unknown = data[i];
          if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647)
            throw rangeError(
              `Tensor.fromArray: 'data[${i}]' must be an integer in [-2147483648, 2147483647] for int32, got ${typeof v === 'number' ? v : describe(v)}`,
            );
        }
        typed = Int32Array.from(data);
      } else {
        typed = Float32Array.from(data);
      }
    } else {
      throw typeError(`Tensor.fromArray: 'data' must be a Float32Array, Int32Array or number[], got ${describe(data)}`);
    }
    const dtype: DType = typed instanceof Int32Array ? 'int32' : 'float32';
    if (options.dtype && options.dtype !== dtype)
      throw typeError(`Tensor.fromArray: 'data' is ${dtype} but options.dtype is ${options.dtype}`);
    return Tensor.create(shape, { ...options, dtype }, typed);
  }

  private static create(shape: readonly number[], options: TensorOptions, init: Float32Array | Int32Array | 'zeros' | undefined): Tensor {
    checkOptions(options);
    const device = options.device ?? Device.cpu();
    if (!(device instanceof Device)) throw typeError(`Tensor: 'device' must be a Device, got ${describe(device)}`);
    const handle = new native.Tensor(shape as number[], options.dtype ?? 'float32', device.name, init);
    const t = new Tensor(handle, device);
    options.arena?.track(t);
    return t;
  }

  /** Number of elements. */
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  /**
   * A copy of the contents, once `stream` (default: the device's default stream) has finished
   * the work enqueued before this call.
   */
  read(stream?: Stream): Promise<Float32Array | Int32Array> {
    // Anything else (a device name, {}) has no handle and would silently mean the default.
    if (stream !== undefined && !(stream instanceof Stream))
      throw typeError(`read: 'stream' must be a Stream or undefined, got ${describe(stream)}`);
    return this.handle.read(stream?.handle);
  }

  /**
   * Replaces the contents with `data` (a Float32Array for float32, an Int32Array for int32, of
   * the tensor's size) in `stream`'s order (default: the device's default stream): work
   * enqueued before sees the old contents, work after the new ones. The host does not wait for
   * the stream, and `data` is copied before this returns (the caller may reuse it at once).
   * Not while `stream` is being captured into a graph.
   */
  write(data: Float32Array | Int32Array, stream?: Stream): void {
    if (stream !== undefined && !(stream instanceof Stream))
      throw typeError(`write: 'stream' must be a Stream or undefined, got ${describe(stream)}`);
    this.handle.write(data, stream?.handle);
  }

  /** Like read(), for float32 tensors. */
  async readFloat32(stream?: Stream): Promise<Float32Array> {
    if (this.dtype !== 'float32') throw typeError(`readFloat32: the tensor is ${this.dtype}`);
    return (await this.read(stream)) as Float32Array;
  }

  /** The same memory seen with another shape of the same size. */
  reshape(shape: readonly number[], arena?: Arena): Tensor {
    if (arena !== undefined && !(arena instanceof Arena))
      throw typeError(`reshape: 'arena' must be an Arena or undefined, got ${describe(arena)}`);
    const t = new Tensor(this.handle.reshape(shape as number[]), this.device);
    arena?.track(t);
    return t;
  }

  /**
   * The `shape`-sized run of this tensor's memory from element `offset` on (a multiple of 64,
   * so that a view is aligned like an allocation); it keeps the whole tensor's memory alive.
   * Ops refuse a view and a tensor it overlaps as an input and an output of one call.
   */
  view(offset: number, shape: readonly number[], arena?: Arena): Tensor {
    if (arena !== undefined && !(arena instanceof Arena))
      throw typeError(`view: 'arena' must be an Arena or undefined, got ${describe(arena)}`);
    const t = new Tensor(this.handle.view(offset, shape as number[]), this.device);
    arena?.track(t);
    return t;
  }

  dispose(): void {
    this.handle.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device.name})`;
  }
}

const optionKeys = new Set(['device', 'dtype', 'arena']);

function checkOptions(options: TensorOptions): void {
  if (typeof options !== 'object' || options === null) throw typeError(`Tensor: 'options' must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options))
    if (!optionKeys.has(key)) throw typeError(`Tensor: unknown option '${key}' (expected one of ${[...optionKeys].join(', ')})`);
  if (options.dtype !== undefined && options.dtype !== 'float32' && options.dtype !== 'int32')
    throw typeError(
      `Tensor: 'dtype' must be 'float32' or 'int32', got ${typeof options.dtype === 'string' ? `'${options.dtype}'` : describe(options.dtype)}`,
    );
  if (options.arena !== undefined && !(options.arena instanceof Arena))
    throw typeError(`Tensor: 'arena' must be an Arena, got ${describe(options.arena)}`);
}

/** Tensors that live together and are disposed of together (e.g. one training step's). */
export class Arena {
  private tensors: Tensor[] = [];

  track<T extends Tensor>(t: T): T {
    this.tensors.push(t);
    return t;
  }

  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors = [];
  }
}
