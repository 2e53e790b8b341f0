#!/usr/bin/env node
// Leak check: memory over 100,000 op calls and 20,000 training steps must stay flat once warmed
// up. Printed as growth per 10,000 calls / steps, measured after a full GC (so memory that is
// only waiting for the collector does not count); exits 1 above the thresholds. Three figures:
//   native RSS  the resident memory less V8's heap (RSS itself jumps by megabytes whenever V8
//               decides to grow its heap, which is no leak): what the addon and malloc hold
//   external    V8's external memory: the ArrayBuffers (read() results, input arrays). The
//               addon reports each tensor's buffer with AdjustExternalMemory (handles.cpp), but on
//               Node 20 that accounting does not show in this figure: tensors count in native RSS
//   JS heap     the live JavaScript objects (heapUsed)
//
//   node --expose-gc scripts/leak-check.js [--ops 100000] [--steps 20000]     (needs dist/: npx tsc)
//   node scripts/leak-check.js --inject-leak     keeps one tensor [4] per op iteration and per
//                                                training step alive: the check must then fail
//
// The op calls, on the CPU: tensors made from arrays and with zeros (one in ten left to the
// garbage collector instead of dispose(), so the finalizers are checked too), a reshape, GEMM,
// a fused linear layer, activations, a softmax cross-entropy, a copy, an Adam step, a read()
// every 50 iterations and a synchronize() every 10 (so the queue stays short). The training: a
// small MLP (16-32-4, BatchNorm + ReLU) with Adam, 20,000 steps of fit() in batches of 32.
//
// Warm-up (allocator pools, JIT, the first GC cycles) is the first fifth of each phase; the growth
// is the least-squares slope of the samples taken after it (one per 2,000 calls or 1,000 steps).
// Thresholds per 10,000 calls or steps: native RSS 1 MiB, external 64 KiB, JS heap 256 KiB. One
// leaked tensor [4] (16 bytes, with its handle, storage and wrapper some 500 bytes) per op
// iteration or training step exceeds them (--inject-leak shows it); fit() keeps a little per
// epoch (its history: some 10 bytes a step at 16 steps per epoch), well under the JS heap limit.
'use strict';
const path = require('path');

const MiB = 1024 * 1024;
const LIMITS = { native: 1 * MiB, external: 64 * 1024, heap: 256 * 1024 };

