// Copy and Repeat Copy (the Neural Turing Machine's tasks, as the DNI paper trains its RNNs on
// them) as SequenceSources, with the paper's curriculum (./curriculum.ts).
//
// Encoding: each item is one of `symbols` (8) symbols, one-hot at the input and predicted by a
// softmax at the output. The error of a scored step is then its cross-entropy in bits (base 2),
// and the curriculum's "0.15 bits per output symbol" is the mean of that over the scored steps:
// the natural measure for a softmax, where 0.15 bits means the model gives the right item
// about 90% probability. (The NTM's version, 8-bit random vectors with sigmoid outputs, sums
// 8 binary cross-entropies per step, so its bits are not comparable; one of 8 symbols carries 3
// bits, as one 3-bit vector would, and keeps one softmax read-out for every task.)
//
// Input symbols: the items 0..S-1, then `blankSymbol` = S (the input while the model answers),
// then Copy's `delimiterSymbol` = S+1, or Repeat Copy's count symbols S+r for r = 1..maxRepeats.
// Output symbols: the items, and for Repeat Copy `endSymbol` = S after the last repetition.
//
//   Copy, N items (2N+1 steps):  input  x1 .. xN  delim  blank .. blank
//                                target -1 .. -1  -1     x1 .. xN
//   Repeat Copy, N items, R times ((R+1)N+2 steps):
//                                input  x1 .. xN  count(R)  blank (R·N times)       blank
//                                target -1 .. -1  -1        x1 .. xN, R times       end
//
// Why R is a count symbol (one of maxRepeats) and not a scaled input: windows carry symbol ids
// only (the one-hot input of one GEMM), so a scalar would need a second input channel in every
// model; a one-hot count costs maxRepeats input columns and bounds R, which the curriculum caps
// at maxRepeats (then only N grows). Each new R is an input the model has never seen, which is
// part of what the level asks.
//
// Episodes and resets: all B rows share the current N (and R), so episodes have one length
// across the batch, follow each other with no gap, and `resets[t]` is true at each episode's
// first step: the recurrent state is zeroed between sequences. With that reset, truncated BPTT
// of window T sees the exact gradient of an output with respect to its item only when both lie
// in one window: they are N+1 steps apart, so only for N ≤ T − 2 (at best, and only for the
// windows that happen to hold both). The items of an episode are drawn at its start, row by
// row (row b's N items, then row b+1's), each `rng.int(symbols)` of the task's seeded Random.
//
// Curriculum: levels 0, 1, 2, …; Copy presents N = level + 1; Repeat Copy starts at N = R = 1
// and alternates (odd levels N + 1, even levels R + 1, N first since memory length is the
// paper's score; once R = maxRepeats only N grows): see repeatCopyLevel(). A level change
// takes effect at the next episode start, never inside an episode. report() feeds the
// curriculum one window's mean bits per scored symbol, weighted by the symbols it scored, and
// counts it only when every scored step of that window belongs to an episode of the current
// level (the tail of an easier episode after a rise must not help pass the harder level).
// The score is the largest level solved (passed) and its N (and R): score().
//
// state() holds the Random's state, the curriculum, the current episode (its level and items)
// and the position in it; restore() continues bit for bit.
import { checkOptions, describe, numberOption } from '../check';
import { error, rangeError, typeError } from '../errors';
import { Random } from '../random';
import { countArgument, stepsArgument } from './arguments';
import { Curriculum, CurriculumOptions } from './curriculum';
import type { SequenceSource, SequenceWindow } from './sequences';

export interface CopyTaskOptions {
  /** the seed of the task's Random (items); default 0 */
  seed?: number;
  /** S, the item symbols; default 8 */
  symbols?: number;
  /** a Curriculum to use (shared, or restored elsewhere), or the options of a new one */
  curriculum?: Curriculum | CurriculumOptions;
  /** default 'copy' / 'repeat-copy' */
  name?: string;
}

export interface RepeatCopyTaskOptions extends CopyTaskOptions {
  /** the largest repeat count R (one count symbol each); default 10 */
  maxRepeats?: number;
}

/** A window of a Copy task: the SequenceWindow, plus what report() needs to attribute it. */
export interface CopyWindow extends SequenceWindow {
  /** [T] the curriculum level of the episode each step belongs to */
  readonly levels: Int32Array;
  /** the scored targets (not -1), over all rows */
  readonly scored: number;
}

