// The edges of the Trainer (ts/train/trainer.ts), written from StrykerJS's surviving and uncovered
// mutants of it (docs/mutation.md, "ts/train/trainer.ts (session 16-17)"): the arguments of the
// constructor, fit, save, load, predict and evaluate, the data checks (regression, images, labels
// written after the Dataset was built), the fewest rows a BatchNorm2d needs, evaluate's loss and
// accuracy against a float64 computation from predict's outputs, the epoch metrics, and resumes
// that must continue exactly as a run that never stopped. Small models, a few steps each.
import {
  Adam,
  BatchNorm2d,
  Conv2d,
  Dataset,
  Device,
  Flatten,
  Linear,
  MaxPool2d,
  Module,
  Random,
  ReLU,
  Sequential,
  Trainer,
  decouple,
  mlp,
} from '../ts';
import type { Loss, Optimizer, TrainingStrategy } from '../ts';
import { Backpropagation } from '../ts/train/backprop';
import { writeCheckpoint } from '../ts/train/checkpoint';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const cpu = Device.cpu();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-trainer-edges-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** `rows` rows of 6 features, labels of 4 classes. */
function classes(rows = 96, seed = 5): Dataset {
  const rng = new Random(seed);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 4));
  return new Dataset('random', rng.uniformArray(rows * 6, 0, 1), labels, 6, 4);
}

/** `rows` rows of 6 features, 2 regression values each. */
function values(rows = 50, seed = 7): Dataset {
  const rng = new Random(seed);
  return new Dataset('values', rng.uniformArray(rows * 6, 0, 1), rng.uniformArray(rows * 2, -1, 1), 6, 2);
}

/** `rows` images of shape [1, height, width], labels of 3 classes. */
function images(rows: number, height: number, width: number): Dataset {
  const rng = new Random(9);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 3));
  return new Dataset('images', rng.uniformArray(rows * height * width, 0, 1), labels, height * width, 3, [1, height, width]);
}

function trainer(model: Module = mlp(6, [8], 4), loss?: 'mse'): Trainer {
  return new Trainer(model, { device: cpu, seed: 2, optimizer: new Adam({ lr: 1e-2 }), ...(loss ? { loss } : {}) });
}

