#!/usr/bin/env node
// A seeded fuzzer of synthgrad's public API and of the raw native module (`native`): random calls
// with random, often hostile arguments (wrong types, NaN, huge or negative sizes, disposed
// tensors, wrong dtypes, objects whose prototype was swapped for another native class's,
// SharedArrayBuffer-backed and detached arrays, unknown option keys, ...) on a pool of live
// objects (tensors, streams, events, graphs, layers, optimizers, datasets, trainers, files).
//
//   node scripts/fuzz.js [--seed 1] [--calls 10000] [--batch 250] [--timeout 15]   (needs dist/: npx tsc)
//   node scripts/fuzz.js --replay SEED:BATCH        runs one batch here, printing every call
//
// Calls run in batches, each in a child process that writes every call to a log file before
// making it, so that a crash (a signal, an abort) or a hang (no new call for --timeout seconds, or a
// Promise that does not settle in 10 s) is reported with the seed, the batch and the exact call.
// A batch is a pure function of (seed, batch index): --replay reproduces it. Batches run until
// --calls calls were made. Passes (exit 0) with 0 crashes, 0 hangs and every thrown error a
// TypeError, RangeError or Error raised by the library (not by the engine, see below) with a
// message that is not one of N-API's unnamed generic ones ("Invalid argument", "A number was
// expected", ...); prints the figures either way.
//
// Errors raised by the JavaScript engine inside the library ("Cannot read properties of null")
// fail the run too, listed as "unstyled": they do not name the argument.
//
// Files are only written inside a directory each child makes with mkdtemp and removes. The
// children run under an address-space limit (ulimit -v, 8 GiB) so that an accepted huge
// allocation (the 10 GB tensor among the hostile shapes) fails instead of taking the machine's
// memory; ASan needs terabytes of address space for its shadow memory and cannot run under one
// (scripts/sanitize.sh caps its allocations and RSS instead, and the 10 GB shape is left out).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const WATCHDOG_MS = 10_000;
const underAsan = /asan/.test(process.env.LD_PRELOAD || '');
// The first line of an ASan / UBSan report (halt_on_error makes UBSan's the last, too).
const SANITIZER_REPORT = /runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL/;

// ---- known failures: a TEMPORARY allowlist -----------------------------------------------------
// Categories of issue 16 that the native-hardening branch fixes. A crash, hang or badly formed
// error whose call matches one of these is reported on its own lines ("KNOWN ..., allowlisted")
// and does not fail the run; every other one does. Remove each entry once its fix has landed
// (the list must end empty).
const TEMPORARY_KNOWN_FAILURES = [
  // e.g. { name: 'type confusion between native classes (no type tags yet)',
  //        match: /with (Tensor|Stream|Event) prototype|Object\.create\(native \w+\.prototype\)/ },
];
const knownCategory = (what) => TEMPORARY_KNOWN_FAILURES.find((k) => k.match.test(what));

// ---- a seeded generator (xorshift128+ style on 32-bit words; independent of the library's) ----
function makeRng(seed) {
  let a = (seed ^ 0x9e3779b9) >>> 0,
    b = (seed * 0x85ebca6b) >>> 0 || 1,
    c = 0x27d4eb2f,
    d = 0x165667b1;
  function next() {
    const t = b << 9;
    let r = a * 5;
    r = ((r << 7) | (r >>> 25)) * 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    return (r >>> 0) / 4294967296;
  }
  for (let i = 0; i < 20; i++) next();
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
  return rng;
}

