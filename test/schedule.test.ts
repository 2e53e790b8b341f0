// The decoupled schedules against an independent float64 simulation of the method (DESIGN.md,
// "The method" and "Schedules"): BP(λ), warm-up, stochastic updates, the pipelined schedule at
// depth 2 and the diagnostics are each run for several steps on a small ReLU network and
// compared, after every step, with what the simulation below computes by hand. The simulation
// shares no code with ts/dni/: it is the method written out on arrays.
import {
  DecoupledTraining,
  Device,
  Linear,
  MeanSquaredError,
  Random,
  ReLU,
  SGD,
  Sequential,
  Stream,
  Tensor,
  Trainer,
  Arena,
  datasets,
  decouple,
  mlp,
} from '../ts';
import type { DecoupleOptions, DecoupledNetwork } from '../ts';
import { StepContext } from '../ts/nn/module';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
const B = 6;
/** module i maps widths[i] → widths[i+1]; every module but the last ends with a ReLU */
const widths = [3, 5, 4, 2];
const lr = 0.1,
  momentum = 0.5,
  lrSynth = 0.05;

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 1e-4, floor = 1e-5): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

// ---- the float64 simulation ------------------------------------------------------------------

interface SimLayer {
  W: Float64Array;
  b: Float64Array;
  vW: Float64Array;
  vb: Float64Array;
  inF: number;
  outF: number;
}
interface SimSynth {
  A: Float64Array;
  c: Float64Array;
  width: number;
  loss: number;
}
interface SimPending {
  step: number;
  h: Float64Array;
  raw: Float64Array;
  target: Float64Array;
}

/** The options of the simulated run: λ and p as the network is configured, the warm-up, the depth. */
interface SimOptions {
  lambda: number;
  warmupSteps: number;
  depth: number;
}

class Simulation {
  steps = 0;
  readonly pending: SimPending[][];
  constructor(
    readonly layers: SimLayer[],
    readonly synths: SimSynth[],
    readonly o: SimOptions,
  ) {
    this.pending = synths.map(() => []);
  }

  /** h_0..h_N for a batch: Linear, then ReLU on every module but the last. */
  forward(x: ArrayLike<number>): Float64Array[] {
    const hs = [ref.f64(x)];
    this.layers.forEach((l, i) => {
      const z = ref.addBias(ref.gemm(false, true, { M: B, N: l.outF, K: l.inF }, 1, hs[i], l.W, 0, null), l.b, B, l.outF);
      hs.push(i < this.layers.length - 1 ? ref.activation('relu', z) : z);
    });
    return hs;
  }

  /** M_i(h) before the 1/B scaling: h Aᵀ + c */
  raw(i: number, h: Float64Array): Float64Array {
    const s = this.synths[i];
    return ref.addBias(ref.gemm(false, true, { M: B, N: s.width, K: s.width }, 1, h, s.A, 0, null), s.c, B, s.width);
  }

  /** g at a module's output back to its input: the ReLU's mask (if any), then the Linear's gradients. */
  backward(i: number, g: Float64Array, hIn: Float64Array, hOut: Float64Array) {
    const l = this.layers[i];
    const dz = i < this.layers.length - 1 ? g.map((v, k) => (hOut[k] > 0 ? v : 0)) : g;
    return {
      gW: ref.gemm(true, false, { M: l.outF, N: l.inF, K: B }, 1, dz, hIn, 0, null),
      gb: ref.columnSums(dz, B, l.outF),
      down: ref.gemm(false, false, { M: B, N: l.inF, K: l.outF }, 1, dz, l.W, 0, null),
    };
  }

  /** The true gradient of the mean squared error at the network's output. */
  lossGradient(out: Float64Array, y: ArrayLike<number>): Float64Array {
    return out.map((o, k) => (2 * (o - y[k])) / out.length);
  }

