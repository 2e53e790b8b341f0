// Recurrent training: one DNI window against a float64 hand computation (ĝ, the discounted
// bootstrapped target, M's regression and the core's update), the synthetic gradient bounded
// on a stream without resets, truncated BPTT with windows that hold whole
// episodes equal to full BPTT, one stream = two streams bit for bit, a resumed run continuing
// bit for bit, a learning check, and errors before training.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Linear, Random, SGD, Sequential } from '../ts';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentTraining, RecurrentTrainingOptions, SymbolWindow } from '../ts/recurrent/training';
import { DEFAULT_SYNTHESIZER_LR, trainSequences } from '../ts/recurrent/run';
import { TextCorpus } from '../ts/data/text';
import { readCheckpoint } from '../ts/train/checkpoint';
import * as ref from './helpers/reference';
import { expectClose } from './helpers/reference';
import { Dims, lstmWindow, LSTMParams } from './helpers/lstm-reference';
import { errorOf } from './helpers/errors';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

/**
 * A small seeded source: episodes of `length` steps (the state reset at each start) in which
 * the target at step t is the input at step t - delay (nothing scored before that).
 */
class EchoSource {
  readonly name = 'echo';
  readonly inputSymbols: number;
  readonly outputSymbols: number;
  private rng: Random;
  private position = 0;
  private episode: Int32Array[] = [];

  constructor(
    readonly batch: number,
    readonly length: number,
    readonly delay: number,
    symbols: number,
    seed: number,
  ) {
    this.inputSymbols = this.outputSymbols = symbols;
    this.rng = new Random(seed);
  }

  nextWindow(steps: number): SymbolWindow {
    const B = this.batch;
    const inputs = new Int32Array(steps * B);
    const targets = new Int32Array(steps * B).fill(-1);
    const resets: boolean[] = [];
    for (let t = 0; t < steps; t++) {
      const k = this.position % this.length;
      resets.push(k === 0);
      if (k === 0) this.episode = [];
      const x = Int32Array.from({ length: B }, () => this.rng.int(this.inputSymbols));
      this.episode.push(x);
      inputs.set(x, t * B);
      if (k >= this.delay) targets.set(this.episode[k - this.delay], t * B);
      this.position++;
    }
    return { steps, batch: B, inputs, targets, resets };
  }

  state(): unknown {
    return { rng: this.rng.state(), position: this.position, episode: this.episode.map((e) => Array.from(e)) };
  }

  restore(state: unknown): void {
    const s = state as { rng: number[]; position: number; episode: number[][] };
    this.rng.restore(s.rng);
    this.position = s.position;
    this.episode = s.episode.map((e) => Int32Array.from(e));
  }
}

async function weightsOf(tr: RecurrentTraining): Promise<Float32Array[]> {
  await tr.synchronize();
  const tensors = [
    ...tr.model.parameters().map((p) => p.value),
    ...(tr.aux?.parameters().map((p) => p.value) ?? []),
    ...(tr.synthesizer?.network.stateTensors() ?? []),
    tr.state!.h,
    tr.state!.c,
  ];
  return Promise.all(tensors.map((t) => t.readFloat32()));
}

function trainer(options: Partial<RecurrentTrainingOptions> & { hidden?: number; symbols?: number } = {}): RecurrentTraining {
  const { hidden = 8, symbols = 4, ...rest } = options;
  const model = new LSTMSequenceModel({ inputSymbols: symbols, outputs: symbols, hidden });
  return new RecurrentTraining(model, { optimizer: () => new Adam({ lr: 0.01 }), seed: 5, ...rest });
}

