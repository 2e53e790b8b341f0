// The complete unlock (decouple's `unlock`, ts/dni/unlock.ts) against an independent float64
// simulation: modules 2..N run on synthetic inputs Î_i = I_i(x), update with ĝ_i, and the input
// models regress onto the real h_{i-1} of the same step (staleness 0), the synthesizers onto δ
// of the same step. Also: one stream equals per-module streams bit for bit; no module's own
// work waits for another module; evaluation runs the true forward path; diagnostics, checkpoints
// and option errors. The simulation shares no code with ts/dni/: it is the method on arrays.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  Arena,
  BatchNorm1d,
  DecoupledTraining,
  Device,
  Graph,
  Linear,
  MeanSquaredError,
  Optimizer,
  Random,
  ReLU,
  SGD,
  Sequential,
  Stream,
  Tensor,
  Trainer,
  datasets,
  decouple,
  mlp,
} from '../ts';
import type { DecoupleOptions, DecoupledNetwork } from '../ts';
import { StepContext } from '../ts/nn/module';
import { InputModel, mlpInputModel } from '../ts/dni/unlock';
import * as ref from './helpers/reference';
import { expectThrows } from './helpers/errors';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
const B = 6;
/** module i maps widths[i] → widths[i+1]; every module but the last ends with a ReLU */
const widths = [3, 5, 4, 2];
const lr = 0.1,
  momentum = 0.5,
  lrSynth = 0.05,
  lrInput = 0.07;

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 1e-4, floor = 1e-5): void {
  ref.expectClose(what, got, want, rel, floor);
}

// ---- the float64 simulation ------------------------------------------------------------------

/** y = x Wᵀ + b, with SGD state */
interface SimLinear {
  W: Float64Array;
  b: Float64Array;
  vW: Float64Array;
  vb: Float64Array;
  inF: number;
  outF: number;
}

function linear(l: SimLinear, x: Float64Array): Float64Array {
  return ref.addBias(ref.gemm(false, true, { M: B, N: l.outF, K: l.inF }, 1, x, l.W, 0, null), l.b, B, l.outF);
}

/** dL/dW, dL/db and dL/dx of y = x Wᵀ + b for dL/dy = dy. */
function linearBackward(l: SimLinear, x: Float64Array, dy: Float64Array) {
  return {
    gW: ref.gemm(true, false, { M: l.outF, N: l.inF, K: B }, 1, dy, x, 0, null),
    gb: ref.columnSums(dy, B, l.outF),
    dx: ref.gemm(false, false, { M: B, N: l.inF, K: l.outF }, 1, dy, l.W, 0, null),
  };
}

function sgd(l: SimLinear, g: { gW: Float64Array; gb: Float64Array }, rate: number, mom: number): void {
  ref.sgdStep(l.W, g.gW, mom ? l.vW : null, rate, mom, 0);
  ref.sgdStep(l.b, g.gb, mom ? l.vb : null, rate, mom, 0);
}

class Simulation {
  /** the last L2 loss of each synthesizer and each input model (cut i: I_{i+2} predicts h_{i+1}) */
  synthLoss: number[] = [NaN, NaN];
  inputLoss: number[] = [NaN, NaN];
  constructor(
    readonly modules: SimLinear[],
    /** M_1, M_2: linear synthesizers on h_1, h_2 */
    readonly synths: SimLinear[],
    /** I_2, I_3: linear input models on x */
    readonly inputs: SimLinear[],
  ) {}

  /** The true path: h_0 = x, h_i = f_i(h_{i-1}). */
  truePath(x: Float64Array): Float64Array[] {
    const hs = [x];
    this.modules.forEach((l, i) => {
      const z = linear(l, hs[i]);
      hs.push(i < 2 ? ref.activation('relu', z) : z);
    });
    return hs;
  }

