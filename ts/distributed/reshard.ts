// A distributed run's per-rank checkpoints (./rank-checkpoint.ts) of one step, put together:
//   mergeRankCheckpoints    one file in the one-process format (../train/trainer.ts's fit
//                           checkpoint), which Trainer.load() and Trainer.fit({ checkpoint })
//                           take: to evaluate the trained model, or continue it, in one process
//   reshardRankCheckpoints  per-rank files for another placement or rank count, from which
//                           distribute()'s fit resumes (docs/distributed.md, "Moving checkpoints")
// Both read the files only (no network is built): a rank file names its tensors by module
// (module<i>.<k>, module<i>.optimizer.<k>, synthesizer<i>..., input<i>...) and its host record
// holds the run's position, step counts and the stochastic updates' generator, which is all
// that a one-process checkpoint holds, but for what a rank does not save and is derived here:
// the trainer's generator (Random(seed) after its two forks: the weights' and the shuffling's)
// and the epoch's step and row counts (from the position; its loss sum is saved by the rank
// of the last module). Lockstep runs equal the one-process run bit for bit, so the merged file
// of step t is the one-process run's checkpoint of step t, byte for byte (tested).
import { promises as fsp } from 'fs';
import * as path from 'path';
import { error } from '../errors';
import { Random } from '../random';
import { LoadedCheckpoint, SavedTensor, checkDestination, readCheckpoint, writeCheckpointValues } from '../train/checkpoint';
import type { FitProgress, TrainerRecord } from '../train/position';
import { FIT_CONFIG_KEYS, Position, RankRecord } from './distribute';
import { RankIdentity, fingerprintOf, rankFile } from './rank-checkpoint';

const NAME = /^rank-(\d+)\.step-(\d+)\.ckpt$/;
const TENSOR = /^(module|synthesizer|input)(\d+)(\.optimizer)?\.(\d+)$/;

type Part = 'module' | 'synthesizer' | 'input';

/** One module's saved state: its tensors by part, and its optimizers' step counts. */
interface ModuleState {
  tensors: Record<`${Part}${'' | '.optimizer'}`, SavedTensor[]>;
  optimizerSteps: number;
  synthesizerSteps?: number;
  inputSteps?: number;
}

/** Every rank's file of one step, checked to be of one run, and their state by module. */
export interface SavedRun {
  dir: string;
  step: number;
  /** rank 0's identity (the others' differ only in rank) */
  identity: RankIdentity;
  position: Position;
  updateRng: number[];
  /** the complete unlock: the files hold input models */
  unlock: boolean;
  modules: ModuleState[];
}

