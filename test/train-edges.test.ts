// The edges of the training loop's small parts, written from StrykerJS's surviving mutants of
// ts/train (docs/mutation.md): backprop's saved step count, a run without shuffling resumed,
// resume messages for settings that are objects, readCheckpointConfig's argument, and
// predict/saveModel/loadModel's arguments and results.
import {
  Adam,
  Backpropagation,
  Dataset,
  Device,
  Predictions,
  Random,
  SoftmaxCrossEntropy,
  Tensor,
  Trainer,
  loadModel,
  mlp,
  predict,
  saveModel,
} from '../ts';
import { readCheckpointConfig } from '../ts/train/position';
import { checkDestination, removeStaleTemporaries } from '../ts/train/checkpoint';
import { RunLog } from '../ts/train/runlog';
import { spawnSync } from 'child_process';
import * as net from 'net';
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

describe('inference', () => {
  test("classes() picks the first of equal outputs; probabilities() are each row's softmax", () => {
    const p = new Predictions(Float32Array.from([1, 1, 0, -2, 3, 3]), 2, 3);
    expect([...p.classes()]).toEqual([0, 1]);
    const want = [1, 1, 0, -2, 3, 3].map((v, i) => {
      const row = [1, 1, 0, -2, 3, 3].slice(Math.floor(i / 3) * 3, Math.floor(i / 3) * 3 + 3);
      return Math.exp(v) / row.reduce((a, b) => a + Math.exp(b), 0);
    });
    [...p.probabilities()].forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
  });

  test('a model without weights, or with disposed ones, is refused by predict and saveModel', async () => {
    const fresh = mlp(6, [8], 4);
    await expect(predict(fresh, new Float32Array(6))).rejects.toThrow(/predict: .* has no weights yet/);
    await expect(saveModel(fresh, path.join(dir, 'fresh.model'))).rejects.toThrow(/saveModel: .* has no weights yet/);
    const t = trainer();
    await t.fit(data(), { steps: 1, batchSize: 32 });
    expect((await predict(t.model, new Float32Array(12))).rows).toBe(2);
    t.dispose();
    await expect(predict(t.model, new Float32Array(6))).rejects.toThrow(/predict: .* has no weights yet/);
  });

  test('bad arguments are refused, naming them', async () => {
    const t = trainer();
    await t.fit(data(), { steps: 1, batchSize: 32 });
    const m = t.model;
    const file = path.join(dir, 'args.model');
    const cases: [Promise<unknown>, RegExp][] = [
      [predict({} as never, new Float32Array(6)), /predict: 'model' must be a Module/],
      [predict(m, new Float32Array(6), { rows: 2 } as never), /predict: unknown option 'rows'/],
      [predict(m, new Float32Array(6), { batchSize: 0 }), /predict: 'batchSize' must be a positive integer/],
      [predict(m, new Float32Array(6), { stream: 3 as never }), /predict: 'stream' must be a Stream/],
      [predict(m, Tensor.fromArray(Int32Array.from([1, 2, 3, 4, 5, 6]), [1, 6])), /predict: 'input' must be a float32 tensor/],
      [predict(m, new Float32Array(0)), /predict: 'input' has no rows/],
      [saveModel({} as never, file), /saveModel: 'model' must be a Module/],
      [saveModel(m, ''), /saveModel: 'path' must be a file path/],
      [saveModel(m, 3 as never), /saveModel: 'path' must be a file path/],
      [loadModel({} as never, file), /loadModel: 'model' must be a Module/],
      [loadModel(m, ''), /loadModel: 'path' must be a file path/],
      [loadModel(m, 3 as never), /loadModel: 'path' must be a file path/],
      [loadModel(m, file, { devices: 1 } as never), /loadModel: unknown option 'devices'/],
      [loadModel(m, file, { device: 'cpu' as never }), /loadModel: 'device' must be a Device/],
    ];
    for (const [promise, message] of cases) await expect(promise).rejects.toThrow(message);
    t.dispose();
  });

  test('loadModel fills a model that has no weights yet', async () => {
    const t = trainer();
    await t.fit(data(), { steps: 2, batchSize: 32 });
    const file = path.join(dir, 'fill.model');
    await saveModel(t.model, file);
    const x = data().inputs.subarray(0, 12);
    const want = (await predict(t.model, x)).outputs;
    const fresh = await loadModel(mlp(6, [8], 4), file, { device: cpu });
    expect([...(await predict(fresh, x)).outputs]).toEqual([...want]);
    fresh.dispose();
    t.dispose();
  });
});