  /** One unlocked step; returns the loss, the synthetic inputs and the module outputs. */
  step(xs: ArrayLike<number>, y: ArrayLike<number>, updated: boolean[]) {
    const x = ref.f64(xs);
    // Module 1 on x, modules 2 and 3 on Î = I(x), with the weights before this step's updates.
    const moduleInputs = [x, ...this.inputs.map((m) => linear(m, x))];
    const outs = this.modules.map((l, i) => {
      const z = linear(l, moduleInputs[i]);
      return i < 2 ? ref.activation('relu', z) : z;
    });
    const raws = this.synths.map((s, i) => linear(s, outs[i])); // M_i(h_i) before the 1/B scaling
    const loss = ref.mse(outs[2], y);
    const gradients = [...raws.map((r) => r.map((v) => v / B)), outs[2].map((o, k) => (2 * (o - y[k])) / outs[2].length)];
    const deltas: (Float64Array | undefined)[] = [undefined, undefined];
    for (let i = 0; i < 3; i++) {
      if (!updated[i]) continue;
      const dz = i < 2 ? gradients[i].map((g, k) => (outs[i][k] > 0 ? g : 0)) : gradients[i];
      const g = linearBackward(this.modules[i], moduleInputs[i], dz);
      if (i > 0) deltas[i - 1] = g.dx;
      sgd(this.modules[i], g, lr, momentum);
    }
    // I_{i+1} onto h_i (module i's output of this step); M_i onto B·δ_i when module i+1 updated.
    for (let c = 0; c < 2; c++) {
      const I = this.inputs[c];
      const err = moduleInputs[c + 1].map((v, k) => v - outs[c][k]);
      this.inputLoss[c] = ref.dot(err, err) / err.length;
      sgd(
        I,
        linearBackward(
          I,
          x,
          err.map((e) => (2 * e) / err.length),
        ),
        lrInput,
        0,
      );
      const delta = deltas[c];
      if (!delta) continue;
      const s = this.synths[c];
      const serr = raws[c].map((v, k) => v - B * delta[k]);
      this.synthLoss[c] = ref.dot(serr, serr) / serr.length;
      sgd(
        s,
        linearBackward(
          s,
          outs[c],
          serr.map((e) => (2 * e) / serr.length),
        ),
        lrSynth,
        0,
      );
    }
    return { loss, moduleInputs, outs };
  }
}

// ---- the library's run, side by side with the simulation -------------------------------------

function context(stream: Stream, arena: Arena): StepContext {
  return { device: cpu, stream, training: true, arena };
}

async function values(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function tinyModel(): Sequential {
  return new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
}

/** Linear input models and synthesizers on plain SGD; modules on SGD with momentum. */
function tinyOptions(options: DecoupleOptions = {}): DecoupleOptions {
  return {
    synthesizer: { hidden: [], optimizer: () => new SGD({ lr: lrSynth }) },
    unlock: { hidden: [], optimizer: () => new SGD({ lr: lrInput }) },
    ...options,
  };
}

async function setup(options: DecoupleOptions, seed: number) {
  const net = decouple(tinyModel(), tinyOptions(options));
  const rng = new Random(seed);
  net.initialize(cpu, rng.fork());
  const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new SGD({ lr, momentum }) }) as DecoupledTraining;
  strategy.record = true;
  const stream = new Stream(cpu);
  const first = (m: { network: unknown }) => (m.network as Sequential).layers[0] as Linear;
  const linears = {
    modules: net.modules.map((m) => m.layers[0] as Linear),
    synths: net.synthesizers.map(first),
    inputs: net.inputModels.map(first),
  };
  // Non-zero synthesizers from the start, so that ĝ matters at the first step.
  for (const s of linears.synths) {
    await s.weight!.assign(ref.randomArray(rng, s.inFeatures * s.outFeatures, 0.05, 0.4));
    await s.bias!.assign(ref.randomArray(rng, s.outFeatures, 0.05, 0.4));
  }
  const sim = async (l: Linear): Promise<SimLinear> => ({
    W: await values(l.weight!.value, stream),
    b: await values(l.bias!.value, stream),
    vW: new Float64Array(l.inFeatures * l.outFeatures),
    vb: new Float64Array(l.outFeatures),
    inF: l.inFeatures,
    outF: l.outFeatures,
  });
  const all = async (ls: Linear[]) => Promise.all(ls.map(sim));
  const simulation = new Simulation(await all(linears.modules), await all(linears.synths), await all(linears.inputs));
  const arena = new Arena();
  const batch = () => ({ x: ref.randomArray(rng, B * widths[0]), y: ref.randomArray(rng, B * widths[3]) });
  const tensors = (b: { x: Float32Array; y: Float32Array }) =>
    [Tensor.fromArray(b.x, [B, widths[0]], { device: cpu, arena }), Tensor.fromArray(b.y, [B, widths[3]], { device: cpu, arena })] as const;

  /** One step of both; compares the loss, the synthetic inputs and module outputs; returns the update flags. */
  const step = async (when: string) => {
    const b = batch();
    const [x, y] = tensors(b);
    const loss = await values(strategy.step(x, y, context(stream, arena)), stream);
    const r = strategy.lastStep!;
    const want = simulation.step(b.x, b.y, [...r.updated]);
    expectClose(loss, [want.loss], `${when}: loss`);
    for (const [k, t] of r.inputs!.entries()) expectClose(await values(t, stream), want.moduleInputs[k + 1], `${when}: Î_${k + 2}`);
    for (const [k, t] of r.activations.entries()) expectClose(await values(t, stream), want.outs[k], `${when}: h_${k + 1}`);
    return [...r.updated];
  };
  /** Every module, synthesizer and input model parameter equals the simulation's. */
  const compare = async (when: string) => {
    for (const [kind, ls] of Object.entries(linears)) {
      const sims = kind === 'modules' ? simulation.modules : kind === 'synths' ? simulation.synths : simulation.inputs;
      for (const [i, l] of ls.entries()) {
        expectClose(await values(l.weight!.value, stream), sims[i].W, `${when}: ${kind}[${i}] W`);
        expectClose(await values(l.bias!.value, stream), sims[i].b, `${when}: ${kind}[${i}] b`);
      }
    }
  };
  const dispose = () => {
    arena.dispose();
    strategy.dispose();
    net.dispose();
  };
  return { net, strategy, stream, simulation, step, compare, dispose, batch, tensors, arena, linears };
}

