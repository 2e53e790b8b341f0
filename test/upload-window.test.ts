// uploadWindow and uploadStepLabels (ts/recurrent/model.ts): one upload per window, each step's
// tensors views of it, holding exactly the window's values (compared with the host arrays
// element by element); the multi-timescale trainer's window is two uploads, whatever its ticks.
import { Adam, Arena, Device, Stream, Tensor } from '../ts';
import { LSTMSequenceModel, uploadStepLabels, uploadWindow } from '../ts/recurrent/model';
import { MultiTimescaleTraining } from '../ts/recurrent/multiscale';
import { MultiTimescaleCountTask } from '../ts/data/multiscale';
import { expectThrows } from './helpers/errors';

const cpu = Device.cpu();

/** A window of `steps` x `batch` with distinct inputs, and targets all -1 at step 1. */
function window(steps: number, batch: number) {
  const inputs = Int32Array.from({ length: steps * batch }, (_, i) => i % 1000);
  const targets = Int32Array.from({ length: steps * batch }, (_, i) => (Math.floor(i / batch) === 1 ? -1 : (i * 7) % 5));
  targets[2 * batch + 3] = -1; // a row not scored inside a scored step
  return { steps, batch, inputs, targets, resets: Array.from({ length: steps }, (_, t) => t === 2) };
}

afterEach(() => jest.restoreAllMocks());

describe('uploadWindow', () => {
  for (const batch of [1, 64, 70]) {
    for (const withStream of [false, true]) {
      test(`batch ${batch}, ${withStream ? 'written on a stream' : 'uploaded at once'}: one upload, per-step views with the window's values`, async () => {
        const fromArray = jest.spyOn(Tensor, 'fromArray');
        const write = jest.spyOn(Tensor.prototype, 'write');
        const w = window(4, batch);
        const arena = new Arena();
        const stream = withStream ? new Stream(cpu) : undefined;
        const got = uploadWindow(w, cpu, arena, stream);
        expect(fromArray.mock.calls.length + write.mock.calls.length).toBe(1);
        expect(got.resets).toEqual(w.resets);
        expect(got.inputs).toHaveLength(4);
        expect(got.targets[1]).toBeUndefined();
        for (let t = 0; t < 4; t++) {
          const slice = (a: Int32Array) => Array.from(a.subarray(t * batch, (t + 1) * batch));
          expect(got.inputs[t].shape).toEqual([batch]);
          expect(Array.from(await got.inputs[t].read(stream))).toEqual(slice(w.inputs));
          if (t !== 1) expect(Array.from(await got.targets[t]!.read(stream))).toEqual(slice(w.targets));
        }
        arena.dispose();
        expect(got.inputs[0].disposed).toBe(true);
      });
    }
  }

  test('a window whose arrays do not hold steps x batch values is an error', () => {
    const w = window(3, 5);
    expectThrows(
      () => uploadWindow({ ...w, inputs: w.inputs.subarray(1) }, cpu, new Arena()),
      'RangeError',
      /uploadWindow: 'inputs' and 'targets' must have steps \* batch = 15 elements, got 14 and 15/,
    );
  });
});

describe('uploadStepLabels', () => {
  for (const batch of [1, 64, 70]) {
    test(`batch ${batch}: one stream-ordered upload, a view per scored step with its labels`, async () => {
      const fromArray = jest.spyOn(Tensor, 'fromArray');
      const write = jest.spyOn(Tensor.prototype, 'write');
      const steps = 5;
      const labels = Int32Array.from({ length: steps * batch }, (_, i) => (Math.floor(i / batch) === 3 ? -1 : (i * 3) % 7));
      if (batch > 1) labels[batch - 1] = -1; // one row not scored in a scored step
      const arena = new Arena();
      const stream = new Stream(cpu);
      const got = uploadStepLabels(labels, steps, batch, cpu, arena, stream);
      expect(fromArray).not.toHaveBeenCalled();
      expect(write).toHaveBeenCalledTimes(1);
      expect(got).toHaveLength(steps);
      expect(got[3]).toBeUndefined();
      for (const t of [0, 1, 2, 4]) {
        expect(got[t]!.shape).toEqual([batch]);
        expect(Array.from(await got[t]!.read(stream))).toEqual(Array.from(labels.subarray(t * batch, (t + 1) * batch)));
      }
      arena.dispose();
    });
  }

  test('labels that do not hold steps x batch values are an error', () => {
    expectThrows(
      () => uploadStepLabels(new Int32Array(11), 3, 4, cpu, new Arena()),
      'RangeError',
      /uploadStepLabels: 'labels' must have steps \* batch = 12 elements, got 11/,
    );
  });
});

describe('MultiTimescaleTraining', () => {
  for (const method of ['bptt', 'dni'] as const) {
    test(`${method}: a window of 8 ticks is two stream-ordered uploads (A's window, B's targets)`, async () => {
      const task = new MultiTimescaleCountTask({ batch: 3, period: 2, blocks: 2, seed: 8 });
      const tr = new MultiTimescaleTraining(new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 8 }), {
        method,
        period: 2,
        slow: { hidden: 6, outputs: task.slowSymbols },
        optimizer: () => new Adam({ lr: 0.01 }),
        seed: 4,
      });
      await tr.step(task.nextWindow(16)); // the first window also creates the carried states
      const window = task.nextWindow(16);
      const fromArray = jest.spyOn(Tensor, 'fromArray');
      const write = jest.spyOn(Tensor.prototype, 'write');
      const metrics = await tr.step(window);
      expect(fromArray).not.toHaveBeenCalled();
      expect(write).toHaveBeenCalledTimes(2);
      expect(write.mock.calls.map(([, stream]) => stream)).toEqual([tr.stream, tr.stream]);
      expect(Number.isFinite(metrics.slowLoss)).toBe(true);
    });
  }
});