const refuse = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${why}`);

/** The rank files in `dir`, as rank → their steps (ascending). */
async function listRankFiles(dir: string): Promise<Map<number, number[]>> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    throw refuse(`cannot read the directory ${dir}: ${(e as Error).message}`);
  }
  const found = new Map<number, number[]>();
  for (const m of names.map((n) => NAME.exec(n))) {
    if (!m) continue;
    const rank = Number(m[1]);
    found.set(
      rank,
      [...(found.get(rank) ?? []), Number(m[2])].sort((a, b) => a - b),
    );
  }
  return found;
}

const stepsOf = (found: Map<number, number[]>, rank: number) => {
  const steps = found.get(rank) ?? [];
  return steps.length ? `rank ${rank} has step${steps.length > 1 ? 's' : ''} ${steps.join(', ')}` : `rank ${rank} has no file`;
};

/**
 * Reads every rank's file of `step` in `dir` (default: the latest step every rank saved) and
 * checks that they are one run's: each file valid (checksums), of its rank, of that step, of the
 * same run id, rank count, placement and settings, holding its own modules' state and nothing
 * else. Throws ERR_SYNTHGRAD_CHECKPOINT naming the file and what is wrong.
 */
export async function readSavedRun(dir: string, step?: number): Promise<SavedRun> {
  if (typeof dir !== 'string' || dir === '') throw refuse(`the directory of per-rank files must be a path, got ${JSON.stringify(dir)}`);
  if (step !== undefined && !(Number.isInteger(step) && step > 0)) throw refuse(`'step' must be a positive integer, got ${String(step)}`);
  const found = await listRankFiles(dir);
  if (found.size === 0) throw refuse(`${dir} holds no per-rank checkpoint (rank-<r>.step-<t>.ckpt)`);
  const ranksFound = [...found.keys()].sort((a, b) => a - b);
  if (step === undefined) {
    const common = [...found.values()].reduce((a, b) => a.filter((t) => b.includes(t)));
    if (!found.has(0) || common.length === 0)
      throw refuse(`the ranks' files in ${dir} have no step in common: ${ranksFound.map((r) => stepsOf(found, r)).join('; ')}`);
    step = common[common.length - 1];
  }
  const read = async (rank: number): Promise<{ saved: LoadedCheckpoint; record: RankRecord }> => {
    const file = rankFile(dir, rank, step!);
    if (!(found.get(rank) ?? []).includes(step!))
      throw refuse(`rank ${rank}'s file of step ${step} (${file}) is missing: ${stepsOf(found, rank)}`);
    const saved = await readCheckpoint(file);
    const record = saved.host as RankRecord | null;
    const id = record?.distributed;
    if (!id || typeof id.runId !== 'string' || !Array.isArray(id.placement) || !record.position)
      throw refuse(`${file} is not a distributed run's checkpoint (no rank record)`);
    if (id.rank !== rank) throw refuse(`${file} was written by rank ${id.rank}`);
    if (id.step !== step) throw refuse(`${file} holds step ${id.step}, not ${step}`);
    return { saved, record };
  };
  const first = await read(0);
  const identity = first.record.distributed;
  const { size, placement, runId } = identity;
  const extra = ranksFound.filter((r) => r >= size && (found.get(r) ?? []).includes(step!));
  if (extra.length)
    throw refuse(
      `${dir} holds files of step ${step} of rank ${extra.join(', ')}, but rank 0's (run ${runId}) was saved by a run of ${size} ranks: ` +
        'files of different runs are mixed in it',
    );
  const ranks = [first];
  for (let r = 1; r < size; r++) ranks.push(await read(r));
  const unlock = first.record.inputSteps !== undefined;
  const n = placement.length;
  const modules: ModuleState[] = placement.map(() => ({
    tensors: { module: [], 'module.optimizer': [], synthesizer: [], 'synthesizer.optimizer': [], input: [], 'input.optimizer': [] },
    optimizerSteps: 0,
  }));
  for (const [r, { saved, record }] of ranks.entries()) {
    const file = saved.path;
    const id = record.distributed;
    if (id.runId !== runId) throw refuse(`the files come from different runs: rank 0's from run ${runId}, ${file} from run ${id.runId}`);
    if (id.size !== size || id.placement.join(',') !== placement.join(',') || id.fingerprint !== identity.fingerprint)
      throw refuse(`${file} disagrees with rank 0's file about the run (rank count, placement or settings): files of different runs`);
    if (JSON.stringify(record.updateRng) !== JSON.stringify(first.record.updateRng) || (record.inputSteps !== undefined) !== unlock)
      throw refuse(`${file} disagrees with rank 0's file about the run's state: files of different runs`);
    const p = record.position;
    if (p.epoch !== first.record.position.epoch || p.start !== first.record.position.start)
      throw refuse(
        `${file} stands at epoch ${p.epoch}, row ${p.start}; rank 0's at epoch ${first.record.position.epoch}, row ${first.record.position.start}`,
      );
    const own = placement.flatMap((q, i) => (q === r ? [i] : []));
    const synths = own.filter((i) => i < n - 1);
    const inputs = unlock ? own.filter((i) => i > 0) : [];
    const counts = (v: unknown, length: number, what: string): number[] => {
      if (!Array.isArray(v) || v.length !== length || !v.every((c) => Number.isInteger(c) && c >= 0))
        throw refuse(`${file}: '${what}' must list ${length} step counts (its modules'), got ${JSON.stringify(v)}`);
      return v as number[];
    };
    counts(record.optimizerSteps, own.length, 'optimizerSteps').forEach((c, k) => (modules[own[k]].optimizerSteps = c));
    counts(record.synthesizerSteps, synths.length, 'synthesizerSteps').forEach((c, k) => (modules[synths[k]].synthesizerSteps = c));
    if (unlock) counts(record.inputSteps, inputs.length, 'inputSteps').forEach((c, k) => (modules[inputs[k]].inputSteps = c));
    for (const [name, t] of saved.tensors) {
      const m = TENSOR.exec(name);
      const i = m ? Number(m[2]) - 1 : -1;
      const part = m?.[1] as Part | undefined;
      const allowed =
        part === 'module' ? own.includes(i) : part === 'synthesizer' ? synths.includes(i) : part === 'input' && inputs.includes(i);
      if (!m || !allowed)
        throw refuse(`${file} holds a tensor '${name}' of no module rank ${r} runs (modules ${own.map((k) => k + 1).join(', ')})`);
      const list = modules[i].tensors[`${part!}${m[3] ?? ''}` as keyof ModuleState['tensors']];
      list[Number(m[4])] = { name, dtype: t.dtype, shape: t.shape, data: t.data };
    }
    const named = (part: string, i: number) => part.replace(/^[a-z]+/, (p) => `${p}${i + 1}`);
    for (const i of own)
      for (const [part, list] of Object.entries(modules[i].tensors))
        for (let k = 0; k < list.length; k++) if (!list[k]) throw refuse(`${file} lacks tensor '${named(part, i)}.${k}'`);
    // A list's tail or a whole part is no gap: every module has its weights, every module but the
    // last a synthesizer, with the complete unlock every module but the first an input model, and
    // the run's 'state shapes' list their tensors' shapes, in that order.
    const shapes = identity.config['state shapes'];
    for (const i of own) {
      const t = modules[i].tensors;
      const parts: Part[] = [
        'module',
        ...(synths.includes(i) ? ['synthesizer' as const] : []),
        ...(inputs.includes(i) ? ['input' as const] : []),
      ];
      for (const part of parts) if (!t[part].length) throw refuse(`${file} lacks every ${named(part, i)}.* tensor`);
      const expected = Array.isArray(shapes) ? (shapes[i] as unknown) : undefined;
      const held = parts.flatMap((part) => t[part].map((x) => x.shape.join('x')));
      if (Array.isArray(expected) && held.join(',') !== expected.join(','))
        throw refuse(
          `${file} lacks state tensors of module ${i + 1}: it holds ${held.length} (${parts.map((p) => `${named(p, i)}.*: ${t[p].length}`).join(', ')}), ` +
            `the run's settings list ${expected.length} ('state shapes' ${expected.join(',')})`,
        );
    }
  }
  // The optimizers keep their state for every module alike (one optimizer for the modules, one for
  // the synthesizers, one for the input models): a part none of a module's own is missing.
  for (const kind of ['module', 'synthesizer', 'input'] as const) {
    const key = `${kind}.optimizer` as const;
    const having = modules.findIndex((m) => m.tensors[key].length > 0);
    if (having < 0) continue;
    for (const [i, m] of modules.entries()) {
      const should = kind === 'module' || (kind === 'synthesizer' ? i < n - 1 : unlock && i > 0);
      if (should && !m.tensors[key].length)
        throw refuse(
          `${ranks[placement[i]].saved.path} lacks every ${kind}${i + 1}.optimizer.* tensor (the other modules' files have theirs)`,
        );
    }
  }
  const last = ranks[placement[n - 1]].record.position;
  return {
    dir,
    step,
    identity,
    position: { ...first.record.position, ...(last.lossSum !== undefined ? { lossSum: last.lossSum } : {}) },
    updateRng: first.record.updateRng,
    unlock,
    modules,
  };
}

