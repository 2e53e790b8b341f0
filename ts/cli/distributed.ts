// `npm start -- --placement 0,1,2 ...` (or `npx synthgrad train ...`) under mpirun: the run of
// ./main.ts with the modules of the decoupled network on MPI ranks (docs/distributed.md). Every
// rank loads the data and builds the same model from the same flags. One rank reports: the rank
// of the last module, which has the loss (and, like every rank, the validation results and the
// synthesizers' diagnostics), prints the run's description, the progress, the epochs and the
// final test result, and writes the run log (--log-dir) that `npx synthgrad report` reads. The flags are checked before MPI starts
// where they can be (the addon, the placement against the modules, --transport against the
// device, the log directory); the ranks against mpirun's size right after. SIGINT and SIGTERM
// (Open MPI's mpirun sends SIGTERM to every rank when it gets either) stop every rank after the
// same step, with a save when --checkpoint is given (./signals.ts).
import { buildInfo } from '../build-info';
import { Device } from '../device';
import { connect } from '../distributed/connect';
import { distribute } from '../distributed/distribute';
import { MpiTransport, Transport, mpi, mpiAddonPath, mpiAvailable } from '../distributed/mpi';
import { NcclTransport, ncclMissing } from '../distributed/nccl';
import { rankFiles } from '../distributed/rank-checkpoint';
import { readCheckpoint } from '../train/checkpoint';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import { DecoupledNetwork } from '../dni/network';
import { error } from '../errors';
import { learningRateSchedules } from '../optim/optimizers';
import { FitLog } from '../train/runlog';
import type { FitOptions, FitResult } from '../train/trainer';
import { configure } from './configure';
import { loadData } from './data';
import { Options } from './options';
import { Progress } from './progress';
import { exitCodeOf, stopOnSignals } from './signals';

/**
 * Without --device, a rank whose best device is a GPU takes the GPU of its local rank (Open
 * MPI's OMPI_COMM_WORLD_LOCAL_RANK) among this host's, so that ranks on one host do not share
 * one GPU (NCCL needs a GPU per rank).
 */
function rankDevice(o: Options): string | undefined {
  if (o.device) return o.device;
  const best = Device.best();
  if (!best.isCuda) return undefined;
  const local = Number(process.env.OMPI_COMM_WORLD_LOCAL_RANK ?? 0);
  const gpus = Math.max(1, buildInfo().cudaDevices ?? 1);
  return `cuda:${Number.isInteger(local) && local >= 0 ? local % gpus : 0}`;
}

/**
 * The learning-rate decay steps saved in the newest file in `dir` of any rank (every file of a
 * run holds the same; with a directory per host, this host's may lack rank 0's), undefined when
 * there is none; a file that cannot be read is left to fit's resume, which names what is wrong.
 */
export async function plannedDecaySteps(dir: string): Promise<number[] | undefined> {
  const files = await rankFiles(dir).catch(() => []);
  if (!files.length) return undefined;
  try {
    const saved = await readCheckpoint(files[files.length - 1].file);
    const planned = (saved.host as { distributed?: { config?: Record<string, unknown> } } | null)?.distributed?.config?.['lr decay steps'];
    return Array.isArray(planned) && planned.every((s) => Number.isInteger(s)) ? (planned as number[]) : undefined;
  } catch {
    return undefined;
  }
}