// ---- the child: one batch of calls ---------------------------------------------------------------
async function runBatch(seed, batch, calls, logFd, verbose) {
  const sg = require(path.join(__dirname, '..', 'dist', 'ts'));
  const { native } = sg;
  const rng = makeRng((seed * 1_000_003 + batch * 7919) >>> 0);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-fuzz-'));
  const cpu = sg.Device.cpu();
  const say = (line) => {
    fs.writeSync(logFd, `${line}\n`);
    if (verbose) process.stdout.write(`${line}\n`);
  };
  const stats = { calls: 0, ok: 0, errors: {}, argErrors: 0, problems: [], unstyled: {} };
  let current = '';
  process.on('unhandledRejection', (e) => {
    stats.problems.push(
      `unhandled rejection (${e instanceof Error ? `${e.name}: ${e.message}` : `non-Error ${typeof e}: ${String(e)}`}) during or after: ${current}`,
    );
  });

  // -- the pool of live objects, each with a description for the log --
  const pool = {
    tensors: [],
    handles: [],
    streams: [],
    events: [],
    graphs: [],
    modules: [],
    optimizers: [],
    datasets: [],
    trainers: [],
    files: [],
  };
  let serial = 0;
  const add = (kind, v, d) => {
    const list = pool[kind];
    if (list.length >= 24) list.splice(rng.int(list.length), 1);
    list.push({ v, d: `${d}#${++serial}` });
    return v;
  };
  const one = (kind) => (pool[kind].length ? rng.pick(pool[kind]) : undefined);

  const SHAPES = [[1], [2], [3], [4], [6], [1, 1], [2, 2], [2, 3], [3, 2], [3, 3], [4, 3], [3, 4], [2, 4], [4, 2], [1, 3], [3, 1], [2, 1]];
  const describeShape = (s) => `[${s.join(',')}]`;
  function freshHandle(shape, dtype) {
    const n = shape.reduce((x, y) => x * y, 1);
    const init =
      dtype === 'int32'
        ? Int32Array.from({ length: n }, () => rng.int(5) - (rng.chance(0.1) ? 3 : 0))
        : Float32Array.from({ length: n }, () => (rng.chance(0.02) ? rng.pick([NaN, Infinity, -Infinity, 3e38]) : rng.next() * 4 - 2));
    const h = new native.Tensor(shape, dtype, 'cpu', init);
    pool.handles.push({ v: h, d: `handle${dtype === 'int32' ? '(int32)' : ''}${describeShape(shape)}#${++serial}` });
    if (pool.handles.length > 40) pool.handles.splice(rng.int(pool.handles.length), 1);
    return h;
  }

  // -- hostile values, each made fresh (some are mutated by the calls) --
  const sab = (n) => new Float32Array(new SharedArrayBuffer(4 * n));
  const detached = () => {
    const b = new ArrayBuffer(16);
    structuredClone(b, { transfer: [b] });
    return new Float32Array(b);
  };
  const withProto = (proto, d) => () => {
    const h = new native.Tensor([2], 'float32', 'cpu', 'zeros');
    Object.setPrototypeOf(h, proto);
    return [h, `Tensor handle with ${d} prototype`];
  };
  const HOSTILE = [
    () => [undefined, 'undefined'],
    () => [null, 'null'],
    () => [true, 'true'],
    () => [false, 'false'],
    () => [0, '0'],
    () => [-0, '-0'],
    () => [-1, '-1'],
    () => [1.5, '1.5'],
    () => [NaN, 'NaN'],
    () => [Infinity, 'Infinity'],
    () => [-Infinity, '-Infinity'],
    () => [2 ** 31, '2**31'],
    () => [2 ** 32 + 1, '2**32+1'],
    () => [2 ** 53, '2**53'],
    () => [-(2 ** 31) - 1, '-(2**31)-1'],
    () => [1e308, '1e308'],
    () => [5e-324, '5e-324'],
    () => ['3', "'3'"],
    () => ['', "''"],
    () => ['cpu', "'cpu'"],
    () => ['cuda:7', "'cuda:7'"],
    () => ['cuda:0', "'cuda:0'"],
    () => ['cuda:-1', "'cuda:-1'"],
    () => ['float64', "'float64'"],
    () => ['relu', "'relu'"],
    () => ['x'.repeat(10000), "'x'*10000"],
    () => [Symbol('s'), 'Symbol()'],
    () => [10n, '10n'],
    () => [{}, '{}'],
    () => [[], '[]'],
    () => [[NaN], '[NaN]'],
    () => [[-1], '[-1]'],
    () => [[0], '[0]'],
    () => [[2 ** 31], '[2**31]'],
    () => [[2 ** 40], '[2**40]'],
    () => [[1e6, 1e6, 1e6], '[1e6,1e6,1e6]'],
    // 10 GB, refused by the address-space limit; ASan's allocator aborts on it (out of memory) instead.
    ...(underAsan ? [] : [() => [[50000, 50000], '[50000,50000] (10 GB)']]),
    () => [[2 ** 32, 2 ** 32], '[2**32,2**32]'],
    () => [[1.5, 2], '[1.5,2]'],
    () => [['2', '2'], "['2','2']"],
    () => [[[2]], '[[2]]'],
    () => [new Array(3), 'new Array(3) (holes)'],
    () => [[1, 2, 3, 4, 5, 6, 7, 8, 9], '9-dim shape'],
    () => [() => 1, 'function'],
    () => [Object.create(null), 'null-prototype object'],
    () => [{ bogus: 1 }, '{bogus:1}'],
    () => [{ valueOf: () => 2 }, '{valueOf:()=>2}'],
    () => [new Date(0), 'Date'],
    () => [new Float32Array(0), 'Float32Array(0)'],
    () => [new Float32Array(3), 'Float32Array(3)'],
    () => [new Int32Array(4), 'Int32Array(4)'],
    () => [new Float64Array(4), 'Float64Array(4)'],
    () => [new Uint8Array(8), 'Uint8Array(8)'],
    () => [new ArrayBuffer(16), 'ArrayBuffer(16)'],
    () => [new DataView(new ArrayBuffer(8)), 'DataView'],
    () => [sab(4), 'SharedArrayBuffer Float32Array(4)'],
    () => [new Int32Array(new SharedArrayBuffer(16)), 'SharedArrayBuffer Int32Array(4)'],
    () => [detached(), 'detached Float32Array'],
    () => [new Float32Array(new ArrayBuffer(20), 4, 3), 'offset Float32Array(3)'],
    () => [Object.create(native.Tensor.prototype), 'Object.create(native Tensor.prototype)'],
    () => [Object.create(native.Stream.prototype), 'Object.create(native Stream.prototype)'],
    () => [Object.create(native.Event.prototype), 'Object.create(native Event.prototype)'],
    withProto(native.Event.prototype, 'Event'),
    withProto(native.Stream.prototype, 'Stream'),
    () => {
      const s = new native.Stream('cpu');
      Object.setPrototypeOf(s, native.Tensor.prototype);
      return [s, 'Stream handle with Tensor prototype'];
    },
    () => {
      const e = new native.Event('cpu');
      Object.setPrototypeOf(e, native.Stream.prototype);
      return [e, 'Event handle with Stream prototype'];
    },
    () => {
      const h = new native.Tensor([3], 'float32', 'cpu', 'zeros');
      h.dispose();
      return [h, 'disposed Tensor handle[3]'];
    },
    () => {
      const t = sg.Tensor.zeros([2, 2]);
      t.dispose();
      return [t, 'disposed Tensor[2,2]'];
    },
    () => [sg.Tensor.zeros([2, 3]), 'Tensor[2,3] (public wrapper)'],
    () => [sg.Stream.default(cpu), 'Stream.default(cpu) (public)'],
    () => [new sg.Event(cpu), 'Event (public)'],
    () => [cpu, 'Device cpu'],
    () => [
      new Proxy(
        {},
        {
          get: () => {
            throw new Error('hostile getter');
          },
        },
      ),
      'Proxy whose getters throw',
    ],
    () => [Object.freeze([2, 2]), 'frozen [2,2]'],
  ];
  const hostile = () => rng.pick(HOSTILE)();

  // A value for an argument of the given kind: usually a fitting one, sometimes hostile.
  function arg(kind, fit) {
    if (rng.chance(0.12)) return hostile();
    const p = (x, d) => [x, d ?? String(x)];
    switch (kind) {
      case 'stream': {
        const s = one('streams');
        return rng.chance(0.3) || !s ? p(native.defaultStream('cpu'), 'defaultStream(cpu)') : [s.v.handle ?? s.v, s.d];
      }
      case 'event': {
        const e = one('events');
        return e ? [e.v.handle ?? e.v, e.d] : p(new native.Event('cpu'), 'new Event(cpu)');
      }
      case 'num':
        return p(rng.pick([0, 1, -1, 0.5, 0.9, 0.999, 1e-8, 2, 1e3, NaN, Infinity, -Infinity, 1e-40, 3e38]));
      case 'bool':
        return p(rng.chance(0.5));
      case 'act':
        return p(rng.pick(['relu', 'tanh', 'sigmoid']), undefined);
      case 'tensor': {
        if (fit) return [freshHandle(fit.shape, fit.dtype), `handle${fit.dtype === 'int32' ? '(int32)' : ''}${describeShape(fit.shape)}`];
        const h = one('handles');
        return h && rng.chance(0.8) ? [h.v, h.d] : [freshHandle(rng.pick(SHAPES), rng.chance(0.2) ? 'int32' : 'float32'), 'fresh handle'];
      }
      default:
        throw new Error(`fuzz: unknown argument kind ${kind}`);
    }
  }

  // Native ops: argument kinds; 'T:mk' is a float32 tensor [m, k] when the call is shaped to fit
  // (g = 4k: an LSTM step's gates for a state [m, k]).
  const OPS = {
    copy: ['stream', 'T:n', 'T:n'],
    fill: ['stream', 'T:n', 'num'],
    axpby: ['stream', 'num', 'T:n', 'num', 'T:n'],
    gemm: ['stream', 'T:mk', 'T:kn', 'T:mn', 'bool', 'bool', 'num', 'num'],
    linearForward: ['stream', 'T:mk', 'T:nk', 'T?:n', 'T:mn', 'act?'],
    addBias: ['stream', 'T:mn', 'T:n'],
    biasBackward: ['stream', 'T:mn', 'T:n'],
    activationForward: ['stream', 'act', 'T:mn', 'T:mn'],
    activationBackward: ['stream', 'act', 'T:mn', 'T:mn', 'T:mn'],
    batchNormForward: ['stream', 'T:mn', 'T:n', 'T:n', 'T:mn', 'T:n', 'T:n', 'T:n', 'T:n', 'num', 'num', 'bool'],
    batchNormBackward: ['stream', 'T:mn', 'T:mn', 'T:n', 'T:n', 'T:n', 'T:mn', 'T:n', 'T:n'],
    softmaxCrossEntropyForward: ['stream', 'T:mn', 'I:m', 'T:mn', 'T:1'],
    softmaxCrossEntropyBackward: ['stream', 'T:mn', 'I:m', 'T:mn', 'num'],
    sigmoidCrossEntropyForward: ['stream', 'T:mn', 'T:mn', 'T:mn', 'T:1'],
    sigmoidCrossEntropyBackward: ['stream', 'T:mn', 'T:mn', 'T:mn', 'num'],
    lstmCellForward: ['stream', 'T:mg', 'T:mk', 'T:mk', 'T:mk'],
    lstmCellBackward: ['stream', 'T:mg', 'T:mk', 'T:mk', 'T:mk', 'T?:mk', 'T:mg', 'T:mk'],
    mseForward: ['stream', 'T:mn', 'T:mn', 'T:1'],
    mseBackward: ['stream', 'T:mn', 'T:mn', 'T:mn', 'num'],
    oneHot: ['stream', 'I:m', 'T:mn'],
    concatColumns: ['stream', 'T:mk', 'T:mn', 'T:ms'],
    splitColumns: ['stream', 'T:ms', 'T?:mk', 'T?:mn'],
    writeScalars: ['stream', 'T:n', 'scalars'],
    sgdStepGroup: ['stream', 'G:params', 'G:grads', 'G?:vel', 'T:1', 'num', 'num'],
    adamStepGroup: ['stream', 'G:params', 'G:grads', 'G:m', 'G:v', 'T:2', 'num', 'num', 'num', 'num'],
    // NCHW images [b, c, h, w], filters [o, c, r, t], outputs [b, o|c, Y, X] at stride 1 without
    // padding; 'int:1' is 1 when the call is shaped to fit, else any integer-ish value.
    conv2dForward: ['stream', 'T:bchw', 'T:ocrt', 'T?:o', 'T:boYX', 'int:1', 'int:1', 'int:0', 'int:0'],
    conv2dBackward: ['stream', 'T:bchw', 'T:ocrt', 'T:boYX', 'T?:bchw', 'T?:ocrt', 'T?:o', 'int:1', 'int:1', 'int:0', 'int:0'],
    maxPool2dForward: ['stream', 'T:bchw', 'T:bcYX', 'int:r', 'int:t', 'int:1', 'int:1', 'int:0', 'int:0'],
    maxPool2dBackward: ['stream', 'T:bchw', 'T:bcYX', 'T:bchw', 'int:r', 'int:t', 'int:1', 'int:1', 'int:0', 'int:0'],
    avgPool2dForward: ['stream', 'T:bchw', 'T:bcYX', 'int:r', 'int:t', 'int:1', 'int:1', 'int:0', 'int:0'],
    avgPool2dBackward: ['stream', 'T:bcYX', 'T:bchw', 'int:r', 'int:t', 'int:1', 'int:1', 'int:0', 'int:0'],
    swapLastAxes: ['stream', 'T:mkn', 'T:mnk'],
  };
  function opCall(name) {
    const shaped = rng.chance(0.6);
    const dims = { m: 1 + rng.int(4), n: 1 + rng.int(4), k: 1 + rng.int(4), 1: 1, 2: 2 };
    dims.s = dims.k + dims.n;
    dims.g = 4 * dims.k;
    Object.assign(dims, { b: rng.int(3), c: 1 + rng.int(3), h: 1 + rng.int(5), w: 1 + rng.int(5), o: 1 + rng.int(3), 0: 0 });
    dims.r = 1 + rng.int(dims.h);
    dims.t = 1 + rng.int(dims.w);
    dims.Y = dims.h - dims.r + 1;
    dims.X = dims.w - dims.t + 1;
    const groupShapes = Array.from({ length: 1 + rng.int(3) }, () => rng.pick(SHAPES));
    const args = OPS[name].map((spec) => {
      const optional = spec.includes('?');
      if (optional && rng.chance(0.3)) return [null, 'null'];
      const [kind, letters] = spec.replace('?', '').split(':');
      if (kind === 'T' || kind === 'I') {
        const dtype = kind === 'I' ? 'int32' : 'float32';
        const shape = [...letters].map((l) => dims[l]);
        return arg('tensor', shaped ? { shape, dtype } : undefined);
      }
      if (kind === 'G') {
        if (rng.chance(0.1)) return hostile();
        const hs = groupShapes.map((s) => arg('tensor', shaped ? { shape: s, dtype: 'float32' } : undefined));
        if (rng.chance(0.1)) hs.push(hostile());
        return [hs.map((x) => x[0]), `[${hs.map((x) => x[1]).join(', ')}]`];
      }
      if (kind === 'scalars') {
        if (rng.chance(0.15)) return hostile();
        const vals = Array.from({ length: rng.int(18) }, () => rng.pick([0, 1, -2.5, NaN, 1e39]));
        return [vals, `[${vals.join(',')}]`];
      }
      if (kind === 'int') {
        if (rng.chance(0.1)) return hostile();
        const v = shaped ? dims[letters] : rng.pick([0, 1, 2, 3, -1, 0.5, 2 ** 31 + 1, 2 ** 53, NaN]);
        return [v, String(v)];
      }
      if (kind === 'act?') return rng.chance(0.4) ? [null, 'null'] : arg('act');
      return arg(kind);
    });
    return { d: `native.ops.${name}(${args.map((a) => a[1]).join(', ')})`, f: () => native.ops[name](...args.map((a) => a[0])) };
  }

  // Calls on a native handle's prototype with any receiver (type confusion between classes).
  function protoCall() {
    const classes = { Tensor: native.Tensor, Stream: native.Stream, Event: native.Event };
    const cname = rng.pick(Object.keys(classes));
    const proto = classes[cname].prototype;
    const names = Object.getOwnPropertyNames(proto).filter((n) => n !== 'constructor');
    const name = rng.pick(names);
    const desc = Object.getOwnPropertyDescriptor(proto, name);
    const recv = rng.pick([
      () => hostile(),
      () => {
        const s = new native.Stream('cpu');
        return [s, 'Stream handle'];
      },
      () => {
        const e = new native.Event('cpu');
        return [e, 'Event handle'];
      },
      () => arg('tensor'),
    ])();
    const a = [arg(rng.pick(['stream', 'event', 'tensor', 'num'])), hostile()].slice(0, rng.int(3));
    if (desc.get) return { d: `(get ${cname}.prototype.${name}).call(${recv[1]})`, f: () => desc.get.call(recv[0]) };
    return {
      d: `${cname}.prototype.${name}.call(${[recv, ...a].map((x) => x[1]).join(', ')})`,
      f: () => desc.value.call(recv[0], ...a.map((x) => x[0])),
    };
  }

  // A small dataset: mostly valid, sometimes degenerate (1 row, classes beyond the labels).
  function dataset() {
    const rows = rng.pick([1, 2, 3, 5, 8, 17]);
    const features = rng.pick([2, 3, 4]);
    const classes = rng.pick([2, 3, 5]);
    const inputs = Float32Array.from({ length: rows * features }, () => rng.next() * 2 - 1);
    if (rng.chance(0.3)) {
      const targets = Float32Array.from({ length: rows * classes }, () => rng.next());
      return [new sg.Dataset('r', inputs, targets, features, classes), `Dataset(regression ${rows}x${features}→${classes})`];
    }
    const labels = Int32Array.from({ length: rows }, () => rng.int(classes));
    return [new sg.Dataset('c', inputs, labels, features, classes), `Dataset(classification ${rows}x${features}, ${classes} classes)`];
  }
  function model() {
    const i = rng.pick([2, 3, 4]);
    const o = rng.pick([2, 3, 5]);
    const kind = rng.int(4);
    if (kind === 0) return [sg.mlp(i, [rng.pick([3, 4])], o), `mlp(${i},[h],${o})`];
    if (kind === 1)
      return [
        new sg.Sequential([new sg.Linear(i, 4), new sg.Tanh(), new sg.Linear(4, o)]),
        `Sequential(Linear(${i},4),Tanh,Linear(4,${o}))`,
      ];
    if (kind === 2)
      return [
        sg.decouple(
          sg.mlp(i, [4, 4], o),
          rng.pick([{}, { synthesizer: { conditioned: true } }, { schedule: { kind: 'lockstep', pUpdate: 0.5 } }]),
        ),
        `decouple(mlp(${i},[4,4],${o}))`,
      ];
    return [new sg.Linear(i, o), `Linear(${i},${o})`];
  }
  const pickOr = (kind, make) => {
    const x = one(kind);
    return x && rng.chance(0.7) ? [x.v, x.d] : make();
  };
  const maybe = (valid) => (rng.chance(0.15) ? hostile() : valid);
  const optsWithNoise = (o, d) => {
    if (rng.chance(0.15)) {
      const k = rng.pick(['bogus', 'batchsize', 'lR', 'nesterov', 'hiddn']);
      return [{ ...o, [k]: 1 }, `${d} + {${k}: 1}`];
    }
    if (rng.chance(0.15)) {
      const keys = Object.keys(o);
      if (keys.length) {
        const k = rng.pick(keys);
        const [h, hd] = hostile();
        return [{ ...o, [k]: h }, `${d} with ${k}=${hd}`];
      }
    }
    return [o, d];
  };

  // Public-API actions: each returns { d, f } (f may return a Promise, which is awaited).
  const API = [
    () => {
      const [s, sd] = maybe([rng.pick(SHAPES), describeShape(rng.pick(SHAPES))]);
      const [o, od] = optsWithNoise(rng.chance(0.3) ? { dtype: 'int32' } : {}, rng.chance(0.3) ? "{dtype:'int32'}" : '{}');
      const z = rng.chance(0.5);
      return {
        d: `Tensor.${z ? 'zeros' : 'empty'}(${sd}, ${od})`,
        f: () => add('tensors', z ? sg.Tensor.zeros(s, o) : sg.Tensor.empty(s, o), 'Tensor'),
      };
    },
    () => {
      const shape = rng.pick(SHAPES);
      const n = shape.reduce((a, b) => a * b, 1);
      const [data, dd] = maybe(
        rng.pick([
          [Float32Array.from({ length: n }, () => rng.next()), `Float32Array(${n})`],
          [Array.from({ length: n }, () => rng.pick([1, 2.5, NaN, 1e10, -3])), `number[${n}] (NaN, 1e10 among them)`],
          [Int32Array.from({ length: n }, () => rng.int(9)), `Int32Array(${n})`],
        ]),
      );
      const [s, sd] = maybe([shape, describeShape(shape)]);
      const [o, od] = optsWithNoise(rng.chance(0.4) ? { dtype: 'int32' } : {}, '{dtype}');
      return { d: `Tensor.fromArray(${dd}, ${sd}, ${od})`, f: () => add('tensors', sg.Tensor.fromArray(data, s, o), 'Tensor') };
    },
    () => {
      const t = one('tensors');
      if (!t) return undefined;
      const [s, sd] = rng.chance(0.5) ? arg('stream') : [undefined, 'no stream'];
      return { d: `${t.d}.read(${sd})`, f: () => t.v.read(s instanceof sg.Stream ? s : s && new sg.Stream(cpu, s)) };
    },
    () => {
      const t = one('tensors');
      if (!t) return undefined;
      const [s, sd] = maybe([rng.pick(SHAPES), describeShape(rng.pick(SHAPES))]);
      return { d: `${t.d}.reshape(${sd})`, f: () => add('tensors', t.v.reshape(s), 'Tensor') };
    },
    () => {
      const t = one('tensors');
      if (!t) return undefined;
      return { d: `${t.d}.dispose()`, f: () => t.v.dispose() };
    },
    () => {
      const t = one('tensors');
      if (!t) return undefined;
      return {
        d: `${t.d}.readFloat32() / toString / size`,
        f: () => {
          void t.v.toString();
          void t.v.size;
          return t.v.readFloat32();
        },
      };
    },
    () => {
      const [d, dd] = maybe([cpu, 'cpu']);
      return { d: `new Stream(${dd})`, f: () => add('streams', new sg.Stream(d), 'Stream') };
    },
    () => {
      const [d, dd] = maybe([cpu, 'cpu']);
      return { d: `new Event(${dd})`, f: () => add('events', new sg.Event(d), 'Event') };
    },
    () => {
      const s = one('streams');
      const e = one('events');
      if (!s || !e) return undefined;
      const [ev, ed] = maybe([e.v, e.d]);
      return { d: `${s.d}.wait(${ed})`, f: () => s.v.wait(ev) };
    },
    () => {
      const s = one('streams');
      const e = one('events');
      if (!s || !e) return undefined;
      const [st, sd] = maybe([s.v, s.d]);
      return { d: `${e.d}.record(${sd})`, f: () => e.v.record(st) };
    },
    () => {
      const s = one('streams') ?? { v: sg.Stream.default(cpu), d: 'Stream.default' };
      return { d: `${s.d}.synchronize()`, f: () => s.v.synchronize() };
    },
    () => {
      const e = one('events');
      if (!e) return undefined;
      return { d: `${e.d}.synchronize()`, f: () => e.v.synchronize() };
    },
    () => {
      const [x, xd] = rng.pick([[0, '0'], [7, '7'], ...HOSTILE.slice(0, 20).map((h) => h())]);
      return { d: `Device.cuda(${xd}) / Device.parse`, f: () => (rng.chance(0.5) ? sg.Device.cuda(x) : sg.Device.parse(x)) };
    },
    () => ({
      d: 'Device.list/best/describe',
      f: () =>
        sg.Device.list()
          .map((d) => d.describe())
          .concat(sg.Device.best().name),
    }),
    () => {
      const s = one('streams') ?? { v: sg.Stream.default(cpu), d: 'Stream.default' };
      const inner = opCall(rng.pick(Object.keys(OPS)));
      const body = rng.pick([
        [() => inner.f(), `() => ${inner.d}`],
        [
          () => {
            throw new Error('body failed');
          },
          '() => { throw }',
        ],
        [async () => {}, 'async () => {}'],
        ...HOSTILE.slice(0, 6).map((h) => h()),
      ]);
      return { d: `Graph.capture(${s.d}, ${body[1]})`, f: () => add('graphs', sg.Graph.capture(s.v, body[0]), 'Graph') };
    },
    () => {
      const g = one('graphs');
      if (!g) return undefined;
      const s = one('streams') ?? { v: sg.Stream.default(cpu), d: 'Stream.default' };
      const [st, sd] = maybe([s.v, s.d]);
      return rng.chance(0.7) ? { d: `${g.d}.launch(${sd})`, f: () => g.v.launch(st) } : { d: `${g.d}.dispose()`, f: () => g.v.dispose() };
    },
    () => {
      const [a, ad] = maybe([rng.pick([2, 3, 4]), '']);
      const [b, bd] = maybe([rng.pick([2, 3]), '']);
      const [o, od] = optsWithNoise(rng.pick([{}, { bias: false }, { init: 'zeros' }]), '{...}');
      return { d: `new Linear(${ad || a}, ${bd || b}, ${od})`, f: () => add('modules', new sg.Linear(a, b, o), `Linear(${a},${b})`) };
    },
    () => {
      const [n, nd] = maybe([rng.pick([2, 3, 4]), '']);
      const [o, od] = optsWithNoise(rng.pick([{}, { momentum: 0.1 }, { eps: 1e-5 }]), '{...}');
      return { d: `new BatchNorm1d(${nd || n}, ${od})`, f: () => add('modules', new sg.BatchNorm1d(n, o), 'BatchNorm1d') };
    },
    () => {
      const [k, kd] = maybe(['relu', "'relu'"]);
      return { d: `new Activation(${kd})`, f: () => add('modules', new sg.Activation(k), 'Activation') };
    },
    () => {
      const ms = [one('modules'), one('modules')].filter(Boolean);
      const [l, ld] = maybe([ms.map((m) => m.v), `[${ms.map((m) => m.d).join(', ')}]`]);
      return { d: `new Sequential(${ld})`, f: () => add('modules', new sg.Sequential(l), 'Sequential') };
    },
    () => {
      const [i, id] = maybe([3, '3']);
      const [h, hd] = maybe([[4], '[4]']);
      const [c, cd] = maybe([2, '2']);
      return { d: `mlp(${id}, ${hd}, ${cd})`, f: () => add('modules', sg.mlp(i, h, c), 'mlp') };
    },
    () => {
      const [m, md] = pickOr('modules', model);
      const [o, od] = optsWithNoise(
        rng.pick([{}, { synthesizer: { conditioned: true } }, { schedule: { kind: 'pipelined', depth: 2 } }, { at: [0] }, { lambda: 0.5 }]),
        '{...}',
      );
      return { d: `decouple(${md}, ${od})`, f: () => add('modules', sg.decouple(m, o), 'decouple') };
    },
    () => {
      const adam = rng.chance(0.5);
      const [o, od] = optsWithNoise(
        rng.pick([{ lr: 0.01 }, { lr: 0.1, weightDecay: 1e-4 }, { lr: sg.learningRateSchedules.stepDecay(0.1, [2], 0.5) }]),
        '{lr,...}',
      );
      return {
        d: `new ${adam ? 'Adam' : 'SGD'}(${od})`,
        f: () => add('optimizers', adam ? new sg.Adam(o) : new sg.SGD(o), adam ? 'Adam' : 'SGD'),
      };
    },
    () => {
      const [a, ad] = rng.chance(0.5) ? hostile() : [0.1, '0.1'];
      const [b, bd] = rng.chance(0.5) ? hostile() : [[1, 2], '[1,2]'];
      return {
        d: `learningRateSchedules.stepDecay(${ad}, ${bd}) called`,
        f: () => sg.learningRateSchedules.stepDecay(a, b)(rng.pick([0, 1, 5, NaN])),
      };
    },
    () => {
      const [x, xd] = rng.pick([[0.1, '0.1'], hostile()]);
      return { d: `native.adamScalars(${xd}, 0.9, 0.999, 1)`, f: () => native.adamScalars(x, 0.9, 0.999, 1) };
    },
    () =>
      dataset() && {
        d: 'new Dataset(valid, small)',
        f: () => {
          const [ds, dd] = dataset();
          return add('datasets', ds, dd);
        },
      },
    () => {
      const args = [
        ['n', "'n'"],
        [new Float32Array(6), 'Float32Array(6)'],
        [new Int32Array(3), 'Int32Array(3)'],
        [2, '2'],
        [2, '2'],
      ].map((a) => maybe(a));
      return {
        d: `new Dataset(${args.map((a) => a[1]).join(', ')})`,
        f: () => add('datasets', new sg.Dataset(...args.map((a) => a[0])), 'Dataset'),
      };
    },
    () => {
      const [i, id] = maybe([
        [
          [1, 2],
          [3, 4],
        ],
        '[[1,2],[3,4]]',
      ]);
      const [t, td] = maybe([[0, 1], '[0,1]']);
      const [o, od] = optsWithNoise({}, '{}');
      return { d: `Dataset.fromArrays(${id}, ${td}, ${od})`, f: () => add('datasets', sg.Dataset.fromArrays(i, t, o), 'Dataset') };
    },
    () => {
      const ds = one('datasets');
      if (!ds) return undefined;
      const [n, nd] = maybe([1 + rng.int(4), '']);
      return { d: `${ds.d}.head(${nd || n})`, f: () => add('datasets', ds.v.head(n), 'Dataset') };
    },
    () => {
      const ds = one('datasets');
      if (!ds) return undefined;
      const [ix, ixd] = maybe([[0, 1], '[0,1]']);
      const [a, ad] = maybe([0, '0']);
      const [b, bd] = maybe([2, '2']);
      return { d: `${ds.d}.gather(${ixd}, ${ad}, ${bd})`, f: () => ds.v.gather(ix, a, b) };
    },
    () => {
      const [m, md] = pickOr('modules', model);
      const opt = one('optimizers');
      const [o, od] = optsWithNoise(
        { device: cpu, seed: rng.int(5), optimizer: opt && rng.chance(0.3) ? opt.v : () => new sg.SGD({ lr: 0.05 }) },
        '{device,seed,optimizer}',
      );
      return { d: `new Trainer(${md}, ${od})`, f: () => add('trainers', new sg.Trainer(m, o), 'Trainer') };
    },
    () => {
      const t = one('trainers');
      if (!t) return undefined;
      const [ds, dsd] = pickOr('datasets', dataset);
      const base = rng.pick([
        { epochs: 1, batchSize: 4 },
        { steps: 2, batchSize: 2 },
        { steps: 3, batchSize: 3, graph: true },
        { epochs: 1, batchSize: 2, shuffle: false, logEvery: 1, onStep: () => {} },
        { steps: 2, batchSize: 2, diagnoseEvery: 1 },
        { steps: 2, batchSize: 4, checkpoint: { path: path.join(tmp, `ck${rng.int(3)}`), every: 1 } },
      ]);
      const [o, od] = optsWithNoise(base, JSON.stringify(base));
      return { d: `${t.d}.fit(${dsd}, ${od})`, f: () => t.v.fit(ds, o) };
    },
    () => {
      const t = one('trainers');
      if (!t) return undefined;
      const [ds, dsd] = pickOr('datasets', dataset);
      const [o, od] = optsWithNoise({ batchSize: 2 }, '{batchSize:2}');
      return { d: `${t.d}.evaluate(${dsd}, ${od})`, f: () => t.v.evaluate(ds, o) };
    },
    () => {
      const t = one('trainers');
      if (!t) return undefined;
      const [x, xd] = rng.chance(0.5) ? pickOr('datasets', dataset) : maybe([new Float32Array(6), 'Float32Array(6)']);
      return {
        d: `${t.d}.predict(${xd})`,
        f: () =>
          t.v.predict(x).then((p) => {
            p.classes();
            p.probabilities();
          }),
      };
    },
    () => {
      const m = one('modules');
      if (!m) return undefined;
      const [x, xd] = rng.chance(0.5) ? pickOr('datasets', dataset) : maybe([new Float32Array(6), 'Float32Array(6)']);
      const [o, od] = optsWithNoise({ batchSize: 2 }, '{batchSize:2}');
      return { d: `predict(${m.d}, ${xd}, ${od})`, f: () => sg.predict(m.v, x, o) };
    },
    () => {
      const t = one('trainers');
      if (!t) return undefined;
      const file = path.join(tmp, `t${rng.int(3)}`);
      const save = rng.chance(0.5);
      return { d: `${t.d}.${save ? 'save' : 'load'}(<tmp>/${path.basename(file)})`, f: () => (save ? t.v.save(file) : t.v.load(file)) };
    },
    () => {
      const m = one('modules');
      if (!m) return undefined;
      const file = path.join(tmp, `m${rng.int(3)}`);
      const [p, pd] = rng.chance(0.85) ? [file, `<tmp>/${path.basename(file)}`] : hostile();
      return { d: `saveModel(${m.d}, ${pd})`, f: () => sg.saveModel(m.v, p) };
    },
    () => {
      const m = one('modules');
      if (!m) return undefined;
      const file = path.join(tmp, `m${rng.int(3)}`);
      const [o, od] = optsWithNoise({ device: cpu }, '{device}');
      return { d: `loadModel(${m.d}, <tmp>/${path.basename(file)}, ${od})`, f: () => sg.loadModel(m.v, file, o) };
    },
    () => {
      // a saved file with a few bytes changed, then loaded
      const m = one('modules');
      if (!m) return undefined;
      const file = path.join(tmp, `m${rng.int(3)}`);
      const pos = rng.next();
      const byte = rng.int(256);
      const cut = rng.chance(0.3);
      return {
        d: `corrupt <tmp>/${path.basename(file)} at ${pos.toFixed(3)} (${cut ? 'truncate' : `byte ${byte}`}) then loadModel(${m.d})`,
        f: () => {
          if (fs.existsSync(file)) {
            const b = fs.readFileSync(file);
            if (b.length) {
              if (cut) fs.truncateSync(file, Math.floor(pos * b.length));
              else {
                b[Math.floor(pos * b.length)] = byte;
                fs.writeFileSync(file, b);
              }
            }
          }
          return sg.loadModel(m.v, file);
        },
      };
    },
    () => {
      const x = rng.pick([one('trainers'), one('modules'), one('optimizers')]);
      if (!x) return undefined;
      return { d: `${x.d}.dispose()`, f: () => x.v.dispose() };
    },
    () => {
      const [s, sd] = maybe([rng.int(100), '']);
      return {
        d: `new Random(${sd || s}).normal/int/shuffle`,
        f: () => {
          const r = new sg.Random(s);
          r.normal();
          r.int(rng.pick([3, 0, -1, NaN]));
          r.shuffle([1, 2, 3]);
        },
      };
    },
  ];

  // Raw native actions beyond the ops.
  const NATIVE = [
    () => {
      const args = [
        maybe([rng.pick(SHAPES), 'shape']),
        maybe([rng.pick(['float32', 'int32']), 'dtype']),
        maybe(['cpu', "'cpu'"]),
        rng.chance(0.5) ? maybe(['zeros', "'zeros'"]) : hostile(),
      ];
      return {
        d: `new native.Tensor(${args.map((a) => (a[1] === 'shape' ? describeShape(a[0]) : a[1] === 'dtype' ? a[0] : a[1])).join(', ')})`,
        f: () => {
          const h = new native.Tensor(...args.map((a) => a[0]));
          pool.handles.push({ v: h, d: `native handle#${++serial}` });
        },
      };
    },
    () => {
      const [d, dd] = maybe(['cpu', "'cpu'"]);
      const ev = rng.chance(0.5);
      return { d: `new native.${ev ? 'Event' : 'Stream'}(${dd})`, f: () => (ev ? new native.Event(d) : new native.Stream(d)) };
    },
    () => {
      const [d, dd] = maybe(['cpu', "'cpu'"]);
      const fn = rng.pick(['defaultStream', 'deviceName']);
      return { d: `native.${fn}(${dd})`, f: () => native[fn](d) };
    },
    () => {
      const [n, nd] = rng.chance(0.5) ? hostile() : [rng.pick([1, 2]), ''];
      return { d: `native.threads(${nd || n})`, f: () => native.threads(n) };
    },
    () => {
      const [b, bd] = rng.chance(0.5) ? hostile() : [false, 'false'];
      return { d: `native.gemmTf32(${bd})`, f: () => native.gemmTf32(b) };
    },
    () => {
      const [s, sd] = arg('stream');
      const begin = rng.chance(0.5);
      return {
        d: `native.${begin ? 'beginCapture' : 'endCapture'}(${sd})`,
        f: () => {
          if (begin) native.beginCapture(s);
          else native.endCapture(s).dispose();
        },
      };
    },
    () => {
      const h = one('handles');
      if (!h) return undefined;
      const what = rng.int(4);
      const [x, xd] = rng.chance(0.5) ? arg(rng.pick(['stream', 'tensor'])) : hostile();
      if (what === 0) return { d: `${h.d}.read(${xd})`, f: () => h.v.read(x) };
      if (what === 1) return { d: `${h.d}.reshape(${xd})`, f: () => h.v.reshape(x) };
      if (what === 2) return { d: `${h.d}.sharesStorage(${xd})`, f: () => h.v.sharesStorage(x) };
      return { d: `${h.d}.dispose()`, f: () => h.v.dispose() };
    },
    () => {
      const [s, sd] = arg('stream');
      const [e, ed] = arg('event');
      return rng.chance(0.5)
        ? { d: `Stream.prototype.wait.call(${sd}, ${ed})`, f: () => native.Stream.prototype.wait.call(s, e) }
        : { d: `Event.prototype.record.call(${ed}, ${sd})`, f: () => native.Event.prototype.record.call(e, s) };
    },
    protoCall,
  ];

  const pickAction = () => {
    const r = rng.next();
    if (r < 0.35) return opCall(rng.pick(Object.keys(OPS)));
    if (r < 0.5) return rng.pick(NATIVE)();
    return rng.pick(API)();
  };

  const GENERIC =
    /^(Invalid argument|An? (number|string|boolean|object|array|function|bigint|symbol|external|TypedArray|ArrayBuffer|Promise|Date) was expected|Invalid (pointer|handle|type))\.?$/i;
  const ENGINE =
    /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not a constructor|Cannot convert|Cannot destructure|undefined is not|null is not|Cannot mix BigInt|Maximum call stack|Invalid array length|Invalid typed array length/;
  function record(e, d, counted = true) {
    if (!(e instanceof Error)) {
      stats.problems.push(`non-Error thrown (${typeof e}: ${String(e)}) by ${d}`);
      return;
    }
    // By inheritance: the library's errors may be subclasses (with a code) of these three.
    const cls =
      e instanceof TypeError
        ? 'TypeError'
        : e instanceof RangeError
          ? 'RangeError'
          : e.constructor === Error || e.name === 'Error'
            ? 'Error'
            : e.name || 'anonymous';
    if (counted) stats.errors[cls] = (stats.errors[cls] || 0) + 1;
    if (!['TypeError', 'RangeError', 'Error'].includes(cls))
      stats.problems.push(`${cls} (not a TypeError/RangeError/Error) '${e.message}' from ${d}`);
    else if (typeof e.message !== 'string' || !e.message.trim()) stats.problems.push(`${cls} without a message from ${d}`);
    else if (GENERIC.test(e.message.trim())) stats.problems.push(`unnamed ${cls} '${e.message}' from ${d}`);
    else if (ENGINE.test(e.message)) {
      const key = `${cls}: ${e.message.slice(0, 90)}`;
      if (!stats.unstyled[key]) stats.unstyled[key] = d.slice(0, 160);
    }
  }

  // SYNTHGRAD_FUZZ_INJECT=crash|hang|throw|report: call 5 of batch 0 aborts, loops, throws a
  // string or prints a UBSan-style report, so that test/fuzz.test.ts sees the harness catch each.
  const inject =
    batch === 0
      ? {
          crash: { d: 'injected crash: process.abort()', f: () => process.abort() },
          hang: {
            d: 'injected hang: for (;;)',
            f: () => {
              for (;;);
            },
          },
          throw: {
            d: "injected throw 'a string'",
            f: () => {
              // eslint-disable-next-line no-throw-literal -- the injected fault is a thrown non-Error
              throw 'a string';
            },
          },
          report: {
            d: 'injected sanitizer report',
            f: () => {
              fs.writeSync(2, 'x.cpp:1:1: runtime error: injected\n');
            },
          },
        }[process.env.SYNTHGRAD_FUZZ_INJECT]
      : undefined;
  for (let i = 0; i < calls; i++) {
    let call;
    // Building the arguments calls the library too (fresh tensors, streams, datasets, models).
    say(`ARGS ${i}`);
    try {
      call = inject && i === 5 ? inject : pickAction();
    } catch (e) {
      stats.argErrors++;
      record(e, `building the arguments of call ${i}`, false);
      continue;
    }
    if (!call) continue;
    current = `call ${i}: ${call.d}`;
    say(`CALL ${i} ${call.d}`);
    stats.calls++;
    try {
      const r = call.f();
      if (r && typeof r.then === 'function') {
        let timer;
        const watchdog = new Promise((resolve) => {
          timer = setTimeout(() => resolve('hang'), WATCHDOG_MS);
        });
        const outcome = await Promise.race([Promise.resolve(r).then(() => 'ok'), watchdog]);
        clearTimeout(timer);
        if (outcome === 'hang') {
          say(`HANG ${i} the Promise did not settle in ${WATCHDOG_MS / 1000} s`);
          process.exit(3);
        }
      }
      stats.ok++;
    } catch (e) {
      record(e, call.d);
    }
  }
  // Let any late rejection surface before the summary.
  await new Promise((resolve) => setTimeout(resolve, 20));
  for (const t of pool.trainers)
    try {
      t.v.dispose();
    } catch {
      /* may be disposed already */
    }
  fs.rmSync(tmp, { recursive: true, force: true });
  say(`DONE ${JSON.stringify(stats)}`);
}