  step(x: ArrayLike<number>, y: ArrayLike<number>, updated: boolean[]): void {
    const t = this.steps++;
    const warm = t < this.o.warmupSteps;
    const lambda = warm ? 1 : this.o.lambda;
    const depth = this.o.depth;
    const n = this.layers.length;
    const hs = this.forward(x);
    const raws = this.synths.map((_, i) => this.raw(i, hs[i + 1]));
    let above: Float64Array | undefined = this.lossGradient(hs[n], y);
    for (let i = n - 1; i >= 0; i--) {
      let g: Float64Array;
      if (i === n - 1) g = above!;
      else {
        const synthetic = raws[i].map((v) => v / B);
        g = above && lambda > 0 ? synthetic.map((s, k) => (1 - lambda) * s + lambda * above![k]) : synthetic;
      }
      let down: Float64Array | undefined;
      if (updated[i]) {
        const { gW, gb, down: d } = this.backward(i, g, hs[i], hs[i + 1]);
        const l = this.layers[i];
        ref.sgdStep(l.W, gW, l.vW, lr, momentum, 0);
        ref.sgdStep(l.b, gb, l.vb, lr, momentum, 0);
        down = d;
      }
      if (i < n - 1) {
        // M_i regresses onto B·δ_i: now, or `depth` steps later (at step t + depth, whether or
        // not module i+1 updates then) from the saved h with its weights then.
        const queue = this.pending[i];
        if (above) queue.push({ step: t, h: hs[i + 1], raw: raws[i], target: above });
        while (queue.length && queue[0].step <= t - depth) {
          const due = queue.shift()!;
          const s = this.synths[i];
          const raw = due.step < t ? this.raw(i, due.h) : due.raw;
          const err = raw.map((v, k) => v - B * due.target[k]);
          s.loss = ref.dot(err, err) / err.length;
          const dRaw = err.map((e) => (2 * e) / err.length);
          ref.sgdStep(s.A, ref.gemm(true, false, { M: s.width, N: s.width, K: B }, 1, dRaw, due.h, 0, null), null, lrSynth, 0, 0);
          ref.sgdStep(s.c, ref.columnSums(dRaw, B, s.width), null, lrSynth, 0, 0);
        }
      }
      above = down;
    }
  }

  /** What diagnose() reports, on the active units of each module's closing ReLU. */
  diagnose(x: ArrayLike<number>, y: ArrayLike<number>) {
    const n = this.layers.length;
    const hs = this.forward(x);
    const synthetic = this.synths.map((_, i) => this.raw(i, hs[i + 1]).map((v) => v / B));
    const truth: Float64Array[] = [];
    let g = this.lossGradient(hs[n], y);
    for (let i = n - 1; i > 0; i--) truth[i - 1] = g = this.backward(i, g, hs[i], hs[i + 1]).down;
    const targets = this.synths.map((_, i) => (i < n - 2 ? this.backward(i + 1, synthetic[i + 1], hs[i + 1], hs[i + 2]).down : truth[i]));
    const cos = (a: Float64Array, b: Float64Array) => ref.dot(a, b) / Math.sqrt(ref.dot(a, a) * ref.dot(b, b));
    return this.synths.map((s, i) => {
      const active = (v: Float64Array) => v.map((e, k) => (hs[i + 1][k] > 0 ? e : 0));
      const [a, b, tg] = [active(synthetic[i]), active(truth[i]), active(targets[i])];
      return { synthesizerLoss: s.loss, cosine: cos(a, b), normRatio: Math.sqrt(ref.dot(a, a) / ref.dot(b, b)), targetCosine: cos(a, tg) };
    });
  }
}

// ---- the library's run, side by side with the simulation -------------------------------------

function context(stream: Stream, arena: Arena): StepContext {
  return { device: cpu, stream, training: true, arena };
}