describe('one DNI window against a float64 hand computation', () => {
  test.each([
    ['dni', 1],
    ['dni', 0.3],
    ['dni-aux', 1],
    ['dni-aux', 0.3],
  ] as const)(
    "%s, discount γ = %p: ĝ = γ·M(s_T)/B, M's target δ_0 (with the discounted bootstrap), M's regression and the core's update",
    async (method, discount) => {
      const d: Dims = { B: 2, I: 3, H: 2, O: 3 };
      const T = 3,
        lr = 0.1,
        lrSynth = 0.05,
        auxWeight = 0.7;
      const tr = new RecurrentTraining(new LSTMSequenceModel({ inputSymbols: d.I, outputs: d.O, hidden: d.H }), {
        method,
        optimizer: () => new SGD({ lr }),
        synthesizer: { optimizer: () => new SGD({ lr: lrSynth }), discount },
        seed: 3,
        ...(method === 'dni-aux' ? { auxWeight } : {}),
      });
      tr.record = true;
      const rng = new Random(17);
      const p: LSTMParams = {
        W: ref.randomArray(rng, 4 * d.H * (d.I + d.H), 0.1, 0.8),
        b: ref.randomArray(rng, 4 * d.H, 0.1, 0.5),
        Wr: ref.randomArray(rng, d.O * d.H),
        br: ref.randomArray(rng, d.O, 0.1, 0.5),
      };
      const S = 2 * d.H;
      const A = ref.randomArray(rng, S * S, 0.1, 0.6),
        a = ref.randomArray(rng, S, 0.1, 0.3); // M(s) = s Aᵀ + a
      const m = tr.model;
      await m.core.weight!.assign(Float32Array.from(p.W));
      await m.core.bias!.assign(Float32Array.from(p.b));
      await m.readout.weight!.assign(Float32Array.from(p.Wr));
      await m.readout.bias!.assign(Float32Array.from(p.br));
      const mLinear = (tr.synthesizer!.network as Sequential).layers[0] as Linear;
      await mLinear.weight!.assign(A);
      await mLinear.bias!.assign(a);
      const S2 = 2 * d.H;
      const Aux = ref.randomArray(rng, S2 * d.H, 0.1, 0.6),
        aux = ref.randomArray(rng, S2, 0.1, 0.3); // Aux(h) = h Auxᵀ + aux
      if (tr.aux) {
        await tr.aux.weight!.assign(Aux);
        await tr.aux.bias!.assign(aux);
      }
      const h0 = ref.randomArray(rng, d.B * d.H),
        c0 = ref.randomArray(rng, d.B * d.H);
      tr.setState(h0, c0, d.B);
      const window: SymbolWindow = {
        steps: T,
        batch: d.B,
        resets: [false, false, false],
        inputs: Int32Array.from([0, 2, 1, 1, 2, 0]),
        targets: Int32Array.from([-1, -1, 2, -1, 0, 1]),
      };
      const metrics = await tr.step(window);
      await tr.synchronize();

      // By hand.
      const xs = [0, 1, 2].map((t) => ref.oneHot(window.inputs.slice(t * d.B, (t + 1) * d.B), d.I));
      const labels = [0, 1, 2].map((t) => window.targets.slice(t * d.B, (t + 1) * d.B));
      const spec = { xs, labels: [undefined, labels[1], labels[2]], h0, c0 }; // step 0 scores nothing
      const fwd = lstmWindow(p, d, spec);
      expectClose('loss', [metrics.loss], [fwd.loss], 1e-5, 1e-6);
      const sT = ref.concatColumns(fwd.h, fwd.c, d.B, d.H, d.H);
      const M = (s: ArrayLike<number>, W: ArrayLike<number>, bias: ArrayLike<number>) =>
        ref.addBias(ref.gemm(false, true, { M: d.B, N: S, K: S }, 1, s, W, 0, null), bias, d.B, S);
      const gHat = M(sT, A, a).map((v) => (discount * v) / d.B);
      expectClose('ĝ', await tr.lastWindow!.synthetic.readFloat32(), gHat, 1e-5, 1e-6);
      const gh = ref.sliceColumns(gHat, d.B, S, 0, d.H),
        gc = ref.sliceColumns(gHat, d.B, S, d.H, S);
      // The window's objective with ĝ entering at its end: loss + ⟨ĝ_h, h_T⟩ + ⟨ĝ_c, c_T⟩, and for
      // DNI + Aux, auxWeight · (1/T) Σ_t mean((Aux h_t - M(s_T))²) with M(s_T) held fixed (not discounted).
      const MT = M(sT, A, a);
      const auxLoss = (hs: Float64Array[], W: ArrayLike<number>, bias: ArrayLike<number>) =>
        method === 'dni-aux'
          ? (auxWeight / T) *
            hs.reduce(
              (acc, h) => acc + ref.mse(ref.addBias(ref.gemm(false, true, { M: d.B, N: S2, K: d.H }, 1, h, W, 0, null), bias, d.B, S2), MT),
              0,
            )
          : 0;
      const objective = (q: LSTMParams, s0h: ArrayLike<number>, s0c: ArrayLike<number>) => {
        const r = lstmWindow(q, d, { ...spec, h0: s0h, c0: s0c });
        return r.loss + ref.dot(gh, r.h) + ref.dot(gc, r.c) + auxLoss(r.hs, Aux, aux);
      };
      const delta0 = ref.concatColumns(
        ref.numericGrad((v) => objective(p, v, c0), h0),
        ref.numericGrad((v) => objective(p, h0, v), c0),
        d.B,
        d.H,
        d.H,
      );
      expectClose('δ_0', await tr.lastWindow!.target.readFloat32(), delta0, 2e-4, 1e-4);
      expect(ref.maxAbs(delta0)).toBeGreaterThan(1e-3);

      // M's regression: on s_0 with its current weights, onto B·δ_0, L2 = mean of squares; one SGD step.
      const s0 = ref.concatColumns(h0, c0, d.B, d.H, d.H);
      const P = M(s0, A, a);
      const dP = P.map((v, k) => (2 * (v - d.B * delta0[k])) / (d.B * S));
      const A1 = ref.f64(A).map((w, k) => w - lrSynth * ref.gemm(true, false, { M: S, N: S, K: d.B }, 1, dP, s0, 0, null)[k]);
      const a1 = ref.f64(a).map((w, k) => w - lrSynth * ref.columnSums(dP, d.B, S)[k]);
      expectClose('M.weight', await mLinear.weight!.value.readFloat32(), A1, 1e-5, 1e-5);
      expectClose('M.bias', await mLinear.bias!.value.readFloat32(), a1, 1e-5, 1e-5);
      expect(ref.compare(A1, A, 1e-6).worst).toBeGreaterThan(1e-4); // M did move

      // The core: one SGD step on the gradient of the objective (ĝ included).
      const step = (name: keyof LSTMParams) => {
        const g = ref.numericGrad((v) => objective({ ...p, [name]: v }, h0, c0), p[name]);
        return ref.f64(p[name]).map((w, k) => w - lr * g[k]);
      };
      expectClose('W', await m.core.weight!.value.readFloat32(), step('W'), 1e-5, 1e-4);
      expectClose('b', await m.core.bias!.value.readFloat32(), step('b'), 1e-5, 1e-4);
      expectClose('Wr', await m.readout.weight!.value.readFloat32(), step('Wr'), 1e-5, 1e-4);
      if (method === 'dni-aux') {
        // The Aux head: one SGD step with the core's optimizer on its loss.
        const gAux = ref.numericGrad((v) => auxLoss(fwd.hs, v, aux), Aux);
        const gaux = ref.numericGrad((v) => auxLoss(fwd.hs, Aux, v), aux);
        expectClose(
          'Aux.weight',
          await tr.aux!.weight!.value.readFloat32(),
          ref.f64(Aux).map((w, k) => w - lr * gAux[k]),
          1e-5,
          1e-5,
        );
        expectClose(
          'Aux.bias',
          await tr.aux!.bias!.value.readFloat32(),
          ref.f64(aux).map((w, k) => w - lr * gaux[k]),
          1e-5,
          1e-5,
        );
        expect(ref.maxAbs(gAux)).toBeGreaterThan(1e-3);
      }
      // The carried state is s_T.
      expectClose('h_T', await tr.state!.h.readFloat32(), fwd.h, 1e-5, 1e-6);
      tr.dispose();
    },
  );

  test('a window that starts with a reset gives M the target 0 for the state carried out', async () => {
    const tr = trainer({ method: 'dni' });
    tr.record = true;
    const source = new EchoSource(4, 6, 1, 4, 1);
    await tr.step(source.nextWindow(3)); // steps 0-2 of an episode
    await tr.step(source.nextWindow(3)); // 3-5
    await tr.synchronize();
    expect(ref.maxAbs(await tr.lastWindow!.target.readFloat32())).toBeGreaterThan(0);
    await tr.step(source.nextWindow(3)); // a new episode: reset at its first step
    await tr.synchronize();
    expect(ref.maxAbs(await tr.lastWindow!.target.readFloat32())).toBe(0);
    tr.dispose();
  });
});

