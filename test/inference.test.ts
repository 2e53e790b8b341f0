// Using a trained model: predict() against a float64 computation and against evaluate(), in
// evaluation mode and in batches; saveModel/loadModel round trips (a DNI-trained network
// loaded into a plain model of the same layers); and the errors a user meets.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  BatchNorm1d,
  Dataset,
  Device,
  Linear,
  ReLU,
  Sequential,
  Tensor,
  Trainer,
  datasets,
  decouple,
  loadModel,
  mlp,
  predict,
  saveModel,
} from '../ts';
import * as ref from './helpers/reference';
import { Random } from '../ts';

const cpu = Device.cpu();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-inference-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('predict equals x·Wᵀ + b computed in float64, and classes and probabilities follow from it', async () => {
  const model = new Sequential([new Linear(5, 3)]);
  const rng = new Random(4);
  model.initialize(cpu, rng.fork());
  const layer = model.layers[0] as Linear;
  const W = ref.uniformArray(rng, 15, -1, 1),
    b = ref.uniformArray(rng, 3, -1, 1),
    x = ref.uniformArray(rng, 7 * 5, -1, 1);
  await layer.weight!.assign(W);
  await layer.bias!.assign(b);
  const p = await predict(model, x, { batchSize: 3 });
  const want = ref.addBias(ref.gemm(false, true, { M: 7, N: 3, K: 5 }, 1, x, W, 0, null), b, 7, 3);
  expect(ref.compare(p.outputs, want).worst).toBeLessThan(1e-5);
  expect([p.rows, p.width]).toEqual([7, 3]);
  const classes = p.classes();
  const probs = p.probabilities();
  for (let r = 0; r < 7; r++) {
    const row = Array.from(want.subarray(r * 3, r * 3 + 3));
    expect(classes[r]).toBe(row.indexOf(Math.max(...row)));
    const z = row.reduce((s, v) => s + Math.exp(v), 0);
    for (let c = 0; c < 3; c++) expect(probs[r * 3 + c]).toBeCloseTo(Math.exp(row[c]) / z, 6);
  }
  // A Tensor on the device gives the same outputs.
  const t = Tensor.fromArray(x, [7, 5], { device: cpu });
  expect(Array.from((await predict(model, t)).outputs)).toEqual(Array.from((await predict(model, x, { batchSize: 7 })).outputs));
  t.dispose();
  model.dispose();
});

describe('a trained model', () => {
  let trainer: Trainer;
  let test_: Dataset;
  beforeAll(async () => {
    const { train, test } = await datasets.mnist();
    test_ = test.head(1000);
    trainer = new Trainer(decouple(mlp(784, [64, 64], 10), { synthesizer: { conditioned: true } }), {
      device: cpu,
      optimizer: () => new Adam({ lr: 1e-3 }),
      seed: 2,
    });
    await trainer.fit(train.head(4096), { epochs: 1, batchSize: 128 });
  });
  afterAll(() => trainer.dispose());

  test("predicts in evaluation mode: its classes give evaluate()'s accuracy, whatever the batch size", async () => {
    const p = await trainer.predict(test_, { batchSize: 300 });
    const classes = p.classes();
    let correct = 0;
    for (let i = 0; i < test_.count; i++) if (classes[i] === test_.labels[i]) correct++;
    const e = await trainer.evaluate(test_);
    expect(correct / test_.count).toBe(e.accuracy);
    expect(e.accuracy).toBeGreaterThan(0.5); // trained (chance is 0.1), briefly
    const whole = await trainer.predict(test_, { batchSize: 1000 });
    expect(ref.compare(whole.outputs, p.outputs).worst).toBeLessThan(1e-5);
  });

  test('saveModel / loadModel: a plain model of the same layers predicts exactly as the DNI-trained one', async () => {
    const file = path.join(dir, 'mnist.model');
    await saveModel(trainer.model, file);
    const plain = await loadModel(mlp(784, [64, 64], 10), file, { device: cpu });
    const a = await trainer.predict(test_);
    const b = await predict(plain, test_);
    expect(Buffer.from(b.outputs.buffer).equals(Buffer.from(a.outputs.buffer))).toBe(true);
    // Loading into a model that has weights overwrites them in place.
    const other = new Trainer(mlp(784, [64, 64], 10), { device: cpu, optimizer: new Adam({ lr: 1e-3 }), seed: 9 });
    expect(Buffer.from((await other.predict(test_)).outputs.buffer).equals(Buffer.from(a.outputs.buffer))).toBe(false);
    await loadModel(other.model, file);
    expect(Buffer.from((await other.predict(test_)).outputs.buffer).equals(Buffer.from(a.outputs.buffer))).toBe(true);
    other.dispose();
    plain.dispose();
  });

  test('errors name what is wrong', async () => {
    const file = path.join(dir, 'm.model');
    await saveModel(trainer.model, file);
    await expect(loadModel(mlp(784, [32, 64], 10), file)).rejects.toThrow(/loadModel: .* holds Sequential.*this model is Sequential/);
    const ckpt = path.join(dir, 'run.ckpt');
    await trainer.save(ckpt);
    await expect(loadModel(mlp(784, [64, 64], 10), ckpt)).rejects.toThrow(/not a model file written by saveModel\(\)/);
    await expect(predict(mlp(784, [8], 10), test_)).rejects.toThrow(/has no weights yet/);
    await expect(trainer.predict(new Float32Array(783))).rejects.toThrow(/783 values, not a whole number of rows of 784/);
    await expect(trainer.predict(test_, { batchsize: 10 } as never)).rejects.toThrow(
      /unknown option 'batchsize' \(did you mean 'batchSize'\?\)/,
    );
    await expect(predict(trainer.model, 'x' as never)).rejects.toThrow(/'input' must be a Tensor, a Float32Array or a Dataset/);
    await expect(loadModel(mlp(784, [64, 64], 10), file, { device: 'cpu' as never })).rejects.toThrow(/'device' must be a Device/);
  });
});

test('a model with BatchNorm predicts with its running statistics (one row at a time is fine)', async () => {
  const model = new Sequential([new Linear(4, 6), new BatchNorm1d(6), new ReLU(), new Linear(6, 2)]);
  model.initialize(cpu, new Random(1));
  const x = ref.uniformArray(new Random(3), 5 * 4, -1, 1);
  const batched = await predict(model, x, { batchSize: 5 });
  const single = await predict(model, x, { batchSize: 1 });
  expect(ref.compare(single.outputs, batched.outputs).worst).toBeLessThan(1e-5);
  model.dispose();
});