async function values(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

/** [Linear, ReLU] x 2 then Linear, cut after each ReLU; linear synthesizers on plain SGD; modules on SGD with momentum. */
async function setup(options: DecoupleOptions, seed: number) {
  const model = new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
  const net = decouple(model, { ...options, synthesizer: { hidden: [], optimizer: () => new SGD({ lr: lrSynth }) } });
  const rng = new Random(seed);
  net.initialize(cpu, rng.fork());
  const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new SGD({ lr, momentum }) }) as DecoupledTraining;
  strategy.record = true;
  const stream = new Stream(cpu);
  const linears = net.modules.map((m) => m.layers[0] as Linear);
  const synthLinears = net.synthesizers.map((s) => (s.network as Sequential).layers[0] as Linear);
  // Non-zero synthesizers from the start, so that ĝ matters at the first step.
  for (const s of synthLinears) {
    await s.weight!.assign(ref.randomArray(rng, s.inFeatures * s.outFeatures, 0.05, 0.4));
    await s.bias!.assign(ref.randomArray(rng, s.outFeatures, 0.05, 0.4));
  }
  const layers: SimLayer[] = [];
  for (const [i, l] of linears.entries()) {
    layers.push({
      W: await values(l.weight!.value, stream),
      b: await values(l.bias!.value, stream),
      vW: new Float64Array(widths[i] * widths[i + 1]),
      vb: new Float64Array(widths[i + 1]),
      inF: widths[i],
      outF: widths[i + 1],
    });
  }
  const synths: SimSynth[] = [];
  for (const [i, s] of synthLinears.entries())
    synths.push({ A: await values(s.weight!.value, stream), c: await values(s.bias!.value, stream), width: widths[i + 1], loss: NaN });
  const sim = new Simulation(layers, synths, {
    lambda: net.config.lambda,
    warmupSteps: net.config.warmupSteps,
    depth: net.config.schedule.kind === 'pipelined' ? net.config.schedule.depth : 0,
  });
  const arena = new Arena();
  const batch = () => ({ x: ref.randomArray(rng, B * widths[0]), y: ref.randomArray(rng, B * widths[3]) });
  const tensors = (b: { x: Float32Array; y: Float32Array }) =>
    [Tensor.fromArray(b.x, [B, widths[0]], { device: cpu, arena }), Tensor.fromArray(b.y, [B, widths[3]], { device: cpu, arena })] as const;

  /** One step of both; returns which modules updated. */
  const step = async () => {
    const b = batch();
    const [x, y] = tensors(b);
    await strategy.step(x, y, context(stream, arena)).read(stream);
    const updated = [...strategy.lastStep!.updated];
    sim.step(b.x, b.y, updated);
    return updated;
  };
  /** Every module and synthesizer parameter equals the simulation's. */
  const compare = async (when: string) => {
    for (const [i, l] of linears.entries()) {
      expectClose(await values(l.weight!.value, stream), sim.layers[i].W, `${when}: module ${i + 1} W`);
      expectClose(await values(l.bias!.value, stream), sim.layers[i].b, `${when}: module ${i + 1} b`);
    }
    for (const [i, s] of synthLinears.entries()) {
      expectClose(await values(s.weight!.value, stream), sim.synths[i].A, `${when}: synthesizer ${i + 1} A`);
      expectClose(await values(s.bias!.value, stream), sim.synths[i].c, `${when}: synthesizer ${i + 1} c`);
    }
  };
  const dispose = () => {
    arena.dispose();
    strategy.dispose();
    net.dispose();
  };
  return { net, strategy, stream, sim, step, compare, dispose, batch, tensors, arena, linears };
}

/** Runs `steps` steps side by side, comparing every parameter after each; returns the update flags. */
async function runAgainstSimulation(options: DecoupleOptions, steps: number, seed = 7): Promise<boolean[][]> {
  const run = await setup(options, seed);
  const flags: boolean[][] = [];
  try {
    for (let s = 1; s <= steps; s++) {
      flags.push(await run.step());
      await run.compare(`after step ${s}`);
    }
  } finally {
    run.dispose();
  }
  return flags;
}

