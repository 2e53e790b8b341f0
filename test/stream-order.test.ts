// The stream-order checker (native/core/stream_order.h): a missing cross-stream wait is an
// error when the work is enqueued, whatever the threads do, and the correct orderings (event
// waits, host synchronisation, one stream, reads on several streams) pass.
import {
  Arena,
  Dataset,
  DecoupledTraining,
  Device,
  Event,
  Graph,
  Linear,
  MeanSquaredError,
  Random,
  ReLU,
  SGD,
  Sequential,
  Stream,
  Tensor,
  Trainer,
  decouple,
  mlp,
  native,
} from '../ts';
import type { DecoupleOptions } from '../ts';
import { checkStreamOrder } from './helpers/stream-order';

const cpu = Device.cpu();
const ops = native.ops;

checkStreamOrder();

function filled(n: number, value: number): Tensor {
  return Tensor.fromArray(new Float32Array(n).fill(value), [n], { device: cpu });
}

/** "stream #N (cpu)": how the checker names a stream in its messages. */
const named = String.raw`stream #\d+ \(cpu\)`;

describe('a read on one stream of what another wrote', () => {
  test('without a wait throws, naming the op, the tensor, the writer and both streams', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    const y = filled(4, 7);
    ops.fill(a.handle, x.handle, 1);
    let message = '';
    try {
      ops.copy(b.handle, x.handle, y.handle);
    } catch (e) {
      message = (e as Error).message;
      expect((e as { code?: string }).code).toBe('ERR_SYNTHGRAD_NATIVE');
    }
    expect(message).toMatch(
      new RegExp(
        String.raw`^stream order: copy on (${named}) reads 'src' \(float32 \[4\]\), last written by fill \('y'\) on (${named}), ` +
          String.raw`and nothing orders that write before this read: record an Event on \2 after the write and make \1 wait for it$`,
      ),
    );
    const [, reader, writer] = /copy on (.*?) reads.*on (stream #\d+ \(cpu\)), and/.exec(message)!;
    expect(reader).not.toBe(writer);
    // Nothing was enqueued: y still holds its own values, and both streams keep working.
    await a.synchronize();
    expect(Array.from(await y.readFloat32(a))).toEqual([7, 7, 7, 7]);
    await b.synchronize();
  });

  test('after record and wait passes, and reads what was written', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    const y = filled(4, 7);
    ops.fill(a.handle, x.handle, 1);
    b.wait(new Event(cpu).record(a));
    ops.copy(b.handle, x.handle, y.handle);
    expect(Array.from(await y.readFloat32(b))).toEqual([1, 1, 1, 1]);
  });

  test('on the same stream, or of memory nobody wrote on a stream, needs no wait', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 2);
    const w = filled(4, 2);
    const y = Tensor.zeros([4], { device: cpu });
    const z = Tensor.zeros([4], { device: cpu });
    ops.copy(b.handle, w.handle, z.handle); // w was only written by the host (at creation)
    ops.fill(a.handle, x.handle, 3);
    ops.axpby(a.handle, 1, x.handle, 1, x.handle.reshape([2, 2]).reshape([4])); // in place, a view
    ops.copy(a.handle, x.handle, y.handle);
    expect(Array.from(await y.readFloat32(a))).toEqual([6, 6, 6, 6]);
    expect(Array.from(await z.readFloat32(b))).toEqual([2, 2, 2, 2]);
  });

  test('a wait covers only the latest record made before it', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const e = new Event(cpu);
    const x = filled(4, 0);
    const y = Tensor.zeros([4], { device: cpu });
    ops.fill(a.handle, x.handle, 1);
    e.record(a);
    b.wait(e);
    ops.fill(a.handle, x.handle, 2); // after the record: b's wait does not cover it
    expect(() => ops.copy(b.handle, x.handle, y.handle)).toThrow(/^stream order: copy .* reads 'src' .* last written by fill/);
    e.record(a);
    b.wait(e);
    ops.copy(b.handle, x.handle, y.handle);
    expect(Array.from(await y.readFloat32(b))).toEqual([2, 2, 2, 2]);
  });

  test('ordering is transitive through a third stream', async () => {
    const [a, b, c] = [new Stream(cpu), new Stream(cpu), new Stream(cpu)];
    const x = filled(4, 0);
    const y = Tensor.zeros([4], { device: cpu });
    ops.fill(a.handle, x.handle, 5);
    b.wait(new Event(cpu).record(a));
    c.wait(new Event(cpu).record(b)); // c waits for b, which waited for a's fill
    ops.copy(c.handle, x.handle, y.handle);
    expect(Array.from(await y.readFloat32(c))).toEqual([5, 5, 5, 5]);
  });
});

