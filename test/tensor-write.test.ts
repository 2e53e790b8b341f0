// Tensor.write (a stream-ordered upload: Backend::uploadAsync) and Tensor.view (part of a
// tensor's memory), on the CPU backend; the CUDA side of uploadAsync is tested on the fake
// CUDA runtime (test/cuda/host_emulation/fake_test.cpp) and on a GPU by test/gpu/cuda.test.ts.
// Expected values are the written data themselves (known element by element).
import { Device, Graph, Stream, Tensor, native } from '../ts';
import { errorOf, expectThrows } from './helpers/errors';

const cpu = Device.cpu();
const ops = native.ops;

/** Enqueues a product of 768 x 768 matrices on `s`: work that keeps the stream busy for a while. */
function busy(s: Stream): Tensor[] {
  const n = 768;
  const a = Tensor.fromArray(new Float32Array(n * n).fill(0.5), [n, n], { device: cpu });
  const c = Tensor.zeros([n, n], { device: cpu });
  ops.gemm(s.handle, a.handle, a.handle, c.handle, false, false, 1, 0);
  return [a, c];
}

const iota = (n: number, from = 0) => Float32Array.from({ length: n }, (_, i) => from + i);

describe('Tensor.write', () => {
  test('replaces the contents, float32 and int32', async () => {
    const s = new Stream(cpu);
    const x = Tensor.zeros([2, 3], { device: cpu });
    x.write(Float32Array.of(1.5, -2, 3, 4e-30, 5, -6), s);
    expect(Array.from(await x.read(s))).toEqual([1.5, -2, 3, Math.fround(4e-30), 5, -6]);
    const labels = Tensor.zeros([4], { device: cpu, dtype: 'int32' });
    labels.write(Int32Array.of(7, -1, 2147483647, 0)); // the default stream
    expect(Array.from(await labels.read())).toEqual([7, -1, 2147483647, 0]);
  });

  test('is ordered with the stream: a read before it sees the old contents, one after the new', async () => {
    const s = new Stream(cpu);
    const keep = busy(s);
    const x = Tensor.fromArray(Float32Array.of(1, 2, 3), [3], { device: cpu });
    const before = x.read(s);
    x.write(Float32Array.of(4, 5, 6), s);
    const after = x.read(s);
    expect(Array.from(await before)).toEqual([1, 2, 3]);
    expect(Array.from(await after)).toEqual([4, 5, 6]);
    keep.forEach((t) => t.dispose());
  });

  test('copies the data before it returns: changing it afterwards changes nothing', async () => {
    const s = new Stream(cpu);
    const keep = busy(s); // the queued copy runs well after the host has overwritten `data`
    const x = Tensor.zeros([1000], { device: cpu });
    const data = iota(1000);
    x.write(data, s);
    data.fill(-7);
    expect(Array.from(await x.read(s))).toEqual(Array.from(iota(1000)));
    keep.forEach((t) => t.dispose());
  });

  test('a subarray writes its own elements', async () => {
    const x = Tensor.zeros([3], { device: cpu });
    x.write(iota(10).subarray(4, 7));
    expect(Array.from(await x.read())).toEqual([4, 5, 6]);
  });

  test('bad arguments are errors that name them', () => {
    const x = Tensor.zeros([5], { device: cpu });
    expectThrows(() => x.write(new Int32Array(5)), 'TypeError', /write: 'data' must be a Float32Array for float32/);
    expectThrows(() => x.write(new Float32Array(4)), 'RangeError', /write: 'data' has 4 elements but shape \[5\] needs 5/);
    expectThrows(() => x.write([1, 2, 3, 4, 5] as never), 'TypeError', /write: 'data' must be a Float32Array, got/);
    expectThrows(() => x.write(new Float32Array(new SharedArrayBuffer(20))), 'TypeError', /'data' must be backed by an ArrayBuffer/);
    expectThrows(() => x.write(new Float32Array(5), {} as never), 'TypeError', /write: 'stream' must be a Stream or undefined/);
    x.dispose();
    expectThrows(() => x.write(new Float32Array(5)), 'TypeError', /write: the tensor was disposed/);
  });

  test('is refused while the stream is being captured', () => {
    const s = new Stream(cpu);
    const x = Tensor.zeros([5], { device: cpu });
    let error: Error | undefined;
    const graph = Graph.capture(s, () => {
      error = errorOf(() => x.write(new Float32Array(5), s));
    });
    graph.dispose();
    expect(error?.message).toMatch(/write: the stream is being captured into a graph/);
  });

  test('the stream-order checker sees it as a write on its stream', async () => {
    const was = native.checkStreams(true);
    try {
      const a = new Stream(cpu);
      const b = new Stream(cpu);
      const x = Tensor.zeros([4], { device: cpu });
      const y = Tensor.zeros([4], { device: cpu });
      x.write(Float32Array.of(1, 2, 3, 4), a);
      expect(() => ops.copy(b.handle, x.handle, y.handle)).toThrow(/^stream order: copy .* reads 'src' .* last written by write/);
      await a.synchronize();
      ops.copy(b.handle, x.handle, y.handle); // the host now knows the write is done
      expect(Array.from(await y.read(b))).toEqual([1, 2, 3, 4]);
    } finally {
      native.checkStreams(was);
    }
  });
});