/** The model's outputs on `x`: they differ when any weight differs. */
async function outputs(t: Trainer, x: Float32Array): Promise<number[]> {
  return [...(await t.predict(x)).outputs];
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe("the Trainer's arguments", () => {
  test('each bad argument is refused, naming it', () => {
    const opt = () => new Adam({ lr: 1e-3 });
    const cases: [() => unknown, RegExp][] = [
      [() => new Trainer({} as never, { optimizer: opt() }), /^Trainer: 'model' must be a Module/],
      [() => new Trainer(mlp(6, [8], 4), undefined as never), /^Trainer: expects options \{ optimizer, \.\.\. \}$/],
      [() => new Trainer(mlp(6, [8], 4), null as never), /^Trainer: expects options \{ optimizer, \.\.\. \}$/],
      [() => new Trainer(mlp(6, [8], 4), 3 as never), /^Trainer: expects options \{ optimizer, \.\.\. \}$/],
      [() => new Trainer(mlp(6, [8], 4), { device: 'cpu' as never, optimizer: opt() }), /^Trainer: 'device' must be a Device/],
      [
        () => new Trainer(mlp(6, [8], 4), { device: cpu, optimizer: {} as never }),
        /^Trainer: 'optimizer' must be an Optimizer or a function/,
      ],
      [
        () => new Trainer(mlp(6, [8], 4), { device: cpu, optimizer: (() => 3) as never }),
        /^Trainer: the 'optimizer' factory returned number 3, not an Optimizer/,
      ],
      [() => new Trainer(mlp(6, [8], 4), { device: cpu, optimizer: opt(), seed: 1.5 }), /^Trainer: 'seed' must be an integer, got 1\.5/],
    ];
    for (const [make, message] of cases) expect(make).toThrow(message);
  });

  test("a model another trainer holds is refused, saying how to free it; a stale trainer's dispose() does not free it", () => {
    const model = mlp(6, [8], 4);
    const first = trainer(model);
    expect(() => trainer(model)).toThrow(/dispose\(\) of that trainer first \(which frees the weights\)$/);
    first.dispose();
    const second = trainer(model);
    first.dispose(); // again: the model is the second trainer's now
    expect(() => trainer(model)).toThrow(/already belongs to another Trainer/);
    second.dispose();
  });
});

describe("fit's arguments", () => {
  test('each bad argument is refused, naming it', async () => {
    const t = trainer();
    const d = classes();
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => t.fit(null as never, { steps: 1 }), /^fit: 'data' must be a Dataset/],
      // With a run log, fit describes the run (the data's size) before the data is checked.
      [() => t.fit(null as never, { steps: 1, logDir: path.join(dir, 'log-null-data') }), /^fit: 'data' must be a Dataset/],
      [() => t.fit(d, undefined as never), /^fit: expects options \{ epochs or steps, \.\.\. \}$/],
      [() => t.fit(d, 3 as never), /^fit: expects options \{ epochs or steps, \.\.\. \}$/],
      [() => t.fit(d, null as never), /^fit: expects options \{ epochs or steps, \.\.\. \}$/],
      // Neither: the run would never end (the signal stops a wrongly accepted one).
      [() => t.fit(d, { signal: AbortSignal.timeout(1000) }), /^fit: give 'epochs' or 'steps'$/],
      [() => t.fit(d, { steps: 1, batchSize: 0 }), /^fit: 'batchSize' must be a positive integer, got 0$/],
      [() => t.fit(d, { epochs: 0 }), /^fit: 'epochs' must be a positive integer, got 0$/],
      [() => t.fit(d, { steps: 0 }), /^fit: 'steps' must be a positive integer, got 0$/],
      [() => t.fit(d, { steps: 1, logEvery: 0 }), /^fit: 'logEvery' must be a positive integer, got 0$/],
      [() => t.fit(d, { steps: 1, diagnoseEvery: 0 }), /^fit: 'diagnoseEvery' must be a positive integer, got 0$/],
      [() => t.fit(d, { steps: 1, diagnoseEvery: 1 }), /^fit: 'diagnoseEvery' needs a decoupled network/],
    ];
    for (const [run, message] of cases) expect((await rejection(run())).message).toMatch(message);
    t.dispose();
  });

  test("'checkpoint' must have a path and, if any, a config object", async () => {
    const t = trainer();
    const file = path.join(dir, 'refused.ckpt');
    const shape = /^fit: 'checkpoint' must be \{ path: string, every: number \}, got /;
    // A function is not an options object, even with the right properties.
    const callable = Object.assign(() => undefined, { path: file, every: 1 });
    for (const bad of [null, 3, callable, { every: 1 }, { path: '', every: 1 }, { path: 3, every: 1 }])
      expect((await rejection(t.fit(classes(), { steps: 1, checkpoint: bad as never }))).message).toMatch(shape);
    for (const config of [[1], null, 'x'])
      expect(
        (await rejection(t.fit(classes(), { steps: 1, checkpoint: { path: file, every: 1, config: config as never } }))).message,
      ).toMatch(/^fit: 'checkpoint\.config' must be an object of JSON values, got /);
    expect(fs.existsSync(file)).toBe(false);
    t.dispose();
  });

  test('fit, save and load are refused while fit runs', async () => {
    const t = trainer();
    const file = path.join(dir, 'busy.ckpt');
    const running = t.fit(classes(), { steps: 3, batchSize: 32 });
    const second = await rejection(t.fit(classes(), { steps: 1 }));
    expect([second.code, second.message]).toEqual(['ERR_SYNTHGRAD_STATE', 'fit: this trainer is already running fit(); await it first']);
    expect((await rejection(t.save(file))).message).toMatch(/^save: this trainer is running fit\(\)/);
    expect((await rejection(t.load(file))).message).toMatch(/^load: this trainer is running fit\(\)/);
    expect((await running).steps).toBe(3);
    expect(fs.existsSync(file)).toBe(false);
    t.dispose();
  });

  test("'graph' on a strategy that does not say whether it can be captured is refused", async () => {
    // A model with a training strategy of its own that has no captureBlocker().
    class Custom extends Sequential {
      trainingStrategy(o: { loss: Loss; optimizer: (module: number) => Optimizer }): TrainingStrategy {
        const plain = new Backpropagation(new Sequential([...this.layers]), o.loss, o.optimizer(0));
        return { step: (x, y, ctx) => plain.step(x, y, ctx), dispose: () => plain.dispose() };
      }
    }
    const t = trainer(new Custom([new Linear(6, 4)]));
    expect((await rejection(t.fit(classes(), { steps: 1, graph: true }))).message).toBe(
      "fit: 'graph' cannot capture this training step: this training strategy does not support capture",
    );
    expect((await t.fit(classes(), { steps: 1 })).steps).toBe(1);
    t.dispose();
  });
});

