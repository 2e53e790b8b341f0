// The native addon under hostile use: objects of one class passed as another, Workers
// terminated with work pending, values an int32 tensor cannot hold, tensors larger than the
// device, captures never ended, queued work cancelled, and arguments that used to be accepted
// silently. Whatever could crash the process runs in a child process, so that a crash fails
// the test instead of killing jest.
import { Device, Graph, Stream, Tensor, native } from '../ts';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { errorOf } from './helpers/errors';

const cpu = Device.cpu();
const root = path.resolve(__dirname, '..');
const dist = JSON.stringify(path.join(root, 'dist', 'ts'));

/** Runs `script` in a fresh Node.js process (the package as `api`); returns its outcome. */
function runNode(script: string, options: { env?: NodeJS.ProcessEnv; timeout?: number; args?: string[] } = {}) {
  const r = spawnSync(process.execPath, [...(options.args ?? []), '-e', `const api = require(${dist});\n${script}`], {
    encoding: 'utf8',
    timeout: options.timeout ?? 60000,
    env: { ...process.env, ...options.env },
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, timedOut: r.error !== undefined };
}

/** The JSON lines a child printed; fails with its stderr if it did not exit normally. */
function linesOf(r: ReturnType<typeof runNode>): unknown[] {
  if (r.status !== 0) throw new Error(`child exited with ${r.status ?? r.signal}${r.timedOut ? ' (timed out)' : ''}:\n${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

describe('type confusion between native classes', () => {
  test('a Tensor with Event.prototype passed to Stream.wait is a TypeError naming the argument', () => {
    const r = runNode(`
      const n = api.native;
      const t = new n.Tensor([2], 'float32', 'cpu', 'zeros');
      Object.setPrototypeOf(t, n.Event.prototype);
      const s = new n.Stream('cpu');
      try { s.wait(t); console.log(JSON.stringify('no error')); }
      catch (e) { console.log(JSON.stringify([e.name, e.message])); }
      // The swapped object is still refused where an Event's own methods run on it (by V8's
      // receiver check for methods, by the tag for accessors).
      try { t.record(s); console.log(JSON.stringify('no error')); }
      catch (e) { console.log(JSON.stringify(e.name)); }
      try { console.log(JSON.stringify(t.device)); }
      catch (e) { console.log(JSON.stringify([e.name, e.message])); }`);
    expect(linesOf(r)).toEqual([
      ['TypeError', "wait: 'event' must be an Event, got a Tensor"],
      'TypeError',
      ['TypeError', "Event.device: 'this' must be an Event, got a Tensor"],
    ]);
  });

  test("Tensor.prototype's shape getter called on a Stream throws instead of looping", () => {
    const r = runNode(
      `
      const n = api.native;
      const get = Object.getOwnPropertyDescriptor(n.Tensor.prototype, 'shape').get;
      try { get.call(new n.Stream('cpu')); console.log(JSON.stringify('no error')); }
      catch (e) { console.log(JSON.stringify([e.name, e.message])); }`,
      { timeout: 20000 },
    );
    expect(linesOf(r)).toEqual([['TypeError', "Tensor.shape: 'this' must be a Tensor, got a Stream"]]);
  });

  test('every method and accessor of every class refuses every foreign receiver', () => {
    // Receivers: an instance of each other class, a bare object made from the prototype, a
    // plain object, a primitive. Every call must be a TypeError: V8's own receiver check
    // ("Illegal invocation") for methods, the class tag for accessors and anything V8 lets
    // through. The child prints the calls that were not (a crash would be a non-zero exit).
    const r = runNode(`
      const n = api.native;
      const s = new n.Stream('cpu');
      const t = new n.Tensor([2], 'float32', 'cpu', 'zeros');
      n.beginCapture(s);
      const g = n.endCapture(s);
      const instances = { Tensor: t, Stream: s, Event: new n.Event('cpu'), Graph: g };
      const protos = { Tensor: n.Tensor.prototype, Stream: n.Stream.prototype, Event: n.Event.prototype,
        Graph: Object.getPrototypeOf(g) };
      const bad = [];
      let calls = 0;
      for (const [cls, proto] of Object.entries(protos)) {
        const receivers = [...Object.entries(instances).filter(([k]) => k !== cls).map(([, v]) => v),
          Object.create(proto), {}, 7];
        for (const key of Object.getOwnPropertyNames(proto)) {
          if (key === 'constructor') continue;
          const d = Object.getOwnPropertyDescriptor(proto, key);
          const fn = d.get ?? d.value;
          for (const self of receivers) {
            calls++;
            try { fn.call(self, s, t); bad.push(cls + '.' + key + ': no error'); }
            catch (e) {
              const named = e.message.startsWith(cls + '.' + key + ": 'this' must be") || e.message === 'Illegal invocation';
              if (e.name !== 'TypeError' || !named) bad.push(cls + '.' + key + ': ' + e.name + ' ' + e.message);
            }
          }
        }
      }
      console.log(JSON.stringify({ calls, bad }));`);
    const [result] = linesOf(r) as { calls: number; bad: string[] }[];
    expect(result.bad).toEqual([]);
    expect(result.calls).toBeGreaterThanOrEqual(17 * 6);
  });

  test('graphs are made only by beginCapture; a bare Graph constructor call is a TypeError', () => {
    const s = new Stream(cpu);
    const g = native.beginCapture(s.handle);
    native.endCapture(s.handle);
    const Ctor = (g as unknown as { constructor: new () => unknown }).constructor;
    const e = errorOf(() => new Ctor());
    expect(e.name).toBe('TypeError');
    expect(e.message).toMatch(/Graph: graphs are made by beginCapture\(\) and endCapture\(\)/);
    g.dispose();
  });
});

describe('Workers terminated with work pending', () => {
  test('training in a Worker terminated mid-run, 50 times, leaves the process running and exiting 0', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'terminate-training-workers.js'), '50'], {
      encoding: 'utf8',
      timeout: 240000,
    });
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(r.stdout.trim()).toBe('terminated 50');
  });

  test('a Worker terminated while it holds a capture open does not block later captures', () => {
    const r = runNode(`
      const { Worker } = require('worker_threads');
      const code = "const n = require(" + JSON.stringify(${dist}) + ").native;" +
        "const s = new n.Stream('cpu'); globalThis.g = n.beginCapture(s);" +
        "require('worker_threads').parentPort.postMessage('capturing'); setInterval(() => {}, 1000);";
      (async () => {
        const w = new Worker(code, { eval: true });
        await new Promise((resolve) => w.once('message', resolve));
        await w.terminate();
        const s = new api.native.Stream('cpu');
        api.native.beginCapture(s);
        api.native.endCapture(s).dispose();
        console.log(JSON.stringify('captured after the Worker'));
      })();`);
    expect(linesOf(r)).toEqual(['captured after the Worker']);
  });
});

describe('int32 values', () => {
  test('fill on an int32 tensor: a non-integral or out-of-range value is a RangeError', async () => {
    const s = new Stream(cpu);
    const t = Tensor.zeros([3], { device: cpu, dtype: 'int32' });
    for (const [value, text] of [
      [2.5, '2.5'],
      [2147483648, '2147483648'],
      [-2147483649, '-2147483649'],
      [1e10, '1e+10'],
    ] as const) {
      const e = errorOf(() => native.ops.fill(s.handle, t.handle, value));
      expect(e.name).toBe('RangeError');
      expect(e.message).toBe(`fill: 'value' must be an integer in [-2147483648, 2147483647] for an int32 tensor, got ${text}`);
    }
    // The bounds themselves are fine, and nothing was written by the refused calls.
    expect(Array.from(await t.read(s))).toEqual([0, 0, 0]);
    native.ops.fill(s.handle, t.handle, -2147483648);
    expect(Array.from(await t.read(s))).toEqual([-2147483648, -2147483648, -2147483648]);
    native.ops.fill(s.handle, t.handle, 2147483647);
    expect(Array.from(await t.read(s))).toEqual([2147483647, 2147483647, 2147483647]);
    // float32: beyond float32's range would become Infinity.
    const f = Tensor.zeros([1], { device: cpu });
    expect(errorOf(() => native.ops.fill(s.handle, f.handle, 1e39)).message).toMatch(/fill: 'value' must be within float32 range/);
  });

  test('Tensor.fromArray with dtype int32: NaN, 1e10, 0.5 are RangeErrors naming the index and value', () => {
    const cases: [number[], string][] = [
      [[1, NaN, 3], "'data[1]' must be an integer in [-2147483648, 2147483647] for int32, got NaN"],
      [[1e10], "'data[0]' must be an integer in [-2147483648, 2147483647] for int32, got 10000000000"],
      [[0, 0, 0.5], "'data[2]' must be an integer in [-2147483648, 2147483647] for int32, got 0.5"],
      [[-2147483649], "'data[0]' must be an integer in [-2147483648, 2147483647] for int32, got -2147483649"],
    ];
    for (const [data, message] of cases) {
      const e = errorOf(() => Tensor.fromArray(data, [data.length], { dtype: 'int32' }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe(`Tensor.fromArray: ${message}`);
    }
    const ok = Tensor.fromArray([-2147483648, 2147483647], [2], { dtype: 'int32' });
    expect(ok.dtype).toBe('int32');
    ok.dispose();
  });
});

describe('tensors and device memory', () => {
  test('a tensor larger than the device memory is a RangeError, before any allocation', () => {
    // SYNTHGRAD_CPU_MEMORY stands for a small machine: this one may hold any shape we can make.
    const r = runNode(
      `
      const { Tensor } = api;
      const ok = Tensor.zeros([1000]);
      console.log(JSON.stringify(ok.shape));
      for (const make of [() => Tensor.empty([1000, 1000]), () => Tensor.zeros([2, 500000])]) {
        try { make(); console.log(JSON.stringify('no error')); }
        catch (e) { console.log(JSON.stringify([e.name, e.message])); }
      }`,
      { env: { SYNTHGRAD_CPU_MEMORY: '1000000' } },
    );
    expect(linesOf(r)).toEqual([
      [1000],
      ['RangeError', "Tensor: 'shape' [1000,1000] needs 4000000 bytes, more than the 1000000 bytes of memory of cpu"],
      ['RangeError', "Tensor: 'shape' [2,500000] needs 4000000 bytes, more than the 1000000 bytes of memory of cpu"],
    ]);
  });

  test('zeros of 256 MiB raises the peak memory by its size, not twice (no host buffer)', () => {
    const bytes = 256 * 2 ** 20;
    const r = runNode(`
      const peak = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      const before = peak();
      const t = api.Tensor.zeros([${bytes / 4}]);
      console.log(JSON.stringify(peak() - before));`);
    const [growth] = linesOf(r) as number[];
    expect(growth).toBeGreaterThan(0.9 * bytes); // the zeros are really written
    expect(growth).toBeLessThan(1.5 * bytes);
  });

  test('zeros are zero also in a reused block of memory', async () => {
    const n = 1 << 16;
    for (let i = 0; i < 3; i++) {
      const dirty = Tensor.empty([n], { device: cpu });
      native.ops.fill(Stream.default(cpu).handle, dirty.handle, 7);
      await Stream.default(cpu).synchronize();
      dirty.dispose(); // its block goes back to the pool, and zeros of the same size reuse it
      const z = Tensor.zeros([n], { device: cpu });
      const v = await z.readFloat32();
      expect(v.every((x) => x === 0)).toBe(true);
      z.dispose();
    }
  });
});

describe('captures never ended', () => {
  test('disposing of a capturing graph discards its capture; the next capture works', async () => {
    const a = new Stream(cpu),
      b = new Stream(cpu);
    const g = native.beginCapture(a.handle);
    expect(g.capturing).toBe(true);
    g.dispose();
    expect(g.capturing).toBe(false);
    expect(g.disposed).toBe(true);
    // The stream runs work again instead of recording it, and another capture can begin.
    const t = Tensor.zeros([2], { device: cpu });
    native.ops.fill(a.handle, t.handle, 4);
    expect(Array.from(await t.read(a))).toEqual([4, 4]);
    const ok = Graph.capture(b, () => native.ops.fill(b.handle, t.handle, 5));
    ok.launch(b);
    expect(Array.from(await t.read(b))).toEqual([5, 5]);
    ok.dispose();
  });

  test('a capturing graph that is garbage-collected discards its capture', () => {
    const r = runNode(
      `
      const n = api.native;
      (() => { n.beginCapture(new n.Stream('cpu')); })();  // the Graph is dropped at once
      (async () => {
        for (let i = 0; i < 20; i++) { global.gc(); await new Promise((resolve) => setImmediate(resolve)); }
        const s = new n.Stream('cpu');
        try { n.beginCapture(s); n.endCapture(s).dispose(); console.log(JSON.stringify('captured again')); }
        catch (e) { console.log(JSON.stringify(e.message)); }
      })();`,
      { args: ['--expose-gc'] },
    );
    expect(linesOf(r)).toEqual(['captured again']);
  });

  test('a Graph.capture body that throws leaves no capture open', async () => {
    const s = new Stream(cpu);
    const t = Tensor.zeros([1], { device: cpu });
    for (let i = 0; i < 3; i++)
      expect(() =>
        Graph.capture(s, () => {
          native.ops.fill(s.handle, t.handle, 9);
          throw new Error('body failed');
        }),
      ).toThrow('body failed');
    // The fills recorded before the throw never ran, and capturing works again.
    expect(Array.from(await t.read(s))).toEqual([0]);
    Graph.capture(s, () => native.ops.fill(s.handle, t.handle, 1)).dispose();
  });

  test('launching a graph that is still capturing is a TypeError', () => {
    const s = new Stream(cpu);
    const g = native.beginCapture(s.handle);
    const e = errorOf(() => g.launch(new Stream(cpu).handle));
    expect(e.name).toBe('TypeError');
    expect(e.message).toBe('launch: the graph is still being captured (endCapture first)');
    expect(native.endCapture(s.handle)).toBe(g);
    expect(g.capturing).toBe(false);
    g.dispose();
  });
});

describe('cancelling queued work', () => {
  // 512³ GEMMs: about 50 ms each here, so 100 of them are seconds of queued work.
  function queueGemms(s: Stream, count: number): Tensor[] {
    const a = Tensor.zeros([512, 512], { device: cpu });
    const c = Tensor.zeros([512, 512], { device: cpu });
    for (let i = 0; i < count; i++) native.ops.gemm(s.handle, a.handle, a.handle, c.handle, false, false, 1, 0);
    return [a, c];
  }

  test('device.cancelAll() drops the ops not yet started; the next wait rejects, the one after resolves', async () => {
    const s = new Stream(cpu);
    const kept = queueGemms(s, 100);
    const started = Date.now();
    const dropped = cpu.cancelAll();
    expect(dropped).toBeGreaterThan(90); // at most a few ran or started meanwhile
    expect(dropped).toBeLessThanOrEqual(100);
    await expect(s.synchronize()).rejects.toThrow(/cancelled: \d+ queued op\(s\) were dropped before they ran/);
    expect(Date.now() - started).toBeLessThan(5000); // not the ~5 s the 100 GEMMs take
    await expect(s.synchronize()).resolves.toBeUndefined();
    expect(cpu.cancelAll()).toBe(0);
    kept.forEach((t) => t.dispose());
  });

  test('stream.cancel() drops that stream only, and a pending read rejects', async () => {
    const [s1, s2] = [new Stream(cpu), new Stream(cpu)];
    const t = Tensor.fromArray([1, 2], [2], { device: cpu });
    const kept = queueGemms(s1, 40);
    native.ops.fill(s2.handle, t.handle, 3);
    const pending = kept[0].read(s1); // not t: nothing orders s2's fill before a read on s1
    expect(s1.cancel()).toBeGreaterThan(30);
    await expect(pending).rejects.toThrow(/cancelled/);
    expect(Array.from(await t.read(s2))).toEqual([3, 3]); // s2's work ran
    kept.forEach((x) => x.dispose());
  });

  test("a Worker's cancelAll() leaves the main thread's queued work alone", () => {
    const r = runNode(`
      const { Worker } = require('worker_threads');
      const n = api.native;
      const s = new n.Stream('cpu');
      const a = new n.Tensor([256, 256], 'float32', 'cpu', 'zeros');
      const c = new n.Tensor([256, 256], 'float32', 'cpu', 'zeros');
      for (let i = 0; i < 40; i++) n.ops.gemm(s, a, a, c, false, false, 1, 0);
      const w = new Worker("const n = require(" + JSON.stringify(${dist}) + ").native;" +
        "require('worker_threads').parentPort.postMessage(n.cancelQueued('cpu'));", { eval: true });
      w.once('message', async (dropped) => {
        await s.synchronize();  // would reject had the Worker dropped these GEMMs
        console.log(JSON.stringify(dropped));
      });`);
    expect(linesOf(r)).toEqual([0]);
  });

  test('a script that ends with work queued exits without running it', () => {
    // About 2000 × 50 ms of GEMMs: waiting for them would far exceed the timeout.
    const r = runNode(
      `
      const n = api.native;
      const s = new n.Stream('cpu');
      const a = new n.Tensor([512, 512], 'float32', 'cpu', 'zeros');
      const c = new n.Tensor([512, 512], 'float32', 'cpu', 'zeros');
      for (let i = 0; i < 2000; i++) n.ops.gemm(s, a, a, c, false, false, 1, 0);
      console.log(JSON.stringify('queued'));`,
      { timeout: 30000 },
    );
    expect(linesOf(r)).toEqual(['queued']);
  });
});

describe('arguments that were accepted silently', () => {
  test('tensor.read("cuda:7") and read({}) are TypeErrors, not the default stream', async () => {
    const t = Tensor.fromArray([1], [1], { device: cpu });
    for (const bad of ['cuda:7', {}, null, 3]) {
      const e = errorOf(() => t.read(bad as unknown as Stream));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/^read: 'stream' must be a Stream or undefined, got /);
    }
    await expect(t.readFloat32({} as unknown as Stream)).rejects.toThrow(/^read: 'stream' must be a Stream/);
    // The native method too: only undefined means the default stream.
    for (const bad of ['cuda:7', {}, null]) {
      const e = errorOf(() => t.handle.read(bad as never));
      expect(e.name).toBe('TypeError');
      expect(e.message).toMatch(/^read: 'stream' must be a Stream, got /);
    }
    expect(Array.from(await t.read())).toEqual([1]);
  });

  test('adamScalars: NaN, infinite or out-of-range scalars are RangeErrors naming them', () => {
    const cases: [number[], string][] = [
      [[NaN, 0.9, 0.999, 1], "adamScalars: 'lr' must be a finite number, got NaN"],
      [[1e39, 0.9, 0.999, 1], "adamScalars: 'lr' must be a finite number, got 1e+39"],
      [[1e-3, NaN, 0.999, 1], "adamScalars: 'beta1' must be in [0, 1), got NaN"],
      [[1e-3, 1, 0.999, 1], "adamScalars: 'beta1' must be in [0, 1), got 1"],
      [[1e-3, 0.9, 0.999999999, 1], "adamScalars: 'beta2' must be in [0, 1), got 0.999999999"], // 1 in float32
      [[1e-3, 0.9, -0.5, 1], "adamScalars: 'beta2' must be in [0, 1), got -0.5"],
    ];
    for (const [args, message] of cases) {
      const e = errorOf(() => native.adamScalars(args[0], args[1], args[2], args[3]));
      expect([e.name, e.message]).toEqual(['RangeError', message]);
    }
    expect(native.adamScalars(1e-3, 0.9, 0.999, 1).every(Number.isFinite)).toBe(true);
  });

  test('op scalars that overflow float32 are RangeErrors', () => {
    const s = new Stream(cpu);
    const y = Tensor.zeros([2], { device: cpu });
    const e = errorOf(() => native.ops.writeScalars(s.handle, y.handle, [1, 1e39]));
    expect([e.name, e.message]).toEqual(['RangeError', "writeScalars: 'values[1]' must be a finite number, got 1e+39"]);
    const x = Tensor.zeros([2], { device: cpu });
    expect(errorOf(() => native.ops.axpby(s.handle, 1e39, x.handle, 1, y.handle)).message).toMatch(/axpby: 'a' must be finite, got inf/);
  });

  test('a SharedArrayBuffer-backed array is a TypeError naming the argument', () => {
    const shared = new Float32Array(new SharedArrayBuffer(8));
    const e = errorOf(() => Tensor.fromArray(shared, [2]));
    expect(e.name).toBe('TypeError');
    expect(e.message).toBe(
      "Tensor: 'data' must be backed by an ArrayBuffer, got one backed by a SharedArrayBuffer (copy it into a new typed array first)",
    );
    // The same values in an ordinary array are fine.
    expect(Tensor.fromArray(new Float32Array(shared), [2]).shape).toEqual([2]);
  });

  test('the wrappers check their arguments before the native call', () => {
    const s = new Stream(cpu);
    expect(errorOf(() => s.wait({} as never)).message).toBe("Stream.wait: 'event' must be an Event, got Object");
    expect(errorOf(() => new Stream('cpu' as never)).message).toBe("Stream: 'device' must be a Device, got string cpu");
    expect(errorOf(() => Tensor.zeros([1], { device: cpu, dtpye: 'int32' } as never)).message).toBe(
      "Tensor: unknown option 'dtpye' (expected one of device, dtype, arena)",
    );
    expect(errorOf(() => Tensor.zeros([2]).reshape([2], {} as never)).message).toBe(
      "reshape: 'arena' must be an Arena or undefined, got Object",
    );
  });
});