if (typeof global.gc !== 'function') {
  // Re-run with the collector exposed (the measurements need a full GC before each sample).
  const { spawnSync } = require('child_process');
  const r = spawnSync(process.execPath, ['--expose-gc', __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

function flag(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1000) throw new RangeError(`${name} must be an integer >= 1000, got '${process.argv[i + 1] ?? ''}'`);
  return v;
}

const sg = require(path.join(__dirname, '..', 'dist', 'ts'));
const injectLeak = process.argv.includes('--inject-leak');
const leaked = [];
const { native } = sg;

function sample() {
  global.gc();
  global.gc();
  const m = process.memoryUsage();
  return { rss: m.rss, native: m.rss - m.heapTotal, external: m.external, heap: m.heapUsed };
}

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

/** Growth per 10,000 units after warm-up, from samples { at, rss, external }. */
function growth(samples, warmup) {
  const after = samples.filter((s) => s.at >= warmup);
  const xs = after.map((s) => s.at / 10_000);
  const per = (k) =>
    slope(
      xs,
      after.map((s) => s[k]),
    );
  return { rss: per('rss'), native: per('native'), external: per('external'), heap: per('heap'), samples: after.length };
}

async function opCalls(total) {
  const stream = new sg.Stream(sg.Device.cpu());
  const s = stream.handle;
  const rng = new sg.Random(3);
  const x = sg.Tensor.fromArray(rng.uniformArray(8 * 16, -1, 1), [8, 16]);
  const w = sg.Tensor.fromArray(rng.uniformArray(4 * 16, -1, 1), [4, 16]);
  const bias = sg.Tensor.zeros([4]);
  const y = sg.Tensor.empty([8, 4]);
  const probs = sg.Tensor.empty([8, 4]);
  const loss = sg.Tensor.empty([1]);
  const labels = sg.Tensor.fromArray(
    Int32Array.from({ length: 8 }, (_, i) => i % 4),
    [8],
  );
  const m = sg.Tensor.zeros([4, 16]);
  const v = sg.Tensor.zeros([4, 16]);
  const hyper = sg.Tensor.zeros([2]);
  const inputs = rng.uniformArray(8 * 4, -1, 1);
  const samples = [];
  let calls = 0;
  for (let it = 0; calls < total; it++) {
    const a = sg.Tensor.fromArray(inputs, [8, 4]);
    const g = sg.Tensor.zeros([4, 16]);
    const r = a.reshape([32]);
    native.ops.linearForward(s, x.handle, w.handle, bias.handle, y.handle, 'relu');
    native.ops.gemm(s, a.handle, x.handle, g.handle, true, false, 0.1, 0);
    native.ops.activationForward(s, 'tanh', a.handle, a.handle);
    native.ops.softmaxCrossEntropyForward(s, y.handle, labels.handle, probs.handle, loss.handle);
    native.ops.copy(s, r.handle, r.handle);
    native.ops.writeScalars(s, hyper.handle, native.adamScalars(1e-6, 0.9, 0.999, it + 1));
    native.ops.adamStepGroup(s, [w.handle], [g.handle], [m.handle], [v.handle], hyper.handle, 0.9, 0.999, 1e-8, 0);
    calls += 10; // the two tensors, the reshape and seven ops (the Adam step: scalars, then the group)
    if (it % 50 === 0) {
      await loss.read(stream);
      calls++;
    }
    if (it % 10 === 0) {
      await stream.synchronize();
      calls++;
    }
    // One in ten left to the garbage collector: the finalizer must free it as dispose() does.
    if (injectLeak) leaked.push(sg.Tensor.zeros([4]));
    if (it % 10 !== 3) {
      a.dispose();
      g.dispose();
      r.dispose();
    }
    if (Math.floor(calls / 2000) !== Math.floor((calls - 11) / 2000) || calls >= total) {
      await stream.synchronize();
      samples.push({ at: calls, ...sample() });
    }
  }
  await stream.synchronize();
  for (const t of [x, w, bias, y, probs, loss, labels, m, v]) t.dispose();
  return samples;
}

async function training(steps) {
  const rng = new sg.Random(7);
  const rows = 512;
  const data = new sg.Dataset(
    'leak',
    rng.uniformArray(rows * 16, -1, 1),
    Int32Array.from({ length: rows }, () => rng.int(4)),
    16,
    4,
  );
  const trainer = new sg.Trainer(sg.mlp(16, [32], 4), { device: sg.Device.cpu(), seed: 1, optimizer: new sg.Adam({ lr: 1e-3 }) });
  const samples = [];
  await trainer.fit(data, {
    steps,
    batchSize: 32,
    logEvery: 1000,
    onStep: (m) => {
      samples.push({ at: m.step, ...sample() });
    },
    ...(injectLeak
      ? {
          logEvery: 1,
          onStep: (m) => {
            leaked.push(sg.Tensor.zeros([4]));
            if (m.step % 1000 === 0) samples.push({ at: m.step, ...sample() });
          },
        }
      : {}),
  });
  trainer.dispose();
  return samples;
}

function report(what, unit, samples, total) {
  const g = growth(samples, total / 5);
  const first = samples.find((s) => s.at >= total / 5);
  const last = samples[samples.length - 1];
  const kb = (b) => `${(b / 1024).toFixed(1)} KiB`;
  const ok = Object.keys(LIMITS).every((k) => g[k] <= LIMITS[k]);
  const mib = (b) => `${(b / MiB).toFixed(1)}`;
  console.log(
    `  ${what}: ${total} ${unit}; from the end of warm-up (${first.at}) to the end: RSS ${mib(first.rss)} → ${mib(last.rss)} MiB, ` +
      `native RSS ${mib(first.native)} → ${mib(last.native)} MiB, external ${kb(first.external)} → ${kb(last.external)}, JS heap ${mib(first.heap)} → ${mib(last.heap)} MiB`,
  );
  console.log(
    `    growth per 10,000 ${unit} (${g.samples} samples): native RSS ${kb(g.native)} (limit ${kb(LIMITS.native)}), external ${kb(g.external)} ` +
      `(limit ${kb(LIMITS.external)}), JS heap ${kb(g.heap)} (limit ${kb(LIMITS.heap)}); RSS ${kb(g.rss)} (not judged): ${ok ? 'flat' : 'GROWING'}`,
  );
  return ok;
}

async function main() {
  const ops = flag('--ops', 100_000);
  const steps = flag('--steps', 20_000);
  const started = Date.now();
  console.log('leak check: memory after a full GC, growth per 10,000 after warm-up (the first fifth)');
  const okOps = report('op calls', 'calls', await opCalls(ops), ops);
  const okTrain = report('training (MLP 16-32-4, Adam, fit)', 'steps', await training(steps), steps);
  console.log(`leak check: ${okOps && okTrain ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.exitCode = okOps && okTrain ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