describe('the unlocked step against a float64 simulation', () => {
  test.each([
    ['per-module streams', {}],
    ['one stream', { streams: 'single' as const }],
  ])(
    '(%s): Î_i = I_i(x), module updates with ĝ_i, I_i onto h_{i-1} and M_i onto δ_i of the same step, over 5 steps',
    async (_, options) => {
      const run = await setup(options, 7);
      try {
        for (let s = 1; s <= 5; s++) {
          await run.step(`step ${s}`);
          await run.compare(`after step ${s}`);
        }
      } finally {
        run.dispose();
      }
    },
  );

  test('stochastic updates (p = 0.5): a skipped module sends no δ, and M below it stands still; I still learns', async () => {
    const run = await setup({ schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 4);
    const flags: boolean[][] = [];
    try {
      for (let s = 1; s <= 8; s++) {
        flags.push(await run.step(`step ${s}`));
        await run.compare(`after step ${s}`);
      }
    } finally {
      run.dispose();
    }
    for (let i = 0; i < 3; i++) {
      expect(flags.some((f) => f[i])).toBe(true);
      expect(flags.some((f) => !f[i])).toBe(true);
    }
  });

  test("module 2's weight gradient is ĝ_2 masked by its ReLU times Î_2, by hand from the recorded step", async () => {
    // Zero momentum state and one SGD step: ΔW = −lr·gW, with gW = (ĝ ⊙ [h > 0])ᵀ Î.
    const run = await setup({}, 3);
    const W0 = await values(run.linears.modules[1].weight!.value, run.stream);
    const [x, y] = run.tensors(run.batch());
    await run.strategy.step(x, y, context(run.stream, run.arena)).read(run.stream);
    const r = run.strategy.lastStep!;
    const input = await values(r.inputs![0], run.stream);
    const h2 = await values(r.activations[1], run.stream);
    const g = await values(r.synthetic[1], run.stream);
    const dz = g.map((v, k) => (h2[k] > 0 ? v : 0));
    const gW = ref.gemm(true, false, { M: 4, N: 5, K: B }, 1, dz, input, 0, null);
    expectClose(
      await values(run.linears.modules[1].weight!.value, run.stream),
      W0.map((w, k) => w - lr * gW[k]),
      'module 2 W',
    );
    run.dispose();
  });
});

describe('the schedule', () => {
  test("no module's own work waits for another module: every cross-stream wait follows all module updates of the step", async () => {
    const run = await setup({}, 5);
    const events: string[] = [];
    const originalWait = Stream.prototype.wait;
    const spy = jest.spyOn(Stream.prototype, 'wait').mockImplementation(function (this: Stream, e) {
      events.push('wait');
      return originalWait.call(this, e);
    });
    const steps = run.strategy.optimizers.map((o: Optimizer, i) => {
      const original = o.step.bind(o);
      return jest.spyOn(o, 'step').mockImplementation((...args) => {
        events.push(`update ${i + 1}`);
        original(...args);
      });
    });
    try {
      await run.step('step 1');
    } finally {
      spy.mockRestore();
      for (const s of steps) s.mockRestore();
    }
    // Per step: 3 updates, then I_2 and I_3 wait for h_1, h_2, M_1 and M_2 for δ_1, δ_2, and the trainer's stream for the 3 modules.
    expect(events).toEqual(['update 1', 'update 2', 'update 3', 'wait', 'wait', 'wait', 'wait', 'wait', 'wait', 'wait']);
    await run.compare('after step 1'); // the spies changed nothing
    run.dispose();
  });

  test.each([
    ['DNI, SGD', false, () => new SGD({ lr: 0.05, momentum: 0.9 })],
    ['cDNI, Adam', true, () => new Adam({ lr: 1e-3 })],
  ])('one stream equals per-module streams bit for bit on MNIST (mlp with BatchNorm, %s)', async (_, conditioned, optimizer) => {
    const { train } = await datasets.mnist();
    const data = train.head(512);
    const weights = async (options: DecoupleOptions) => {
      const net: DecoupledNetwork = decouple(mlp(784, [16, 12], 10), {
        synthesizer: { hidden: [8], conditioned },
        unlock: { hidden: [12] },
        ...options,
      });
      const trainer = new Trainer(net, { device: cpu, optimizer, seed: 5 });
      await trainer.fit(data, { steps: 6, batchSize: 32, logEvery: 1000 });
      const bytes = async (ts: Tensor[]) =>
        Buffer.concat((await Promise.all(ts.map((t) => t.readFloat32(trainer.stream)))).map((a) => Buffer.from(a.buffer)));
      const model = await bytes(net.model.stateTensors());
      const all = await bytes([...net.stateTensors(), ...net.inputModelParameters().map((p) => p.value)]);
      trainer.dispose();
      return { model, all };
    };
    const perModule = await weights({ streams: 'per-module' });
    expect((await weights({ streams: 'single' })).all.equals(perModule.all)).toBe(true);
    // The unlock changed the training (else the comparison would prove little about it).
    expect((await weights({ streams: 'single', unlock: false })).model.equals(perModule.model)).toBe(false);
  });
});

describe('graph capture', () => {
  test('a captured unlocked step replays bit for bit as the uncaptured one (per-module streams)', async () => {
    const { train } = await datasets.mnist();
    const data = train.head(256);
    const weights = async (graph: boolean) => {
      const net = decouple(mlp(784, [16, 12], 10), { synthesizer: { hidden: [8] }, unlock: { hidden: [12] } });
      const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }), seed: 5 });
      const launch = jest.spyOn(Graph.prototype, 'launch');
      try {
        await trainer.fit(data, { steps: 5, batchSize: 32, graph });
        expect(launch).toHaveBeenCalledTimes(graph ? 4 : 0);
      } finally {
        launch.mockRestore();
      }
      const all = [...net.stateTensors(), ...net.inputModelParameters().map((p) => p.value)];
      const out = await Promise.all(all.map((t) => t.readFloat32(trainer.stream)));
      trainer.dispose();
      return Buffer.concat(out.map((a) => Buffer.from(a.buffer)));
    };
    expect((await weights(true)).equals(await weights(false))).toBe(true);
  });
});

