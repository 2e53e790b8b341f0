// trainSequences on text enqueues the next window before awaiting the current one's loss (so
// that the device is not idle while the host makes and enqueues it): the run must be bit for
// bit the run that awaits every window, and stop, validate, save and report where it did.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Random } from '../ts';
import { RecurrentTraining, WindowMetrics } from '../ts/recurrent/training';
import { trainSequences, TrainSequencesOptions } from '../ts/recurrent/run';
import { readCheckpoint } from '../ts/train/checkpoint';

/** Runs trainSequences while counting how many windows were in flight (enqueued, loss not yet arrived) at most. */
async function tracked(
  options: TrainSequencesOptions,
): Promise<{ score: Awaited<ReturnType<typeof trainSequences>>; maxInFlight: number }> {
  const original = RecurrentTraining.prototype.step;
  let inFlight = 0;
  let maxInFlight = 0;
  const spy = jest.spyOn(RecurrentTraining.prototype, 'step').mockImplementation(function (this: RecurrentTraining, window) {
    const p: Promise<WindowMetrics> = original.call(this, window);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    return p.finally(() => inFlight--);
  });
  try {
    return { score: await trainSequences(options), maxInFlight };
  } finally {
    spy.mockRestore();
  }
}

describe('trainSequences: one text window ahead', () => {
  let dir: string;
  let textFile: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-pipeline-'));
    textFile = path.join(dir, 'text.txt');
    const words = ['quiet', 'queen', 'quack', 'aqua', 'equal'];
    const rng = new Random(4);
    fs.writeFileSync(textFile, Array.from({ length: 1500 }, () => words[rng.int(words.length)]).join(' '));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['dni', 'separate'],
    ['dni-aux', 'single'],
    ['bptt', 'single'],
  ] as const)('%s (%s streams): the same weights, scores and reports as awaiting every window', async (method, streams) => {
    const base: TrainSequencesOptions = {
      task: 'text',
      method,
      streams,
      truncation: 5,
      hidden: 16,
      batch: 4,
      lr: 0.01,
      seed: 2,
      textFile,
      steps: 47,
      validateEvery: 20,
      patience: 50,
      logEvery: 7,
    };
    const reports: { ahead: unknown[]; awaited: unknown[] } = { ahead: [], awaited: [] };
    // A checkpoint only at the end: windows run ahead between the reports and validations.
    const ahead = await tracked({
      ...base,
      checkpoint: { path: path.join(dir, `${method}-ahead.ckpt`), every: 1000 },
      onProgress: (p) => reports.ahead.push(p),
    });
    // A checkpoint after every window: none may run ahead.
    const awaited = await tracked({
      ...base,
      checkpoint: { path: path.join(dir, `${method}-awaited.ckpt`), every: 1 },
      onProgress: (p) => reports.awaited.push(p),
    });
    expect(ahead.maxInFlight).toBe(2);
    expect(awaited.maxInFlight).toBe(1);
    expect(ahead.score.windows).toBe(47);
    expect(ahead.score.testBits).toBe(awaited.score.testBits);
    expect(ahead.score.bestValidationBits).toBe(awaited.score.bestValidationBits);
    expect(reports.ahead).toEqual(reports.awaited);
    expect(reports.ahead.map((p) => (p as { window: number }).window)).toEqual([7, 14, 20, 21, 28, 35, 40, 42]);
    const a = await readCheckpoint(path.join(dir, `${method}-ahead.ckpt`));
    const b = await readCheckpoint(path.join(dir, `${method}-awaited.ckpt`));
    expect([...a.tensors.keys()]).toEqual([...b.tensors.keys()]);
    for (const [name, t] of a.tensors) expect(Buffer.from(t.data.buffer).equals(Buffer.from(b.tensors.get(name)!.data.buffer))).toBe(true);
    // The text source's position: the same windows were drawn, none past the last.
    expect((a.host as { host: { source: unknown } }).host.source).toEqual((b.host as { host: { source: unknown } }).host.source);
  });

  test('an abort from onProgress stops after the reported window: none was enqueued past it', async () => {
    const controller = new AbortController();
    const { score, maxInFlight } = await tracked({
      task: 'text',
      method: 'dni',
      truncation: 3,
      steps: 1000,
      hidden: 8,
      batch: 4,
      textFile,
      logEvery: 5,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.window === 10) controller.abort();
      },
    });
    expect(maxInFlight).toBe(2);
    expect(score.stopped).toBe(true);
    expect(score.windows).toBe(10);
  });

  test('a failing window rejects the run with its error; the window ahead leaves no unhandled rejection', async () => {
    // Every window from the 5th on fails as a diverged one does (its loss Promise rejects).
    const original = RecurrentTraining.prototype.step;
    let calls = 0;
    const spy = jest.spyOn(RecurrentTraining.prototype, 'step').mockImplementation(function (this: RecurrentTraining, window) {
      const p: Promise<WindowMetrics> = original.call(this, window);
      const n = ++calls;
      return n < 5 ? p : p.then(() => Promise.reject(new Error(`window ${n} diverged`)));
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await expect(
        trainSequences({ task: 'text', method: 'bptt', truncation: 3, steps: 200, hidden: 8, batch: 4, textFile }),
      ).rejects.toThrow(/^window 5 diverged$/);
      expect(calls).toBe(6); // the 6th was enqueued ahead of the 5th's loss
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      spy.mockRestore();
    }
  });
});