describe('a write', () => {
  test('of memory another stream reads, without a wait, throws (write after read)', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 1);
    const y = Tensor.zeros([4], { device: cpu });
    ops.copy(a.handle, x.handle, y.handle);
    expect(() => ops.fill(b.handle, x.handle, 9)).toThrow(
      new RegExp(
        String.raw`^stream order: fill on (${named}) writes 'y' \(float32 \[4\]\) while copy \('src'\) on (${named}) may still be reading it ` +
          String.raw`\(nothing orders that read before this write\): record an Event on \2 after the read and make \1 wait for it$`,
      ),
    );
    b.wait(new Event(cpu).record(a));
    ops.fill(b.handle, x.handle, 9);
    expect(Array.from(await y.readFloat32(a))).toEqual([1, 1, 1, 1]);
    expect(Array.from(await x.readFloat32(b))).toEqual([9, 9, 9, 9]);
  });

  test('of memory another stream wrote, without a wait, throws (write after write)', () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 1);
    ops.fill(a.handle, x.handle, 2);
    expect(() => ops.fill(b.handle, x.handle, 3)).toThrow(
      /^stream order: fill on stream #\d+ \(cpu\) writes 'y' .* last written by fill \('y'\) .* before this one/,
    );
  });

  test('reads on several streams need no order among themselves; a write after them waits for each', () => {
    const [a, b, c] = [new Stream(cpu), new Stream(cpu), new Stream(cpu)];
    const x = filled(4, 1);
    const ya = Tensor.zeros([4], { device: cpu });
    const yb = Tensor.zeros([4], { device: cpu });
    ops.copy(a.handle, x.handle, ya.handle);
    ops.copy(b.handle, x.handle, yb.handle);
    c.wait(new Event(cpu).record(a));
    expect(() => ops.fill(c.handle, x.handle, 0)).toThrow(
      /writes 'y' .* while copy \('src'\) on stream #\d+ \(cpu\) may still be reading it/,
    );
    c.wait(new Event(cpu).record(b));
    ops.fill(c.handle, x.handle, 0);
  });

  test('of a group step names the list element', () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const p = filled(3, 1);
    const g = filled(3, 0.5);
    const hyper = filled(1, 0.1);
    ops.fill(a.handle, g.handle, 1);
    expect(() => ops.sgdStepGroup(b.handle, [p.handle], [g.handle], null, hyper.handle, 0, 0)).toThrow(
      /^stream order: sgdStepGroup on stream #\d+ \(cpu\) writes 'grads\[0\]' \(float32 \[3\]\), last written by fill/,
    );
  });
});

describe('memory', () => {
  test('freed while another stream still uses it comes back as a new tensor with no history', async () => {
    // The allocator hands a block out again only once the work that used it has run (CPU: the
    // queued ops hold it), so the checker can treat every new tensor as unwritten.
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const n = 192;
    const m = Tensor.fromArray(new Float32Array(n * n).fill(0.01), [n, n], { device: cpu });
    let c = Tensor.zeros([n, n], { device: cpu });
    for (let i = 0; i < 20; i++) ops.gemm(a.handle, m.handle, m.handle, c.handle, false, false, 1, 1);
    c.dispose();
    for (let k = 0; k < 4; k++) {
      c = Tensor.empty([n, n], { device: cpu });
      ops.fill(b.handle, c.handle, k); // no wait for a: nothing orders it, and nothing needs to
      const got = await c.readFloat32(b);
      expect(got.every((v) => v === k)).toBe(true);
      c.dispose();
    }
    await a.synchronize();
  });
});

