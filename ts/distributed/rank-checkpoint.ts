// Per-rank checkpoints of a distributed run (docs/distributed.md, "Checkpoints"): each rank
// writes its own modules' state to DIR/rank-<r>.step-<t>.ckpt in the format of
// ../train/checkpoint.ts (durable, checksummed), and keeps its last two. A resume reads each
// rank's own files, the ranks exchange what they found (a RankSummary each), and every rank
// takes the same decision from the same summaries: resume from the latest step every rank
// saved, start afresh when no rank has a file, or refuse, naming the rank and what disagrees.
import { createHash } from 'crypto';
import { promises as fsp } from 'fs';
import * as path from 'path';
import { error } from '../errors';
import { LoadedCheckpoint, readCheckpoint } from '../train/checkpoint';

/** Who wrote a rank's file: the same in every file of a run, but for rank and step. */
export interface RankIdentity {
  /** drawn by rank 0 when the run started; the same on every rank */
  runId: string;
  rank: number;
  size: number;
  placement: number[];
  step: number;
  /** SHA-256 (hex, first 16 digits) of `config` */
  fingerprint: string;
  /** the network, the training settings and the caller's checkpoint.config, by name */
  config: Record<string, unknown>;
}

/** What a rank found in the directory, as the other ranks receive it. */
export interface RankSummary {
  rank: number;
  files: { step: number; file: string; identity: RankIdentity }[];
  /** why its files could not be read (a damaged file, a directory it cannot create) */
  error?: string;
  /** rank 0's proposal of a run id for a run that starts afresh */
  newRunId?: string;
}

/** What this run is, to compare the files with. */
export interface RunNow {
  dir: string;
  size: number;
  placement: readonly number[];
  config: Record<string, unknown>;
}

/** `step`: the step to resume from; undefined: the run starts afresh */
export interface ResumeDecision {
  runId: string;
  step?: number;
}

const NAME = /^rank-(\d+)\.step-(\d+)\.ckpt$/;

export function rankFile(dir: string, rank: number, step: number): string {
  return path.join(dir, `rank-${rank}.step-${step}.ckpt`);
}

export function fingerprintOf(config: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16);
}

/** Every rank's files in `dir` by name, oldest step first (none when `dir` does not exist). */
export async function rankFiles(dir: string): Promise<{ rank: number; step: number; file: string }[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names
    .map((n) => NAME.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ rank: Number(m[1]), step: Number(m[2]), file: path.join(dir, m[0]) }))
    .sort((a, b) => a.step - b.step || a.rank - b.rank);
}

/** The steps of `rank`'s files in `dir`, oldest first (none when `dir` does not exist). */
export async function rankSteps(dir: string, rank: number): Promise<number[]> {
  return (await rankFiles(dir)).filter((f) => f.rank === rank).map((f) => f.step);
}

/** Reads and verifies every file of `rank` in `dir`; a file that fails becomes the summary's error. */
export async function readRankCheckpoints(
  dir: string,
  rank: number,
): Promise<{ summary: RankSummary; loaded: Map<number, LoadedCheckpoint> }> {
  const loaded = new Map<number, LoadedCheckpoint>();
  const summary: RankSummary = { rank, files: [] };
  try {
    for (const step of await rankSteps(dir, rank)) {
      const file = rankFile(dir, rank, step);
      const saved = await readCheckpoint(file);
      const identity = (saved.host as { distributed?: RankIdentity } | null)?.distributed;
      if (!identity || typeof identity.runId !== 'string' || !Array.isArray(identity.placement))
        throw error('ERR_SYNTHGRAD_CHECKPOINT', `${file} is not a distributed run's checkpoint (no rank record)`);
      if (identity.step !== step) throw error('ERR_SYNTHGRAD_CHECKPOINT', `${file} holds step ${identity.step}, not ${step}`);
      summary.files.push({ step, file, identity });
      loaded.set(step, saved);
    }
  } catch (e) {
    summary.error = (e as Error).message;
  }
  return { summary, loaded };
}

/** 'step 4' or 'steps 2, 4' */
const stepList = (xs: readonly number[]) => `step${xs.length === 1 ? '' : 's'} ${xs.join(', ')}`;

/** Each configuration key that differs, as "batchSize 16, this run has 8". */
function differences(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  return [...new Set([...Object.keys(saved), ...Object.keys(now)])]
    .filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k]))
    .map(
      (k) => `${k} ${saved[k] === undefined ? 'unset' : shown(saved[k])}, this run has ${now[k] === undefined ? 'none' : shown(now[k])}`,
    );
}

/**
 * Resume, start afresh or refuse, from every rank's summary (ordered by rank); every rank
 * computes the same answer. Throws ERR_SYNTHGRAD_CHECKPOINT naming the first rank whose
 * files disagree and how.
 */
export function decideResume(summaries: readonly RankSummary[], now: RunNow): ResumeDecision {
  const refuse = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `fit: cannot resume from ${now.dir}: ${why}`);
  for (const s of summaries) if (s.error !== undefined) throw refuse(`rank ${s.rank}: ${s.error}`);
  const having = summaries.filter((s) => s.files.length > 0);
  if (having.length === 0) return { runId: summaries[0].newRunId ?? '' };
  for (const s of summaries)
    for (const { file, identity: id } of s.files) {
      const whose = `rank ${s.rank}'s checkpoint ${file}`;
      if (id.rank !== s.rank) throw refuse(`${whose} was written by rank ${id.rank}`);
      if (id.size !== now.size) throw refuse(`${whose} was saved by a run of ${id.size} ranks; this run has ${now.size}`);
      if (id.placement.join(',') !== now.placement.join(','))
        throw refuse(`${whose} was saved with placement ${id.placement.join(',')}; this run has ${now.placement.join(',')}`);
      const diff = differences(id.config ?? {}, now.config);
      if (diff.length)
        throw refuse(`${whose} was saved with ${diff.join('; ')}: resume with the same settings, or start in another directory`);
    }
  const lacking = summaries.filter((s) => s.files.length === 0);
  if (lacking.length > 0)
    throw refuse(
      `${lacking.length > 1 ? 'ranks' : 'rank'} ${lacking.map((s) => s.rank).join(', ')} ${lacking.length > 1 ? 'have' : 'has'} no checkpoint, ` +
        `rank ${having[0].rank} has ${stepList(having[0].files.map((f) => f.step))}: ` +
        "the ranks' files disagree (restore the missing files, or start again in an empty directory)",
    );
  const runId = having[0].files[0].identity.runId;
  for (const s of summaries)
    for (const { file, identity } of s.files)
      if (identity.runId !== runId)
        throw refuse(
          `the files come from different runs: rank ${having[0].rank}'s from run ${runId}, rank ${s.rank}'s ${file} from run ${identity.runId}`,
        );
  const common = summaries.map((s) => new Set(s.files.map((f) => f.step))).reduce((a, b) => new Set([...a].filter((t) => b.has(t))));
  if (common.size === 0)
    throw refuse(
      `the ranks saved no step in common: ${summaries.map((s) => `rank ${s.rank} ${stepList(s.files.map((f) => f.step))}`).join('; ')}`,
    );
  return { runId, step: Math.max(...common) };
}
