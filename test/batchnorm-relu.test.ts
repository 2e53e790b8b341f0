// batchNormReluForward / batchNormReluBackward: BatchNorm and the ReLU after it as one op each
// way (native/cpu/kernels.h, batchNormForward's relu and batchNormBackward's reluOutput).
//   - against float64 references: y = max(BatchNorm(x), 0) and its analytic gradient
//     (BatchNorm's backward of dy masked by y > 0), with the tolerances of test/ops.test.ts;
//   - bit for bit against the two separate ops (batchNormForward then activationForward relu;
//     activationBackward relu then batchNormBackward), which training used before the fusion;
//   - Sequential fuses a BatchNorm followed by a ReLU and trains bit-identically to the same
//     layers unfused.
import { native } from '../ts/native';
import { Random } from '../ts/random';
import { BatchNorm1d, Dataset, Device, Linear, ReLU, SGD, Sequential, Trainer } from '../ts';
import * as ref from './helpers/reference';
import { expectClose, expectExact } from './helpers/reference';
import { cpuTensors } from './helpers/native-tensors';
import { expectThrows } from './helpers/errors';

const ops = native.ops;
const stream = new native.Stream('cpu');
const { upload, filled, read } = cpuTensors(stream);

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;
const momentum = 0.1,
  eps = 1e-5;
const M = Math.fround(momentum),
  E = Math.fround(eps);

/** x [rows, cols] with per-column offsets, and the other BatchNorm inputs; dy for the backward. */
function inputs(seed: number, rows: number, cols: number) {
  const rng = new Random(seed);
  const noise = ref.randomArray(rng, rows * cols);
  const x = Float32Array.from(noise, (v, i) => 0.3 * (i % cols) - 0.5 + (0.5 + 0.2 * (i % cols)) * v);
  return {
    x,
    gamma: ref.randomArray(rng, cols, 0.5, 2),
    beta: ref.randomArray(rng, cols, 0.1, 1),
    runningMean: ref.randomArray(rng, cols),
    runningVar: ref.uniformArray(rng, cols, 0.5, 1.5),
    dy: ref.randomArray(rng, rows * cols),
    dgamma0: ref.randomArray(rng, cols),
    dbeta0: ref.randomArray(rng, cols),
  };
}
type Inputs = ReturnType<typeof inputs>;

