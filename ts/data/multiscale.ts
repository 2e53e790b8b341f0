// A task with two timescales, for the multi-timescale recurrent training of
// ../recurrent/multiscale.ts: B parallel streams of random bits, read T steps at a time.
//
// - The fast target at every step t: the parity (XOR) of the last `fastSpan` bits (default 2),
//   something local that a fast core learns from a couple of steps of memory.
// - The slow target at every `period`-th step (the slow core's ticks, global steps t with
//   (t + 1) % period == 0): the number of ones among the last `period · blocks` bits (classes
//   0 .. period·blocks). The slow core sees nothing of the bits but the fast core's message at
//   its ticks, one every `period` steps, so it can only count them if the messages carry the
//   count of the block since the last tick (or the bits themselves): more than the fast target
//   needs the fast core to keep. That information is put into the messages only by a gradient
//   from the slow core's loss into the fast core: without one the fast core keeps what its own
//   target needs and the slow core sees roughly `fastSpan` of each block's `period` bits. The
//   slow core also has to add `blocks` block counts, so it needs a memory of its own that spans
//   blocks − 1 of its ticks.
// Targets that need bits from before the stream's start are -1 (not scored). One continuous
// stream: no resets. Seeded and deterministic; state()/restore() resume it exactly.
import { describe, checkOptions, positiveInt } from '../check';
import { rangeError, typeError } from '../errors';
import { Random } from '../random';
import type { SequenceWindow } from './sequences';

/** A window of the two-timescale task: the fast targets in `targets`, the slow ones apart. */
export interface MultiTimescaleWindow extends SequenceWindow {
  /** the slow core ticks after every `period` fast steps; `steps` is a multiple of it */
  readonly period: number;
  /** [(steps / period) * batch] slow targets, tick-major (tick j, row b at j*batch + b); -1: not scored */
  readonly slowTargets: Int32Array;
}

export interface MultiTimescaleCountOptions {
  /** parallel streams */
  batch: number;
  /** fast steps per slow tick (k); default 4 */
  period?: number;
  /** the slow target counts the ones of this many periods; default 2 */
  blocks?: number;
  /** the fast target is the parity of this many last bits; default 2 */
  fastSpan?: number;
  /** default 0 */
  seed?: number;
}

interface CountState {
  rng: number[];
  position: number;
  history: number[][];
}

export class MultiTimescaleCountTask {
  readonly name = 'multi-timescale-count';
  readonly batch: number;
  readonly period: number;
  readonly blocks: number;
  readonly fastSpan: number;
  readonly inputSymbols = 2;
  /** the fast read-out's classes: parity 0 or 1 */
  readonly outputSymbols = 2;
  /** the slow read-out's classes: counts 0 .. period·blocks */
  readonly slowSymbols: number;
  private rng: Random;
  /** fast steps given so far */
  private position = 0;
  /** per row, the last `memory` bits, oldest first */
  private history: number[][];
  private readonly memory: number;

  constructor(options: MultiTimescaleCountOptions) {
    const owner = 'MultiTimescaleCountTask';
    if (options === null || typeof options !== 'object') throw typeError(`${owner}: 'options' must be an object, got ${describe(options)}`);
    checkOptions(owner, options, ['batch', 'period', 'blocks', 'fastSpan', 'seed']);
    this.batch = positiveInt(owner, 'batch', options.batch);
    this.period = positiveInt(owner, 'period', options.period ?? 4);
    this.blocks = positiveInt(owner, 'blocks', options.blocks ?? 2);
    this.fastSpan = positiveInt(owner, 'fastSpan', options.fastSpan ?? 2);
    const seed = options.seed ?? 0;
    if (typeof seed !== 'number' || !Number.isInteger(seed)) throw typeError(`${owner}: 'seed' must be an integer, got ${describe(seed)}`);
    this.slowSymbols = this.period * this.blocks + 1;
    this.memory = Math.max(this.fastSpan, this.period * this.blocks);
    this.rng = new Random(seed);
    this.history = Array.from({ length: this.batch }, () => []);
  }

  /** The next `steps` fast steps (a multiple of `period`, so that every window holds whole periods). */
  nextWindow(steps: number): MultiTimescaleWindow {
    positiveInt('MultiTimescaleCountTask.nextWindow', 'steps', steps);
    if (steps % this.period !== 0)
      throw rangeError(`MultiTimescaleCountTask.nextWindow: 'steps' (${steps}) must be a multiple of the period ${this.period}`);
    const B = this.batch;
    const span = this.period * this.blocks;
    const inputs = new Int32Array(steps * B);
    const targets = new Int32Array(steps * B).fill(-1);
    const slowTargets = new Int32Array((steps / this.period) * B).fill(-1);
    for (let t = 0; t < steps; t++) {
      const tick = (this.position + 1) % this.period === 0;
      for (let b = 0; b < B; b++) {
        const bit = this.rng.int(2);
        const h = this.history[b];
        h.push(bit);
        if (h.length > this.memory) h.shift();
        inputs[t * B + b] = bit;
        if (h.length >= this.fastSpan) targets[t * B + b] = sum(h, this.fastSpan) % 2;
        if (tick && h.length >= span) slowTargets[((t + 1) / this.period - 1) * B + b] = sum(h, span);
      }
      this.position++;
    }
    return { steps, batch: B, inputs, targets, resets: new Array<boolean>(steps).fill(false), period: this.period, slowTargets };
  }

  state(): CountState {
    return { rng: this.rng.state(), position: this.position, history: this.history.map((h) => [...h]) };
  }

  restore(state: unknown): void {
    const s = state as CountState;
    const ok =
      s !== null &&
      typeof s === 'object' &&
      Number.isInteger(s.position) &&
      s.position >= 0 &&
      Array.isArray(s.history) &&
      s.history.length === this.batch &&
      s.history.every((h) => Array.isArray(h) && h.length <= this.memory && h.every((v) => v === 0 || v === 1));
    if (!ok) throw typeError(`MultiTimescaleCountTask.restore: not a state of this task (batch ${this.batch}): ${describe(state)}`);
    this.rng.restore(s.rng);
    this.position = s.position;
    this.history = s.history.map((h) => [...h]);
  }
}

/** The sum of the last `n` values of `h`. */
function sum(h: readonly number[], n: number): number {
  let s = 0;
  for (let i = h.length - n; i < h.length; i++) s += h[i];
  return s;
}