describe('save, load, predict and evaluate arguments', () => {
  test('each bad argument is refused, naming it', async () => {
    const t = trainer();
    const d = classes();
    await t.fit(d, { steps: 1, batchSize: 32 });
    // Each made when checked: a rejection left unawaited after a failure would fail the next test.
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => t.save(''), /^save: 'path' must be a file path/],
      [() => t.save(3 as never), /^save: 'path' must be a file path/],
      [() => t.load(''), /^load: 'path' must be a file path/],
      [() => t.load(3 as never), /^load: 'path' must be a file path/],
      [() => t.predict(d.inputs, { rows: 2 } as never), /^predict: unknown option 'rows'/],
      [() => t.predict(d.inputs, { batchSize: 0 }), /^predict: 'batchSize' must be a positive integer/],
      [() => t.evaluate(null as never), /^evaluate: 'data' must be a Dataset/],
      [() => t.evaluate(d, { batchSize: 0 }), /^evaluate: 'batchSize' must be a positive integer, got 0$/],
    ];
    for (const [run, message] of cases) expect((await rejection(run())).message).toMatch(message);
    t.dispose();
  });

  test('a file without a trainer record is refused by load', async () => {
    const t = trainer();
    for (const [name, host] of [
      ['null-record.ckpt', null],
      ['empty-record.ckpt', {}],
    ] as const) {
      const file = path.join(dir, name);
      await writeCheckpoint(file, [], host, t.stream);
      const e = await rejection(t.load(file));
      expect([e.code, e.message]).toEqual(['ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${file} has no trainer record`]);
    }
    t.dispose();
  });
});

describe("evaluate's numbers", () => {
  /** Mean cross-entropy and accuracy in float64 from the model's outputs; ties go to the first class. */
  async function reference(t: Trainer, d: Dataset): Promise<{ loss: number; accuracy: number }> {
    const out = (await t.predict(d.inputs)).outputs;
    let loss = 0;
    let right = 0;
    for (let r = 0; r < d.count; r++) {
      const row = [...out.subarray(r * 4, r * 4 + 4)];
      const best = row.indexOf(Math.max(...row));
      if (best === d.labels[r]) right++;
      const logSum = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
      loss += logSum - row[d.labels[r]];
    }
    return { loss: loss / d.count, accuracy: right / d.count };
  }

  test('classification: the mean cross-entropy and the accuracy, over batches that divide the rows and that do not', async () => {
    const t = trainer();
    const d = classes();
    await t.fit(d, { steps: 4, batchSize: 32 });
    const want = await reference(t, d);
    for (const batchSize of [32, 40, 1000]) {
      const got = await t.evaluate(d, { batchSize });
      expect(Object.keys(got).sort()).toEqual(['accuracy', 'count', 'loss']);
      expect(got.count).toBe(96);
      expect(got.loss).toBeCloseTo(want.loss, 5);
      expect(got.accuracy).toBe(want.accuracy);
    }
    t.dispose();
  });

  test('equal outputs count as the first class (as Predictions.classes() does)', async () => {
    const t = trainer();
    const d = classes();
    await t.fit(d, { steps: 1, batchSize: 32 });
    for (const p of t.model.parameters()) await p.assign(new Float32Array(p.value.size));
    const zeros = d.labels.filter((l) => l === 0).length;
    expect(zeros).toBeGreaterThan(0);
    expect(d.labels.filter((l) => l === 3).length).not.toBe(zeros);
    const got = await t.evaluate(d, { batchSize: 40 });
    expect(got.accuracy).toBe(zeros / d.count);
    expect(got.loss).toBeCloseTo(Math.log(4), 6);
    t.dispose();
  });

  test('regression: the mean squared error over every value, and no accuracy', async () => {
    const t = trainer(mlp(6, [8], 2), 'mse');
    const d = values();
    await t.fit(d, { steps: 3, batchSize: 16 });
    const out = (await t.predict(d.inputs)).outputs;
    let sum = 0;
    for (let k = 0; k < out.length; k++) sum += (out[k] - d.values[k]) ** 2;
    const got = await t.evaluate(d, { batchSize: 16 });
    expect(Object.keys(got).sort()).toEqual(['count', 'loss']);
    expect(got.count).toBe(50);
    expect(got.loss).toBeCloseTo(sum / (50 * 2), 6);
    t.dispose();
  });
});

