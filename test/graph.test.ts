// Graph capture and the fused parameter-group optimizer ops it relies on: a group step equals
// one-element group steps tensor by tensor, bit for bit, a captured graph replays exactly what
// it recorded (across streams), misuse is a clear error, and fit({ graph: true }) trains
// exactly like fit().
import {
  Adam,
  Dataset,
  Device,
  Event,
  Graph,
  Parameter,
  Random,
  SGD,
  Stream,
  Tensor,
  Trainer,
  decouple,
  mlp,
  native,
  learningRateSchedules,
} from '../ts';
import type { DecoupleOptions } from '../ts';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { errorName } from './helpers/errors';
import { adamStep, sgdStep } from './helpers/optimizer-steps';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
const ops = native.ops;

function random(rng: Random, n: number, lo = -1, hi = 1): Float32Array {
  return rng.uniformArray(n, lo, hi);
}

async function floats(t: Tensor, stream?: Stream): Promise<Float32Array> {
  return t.readFloat32(stream);
}

function bits(a: Float32Array[]): Buffer {
  return Buffer.concat(a.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)));
}

describe('parameter-group optimizer ops', () => {
  const shapes = [[5, 7], [7], [1], [300, 40]];

  function group(rng: Random, positive = false) {
    return shapes.map((shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return Tensor.fromArray(positive ? random(rng, n, 0, 1) : random(rng, n), shape, { device: cpu });
    });
  }

  test('writeScalars writes the values in stream order', async () => {
    const s = new Stream(cpu);
    const y = Tensor.zeros([3], { device: cpu });
    ops.writeScalars(s.handle, y.handle, [1.5, -2, 3e-5]);
    expect(Array.from(await floats(y, s))).toEqual([1.5, -2, Math.fround(3e-5)]);
    expect(() => ops.writeScalars(s.handle, y.handle, [1, 2])).toThrow(/writeScalars: 'y' must have 2 elements/);
    expect(() => ops.writeScalars(s.handle, y.handle, [1, NaN, 2])).toThrow(/'values\[1\]' must be a finite number/);
  });

  test('adamStepGroup equals one-element groups tensor by tensor, bit for bit, and zeroes the gradients', async () => {
    const rng = new Random(5);
    const [p, g, m, v] = [group(rng), group(rng), group(rng), group(rng, true)];
    const s = new Stream(cpu);
    // Reference copies, updated one tensor at a time (each step zeroes its own gradient copy).
    const copy = (t: Tensor) => {
      const c = Tensor.empty(t.shape, { device: cpu });
      ops.copy(s.handle, t.handle, c.handle);
      return c;
    };
    const [p0, g0, m0, v0] = [p.map(copy), g.map(copy), m.map(copy), v.map(copy)];
    const start = await Promise.all(p.map((t) => floats(t, s)));
    const [lr, b1, b2, eps, wd, step] = [1e-3, 0.9, 0.999, 1e-8, 0.01, 7];
    for (let i = 0; i < p.length; i++)
      adamStep(s.handle, p0[i].handle, g0[i].handle, m0[i].handle, v0[i].handle, lr, b1, b2, eps, wd, step);
    const hyper = Tensor.zeros([2], { device: cpu });
    ops.writeScalars(s.handle, hyper.handle, native.adamScalars(lr, b1, b2, step));
    ops.adamStepGroup(
      s.handle,
      p.map((t) => t.handle),
      g.map((t) => t.handle),
      m.map((t) => t.handle),
      v.map((t) => t.handle),
      hyper.handle,
      b1,
      b2,
      eps,
      wd,
    );
    for (let i = 0; i < p.length; i++) {
      expect(bits([await floats(p[i], s)]).equals(bits([await floats(p0[i], s)]))).toBe(true);
      expect(bits([await floats(m[i], s)]).equals(bits([await floats(m0[i], s)]))).toBe(true);
      expect(bits([await floats(v[i], s)]).equals(bits([await floats(v0[i], s)]))).toBe(true);
      expect(bits([await floats(p[i], s)]).equals(bits([start[i]]))).toBe(false); // it moved
      expect((await floats(g[i], s)).every((x) => x === 0)).toBe(true);
    }
  });

  test('sgdStepGroup equals one-element groups tensor by tensor, with and without momentum', async () => {
    for (const momentum of [0, 0.9]) {
      const rng = new Random(6);
      const [p, g, vel] = [group(rng), group(rng), group(rng)];
      const s = new Stream(cpu);
      const copy = (t: Tensor) => {
        const c = Tensor.empty(t.shape, { device: cpu });
        ops.copy(s.handle, t.handle, c.handle);
        return c;
      };
      const [p0, g0, v0] = [p.map(copy), g.map(copy), vel.map(copy)];
      const start = await Promise.all(p.map((t) => floats(t, s)));
      for (let i = 0; i < p.length; i++) sgdStep(s.handle, p0[i].handle, g0[i].handle, v0[i].handle, 0.05, momentum, 1e-4);
      const hyper = Tensor.fromArray([0.05], [1], { device: cpu });
      ops.sgdStepGroup(
        s.handle,
        p.map((t) => t.handle),
        g.map((t) => t.handle),
        momentum ? vel.map((t) => t.handle) : null,
        hyper.handle,
        momentum,
        1e-4,
      );
      for (let i = 0; i < p.length; i++) {
        expect(bits([await floats(p[i], s)]).equals(bits([await floats(p0[i], s)]))).toBe(true);
        expect(bits([await floats(p[i], s)]).equals(bits([start[i]]))).toBe(false); // it moved
        if (momentum) expect(bits([await floats(vel[i], s)]).equals(bits([await floats(v0[i], s)]))).toBe(true);
        expect((await floats(g[i], s)).every((x) => x === 0)).toBe(true);
      }
    }
  });

  test('bad groups are clear errors naming the argument', () => {
    const s = new Stream(cpu);
    const t = (shape: number[]) => Tensor.zeros(shape, { device: cpu });
    const [a, b] = [t([2, 3]), t([4])];
    const hyper = t([2]);
    const h = (list: Tensor[]) => list.map((x) => x.handle);
    const adam = (params: Tensor[], grads: Tensor[], ms: Tensor[], vs: Tensor[], hy = hyper) =>
      ops.adamStepGroup(s.handle, h(params), h(grads), h(ms), h(vs), hy.handle, 0.9, 0.999, 1e-8, 0);
    expect(() => adam([a, b], [t([2, 3])], [t([2, 3]), t([4])], [t([2, 3]), t([4])])).toThrow(/adamStepGroup: 'grads' must hold 2 tensors/);
    expect(() => adam([a], [t([3, 2])], [t([2, 3])], [t([2, 3])])).toThrow(
      /adamStepGroup: 'grads\[0\]' must have shape \[2,3\], got \[3,2\]/,
    );
    expect(() => adam([a], [a], [t([2, 3])], [t([2, 3])])).toThrow(/'grads\[0\]' shares memory with another tensor of the group/);
    expect(() => adam([a], [t([2, 3])], [t([2, 3])], [t([2, 3])], t([1]))).toThrow(
      /adamStepGroup: 'hyper' must have shape \[2\], got \[1\]/,
    );
    expect(() => ops.adamStepGroup(s.handle, [a.handle, 3 as never], [], [], [], hyper.handle, 0.9, 0.999, 1e-8, 0)).toThrow(
      /'params\[1\]' must be a Tensor/,
    );
    expect(() => ops.sgdStepGroup(s.handle, [a.handle], [t([2, 3]).handle], null, t([1]).handle, 0.5, 0)).toThrow(
      /'velocities' must hold 1 tensors/,
    );
    expect(errorName(() => adam([a], [a], [t([2, 3])], [t([2, 3])]))).toBe('RangeError');
  });
});

