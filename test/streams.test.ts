// Streams and events: order within a stream, waits across streams, host waits that never
// block the event loop, and results that do not depend on how work is spread over streams.
import { Device, Event, Stream, Tensor, native } from '../ts';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
const ops = native.ops;

function filled(n: number, value: number): Tensor {
  return Tensor.fromArray(new Float32Array(n).fill(value), [n], { device: cpu });
}

describe('a stream', () => {
  test('runs its work in the order it was enqueued', async () => {
    // y <- 2y + x or y <- y/2 - x: any reordering changes the result.
    const s = new Stream(cpu);
    const x = filled(1000, 1);
    const y = filled(1000, 3);
    let expected = 3;
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 0) {
        ops.axpby(s.handle, 1, x.handle, 2, y.handle);
        expected = 2 * expected + 1;
      } else {
        ops.axpby(s.handle, -1, x.handle, 0.5, y.handle);
        expected = 0.5 * expected - 1;
      }
      expected = Math.fround(expected);
    }
    const out = await y.readFloat32(s);
    expect(out[0]).toBe(expected);
    expect(out[999]).toBe(expected);
  });

  test('synchronize() resolves after the work and the event loop keeps running meanwhile', async () => {
    const s = new Stream(cpu);
    const n = 256;
    const a = Tensor.fromArray(new Float32Array(n * n).fill(0.001), [n, n], { device: cpu });
    const c = Tensor.zeros([n, n], { device: cpu });
    // Enough work for at least 50 ms on this machine, whatever its speed: doubled until it takes that long.
    let count = 0;
    const enqueue = (k: number) => {
      for (let i = 0; i < k; i++) ops.gemm(s.handle, a.handle, a.handle, c.handle, false, false, 1, 1);
      count += k;
    };
    for (let k = 1; ; k *= 2) {
      const t0 = Date.now();
      enqueue(k);
      await s.synchronize();
      if (Date.now() - t0 >= 50) {
        enqueue(k);
        break;
      }
    }
    // A self-renewing setImmediate runs once per turn of the event loop: it counts the turns
    // taken while the host waits, and a blocking wait would leave it at 0.
    let turns = 0;
    let waiting = true;
    const spin = () => {
      if (waiting) {
        turns++;
        setImmediate(spin);
      }
    };
    setImmediate(spin);
    await s.synchronize();
    waiting = false;
    const out = await c.readFloat32(s);
    expect(out[0]).toBeCloseTo(count * n * 0.001 * 0.001, 3);
    expect(turns).toBeGreaterThan(2);
  });

  test('an op failure surfaces as a rejected Promise and the stream keeps working', async () => {
    const s = new Stream(cpu);
    const logits = Tensor.fromArray(new Float32Array(6).fill(0.5), [2, 3], { device: cpu });
    const labels = Tensor.fromArray(Int32Array.from([1, 7]), [2], { device: cpu });
    const probs = Tensor.empty([2, 3], { device: cpu });
    const loss = Tensor.empty([1], { device: cpu });
    ops.softmaxCrossEntropyForward(s.handle, logits.handle, labels.handle, probs.handle, loss.handle);
    await expect(s.synchronize()).rejects.toThrow(/label is outside \[0, 3\)/);
    const ok = Tensor.fromArray(Int32Array.from([1, 2]), [2], { device: cpu });
    ops.softmaxCrossEntropyForward(s.handle, logits.handle, ok.handle, probs.handle, loss.handle);
    const l = await loss.readFloat32(s);
    expect(l[0]).toBeCloseTo(Math.log(3), 5);
  });
});

describe('events', () => {
  test('a stream waits for an event recorded on another stream', async () => {
    const producer = new Stream(cpu);
    const consumer = new Stream(cpu);
    const n = 384;
    const a = Tensor.fromArray(new Float32Array(n * n).fill(0.01), [n, n], { device: cpu });
    const h = Tensor.zeros([n, n], { device: cpu });
    // Slow work on the producer; the consumer copies its result only after the event.
    for (let i = 0; i < 40; i++) ops.gemm(producer.handle, a.handle, a.handle, h.handle, false, false, 1, 1);
    const ready = new Event(cpu).record(producer);
    const copy = Tensor.empty([n, n], { device: cpu });
    consumer.wait(ready);
    ops.copy(consumer.handle, h.handle, copy.handle);
    const out = await copy.readFloat32(consumer);
    expect(out[0]).toBeCloseTo(40 * n * 0.01 * 0.01, 3);
    expect(out[n * n - 1]).toBe(out[0]);
  });

  test('event.synchronize() resolves once the recorded work is done; unrecorded resolves at once', async () => {
    const s = new Stream(cpu);
    const e = new Event(cpu);
    await e.synchronize();
    const y = filled(10, 1);
    ops.fill(s.handle, y.handle, 42);
    e.record(s);
    await e.synchronize();
    // After the event, the fill has run: reading on another stream sees it.
    expect((await y.readFloat32(new Stream(cpu)))[3]).toBe(42);
  });

  test('a wait only covers the latest record made before it', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const e = new Event(cpu);
    const x = filled(4, 0);
    ops.fill(a.handle, x.handle, 1);
    e.record(a);
    b.wait(e);
    const seen = Tensor.empty([4], { device: cpu });
    ops.copy(b.handle, x.handle, seen.handle);
    expect((await seen.readFloat32(b))[0]).toBe(1);
  });
});

describe('spreading work over streams', () => {
  // A small two-stage computation: stage 1 on stream A, stage 2 on stream B after an event,
  // versus everything on one stream. The results must be bit-identical.
  async function run(streams: Stream[]): Promise<Float32Array> {
    const [s1, s2] = [streams[0], streams[streams.length - 1]];
    const rows = 64;
    const k = 96;
    const n = 80;
    const x = Tensor.fromArray(
      Float32Array.from({ length: rows * k }, (_, i) => Math.sin(i)),
      [rows, k],
      { device: cpu },
    );
    const w1 = Tensor.fromArray(
      Float32Array.from({ length: n * k }, (_, i) => Math.cos(i) / 10),
      [n, k],
      { device: cpu },
    );
    const w2 = Tensor.fromArray(
      Float32Array.from({ length: n * n }, (_, i) => Math.sin(3 * i) / 10),
      [n, n],
      { device: cpu },
    );
    const h = Tensor.empty([rows, n], { device: cpu });
    const out = Tensor.empty([rows, n], { device: cpu });
    ops.gemm(s1.handle, x.handle, w1.handle, h.handle, false, true, 1, 0);
    ops.activationForward(s1.handle, 'tanh', h.handle, h.handle);
    if (s1 !== s2) s2.wait(new Event(cpu).record(s1));
    ops.gemm(s2.handle, h.handle, w2.handle, out.handle, false, true, 1, 0);
    ops.activationForward(s2.handle, 'sigmoid', out.handle, out.handle);
    return out.readFloat32(s2);
  }

  test('gives the same bits on one stream as on two', async () => {
    const one = await run([new Stream(cpu)]);
    const two = await run([new Stream(cpu), new Stream(cpu)]);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    expect(one.some((v) => v !== 0.5)).toBe(true);
  });
});
