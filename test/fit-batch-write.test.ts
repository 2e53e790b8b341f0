// fit() without `graph`: each batch is written in stream order (Tensor.write, a stream-ordered
// upload: Backend::uploadAsync), never uploaded synchronously (Tensor.fromArray) inside a step;
// the losses and weights are bit for bit those of the same steps with synchronous uploads.
// Decoupled modules on streams of their own wait for the write (the stream-order checker is
// on: a missing wait is an error when it is enqueued).
import { Dataset, Device, Parameter, Random, SGD, Stream, Tensor, Trainer, decouple, mlp } from '../ts';
import type { DecoupleOptions } from '../ts';
import type { StepContext } from '../ts/nn/module';
import { Arena } from '../ts/tensor';
import { checkStreamOrder } from './helpers/stream-order';

checkStreamOrder();

const cpu = Device.cpu();

/** 200 rows of 12 features: labels in [0, 5), or regression targets of width 3. */
function data(regression: boolean): Dataset {
  const rng = new Random(8);
  const x = rng.uniformArray(200 * 12, -1, 1);
  if (regression) return Dataset.fromArrays(x, rng.uniformArray(200 * 3, -1, 1), { features: 12 });
  return Dataset.fromArrays(
    x,
    new Int32Array(200).map(() => Math.floor(rng.next() * 5)),
    { features: 12 },
  );
}

const bits = (a: Float32Array[]) => Buffer.concat(a.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));

function trainer(regression: boolean, dni?: DecoupleOptions): Trainer {
  const model = mlp(12, [16, 16], regression ? 3 : 5);
  return new Trainer(dni ? decouple(model, dni) : model, {
    device: cpu,
    seed: 3,
    loss: regression ? 'mse' : undefined,
    optimizer: () => new SGD({ lr: 0.05, momentum: 0.9 }),
  });
}

async function weights(t: Trainer): Promise<Float32Array[]> {
  return Promise.all(t.model.parameters().map((p: Parameter) => p.value.readFloat32(t.stream)));
}

afterEach(() => jest.restoreAllMocks());

const cases: [string, boolean, DecoupleOptions | undefined][] = [
  ['backprop, labels', false, undefined],
  ['backprop, regression targets', true, undefined],
  ['decoupled, one stream per module', false, { streams: 'per-module' }],
  ['decoupled, pipelined on streams per module', false, { streams: 'per-module', schedule: { kind: 'pipelined', depth: 2 } }],
];

describe('fit() without graph', () => {
  for (const [name, regression, dni] of cases) {
    test(`${name}: no synchronous upload in a step, the same bits as synchronous uploads`, async () => {
      const d = data(regression);
      const steps = 9; // 200 rows in batches of 32: 6 full batches and an 8-row tail, then 3 of epoch 2

      // The reference: the same steps, each batch uploaded at once with Tensor.fromArray.
      const ref = trainer(regression, dni);
      const order = d.order(); // fit with shuffle: false takes the rows in this order
      const refLosses: number[] = [];
      let step = 0;
      for (let epoch = 0; step < steps; epoch++) {
        for (let start = 0; start < d.count && step < steps; start += 32, step++) {
          const end = Math.min(d.count, start + 32);
          const batch = d.gather(order, start, end);
          const arena = new Arena();
          const ctx: StepContext = { device: cpu, stream: ref.stream, training: true, arena };
          const x = Tensor.fromArray(batch.inputs, [end - start, 12], { device: cpu, arena });
          const y = Tensor.fromArray(batch.targets, regression ? [end - start, 3] : [end - start], { device: cpu, arena });
          refLosses.push((await ref.strategy.step(x, y, ctx).readFloat32(ref.stream))[0]);
          arena.dispose();
        }
      }
      const refWeights = await weights(ref);
      ref.dispose();

      const t = trainer(regression, dni);
      const fromArray = jest.spyOn(Tensor, 'fromArray');
      const write = jest.spyOn(Tensor.prototype, 'write');
      const losses: number[] = [];
      await t.fit(d, { steps, batchSize: 32, shuffle: false, onStep: (m) => void losses.push(m.loss) });
      expect(fromArray).not.toHaveBeenCalled();
      // Two writes per step, inputs then targets, on a stream (not the default's synchronous path).
      expect(write).toHaveBeenCalledTimes(2 * steps);
      const sizes = write.mock.calls.map(([values, stream]) => {
        expect(stream).toBeInstanceOf(Stream);
        return values.length;
      });
      const rows = [32, 32, 32, 32, 32, 32, 8, 32, 32];
      expect(sizes).toEqual(rows.flatMap((r) => [r * 12, regression ? r * 3 : r]));
      expect(losses).toEqual(refLosses);
      expect(bits(await weights(t)).equals(bits(refWeights))).toBe(true);
      t.dispose();
    });
  }
});

