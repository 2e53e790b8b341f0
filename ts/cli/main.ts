#!/usr/bin/env node
// `npm start`: trains the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU; or another data set's,
// --data, ./data.ts) on the best device
// with backprop, DNI or cDNI, and prints one line per epoch (with each synthesizer's loss and
// cosine similarity to the true gradient for DNI/cDNI), then the test accuracy. Progress while
// it trains (a bar on a terminal, a line every few seconds on a pipe; --quiet, --json) is in
// ./progress.ts; --log-dir writes a run log (../train/runlog.ts) for `npx synthgrad report`.
//
//   npm start -- --method cdni --epochs 10 --batch-size 256 --lr 1e-3 --seed 0 --device cpu
// With --task copy|repeat-copy|text it trains a recurrent model instead (./sequences.ts).
// The options are in ./options.ts; what each configures, in ./configure.ts. With --checkpoint,
// SIGINT and SIGTERM save the run and exit (code 128 + the signal's number); a second one exits at once.
import { buildInfo, threads } from '../build-info';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import { readCheckpointConfig } from '../train/position';
import { Trainer } from '../train/trainer';
import { configure, deviceOf } from './configure';
import { loadData } from './data';
import { distributedMain } from './distributed';
import { optimizerName, parseArgs, usage } from './options';
import { Progress } from './progress';
import { isSequenceRun, parseSequenceArgs, runSequences, sequenceUsage } from './sequences';
import { exitCodeOf, stopOnSignals } from './signals';

/** `npm start -- --task ...`: a recurrent run (./sequences.ts). */
async function sequenceMain(argv: string[]): Promise<void> {
  const o = parseSequenceArgs(argv);
  if (o.help) {
    console.log(sequenceUsage);
    return;
  }
  const stop = o.checkpoint ? stopOnSignals() : undefined;
  const score = await runSequences(o, (line) => console.log(line), stop?.signal);
  stop?.remove();
  const signal = stop?.received();
  if (score.stopped && signal) {
    console.log(`stopped by ${signal}: saved ${o.checkpoint} after window ${score.windows}; run the same command again to resume`);
    process.exitCode = exitCodeOf(signal);
  }
}

async function main(): Promise<void> {
  if (isSequenceRun(process.argv.slice(2))) return sequenceMain(process.argv.slice(2));
  const o = parseArgs(process.argv.slice(2));
  if (o.help) {
    console.log(usage);
    return;
  }
  if (o.placement) return distributedMain(o);
  const device = deviceOf(o); // before the data loads: a bad --device fails fast
  const info = buildInfo();
  // `npm start -- --json | head` closes the pipe early: stop quietly, as command-line tools do.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(0);
  });
  const progress = new Progress({
    mode: o.json ? 'json' : o.quiet ? 'quiet' : process.stdout.isTTY ? 'bar' : 'lines',
    write: (text) => process.stdout.write(text),
    columns: () => process.stdout.columns,
  });
  const say = (line: string) => progress.info(line);
  say(
    `synthgrad: device ${device.name} (${device.describe()}), CPU GEMM ${info.cpuGemm}, ${threads()} threads` +
      (info.cuda ? `, CUDA built in (${info.cudaDevices} device(s))` : ', CUDA not built in'),
  );
  const { train, test, description } = await loadData(o.data);
  say(description);
  // A resumed run keeps the learning-rate decay steps planned when it started, so that more epochs extend it.
  const saved = o.checkpoint ? await readCheckpointConfig(o.checkpoint) : undefined;
  const planned = saved?.['lr decay steps'];
  const {
    model,
    decoupled,
    stepsPerEpoch,
    decaySteps,
    trainer: trainerOptions,
    fit,
  } = configure(
    o,
    train.count,
    Array.isArray(planned) && planned.every((s) => Number.isInteger(s)) ? (planned as number[]) : undefined,
    train,
  );
  const stepsTaken = stepsPerEpoch - (train.count % o.batchSize === 1 ? 1 : 0); // fit drops a 1-row tail
  progress.plan({ totalSteps: Math.min(o.steps ?? Infinity, o.epochs * stepsTaken), epochs: o.epochs, batchSize: o.batchSize });
  const layers = o.cnn
    ? `CNN-${o.cnn.blocks} (${o.cnn.filters} 5x5 filters per layer, max then average pools)`
    : `${train.features}-${o.hidden.join('-')}-${train.classes}`;
  say(
    `model: ${layers}, ${o.method === 'dtp' ? 'Tanh' : o.method === 'reinforce' || o.method === 'coagent' ? 'Bernoulli (Sigmoid) units' : 'BatchNorm + ReLU'}, ${o.method}` +
      (decoupled
        ? ` (${model.name}, ${o.pipeline > 0 ? `pipelined depth ${o.pipeline}` : 'lockstep'}, p ${o.pUpdate}, ${o.streams} streams` +
          `${o.center ? ', centred ĝ' : ''}${o.maskInactive ? ', fitted on active units' : ''})`
        : '') +
      `, ${optimizerName(o.optimizer)} lr ${o.lr}${o.synthLr === undefined ? '' : `, synthesizers Adam lr ${o.synthLr}`}` +
      ` (x0.1 at 60% and 85%), batch ${o.batchSize}, seed ${o.seed}`,
  );
  const trainer = new Trainer(model, trainerOptions);
  let lastDiagnostics: ModuleDiagnostics[] | undefined;
  if (saved)
    say(`resuming from ${o.checkpoint} (learning rate x0.1 at steps ${decaySteps.join(' and ')}, as planned when the run started)`);
  const stop = o.checkpoint ? stopOnSignals() : undefined;
  const result = await trainer.fit(train, {
    ...fit,
    validation: test,
    signal: stop?.signal,
    logDir: o.logDir ? { dir: o.logDir, config: { command: 'npm start', argv: process.argv.slice(2), options: o } } : undefined,
    onStep: (m) => {
      if (m.diagnostics) lastDiagnostics = m.diagnostics;
      progress.step(m);
    },
    onEpoch: (m) => progress.epoch(m, lastDiagnostics),
  });
  stop?.remove();
  if (result.resumedFrom !== undefined) say(`resumed after step ${result.resumedFrom}; ${result.steps} steps in all`);
  const signal = stop?.received();
  if (result.stopped && signal) {
    say(`stopped by ${signal}: saved ${o.checkpoint} at step ${result.steps}; run the same command again to resume`);
    trainer.dispose();
    process.exitCode = exitCodeOf(signal);
    return;
  }
  const final = await trainer.evaluate(test);
  progress.final({
    ...final,
    steps: result.steps,
    seconds: result.seconds,
    ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
  });
  trainer.dispose();
}

main().catch((e) => {
  if (process.stdout.isTTY) process.stdout.write('\r\x1b[K'); // the progress bar's line
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});