/** The largest level solved, and its sequence length N and repeat count R (all 0 / -1 before any). */
export interface CopyScore {
  level: number;
  length: number;
  repeats: number;
}

interface Episode {
  level: number;
  length: number;
  repeats: number;
  items: Int32Array; // [B, N] row-major
  steps: number;
  inputs: Int32Array; // [steps, B] time-major
  targets: Int32Array;
}

/** The sequence length N and repeat count R of a Repeat Copy level (levels from 0). */
export function repeatCopyLevel(level: number, maxRepeats = 10): { length: number; repeats: number } {
  if (!Number.isInteger(level) || level < 0)
    throw rangeError(`repeatCopyLevel: 'level' must be a non-negative integer, got ${String(level)}`);
  if (!Number.isInteger(maxRepeats) || maxRepeats < 1)
    throw rangeError(`repeatCopyLevel: 'maxRepeats' must be a positive integer, got ${String(maxRepeats)}`);
  // Alternation until R reaches its cap: odd levels add an item, even levels a repetition.
  const alternating = Math.min(level, 2 * (maxRepeats - 1));
  const repeats = 1 + Math.floor(alternating / 2);
  const length = 1 + Math.ceil(alternating / 2) + (level - alternating);
  return { length, repeats };
}

abstract class EpisodeTask implements SequenceSource {
  readonly name: string;
  readonly batch: number;
  /** S, the item symbols */
  readonly symbols: number;
  /** the input while the model answers (nothing presented) */
  readonly blankSymbol: number;
  abstract readonly inputSymbols: number;
  abstract readonly outputSymbols: number;
  readonly curriculum: Curriculum;
  private readonly rng: Random;
  private episode: Episode | undefined;
  /** steps of the current episode already given out */
  private step = 0;
  private lastWindow: CopyWindow | undefined;
  private readonly reported = new WeakSet<SequenceWindow>();

  protected constructor(
    protected readonly owner: string,
    protected readonly kind: string,
    batch: number,
    options: RepeatCopyTaskOptions,
    known: readonly string[],
  ) {
    this.batch = countArgument(owner, 'batch', batch);
    checkOptions(owner, options, known);
    const o = options ?? {};
    const seed = numberOption(owner, 'seed', o.seed, 0);
    if (!Number.isFinite(seed)) throw rangeError(`${owner}: 'seed' must be a finite number, got ${seed}`);
    this.rng = new Random(seed);
    this.symbols = countArgument(owner, 'symbols', o.symbols ?? 8);
    this.blankSymbol = this.symbols;
    if (o.name !== undefined && typeof o.name !== 'string') throw typeError(`${owner}: 'name' must be a string, got ${describe(o.name)}`);
    this.name = o.name ?? kind;
    this.curriculum = o.curriculum instanceof Curriculum ? o.curriculum : new Curriculum(o.curriculum);
  }

  /** The sequence length N and repeat count R that a level presents. */
  abstract levelShape(level: number): { length: number; repeats: number };

  /** Fills an episode's time-major inputs and targets from its items. */
  protected abstract layout(e: Episode): void;

  /** The number of steps of an episode of N items repeated R times. */
  protected abstract episodeSteps(length: number, repeats: number): number;

  nextWindow(steps: number): CopyWindow {
    const T = stepsArgument(`${this.owner}.nextWindow`, steps);
    const B = this.batch;
    const inputs = new Int32Array(T * B);
    const targets = new Int32Array(T * B);
    const resets = new Array<boolean>(T).fill(false);
    const levels = new Int32Array(T);
    let scored = 0;
    for (let t = 0; t < T; t++) {
      if (this.episode === undefined || this.step === this.episode.steps) {
        this.episode = this.newEpisode(this.curriculum.level, null);
        this.step = 0;
        resets[t] = true;
      }
      const e = this.episode;
      inputs.set(e.inputs.subarray(this.step * B, this.step * B + B), t * B);
      targets.set(e.targets.subarray(this.step * B, this.step * B + B), t * B);
      levels[t] = e.level;
      if (e.targets[this.step * B] !== -1) scored += B; // every row scores the same steps
      this.step++;
    }
    const window: CopyWindow = { steps: T, batch: B, inputs, targets, resets, levels, scored };
    this.lastWindow = window;
    return window;
  }