describe('the bootstrap on a stream without resets', () => {
  /** rms of ĝ_c, the cell part of the synthetic gradient, after `windows` windows of a text stream. */
  async function cellGradientRms(discount: number | undefined, windows: number): Promise<number> {
    const text = 'to be or not to be that is the question whether tis nobler in the mind to suffer the slings and arrows '.repeat(40);
    const corpus = TextCorpus.fromString(text, { split: { train: 0.8, validation: 0.1, test: 0.1 } });
    const source = corpus.source('train', 8);
    const H = 16;
    // Forget gates near 1 (bias 4): the cell carries M's own prediction back across a window almost unchanged.
    const model = new LSTMSequenceModel({ inputSymbols: corpus.symbols, outputs: corpus.symbols, hidden: H, forgetBias: 4 });
    const tr = new RecurrentTraining(model, {
      method: 'dni',
      optimizer: () => new Adam({ lr: 3e-3 }),
      seed: 1,
      ...(discount === undefined ? {} : { synthesizer: { discount } }),
    });
    tr.record = true;
    for (let w = 0; w < windows; w++) {
      if (source.done) source.rewind();
      await tr.step(source.nextWindow(5));
    }
    await tr.synchronize();
    const g = await tr.lastWindow!.synthetic.readFloat32();
    const cell = ref.sliceColumns(g, 8, 2 * H, H, 2 * H);
    tr.dispose();
    return Math.sqrt(ref.dot(cell, cell) / cell.length);
  }

  test('with the default discount ĝ_c stays bounded; undiscounted (γ = 1) it grows without bound', async () => {
    const bounded = await cellGradientRms(undefined, 200);
    const undiscounted = await cellGradientRms(1, 200);
    expect(bounded).toBeLessThan(0.1);
    expect(undiscounted).toBeGreaterThan(100 * bounded); // the failure the discount prevents
  });
});