describe('evaluation', () => {
  test('runs the true forward path, not the input models', async () => {
    const run = await setup({}, 11);
    for (let s = 1; s <= 3; s++) await run.step(`step ${s}`);
    const probe = run.batch();
    const [x] = run.tensors(probe);
    const out = run.net.forward(x, { device: cpu, stream: run.stream, training: false, arena: run.arena }).output;
    const got = await values(out, run.stream);
    const truePath = run.simulation.truePath(ref.f64(probe.x))[3];
    expectClose(got, truePath, 'network output');
    // And the path through Î_3 = I_3(x) gives something else (else the test could not tell).
    const viaInput = linear(run.simulation.modules[2], linear(run.simulation.inputs[1], ref.f64(probe.x)));
    expect(ref.compare(got, viaInput, 1e-5).worst).toBeGreaterThan(1e-2);
    run.dispose();
  });
});

describe('diagnostics', () => {
  test('report each input model: its last L2 loss and the cosine of Î to the true-path h on the probe', async () => {
    const run = await setup({}, 9);
    for (let s = 1; s <= 4; s++) await run.step(`step ${s}`);
    const probe = run.batch();
    const [x, y] = run.tensors(probe);
    const got = await run.strategy.diagnose(x, y, context(run.stream, run.arena));
    const xs = ref.f64(probe.x);
    const hs = run.simulation.truePath(xs);
    const cos = (a: Float64Array, b: Float64Array) => ref.dot(a, b) / Math.sqrt(ref.dot(a, a) * ref.dot(b, b));
    expect(got.map((d) => d.module)).toEqual([1, 2]);
    for (let c = 0; c < 2; c++) {
      expectClose([got[c].inputLoss!], [run.simulation.inputLoss[c]], `I_${c + 2} loss`, 1e-4, 1e-6);
      expectClose([got[c].inputCosine!], [cos(linear(run.simulation.inputs[c], xs), hs[c + 1])], `I_${c + 2} cosine`, 1e-4, 1e-6);
      expectClose([got[c].synthesizerLoss], [run.simulation.synthLoss[c]], `M_${c + 1} loss`, 1e-4, 1e-6);
    }
    // The probe changed nothing.
    await run.step('after the probe');
    await run.compare('after the probe and a step');
    run.dispose();
  });

  test('without the unlock carry no input fields', async () => {
    const net = decouple(tinyModel(), { synthesizer: { hidden: [] } });
    net.initialize(cpu, new Random(1));
    const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new SGD({ lr }) }) as DecoupledTraining;
    const arena = new Arena();
    const stream = new Stream(cpu);
    const x = Tensor.fromArray(ref.randomArray(new Random(2), B * 3), [B, 3], { device: cpu, arena });
    const y = Tensor.fromArray(ref.randomArray(new Random(3), B * 2), [B, 2], { device: cpu, arena });
    await strategy.step(x, y, context(stream, arena)).read(stream);
    const d = await strategy.diagnose(x, y, context(stream, arena));
    expect(d.every((m) => !('inputLoss' in m) && !('inputCosine' in m))).toBe(true);
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });
});