// The probe batch of `diagnoseEvery` is written like a step's batch (the host waits for the
// probe's results anyway, but not for the upload): no Tensor.fromArray, two more writes per
// probe, and the diagnostics and weights bit for bit those of synchronous uploads.
describe('fit() with diagnoseEvery', () => {
  const dniCases: [string, DecoupleOptions][] = [
    ['lockstep on one stream', {}],
    ['one stream per module', { streams: 'per-module' }],
    ['pipelined on streams per module', { streams: 'per-module', schedule: { kind: 'pipelined', depth: 2 } }],
  ];
  for (const [name, dni] of dniCases) {
    test(`${name}: the probe batch is written in stream order, the same bits as synchronous uploads`, async () => {
      const d = data(false);
      const steps = 9;
      const diagnoseEvery = 4; // probes after steps 4 and 8, on the first 32 rows
      const probe = d.gather(d.order(), 0, 32);

      const ref = trainer(false, dni);
      const order = d.order();
      const refDiagnostics: unknown[] = [];
      let step = 0;
      for (let epoch = 0; step < steps; epoch++) {
        for (let start = 0; start < d.count && step < steps; start += 32) {
          const end = Math.min(d.count, start + 32);
          const batch = d.gather(order, start, end);
          const arena = new Arena();
          const ctx: StepContext = { device: cpu, stream: ref.stream, training: true, arena };
          const x = Tensor.fromArray(batch.inputs, [end - start, 12], { device: cpu, arena });
          const y = Tensor.fromArray(batch.targets, [end - start], { device: cpu, arena });
          await ref.strategy.step(x, y, ctx).readFloat32(ref.stream);
          arena.dispose();
          step++;
          if (step % diagnoseEvery === 0) {
            const probeArena = new Arena();
            const px = Tensor.fromArray(probe.inputs, [32, 12], { device: cpu, arena: probeArena });
            const py = Tensor.fromArray(probe.targets, [32], { device: cpu, arena: probeArena });
            const pctx: StepContext = { device: cpu, stream: ref.stream, training: true, arena: probeArena };
            refDiagnostics.push(await ref.strategy.diagnose!(px, py, pctx));
            probeArena.dispose();
          }
        }
      }
      const refWeights = await weights(ref);
      ref.dispose();
      expect(refDiagnostics).toHaveLength(2);

      const t = trainer(false, dni);
      const fromArray = jest.spyOn(Tensor, 'fromArray');
      const write = jest.spyOn(Tensor.prototype, 'write');
      const diagnostics: unknown[] = [];
      await t.fit(d, {
        steps,
        batchSize: 32,
        shuffle: false,
        diagnoseEvery,
        onStep: (m) => void (m.diagnostics && diagnostics.push(m.diagnostics)),
      });
      expect(fromArray).not.toHaveBeenCalled();
      // Two writes per step and two per probe, each on a stream.
      expect(write).toHaveBeenCalledTimes(2 * steps + 2 * 2);
      for (const [, stream] of write.mock.calls) expect(stream).toBeInstanceOf(Stream);
      const sizes = write.mock.calls.map(([values]) => values.length);
      const stepWrites = (rows: number) => [rows * 12, rows];
      expect(sizes).toEqual([
        ...[32, 32, 32, 32].flatMap(stepWrites),
        ...stepWrites(32), // probe after step 4
        ...[32, 32, 8, 32].flatMap(stepWrites),
        ...stepWrites(32), // probe after step 8
        ...stepWrites(32),
      ]);
      expect(diagnostics).toEqual(refDiagnostics);
      expect(bits(await weights(t)).equals(bits(refWeights))).toBe(true);
      t.dispose();
    });
  }
});
