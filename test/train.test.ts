// Training end to end: a short MNIST run reaches a stated accuracy, fit() leaves the event
// loop free, and seeded runs are reproducible.
import { Adam, Dataset, Device, SGD, Trainer, datasets, decouple, mlp, learningRateSchedules } from '../ts';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

describe('backprop on MNIST', () => {
  test('300 steps of 784-256-256-256-10 reach at least 96% test accuracy', async () => {
    const { train, test } = await datasets.mnist();
    const trainer = new Trainer(mlp(784, [256, 256, 256], 10), { device: cpu, optimizer: new Adam({ lr: 1e-3 }), seed: 1 });
    const losses: number[] = [];
    const r = await trainer.fit(train, {
      steps: 300,
      batchSize: 256,
      onStep: (m) => {
        losses.push(m.loss);
      },
    });
    expect(r.steps).toBe(300);
    expect(losses).toHaveLength(300);
    const { accuracy } = await trainer.evaluate(test);
    expect(accuracy).toBeGreaterThanOrEqual(0.96);
    // The loss fell: the mean of the last 50 steps is well under the first 10's.
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-50))).toBeLessThan(0.5 * mean(losses.slice(0, 10)));
    trainer.dispose();
  });
});

describe('fit', () => {
  async function smallRun(seed: number, timerTicks?: { n: number }) {
    const { train } = await datasets.mnist();
    const data = train.head(4096);
    const trainer = new Trainer(mlp(784, [64, 64], 10), { device: cpu, optimizer: () => new SGD({ lr: 0.05, momentum: 0.9 }), seed });
    const losses: number[] = [];
    // A self-renewing setImmediate runs once per turn of the event loop: it counts the turns
    // fit() leaves to other work, whatever the machine's speed (a blocking wait leaves none).
    let running = true;
    const spin = () => {
      if (running && timerTicks) {
        timerTicks.n++;
        setImmediate(spin);
      }
    };
    if (timerTicks) setImmediate(spin);
    const result = await trainer.fit(data, {
      epochs: 2,
      batchSize: 128,
      onStep: (m) => {
        losses.push(m.loss);
      },
    });
    running = false;
    trainer.dispose();
    return { losses, result };
  }

  test('never blocks the event loop: it turns at every step of training', async () => {
    const ticks = { n: 0 };
    const { result } = await smallRun(3, ticks);
    expect(result.steps).toBe(64);
    // The host waits for each step's loss through a Promise, so the loop turns at least once a step.
    expect(ticks.n).toBeGreaterThanOrEqual(result.steps);
  });

  test('is reproducible with a seed and differs with another seed', async () => {
    const a = await smallRun(7);
    const b = await smallRun(7);
    const c = await smallRun(8);
    expect(a.losses).toEqual(b.losses);
    expect(a.losses).not.toEqual(c.losses);
    expect(a.result.epochs.map((e) => e.epoch)).toEqual([1, 2]);
  });

  test('reports the learning rate the strategy states: module 1 of a decoupled network, NaN when none', async () => {
    const data = Dataset.fromArrays(
      Float32Array.from({ length: 40 }, (_, i) => Math.sin(i)),
      new Int32Array(10).map((_, i) => i % 2),
      { features: 4 },
    );
    const lrs: number[] = [];
    const dni = new Trainer(decouple(mlp(4, [3], 2)), { device: cpu, optimizer: (m) => new SGD({ lr: m === 0 ? 0.03 : 0.07 }) });
    await dni.fit(data, {
      steps: 2,
      batchSize: 5,
      onStep: (m) => {
        lrs.push(m.lr);
      },
    });
    dni.dispose();
    const silent = new Trainer(mlp(4, [3], 2), { device: cpu, optimizer: new SGD({ lr: 0.5 }) });
    // A strategy without the method (as one written before it existed): fit reports NaN.
    Object.defineProperty(silent.strategy, 'learningRate', { value: undefined });
    await silent.fit(data, {
      steps: 1,
      batchSize: 5,
      onStep: (m) => {
        lrs.push(m.lr);
      },
    });
    silent.dispose();
    expect(lrs).toEqual([0.03, 0.03, NaN]);
  });

  test('calls onStep every logEvery steps and onEpoch with metrics, and follows the schedule', async () => {
    const { train, test } = await datasets.mnist();
    const lrs: number[] = [];
    const epochs: number[] = [];
    const trainer = new Trainer(mlp(784, [32], 10), {
      device: cpu,
      seed: 0,
      optimizer: new Adam({ lr: learningRateSchedules.stepDecay(1e-2, [10, 20], 0.1) }),
    });
    await trainer.fit(train.head(3000), {
      epochs: 1,
      batchSize: 100,
      logEvery: 5,
      validation: test.head(500),
      onStep: (m) => {
        lrs.push(m.lr);
      },
      onEpoch: (m) => {
        epochs.push(m.epoch);
        expect(m.steps).toBe(30);
        expect(m.samplesPerSecond).toBeGreaterThan(0);
        expect(m.validation!.count).toBe(500);
        expect(m.validation!.accuracy).toBeGreaterThan(0.5);
      },
    });
    // steps 5,10,...,30 used lr at step index 4, 9, ..., 29
    expect(lrs.map((x) => Number(x.toPrecision(3)))).toEqual([1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4]);
    expect(epochs).toEqual([1]);
    trainer.dispose();
  });

  test('stops at whichever of epochs and steps comes first', async () => {
    const data = new Dataset('ones', new Float32Array(64 * 3).fill(0.5), new Int32Array(64), 3, 2);
    const trainer = new Trainer(mlp(3, [4], 2), { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    expect((await trainer.fit(data, { epochs: 3, steps: 5, batchSize: 16 })).steps).toBe(5);
    expect((await trainer.fit(data, { epochs: 2, steps: 100, batchSize: 16 })).steps).toBe(8);
    trainer.dispose();
  });
});
