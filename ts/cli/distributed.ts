// `npm start -- --placement 0,1,2 ...` (or `npx synthgrad train ...`) under mpirun: the run of
// ./main.ts with the modules of the decoupled network on MPI ranks (docs/distributed.md). Every
// rank loads the data and builds the same model from the same flags; rank 0 prints the run's
// description and the final test result, the rank of the last module (which has the loss)
// prints the training progress. The flags are checked before MPI starts where they can be
// (the addon, the placement against the modules); the ranks against mpirun's size right after.
import { distribute } from '../distributed/distribute';
import { mpi, mpiAddonPath, mpiAvailable } from '../distributed/mpi';
import { DecoupledNetwork } from '../dni/network';
import { error } from '../errors';
import { configure } from './configure';
import { loadData } from './data';
import { Options } from './options';
import { Progress } from './progress';

export async function distributedMain(o: Options): Promise<void> {
  const placement = o.placement!;
  if (!mpiAvailable()) {
    let why = '';
    try {
      mpi();
    } catch (e) {
      why = (e as Error).message.replace(/^synthgrad: /, '');
    }
    throw error('ERR_SYNTHGRAD_CLI', `--placement trains over MPI ranks, but ${why}`);
  }
  const { train, test, description } = await loadData(o.data);
  const { model, stepsPerEpoch, trainer, fit } = configure(o, train.count, undefined, train);
  const network = model as DecoupledNetwork;
  const modules = network.modules.length;
  if (placement.length !== modules)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--placement lists ${placement.length} rank(s), but --method ${o.method} cuts this network into ${modules} modules ` +
        `(--at ${Array.isArray(o.at) ? o.at.join(',') : o.at}): give one rank per module, such as ${network.modules.map((_, i) => i).join(',')}`,
    );

  const transport = mpi();
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
  const last = placement[modules - 1];
  const progress = new Progress({
    mode: o.json ? 'json' : o.quiet ? 'quiet' : 'lines',
    write: (text) => process.stdout.write(text),
  });
  const say = (line: string) => {
    if (rank === 0) progress.info(line);
  };
  say(`synthgrad: ${transport.size} MPI ranks (${transport.library}, transport ${mpiAddonPath()}), device ${trainer.device!.name} on each`);
  say(description);
  say(
    `model: ${network.name}, ${o.method}, placement ${placement.join(',')}: ` +
      [...Array(transport.size).keys()]
        .map((r) => `rank ${r} runs module ${placement.flatMap((p, i) => (p === r ? [i + 1] : [])).join(', ') || '(none)'}`)
        .join('; '),
  );
  progress.plan({ totalSteps: Math.min(o.steps ?? Infinity, o.epochs * stepsPerEpoch), epochs: o.epochs, batchSize: o.batchSize });
  const dist = distribute(network, { placement, transport, optimizer: trainer.optimizer, seed: trainer.seed, device: trainer.device });
  try {
    const result = await dist.fit(train, {
      epochs: fit.epochs,
      steps: fit.steps,
      batchSize: fit.batchSize,
      checkpoint: fit.checkpoint ? { dir: fit.checkpoint.path, every: fit.checkpoint.every, config: fit.checkpoint.config } : undefined,
      onStep: (m) => progress.step({ ...m, lr: NaN }),
    });
    if (result.resumedFrom !== undefined && rank === last) progress.info(`resumed after step ${result.resumedFrom} from ${o.checkpoint}`);
    if (rank === last && result.losses.length)
      progress.info(`rank ${rank}: ${result.steps} steps, last loss ${result.losses[result.losses.length - 1].toFixed(4)}`);
    const final = await dist.evaluate(test);
    if (rank === 0) {
      progress.info(`rank 0 waited ${result.waitSeconds.toFixed(2)} s of ${result.seconds.toFixed(2)} s for the other ranks`);
      progress.final({ ...final, steps: result.steps, seconds: result.seconds });
    }
    await transport.barrier();
    dist.dispose();
    transport.finalize();
  } catch (e) {
    console.error(`error: rank ${rank}: ${(e as Error).message}`);
    transport.abort(1); // ends every rank: the others may wait for this one
  }
}