describe('the data against the model', () => {
  test('data of the wrong task is refused, saying which loss takes what', async () => {
    const forClasses = trainer();
    expect((await rejection(forClasses.fit(values(50), { steps: 1 }))).message).toBe(
      "fit: 'data' (values) is regression data (float values), but the loss softmax-cross-entropy takes int32 labels: use the Trainer's loss: 'mse'",
    );
    forClasses.dispose();
    const forValues = trainer(mlp(6, [8], 4), 'mse');
    expect((await rejection(forValues.evaluate(classes()))).message).toBe(
      "evaluate: 'data' (random) is classification data (int32 labels), but the loss mse takes float values",
    );
    forValues.dispose();
  });

  test('regression data must have one value per output; a model with outputs to match trains, with and without graph capture', async () => {
    const wide = trainer(mlp(6, [8], 3), 'mse');
    expect((await rejection(wide.fit(values(), { steps: 1 }))).message).toBe(
      "fit: 'data' (values) has 2 target values per row but the model has 3 outputs",
    );
    wide.dispose();
    const x = values().inputs.subarray(0, 12);
    const weights: number[][] = [];
    for (const graph of [false, true]) {
      const t = trainer(mlp(6, [8], 2), 'mse');
      const result = await t.fit(values(), { steps: 4, batchSize: 16, graph });
      expect(result.epochs[0].loss).toBeGreaterThan(0);
      weights.push(await outputs(t, x));
      t.dispose();
    }
    // The captured step replays the same arithmetic (float32 regression targets of width 2).
    expect(weights[1]).toEqual(weights[0]);
  });

  test('decoupled networks train on regression data, unless their synthesizers are conditioned on labels', async () => {
    const plain = new Trainer(decouple(mlp(6, [8], 2), { synthesizer: { hidden: [] } }), {
      device: cpu,
      optimizer: () => new Adam({ lr: 1e-3 }),
      loss: 'mse',
    });
    expect((await plain.fit(values(), { steps: 2, batchSize: 16 })).steps).toBe(2);
    plain.dispose();
    const conditioned = new Trainer(decouple(mlp(6, [8], 2), { synthesizer: { conditioned: true } }), {
      device: cpu,
      optimizer: () => new Adam({ lr: 1e-3 }),
      loss: 'mse',
    });
    expect((await rejection(conditioned.fit(values(), { steps: 1 }))).message).toBe(
      "fit: 'data' (values) is regression data: conditioned (cDNI) synthesizers need class labels",
    );
    conditioned.dispose();
  });

  test('labels written after the Dataset was built are checked against the outputs', async () => {
    const t = trainer();
    for (const bad of [-1, 4]) {
      const d = classes();
      d.labels[5] = bad;
      expect((await rejection(t.fit(d, { steps: 1 }))).message).toBe(
        `fit: 'data' (random) has label ${bad} at row 5, outside the model's 4 outputs`,
      );
    }
    t.dispose();
  });

  test('a model whose output is not [batch, outputs] is refused', async () => {
    const t = trainer(new Sequential([new Conv2d({ inChannels: 1, outChannels: 2, kernel: 1 })]));
    expect((await rejection(t.fit(images(8, 2, 2), { steps: 1 }))).message).toBe(
      "fit: the model's output for 'data' (images) has shape [8, 2, 2, 2]; the loss softmax-cross-entropy takes [batch, outputs]",
    );
    t.dispose();
  });
});

