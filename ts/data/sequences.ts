// Sequence data for recurrent models: the window interface that truncated BPTT (with or without
// synthetic gradients) consumes, and the library's sources of it.
//
// A SequenceSource is B parallel streams of symbols read T steps at a time. Windows are
// time-major (step t, row b at index t*B + b), the layout a recurrent core consumes one step
// [B, F] at a time. Inputs are symbol ids (a model one-hot encodes or embeds them); targets are
// symbol ids scored with softmax cross-entropy, or -1 where nothing is scored (e.g. while a
// Copy task presents its items). `resets[t]` says that every row's recurrent state is zeroed
// before step t: sources whose episodes share a length across the batch (Copy, Repeat Copy)
// reset whole batches at once, so one flag per step suffices.
//
// The sources: CopyTask and RepeatCopyTask (./copy.ts, with the Curriculum of ./curriculum.ts)
// and TextCorpus's TextSource (./text.ts, character-level language modelling), all exported
// from here. For the loops that consume windows: checkSequenceWindow() checks one against a
// model's symbol widths before training, bitsPerCharacter() turns summed nats into bits (the
// unit of the curriculum and of language-model results).
import { describe } from '../check';
import { rangeError, typeError } from '../errors';

/** T time steps of B parallel streams, time-major: step t, row b at index t*B + b. */
export interface SequenceWindow {
  readonly steps: number; // T
  readonly batch: number; // B
  /** [T*B] input symbol ids in [0, inputSymbols) */
  readonly inputs: Int32Array;
  /** [T*B] target ids in [0, outputSymbols), or -1: nothing scored at that step */
  readonly targets: Int32Array;
  /** [T] true: every row's recurrent state is zeroed before step t (an episode starts) */
  readonly resets: boolean[];
}

export interface SequenceSource {
  readonly name: string;
  readonly batch: number;
  /** one-hot input width */
  readonly inputSymbols: number;
  /** softmax output width */
  readonly outputSymbols: number;
  /** The next `steps` steps of the B streams (continuing where the last window ended). */
  nextWindow(steps: number): SequenceWindow;
  /** Everything needed to resume exactly (RNG state, position, curriculum level) as JSON. */
  state(): unknown;
  restore(state: unknown): void;
}

/**
 * Bits per character (or per any scored symbol) from a summed softmax cross-entropy in nats:
 * lossNats / count / ln 2. `lossNats` is the sum over `count` scored symbols (a mean loss times
 * its count).
 */
export function bitsPerCharacter(lossNats: number, count: number): number {
  if (typeof lossNats !== 'number') throw typeError(`bitsPerCharacter: 'lossNats' must be a number, got ${describe(lossNats)}`);
  if (!Number.isFinite(lossNats) || lossNats < 0)
    throw rangeError(`bitsPerCharacter: 'lossNats' must be a finite non-negative number, got ${lossNats}`);
  if (typeof count !== 'number') throw typeError(`bitsPerCharacter: 'count' must be a number, got ${describe(count)}`);
  if (!Number.isInteger(count) || count < 1) throw rangeError(`bitsPerCharacter: 'count' must be a positive integer, got ${count}`);
  return lossNats / count / Math.LN2;
}

/**
 * Checks a window against a model's symbol widths before it is used: the array lengths agree
 * with steps × batch, every input is in [0, inputSymbols), every target in [0, outputSymbols)
 * or -1. Errors name `owner`, the field and the first bad index. Returns the number of scored
 * targets (those that are not -1).
 */
export function checkSequenceWindow(owner: string, window: SequenceWindow, inputSymbols: number, outputSymbols: number): number {
  if (window === null || typeof window !== 'object')
    throw typeError(`${owner}: 'window' must be a SequenceWindow, got ${describe(window)}`);
  const { steps, batch, inputs, targets, resets } = window;
  if (!Number.isInteger(steps) || steps < 1) throw rangeError(`${owner}: 'window.steps' must be a positive integer, got ${String(steps)}`);
  if (!Number.isInteger(batch) || batch < 1) throw rangeError(`${owner}: 'window.batch' must be a positive integer, got ${String(batch)}`);
  if (!(inputs instanceof Int32Array)) throw typeError(`${owner}: 'window.inputs' must be an Int32Array, got ${describe(inputs)}`);
  if (!(targets instanceof Int32Array)) throw typeError(`${owner}: 'window.targets' must be an Int32Array, got ${describe(targets)}`);
  if (!Array.isArray(resets)) throw typeError(`${owner}: 'window.resets' must be an array of booleans, got ${describe(resets)}`);
  const n = steps * batch;
  if (inputs.length !== n) throw rangeError(`${owner}: 'window.inputs' must have steps*batch = ${n} values, got ${inputs.length}`);
  if (targets.length !== n) throw rangeError(`${owner}: 'window.targets' must have steps*batch = ${n} values, got ${targets.length}`);
  if (resets.length !== steps) throw rangeError(`${owner}: 'window.resets' must have one flag per step (${steps}), got ${resets.length}`);
  for (let t = 0; t < steps; t++)
    if (typeof resets[t] !== 'boolean') throw typeError(`${owner}: 'window.resets[${t}]' must be a boolean, got ${describe(resets[t])}`);
  for (let i = 0; i < n; i++)
    if (inputs[i] < 0 || inputs[i] >= inputSymbols)
      throw rangeError(
        `${owner}: 'window.inputs[${i}]' (step ${Math.floor(i / batch)}, row ${i % batch}) is ${inputs[i]}, outside the input symbols [0, ${inputSymbols})`,
      );
  let scored = 0;
  for (let i = 0; i < n; i++) {
    if (targets[i] === -1) continue;
    if (targets[i] < 0 || targets[i] >= outputSymbols)
      throw rangeError(
        `${owner}: 'window.targets[${i}]' (step ${Math.floor(i / batch)}, row ${i % batch}) is ${targets[i]}, outside the output symbols [0, ${outputSymbols}) and not -1`,
      );
    scored++;
  }
  return scored;
}

export { Curriculum } from './curriculum';
export type { CurriculumOptions, CurriculumState } from './curriculum';
export { CopyTask, RepeatCopyTask, repeatCopyLevel } from './copy';
export type { CopyTaskOptions, RepeatCopyTaskOptions, CopyWindow, CopyScore } from './copy';
export { TextCorpus, TextSource } from './text';
export type { TextCorpusOptions, TextSplit, TextSourceOptions } from './text';
