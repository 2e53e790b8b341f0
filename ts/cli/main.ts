#!/usr/bin/env node
// `npm start`: trains the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU) on the best device
// with backprop, DNI or cDNI, and prints one line per epoch (with each synthesizer's loss and
// cosine similarity to the true gradient for DNI/cDNI), then the test accuracy.
//
//   npm start -- --method cdni --epochs 10 --batch-size 256 --lr 1e-3 --seed 0 --device cpu
// The options are in ./options.ts; what each configures, in ./configure.ts.
import * as fs from 'fs';
import { mnist } from '../data/mnist';
import { native } from '../native';
import { ModuleDiagnostics, Trainer } from '../train/trainer';
import { configure, deviceOf } from './configure';
import { Options, optimizerName, parseArgs, usage } from './options';

/**
 * The learning-rate schedule and the model come from the options, so a checkpoint is resumed
 * only with the options it was started with (kept next to it in FILE.options.json).
 */
function checkResumable(o: Options): void {
  const sidecar = `${o.checkpoint}.options.json`;
  const { checkpoint: _file, device: _device, help: _help, steps: _steps, at, center, maskInactive, optimizer, synthLr, ...common } = o; // the file and the device may change
  // Later options are named only when not at their defaults, so files saved before they existed still resume.
  const run = {
    ...common, ...(at !== 'every-activation' ? { at } : {}), ...(center ? { center } : {}), ...(maskInactive ? { maskInactive } : {}),
    ...(optimizer !== 'adam' ? { optimizer } : {}), ...(synthLr !== undefined ? { synthLr } : {}),
  };
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
  if (o.help) {
    console.log(usage);
    return;
  }
  const device = deviceOf(o); // before the data loads: a bad --device fails fast
  const info = native.buildInfo();
  console.log(`synthgrad: device ${device.name} (${device.describe()}), CPU GEMM ${info.cpuGemm}, ${native.threads()} threads` +
    (info.cuda ? `, CUDA built in (${info.cudaDevices} device(s))` : ', CUDA not built in'));
  const { train, test } = await mnist();
  console.log(`MNIST: ${train.count} training and ${test.count} test images`);
  const { model, decoupled, stepsPerEpoch, trainer: trainerOptions, fit } = configure(o, train.count);
  console.log(`model: 784-${o.hidden.join('-')}-10, BatchNorm + ReLU, ${o.method}` +
    (decoupled ? ` (${model.name}, ${o.pipeline > 0 ? `pipelined depth ${o.pipeline}` : 'lockstep'}, p ${o.pUpdate}, ${o.streams} streams` +
      `${o.center ? ', centred ĝ' : ''}${o.maskInactive ? ', fitted on active units' : ''})` : '') +
    `, ${optimizerName(o.optimizer)} lr ${o.lr}${o.synthLr === undefined ? '' : `, synthesizers Adam lr ${o.synthLr}`}` +
    ` (x0.1 at 60% and 85%), batch ${o.batchSize}, seed ${o.seed}`);
  const trainer = new Trainer(model, trainerOptions);
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
    ...fit,
    validation: test,
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