describe('models that take images', () => {
  const convNet = (height: number, width: number, pool = false) =>
    new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 2, kernel: 1 }),
      ...(pool ? [new MaxPool2d({ kernel: 2 })] : []),
      new BatchNorm2d(2),
      new Flatten(),
      new Linear(pool ? (2 * height * width) / 4 : 2 * height * width, 3),
    ]);

  test('rows that are not images are refused, naming the argument and the channels the model takes', async () => {
    const rows = new Dataset('flat', new Float32Array(8 * 4), new Int32Array(8), 4, 3);
    const conv = trainer(convNet(2, 2));
    expect((await rejection(conv.fit(rows, { steps: 1 }))).message).toBe(
      "fit: 'data' (flat) has rows of shape [4], but the model takes images [1, height, width]: " +
        'give the Dataset its image shape (Dataset.fromArrays(x, y, { shape }))',
    );
    expect((await rejection(conv.fit(images(8, 2, 2), { steps: 1, validation: rows }))).message).toMatch(
      /^fit: 'validation' \(flat\) has rows of shape \[4\]/,
    );
    expect((await rejection(conv.evaluate(rows))).message).toMatch(/^evaluate: 'data' \(flat\) has rows of shape \[4\]/);
    conv.dispose();
    const grid = new Dataset('grid', new Float32Array(8 * 4), new Int32Array(8), 4, 3, [2, 2]);
    expect((await rejection(conv.fit(grid, { steps: 1 }))).message).toMatch(/^fit: 'data' \(grid\) has rows of shape \[2, 2\], but/);
    const pool = trainer(new Sequential([new MaxPool2d({ kernel: 1 }), new Flatten(), new Linear(4, 3)]));
    expect((await rejection(pool.fit(rows, { steps: 1 }))).message).toMatch(/but the model takes images \[channels, height, width\]/);
    pool.dispose();
  });

  test('a BatchNorm2d that one row reaches as 1x1 images needs batches of 2; larger images train on 1-row batches', async () => {
    const tiny = trainer(convNet(1, 1));
    expect((await rejection(tiny.fit(images(8, 1, 1), { steps: 1, batchSize: 1 }))).message).toMatch(
      /^fit: 'batchSize' must be at least 2 for this model, got 1: BatchNorm2d.* normalises with batch statistics/,
    );
    expect((await tiny.fit(images(8, 1, 1), { steps: 2, batchSize: 2 })).steps).toBe(2);
    tiny.dispose();
    // Pooled down to 1x1 before the BatchNorm2d: the shape is followed through the layers.
    const pooled = trainer(convNet(2, 2, true));
    expect((await rejection(pooled.fit(images(8, 2, 2), { steps: 1, batchSize: 1 }))).message).toMatch(
      /^fit: 'batchSize' must be at least 2 for this model, got 1: BatchNorm2d/,
    );
    pooled.dispose();
    // 1x2 images: two values per channel, enough for batch statistics.
    const wide = trainer(convNet(1, 2));
    const result = await wide.fit(images(8, 1, 2), { steps: 3, batchSize: 1 });
    expect(result.steps).toBe(3);
    wide.dispose();
  });

  test('a model that starts with Flatten takes images of any shape', async () => {
    const t = trainer(new Sequential([new Flatten(), new Linear(4, 3)]));
    expect((await t.fit(images(8, 2, 2), { steps: 2, batchSize: 4 })).steps).toBe(2);
    t.dispose();
  });

  test('images that do not fit the first layer are reported as such, not as a batch size', async () => {
    const twoChannels = new Sequential([
      new Conv2d({ inChannels: 2, outChannels: 2, kernel: 1 }),
      new BatchNorm2d(2),
      new Flatten(),
      new Linear(2, 3),
    ]);
    const t = trainer(twoChannels);
    expect((await rejection(t.fit(images(8, 1, 1), { steps: 1, batchSize: 1 }))).message).toMatch(
      /^fit: 'data' \(images\) does not fit the model/,
    );
    t.dispose();
  });
});

describe('the diagnostics probe', () => {
  test('a 1-row validation set is a probe batch for a model without BatchNorm, and refused with one', async () => {
    const plain = new Sequential([new Linear(6, 8), new ReLU(), new Linear(8, 4)]);
    const net = new Trainer(decouple(plain, { synthesizer: { hidden: [] } }), { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }) });
    const seen: number[] = [];
    await net.fit(classes(), {
      steps: 2,
      batchSize: 32,
      validation: classes(1, 3),
      diagnoseEvery: 1,
      onStep: (m) => void seen.push(m.diagnostics?.length ?? 0),
    });
    expect(seen).toEqual([1, 1]);
    net.dispose();
    const t = new Trainer(decouple(mlp(6, [8], 4)), { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }) });
    expect((await rejection(t.fit(classes(), { steps: 1, batchSize: 32, validation: classes(1, 3), diagnoseEvery: 1 }))).message).toMatch(
      /^fit: 'validation' \(random\) has 1 row; the diagnostics' probe batch needs 2 \(BatchNorm1d.* in training mode\)$/,
    );
    t.dispose();
  });
});