describe('the host', () => {
  test('reading on a stream that did not wait for the writer throws; the Promise is never made', () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    ops.fill(a.handle, x.handle, 1);
    expect(() => x.read(b)).toThrow(/^stream order: read on stream #\d+ \(cpu\) reads 'this' \(float32 \[4\]\), last written by fill/);
    // The default stream is named as such.
    expect(() => x.read()).toThrow(/^stream order: read on the default stream \(cpu\) reads 'this'/);
  });

  test('orders later work after what a resolved synchronize() covered, and only that', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    ops.fill(a.handle, x.handle, 1);
    const done = a.synchronize();
    ops.fill(a.handle, x.handle, 2); // after the synchronize() call: not covered by it
    await done;
    expect(() => x.read(b)).toThrow(/last written by fill/);
    await a.synchronize();
    expect(Array.from(await x.readFloat32(b))).toEqual([2, 2, 2, 2]);
  });

  test("learns from a synchronize() that rejects: the failed stream's work has run all the same", async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const probs = filled(6, 0).reshape([2, 3]);
    const loss = filled(1, 0);
    const logits = Tensor.fromArray(new Float32Array(6).fill(0.5), [2, 3], { device: cpu });
    const labels = Tensor.fromArray(Int32Array.from([0, 7]), [2], { device: cpu });
    ops.softmaxCrossEntropyForward(a.handle, logits.handle, labels.handle, probs.handle, loss.handle);
    await expect(a.synchronize()).rejects.toThrow(/label/);
    expect((await loss.readFloat32(b)).length).toBe(1);
  });

  test('learns from event.synchronize() and from a read', async () => {
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    const y = filled(4, 0);
    ops.fill(a.handle, x.handle, 1);
    await new Event(cpu).record(a).synchronize();
    expect(Array.from(await x.readFloat32(b))).toEqual([1, 1, 1, 1]);
    ops.fill(a.handle, y.handle, 3);
    await x.read(a); // a read resolves once its stream got there: y's fill is done too
    expect(Array.from(await y.readFloat32(b))).toEqual([3, 3, 3, 3]);
  });
});