  /**
   * Reports a window's mean error in bits per scored output symbol (cross-entropy in base 2:
   * nats / ln 2) to the curriculum, weighted by the symbols the window scored. `window`: the
   * window it was measured on (default: the last one given out). Ignored (false) when the
   * window scored nothing or holds scored steps of a level other than the current one; each
   * window is reported once. Returns true when the level rose (it takes effect at the next
   * episode start).
   */
  report(bits: number, window: SequenceWindow | undefined = this.lastWindow): boolean {
    const owner = `${this.owner}.report`;
    if (window === undefined) throw error('ERR_SYNTHGRAD_STATE', `${owner}: no window has been given out yet`);
    const w = window as CopyWindow;
    if (
      w === null ||
      typeof w !== 'object' ||
      !(w.levels instanceof Int32Array) ||
      !(w.targets instanceof Int32Array) ||
      w.levels.length !== w.steps
    )
      throw typeError(`${owner}: 'window' must be a window of this task's nextWindow(), got ${describe(window)}`);
    if (this.reported.has(w)) throw error('ERR_SYNTHGRAD_STATE', `${owner}: this window was reported already (each window counts once)`);
    if (typeof bits !== 'number') throw typeError(`${owner}: 'bits' must be a number, got ${describe(bits)}`);
    if (w.scored > 0 && (!Number.isFinite(bits) || bits < 0))
      throw rangeError(`${owner}: 'bits' must be a finite non-negative error, got ${bits}`);
    this.reported.add(w);
    if (w.scored === 0) return false;
    const level = this.curriculum.level;
    for (let t = 0; t < w.steps; t++) if (w.targets[t * w.batch] !== -1 && w.levels[t] !== level) return false;
    return this.curriculum.report(bits, w.scored);
  }

  /** The largest level solved (passed) so far, with its N and R; level -1 and N = R = 0 before any. */
  score(): CopyScore {
    const level = this.curriculum.solved;
    if (level < 0) return { level: -1, length: 0, repeats: 0 };
    return { level, ...this.levelShape(level) };
  }

  /** The level of the episode being given out (the curriculum's level may be ahead of it). */
  get episodeLevel(): number | undefined {
    return this.episode?.level;
  }

  state(): unknown {
    return {
      task: this.kind,
      batch: this.batch,
      symbols: this.symbols,
      ...this.extraState(),
      rng: this.rng.state(),
      curriculum: this.curriculum.state(),
      episode: this.episode === undefined ? null : { level: this.episode.level, items: Array.from(this.episode.items) },
      step: this.step,
    };
  }

  restore(state: unknown): void {
    const owner = `${this.owner}.restore`;
    const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `${owner}: 'state' ${why}`);
    const s = state as {
      task: unknown;
      batch: unknown;
      symbols: unknown;
      rng: number[];
      curriculum: unknown;
      episode: { level: unknown; items: unknown } | null;
      step: unknown;
    } & Record<string, unknown>;
    if (s === null || typeof s !== 'object' || Array.isArray(s)) throw bad(`must be a state() object, got ${describe(s)}`);
    const extra = this.extraState();
    const mine = { task: this.kind, batch: this.batch, symbols: this.symbols, ...extra } as Record<string, unknown>;
    for (const key of Object.keys(mine))
      if (s[key] !== mine[key]) throw bad(`is of a task with ${key} ${JSON.stringify(s[key])}, this one has ${JSON.stringify(mine[key])}`);
    let episode: Episode | undefined;
    if (s.episode !== null) {
      if (
        typeof s.episode !== 'object' ||
        !Number.isInteger(s.episode.level) ||
        (s.episode.level as number) < 0 ||
        !Array.isArray(s.episode.items)
      )
        throw bad('has a malformed episode');
      const items = s.episode.items as unknown[];
      if (!items.every((v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < this.symbols))
        throw bad(`has episode items outside [0, ${this.symbols})`);
      const level = s.episode.level as number;
      if (items.length !== this.batch * this.levelShape(level).length)
        throw bad(`has ${items.length} episode items, level ${level} needs ${this.batch * this.levelShape(level).length}`);
      episode = this.newEpisode(level, Int32Array.from(items as number[]));
    }
    const step = s.step;
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0 || step > (episode?.steps ?? 0))
      throw bad(`has step ${String(step)} outside its episode`);
    // Check everything before changing anything: a failed restore leaves the task as it was.
    const rng = new Random(0);
    try {
      rng.restore(s.rng);
    } catch {
      throw bad('has a bad random generator state');
    }
    this.curriculum.restore(s.curriculum); // checks all of its state before changing any
    this.rng.restore(s.rng);
    this.episode = episode;
    this.step = step;
    this.lastWindow = undefined;
  }

  /** Configuration a state must match beyond task, batch and symbols. */
  protected extraState(): Record<string, unknown> {
    return {};
  }

  private newEpisode(level: number, items: Int32Array | null): Episode {
    const { length, repeats } = this.levelShape(level);
    if (items === null) {
      items = new Int32Array(this.batch * length);
      for (let i = 0; i < items.length; i++) items[i] = this.rng.int(this.symbols);
    }
    const steps = this.episodeSteps(length, repeats);
    const e: Episode = {
      level,
      length,
      repeats,
      items,
      steps,
      inputs: new Int32Array(steps * this.batch).fill(this.blankSymbol),
      targets: new Int32Array(steps * this.batch).fill(-1),
    };
    this.layout(e);
    return e;
  }
}