describe('checkpoint destinations and leftovers', () => {
  // checkDestination only inspects (lstat): nothing here writes outside the test's directory.
  test('a socket, a directory and a character device are refused by kind; a missing file is not there', async () => {
    const socket = path.join(dir, 'live.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      await expect(checkDestination(socket)).rejects.toThrow(/live\.sock is a socket, not a regular file/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    await expect(checkDestination(dir)).rejects.toThrow(/is a directory, not a regular file/);
    if (fs.existsSync('/dev/null')) await expect(checkDestination('/dev/null')).rejects.toThrow(/is a character device/);
    expect(await checkDestination(path.join(dir, 'absent.ckpt'))).toBe(false);
  });

  test('a path that cannot be inspected (under a file) is an error, not "missing"', async () => {
    const file = path.join(dir, 'plain.txt');
    fs.writeFileSync(file, 'x');
    expect(await checkDestination(file)).toBe(true);
    await expect(checkDestination(path.join(file, 'under.ckpt'))).rejects.toThrow(/checkpoint: cannot inspect .*under\.ckpt/);
  });

  test("only a dead process's temporary files of this host are removed", async () => {
    const target = path.join(dir, 'stale.ckpt');
    const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_') || 'host';
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // has exited by now
    const temp = (who: string, pid: number) => `stale.ckpt.partial-${who}-${pid}-1`;
    fs.writeFileSync(path.join(dir, temp(host, dead)), 'x');
    fs.writeFileSync(path.join(dir, temp(host, process.pid)), 'x'); // this process: a write may be in flight
    fs.writeFileSync(path.join(dir, temp(`${host}x`, dead)), 'x'); // another host's
    fs.mkdirSync(path.join(dir, `stale.ckpt.partial-${host}-${dead}-2`)); // not a file
    expect(await removeStaleTemporaries(target)).toEqual([temp(host, dead)]);
    expect(fs.existsSync(path.join(dir, temp(host, dead)))).toBe(false);
    expect(fs.existsSync(path.join(dir, temp(host, process.pid)))).toBe(true);
    expect(fs.existsSync(path.join(dir, temp(`${host}x`, dead)))).toBe(true);
    expect(fs.existsSync(path.join(dir, `stale.ckpt.partial-${host}-${dead}-2`))).toBe(true);
    expect(await removeStaleTemporaries(path.join(dir, 'no-such-dir', 'x.ckpt'))).toEqual([]);
  });
});

describe('RunLog files', () => {
  const step = (n: number, loss: number) => ({ step: n, epoch: 1, loss, lr: 0.5 }) as never;
  const lines = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n');

  test("'dir' is checked, a directory with a log is refused unless appending, and appending keeps the columns", async () => {
    await expect(RunLog.create('', {})).rejects.toThrow(/RunLog: 'dir' must be a directory path/);
    await expect(RunLog.create(3 as never, {})).rejects.toThrow(/RunLog: 'dir' must be a directory path/);
    const logDir = path.join(dir, 'runlog-append');
    const first = await RunLog.create(logDir, { run: 1 });
    first.step(step(1, Number.NaN), 0.25);
    first.step(step(2, 1.5), 0.25);
    await first.close();
    await expect(RunLog.create(logDir, { run: 2 })).rejects.toThrow(/already holds a run log/);
    const csv = path.join(logDir, 'steps.csv');
    const header = lines(csv)[0];
    expect(header.split(',')).toEqual(['step', 'epoch', 'loss', 'lr', 'stepSeconds', 'time']);
    // A non-finite loss is an empty CSV cell (JSON Lines: null).
    expect(lines(csv)[1].split(',').slice(0, 5)).toEqual(['1', '1', '', '0.5', '0.25']);
    expect(JSON.parse(lines(path.join(logDir, 'steps.jsonl'))[0]).loss).toBeNull();

    const again = await RunLog.create(logDir, { run: 2 }, { append: true });
    again.step(step(3, 1.25), 0.5);
    await again.close();
    const rows = lines(csv);
    expect(rows.filter((r) => r === header)).toHaveLength(1); // no second header
    expect(rows.map((r) => r.split(',')[0])).toEqual(['step', '1', '2', '3']);
    expect(JSON.parse(fs.readFileSync(path.join(logDir, 'config.json'), 'utf8'))).toEqual({ run: 2 });
  });

  test('synthesizer and epoch rows: the module once, numbers only, validation fields prefixed', async () => {
    const logDir = path.join(dir, 'runlog-rows');
    const log = await RunLog.create(logDir, {});
    log.diagnostics(4, [{ module: 2, cosine: 0.5, note: 'x' } as never]);
    log.epoch({ epoch: 1, loss: 0.75, samplesPerSecond: 10, validation: { count: 5, accuracy: 0.8 } } as never, 4);
    await log.close();
    expect(lines(path.join(logDir, 'synthesizers.csv'))[0].split(',')).toEqual(['step', 'module', 'cosine', 'time']);
    expect(lines(path.join(logDir, 'synthesizers.csv'))[1].split(',').slice(0, 3)).toEqual(['4', '2', '0.5']);
    const epochs = JSON.parse(lines(path.join(logDir, 'epochs.jsonl'))[0]) as Record<string, unknown>;
    expect(Object.keys(epochs)).toEqual(['epoch', 'step', 'loss', 'samplesPerSecond', 'time', 'validationAccuracy']);
    expect(epochs).toMatchObject({ epoch: 1, step: 4, loss: 0.75, validationAccuracy: 0.8 });
  });
});