// ---- the parent: batches in child processes, figures, verdict --------------------------------------
function flag(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got '${process.argv[i + 1] ?? ''}'`);
  return v;
}

function runChild(seed, batch, calls, timeoutS, dir) {
  return new Promise((resolve) => {
    const log = path.join(dir, `batch-${batch}.log`);
    // An address-space limit keeps an accepted huge allocation from taking the machine's memory;
    // ASan reserves terabytes of address space and cannot run under one.
    const limit = underAsan ? '' : 'ulimit -v 8388608; ';
    const child = spawn(
      '/bin/bash',
      ['-c', `${limit}exec "$0" "$@"`, process.execPath, __filename, '--child', String(seed), String(batch), String(calls), log],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    // The start of stderr (where a sanitizer report begins) and its end (where node's last words are).
    let stderrHead = '';
    let stderrTail = '';
    child.stderr.on('data', (c) => {
      if (stderrHead.length < 6000) stderrHead += c;
      stderrTail = (stderrTail + c).slice(-3000);
    });
    // A hang is no new call in the log for timeoutS seconds (a slow batch under ASan is no hang).
    let timedOut = false;
    let lastSize = -1;
    let lastChange = Date.now();
    const timer = setInterval(() => {
      const size = fs.existsSync(log) ? fs.statSync(log).size : 0;
      if (size !== lastSize) [lastSize, lastChange] = [size, Date.now()];
      else if (Date.now() - lastChange > timeoutS * 1000) {
        timedOut = true;
        child.kill('SIGKILL');
      }
    }, 500);
    child.on('close', (code, signal) => {
      clearInterval(timer);
      const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trimEnd().split('\n') : [];
      const done = lines.find((l) => l.startsWith('DONE '));
      const callLines = lines.filter((l) => l.startsWith('CALL '));
      const lastLine = lines.filter((l) => /^(CALL|ARGS) /.test(l)).pop();
      const last = !lastLine
        ? '(before the first call)'
        : lastLine.startsWith('ARGS ')
          ? `while building the arguments of the call after: ${callLines[callLines.length - 1]?.replace(/^CALL \d+ /, '') ?? '(none)'}`
          : lastLine.replace(/^CALL \d+ /, '');
      const lastIndex = lastLine ? Number(lastLine.split(' ')[1]) : -1;
      fs.rmSync(log, { force: true });
      const sanitizer = SANITIZER_REPORT.exec(stderrHead);
      const stderr = sanitizer ? stderrHead.slice(Math.max(0, sanitizer.index - 200)) : stderrTail;
      if (done && code === 0 && !sanitizer) {
        resolve({ stats: JSON.parse(done.slice(5)) });
        return;
      }
      const hangLine = lines.find((l) => l.startsWith('HANG '));
      const kind = sanitizer ? 'sanitizer report' : timedOut || hangLine ? 'hang' : 'crash';
      const how =
        sanitizer && done
          ? 'in the output of a batch that finished: at or before its last call, shown here'
          : timedOut
            ? `no progress for ${timeoutS} s (killed)`
            : hangLine
              ? hangLine.replace(/^HANG \d+ /, '')
              : signal
                ? `killed by ${signal}`
                : `exit code ${code}${done ? '' : ' before the batch finished'}`;
      const shown = sanitizer ? stderr.trim().split('\n').slice(0, 16) : stderr.trim().split('\n').slice(-12);
      resolve({
        failure: { kind, seed, batch, call: lastIndex, what: last, how, stderr: shown.join('\n') },
        calls: callLines.length,
        stats: done ? JSON.parse(done.slice(5)) : undefined,
      });
    });
  });
}

async function parent() {
  const seed = flag('--seed', 1);
  const target = flag('--calls', 10000);
  const perBatch = flag('--batch', 250);
  const timeoutS = flag('--timeout', 15);
  const jobs = flag('--jobs', 2);
  const started = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-fuzz-logs-'));
  const total = { calls: 0, ok: 0, errors: {}, argErrors: 0, problems: [], unstyled: {}, failures: [], batches: 0 };
  let nextBatch = 0;
  async function worker() {
    while (total.calls < target) {
      const batch = nextBatch++;
      const r = await runChild(seed, batch, perBatch, timeoutS, dir);
      total.batches++;
      if (r.stats) {
        total.calls += r.stats.calls;
        total.ok += r.stats.ok;
        total.argErrors += r.stats.argErrors;
        for (const [k, v] of Object.entries(r.stats.errors)) total.errors[k] = (total.errors[k] || 0) + v;
        for (const p of r.stats.problems) total.problems.push(`seed ${seed} batch ${batch}: ${p}`);
        Object.assign(total.unstyled, r.stats.unstyled);
      } else {
        total.calls += r.calls;
      }
      if (r.failure) total.failures.push(r.failure);
      if (total.batches > 4 * Math.ceil(target / perBatch) + 10) break; // most batches failing early
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  fs.rmSync(dir, { recursive: true, force: true });
  const seconds = (Date.now() - started) / 1000;

  const known = total.failures.filter((f) => knownCategory(f.what));
  const unknown = total.failures.filter((f) => !known.includes(f));
  const knownProblems = total.problems.filter((p) => knownCategory(p));
  const problems = total.problems.filter((p) => !knownProblems.includes(p));
  const errors =
    Object.entries(total.errors)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  console.log(`fuzz: seed ${seed}, ${total.calls} calls in ${total.batches} batches (child processes), ${seconds.toFixed(1)} s`);
  const thrown = Object.values(total.errors).reduce((a, b) => a + b, 0);
  console.log(
    `  returned normally ${total.ok}; errors thrown ${thrown}: ${errors} (counted in the batches that finished; ` +
      `and ${total.argErrors} while the fuzzer built arguments, not counted as calls)`,
  );
  const count = (fs, kind) => fs.filter((f) => f.kind === kind).length;
  const reports = count(unknown, 'sanitizer report');
  console.log(
    `  crashes ${count(unknown, 'crash')}, hangs ${count(unknown, 'hang')}, ${underAsan || reports ? `sanitizer reports ${reports}, ` : ''}badly formed errors ${problems.length}`,
  );
  if (TEMPORARY_KNOWN_FAILURES.length) {
    console.log(
      `  KNOWN, allowlisted by the TEMPORARY list (${TEMPORARY_KNOWN_FAILURES.length} categories): crashes ${count(known, 'crash')}, ` +
        `hangs ${count(known, 'hang')}, ${underAsan ? `sanitizer reports ${count(known, 'sanitizer report')}, ` : ''}badly formed errors ${knownProblems.length}`,
    );
    for (const k of TEMPORARY_KNOWN_FAILURES) {
      const n = known.filter((f) => k === knownCategory(f.what)).length + knownProblems.filter((p) => k === knownCategory(p)).length;
      console.log(`    ${n} x ${k.name}`);
    }
  }
  const unstyled = Object.entries(total.unstyled);
  if (unstyled.length) {
    console.log(`  UNSTYLED engine errors (they name no argument): ${unstyled.length} distinct`);
    for (const [msg, d] of unstyled.slice(0, 8)) console.log(`    ${msg}\n      from ${d}`);
  }
  for (const f of known)
    console.log(`  KNOWN ${f.kind} (allowlisted): seed ${f.seed} batch ${f.batch} call ${f.call}: ${f.what} -- ${f.how}`);
  for (const p of knownProblems.slice(0, 5)) console.log(`  KNOWN bad error (allowlisted): ${p}`);
  if (knownProblems.length > 5) console.log(`  ... and ${knownProblems.length - 5} more known bad errors`);
  for (const f of unknown) {
    console.log(
      `  ${f.kind.toUpperCase()}: seed ${f.seed} batch ${f.batch} call ${f.call} (replay: node scripts/fuzz.js --replay ${f.seed}:${f.batch})\n    ${f.what}\n    ${f.how}`,
    );
    if (f.stderr)
      console.log(
        f.stderr
          .split('\n')
          .map((l) => `    | ${l}`)
          .join('\n'),
      );
  }
  for (const p of problems.slice(0, 20)) console.log(`  BAD ERROR: ${p}`);
  if (problems.length > 20) console.log(`  ... and ${problems.length - 20} more`);
  const failed = unknown.length > 0 || problems.length > 0 || unstyled.length > 0 || total.calls < target;
  console.log(failed ? 'fuzz: FAILED' : 'fuzz: passed');
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[2] === '--child') {
  const [seed, batch, calls, log] = process.argv.slice(3);
  const fd = fs.openSync(log, 'w');
  runBatch(Number(seed), Number(batch), Number(calls), fd, false).then(
    () => process.exit(0),
    (e) => {
      fs.writeSync(fd, `FATAL ${e && e.stack}\n`);
      process.exit(2);
    },
  );
} else if (process.argv.includes('--replay')) {
  const [seed, batch] = process.argv[process.argv.indexOf('--replay') + 1].split(':').map(Number);
  const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-fuzz-replay-')), 'log');
  const fd = fs.openSync(log, 'w');
  runBatch(seed, batch, flag('--batch', 250), fd, true).then(() => {
    fs.rmSync(path.dirname(log), { recursive: true });
  });
} else {
  parent().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