describe('truncated BPTT', () => {
  test("a window holding whole episodes gives full BPTT's update (each episode from a zero state)", async () => {
    const d: Dims = { B: 2, I: 4, H: 3, O: 4 };
    const lr = 0.05;
    const tr = new RecurrentTraining(new LSTMSequenceModel({ inputSymbols: d.I, outputs: d.O, hidden: d.H }), {
      optimizer: () => new SGD({ lr }),
      seed: 9,
    });
    const source = new EchoSource(d.B, 3, 1, d.I, 2);
    await tr.step(source.nextWindow(3)); // a first episode: the carried state is not zero afterwards
    expect(ref.maxAbs(await tr.state!.h.readFloat32())).toBeGreaterThan(0);
    const p: LSTMParams = {
      W: await tr.model.core.weight!.value.readFloat32(),
      b: await tr.model.core.bias!.value.readFloat32(),
      Wr: await tr.model.readout.weight!.value.readFloat32(),
      br: await tr.model.readout.bias!.value.readFloat32(),
    };
    const window = source.nextWindow(6); // two episodes of 3 steps: resets at 0 and 3
    expect(window.resets).toEqual([true, false, false, true, false, false]);
    await tr.step(window);
    // Full BPTT: the sum of each episode's loss, run on its own from a zero state.
    const zero = new Float64Array(d.B * d.H);
    const episode = (q: LSTMParams, t0: number) => {
      const steps = [t0, t0 + 1, t0 + 2];
      const labels = steps.map((t) => window.targets.slice(t * d.B, (t + 1) * d.B));
      return lstmWindow(q, d, {
        xs: steps.map((t) => ref.oneHot(window.inputs.slice(t * d.B, (t + 1) * d.B), d.I)),
        labels: labels.map((l) => (l.some((v) => v !== -1) ? l : undefined)),
        h0: zero,
        c0: zero,
      }).loss;
    };
    const full = (q: LSTMParams) => episode(q, 0) + episode(q, 3);
    for (const name of ['W', 'b', 'Wr', 'br'] as const) {
      const g = ref.numericGrad((v) => full({ ...p, [name]: v }), p[name]);
      const tensor =
        name === 'W'
          ? tr.model.core.weight!
          : name === 'b'
            ? tr.model.core.bias!
            : name === 'Wr'
              ? tr.model.readout.weight!
              : tr.model.readout.bias!;
      expectClose(
        name,
        await tensor.value.readFloat32(),
        ref.f64(p[name]).map((w, k) => w - lr * g[k]),
        1e-5,
        1e-4,
      );
    }
    tr.dispose();
  });
});

