// Nothing is accepted silently: unknown option keys (JavaScript callers get no types), values of
// the wrong type that truthiness or coercion would let through, data that does not fit the
// model, a model taken over by a second trainer, and fits that could never take a step. Each
// is a TypeError or RangeError naming the function and the argument, raised before training.
import {
  Adam,
  BatchNorm1d,
  Dataset,
  Device,
  Linear,
  Module,
  Random,
  ReLU,
  SGD,
  Sequential,
  Trainer,
  decouple,
  mlp,
  learningRateSchedules,
} from '../ts';
import { closest } from '../ts/check';
import { errorOf } from './helpers/errors';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

/** `rows` random rows of `features` with labels cycling through `classes`. */
function data(rows: number, features: number, classes: number, seed = 1): Dataset {
  const rng = new Random(seed);
  return new Dataset(
    'random',
    rng.uniformArray(rows * features, 0, 1),
    Int32Array.from({ length: rows }, (_, i) => i % classes),
    features,
    classes,
  );
}

/** The error a rejected promise carries (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the promise to reject, it resolved');
}

function expectError(e: Error, name: string, message: RegExp): void {
  expect(`${e.name}: ${e.message}`).toMatch(message);
  expect(e.name).toBe(name);
}

async function weights(model: Module, trainer: Trainer): Promise<number[][]> {
  return Promise.all(model.parameters().map(async (p) => Array.from(await p.value.readFloat32(trainer.stream))));
}

describe('unknown option keys', () => {
  test('the closest known key is suggested for a likely misspelling, none for an unrelated word', () => {
    expect(closest('batchsize', ['epochs', 'batchSize'])).toBe('batchSize');
    expect(closest('hiddn', ['hidden', 'conditioned'])).toBe('hidden');
    expect(closest('bais', ['bias', 'init'])).toBe('bias'); // a swap of neighbours counts once
    expect(closest('nesterov', ['lr', 'weightDecay', 'momentum'])).toBeUndefined();
  });

  test('fit, evaluate and fit.checkpoint', async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    const d = data(16, 4, 3);
    let steps = 0;
    const onStep = () => void steps++;
    expectError(
      await rejection(trainer.fit(d, { steps: 2, batchsize: 8, onStep } as never)),
      'TypeError',
      /^TypeError: fit: unknown option 'batchsize' \(did you mean 'batchSize'\?\)$/,
    );
    expectError(
      await rejection(trainer.fit(d, { steps: 2, checkpoint: { path: 'unused', evry: 1 }, onStep } as never)),
      'TypeError',
      /fit: unknown option 'checkpoint.evry' \(did you mean 'checkpoint.every'\?\)/,
    );
    expect(steps).toBe(0);
    expectError(
      await rejection(trainer.evaluate(d, { batch: 4 } as never)),
      'TypeError',
      /evaluate: unknown option 'batch' \(known: batchSize\)/,
    );
    trainer.dispose();
  });

  test('Trainer, Linear and BatchNorm1d', () => {
    expectError(
      errorOf(() => new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }), sed: 3 } as never)),
      'TypeError',
      /Trainer: unknown option 'sed' \(did you mean 'seed'\?\)/,
    );
    expectError(
      errorOf(() => new Linear(2, 3, { bais: false } as never)),
      'TypeError',
      /Linear: unknown option 'bais' \(did you mean 'bias'\?\)/,
    );
    expectError(
      errorOf(() => new BatchNorm1d(3, { momentun: 0.5 } as never)),
      'TypeError',
      /BatchNorm1d: unknown option 'momentun' \(did you mean 'momentum'\?\)/,
    );
  });

  test('optimizers', () => {
    expectError(
      errorOf(() => new SGD({ lr: 0.1, nesterov: true } as never)),
      'TypeError',
      /SGD: unknown option 'nesterov' \(known: lr, weightDecay, momentum\)/,
    );
    expectError(
      errorOf(() => new Adam({ lr: 0.1, beta: 0.5 } as never)),
      'TypeError',
      /Adam: unknown option 'beta' \(did you mean 'beta1'\?\)/,
    );
    expectError(
      errorOf(() => new Adam({ lr: 0.1, momentum: 0.9 } as never)),
      'TypeError',
      /Adam: unknown option 'momentum'/,
    );
  });

  test('decouple, its synthesizer and its schedule', () => {
    const model = () => mlp(4, [5, 5], 3);
    expectError(
      errorOf(() => decouple(model(), { synthesizer: { hiddn: [8] } } as never)),
      'TypeError',
      /decouple: unknown option 'synthesizer.hiddn' \(did you mean 'synthesizer.hidden'\?\)/,
    );
    expectError(
      errorOf(() => decouple(model(), { lamda: 0.5 } as never)),
      'TypeError',
      /decouple: unknown option 'lamda' \(did you mean 'lambda'\?\)/,
    );
    // depth means nothing to the lockstep schedule: a caller who passes it expects pipelining.
    expectError(
      errorOf(() => decouple(model(), { schedule: { kind: 'lockstep', depth: 2 } } as never)),
      'TypeError',
      /decouple: unknown option 'schedule.depth' \(known: kind, pUpdate\)/,
    );
    expectError(
      errorOf(() => decouple(model(), { schedule: { kind: 'pipelined', dept: 2 } } as never)),
      'TypeError',
      /decouple: unknown option 'schedule.dept' \(did you mean 'schedule.depth'\?\)/,
    );
    expectError(
      errorOf(() => decouple(model(), { synthesizer: 'cdni' } as never)),
      'TypeError',
      /decouple: 'synthesizer' must be an object, got string cdni/,
    );
  });

  test('every known key is accepted', async () => {
    const d = data(16, 4, 3);
    const trainer = new Trainer(
      new Sequential([
        new Linear(4, 6, { bias: true, init: 'default' }),
        new BatchNorm1d(6, { momentum: 0.1, eps: 1e-5 }),
        new ReLU(),
        new Linear(6, 3),
      ]),
      { device: cpu, optimizer: new SGD({ lr: 0.1, weightDecay: 0, momentum: 0.5 }), loss: 'softmax-cross-entropy', seed: 1 },
    );
    const result = await trainer.fit(d, {
      epochs: 1,
      steps: 10,
      batchSize: 8,
      shuffle: true,
      validation: d,
      onStep: () => undefined,
      logEvery: 1,
      onEpoch: () => undefined,
      graph: false,
    });
    expect(result.steps).toBe(2);
    expect((await trainer.evaluate(d, { batchSize: 5 })).count).toBe(16);
    trainer.dispose();
    const net = decouple(mlp(4, [5, 5], 3), {
      at: 'every-activation',
      lambda: 0,
      warmupSteps: 0,
      streams: 'single',
      classes: 3,
      schedule: { kind: 'pipelined', depth: 1, pUpdate: 1 },
      synthesizer: {
        hidden: [4],
        conditioned: true,
        lossWeight: 1,
        updatesPerTarget: 1,
        center: false,
        maskInactive: false,
        optimizer: () => new Adam({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }),
      },
    });
    expect(net.synthesizers.length).toBe(2);
  });
});

describe('values of the wrong type', () => {
  test("Linear's bias: 'no' is not a boolean (it used to create a bias)", () => {
    expectError(
      errorOf(() => new Linear(2, 3, { bias: 'no' } as never)),
      'TypeError',
      /Linear: 'bias' must be a boolean, got string no/,
    );
    expectError(
      errorOf(() => new Linear(2, 3, { init: 'zero' } as never)),
      'TypeError',
      /Linear: 'init' must be 'default' or 'zeros', got string zero/,
    );
    const noBias = new Linear(2, 3, { bias: false });
    noBias.initialize(cpu, new Random(0));
    expect(noBias.parameters().length).toBe(1);
    noBias.dispose();
  });

  test("fit's shuffle: 'no' is not a boolean (it used to shuffle); callbacks must be functions", async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    const d = data(16, 4, 3);
    expectError(
      await rejection(trainer.fit(d, { steps: 1, shuffle: 'no' } as never)),
      'TypeError',
      /fit: 'shuffle' must be a boolean, got string no/,
    );
    expectError(
      await rejection(trainer.fit(d, { steps: 1, graph: 1 } as never)),
      'TypeError',
      /fit: 'graph' must be a boolean, got number 1/,
    );
    expectError(
      await rejection(trainer.fit(d, { steps: 1, onEpoch: 'log' } as never)),
      'TypeError',
      /fit: 'onEpoch' must be a function, got string log/,
    );
    expectError(
      await rejection(trainer.fit(d, { steps: 1, validation: {} } as never)),
      'TypeError',
      /fit: 'validation' must be a Dataset, got Object/,
    );
    trainer.dispose();
  });

  test('numbers given as strings, and a truthy conditioned', () => {
    expectError(
      errorOf(() => new BatchNorm1d(3, { momentum: '0.5' } as never)),
      'TypeError',
      /BatchNorm1d: 'momentum' must be a number, got string 0.5/,
    );
    expectError(
      errorOf(() => new SGD({ lr: 0.1, weightDecay: '0.1' } as never)),
      'TypeError',
      /SGD: 'weightDecay' must be a number, got string 0.1/,
    );
    expectError(
      errorOf(() => new Adam({ lr: 0.1, eps: '1e-8' } as never)),
      'TypeError',
      /Adam: 'eps' must be a number, got string 1e-8/,
    );
    expectError(
      errorOf(() => learningRateSchedules.stepDecay(0.1, [10], '0.5' as never)),
      'TypeError',
      /stepDecay: 'gamma' must be a number, got string 0.5/,
    );
    expectError(
      errorOf(() => decouple(mlp(4, [5, 5], 3), { synthesizer: { conditioned: 'no' } } as never)),
      'TypeError',
      /decouple: 'synthesizer.conditioned' must be a boolean, got string no/,
    );
  });
});

describe('data that does not fit', () => {
  test("Dataset: 'classes' NaN or missing, and head() of a negative or non-integral count", () => {
    const inputs = new Float32Array(4);
    const labels = Int32Array.from([0, 5]);
    expectError(
      errorOf(() => new Dataset('d', inputs, labels, 2, NaN)),
      'RangeError',
      /Dataset d: 'classes' must be a positive integer, got NaN/,
    );
    expectError(
      errorOf(() => new (Dataset as unknown as new (...a: unknown[]) => Dataset)('d', inputs, labels, 2)),
      'TypeError',
      /Dataset d: 'classes' must be a positive integer, got undefined/,
    );
    const d = data(6, 2, 3);
    expectError(
      errorOf(() => d.head(-1)),
      'RangeError',
      /Dataset.head: 'n' must be a non-negative integer, got -1/,
    );
    expectError(
      errorOf(() => d.head(NaN)),
      'RangeError',
      /Dataset.head: 'n' must be a non-negative integer, got NaN/,
    );
    expectError(
      errorOf(() => d.head('2' as never)),
      'TypeError',
      /Dataset.head: 'n' must be a number, got string 2/,
    );
    expect(d.head(4).count).toBe(4);
    expect(d.head(100).count).toBe(6);
  });

  test('evaluate on an empty dataset is an error, not NaN', async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    expectError(await rejection(trainer.evaluate(data(8, 4, 3).head(0))), 'RangeError', /evaluate: 'data' \(random\[:0\]\) is empty/);
    trainer.dispose();
  });

  test("a dataset whose classes differ from the model's outputs, either way", async () => {
    const trainer = new Trainer(mlp(4, [5], 10), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    let steps = 0;
    const onStep = () => void steps++;
    expectError(
      await rejection(trainer.fit(data(16, 4, 5), { steps: 2, batchSize: 8, onStep })),
      'RangeError',
      /fit: 'data' \(random\) has 5 classes but the model has 10 outputs/,
    );
    expectError(
      await rejection(trainer.fit(data(16, 4, 12), { steps: 2, batchSize: 8, onStep })),
      'RangeError',
      /fit: 'data' \(random\) has 12 classes but the model has 10 outputs/,
    );
    expectError(
      await rejection(trainer.fit(data(16, 4, 10), { steps: 2, batchSize: 8, onStep, validation: data(8, 4, 5) })),
      'RangeError',
      /fit: 'validation' \(random\) has 5 classes but the model has 10 outputs/,
    );
    expectError(
      await rejection(trainer.evaluate(data(16, 4, 12))),
      'RangeError',
      /evaluate: 'data' \(random\) has 12 classes but the model has 10 outputs/,
    );
    expect(steps).toBe(0);
    trainer.dispose();
  });

  test("labels beyond the model's outputs are refused before training, not trained into a NaN loss", async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    const d = data(16, 4, 3);
    d.labels[5] = 7; // written after the Dataset checked its labels
    let steps = 0;
    expectError(
      await rejection(trainer.fit(d, { steps: 2, batchSize: 8, onStep: () => void steps++ })),
      'RangeError',
      /fit: 'data' \(random\) has label 7 at row 5, outside the model's 3 outputs/,
    );
    expect(steps).toBe(0);
    trainer.dispose();
  });

  test('labels beyond the classes a cDNI synthesizer one-hot encodes', async () => {
    const net = decouple(mlp(4, [5, 5], 4), { classes: 3, synthesizer: { conditioned: true } });
    const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }) });
    expectError(
      await rejection(trainer.fit(data(16, 4, 4), { steps: 2, batchSize: 8 })),
      'RangeError',
      /fit: 'data' \(random\) has 4 classes but the synthesizers one-hot encode 3/,
    );
    trainer.dispose();
  });
});

describe('a model belongs to one trainer', () => {
  test('a second trainer is refused and the trained weights are kept', async () => {
    const model = mlp(4, [5], 3);
    const first = new Trainer(model, { device: cpu, optimizer: new Adam({ lr: 1e-2 }), seed: 1 });
    await first.fit(data(16, 4, 3), { steps: 3, batchSize: 8 });
    const trained = await weights(model, first);
    expectError(
      errorOf(() => new Trainer(model, { device: cpu, optimizer: new Adam({ lr: 1e-2 }), seed: 2 })),
      'Error',
      /Trainer: the model Sequential\(.*\) already belongs to another Trainer, and a second would re-initialise its weights/,
    );
    // ... also when the model comes wrapped in a decoupled network
    expectError(
      errorOf(() => new Trainer(decouple(model), { device: cpu, optimizer: () => new Adam({ lr: 1e-2 }) })),
      'Error',
      /Trainer: Sequential\(.*\) \(part of the model\) already belongs to another Trainer/,
    );
    expect(await weights(model, first)).toEqual(trained);
    // Once the first trainer is disposed of (its weights freed), the model may be trained afresh.
    first.dispose();
    const second = new Trainer(model, { device: cpu, optimizer: new Adam({ lr: 1e-2 }), seed: 1 });
    expect((await second.fit(data(16, 4, 3), { steps: 1, batchSize: 8 })).steps).toBe(1);
    second.dispose();
  });
});

describe('fits that could never take a step', () => {
  // Counts epochs and gives up after many: the unguarded fit looped over empty epochs forever.
  const watchdog = () => {
    let epochs = 0;
    return async () => {
      if (++epochs > 50) throw new Error('fit looped over 50 epochs without a step');
      await new Promise((r) => setImmediate(r));
    };
  };

  test('steps on data of fewer than 2 rows, with BatchNorm', async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    expectError(
      await rejection(trainer.fit(data(1, 4, 3), { steps: 3, batchSize: 8, onEpoch: watchdog() })),
      'RangeError',
      /fit: 'data' \(random\) has 1 row; training BatchNorm1d\(5\) needs batches of at least 2/,
    );
    expectError(
      await rejection(trainer.fit(data(3, 4, 3).head(0), { steps: 3, onEpoch: watchdog() })),
      'RangeError',
      /fit: 'data' \(random\[:0\]\) has 0 rows/,
    );
    trainer.dispose();
  });

  test('batches of 1 with BatchNorm (every batch would be dropped)', async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    const message = /fit: 'batchSize' must be at least 2 for this model, got 1: BatchNorm1d\(5\) normalises with batch statistics/;
    expectError(await rejection(trainer.fit(data(8, 4, 3), { epochs: 2, batchSize: 1 })), 'RangeError', message);
    expectError(await rejection(trainer.fit(data(8, 4, 3), { steps: 2, batchSize: 1, onEpoch: watchdog() })), 'RangeError', message);
    trainer.dispose();
  });

  test('without BatchNorm, batches of 1 and data of 1 row train, and no tail row is dropped', async () => {
    const model = new Sequential([new Linear(4, 6), new ReLU(), new Linear(6, 3)]);
    const trainer = new Trainer(model, { device: cpu, optimizer: new SGD({ lr: 0.5 }) });
    const before = await weights(model, trainer);
    expect((await trainer.fit(data(5, 4, 3), { epochs: 1, batchSize: 1 })).steps).toBe(5);
    expect(await weights(model, trainer)).not.toEqual(before);
    expect((await trainer.fit(data(5, 4, 3), { epochs: 1, batchSize: 2 })).steps).toBe(3);
    expect((await trainer.fit(data(1, 4, 3), { steps: 2, batchSize: 8, onEpoch: watchdog() })).steps).toBe(2);
    expectError(
      await rejection(trainer.fit(data(3, 4, 3).head(0), { steps: 3, onEpoch: watchdog() })),
      'RangeError',
      /fit: 'data' \(random\[:0\]\) has 0 rows: nothing to train on/,
    );
    trainer.dispose();
  });

  test('with BatchNorm, an odd 1-row tail is still dropped (seeded runs unchanged)', async () => {
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    expect((await trainer.fit(data(5, 4, 3), { epochs: 1, batchSize: 2 })).steps).toBe(2);
    trainer.dispose();
  });

  test('diagnostics on a 1-row validation set (the probe batch) are refused before training', async () => {
    const trainer = new Trainer(decouple(mlp(4, [5, 5], 3)), { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }) });
    let steps = 0;
    expectError(
      await rejection(
        trainer.fit(data(16, 4, 3), { steps: 2, batchSize: 8, diagnoseEvery: 1, validation: data(1, 4, 3), onStep: () => void steps++ }),
      ),
      'RangeError',
      /fit: 'validation' \(random\) has 1 row; the diagnostics' probe batch needs 2/,
    );
    expect(steps).toBe(0);
    trainer.dispose();
  });
});

describe('arguments that once gave engine errors naming nothing (found by the fuzzer)', () => {
  test('mlp checks its widths', () => {
    expectError(
      errorOf(() => mlp(3, true as unknown as number[], 2)),
      'TypeError',
      /mlp: 'hidden' must be an array of layer widths, got boolean/,
    );
    expectError(
      errorOf(() => mlp(3, [4, 0], 2)),
      'RangeError',
      /mlp: 'hidden\[1\]' must be a positive integer, got 0/,
    );
    expectError(
      errorOf(() => mlp(3, [4], '2' as unknown as number)),
      'TypeError',
      /mlp: 'classes' must be a positive integer, got string 2/,
    );
  });
  test('a positive-integer argument that is an object without a prototype is described, not converted', () => {
    expectError(
      errorOf(() => new Linear(2, Object.create(null) as number)),
      'TypeError',
      /Linear: 'outFeatures' must be a positive integer, got an object/,
    );
  });
  test('Dataset.gather checks its range and row numbers', () => {
    const d = Dataset.fromArrays([[1], [2], [3]], [0, 1, 0], { name: 'g', classes: 2 });
    expectError(
      errorOf(() => d.gather([0, 1], 0, 2 ** 53)),
      'RangeError',
      /Dataset g: gather: 'end' must be an integer in \[0, 2\], got 9007199254740992/,
    );
    expectError(
      errorOf(() => d.gather([0, 7], 0, 2)),
      'RangeError',
      /'indices\[1\]' must be a row number in \[0, 3\), got 7/,
    );
    expectError(
      errorOf(() => d.gather('ab' as unknown as number[], 0, 1)),
      'TypeError',
      /'indices' must be an array of row numbers, got string ab/,
    );
    expect(Array.from(d.gather([2, 0], 0, 2).inputs)).toEqual([3, 1]);
  });
});