describe('Tensor.view', () => {
  test('sees part of the memory: reads, writes and ops through it', async () => {
    const base = Tensor.fromArray(iota(200), [200], { device: cpu });
    const v = base.view(64, [2, 3]);
    expect(v.shape).toEqual([2, 3]);
    expect(Array.from(await v.read())).toEqual([64, 65, 66, 67, 68, 69]);
    v.write(Float32Array.of(-1, -2, -3, -4, -5, -6));
    const all = await base.read();
    expect(Array.from(all.subarray(62, 72))).toEqual([62, 63, -1, -2, -3, -4, -5, -6, 70, 71]);
    // An op between two views of one tensor that do not overlap.
    ops.copy(Stream.default(cpu).handle, base.view(128, [64]).handle, base.view(0, [64]).handle);
    expect(Array.from((await base.read()).subarray(0, 64))).toEqual(Array.from(iota(64, 128)));
  });

  test('keeps the memory alive after its tensor is disposed', async () => {
    const base = Tensor.fromArray(iota(128), [128], { device: cpu });
    const v = base.view(64, [64]);
    base.dispose();
    expect(Array.from(await v.read())).toEqual(Array.from(iota(64, 64)));
  });

  test('overlapping memory is one tensor for ops and sharesStorage', () => {
    const base = Tensor.zeros([256], { device: cpu });
    const a = base.view(0, [128]),
      b = base.view(64, [128]),
      c = base.view(128, [128]);
    expectThrows(
      () => ops.copy(Stream.default(cpu).handle, a.handle, b.handle),
      'RangeError',
      /copy: 'src' and 'dst' must not share memory/,
    );
    expect(a.handle.sharesStorage(b.handle)).toBe(true);
    expect(b.handle.sharesStorage(base.handle)).toBe(true);
    expect(a.handle.sharesStorage(c.handle)).toBe(false);
  });

  test('the stream-order checker treats a view as its whole tensor', async () => {
    const was = native.checkStreams(true);
    try {
      const a = new Stream(cpu);
      const b = new Stream(cpu);
      const base = Tensor.zeros([128], { device: cpu });
      const y = Tensor.zeros([64], { device: cpu });
      base.view(64, [64]).write(iota(64), a);
      expect(() => ops.copy(b.handle, base.view(0, [64]).handle, y.handle)).toThrow(
        /^stream order: copy .* reads 'src' .* last written by write/,
      );
      await a.synchronize();
    } finally {
      native.checkStreams(was);
    }
  });

  test('bad offsets and shapes are errors that name them', () => {
    const base = Tensor.zeros([200], { device: cpu });
    expectThrows(() => base.view(10, [4]), 'RangeError', /view: 'offset' must be a multiple of 64 elements, at least 0, got 10/);
    expectThrows(() => base.view(-64, [4]), 'RangeError', /view: 'offset' must be a multiple of 64/);
    expectThrows(() => base.view(192, [9]), 'RangeError', /view: 'offset' 192 and 'shape' \[9\] reach past the tensor's 200 elements/);
    expectThrows(() => base.view(0.5, [1]), 'RangeError', /view: 'offset' must be an integer/);
    expectThrows(() => base.view(0, [4], {} as never), 'TypeError', /view: 'arena' must be an Arena or undefined/);
    base.dispose();
    expectThrows(() => base.view(0, [4]), 'TypeError', /view: the tensor was disposed/);
  });
});
