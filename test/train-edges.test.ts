// The edges of the training loop's small parts, written from StrykerJS's surviving mutants of
// ts/train (docs/mutation.md): backprop's saved step count, a run without shuffling resumed,
// resume messages for settings that are objects, and readCheckpointConfig's argument.
import { Adam, Backpropagation, Dataset, Device, Random, SoftmaxCrossEntropy, Trainer, mlp } from '../ts';
import { readCheckpointConfig } from '../ts/train/position';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const cpu = Device.cpu();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-train-edges-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function data(rows = 96): Dataset {
  const rng = new Random(5);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 4));
  return new Dataset('random', rng.uniformArray(rows * 6, 0, 1), labels, 6, 4);
}

function trainer(): Trainer {
  return new Trainer(mlp(6, [8], 4), { device: cpu, seed: 2, optimizer: new Adam({ lr: 1e-3 }) });
}

describe("backprop's saved state", () => {
  function strategy() {
    const model = mlp(6, [8], 4);
    model.initialize(cpu, new Random(1));
    return new Backpropagation(model, new SoftmaxCrossEntropy(), new Adam({ lr: 1e-3 }));
  }

  test('a step count of 0 is restored; a negative, fractional or missing one is refused naming the field', () => {
    const s = strategy();
    s.restoreState({ optimizerSteps: 0 });
    expect(s.optimizer.steps).toBe(0);
    s.restoreState({ optimizerSteps: 7 });
    expect(s.optimizer.steps).toBe(7);
    for (const bad of [{ optimizerSteps: -1 }, { optimizerSteps: 1.5 }, { optimizerSteps: '3' }, {}, null]) {
      let thrown: unknown;
      try {
        s.restoreState(bad);
      } catch (e) {
        thrown = e;
      }
      expect((thrown as Error).message).toMatch(/checkpoint: 'optimizerSteps' must be a step count/);
      expect((thrown as { code?: string }).code).toBe('ERR_SYNTHGRAD_CHECKPOINT');
      expect(s.optimizer.steps).toBe(7);
    }
    s.model.dispose();
    s.dispose();
  });

  test('dispose frees the optimizer state', () => {
    const s = strategy();
    const state = s.checkpointState().tensors.map((n) => n.tensor);
    expect(state.length).toBe(2 * s.model.parameters().length); // Adam: two moments per parameter
    expect(state.some((x) => x.disposed)).toBe(false);
    s.dispose();
    expect(state.every((x) => x.disposed)).toBe(true);
    s.model.dispose();
  });
});

describe('resuming', () => {
  test('a run saved without shuffling resumes without shuffling', async () => {
    const file = path.join(dir, 'ordered.ckpt');
    const first = trainer();
    await first.fit(data(), { steps: 2, batchSize: 32, shuffle: false, checkpoint: { path: file, every: 1 } });
    first.dispose();
    const second = trainer();
    const result = await second.fit(data(), { steps: 4, batchSize: 32, shuffle: false, checkpoint: { path: file, every: 1 } });
    expect(result.resumedFrom).toBe(2);
    second.dispose();
  });

  test('a setting that holds objects is shown as JSON in the refusal', async () => {
    const file = path.join(dir, 'objects.ckpt');
    const first = trainer();
    await first.fit(data(), { steps: 1, batchSize: 32, checkpoint: { path: file, every: 1, config: { layers: [8, { width: 8 }] } } });
    first.dispose();
    const second = trainer();
    await expect(
      second.fit(data(), { steps: 2, batchSize: 32, checkpoint: { path: file, every: 1, config: { layers: [8, { width: 9 }] } } }),
    ).rejects.toThrow('was saved with layers [8,{"width":8}], this run has [8,{"width":9}]');
    second.dispose();
  });

  test.each([[''], [3], [undefined]])('readCheckpointConfig(%j) is refused naming the path', async (bad) => {
    await expect(readCheckpointConfig(bad as string)).rejects.toThrow(/readCheckpointConfig: 'path' must be a file path/);
  });
});