describe('Graph', () => {
  test('records without running, and replays the recorded work at each launch', async () => {
    const s = new Stream(cpu);
    const x = Tensor.fromArray([1, 2, 3], [3], { device: cpu });
    const y = Tensor.fromArray([10, 20, 30], [3], { device: cpu });
    const graph = Graph.capture(s, () => {
      ops.axpby(s.handle, 1, x.handle, 2, y.handle); // y = x + 2y
    });
    expect(Array.from(await floats(y, s))).toEqual([10, 20, 30]); // nothing ran
    graph.launch(s);
    expect(Array.from(await floats(y, s))).toEqual([21, 42, 63]);
    graph.launch(s);
    x.dispose(); // the graph holds what it uses: disposing of the handle frees nothing it needs
    graph.launch(s);
    expect(Array.from(await floats(y, s))).toEqual([87, 174, 261]);
    graph.dispose();
    expect(graph.disposed).toBe(true);
    expect(() => graph.launch(s)).toThrow(/launch: the graph was disposed/);
  });

  test('streams that wait for the capture join it, and keep their order at every launch', async () => {
    const main = new Stream(cpu);
    const side = new Stream(cpu);
    const [forked, joined] = [new Event(cpu), new Event(cpu)];
    const a = Tensor.fromArray([1, 1], [2], { device: cpu });
    const b = Tensor.zeros([2], { device: cpu });
    const graph = Graph.capture(main, () => {
      ops.axpby(main.handle, 2, a.handle, 0, a.handle); // a *= 2 (main)
      forked.record(main);
      side.wait(forked);
      ops.axpby(side.handle, 1, a.handle, 1, b.handle); // b += a (side, after main)
      joined.record(side);
      main.wait(joined);
      ops.axpby(main.handle, 1, b.handle, 1, a.handle); // a += b (main, after side)
    });
    for (let i = 0; i < 3; i++) graph.launch(main);
    // launch: a = 2a; b += a; a += b   from a = 1, b = 0
    let [ra, rb] = [1, 0];
    for (let i = 0; i < 3; i++) {
      ra *= 2;
      rb += ra;
      ra += rb;
    }
    expect(Array.from(await floats(a, main))).toEqual([ra, ra]);
    expect(Array.from(await floats(b, main))).toEqual([rb, rb]);
    // The side stream is free again: it runs its own work outside the graph.
    ops.fill(side.handle, b.handle, 5);
    expect(Array.from(await floats(b, side))).toEqual([5, 5]);
    graph.dispose();
  });

  test('misuse is a clear error and leaves no capture open', async () => {
    const main = new Stream(cpu);
    const side = new Stream(cpu);
    const e = new Event(cpu);
    const t = Tensor.zeros([2], { device: cpu });
    // A joined stream that never rejoins.
    expect(() =>
      Graph.capture(main, () => {
        e.record(main);
        side.wait(e);
        ops.fill(side.handle, t.handle, 1);
      }),
    ).toThrow(/endCapture: a stream joined the capture but its last work was not waited for/);
    // Host waits and reads on a capturing stream.
    await expect(async () =>
      Graph.capture(main, () => {
        void main.synchronize();
      }),
    ).rejects.toThrow(/synchronize: the stream is being captured/);
    expect(() =>
      Graph.capture(main, () => {
        void t.read(main);
      }),
    ).toThrow(/read: the stream is being captured/);
    // Waiting inside the capture for work recorded outside it.
    const outside = new Event(cpu).record(side);
    expect(() =>
      Graph.capture(main, () => {
        main.wait(outside);
      }),
    ).toThrow(/can only wait for events recorded during the same capture/);
    // An event last recorded inside a capture cannot be waited for outside it.
    const inside = new Event(cpu);
    const g = Graph.capture(main, () => {
      inside.record(main);
    });
    expect(() => side.wait(inside)).toThrow(/latest record was captured into a graph/);
    expect(() => inside.synchronize()).toThrow(/latest record was captured into a graph/);
    g.dispose();
    // One capture at a time; a body that throws ends its capture.
    expect(() =>
      Graph.capture(main, () => {
        Graph.capture(side, () => undefined);
      }),
    ).toThrow(/another capture is in progress/);
    expect(() =>
      Graph.capture(main, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(() =>
      Graph.capture(main, (async () => {
        await Promise.resolve();
      }) as () => void),
    ).toThrow(/'body' must be synchronous/);
    expect(() => Graph.capture({} as Stream, () => undefined)).toThrow(/Graph.capture: 'stream' must be a Stream/);
    // After all that, the streams work normally.
    ops.fill(main.handle, t.handle, 3);
    expect(Array.from(await floats(t, main))).toEqual([3, 3]);
  });
});

test('a refused host wait leaves nothing pending: the process still exits by itself', () => {
  const script = `
    const { native } = require(${JSON.stringify(path.resolve(__dirname, '..', 'dist', 'ts'))});
    const s = new native.Stream('cpu');
    const e = new native.Event('cpu');
    native.beginCapture(s);
    e.record(s);
    for (const f of [() => s.synchronize(), () => e.synchronize()]) { try { f(); } catch (err) { console.log(err.message.split(':')[0]); } }
    native.endCapture(s).dispose();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  expect(r.error).toBeUndefined(); // a timeout would mean a pending Promise kept the event loop alive
  expect(r.status).toBe(0);
  expect(r.stdout.trim().split('\n')).toEqual(['synchronize', 'synchronize']);
});

describe('fit({ graph: true })', () => {
  // 1000 rows in batches of 64: 15 captured steps per epoch and a 40-row tail run uncaptured.
  function data(): Dataset {
    const rng = new Random(21);
    const labels = new Int32Array(1000).map(() => Math.floor(rng.next() * 10));
    return new Dataset('random', rng.uniformArray(1000 * 20, 0, 1), labels, 20, 10);
  }

  async function train(graph: boolean, dni?: DecoupleOptions, expectLaunches?: number) {
    const launch = jest.spyOn(Graph.prototype, 'launch');
    const model = mlp(20, [32, 32, 32], 10);
    const net = dni ? decouple(model, dni) : model;
    const lr = learningRateSchedules.stepDecay(2e-3, [20], 0.1);
    const trainer = new Trainer(net, { device: cpu, seed: 4, optimizer: () => (dni ? new Adam({ lr }) : new SGD({ lr, momentum: 0.9 })) });
    const losses: number[] = [];
    const diagnostics: unknown[] = [];
    await trainer.fit(data(), {
      epochs: 2,
      batchSize: 64,
      graph,
      diagnoseEvery: dni ? 7 : undefined,
      onStep: (m) => {
        losses.push(m.loss);
        if (m.diagnostics) diagnostics.push(m.diagnostics);
      },
    });
    const params = await Promise.all(net.parameters().map((p: Parameter) => p.value.readFloat32(trainer.stream)));
    trainer.dispose();
    if (expectLaunches !== undefined) expect(launch).toHaveBeenCalledTimes(expectLaunches);
    launch.mockRestore();
    return { losses, params, diagnostics };
  }

  test('backprop: identical losses and weights to the uncaptured run', async () => {
    const eager = await train(false, undefined, 0);
    // Launches: epoch 1's steps 2..15 and epoch 2's 15 full batches.
    const replayed = await train(true, undefined, 29);
    expect(replayed.losses).toHaveLength(32);
    expect(replayed.losses).toEqual(eager.losses);
    expect(bits(replayed.params).equals(bits(eager.params))).toBe(true);
    expect(eager.losses[31]).toBeLessThan(eager.losses[0]);
  });

  test('cDNI on one stream per module, with warm-up: identical to the uncaptured run', async () => {
    const options: DecoupleOptions = { synthesizer: { conditioned: true }, streams: 'per-module', warmupSteps: 3 };
    const eager = await train(false, options);
    const replayed = await train(true, options, 27); // the 3 warm-up steps run uncaptured
    expect(replayed.losses).toEqual(eager.losses);
    // Probes between launches see the same weights and synthesizer losses.
    expect(replayed.diagnostics).toHaveLength(4);
    expect(replayed.diagnostics).toEqual(eager.diagnostics);
    expect(bits(replayed.params).equals(bits(eager.params))).toBe(true);
  });

  test('schedules that cannot be captured are refused before training', async () => {
    const model = (o: DecoupleOptions) =>
      new Trainer(decouple(mlp(20, [8, 8], 10), o), { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }) });
    await expect(model({ schedule: { kind: 'pipelined', depth: 2 } }).fit(data(), { steps: 2, graph: true })).rejects.toThrow(
      /fit: 'graph' cannot capture this training step: the pipelined schedule/,
    );
    await expect(model({ schedule: { kind: 'lockstep', pUpdate: 0.5 } }).fit(data(), { steps: 2, graph: true })).rejects.toThrow(
      /stochastic updates are drawn on the host/,
    );
    await expect(model({}).fit(data(), { steps: 2, graph: 'yes' as never })).rejects.toThrow(/fit: 'graph' must be a boolean/);
  });

  test('a decoupled network refuses one optimizer shared by its modules', () => {
    expect(() => new Trainer(decouple(mlp(20, [8, 8], 10), {}), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) })).toThrow(
      /one optimizer per module/,
    );
  });
});