/** The caller's part of a saved run's configuration (fit's checkpoint.config), apart from fit's own keys. */
export function callerConfig(run: SavedRun): Record<string, unknown> {
  const own = new Set<string>(FIT_CONFIG_KEYS);
  return Object.fromEntries(Object.entries(run.identity.config).filter(([k]) => !own.has(k)));
}

/** The run's configuration with the caller's part replaced by `caller`. */
function withCaller(run: SavedRun, caller: Record<string, unknown>): Record<string, unknown> {
  const own = Object.fromEntries(FIT_CONFIG_KEYS.filter((k) => k in run.identity.config).map((k) => [k, run.identity.config[k]]));
  return { ...own, ...(JSON.parse(JSON.stringify(caller)) as Record<string, unknown>) };
}

/**
 * The one-process checkpoint (tensors and host record) of the saved step, as Trainer.fit writes
 * it: the model's state tensors (modules, then synthesizers, then input models), then the
 * optimizers' (DecoupledTraining.checkpointState's order).
 */
export function oneProcessCheckpoint(
  run: SavedRun,
  config: Record<string, unknown> = callerConfig(run),
): { tensors: SavedTensor[]; host: TrainerRecord } {
  const ms = run.modules;
  const cfg = run.identity.config;
  const model = [
    ...ms.flatMap((m) => m.tensors.module),
    ...ms.flatMap((m) => m.tensors.synthesizer),
    ...ms.flatMap((m) => m.tensors.input),
  ];
  const tensors = [
    ...model.map((t, k) => ({ ...t, name: `model.${k}` })),
    ...ms.flatMap((m) => m.tensors['module.optimizer']),
    ...ms.flatMap((m) => m.tensors['synthesizer.optimizer']),
    ...ms.flatMap((m) => m.tensors['input.optimizer']),
  ];
  // The trainer's generator: its first fork initialised the weights, the second shuffles (when on).
  const rng = new Random(cfg.seed as number);
  rng.fork();
  if (cfg.shuffle === true) rng.fork();
  const { epoch, start, shuffle, lossSum } = run.position;
  const batchSize = cfg.batchSize as number;
  // Mid-epoch, the position is a whole number of batches into the epoch (start 0: an epoch just
  // ended). Files without the loss sum (saved before it was) count the epoch's loss from here on.
  const summed = start > 0 && lossSum !== undefined;
  const progress: FitProgress = {
    step: run.step,
    epoch,
    start,
    shuffle,
    lossSum: summed ? lossSum : 0,
    lossSteps: summed ? start / batchSize : 0,
    samples: start,
    batchSize,
    rows: cfg['data rows'] as number,
    config: JSON.parse(JSON.stringify(config)) as Record<string, unknown>,
  };
  const last = ms.length - 1;
  const host: TrainerRecord = {
    model: cfg.network as string,
    rng: rng.state(),
    strategy: {
      steps: run.step,
      updateRng: run.updateRng,
      optimizerSteps: ms.map((m) => m.optimizerSteps),
      synthesizerSteps: ms.slice(0, last).map((m) => m.synthesizerSteps),
      ...(run.unlock ? { inputSteps: ms.slice(1).map((m) => m.inputSteps) } : {}),
    },
    progress,
  };
  return { tensors, host };
}

