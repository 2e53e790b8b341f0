// `npx synthgrad checkpoint merge|reshard ...`: a distributed run's per-rank checkpoints
// (`--placement ... --checkpoint DIR`) put together for one process, or for another placement
// (../distributed/reshard.ts). The command line's run configuration names the placement
// (--placement, saved with the other flags): merge drops it, so that `npm start` with the run's
// other flags and `--checkpoint FILE` resumes the merged file; reshard sets the new one.
import { mergeRankCheckpoints, reshardRankCheckpoints, readSavedRun, callerConfig } from '../distributed/reshard';
import { error } from '../errors';

export const checkpointUsage = `usage: synthgrad checkpoint merge DIR --out FILE [--step T] [--force]
       synthgrad checkpoint reshard DIR --placement R,R,... --out DIR2 [--ranks K] [--step T] [--force]
  DIR           a distributed run's per-rank checkpoints (rank-<r>.step-<t>.ckpt: --placement ... --checkpoint DIR)
  merge         writes one one-process checkpoint: npm start with the run's flags but --placement, and
                --checkpoint FILE, resumes it; Trainer.load(FILE) loads it
  reshard       writes the per-rank files for another placement (and rank count) into DIR2
  --step T      the step to read (default: the latest step every rank saved)
  --placement   the new run's rank of each module; --ranks K its rank count (default: the highest rank + 1)
  --force       replace FILE, or the per-rank files already in DIR2`;

const cliError = (message: string) => error('ERR_SYNTHGRAD_CLI', message);

function positiveInt(flag: string, value: string): number {
  const v = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(v) || v < 1)
    throw cliError(`checkpoint: ${flag} must be a positive integer, got '${value}'`);
  return v;
}

/** Runs `synthgrad checkpoint ...` (argv without 'checkpoint'); returns the line to print. */
export async function checkpointCommand(argv: string[]): Promise<string> {
  const [command, ...rest] = argv;
  if (command !== 'merge' && command !== 'reshard')
    throw cliError(`checkpoint: the command is merge or reshard, got '${command ?? ''}'\n${checkpointUsage}`);
  const takes = command === 'merge' ? ['--out', '--step'] : ['--out', '--step', '--placement', '--ranks'];
  const values: Record<string, string> = {};
  const dirs: string[] = [];
  let force = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--force') force = true;
    else if (takes.includes(a)) {
      const v = rest[++i];
      if (v === undefined || v === '') throw cliError(`checkpoint ${command}: ${a} needs a value`);
      values[a] = v;
    } else if (a.startsWith('--')) throw cliError(`checkpoint ${command}: unknown option '${a}'\n${checkpointUsage}`);
    else dirs.push(a);
  }
  if (dirs.length !== 1)
    throw cliError(`checkpoint ${command}: name one directory of per-rank checkpoints, got ${dirs.length}\n${checkpointUsage}`);
  const [dir] = dirs;
  const out = values['--out'];
  if (!out) throw cliError(`checkpoint ${command}: give --out ${command === 'merge' ? 'FILE' : 'DIR2'}\n${checkpointUsage}`);
  const step = values['--step'] === undefined ? undefined : positiveInt('--step', values['--step']);
  const run = await readSavedRun(dir, step);
  const was = `step ${run.step} of run ${run.identity.runId} (${run.identity.size} ranks, placement ${run.identity.placement.join(',')})`;
  const saved = callerConfig(run);
  if (command === 'merge') {
    const { '--placement': _placement, ...config } = saved;
    await mergeRankCheckpoints(dir, out, { step: run.step, overwrite: force, config });
    return `merged ${was} into ${out}`;
  }
  const given = values['--placement'];
  if (given === undefined)
    throw cliError(`checkpoint reshard: give --placement, the new rank of each module (e.g. 0,0,1)\n${checkpointUsage}`);
  if (!/^\d+(,\d+)*$/.test(given)) throw cliError(`checkpoint reshard: --placement must list ranks like 0,0,1, got '${given}'`);
  const placement = given.split(',').map(Number);
  const ranks = values['--ranks'] === undefined ? undefined : positiveInt('--ranks', values['--ranks']);
  const config = '--placement' in saved ? { ...saved, '--placement': placement } : saved;
  await reshardRankCheckpoints(dir, out, { step: run.step, placement, ranks, overwrite: force, config });
  return `resharded ${was} into ${out}: ${ranks ?? Math.max(...placement) + 1} ranks, placement ${placement.join(',')}`;
}