describe('streams and checkpoints', () => {
  test.each(['dni', 'dni-aux'] as const)('%s: one stream and two streams give bit-identical weights', async (method) => {
    const results: Float32Array[][] = [];
    for (const streams of ['single', 'separate'] as const) {
      const tr = trainer({ method, streams, synthesizer: { hidden: [8] } });
      const source = new EchoSource(4, 7, 2, 4, 11);
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < 8; i++) pending.push(tr.step(source.nextWindow(3))); // enqueued without waiting
      await Promise.all(pending);
      results.push(await weightsOf(tr));
      tr.dispose();
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[0].length).toBeGreaterThan(6);
  });

  test.each(['bptt', 'dni', 'dni-aux'] as const)('%s: a run resumed from a checkpoint continues bit for bit', async (method) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const straight = trainer({ method });
      const source = new EchoSource(4, 5, 1, 4, 21);
      for (let i = 0; i < 6; i++) await straight.step(source.nextWindow(3));
      const want = await weightsOf(straight);

      const first = trainer({ method });
      const source1 = new EchoSource(4, 5, 1, 4, 21);
      for (let i = 0; i < 3; i++) await first.step(source1.nextWindow(3));
      await first.save(file, { source: source1.state() });
      first.dispose();

      const resumed = trainer({ method, seed: 99 }); // other initial weights: all of them come from the file
      const source2 = new EchoSource(4, 5, 1, 4, 1234);
      const host = (await resumed.load(file)) as { source: unknown };
      source2.restore(host.source);
      expect(resumed.windows).toBe(3);
      for (let i = 0; i < 3; i++) await resumed.step(source2.nextWindow(3));
      expect(resumed.windows).toBe(6);
      expect(await weightsOf(resumed)).toEqual(want);
      straight.dispose();
      resumed.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a checkpoint of another method is refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const tr = trainer({ method: 'bptt' });
      await tr.step(new EchoSource(4, 5, 1, 4, 1).nextWindow(2));
      await tr.save(file);
      const other = trainer({ method: 'dni' });
      await expect(other.load(file)).rejects.toThrow(/method 'bptt'/);
      tr.dispose();
      other.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('errors before training', () => {
  test('windows that do not fit the model, and options that do not fit the method', () => {
    const tr = trainer();
    const w = new EchoSource(2, 4, 1, 4, 1).nextWindow(2);
    expect(errorOf(() => tr.step({ ...w, inputs: Int32Array.from([0, 1, 9, 2]) })).message).toMatch(
      /'window.inputs\[2\]' \(step 1, row 0\) is 9, outside the input symbols \[0, 4\)/,
    );
    expect(errorOf(() => tr.step({ ...w, targets: Int32Array.from([0, 1, 4, -1]) })).message).toMatch(
      /'window.targets\[2\]' \(step 1, row 0\) is 4, outside the output symbols/,
    );
    expect(errorOf(() => tr.step({ ...w, inputs: new Int32Array(3) })).message).toMatch(
      /'window.inputs' must have steps\*batch = 4 values, got 3/,
    );
    expect(errorOf(() => tr.step({ ...w, resets: [true] })).message).toMatch(/'window.resets' must have one flag per step \(2\), got 1/);
    expect(errorOf(() => trainer({ method: 'bptt', synthesizer: {} })).message).toMatch(/'synthesizer' is given but method 'bptt'/);
    expect(errorOf(() => trainer({ method: 'dni', auxWeight: 2 })).message).toMatch(/'auxWeight' is given but method 'dni'/);
    expect(errorOf(() => trainer({ method: 'rtlr' as never })).message).toMatch(
      /'method' must be one of 'bptt', 'dni', 'dni-aux', 'rtrl', 'uoro'/,
    );
    expect(errorOf(() => trainer({ method: 'dni', synthesizer: { hiden: [] } as never })).message).toMatch(
      /did you mean 'synthesizer.hidden'/,
    );
    tr.dispose();
  });

  test("a batch other than the carried state's", async () => {
    const tr = trainer();
    await tr.step(new EchoSource(2, 4, 1, 4, 1).nextWindow(2));
    expect(errorOf(() => tr.step(new EchoSource(3, 4, 1, 4, 1).nextWindow(2))).message).toMatch(
      /'window.batch' is 3, but the carried state has 2 rows/,
    );
    tr.dispose();
  });
});

describe('trainSequences', () => {
  test.each(['bptt', 'dni'] as const)('%s learns Copy: N = 2 solved at T = 8 within 600 windows', async (method) => {
    // Solving a level needs a mean error under 0.15 bits per symbol over 10 windows (chance: 3 bits).
    const score = await trainSequences({ task: 'copy', method, truncation: 8, steps: 600, hidden: 32, batch: 16, lr: 0.01, seed: 1 });
    expect(score.solved!.length).toBeGreaterThanOrEqual(2);
    expect(score.rises![0]).toEqual({ level: 1, window: expect.any(Number) });
    expect(score.windows).toBe(600);
  });

  test('text: test bits per character with early stopping, and a resumed run ends bit for bit the same', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const textFile = path.join(dir, 'text.txt');
      // A text with structure: after 'q' always 'u'; words from a small set.
      const words = ['quiet', 'queen', 'quack', 'aqua', 'equal'];
      const rng = new Random(4);
      fs.writeFileSync(textFile, Array.from({ length: 1500 }, () => words[rng.int(words.length)]).join(' '));
      const base = {
        task: 'text',
        method: 'dni',
        truncation: 5,
        hidden: 16,
        batch: 4,
        lr: 0.01,
        seed: 2,
        textFile,
        validateEvery: 20,
        patience: 50,
      } as const;
      const straight = await trainSequences({ ...base, steps: 80 });
      const chance = Math.log2(12); // 11 characters and the unknown symbol
      expect(straight.testBits!).toBeLessThan(0.75 * chance);
      expect(straight.bestValidationBits!).toBeLessThan(0.75 * chance);
      const checkpoint = { path: path.join(dir, 'run.ckpt'), every: 10 };
      const first = await trainSequences({ ...base, steps: 40, checkpoint });
      expect(first.windows).toBe(40);
      const resumed = await trainSequences({ ...base, steps: 80, checkpoint });
      expect(resumed.resumedFrom).toBe(40);
      expect(resumed.testBits).toBe(straight.testBits);
      expect(resumed.bestValidationBits).toBe(straight.bestValidationBits);
      await expect(trainSequences({ ...base, lr: 0.02, steps: 90, checkpoint })).rejects.toThrow(
        /other arguments \(lr: 0.01 there, 0.02 here\)/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("text: CRLF line ends are read as LF unless newlines is 'keep'", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const rng = new Random(6);
      const lines = Array.from({ length: 300 }, () => ['to be', 'or not', 'to see'][rng.int(3)]);
      const crlf = path.join(dir, 'crlf.txt');
      const lf = path.join(dir, 'lf.txt');
      fs.writeFileSync(crlf, lines.join('\r\n'));
      fs.writeFileSync(lf, lines.join('\n'));
      const base = { task: 'text', method: 'bptt', truncation: 4, steps: 20, hidden: 8, batch: 4, lr: 0.01, seed: 3 } as const;
      const fromLf = await trainSequences({ ...base, textFile: lf });
      const fromCrlf = await trainSequences({ ...base, textFile: crlf });
      expect(fromCrlf.testBits).toBe(fromLf.testBits); // the same characters, so the same run
      const kept = await trainSequences({ ...base, textFile: crlf, newlines: 'keep' });
      expect(kept.testBits).not.toBe(fromLf.testBits); // '\r' is a character of its own there
      await expect(trainSequences({ ...base, textFile: lf, newlines: 'crlf' as never })).rejects.toThrow(
        /'newlines' must be 'lf' or 'keep', got string crlf/,
      );
      await expect(trainSequences({ task: 'copy', truncation: 4, steps: 10, newlines: 'keep' })).rejects.toThrow(
        /'newlines' is given but task 'copy'/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a resumed run reports the level rises and the wall time of the whole run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const base = { task: 'copy', method: 'bptt', truncation: 8, hidden: 32, batch: 16, lr: 0.01, seed: 1 } as const;
      const straight = await trainSequences({ ...base, steps: 300 });
      expect(straight.rises!.length).toBeGreaterThanOrEqual(1);
      const firstRise = straight.rises![0].window;
      const checkpoint = { path: path.join(dir, 'run.ckpt'), every: 1000 };
      const first = await trainSequences({ ...base, steps: firstRise, checkpoint }); // the first rise is before the resume
      expect(first.rises).toEqual([straight.rises![0]]);
      const saved = ((await readCheckpoint(checkpoint.path)).host as { host: { seconds: number } }).host.seconds;
      expect(saved).toBeGreaterThan(0);
      const resumed = await trainSequences({ ...base, steps: 300, checkpoint });
      expect(resumed.resumedFrom).toBe(firstRise);
      expect(resumed.rises).toEqual(straight.rises);
      expect(resumed.seconds).toBeGreaterThan(saved);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an aborted run stops after the window in flight and says so', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    const score = await trainSequences({
      task: 'repeat-copy',
      method: 'dni-aux',
      truncation: 3,
      steps: 1000,
      hidden: 8,
      batch: 4,
      logEvery: 5,
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.window);
        if (p.window === 10) controller.abort();
      },
    });
    expect(score.stopped).toBe(true);
    expect(score.windows).toBe(10);
    expect(seen).toEqual([5, 10]);
  });

  test('bad arguments are errors before training, naming the argument', async () => {
    const base = { task: 'copy', truncation: 4, steps: 10 } as const;
    await expect(trainSequences({ ...base, truncation: 0 })).rejects.toThrow(/'truncation' must be a positive integer, got 0/);
    await expect(trainSequences({ ...base, task: 'add' as never })).rejects.toThrow(/'task' must be 'copy', 'repeat-copy' or 'text'/);
    await expect(trainSequences({ ...base, task: 'text' })).rejects.toThrow(/'textFile' must name a UTF-8 text file/);
    await expect(trainSequences({ ...base, textFile: 'x.txt' })).rejects.toThrow(/'textFile' is given but task 'copy'/);
    await expect(trainSequences({ ...base, synthesizerHidden: [8] })).rejects.toThrow(/'synthesizerHidden' is given but method 'bptt'/);
    await expect(trainSequences({ ...base, synthesizerLr: 1e-4 })).rejects.toThrow(/'synthesizerLr' is given but method 'bptt'/);
    await expect(trainSequences({ ...base, method: 'dni', synthesizerLr: 0 })).rejects.toThrow(
      /'synthesizerLr' must be a finite number > 0, got 0/,
    );
    await expect(trainSequences({ ...base, method: 'dni', synthesizerDiscount: 2 })).rejects.toThrow(
      /'synthesizerDiscount' must be a number in \(0, 1\], got 2/,
    );
    await expect(trainSequences({ ...base, synthesizerTargetScale: 'batch-mean' })).rejects.toThrow(
      /'synthesizerTargetScale' is given but method 'bptt' uses no synthesizer/,
    );
    await expect(trainSequences({ ...base, method: 'dni', synthesizerTargetScale: 'mean' as never })).rejects.toThrow(
      /'synthesizerTargetScale' must be 'per-example' or 'batch-mean', got "mean"/,
    );
    await expect(trainSequences({ ...base, validateEvery: 5 })).rejects.toThrow(/'validateEvery' is given but task 'copy'/);
    await expect(trainSequences({ ...base, stepz: 3 } as never)).rejects.toThrow(/did you mean 'steps'/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-recurrent-'));
    try {
      const empty = path.join(dir, 'empty.txt');
      fs.writeFileSync(empty, '');
      await expect(trainSequences({ ...base, task: 'text', textFile: empty })).rejects.toThrow(/empty/);
      const small = path.join(dir, 'small.txt');
      fs.writeFileSync(small, 'abcdefghijklmnopqrstuvwxyz'.repeat(4));
      await expect(trainSequences({ ...base, task: 'text', textFile: small, batch: 4, truncation: 30 })).rejects.toThrow(
        /'truncation' is 30, longer than each of the 4 training streams/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("synthesizerLr is the synthesizer's learning rate (default DEFAULT_SYNTHESIZER_LR), not the core's", async () => {
    // T = 2 cuts Copy's 3-step episodes (N = 1) inside an episode, so M's targets are not all 0.
    const bits: number[][] = [];
    const run = async (extra: object) => {
      const seen: number[] = [];
      const o = { task: 'copy', method: 'dni', truncation: 2, steps: 40, hidden: 16, batch: 8, lr: 1e-2, seed: 2, logEvery: 5 } as const;
      await trainSequences({ ...o, ...extra, onProgress: (p) => seen.push(p.bits) });
      bits.push(seen);
    };
    await run({});
    await run({ synthesizerLr: DEFAULT_SYNTHESIZER_LR });
    await run({ synthesizerLr: 1e-2 });
    expect(bits[1]).toEqual(bits[0]);
    expect(bits[2]).not.toEqual(bits[0]); // the synthesizer learns at 1e-2: other synthetic gradients, other losses
  });

  test("synthesizerTargetScale is the synthesizer's targetScale (default 'per-example')", async () => {
    const bits: number[][] = [];
    const run = async (extra: object) => {
      const seen: number[] = [];
      const o = {
        task: 'copy',
        method: 'dni',
        truncation: 2,
        steps: 40,
        hidden: 16,
        batch: 8,
        lr: 1e-2,
        synthesizerLr: 1e-2,
        seed: 2,
        logEvery: 5,
      } as const;
      await trainSequences({ ...o, ...extra, onProgress: (p) => seen.push(p.bits) });
      bits.push(seen);
    };
    await run({});
    await run({ synthesizerTargetScale: 'per-example' });
    await run({ synthesizerTargetScale: 'batch-mean' });
    expect(bits[1]).toEqual(bits[0]);
    // Batch-mean: ĝ = M(s) rather than M(s)/B, on targets B times smaller: other synthetic gradients, other losses.
    expect(bits[2]).not.toEqual(bits[0]);
  });

  test('a synthesizer network whose output cannot match the state [h, c]', () => {
    expect(
      errorOf(() => trainer({ method: 'dni', hidden: 6, synthesizer: { network: (inputs) => new Linear(inputs, 6) } })).message,
    ).toMatch(/outputs 6 features.* 12/);
    expect(errorOf(() => trainer({ method: 'dni', hidden: 6, synthesizer: { network: () => new Linear(5, 12) } })).message).toMatch(
      /does not accept 12 input features/,
    );
  });
});
