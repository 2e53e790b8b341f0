// The curriculum of the paper's Copy and Repeat Copy tasks (Jaderberg et al. 2017, after the
// Neural Turing Machine's tasks): the task grows harder (level + 1) once the model's error has
// fallen below a threshold, and the score is the hardest level passed within a budget.
//
// Rule, exactly: each report is the mean error, in bits per scored output symbol, of one window
// (or batch), with a weight (the number of symbols it scored; reports of weight 0 are ignored).
// The level rises by one when the last `window` (K, default 10: enough windows that one lucky
// batch does not pass a level, few enough to react within a small budget) reports made at the
// current level have a weighted mean strictly below `threshold` (0.15 bits by default); the reports are then
// cleared, so the next level needs K fresh reports of its own. With fewer than K reports at a
// level nothing rises. A level counts as solved (passed) when the level after it is reached;
// `solved` is the largest such level, -1 before any. The weighted mean is the mean error per
// output symbol over the last K reports, the measure the paper states, however the scored
// symbols fall into windows (with short windows some score none).
//
// The curriculum knows nothing of steps: the training loop that owns the budget stops calling
// report() when the budget is spent, and `solved` is then the score. Everything is plain JSON
// in state(), restore() continues bit for bit (JSON round-trips doubles exactly).
import { checkOptions, describe, numberOption } from '../check';
import { error, rangeError, typeError } from '../errors';
import { countArgument } from './arguments';

export interface CurriculumOptions {
  /** rise when the mean error over the last `window` reports is below this (bits); default 0.15 */
  threshold?: number;
  /** K: the reports averaged; default 10 */
  window?: number;
  /** the starting level; default 0 */
  level?: number;
}

export interface CurriculumState {
  threshold: number;
  window: number;
  level: number;
  reports: number;
  /** the reports at the current level, oldest first, at most `window`: [bits, weight] */
  recent: [number, number][];
  /** when each level after the start was reached: the level and the reports counted until then */
  rises: { level: number; reports: number }[];
  start: number;
}

const OWNER = 'Curriculum';

export class Curriculum {
  readonly threshold: number;
  /** K, the reports averaged */
  readonly window: number;
  private currentLevel: number;
  private readonly startLevel: number;
  private counted = 0;
  private recent: [number, number][] = [];
  private readonly riseLog: { level: number; reports: number }[] = [];

  constructor(options: CurriculumOptions = {}) {
    checkOptions(OWNER, options, ['threshold', 'window', 'level']);
    this.threshold = numberOption(OWNER, 'threshold', options.threshold, 0.15);
    if (!Number.isFinite(this.threshold) || this.threshold <= 0)
      throw rangeError(`${OWNER}: 'threshold' must be a positive number of bits, got ${this.threshold}`);
    this.window = countArgument(OWNER, 'window', options.window ?? 10);
    const level = options.level ?? 0;
    if (typeof level !== 'number') throw typeError(`${OWNER}: 'level' must be a non-negative integer, got ${describe(level)}`);
    if (!Number.isInteger(level) || level < 0) throw rangeError(`${OWNER}: 'level' must be a non-negative integer, got ${level}`);
    this.currentLevel = level;
    this.startLevel = level;
  }

  /** The level the task is asked to present now. */
  get level(): number {
    return this.currentLevel;
  }

  /** The largest level passed (the level before the current one), -1 before any rise. */
  get solved(): number {
    return this.currentLevel > this.startLevel ? this.currentLevel - 1 : -1;
  }

  /** The reports counted so far (weight > 0), at every level. */
  get reports(): number {
    return this.counted;
  }

  /** The level reached after each rise, with the count of reports made until then (a curve of level over training). */
  get rises(): readonly { level: number; reports: number }[] {
    return this.riseLog.map((r) => ({ ...r }));
  }

  /** The weighted mean error of the last `window` reports at this level; undefined with fewer. */
  get mean(): number | undefined {
    if (this.recent.length < this.window) return undefined;
    let bits = 0;
    let weight = 0;
    for (const [b, w] of this.recent) {
      bits += b * w;
      weight += w;
    }
    return bits / weight;
  }

  /**
   * One window's (or batch's) mean error in bits per scored output symbol, weighted by the
   * symbols it scored (default 1). A weight of 0 (nothing scored; `bits` may then be NaN) is
   * ignored. Returns true when this report raised the level.
   */
  report(bits: number, weight = 1): boolean {
    if (typeof weight !== 'number') throw typeError(`${OWNER}.report: 'weight' must be a number, got ${describe(weight)}`);
    if (!Number.isFinite(weight) || weight < 0)
      throw rangeError(`${OWNER}.report: 'weight' must be a finite non-negative number, got ${weight}`);
    if (typeof bits !== 'number') throw typeError(`${OWNER}.report: 'bits' must be a number, got ${describe(bits)}`);
    if (weight === 0) return false;
    if (!Number.isFinite(bits) || bits < 0) throw rangeError(`${OWNER}.report: 'bits' must be a finite non-negative error, got ${bits}`);
    this.counted++;
    this.recent.push([bits, weight]);
    if (this.recent.length > this.window) this.recent.shift();
    const mean = this.mean;
    if (mean === undefined || !(mean < this.threshold)) return false;
    this.currentLevel++;
    this.recent = [];
    this.riseLog.push({ level: this.currentLevel, reports: this.counted });
    return true;
  }

  state(): CurriculumState {
    return {
      threshold: this.threshold,
      window: this.window,
      level: this.currentLevel,
      reports: this.counted,
      recent: this.recent.map(([b, w]) => [b, w]),
      rises: this.rises.slice(),
      start: this.startLevel,
    };
  }

  /** Continues from a state() of a curriculum with the same threshold and window. */
  restore(state: unknown): void {
    const s = state as CurriculumState;
    const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `${OWNER}.restore: 'state' ${why}`);
    if (s === null || typeof s !== 'object' || Array.isArray(s)) throw bad(`must be a Curriculum state() object, got ${describe(s)}`);
    if (s.threshold !== this.threshold || s.window !== this.window)
      throw bad(
        `was saved with threshold ${String(s.threshold)} and window ${String(s.window)}, this curriculum has ${this.threshold} and ${this.window}`,
      );
    const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
    if (!isCount(s.level) || !isCount(s.reports) || !isCount(s.start) || s.start !== this.startLevel || s.level < s.start)
      throw bad(`has a bad level, start or report count (start must be this curriculum's ${this.startLevel})`);
    if (
      !Array.isArray(s.recent) ||
      s.recent.length > this.window ||
      !s.recent.every(
        (r) => Array.isArray(r) && r.length === 2 && r.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0) && r[1] > 0,
      )
    )
      throw bad(`must hold at most ${this.window} recent [bits, weight] reports`);
    if (
      !Array.isArray(s.rises) ||
      s.rises.length !== s.level - s.start ||
      !s.rises.every((r, i) => r !== null && typeof r === 'object' && r.level === s.start + i + 1 && isCount(r.reports))
    )
      throw bad('must list one rise per level reached');
    this.currentLevel = s.level;
    this.counted = s.reports;
    this.recent = s.recent.map(([b, w]) => [b, w]);
    this.riseLog.length = 0;
    for (const r of s.rises) this.riseLog.push({ level: r.level, reports: r.reports });
  }
}