describe('graphs', () => {
  test('a capture whose joined stream reads without waiting throws while capturing', () => {
    const origin = new Stream(cpu);
    const side = new Stream(cpu);
    const x = filled(4, 0);
    const y = Tensor.zeros([4], { device: cpu });
    expect(() =>
      Graph.capture(origin, () => {
        const fork = new Event(cpu).record(origin);
        side.wait(fork); // side joins the capture
        ops.fill(origin.handle, x.handle, 1); // after the fork: side is not ordered after it
        ops.copy(side.handle, x.handle, y.handle);
        origin.wait(new Event(cpu).record(side));
      }),
    ).toThrow(/^stream order \(while capturing a graph\): copy on stream #\d+ \(cpu\) reads 'src' .* last written by fill/);
  });

  test('a launch counts as work on its stream: readers elsewhere wait for it', async () => {
    const origin = new Stream(cpu);
    const other = new Stream(cpu);
    const acc = filled(4, 0);
    const src = Tensor.zeros([4], { device: cpu });
    // acc += src: axpby's 'y' is acc (written), its 'x' is src (read).
    const graph = Graph.capture(origin, () => ops.axpby(origin.handle, 1, src.handle, 1, acc.handle));
    ops.fill(other.handle, src.handle, 2);
    // The graph reads src, which `other` wrote: the launching stream must wait for it.
    expect(() => graph.launch(origin)).toThrow(
      /^stream order: launch \(a graph's work\) on stream #\d+ \(cpu\) reads 'x of axpby' \(float32 \[4\]\), last written by fill/,
    );
    origin.wait(new Event(cpu).record(other));
    graph.launch(origin);
    expect(() => acc.read(other)).toThrow(/reads 'this' .* last written by launch \(a graph's work\) \('y of axpby'\)/);
    other.wait(new Event(cpu).record(origin));
    expect(Array.from(await acc.readFloat32(other))).toEqual([2, 2, 2, 2]);
    graph.dispose();
  });
});

describe('switching it', () => {
  test('off: the same unordered program runs without a word; on again: checked from then on', async () => {
    expect(native.checkStreams()).toBe(true);
    const a = new Stream(cpu);
    const b = new Stream(cpu);
    const x = filled(4, 0);
    const y = filled(4, 0);
    expect(native.checkStreams(false)).toBe(false);
    try {
      ops.fill(a.handle, x.handle, 1);
      ops.copy(b.handle, x.handle, y.handle); // a real race, unseen with the checker off
      await a.synchronize();
      await b.synchronize();
    } finally {
      expect(native.checkStreams(true)).toBe(true);
    }
    // Work enqueued before the switch is forgotten (treated as complete).
    ops.copy(b.handle, x.handle, y.handle);
    expect(() => ops.fill(a.handle, x.handle, 2)).toThrow(/writes 'y' .* while copy \('src'\) .* may still be reading it/);
    expect(() => native.checkStreams('yes' as never)).toThrow(/^checkStreams: 'enabled' must be a boolean, got 'yes'$/);
    expect(native.checkStreams()).toBe(true);
  });
});

describe('decoupled training', () => {
  /** The stream that last wrote `t`, as the checker names it when a fresh stream reads it unordered. */
  function writerOf(t: Tensor): string {
    try {
      void t.read(new Stream(cpu));
    } catch (e) {
      const m = /last written by \w+ \('[^']*'\) on (.*?), and/.exec((e as Error).message);
      if (m) return m[1];
      throw e;
    }
    return 'nobody';
  }

  /** A decoupled 3-module network, its strategy and one batch, on a stream of its own. */
  function setup(options: DecoupleOptions) {
    const model = new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
    const net = decouple(model, { ...options, synthesizer: { hidden: [] } });
    net.initialize(cpu, new Random(1));
    const strategy = net.trainingStrategy({
      loss: new MeanSquaredError(),
      optimizer: () => new SGD({ lr: 0.1, momentum: 0.5 }),
    }) as DecoupledTraining;
    const stream = new Stream(cpu);
    const arena = new Arena();
    const x = Tensor.fromArray(new Float32Array(12).fill(0.5), [4, 3], { device: cpu, arena });
    const y = Tensor.fromArray(new Float32Array(8).fill(0.25), [4, 2], { device: cpu, arena });
    const step = () => strategy.step(x, y, { device: cpu, stream, training: true, arena });
    /** The stream's name in the checker's messages. */
    const streamName = () => {
      const mark = Tensor.zeros([1], { device: cpu, arena });
      ops.fill(stream.handle, mark.handle, 1);
      return writerOf(mark);
    };
    const weights = () => net.modules.map((m) => (m.layers[0] as Linear).weight!.value);
    const dispose = () => {
      arena.dispose();
      strategy.dispose();
      net.dispose();
    };
    return { net, strategy, stream, step, streamName, weights, dispose };
  }

  test("with per-module streams updates each module on a stream of its own, none of them the trainer's", async () => {
    const run = setup({ streams: 'per-module' });
    const loss = run.step();
    // Not awaited: each weight's last writer is its module's optimizer step, on its module's stream.
    const writers = run.weights().map(writerOf);
    const trainer = run.streamName();
    expect(trainer).toMatch(/^stream #\d+ \(cpu\)$/);
    writers.forEach((w) => expect(w).toMatch(/^stream #\d+ \(cpu\)$/));
    expect(new Set([trainer, ...writers]).size).toBe(4);
    // The step ends with the trainer's stream waiting for every module: its loss reads in order.
    expect(Number.isFinite((await loss.readFloat32(run.stream))[0])).toBe(true);
    run.dispose();
  });

  test("with one stream updates every module on the trainer's stream", async () => {
    const run = setup({ streams: 'single' });
    const loss = run.step();
    const trainer = run.streamName();
    expect(run.weights().map(writerOf)).toEqual([trainer, trainer, trainer]);
    await loss.read(run.stream);
    run.dispose();
  });

  test("after restoreState, the module streams wait for state written on the trainer's stream", async () => {
    const run = setup({ streams: 'per-module' });
    await run.step().read(run.stream);
    const { tensors, host } = run.strategy.checkpointState();
    const state = [...run.net.parameters().map((p) => p.value), ...tensors.map((t) => t.tensor)];
    const saved = await Promise.all(state.map((t) => t.readFloat32(run.stream)));
    await run.step().read(run.stream);
    // Written back on the trainer's stream and not awaited, as a checkpoint restore may do.
    const arena = new Arena();
    state.forEach((t, i) =>
      ops.copy(run.stream.handle, Tensor.fromArray(new Float32Array(saved[i]), t.shape, { device: cpu, arena }).handle, t.handle),
    );
    run.strategy.restoreState(host);
    const loss = run.step();
    expect(Number.isFinite((await loss.readFloat32(run.stream))[0])).toBe(true);
    arena.dispose();
    run.dispose();
  });

  test('a step after graph launches waits for what they wrote, and each launch counts as a step', async () => {
    // 100 rows in batches of 32: the first step captured, two launches, then a 4-row tail uncaptured.
    const rng = new Random(5);
    const labels = new Int32Array(100).map(() => Math.floor(rng.next() * 3));
    const data = new Dataset('random', rng.uniformArray(100 * 6, 0, 1), labels, 6, 3);
    const trainer = new Trainer(decouple(mlp(6, [8, 8], 3), { streams: 'per-module' }), {
      device: cpu,
      seed: 1,
      optimizer: () => new SGD({ lr: 0.1 }),
    });
    const launch = jest.spyOn(Graph.prototype, 'launch');
    try {
      await trainer.fit(data, { epochs: 1, batchSize: 32, graph: true });
      expect(launch).toHaveBeenCalledTimes(2);
      expect((trainer.strategy as DecoupledTraining).steps).toBe(4);
    } finally {
      launch.mockRestore();
      trainer.dispose();
    }
  });
});
