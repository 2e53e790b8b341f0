// Checkpoints: a run stopped and resumed from its checkpoint continues bit for bit as if it had
// never stopped (backprop, decoupled with stochastic updates on several streams, graph replay);
// save/load round-trips a trained model; a file that does not fit is a clear error.
import { Adam, Dataset, Device, Parameter, Random, SGD, Trainer, decouple, mlp, schedules } from '../ts';
import type { DecoupleOptions, FitOptions } from '../ts';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const cpu = Device.cpu();
let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-ckpt-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// 300 rows in batches of 64: four full batches and a 44-row tail per epoch, so runs cross
// epoch boundaries (and reshuffles) and stop in the middle of epochs.
function data(rows = 300): Dataset {
  const rng = new Random(8);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 10));
  return new Dataset('random', rng.uniformArray(rows * 12, 0, 1), labels, 12, 10);
}

function bits(arrays: Float32Array[]): Buffer {
  return Buffer.concat(arrays.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)));
}

function makeTrainer(dni?: DecoupleOptions) {
  const model = mlp(12, [16, 16, 16], 10);
  const net = dni ? decouple(model, dni) : model;
  const lr = schedules.stepDecay(3e-3, [12], 0.1); // decays between the stop and the end
  const optimizer = () => (dni ? new Adam({ lr }) : new SGD({ lr, momentum: 0.9 }));
  return { trainer: new Trainer(net, { device: cpu, seed: 3, optimizer }), net };
}

/** Trains to `steps`; returns the losses reported per step and every weight (and BN statistic). */
async function run(steps: number, options: Partial<FitOptions> = {}, dni?: DecoupleOptions) {
  const { trainer, net } = makeTrainer(dni);
  const losses: [number, number][] = [];
  const result = await trainer.fit(data(), { steps, batchSize: 64, ...options, onStep: (m) => { losses.push([m.step, m.loss]); } });
  const state = await Promise.all(net.stateTensors().map((t) => t.readFloat32(trainer.stream)));
  trainer.dispose();
  return { losses, state, result };
}

describe.each([
  ['backprop (SGD momentum)', undefined],
  ['DNI, stochastic updates, per-module streams', { schedule: { kind: 'lockstep', pUpdate: 0.6 }, synthesizer: { hidden: [8] } } as DecoupleOptions],
  ['cDNI with BP(λ) and warm-up', { lambda: 0.3, warmupSteps: 3, synthesizer: { conditioned: true } } as DecoupleOptions],
])('%s: a resumed run equals the uninterrupted one', (_name, dni) => {
  test('bit for bit, losses and weights', async () => {
    const whole = await run(27, {}, dni);
    const file = path.join(dir, `resume-${Math.random().toString(36).slice(2)}.ckpt`);
    // Stops at step 13 (mid-epoch; saves at 5, 10 and on the way out), then a new trainer resumes.
    const first = await run(13, { checkpoint: { path: file, every: 5 } }, dni);
    expect(first.result.resumedFrom).toBeUndefined();
    const second = await run(27, { checkpoint: { path: file, every: 5 } }, dni);
    expect(second.result.resumedFrom).toBe(13);
    expect(second.result.steps).toBe(27);
    expect(second.losses.map(([s]) => s)).toEqual(Array.from({ length: 14 }, (_, i) => 14 + i));
    expect([...first.losses, ...second.losses]).toEqual(whole.losses);
    expect(bits(second.state).equals(bits(whole.state))).toBe(true);
    // The weights really moved after the stop (the comparison above is not of untrained models).
    expect(bits(first.state).equals(bits(whole.state))).toBe(false);
  });
});

test('resuming at an epoch boundary, with graph replay, equals the uninterrupted run', async () => {
  const whole = await run(15, { graph: true });
  const file = path.join(dir, 'epoch-boundary.ckpt');
  await run(10, { graph: true, checkpoint: { path: file, every: 5 } }); // step 10 ends epoch 2
  const second = await run(15, { graph: true, checkpoint: { path: file, every: 5 } });
  expect(second.result.resumedFrom).toBe(10);
  expect(second.losses).toEqual(whole.losses.slice(10));
  expect(bits(second.state).equals(bits(whole.state))).toBe(true);
});

test('a finished run resumes with nothing to do', async () => {
  const file = path.join(dir, 'finished.ckpt');
  const first = await run(6, { checkpoint: { path: file, every: 100 } });
  const again = await run(6, { checkpoint: { path: file, every: 100 } });
  expect(again.result).toMatchObject({ steps: 6, resumedFrom: 6 });
  expect(again.losses).toEqual([]);
  expect(bits(again.state).equals(bits(first.state))).toBe(true);
});

