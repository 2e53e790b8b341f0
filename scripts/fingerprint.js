#!/usr/bin/env node
// Seeded-run fingerprints: trains small seeded runs of every training mode (backprop, DNI, cDNI,
// p < 1, pipelined, several streams, captured graphs, SGD and Adam; mlp() has BatchNorm) and prints one
// SHA-256 of each run's final weights. Run it before and after a refactor that must not change
// behaviour: equal lines mean bit-identical runs. (Fingerprints differ between GEMM instruction
// sets, so compare on one machine; SYNTHGRAD_ADDON=path fingerprints another build.)
//   node scripts/fingerprint.js            (needs dist/: npx tsc -p tsconfig.json)
'use strict';
const crypto = require('crypto');
const { Adam, SGD, Dataset, Device, Trainer, decouple, mlp } = require('../dist/ts');

function data() {
  const rows = [];
  const labels = [];
  for (let i = 0; i < 512; i++) {
    const row = [];
    for (let j = 0; j < 12; j++) row.push(Math.sin(i * 0.37 + j * 1.3) + 0.1 * Math.cos(i * j));
    rows.push(row);
    labels.push(i % 5);
  }
  return Dataset.fromArrays(rows, labels, { name: 'fingerprint', classes: 5 });
}

const runs = {
  'backprop adam': { model: () => mlp(12, [32, 32], 5), opt: () => new Adam({ lr: 1e-3 }) },
  'backprop sgd': { model: () => mlp(12, [32, 32], 5), opt: () => new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 1e-4 }) },
  dni: { model: () => decouple(mlp(12, [32, 32, 32], 5)), opt: () => new Adam({ lr: 1e-3 }) },
  'cdni lambda warmup': {
    model: () => decouple(mlp(12, [32, 32, 32], 5), { synthesizer: { conditioned: true }, lambda: 0.3, warmupSteps: 5 }),
    opt: () => new Adam({ lr: 1e-3 }),
  },
  'dni p=0.5': {
    model: () => decouple(mlp(12, [32, 32, 32], 5), { schedule: { kind: 'lockstep', pUpdate: 0.5 } }),
    opt: () => new Adam({ lr: 1e-3 }),
  },
  'dni pipelined 2': {
    model: () => decouple(mlp(12, [32, 32, 32], 5), { schedule: { kind: 'pipelined', depth: 2 } }),
    opt: () => new Adam({ lr: 1e-3 }),
  },
  'dni streams': { model: () => decouple(mlp(12, [32, 32, 32], 5), { streams: 'per-module' }), opt: () => new Adam({ lr: 1e-3 }) },
};

async function fingerprint(name, { model, opt }, graph) {
  const net = model();
  const trainer = new Trainer(net, { device: Device.cpu(), optimizer: opt, seed: 7 });
  await trainer.fit(data(), { epochs: 3, batchSize: 32, ...(graph ? { graph: true } : {}) });
  const hash = crypto.createHash('sha256');
  for (const p of net.parameters()) hash.update(Buffer.from((await p.value.read()).buffer));
  trainer.dispose();
  return hash.digest('hex').slice(0, 16);
}

(async () => {
  for (const [name, run] of Object.entries(runs)) {
    console.log(`${name.padEnd(24)} ${await fingerprint(name, run, false)}`);
    try {
      console.log(`${(name + ' graph').padEnd(24)} ${await fingerprint(name, run, true)}`);
    } catch (e) {
      console.log(`${(name + ' graph').padEnd(24)} n/a (${e.message.split('\n')[0]})`);
    }
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
