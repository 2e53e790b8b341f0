// Regression through fit(): float targets in a Dataset (Dataset.fromArrays), the mse loss, and
// evaluation without accuracy; one SGD step against a float64 hand computation, a fit that
// recovers a linear map, DNI on regression, graph capture, and the errors for mismatched data.
import { Adam, Dataset, Device, Linear, Random, SGD, Sequential, Trainer, decouple, mlp, predict } from '../ts';
import * as ref from './helpers/reference';

const cpu = Device.cpu();

/** y = x·Aᵀ + c for random x (rows × 3) and a fixed A (2 × 3), c. */
function linearData(rows: number, seed: number) {
  const rng = new Random(seed);
  const A = [
    [0.5, -1.2, 2.0],
    [1.5, 0.3, -0.7],
  ];
  const c = [0.25, -0.5];
  const x = Array.from({ length: rows }, () => [0, 1, 2].map(() => rng.next() * 2 - 1));
  const y = x.map((r) => A.map((a, o) => a[0] * r[0] + a[1] * r[1] + a[2] * r[2] + c[o]));
  return { x, y, A, c };
}

describe('Dataset.fromArrays', () => {
  test('rows of numbers as targets make regression data; labels with classes make classification data', () => {
    const { x, y } = linearData(10, 1);
    const r = Dataset.fromArrays(x, y);
    expect([r.task, r.count, r.features, r.outputs, r.classes]).toEqual(['regression', 10, 3, 2, 0]);
    expect(Array.from(r.values.subarray(0, 2))).toEqual(Array.from(Float32Array.from(y[0])));
    const c = Dataset.fromArrays(x, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], { classes: 4 });
    expect([c.task, c.classes, c.outputs]).toEqual(['classification', 4, 4]);
    expect(Dataset.fromArrays(Float32Array.from(x.flat()), Int32Array.from([0, 1, 2, 0, 1, 2, 0, 1, 2, 5]), { features: 3 }).classes).toBe(
      6,
    );
    const one = Dataset.fromArrays(
      x,
      y.map((v) => v[0]),
    );
    expect([one.task, one.outputs]).toEqual(['regression', 1]);
    // head() keeps the task and the values of its rows.
    const h = r.head(3);
    expect([h.task, h.count, h.values.length]).toEqual(['regression', 3, 6]);
  });

  test('bad arrays are errors that say what is wrong', () => {
    const { x, y } = linearData(4, 1);
    expect(() => Dataset.fromArrays([[1, 2], [3]], [1, 2])).toThrow(/row 1 of 'inputs' has 1 values, row 0 has 2/);
    expect(() => Dataset.fromArrays(x, [0, 1.5, 0, 1], { classes: 2 })).toThrow(
      /with 'classes', targets are labels: 1.5 at row 1 is not an integer/,
    );
    expect(() => Dataset.fromArrays(Float32Array.from(x.flat()), y)).toThrow(/needs 'features'/);
    expect(() => Dataset.fromArrays(x, y.slice(1))).toThrow(/do not make the same number of rows/);
    expect(() => Dataset.fromArrays(x, y, { clases: 2 } as never)).toThrow(/unknown option 'clases'/);
    expect(() =>
      Dataset.fromArrays(x, [
        [NaN, 1],
        [1, 1],
        [1, 1],
        [1, 1],
      ]),
    ).toThrow(/target value NaN at row 0 is not finite/);
  });
});