describe('checkpoints', () => {
  test('hold the input models and their optimizers: a run resumed from one continues bit for bit', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-unlock-'));
    const file = path.join(dir, 'run.ckpt');
    const { train } = await datasets.mnist();
    const data = train.head(256);
    const make = () => {
      const net = decouple(mlp(784, [16, 12], 10), { synthesizer: { hidden: [8] }, unlock: { hidden: [12] } });
      return { net, trainer: new Trainer(net, { device: cpu, optimizer: () => new SGD({ lr: 0.05, momentum: 0.9 }), seed: 5 }) };
    };
    const state = async (r: ReturnType<typeof make>) => {
      const all = [...r.net.stateTensors(), ...r.net.inputModelParameters().map((p) => p.value)];
      return Buffer.concat((await Promise.all(all.map((t) => t.readFloat32(r.trainer.stream)))).map((a) => Buffer.from(a.buffer)));
    };
    try {
      const a = make();
      await a.trainer.fit(data, { steps: 3, batchSize: 32 });
      await a.trainer.save(file);
      await a.trainer.fit(data, { steps: 3, batchSize: 32 });
      const b = make();
      await b.trainer.load(file);
      await b.trainer.fit(data, { steps: 3, batchSize: 32 });
      expect((await state(b)).equals(await state(a))).toBe(true);
      // A model built without the unlock does not load it (its name says why).
      const plain = new Trainer(decouple(mlp(784, [16, 12], 10), { synthesizer: { hidden: [8] } }), {
        device: cpu,
        optimizer: () => new SGD({ lr: 0.05 }),
      });
      await expect(plain.load(file)).rejects.toThrow(/was saved from DNI\+unlock\(3 modules.*this trainer trains DNI\(3 modules/);
      for (const t of [a.trainer, b.trainer, plain]) t.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('options', () => {
  test('unlock: true builds an MLP input model for modules 2..N from x; off leaves none', () => {
    const net = decouple(mlp(784, [32, 16], 10), { unlock: true });
    expect(net.inputModels.map((m) => [m.module, [...m.input], [...m.output]])).toEqual([
      [1, [784], [32]],
      [2, [784], [16]],
    ]);
    const first = net.inputModels[0].network as Sequential;
    expect(first.layers.map((l) => l.name)).toEqual([
      new Linear(784, 1024).name,
      new BatchNorm1d(1024).name,
      new ReLU().name,
      new Linear(1024, 32).name,
    ]);
    expect(net.name).toMatch(/^DNI\+unlock\(3 modules/);
    expect(net.config.unlock).toBe(true);
    for (const off of [undefined, false]) {
      const plain = decouple(mlp(784, [32, 16], 10), { unlock: off });
      expect(plain.inputModels).toEqual([]);
      expect(plain.config).not.toHaveProperty('unlock');
      expect(plain.name).toMatch(/^DNI\(3 modules/);
    }
  });

  test('a custom network gets the row shapes of x and of the module input', () => {
    const seen: number[][][] = [];
    const net = decouple(mlp(20, [7, 6], 3), {
      unlock: {
        network: (input, output) => {
          seen.push([[...input], [...output]]);
          return new Sequential([new Linear(input[0], output[0])]);
        },
      },
    });
    expect(seen).toEqual([
      [[20], [7]],
      [[20], [6]],
    ]);
    expect(net.inputModels).toHaveLength(2);
  });

  test('errors name the option', () => {
    const model = () => mlp(20, [7, 6], 3);
    expectThrows(
      () => decouple(model(), { unlock: true, schedule: { kind: 'pipelined', depth: 1 } }),
      'RangeError',
      /^decouple: 'unlock' needs the lockstep schedule, got 'schedule.kind' 'pipelined'$/,
    );
    expectThrows(() => decouple(model(), { unlock: true, lambda: 0.5 }), 'RangeError', /^decouple: 'unlock' needs 'lambda' 0 .*got 0.5$/);
    expectThrows(
      () => decouple(model(), { unlock: {}, warmupSteps: 2 }),
      'RangeError',
      /^decouple: 'unlock' needs 'warmupSteps' 0 .*got 2$/,
    );
    expectThrows(
      () => decouple(model(), { unlock: 'yes' as never }),
      'TypeError',
      /^decouple: 'unlock' must be true, false or an object .*got string yes$/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { hiden: [4] } as never }),
      'TypeError',
      /^decouple: unknown option 'unlock.hiden' \(did you mean 'unlock.hidden'\?\)$/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { hidden: [4, 0] } }),
      'RangeError',
      /^decouple: 'unlock.hidden' must be an array of positive integers, got 4,0$/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { network: 3 as never } }),
      'TypeError',
      /^decouple: 'unlock.network' must be a function/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { optimizer: {} as never } }),
      'TypeError',
      /^decouple: 'unlock.optimizer' must be a function/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { network: () => new Sequential([new Linear(20, 5)]) } }),
      'RangeError',
      /^input model 2 \(before layer 3\): the input model outputs rows \[5\], the module's input has \[7\]$/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { network: () => new Sequential([new Linear(19, 7)]) } }),
      'RangeError',
      /^input model 2 \(before layer 3\): the input model does not accept x's rows \[20\]/,
    );
    expectThrows(
      () => decouple(model(), { unlock: { network: () => ({}) as never } }),
      'TypeError',
      /'unlock.network' must return a Module, got Object/,
    );
  });

  test('the MLP builder takes feature rows only; shapes no builder takes ask for unlock.network', () => {
    expect(mlpInputModel([1, 28, 28], [16], [8])).toBeUndefined();
    // Images are the conv builder's (test/unlock-conv.test.ts); rows to images are no builder's.
    expectThrows(
      () => new InputModel('input model 2', 1, [784], [4, 7, 7], {}),
      'RangeError',
      /^input model 2: no default input model maps rows of shape \[784\] to \[4, 7, 7\]; give 'unlock.network'$/,
    );
  });
});
