#!/usr/bin/env node
// `npm start`: trains the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU) on the best device
// with backprop, DNI or cDNI, and prints one line per epoch (with each synthesizer's loss and
// cosine similarity to the true gradient for DNI/cDNI), then the test accuracy.
//
//   npm start -- --method cdni --epochs 10 --batch-size 256 --lr 1e-3 --seed 0 --device cpu
import * as fs from 'fs';
import { Device } from '../device';
import { mnist } from '../data/mnist';
import { mlp } from '../models';
import { native } from '../native';
import { decouple, Schedule } from '../dni/network';
import { Module } from '../nn/module';
import { Adam, schedules } from '../optim/optimizers';
import { ModuleDiagnostics, Trainer } from '../train/trainer';

const usage = `usage: npm start -- [options]
  --method backprop|dni|cdni   training method (default backprop)
  --epochs 10                  epochs over the 60,000 training images
  --batch-size 256
  --lr 1e-3                    Adam's learning rate (x0.1 at 60% and 85% of training)
  --hidden 256,256,256         hidden layer widths
  --seed 0
  --device cpu|cuda:0          default: the best device present
  --p-update 1                 DNI/cDNI: probability that a module updates at a step
  --pipeline 0                 DNI/cDNI: let modules run this many batches ahead (0: lockstep)
  --streams per-module|single  DNI/cDNI: one stream per module (default) or one in all
  --diagnose-every 100         DNI/cDNI: steps between synthesizer diagnostics
  --center                     DNI/cDNI: synthesizers centre ĝ over the batch (before Linear → BatchNorm)
  --mask-inactive              DNI/cDNI: synthesizers fit only the units with h > 0 (after a ReLU)
  --graph                      capture the training step once and replay it (backprop, lockstep p = 1)
  --checkpoint FILE            save the run to FILE after every epoch; if FILE exists, resume from it`;

interface Options {
  method: 'backprop' | 'dni' | 'cdni';
  pUpdate: number;
  pipeline: number;
  streams: 'per-module' | 'single';
  diagnoseEvery: number;
  graph: boolean;
  center: boolean;
  maskInactive: boolean;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  hidden: number[];
  device?: string;
  checkpoint?: string;
}

/** Flags without a value: each turns an option on. */
const switches = new Map<string, 'graph' | 'center' | 'maskInactive'>([['--graph', 'graph'], ['--center', 'center'], ['--mask-inactive', 'maskInactive']]);

function parseArgs(argv: string[]): Options {
  const o: Options = {
    method: 'backprop', pUpdate: 1, pipeline: 0, streams: 'per-module', diagnoseEvery: 100, graph: false, center: false, maskInactive: false,
    epochs: 10, batchSize: 256, lr: 1e-3, seed: 0, hidden: [256, 256, 256],
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const on = switches.get(flag);
    if (on) {
      o[on] = true;
      continue;
    }
    const value = argv[++i];
    const num = () => {
      const v = Number(value);
      if (value === undefined || !Number.isFinite(v)) throw new Error(`${flag} needs a number, got '${value}'`);
      return v;
    };
    switch (flag) {
      case '--epochs': o.epochs = num(); break;
      case '--batch-size': o.batchSize = num(); break;
      case '--lr': o.lr = num(); break;
      case '--seed': o.seed = num(); break;
      case '--hidden': o.hidden = (value ?? '').split(',').map(Number); break;
      case '--device': o.device = value; break;
      case '--checkpoint':
        if (!value) throw new Error('--checkpoint needs a file path');
        o.checkpoint = value;
        break;
      case '--method':
        if (value !== 'backprop' && value !== 'dni' && value !== 'cdni') throw new Error(`--method must be backprop, dni or cdni, got '${value}'`);
        o.method = value;
        break;
      case '--p-update': o.pUpdate = num(); break;
      case '--pipeline': o.pipeline = num(); break;
      case '--streams':
        if (value !== 'per-module' && value !== 'single') throw new Error(`--streams must be per-module or single, got '${value}'`);
        o.streams = value;
        break;
      case '--diagnose-every': o.diagnoseEvery = num(); break;
      case '--help':
        console.log(usage);
        process.exit(0);
      // falls through
      default: throw new Error(`unknown option '${flag}' (try --help)`);
    }
  }
  return o;
}

/**
 * The learning-rate schedule and the model come from the options, so a checkpoint is resumed
 * only with the options it was started with (kept next to it in FILE.options.json).
 */