describe('fit on regression data', () => {
  test('one SGD step equals W − lr·∂mse/∂W computed in float64', async () => {
    const { x, y } = linearData(8, 2);
    const data = Dataset.fromArrays(x, y);
    const model = new Sequential([new Linear(3, 2)]);
    const lr = 0.1;
    const trainer = new Trainer(model, { device: cpu, optimizer: new SGD({ lr }), loss: 'mse', seed: 3 });
    const layer = model.layers[0] as Linear;
    const W0 = Float64Array.from(await layer.weight!.value.readFloat32());
    const b0 = Float64Array.from(await layer.bias!.value.readFloat32());
    const losses: number[] = [];
    await trainer.fit(data, {
      steps: 1,
      batchSize: 8,
      shuffle: false,
      onStep: (m) => {
        losses.push(m.loss);
      },
    });
    const X = Float64Array.from(x.flat()),
      Y = Float64Array.from(y.flat());
    const out = ref.addBias(ref.gemm(false, true, { M: 8, N: 2, K: 3 }, 1, X, W0, 0, null), b0, 8, 2);
    const dOut = out.map((o, k) => (2 * (o - Y[k])) / 16);
    const dW = ref.gemm(true, false, { M: 2, N: 3, K: 8 }, 1, dOut, X, 0, null);
    const W1 = W0.map((w, k) => w - lr * dW[k]);
    const b1 = b0.map((b, k) => b - lr * ref.columnSums(dOut, 8, 2)[k]);
    expect(ref.compare([losses[0]], [ref.mse(out, Y)]).worst).toBeLessThan(1e-5);
    expect(ref.compare(await layer.weight!.value.readFloat32(), W1).worst).toBeLessThan(1e-5);
    expect(ref.compare(await layer.bias!.value.readFloat32(), b1).worst).toBeLessThan(1e-5);
    trainer.dispose();
  });

  test("recovers a linear map; evaluate reports the mean squared error of predict's outputs, without accuracy", async () => {
    const { x, y, A, c } = linearData(512, 4);
    const data = Dataset.fromArrays(x, y);
    const model = new Sequential([new Linear(3, 2)]);
    const trainer = new Trainer(model, { device: cpu, optimizer: new Adam({ lr: 3e-2 }), loss: 'mse', seed: 0 });
    const before = await trainer.evaluate(data);
    await trainer.fit(data, { epochs: 30, batchSize: 64 });
    const after = await trainer.evaluate(data);
    expect(after).not.toHaveProperty('accuracy');
    expect(after.loss).toBeLessThan(before.loss / 1000);
    const out = (await predict(model, data)).outputs;
    expect(ref.compare([after.loss], [ref.mse(out, Float64Array.from(y.flat()))]).worst).toBeLessThan(1e-4);
    const W = await (model.layers[0] as Linear).weight!.value.readFloat32();
    expect(ref.compare(W, A.flat(), 1e-2).worst).toBeLessThan(2e-2);
    expect(ref.compare(await (model.layers[0] as Linear).bias!.value.readFloat32(), c, 1e-2).worst).toBeLessThan(2e-2);
    trainer.dispose();
  });

  test('DNI trains a regression model; graph capture replays it bit for bit', async () => {
    const { x, y } = linearData(512, 5);
    const data = Dataset.fromArrays(x, y);
    const run = async (graph: boolean) => {
      const net = decouple(mlp(3, [32, 32], 2), { synthesizer: { hidden: [] } });
      const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 1e-2 }), loss: 'mse', seed: 1 });
      const before = (await trainer.evaluate(data)).loss;
      await trainer.fit(data, { epochs: 15, batchSize: 64, graph });
      const after = (await trainer.evaluate(data)).loss;
      const weights = await Promise.all(net.parameters().map((p) => p.value.readFloat32()));
      trainer.dispose();
      return { before, after, weights };
    };
    const eager = await run(false);
    expect(eager.after).toBeLessThan(eager.before / 10); // 1.60 → 0.07 seen (backprop: 0.003)
    const replayed = await run(true);
    expect(replayed.weights.map((w) => Array.from(w))).toEqual(eager.weights.map((w) => Array.from(w)));
  });

  test('data that does not fit the loss or the model is refused before training', async () => {
    const { x, y } = linearData(16, 6);
    const regression = Dataset.fromArrays(x, y);
    const classes = Dataset.fromArrays(
      x,
      x.map((_, i) => i % 2),
      { classes: 2 },
    );
    const ce = new Trainer(new Sequential([new Linear(3, 2)]), { device: cpu, optimizer: new SGD({ lr: 0.1 }), seed: 0 });
    await expect(ce.fit(regression, { steps: 1 })).rejects.toThrow(
      /is regression data \(float values\), but the loss softmax-cross-entropy takes int32 labels: use the Trainer's loss: 'mse'/,
    );
    ce.dispose();
    const mse = new Trainer(new Sequential([new Linear(3, 3)]), { device: cpu, optimizer: new SGD({ lr: 0.1 }), loss: 'mse', seed: 0 });
    await expect(mse.fit(regression, { steps: 1 })).rejects.toThrow(/has 2 target values per row but the model has 3 outputs/);
    await expect(mse.evaluate(classes)).rejects.toThrow(/is classification data \(int32 labels\), but the loss mse takes float values/);
    mse.dispose();
    const cdni = new Trainer(decouple(mlp(3, [8], 2), { synthesizer: { conditioned: true } }), {
      device: cpu,
      optimizer: () => new SGD({ lr: 0.1 }),
      loss: 'mse',
    });
    await expect(cdni.fit(regression, { steps: 1 })).rejects.toThrow(/conditioned \(cDNI\) synthesizers need class labels/);
    cdni.dispose();
  });
});