/** Forward (fused, or the two ops) then backward on fresh tensors; every output read. */
async function run(inp: Inputs, rows: number, cols: number, fused: boolean, training = true) {
  const x = upload(inp.x, [rows, cols]);
  const gamma = upload(inp.gamma, [cols]),
    beta = upload(inp.beta, [cols]);
  const runningMean = upload(inp.runningMean, [cols]),
    runningVar = upload(inp.runningVar, [cols]);
  const saveMean = filled([cols], 42),
    saveInvStd = filled([cols], 43);
  const y = filled([rows, cols]);
  const args = [stream, x, gamma, beta, y, runningMean, runningVar, saveMean, saveInvStd, momentum, eps, training] as const;
  if (fused) ops.batchNormReluForward(...args);
  else {
    ops.batchNormForward(...args);
    ops.activationForward(stream, 'relu', y, y);
  }
  const out = {
    y: await read(y),
    runningMean: await read(runningMean),
    runningVar: await read(runningVar),
    saveMean: await read(saveMean),
    saveInvStd: await read(saveInvStd),
    dx: new Float32Array(0),
    dgamma: new Float32Array(0),
    dbeta: new Float32Array(0),
  };
  if (!training) return out;
  const dy = upload(inp.dy, [rows, cols]);
  const dx = filled([rows, cols]);
  const dgamma = upload(inp.dgamma0, [cols]),
    dbeta = upload(inp.dbeta0, [cols]);
  if (fused) ops.batchNormReluBackward(stream, x, y, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
  else {
    const masked = filled([rows, cols]);
    ops.activationBackward(stream, 'relu', y, dy, masked);
    ops.batchNormBackward(stream, x, masked, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
  }
  return { ...out, dx: await read(dx), dgamma: await read(dgamma), dbeta: await read(dbeta) };
}

/** The float64 reference: y = relu(BatchNorm(x)) and the gradients of sum(dy ⊙ y). */
function reference(inp: Inputs, rows: number, cols: number) {
  const bn = ref.batchNormTraining(inp.x, inp.gamma, inp.beta, inp.runningMean, inp.runningVar, rows, cols, M, E);
  const y = bn.y.map((v) => Math.max(v, 0));
  const g = Float64Array.from(inp.dy, (v, i) => (bn.y[i] > 0 ? v : 0));
  const xhat = Float64Array.from(inp.x, (v, i) => (v - bn.mean[i % cols]) * bn.invStd[i % cols]);
  const dbeta = new Float64Array(cols),
    dgamma = new Float64Array(cols);
  for (let i = 0; i < rows * cols; i++) {
    dbeta[i % cols] += g[i];
    dgamma[i % cols] += g[i] * xhat[i];
  }
  const dx = Float64Array.from(g, (v, i) => {
    const c = i % cols;
    return inp.gamma[c] * bn.invStd[c] * (v - dbeta[c] / rows - (xhat[i] * dgamma[c]) / rows);
  });
  return {
    bn,
    y,
    dx,
    dgamma: dgamma.map((v, c) => v + inp.dgamma0[c]),
    dbeta: dbeta.map((v, c) => v + inp.dbeta0[c]),
  };
}

function expectGrad(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expect(ref.maxAbs(want)).toBeGreaterThan(0); // a vacuous all-zero gradient proves nothing
  expectClose(what, got, want, GRAD_TOL, 1e-2 * ref.maxAbs(want));
}

describe('batchNormReluForward / batchNormReluBackward', () => {
  test.each([
    [16, 5],
    [3, 2],
    [1100, 3],
    [300, 700], // several parallel chunks each way
  ])('[%p, %p] against float64: y, the statistics, dx, dgamma and dbeta', async (rows, cols) => {
    const inp = inputs(71 + rows, rows, cols);
    const got = await run(inp, rows, cols, true);
    const want = reference(inp, rows, cols);
    // Both signs occur, so the ReLU both passes and blocks values and gradients.
    expect(got.y.some((v) => v === 0) && got.y.some((v) => v > 0)).toBe(true);
    const scale = Float64Array.from(want.bn.y, (v, i) => Math.abs(v - inp.beta[i % cols]) + Math.abs(inp.beta[i % cols]));
    expectClose('y', got.y, want.y, FWD_TOL, scale);
    expectClose('saveMean', got.saveMean, want.bn.mean, FWD_TOL, 1e-3);
    expectClose('saveInvStd', got.saveInvStd, want.bn.invStd, FWD_TOL);
    expectClose('runningMean', got.runningMean, want.bn.runningMean, FWD_TOL, 1e-3);
    expectClose('runningVar', got.runningVar, want.bn.runningVar, FWD_TOL);
    expectGrad('dx', got.dx, want.dx);
    expectGrad('dgamma', got.dgamma, want.dgamma);
    expectGrad('dbeta', got.dbeta, want.dbeta);
  });

  test.each([
    [16, 5, true],
    [1100, 3, true],
    [300, 700, true],
    [300, 700, false],
  ])('[%p, %p] (training %p): bit for bit the two separate ops', async (rows, cols, training) => {
    const inp = inputs(91 + rows, rows, cols);
    const fused = await run(inp, rows, cols, true, training);
    const separate = await run(inp, rows, cols, false, training);
    for (const k of ['y', 'runningMean', 'runningVar', 'saveMean', 'saveInvStd', 'dx', 'dgamma', 'dbeta'] as const)
      expectExact(k, fused[k], separate[k]);
  });

  test('a NaN stays NaN through the ReLU (as activationForward keeps it)', async () => {
    const rows = 4,
      cols = 2;
    const inp = inputs(5, rows, cols);
    inp.x[1] = NaN; // column 1 is all NaN after normalisation
    const fused = await run(inp, rows, cols, true, false);
    const separate = await run(inp, rows, cols, false, false);
    expect(Number.isNaN(fused.y[1])).toBe(true);
    const shown = (a: Float32Array) => Array.from(a, (v) => (Number.isNaN(v) ? 'NaN' : v));
    expect(shown(fused.y)).toEqual(shown(separate.y));
  });

  test("bad arguments are errors that name them (the backward's y too)", () => {
    const x = filled([4, 3], 1),
      v = filled([3], 1);
    expectThrows(
      () => ops.batchNormReluForward(stream, x, filled([2], 1), v, filled([4, 3]), v, v, v, v, 0.1, 1e-5, true),
      'RangeError',
      /batchNormReluForward: 'gamma'/,
    );
    expectThrows(
      () => ops.batchNormReluForward(stream, filled([1, 3]), v, v, filled([1, 3]), v, v, v, v, 0.1, 1e-5, true),
      'RangeError',
      /batchNormReluForward: 'x' needs at least 2 rows/,
    );
    expectThrows(
      () => ops.batchNormReluBackward(stream, x, filled([4, 2]), filled([4, 3]), v, v, v, filled([4, 3]), filled([3]), filled([3])),
      'RangeError',
      /batchNormReluBackward: 'y'/,
    );
  });
});

describe('Sequential fuses a BatchNorm followed by a ReLU', () => {
  afterEach(() => native.profile('stop'));

  /** Trains the layers a few SGD steps; returns every parameter's final values and the ops run. */
  async function train(layers: () => ConstructorParameters<typeof Sequential>[0]) {
    const data = Dataset.fromArrays(
      Float32Array.from({ length: 64 * 6 }, (_, i) => Math.sin(i * 0.7) + 0.3 * Math.cos(i * 1.9)),
      new Int32Array(64).map((_, i) => (i * 5) % 2),
      { features: 6 },
    );
    const model = new Sequential(layers());
    const trainer = new Trainer(model, { device: Device.cpu(), optimizer: new SGD({ lr: 0.1, momentum: 0.9 }), seed: 9 });
    native.profile('start');
    await trainer.fit(data, { steps: 6, batchSize: 16 });
    const opsRun = native.profile('read').map((t) => t.op);
    native.profile('stop');
    const params = await Promise.all(model.parameters().map((p) => p.value.readFloat32()));
    trainer.dispose();
    return { params, opsRun };
  }

  test('the fused network trains bit-identically to the same layers unfused', async () => {
    const fused = await train(() => [new Linear(6, 8), new BatchNorm1d(8), new ReLU(), new Linear(8, 2)]);
    // A ReLU inside its own Sequential is not "the layer after the BatchNorm": not fused.
    const separate = await train(() => [new Linear(6, 8), new BatchNorm1d(8), new Sequential([new ReLU()]), new Linear(8, 2)]);
    expect(fused.opsRun).toEqual(expect.arrayContaining(['batchNormReluForward', 'batchNormReluBackward']));
    expect(fused.opsRun).not.toContain('batchNormForward');
    expect(separate.opsRun).toEqual(expect.arrayContaining(['batchNormForward', 'batchNormBackward']));
    expect(separate.opsRun).not.toContain('batchNormReluForward');
    expect(fused.params.length).toBe(6);
    fused.params.forEach((p, i) => expectExact(`parameter ${i}`, p, separate.params[i]));
  });
});
