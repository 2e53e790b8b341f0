// Where a fit() run stands: the position saved with its checkpoints (FitProgress), the host
// record a trainer's checkpoint holds, and the checks a resume makes against them. The trainer
// (./trainer.ts) builds a FitProgress after each step and restores from one; nothing else here
// touches the device.
import { describe } from '../check';
import { error, typeError } from '../errors';
import { LoadedCheckpoint, checkDestination, readCheckpoint } from './checkpoint';

/** Where a fit() run stands, saved with its checkpoints. */
export interface FitProgress {
  /** steps done */
  step: number;
  /** the epoch and the row (in its shuffled order) where the next step starts */
  epoch: number;
  start: number;
  /** the shuffling generator at the start of that epoch (null: no shuffling) */
  shuffle: number[] | null;
  /** that epoch's running loss sum, step and sample counts */
  lossSum: number;
  lossSteps: number;
  samples: number;
  batchSize: number;
  rows: number;
  /** options.checkpoint.config of the run */
  config?: Record<string, unknown>;
}

/** The host part of a trainer's checkpoint. */
export interface TrainerRecord {
  model: string;
  rng: number[];
  strategy: unknown;
  progress?: FitProgress;
}

/** The run's position in a checkpoint's host record, if it has one (fit wrote it). */
export function progressOf(saved: LoadedCheckpoint): FitProgress | undefined {
  return (saved.host as TrainerRecord | null)?.progress;
}

/** The checkpoint at `path`, or undefined when there is none (a path that is not a file throws). */
export async function readIfExists(path: string): Promise<LoadedCheckpoint | undefined> {
  return (await checkDestination(path)) ? readCheckpoint(path) : undefined;
}

/** A value of a run's configuration as a message shows it. */
function shown(v: unknown): string {
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) return v.join(',');
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Each key whose value differs between the saved and this run's configuration, as
 * "was saved with batchSize 64, this run has 32".
 */
function configDifferences(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(now)])];
  return keys
    .filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k]))
    .map((k) => {
      if (saved[k] === undefined) return `was saved without ${k}, this run has ${k} ${shown(now[k])}`;
      if (now[k] === undefined) return `was saved with ${k} ${shown(saved[k])}, this run has none`;
      return `was saved with ${k} ${shown(saved[k])}, this run has ${shown(now[k])}`;
    });
}

/**
 * What differs between the run saved at `saved` and this one, as message parts (none: it may
 * resume). The caller's configuration first: it names what the user chose (e.g. a command-line
 * flag), and fit's own settings would mostly repeat it (a batch size in both).
 */
export function resumeDifferences(
  saved: FitProgress,
  config: Record<string, unknown>,
  now: { batchSize: number; rows: number; shuffle: boolean },
): string[] {
  const differences = configDifferences(saved.config ?? {}, config);
  if (differences.length) return differences;
  return configDifferences(
    { batchSize: saved.batchSize, 'data rows': saved.rows, shuffle: saved.shuffle !== null },
    { batchSize: now.batchSize, 'data rows': now.rows, shuffle: now.shuffle },
  );
}

/**
 * The `checkpoint.config` that the fit() checkpoint at `path` was saved with ({} if none),
 * or undefined when there is no file; throws for a file that is not a valid fit checkpoint.
 * For programs (like the CLI) that build the run from settings fixed when it started.
 */
export async function readCheckpointConfig(path: string): Promise<Record<string, unknown> | undefined> {
  if (typeof path !== 'string' || path === '') throw typeError(`readCheckpointConfig: 'path' must be a file path, got ${describe(path)}`);
  const saved = await readIfExists(path);
  if (!saved) return undefined;
  const progress = progressOf(saved);
  if (!progress)
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${path} was written by save(), not by fit(): it has no run configuration`);
  return progress.config ?? {};
}