describe('the run', () => {
  test("an epoch's loss is the mean of its steps' losses; its seconds and samples per second are the epoch's", async () => {
    const t = trainer();
    const losses: number[][] = [[], []];
    const before = Date.now();
    const result = await t.fit(classes(), {
      epochs: 2,
      batchSize: 32,
      onStep: async (m) => {
        losses[m.epoch - 1].push(m.loss);
        await new Promise((resolve) => setTimeout(resolve, 10)); // each epoch takes 30 ms at least
      },
    });
    const elapsed = (Date.now() - before) / 1000;
    expect(result.epochs.map((e) => [e.epoch, e.steps])).toEqual([
      [1, 3],
      [2, 3],
    ]);
    for (const e of result.epochs) {
      const mean = losses[e.epoch - 1].reduce((a, b) => a + b, 0) / 3;
      expect(e.loss).toBeCloseTo(mean, 6);
      expect(e.seconds).toBeGreaterThanOrEqual(0.025);
      expect(e.seconds).toBeLessThanOrEqual(elapsed);
      expect(e.samplesPerSecond * e.seconds).toBeCloseTo(96, 6);
    }
    expect(result.seconds).toBeGreaterThanOrEqual(0.05);
    expect(result.seconds).toBeLessThanOrEqual(elapsed);
    t.dispose();
  });

  test('a non-finite loss stops the run, naming the step and what to do', async () => {
    const t = trainer();
    const d = classes();
    d.inputs[0] = NaN; // the first row, with shuffle off: step 1
    const e = await rejection(t.fit(d, { steps: 3, batchSize: 32, shuffle: false }));
    expect(e.code).toBe('ERR_SYNTHGRAD_TRAINING');
    expect(e.message).toBe('fit: the loss became NaN at step 1 (epoch 1); lower the learning rate or check the inputs for NaN/Infinity');
    t.dispose();
  });

  test('the checkpoint is first written after `every` steps', async () => {
    const t = trainer();
    const file = path.join(dir, 'every.ckpt');
    const exists: boolean[] = [];
    await t.fit(classes(), {
      steps: 4,
      batchSize: 16,
      checkpoint: { path: file, every: 3 },
      onStep: (m) => void (exists[m.step] = fs.existsSync(file)),
    });
    expect([exists[1], exists[2], exists[4]]).toEqual([false, false, true]);
    t.dispose();
  });
});

describe('resuming continues as a run that never stopped', () => {
  const x = classes(12, 11).inputs;

  /** The uninterrupted run: its epochs and the model's outputs on `x`. */
  async function straight(d: Dataset, options: { steps?: number; epochs?: number; batchSize: number }) {
    const t = trainer();
    const result = await t.fit(d, options);
    const out = await outputs(t, x);
    t.dispose();
    return { result, out };
  }

  test('stopped at the step before a 2-row epoch tail', async () => {
    // 98 rows in batches of 32: 32, 32, 32, then 2 rows, the fewest a step of this model (it has
    // a BatchNorm1d) takes: that batch still belongs to epoch 1.
    const d = classes(98);
    const want = await straight(d, { steps: 6, batchSize: 32 });
    const file = path.join(dir, 'tail.ckpt');
    const first = trainer();
    await first.fit(d, { steps: 3, batchSize: 32, checkpoint: { path: file, every: 3 } });
    first.dispose();
    const second = trainer();
    const result = await second.fit(d, { steps: 6, batchSize: 32, checkpoint: { path: file, every: 3 } });
    expect(result.resumedFrom).toBe(3);
    // Epoch 1 is reported by the resumed run: its 4 steps (3 before the stop), the same mean loss.
    expect(want.result.epochs.map((e) => e.steps)).toEqual([4, 2]);
    expect(result.epochs.map((e) => [e.epoch, e.steps, e.loss])).toEqual(want.result.epochs.map((e) => [e.epoch, e.steps, e.loss]));
    expect(await outputs(second, x)).toEqual(want.out);
    second.dispose();
  });

  test('stopped by the signal between two epochs', async () => {
    const d = classes();
    const want = await straight(d, { epochs: 2, batchSize: 32 });
    const file = path.join(dir, 'between.ckpt');
    const stop = new AbortController();
    const first = trainer();
    const stopped = await first.fit(d, {
      epochs: 2,
      batchSize: 32,
      checkpoint: { path: file, every: 100 },
      signal: stop.signal,
      onEpoch: () => stop.abort(),
    });
    expect([stopped.stopped, stopped.steps, stopped.epochs.length]).toEqual([true, 3, 1]);
    first.dispose();
    const second = trainer();
    const result = await second.fit(d, { epochs: 2, batchSize: 32, checkpoint: { path: file, every: 100 } });
    expect(result.resumedFrom).toBe(3);
    expect(result.epochs.map((e) => [e.epoch, e.loss])).toEqual([[2, want.result.epochs[1].loss]]);
    expect(await outputs(second, x)).toEqual(want.out);
    second.dispose();
  });
});