export async function distributedMain(given: Options): Promise<void> {
  const placement = given.placement!;
  const transportName = given.transport ?? 'auto';
  if (!mpiAvailable()) {
    let why = '';
    try {
      mpi();
    } catch (e) {
      why = (e as Error).message.replace(/^synthgrad: /, '');
    }
    throw error('ERR_SYNTHGRAD_CLI', `--placement trains over MPI ranks, but ${why}`);
  }
  const o: Options = { ...given, device: rankDevice(given) };
  const { train, test, description } = await loadData(o.data);
  // A resumed run keeps the learning-rate decay steps planned when it started, so that more epochs extend it (as ./main.ts).
  const planned = o.checkpoint ? await plannedDecaySteps(o.checkpoint) : undefined;
  const { model, stepsPerEpoch, decaySteps, trainer, fit } = configure(o, train.count, planned, train);
  const network = model as DecoupledNetwork;
  const modules = network.modules.length;
  if (placement.length !== modules)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--placement lists ${placement.length} rank(s), but --method ${o.method} cuts this network into ${modules} modules ` +
        `(--at ${Array.isArray(o.at) ? o.at.join(',') : o.at}): give one rank per module, such as ${network.modules.map((_, i) => i).join(',')}`,
    );
  const device = trainer.device!;
  if (transportName === 'nccl') {
    if (!device.isCuda)
      throw error(
        'ERR_SYNTHGRAD_CLI',
        `--transport nccl moves GPU buffers, but the device is ${device.name}: use --transport mpi (host buffers) or auto on the CPU`,
      );
    const missing = ncclMissing();
    if (missing) throw error('ERR_SYNTHGRAD_CLI', `--transport nccl: ${missing}; --transport auto falls back to MPI`);
  }

  // What the reporting rank does with fit's callbacks; the log directory is checked on every rank, before MPI starts.
  const lrAt = learningRateSchedules.stepDecay(o.lr, decaySteps, 0.1);
  const reporting: FitOptions = {
    epochs: fit.epochs,
    steps: fit.steps,
    batchSize: fit.batchSize,
    logEvery: 1,
    diagnoseEvery: fit.diagnoseEvery,
    validation: test,
    checkpoint: fit.checkpoint,
    logDir: o.logDir ? { dir: o.logDir, config: { command: 'npm start', argv: process.argv.slice(2), options: o } } : undefined,
  };
  // Resuming (and so appending to the log) only when the directory holds rank files: a run that
  // died before its first save leaves the directory empty, and the next starts at step 0.
  const resumes = o.checkpoint !== undefined && (await rankFiles(o.checkpoint).catch(() => [])).length > 0;
  const log = FitLog.from(reporting, resumes);

  let transport: Transport;
  try {
    transport = await connect({ device, transport: transportName });
  } catch (e) {
    throw error('ERR_SYNTHGRAD_CLI', `--transport ${transportName}: ${(e as Error).message}`);
  }
  const top = Math.max(...placement);
  if (top >= transport.size) {
    transport.finalize(); // every rank finds the same, so every rank ends MPI here
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--placement names rank ${top}, but this run has ${transport.size} process(es)` +
        (transport.size === 1 ? ' (it was not started by mpirun)' : '') +
        `: start it with mpirun -np ${top + 1} (each rank in --placement must be below mpirun's -np)`,
    );
  }
  const rank = transport.rank;
  const reporter = placement[modules - 1];
  const progress = new Progress({
    mode: o.json ? 'json' : o.quiet ? 'quiet' : 'lines',
    write: rank === reporter ? (text) => process.stdout.write(text) : () => undefined,
  });
  const say = (line: string) => progress.info(line);
  const dist = distribute(network, { placement, transport, optimizer: trainer.optimizer, seed: trainer.seed, device });
  const host = (transport instanceof NcclTransport ? transport.host : transport) as MpiTransport;
  say(
    `synthgrad: ${transport.size} MPI ranks (${host.library}, transport ${mpiAddonPath()}), ` +
      `h and δ over ${dist.handOffs === 'nccl' ? `NCCL ${(transport as NcclTransport).version}` : 'MPI'} (--transport ${transportName}), ` +
      (given.device || !device.isCuda ? `device ${device.name} on each` : 'each rank on the GPU of its local rank'),
  );
  say(description);
  say(
    `model: ${network.name}, ${o.method}, placement ${placement.join(',')}: ` +
      [...Array(transport.size).keys()]
        .map((r) => `rank ${r} runs module ${placement.flatMap((p, i) => (p === r ? [i + 1] : [])).join(', ') || '(none)'}`)
        .join('; '),
  );
  const stepsTaken = stepsPerEpoch - (train.count % o.batchSize === 1 ? 1 : 0); // fit drops a 1-row tail
  progress.plan({ totalSteps: Math.min(o.steps ?? Infinity, o.epochs * stepsTaken), epochs: o.epochs, batchSize: o.batchSize });
  const stop = stopOnSignals(rank === reporter ? (line) => console.log(line) : () => undefined, o.checkpoint !== undefined);
  try {
    let result: Awaited<ReturnType<typeof dist.fit>> | undefined;
    // FitLog (the one-process run's log) wraps fit's callbacks: it sees the steps and epochs the reporting rank sees.
    const run = async (f: FitOptions): Promise<FitResult> => {
      result = await dist.fit(train, {
        epochs: fit.epochs,
        steps: fit.steps,
        batchSize: fit.batchSize,
        validation: test,
        diagnoseEvery: fit.diagnoseEvery,
        signal: stop.signal,
        checkpoint: fit.checkpoint ? { dir: fit.checkpoint.path, every: fit.checkpoint.every, config: fit.checkpoint.config } : undefined,
        onStep: (m) => f.onStep?.({ ...m, lr: lrAt(m.step - 1) }),
        onEpoch: (m) => f.onEpoch?.(m),
      });
      return {
        steps: result.steps,
        seconds: result.seconds,
        epochs: [],
        ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
      };
    };
    let lastDiagnostics: ModuleDiagnostics[] | undefined;
    const callbacks: FitOptions = {
      ...reporting,
      onStep: (m) => {
        if (m.diagnostics) lastDiagnostics = m.diagnostics;
        progress.step(m);
      },
      onEpoch: (m) => progress.epoch(m, lastDiagnostics),
    };
    if (log && rank === reporter) {
      const info = {
        model: network.name,
        device: device.name,
        loss: dist.trainer.loss.name,
        data: { rows: train.count, features: train.features },
      };
      await log.around(callbacks, { ...info, ranks: transport.size, placement, handOffs: dist.handOffs }, run);
    } else {
      await run(callbacks);
    }
    stop.remove();
    const r = result!;
    if (r.resumedFrom !== undefined)
      say(
        `resumed after step ${r.resumedFrom} from ${o.checkpoint} (learning rate x0.1 at steps ${decaySteps.join(' and ')}, ` +
          `as planned when the run started); ${r.steps} steps in all`,
      );
    const signal = stop.received();
    if (r.stopped) {
      say(
        `stopped by ${signal ?? 'a signal on another rank'}: ` +
          (o.checkpoint ? `saved ${o.checkpoint} at step ${r.steps}; run the same command again to resume` : `after step ${r.steps}`),
      );
      await transport.barrier();
      dist.dispose();
      transport.finalize();
      if (signal) process.exitCode = exitCodeOf(signal);
      return;
    }
    if (r.losses.length) say(`rank ${rank}: ${r.steps} steps, last loss ${r.losses[r.losses.length - 1].toFixed(4)}`);
    const final = await dist.evaluate(test);
    say(`rank ${rank} waited ${r.waitSeconds.toFixed(2)} s of ${r.seconds.toFixed(2)} s for the other ranks`);
    progress.final({
      ...final,
      steps: r.steps,
      seconds: r.seconds,
      ...(r.resumedFrom !== undefined ? { resumedFrom: r.resumedFrom } : {}),
    });
    await transport.barrier();
    dist.dispose();
    transport.finalize();
  } catch (e) {
    console.error(`error: rank ${rank}: ${(e as Error).message}`);
    transport.abort(1); // ends every rank: the others may wait for this one
  }
}