/** Each rank's checkpoint (tensors and host record) of the saved step for `placement` over `size` ranks, as fit() writes them. */
export function rankCheckpoints(
  run: SavedRun,
  placement: readonly number[],
  size: number,
  config: Record<string, unknown> = callerConfig(run),
): { tensors: SavedTensor[]; host: RankRecord }[] {
  const n = run.modules.length;
  if (!Array.isArray(placement) || placement.length !== n)
    throw refuse(`the new placement must list a rank for each of the run's ${n} modules, got ${JSON.stringify(placement)}`);
  if (!Number.isInteger(size) || size < 1) throw refuse(`the rank count must be a positive integer, got ${String(size)}`);
  placement.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r >= size)
      throw refuse(`the new placement's module ${i + 1} has rank ${String(r)}, not a rank in [0, ${size - 1}] (${size} ranks)`);
  });
  const runConfig = withCaller(run, config);
  const { lossSum, ...position } = run.position;
  return [...Array(size).keys()].map((rank) => {
    const own = placement.flatMap((r, i) => (r === rank ? [i] : []));
    const ms = run.modules;
    const inputs = run.unlock ? own.filter((i) => i > 0) : [];
    const tensors = [
      ...own.flatMap((i) => [
        ...ms[i].tensors.module,
        ...ms[i].tensors['module.optimizer'],
        ...ms[i].tensors.synthesizer,
        ...ms[i].tensors['synthesizer.optimizer'],
      ]),
      ...inputs.flatMap((i) => [...ms[i].tensors.input, ...ms[i].tensors['input.optimizer']]),
    ];
    const host: RankRecord = {
      distributed: {
        runId: run.identity.runId,
        rank,
        size,
        placement: [...placement],
        step: run.step,
        fingerprint: fingerprintOf(runConfig),
        config: runConfig,
      },
      position: { ...position, ...(own.includes(n - 1) && lossSum !== undefined ? { lossSum } : {}) },
      optimizerSteps: own.map((i) => ms[i].optimizerSteps),
      synthesizerSteps: own.filter((i) => i < n - 1).map((i) => ms[i].synthesizerSteps!),
      updateRng: run.updateRng,
      ...(run.unlock ? { inputSteps: inputs.map((i) => ms[i].inputSteps!) } : {}),
    };
    return { tensors, host };
  });
}