describe('the decoupled step against a float64 simulation of the method', () => {
  test('DNI (λ = 0), lockstep: module and synthesizer weights over 5 steps', async () => {
    await runAgainstSimulation({ lambda: 0 }, 5);
  });

  test.each([0.25, 0.7])('BP(λ = %p): each module is updated with (1−λ)ĝ + λδ', async (lambda) => {
    await runAgainstSimulation({ lambda }, 4);
  });

  test('BP(λ): the gradient a module uses equals (1−λ)ĝ + λδ at one cut, by hand', async () => {
    // Module 1 (Linear → ReLU) updated from the mix: its weight gradient is g_maskedᵀ x. Here
    // the gradient is recovered from one SGD step with zero momentum state: ΔW = −lr·gW.
    const lambda = 0.3;
    const run = await setup({ lambda }, 3);
    const W0 = await values(run.linears[0].weight!.value, run.stream);
    const b = run.batch();
    const [x, y] = run.tensors(b);
    await run.strategy.step(x, y, context(run.stream, run.arena)).read(run.stream);
    const r = run.strategy.lastStep!;
    const h1 = await values(r.activations[0], run.stream);
    const synthetic = await values(r.synthetic[0], run.stream);
    const delta = await values(r.targets[0]!, run.stream);
    const mixed = synthetic.map((s, k) => (1 - lambda) * s + lambda * delta[k]);
    const dz = mixed.map((v, k) => (h1[k] > 0 ? v : 0));
    const gW = ref.gemm(true, false, { M: 5, N: 3, K: B }, 1, dz, b.x, 0, null);
    expectClose(
      await values(run.linears[0].weight!.value, run.stream),
      W0.map((w, k) => w - lr * gW[k]),
      'module 1 W',
    );
    run.dispose();
  });

  test('warm-up: the first W steps are backprop (λ = 1), the later ones DNI', async () => {
    await runAgainstSimulation({ lambda: 0, warmupSteps: 2 }, 4);
  });

  test('stochastic updates (p = 0.5): skipped modules and the synthesizers below them stand still', async () => {
    const flags = await runAgainstSimulation({ schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 8, 4);
    // The draw of this seed has both kinds of step for every module (else the test proves less).
    for (let i = 0; i < 3; i++) {
      expect(flags.some((f) => f[i])).toBe(true);
      expect(flags.some((f) => !f[i])).toBe(true);
    }
  });

  test('stochastic updates with BP(λ = 0.5): below a skipped module, ĝ is used alone', async () => {
    const flags = await runAgainstSimulation({ lambda: 0.5, schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 8, 4);
    expect(flags.some((f) => !f[1] || !f[2])).toBe(true); // some step had no δ to mix in
  });

  test.each([
    ['depth 2', { kind: 'pipelined' as const, depth: 2 }],
    ['depth 2, p = 0.6', { kind: 'pipelined' as const, depth: 2, pUpdate: 0.6 }],
    // Over enough steps a module skips while an update below it falls due (this threw
    // "axpby: 'x' was disposed" when due updates waited for the next target).
    ['depth 2, p = 0.5, 12 steps', { kind: 'pipelined' as const, depth: 2, pUpdate: 0.5 }, 12],
    ['depth 1', { kind: 'pipelined' as const, depth: 1 }],
  ])(
    'the pipelined schedule (%s): late targets regressed from their saved inputs with the current weights',
    async (_, schedule, steps = 6) => {
      await runAgainstSimulation({ schedule }, steps);
    },
  );

  test('the pipelined schedule with BP(λ = 0.5) and a warm-up', async () => {
    await runAgainstSimulation({ schedule: { kind: 'pipelined', depth: 2 }, lambda: 0.5, warmupSteps: 1 }, 5);
  });
});

describe('a module that the stochastic schedule skips', () => {
  test('keeps its weights and its optimizer state (momentum, step count) bit for bit', async () => {
    const run = await setup({ schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 4);
    const snapshot = () =>
      Promise.all(
        run.net.modules.map(async (m, i) => ({
          params: await Promise.all(m.parameters().map((p) => p.value.readFloat32(run.stream))),
          state: await Promise.all(run.strategy.optimizers[i].stateTensors(m.parameters()).map((t) => t.readFloat32(run.stream))),
          steps: run.strategy.optimizers[i].steps,
        })),
      );
    let skipped = 0,
      moved = 0;
    let before = await snapshot();
    for (let s = 0; s < 8; s++) {
      const updated = await run.step();
      const after = await snapshot();
      for (let i = 0; i < 3; i++) {
        if (updated[i]) {
          moved++;
          expect(after[i].steps).toBe(before[i].steps + 1);
          expect(after[i].params).not.toEqual(before[i].params);
        } else {
          skipped++;
          expect(after[i]).toEqual(before[i]);
        }
      }
      before = after;
    }
    expect(skipped).toBeGreaterThan(2);
    expect(moved).toBeGreaterThan(2);
    await run.compare('after 8 steps'); // and the modules that did update match the hand computation
    run.dispose();
  });
});

describe('diagnostics', () => {
  test.each([
    ['lockstep', {}],
    ['pipelined depth 2, p = 0.7', { schedule: { kind: 'pipelined' as const, depth: 2, pUpdate: 0.7 } }],
  ])('(%s) equal a float64 computation on the probe batch and change nothing', async (_, options) => {
    const run = await setup(options, 9);
    for (let s = 0; s < 6; s++) await run.step();
    const probe = run.batch();
    const [x, y] = run.tensors(probe);
    const got = await run.strategy.diagnose(x, y, context(run.stream, run.arena));
    const want = run.sim.diagnose(probe.x, probe.y);
    expect(got.map((d) => d.module)).toEqual([1, 2]);
    for (const [i, w] of want.entries()) {
      expect(Number.isFinite(w.synthesizerLoss)).toBe(true); // each synthesizer learned by now
      for (const key of ['synthesizerLoss', 'cosine', 'normRatio', 'targetCosine'] as const)
        expectClose([got[i][key]], [w[key]], `synthesizer ${i + 1} ${key}`, 1e-4, 1e-6);
    }
    // The probe left nothing behind: the next steps still match the simulation, which never probed.
    for (let s = 0; s < 2; s++) await run.step();
    await run.compare('after the probe and 2 more steps');
    run.dispose();
  });

  test('a run with diagnostics leaves exactly the weights of a run without (BatchNorm included)', async () => {
    const { train } = await datasets.mnist();
    const data = train.head(512);
    const weights = async (diagnoseEvery?: number, schedule?: DecoupleOptions['schedule']) => {
      const net: DecoupledNetwork = decouple(mlp(784, [16, 12], 10), { synthesizer: { hidden: [8] }, schedule });
      const trainer = new Trainer(net, { device: cpu, optimizer: () => new SGD({ lr: 0.05, momentum: 0.9 }), seed: 5 });
      await trainer.fit(data, { steps: 6, batchSize: 32, diagnoseEvery, logEvery: 1000 });
      const all = [...net.stateTensors(), ...net.parameters().map((p) => p.value), ...net.synthesizerParameters().map((p) => p.value)];
      const out = await Promise.all(all.map((t) => t.readFloat32(trainer.stream)));
      trainer.dispose();
      return Buffer.concat(out.map((a) => Buffer.from(a.buffer)));
    };
    const plain = await weights();
    expect((await weights(1)).equals(plain)).toBe(true);
    expect(
      (await weights(2, { kind: 'lockstep', pUpdate: 0.5 })).equals(await weights(undefined, { kind: 'lockstep', pUpdate: 0.5 })),
    ).toBe(true);
  });
});

describe('warm-up', () => {
  test('the first W steps equal plain backprop bit for bit; step W+1 is decoupled', async () => {
    const { train } = await datasets.mnist();
    const data = train.head(512);
    const W = 3;
    const params = async (model: Sequential | DecoupledNetwork, steps: number) => {
      const trainer = new Trainer(model, { device: cpu, optimizer: () => new SGD({ lr: 0.05, momentum: 0.9 }), seed: 2 });
      await trainer.fit(data, { steps, batchSize: 32 });
      const out = await Promise.all(model.parameters().map((p) => p.value.readFloat32(trainer.stream)));
      trainer.dispose();
      return Buffer.concat(out.map((a) => Buffer.from(a.buffer)));
    };
    const decoupled = () => decouple(mlp(784, [16, 12], 10), { warmupSteps: W, synthesizer: { hidden: [8] } });
    const backprop = () => mlp(784, [16, 12], 10);
    expect((await params(decoupled(), W)).equals(await params(backprop(), W))).toBe(true);
    expect((await params(decoupled(), W + 1)).equals(await params(backprop(), W + 1))).toBe(false);
  });
});