/** Copy: N random items, a delimiter, then the model outputs the N items. */
export class CopyTask extends EpisodeTask {
  readonly inputSymbols: number;
  readonly outputSymbols: number;
  /** the input after the items: "now repeat them" */
  readonly delimiterSymbol: number;

  constructor(batch: number, options: CopyTaskOptions = {}) {
    super('CopyTask', 'copy', batch, options, ['seed', 'symbols', 'curriculum', 'name']);
    this.delimiterSymbol = this.symbols + 1;
    this.inputSymbols = this.symbols + 2;
    this.outputSymbols = this.symbols;
  }

  /** N = level + 1. */
  levelShape(level: number): { length: number; repeats: number } {
    return { length: level + 1, repeats: 1 };
  }

  protected episodeSteps(length: number): number {
    return 2 * length + 1;
  }

  protected layout(e: Episode): void {
    const B = this.batch;
    const N = e.length;
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < N; i++) {
        e.inputs[i * B + b] = e.items[b * N + i];
        e.targets[(N + 1 + i) * B + b] = e.items[b * N + i];
      }
      e.inputs[N * B + b] = this.delimiterSymbol;
    }
  }
}

/** Repeat Copy: N random items, a repeat count R, then the items R times and an end symbol. */
export class RepeatCopyTask extends EpisodeTask {
  readonly inputSymbols: number;
  readonly outputSymbols: number;
  readonly maxRepeats: number;
  /** the output after the last repetition */
  readonly endSymbol: number;

  constructor(batch: number, options: RepeatCopyTaskOptions = {}) {
    super('RepeatCopyTask', 'repeat-copy', batch, options, ['seed', 'symbols', 'curriculum', 'name', 'maxRepeats']);
    this.maxRepeats = countArgument('RepeatCopyTask', 'maxRepeats', options?.maxRepeats ?? 10);
    this.endSymbol = this.symbols;
    this.inputSymbols = this.symbols + 1 + this.maxRepeats;
    this.outputSymbols = this.symbols + 1;
  }

  /** The input symbol that asks for `repeats` repetitions (1..maxRepeats). */
  countSymbol(repeats: number): number {
    if (!Number.isInteger(repeats) || repeats < 1 || repeats > this.maxRepeats)
      throw rangeError(`RepeatCopyTask.countSymbol: 'repeats' must be an integer in [1, ${this.maxRepeats}], got ${String(repeats)}`);
    return this.symbols + repeats;
  }

  /** Alternating N and R: repeatCopyLevel(level, maxRepeats). */
  levelShape(level: number): { length: number; repeats: number } {
    return repeatCopyLevel(level, this.maxRepeats);
  }

  protected episodeSteps(length: number, repeats: number): number {
    return (repeats + 1) * length + 2;
  }

  protected extraState(): Record<string, unknown> {
    return { maxRepeats: this.maxRepeats };
  }

  protected layout(e: Episode): void {
    const B = this.batch;
    const N = e.length;
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < N; i++) {
        e.inputs[i * B + b] = e.items[b * N + i];
        for (let r = 0; r < e.repeats; r++) e.targets[(N + 1 + r * N + i) * B + b] = e.items[b * N + i];
      }
      e.inputs[N * B + b] = this.countSymbol(e.repeats);
      e.targets[(e.steps - 1) * B + b] = this.endSymbol;
    }
  }
}
