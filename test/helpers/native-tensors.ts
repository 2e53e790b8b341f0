// CPU tensors for the native op tests: each one made through these helpers is disposed of after
// the test that made it (call cpuTensors() at a test file's top level, where afterEach applies).
import { native, NativeStream, NativeTensor } from '../../ts/native';

export function cpuTensors(stream: NativeStream) {
  let live: NativeTensor[] = [];
  afterEach(() => {
    for (const t of live) if (!t.disposed) t.dispose();
    live = [];
  });
  const track = (t: NativeTensor): NativeTensor => {
    live.push(t);
    return t;
  };
  /** A float32 CPU tensor holding `data`. */
  const upload = (data: ArrayLike<number>, shape: number[]): NativeTensor =>
    track(new native.Tensor(shape, 'float32', 'cpu', Float32Array.from(data)));
  const uploadInt = (data: ArrayLike<number>, shape: number[]): NativeTensor =>
    track(new native.Tensor(shape, 'int32', 'cpu', Int32Array.from(data)));
  /** A float32 tensor with every element `value` (NaN: an output that must be overwritten). */
  const filled = (shape: number[], value = NaN): NativeTensor =>
    upload(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value), shape);
  const read = async (t: NativeTensor, s: NativeStream = stream): Promise<Float32Array> => (await t.read(s)) as Float32Array;
  const readInt = async (t: NativeTensor, s: NativeStream = stream): Promise<Int32Array> => (await t.read(s)) as Int32Array;
  return { track, upload, uploadInt, filled, read, readInt };
}