test('save() and load() carry a trained model to a new trainer', async () => {
  const a = makeTrainer({ synthesizer: { conditioned: true } });
  await a.trainer.fit(data(), { steps: 9, batchSize: 64 });
  const file = path.join(dir, 'saved.ckpt');
  await a.trainer.save(file);
  const b = makeTrainer({ synthesizer: { conditioned: true } });
  const before = await b.trainer.evaluate(data());
  await b.trainer.load(file);
  const [ea, eb] = [await a.trainer.evaluate(data()), await b.trainer.evaluate(data())];
  expect(eb).toEqual(ea);
  expect(eb.loss).not.toBe(before.loss);
  // Optimizer state came too: one more step from each is the same step.
  await a.trainer.fit(data(), { steps: 1, batchSize: 64, shuffle: false });
  await b.trainer.fit(data(), { steps: 1, batchSize: 64, shuffle: false });
  const weights = async (t: Trainer) => bits(await Promise.all(t.model.parameters().map((p: Parameter) => p.value.readFloat32(t.stream))));
  expect((await weights(b.trainer)).equals(await weights(a.trainer))).toBe(true);
  // fit() cannot resume from a save() file: it has no position in the data.
  await expect(b.trainer.fit(data(), { steps: 2, checkpoint: { path: file, every: 1 } })).rejects.toThrow(/written by save\(\), not by fit\(\)/);
  a.trainer.dispose();
  b.trainer.dispose();
});

describe('checkpoint errors', () => {
  test('a model of another shape or kind is refused, naming the difference', async () => {
    const file = path.join(dir, 'shape.ckpt');
    const { trainer } = makeTrainer();
    await trainer.save(file);
    const wider = new Trainer(mlp(12, [16, 20, 16], 10), { device: cpu, optimizer: new SGD({ lr: 1e-3, momentum: 0.9 }) });
    await expect(wider.load(file)).rejects.toThrow(/was saved from Sequential\(Linear\(12→16\).*this trainer trains Sequential\(Linear\(12→16\), BatchNorm1d\(16\), ReLU, Linear\(16→20\)/);
    const adam = new Trainer(mlp(12, [16, 16, 16], 10), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    await expect(adam.load(file)).rejects.toThrow(/does not match this trainer: it holds \d+ tensors, the model and its training state have \d+/);
    const { trainer: dni } = makeTrainer({});
    await expect(dni.load(file)).rejects.toThrow(/was saved from Sequential.*this trainer trains DNI\(4 modules/);
    for (const t of [trainer, wider, adam, dni]) t.dispose();
  });

  test('resuming with other data or batch size is refused', async () => {
    const file = path.join(dir, 'data.ckpt');
    await run(3, { checkpoint: { path: file, every: 10 } });
    const { trainer } = makeTrainer();
    await expect(trainer.fit(data(), { steps: 6, batchSize: 32, checkpoint: { path: file, every: 10 } }))
      .rejects.toThrow(/saved by a run over 300 rows in batches of 64; this one has 300 rows in batches of 32/);
    await expect(trainer.fit(data(200), { steps: 6, batchSize: 64, checkpoint: { path: file, every: 10 } }))
      .rejects.toThrow(/this one has 200 rows/);
    trainer.dispose();
  });

  test('bad files and options are clear errors; the pipelined schedule is refused before training', async () => {
    const { trainer } = makeTrainer();
    const junk = path.join(dir, 'junk.ckpt');
    fs.writeFileSync(junk, 'not a checkpoint at all');
    await expect(trainer.load(junk)).rejects.toThrow(/junk\.ckpt is not a synthgrad checkpoint \(wrong signature\)/);
    await expect(trainer.load(path.join(dir, 'missing.ckpt'))).rejects.toThrow(/checkpoint: cannot read .*missing\.ckpt/);
    await expect(trainer.load(3 as never)).rejects.toThrow(/load: 'path' must be a file path, got number 3/);
    await expect(trainer.fit(data(), { steps: 1, checkpoint: { path: junk } as never })).rejects.toThrow(/fit: 'checkpoint.every' must be a positive integer/);
    await expect(trainer.fit(data(), { steps: 1, checkpoint: 'x' as never })).rejects.toThrow(/fit: 'checkpoint' must be \{ path: string, every: number \}/);
    // A truncated file (a copy cut short) is refused too.
    const good = path.join(dir, 'good.ckpt');
    await trainer.save(good);
    const cut = path.join(dir, 'cut.ckpt');
    fs.writeFileSync(cut, fs.readFileSync(good).subarray(0, fs.statSync(good).size - 8));
    await expect(trainer.load(cut)).rejects.toThrow(/cut\.ckpt is not a synthgrad checkpoint \(tensor 'optimizer\.\d+' lies outside the file\)/);
    trainer.dispose();

    const pipelined = makeTrainer({ schedule: { kind: 'pipelined', depth: 1 } });
    const file = path.join(dir, 'pipelined.ckpt');
    await expect(pipelined.trainer.fit(data(), { steps: 3, checkpoint: { path: file, every: 1 } }))
      .rejects.toThrow(/the pipelined schedule carries work from one step into later ones and cannot be saved/);
    expect(fs.existsSync(file)).toBe(false);
    pipelined.trainer.dispose();
  });
});