function checkResumable(o: Options): void {
  const sidecar = `${o.checkpoint}.options.json`;
  const { checkpoint: _file, device: _device, center, maskInactive, ...common } = o; // the file and the device may change
  // The refinements are named only when on, so files saved before they existed still resume.
  const run = { ...common, ...(center ? { center } : {}), ...(maskInactive ? { maskInactive } : {}) };
  if (fs.existsSync(o.checkpoint!)) {
    const saved = fs.existsSync(sidecar) ? fs.readFileSync(sidecar, 'utf8') : undefined;
    if (saved !== JSON.stringify(run))
      throw new Error(`--checkpoint ${o.checkpoint} was started with other options (${saved ?? 'unknown'}); resume it with the same ones`);
    console.log(`resuming from ${o.checkpoint}`);
  } else {
    fs.writeFileSync(sidecar, JSON.stringify(run));
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const device = o.device ? Device.parse(o.device) : Device.best();
  const info = native.buildInfo();
  console.log(`synthgrad: device ${device.name} (${device.describe()}), CPU GEMM ${info.cpuGemm}, ${native.threads()} threads` +
    (info.cuda ? `, CUDA built in (${info.cudaDevices} device(s))` : ', CUDA not built in'));
  const { train, test } = await mnist();
  console.log(`MNIST: ${train.count} training and ${test.count} test images`);
  const mlpModel = mlp(784, o.hidden, 10);
  const decoupled = o.method !== 'backprop';
  const schedule: Schedule = o.pipeline > 0
    ? { kind: 'pipelined', depth: o.pipeline, pUpdate: o.pUpdate }
    : { kind: 'lockstep', pUpdate: o.pUpdate };
  const model: Module = decoupled
    ? decouple(mlpModel, {
      synthesizer: { conditioned: o.method === 'cdni', center: o.center, maskInactive: o.maskInactive }, schedule, streams: o.streams,
    })
    : mlpModel;
  console.log(`model: 784-${o.hidden.join('-')}-10, BatchNorm + ReLU, ${o.method}` +
    (decoupled ? ` (${model.name}, ${o.pipeline > 0 ? `pipelined depth ${o.pipeline}` : 'lockstep'}, p ${o.pUpdate}, ${o.streams} streams` +
      `${o.center ? ', centred ĝ' : ''}${o.maskInactive ? ', fitted on active units' : ''})` : '') +
    `, Adam lr ${o.lr} (x0.1 at 60% and 85%), batch ${o.batchSize}, seed ${o.seed}`);
  const stepsPerEpoch = Math.ceil(train.count / o.batchSize);
  // Step decay (x0.1 at 60% and 85% of training) settles the noisy late epochs of a constant lr.
  const total = o.epochs * stepsPerEpoch;
  const lr = schedules.stepDecay(o.lr, [Math.round(0.6 * total), Math.round(0.85 * total)], 0.1);
  // A factory: a decoupled network gives each module (and synthesizer) its own optimizer.
  const trainer = new Trainer(model, { device, optimizer: () => new Adam({ lr }), seed: o.seed });
  const bar = (step: number) => {
    const done = ((step - 1) % stepsPerEpoch) + 1;
    const width = 30;
    const filled = Math.round((done / stepsPerEpoch) * width);
    return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${stepsPerEpoch}`;
  };
  const tty = process.stdout.isTTY;
  let lastDiagnostics: ModuleDiagnostics[] | undefined;
  const describeDiagnostics = (d: ModuleDiagnostics[]) =>
    d.map((m) => `M${m.module}: loss ${m.synthesizerLoss.toExponential(2)} cos ${m.cosine.toFixed(3)} (to its target ${m.targetCosine.toFixed(3)}) |ĝ|/|g| ${m.normRatio.toFixed(2)}`).join('  ');
  if (o.checkpoint) checkResumable(o);
  const result = await trainer.fit(train, {
    epochs: o.epochs,
    batchSize: o.batchSize,
    validation: test,
    logEvery: 10,
    diagnoseEvery: decoupled ? o.diagnoseEvery : undefined,
    graph: o.graph,
    checkpoint: o.checkpoint ? { path: o.checkpoint, every: stepsPerEpoch } : undefined,
    onStep: (m) => {
      if (m.diagnostics) lastDiagnostics = m.diagnostics;
      if (tty) process.stdout.write(`\repoch ${m.epoch} ${bar(m.step)} loss ${m.loss.toFixed(4)}   `);
    },
    onEpoch: (m) => {
      if (tty) process.stdout.write('\r\x1b[K');
      const v = m.validation!;
      console.log(`epoch ${String(m.epoch).padStart(2)}  train loss ${m.loss.toFixed(4)}  test loss ${v.loss.toFixed(4)}  ` +
        `test accuracy ${(100 * v.accuracy).toFixed(2)}%  ${Math.round(m.samplesPerSecond)} samples/s  ${m.seconds.toFixed(1)} s`);
      if (lastDiagnostics) console.log(`          synthesizers (probe batch): ${describeDiagnostics(lastDiagnostics)}`);
    },
  });
  if (result.resumedFrom !== undefined) console.log(`resumed after step ${result.resumedFrom}; ${result.steps} steps in all`);
  const final = await trainer.evaluate(test);
  console.log(`final test accuracy: ${(100 * final.accuracy).toFixed(2)}% (${final.count} images)`);
  trainer.dispose();
}

main().catch((e) => {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});