export interface MergeOptions {
  /** the step to merge (default: the latest step every rank saved) */
  step?: number;
  /** replace `out` if it exists (default: refuse) */
  overwrite?: boolean;
  /** the one-process run's checkpoint.config (default: the distributed run's, fit's own keys apart) */
  config?: Record<string, unknown>;
}

/**
 * Writes the per-rank checkpoints of one step in `dir` as one one-process checkpoint `out`
 * (Trainer.load, or Trainer.fit({ checkpoint: { path: out } }) resumes it). Returns the run read.
 */
export async function mergeRankCheckpoints(dir: string, out: string, options: MergeOptions = {}): Promise<SavedRun> {
  if (typeof out !== 'string' || out === '') throw refuse(`the merged checkpoint's path must be a file path, got ${JSON.stringify(out)}`);
  const run = await readSavedRun(dir, options.step);
  if ((await checkDestination(out)) && options.overwrite !== true)
    throw refuse(`${out} exists; refusing to replace it (remove it, or allow overwriting: --force)`);
  const { tensors, host } = oneProcessCheckpoint(run, options.config);
  await writeCheckpointValues(out, tensors, host);
  return run;
}

export interface ReshardOptions extends MergeOptions {
  /** each module's rank in the new run */
  placement: number[];
  /** the new run's rank count (default: the highest rank of `placement` plus one) */
  ranks?: number;
}

/**
 * Writes the per-rank checkpoints of one step in `dir` as those of the same step for another
 * placement or rank count, into `outDir` (not `dir`), from which distribute()'s fit with that
 * placement resumes. `outDir` must hold no rank files (with `overwrite`, those there are removed).
 * Returns the run read.
 */
export async function reshardRankCheckpoints(dir: string, outDir: string, options: ReshardOptions): Promise<SavedRun> {
  if (typeof outDir !== 'string' || outDir === '') throw refuse(`the output directory must be a path, got ${JSON.stringify(outDir)}`);
  if (!options || !Array.isArray(options.placement)) throw refuse(`reshard needs { placement }, got ${JSON.stringify(options)}`);
  if (path.resolve(outDir) === path.resolve(dir))
    throw refuse(`the output directory ${outDir} is the input directory: write the new ranks' files into another one`);
  const run = await readSavedRun(dir, options.step);
  const size = options.ranks ?? Math.max(...options.placement.filter(Number.isInteger), 0) + 1;
  const files = rankCheckpoints(run, options.placement, size, options.config);
  const existing = await fsp.readdir(outDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw refuse(`cannot read the output directory ${outDir}: ${e.message}`);
  });
  const old = existing.filter((n) => NAME.test(n));
  if (old.length && options.overwrite !== true)
    throw refuse(
      `${outDir} already holds per-rank checkpoints (${old.slice(0, 3).join(', ')}${old.length > 3 ? ', ...' : ''}); refusing to replace them (use an empty directory, or allow overwriting: --force)`,
    );
  await fsp.mkdir(outDir, { recursive: true });
  for (const name of old) await fsp.rm(path.join(outDir, name));
  for (const [rank, f] of files.entries()) await writeCheckpointValues(rankFile(outDir, rank, run.step), f.tensors, f.host);
  return run;
}
