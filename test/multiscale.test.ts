// Multi-timescale recurrent training: one window of 'dni' and of 'bptt' against a float64 hand
// computation (the synthetic gradient entering A's message steps, M's regression onto the true
// ∂L_B/∂m, the gradient through the messages against finite differences of the summed loss, both
// cores' updates), 'none' updating A exactly as training A alone does, the two-timescale task's
// targets and resumption, a learning check (B's gradient into A matters), checkpoints that
// resume a run bit for bit, and errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Linear, Parameter, Random, SGD, Sequential, Tensor } from '../ts';
import { LSTMSequenceModel } from '../ts/recurrent/model';
import { RecurrentTraining } from '../ts/recurrent/training';
import { MultiTimescaleMethod, MultiTimescaleOptions, MultiTimescaleTraining } from '../ts/recurrent/multiscale';
import { MultiTimescaleCountTask, MultiTimescaleWindow } from '../ts/data/multiscale';
import * as ref from './helpers/reference';
import { expectClose } from './helpers/reference';
import { Dims, lstmWindow, LSTMParams } from './helpers/lstm-reference';
import { errorOf } from './helpers/errors';

const WINDOWS = 700; // the learning check's budget per method

function trainer(method: MultiTimescaleMethod, extra: Partial<MultiTimescaleOptions> = {}): MultiTimescaleTraining {
  const model = new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 8 });
  return new MultiTimescaleTraining(model, {
    method,
    period: 2,
    slow: { hidden: 6, outputs: 5 },
    optimizer: () => new Adam({ lr: 0.01 }),
    seed: 4,
    ...extra,
  });
}

async function read(t: Tensor): Promise<Float32Array> {
  return t.readFloat32();
}

/** A layer with a weight and a bias (the LSTM, a Linear). */
interface Weighted {
  weight?: Parameter;
  bias?: Parameter;
}

describe('one window against a float64 hand computation', () => {
  // A: 2 symbols → H 2 → 2 classes; B: messages of 2 → H 3 → 3 classes; T = 4 fast steps, k = 2 (B ticks at steps 1 and 3).
  const dA: Dims = { B: 2, I: 2, H: 2, O: 2 };
  const dB: Dims = { B: 2, I: 2, H: 3, O: 3 };
  const T = 4,
    k = 2,
    lr = 0.1,
    lrSynth = 0.05;
  const window: MultiTimescaleWindow = {
    steps: T,
    batch: 2,
    period: k,
    resets: [false, false, false, false],
    inputs: Int32Array.from([0, 1, 1, 1, 0, 0, 1, 0]),
    targets: Int32Array.from([-1, -1, 0, 1, 1, -1, 1, 1]),
    slowTargets: Int32Array.from([2, 0, 1, -1]),
  };
  const ticks = [1, 3];

  async function setUp(method: MultiTimescaleMethod) {
    const tr = new MultiTimescaleTraining(new LSTMSequenceModel({ inputSymbols: dA.I, outputs: dA.O, hidden: dA.H }), {
      method,
      period: k,
      slow: { hidden: dB.H, outputs: dB.O },
      optimizer: () => new SGD({ lr }),
      ...(method === 'dni' ? { synthesizer: { optimizer: () => new SGD({ lr: lrSynth }) } } : {}),
      seed: 3,
    });
    tr.record = true;
    const rng = new Random(23);
    const params = (d: Dims): LSTMParams => ({
      W: ref.randomArray(rng, 4 * d.H * (d.I + d.H), 0.1, 0.8),
      b: ref.randomArray(rng, 4 * d.H, 0.1, 0.5),
      Wr: ref.randomArray(rng, d.O * d.H),
      br: ref.randomArray(rng, d.O, 0.1, 0.5),
    });
    const pA = params(dA);
    const pB = params(dB);
    const assign = async (core: Weighted, w: ArrayLike<number>, b: ArrayLike<number>) => {
      await core.weight!.assign(Float32Array.from(w));
      await core.bias!.assign(Float32Array.from(b));
    };
    await assign(tr.fast.core, pA.W, pA.b);
    await assign(tr.fast.readout, pA.Wr, pA.br);
    await assign(tr.slow.core, pB.W, pB.b);
    await assign(tr.slow.readout, pB.Wr, pB.br);
    const H = dA.H;
    const M = ref.randomArray(rng, H * H, 0.1, 0.6),
      mb = ref.randomArray(rng, H, 0.1, 0.3); // M(m) = m Mᵀ + mb
    if (tr.synthesizer) {
      const lin = (tr.synthesizer.network as Sequential).layers[0] as Linear;
      await lin.weight!.assign(M);
      await lin.bias!.assign(mb);
    }
    const s = {
      hA: ref.randomArray(rng, dA.B * dA.H),
      cA: ref.randomArray(rng, dA.B * dA.H),
      hB: ref.randomArray(rng, dB.B * dB.H),
      cB: ref.randomArray(rng, dB.B * dB.H),
    };
    tr.setState({ h: s.hA, c: s.cA }, { h: s.hB, c: s.cB }, dA.B);
    const metrics = await tr.step(window);
    await tr.synchronize();

    // By hand: A's window, its messages, B's window on them.
    const B = window.batch;
    const xs = [0, 1, 2, 3].map((t) => ref.oneHot(window.inputs.slice(t * B, (t + 1) * B), dA.I));
    const labels = [0, 1, 2, 3].map((t) => {
      const l = window.targets.slice(t * B, (t + 1) * B);
      return l.some((v) => v !== -1) ? l : undefined;
    });
    const slowLabels = [0, 1].map((j) => window.slowTargets.slice(j * B, (j + 1) * B));
    const fastRun = (q: LSTMParams) => lstmWindow(q, dA, { xs, labels, h0: s.hA, c0: s.cA });
    const messagesOf = (r: { hs: Float64Array[] }) => ticks.map((t) => r.hs[t]);
    const slowRun = (q: LSTMParams, ms: ArrayLike<number>[]) => lstmWindow(q, dB, { xs: ms, labels: slowLabels, h0: s.hB, c0: s.cB });
    const fwd = fastRun(pA);
    const messages = messagesOf(fwd);
    const slowFwd = slowRun(pB, messages);
    expectClose('fast loss', [metrics.fastLoss], [fwd.loss], 1e-5, 1e-6);
    expectClose('slow loss', [metrics.slowLoss], [slowFwd.loss], 1e-5, 1e-6);
    // ∂L_B/∂m_j, the true gradient at each message, by finite differences.
    const delta = messages.map((m, j) =>
      ref.numericGrad(
        (v) =>
          slowRun(
            pB,
            messages.map((x, i) => (i === j ? v : x)),
          ).loss,
        m,
      ),
    );
    return { tr, pA, pB, M, mb, s, fwd, messages, slowFwd, delta, fastRun, slowRun, messagesOf };
  }

  /** One SGD step of `p` on the gradient of `objective`. */
  function sgd(p: LSTMParams, objective: (q: LSTMParams) => number): LSTMParams {
    const step = (name: keyof LSTMParams) => {
      const g = ref.numericGrad((v) => objective({ ...p, [name]: v }), p[name]);
      return ref.f64(p[name]).map((w, i) => w - lr * g[i]);
    };
    return { W: step('W'), b: step('b'), Wr: step('Wr'), br: step('br') };
  }

  async function expectParams(what: string, m: { core: Weighted; readout: Weighted }, want: LSTMParams) {
    const [core, readout] = [m.core, m.readout];
    expectClose(`${what}.W`, await core.weight!.value.readFloat32(), want.W, 1e-5, 1e-4);
    expectClose(`${what}.b`, await core.bias!.value.readFloat32(), want.b, 1e-5, 1e-4);
    expectClose(`${what}.Wr`, await readout.weight!.value.readFloat32(), want.Wr, 1e-5, 1e-4);
    expectClose(`${what}.br`, await readout.bias!.value.readFloat32(), want.br, 1e-5, 1e-4);
  }

  test("dni: ĝ_j = M(m_j)/B enters A's message steps; M regresses onto the true ∂L_B/∂m_j; B's update", async () => {
    const { tr, pA, pB, M, mb, fwd, messages, slowFwd, delta, fastRun, slowRun, messagesOf } = await setUp('dni');
    const B = 2,
      H = dA.H;
    const predict = (m: ArrayLike<number>, W: ArrayLike<number>, bias: ArrayLike<number>) =>
      ref.addBias(ref.gemm(false, true, { M: B, N: H, K: H }, 1, m, W, 0, null), bias, B, H);
    const gHat = messages.map((m) => predict(m, M, mb).map((v) => v / B));
    for (let j = 0; j < 2; j++) {
      expectClose(`ĝ_${j}`, await read(tr.lastWindow!.synthetic[j]), gHat[j], 1e-5, 1e-6);
      expectClose(`∂L_B/∂m_${j}`, await read(tr.lastWindow!.target[j]), delta[j], 2e-4, 1e-4);
      expect(ref.maxAbs(delta[j])).toBeGreaterThan(1e-3);
    }
    // A: one step on L_A + Σ_j ⟨ĝ_j, m_j⟩, ĝ held fixed (A does not wait for B's true gradient).
    const wantA = sgd(pA, (q) => {
      const r = fastRun(q);
      return r.loss + messagesOf(r).reduce((acc, m, j) => acc + ref.dot(gHat[j], m), 0);
    });
    await expectParams('A', tr.fast, wantA);
    // B: one step on its own loss, the messages as inputs.
    await expectParams(
      'B',
      tr.slow,
      sgd(pB, (q) => slowRun(q, messages).loss),
    );
    // M: per tick, from a fresh prediction with its current weights, one SGD step on mean((M(m_j) - B·δ_j)²).
    let W = ref.f64(M),
      bias = ref.f64(mb);
    for (let j = 0; j < 2; j++) {
      const P = predict(messages[j], W, bias);
      const dP = P.map((v, i) => (2 * (v - B * delta[j][i])) / (B * H));
      const gW = ref.gemm(true, false, { M: H, N: H, K: B }, 1, dP, messages[j], 0, null);
      const gb = ref.columnSums(dP, B, H);
      W = W.map((w, i) => w - lrSynth * gW[i]);
      bias = bias.map((w, i) => w - lrSynth * gb[i]);
    }
    const lin = (tr.synthesizer!.network as Sequential).layers[0] as Linear;
    expectClose('M.weight', await read(lin.weight!.value), W, 1e-5, 1e-5);
    expectClose('M.bias', await read(lin.bias!.value), bias, 1e-5, 1e-5);
    expect(ref.compare(W, M, 1e-6).worst).toBeGreaterThan(1e-4); // M did move
    // The carried states: A's and B's after the window.
    expectClose('A h_T', await read(tr.state!.fast.h), fwd.h, 1e-5, 1e-6);
    expectClose('B h_T', await read(tr.state!.slow.h), slowFwd.h, 1e-5, 1e-6);
    tr.dispose();
  });

  test('bptt: the update of the summed loss L_A + L_B, the gradient reaching A through the messages', async () => {
    const { tr, pA, pB, messages, delta, fastRun, slowRun, messagesOf } = await setUp('bptt');
    for (let j = 0; j < 2; j++) expectClose(`∂L_B/∂m_${j}`, await read(tr.lastWindow!.target[j]), delta[j], 2e-4, 1e-4);
    expect(tr.lastWindow!.synthetic).toEqual([]);
    // A: finite differences of the summed loss, B's part reached through the messages only.
    const summed = (q: LSTMParams) => {
      const r = fastRun(q);
      return r.loss + slowRun(pB, messagesOf(r)).loss;
    };
    const wantA = sgd(pA, summed);
    await expectParams('A', tr.fast, wantA);
    // B's part does move A: the update differs from A's loss alone.
    const alone = sgd(pA, (q) => fastRun(q).loss);
    expect(ref.compare(wantA.W, alone.W, 1e-6).worst).toBeGreaterThan(1e-3);
    await expectParams(
      'B',
      tr.slow,
      sgd(pB, (q) => slowRun(q, messages).loss),
    );
    tr.dispose();
  });

  test("none: A's update is that of its own loss; B gets the same update as under bptt", async () => {
    const { tr, pA, pB, messages, fastRun, slowRun } = await setUp('none');
    expect(tr.lastWindow!.target).toEqual([]);
    await expectParams(
      'A',
      tr.fast,
      sgd(pA, (q) => fastRun(q).loss),
    );
    await expectParams(
      'B',
      tr.slow,
      sgd(pB, (q) => slowRun(q, messages).loss),
    );
    tr.dispose();
  });
});

describe("'none' trains A as training A alone would", () => {
  test("A's weights after windows of Adam equal RecurrentTraining's (truncated BPTT of A alone), bit for bit", async () => {
    const weights = async (ps: Parameter[]) => Promise.all(ps.map((p) => p.value.readFloat32()));
    const run = async (kind: 'none' | 'bptt' | 'alone') => {
      const task = new MultiTimescaleCountTask({ batch: 4, period: 2, blocks: 2, seed: 8 });
      const model = new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 8 });
      const optimizer = () => new Adam({ lr: 0.01 });
      if (kind === 'alone') {
        const tr = new RecurrentTraining(model, { optimizer, seed: 4 });
        for (let i = 0; i < 5; i++) await tr.step(task.nextWindow(4));
        await tr.synchronize();
        const w = await weights(model.parameters());
        tr.dispose();
        return w;
      }
      const tr = new MultiTimescaleTraining(model, { method: kind, period: 2, slow: { hidden: 6, outputs: 5 }, optimizer, seed: 4 });
      for (let i = 0; i < 5; i++) await tr.step(task.nextWindow(4));
      await tr.synchronize();
      const w = await weights(model.parameters());
      tr.dispose();
      return w;
    };
    const alone = await run('alone');
    expect(await run('none')).toEqual(alone);
    const bptt = await run('bptt');
    expect(ref.compare(bptt[0], alone[0], 1e-6).worst).toBeGreaterThan(1e-4); // B's gradient would have changed it
  });
});

describe('the two-timescale count task', () => {
  test('targets: the parity of the last fastSpan bits each step, the count of the last period·blocks bits at each tick', () => {
    const task = new MultiTimescaleCountTask({ batch: 3, period: 3, blocks: 2, fastSpan: 3, seed: 5 });
    expect(task.slowSymbols).toBe(7);
    const bits: number[][] = [[], [], []];
    for (let w = 0; w < 4; w++) {
      const win = task.nextWindow(6);
      expect(win.period).toBe(3);
      expect(win.slowTargets.length).toBe(2 * 3);
      for (let t = 0; t < 6; t++)
        for (let b = 0; b < 3; b++) {
          const x = win.inputs[t * 3 + b];
          expect(x === 0 || x === 1).toBe(true);
          bits[b].push(x);
          const n = bits[b].length;
          const last = (m: number) => bits[b].slice(n - m).reduce((a, v) => a + v, 0);
          expect(win.targets[t * 3 + b]).toBe(n >= 3 ? last(3) % 2 : -1);
          if ((t + 1) % 3 === 0) expect(win.slowTargets[((t + 1) / 3 - 1) * 3 + b]).toBe(n >= 6 ? last(6) : -1);
        }
    }
    // Both classes of the slow target's range are used, and the stream is not constant.
    const all = bits.flat();
    expect(all.filter((v) => v === 1).length).toBeGreaterThan(20);
    expect(all.filter((v) => v === 0).length).toBeGreaterThan(20);
  });

  test('the same seed gives the same stream; a restored state continues it exactly', () => {
    const a = new MultiTimescaleCountTask({ batch: 2, seed: 1 });
    const b = new MultiTimescaleCountTask({ batch: 2, seed: 1 });
    a.nextWindow(8);
    const saved = JSON.parse(JSON.stringify(a.state())) as unknown;
    const next = a.nextWindow(8);
    expect(b.nextWindow(8)).toEqual(new MultiTimescaleCountTask({ batch: 2, seed: 1 }).nextWindow(8));
    const c = new MultiTimescaleCountTask({ batch: 2, seed: 99 });
    c.restore(saved);
    expect(c.nextWindow(8)).toEqual(next);
    expect(new MultiTimescaleCountTask({ batch: 2, seed: 2 }).nextWindow(8).inputs).not.toEqual(
      new MultiTimescaleCountTask({ batch: 2, seed: 1 }).nextWindow(8).inputs,
    );
  });

  test('bad options and window lengths are errors naming them', () => {
    expect(errorOf(() => new MultiTimescaleCountTask({ batch: 0 })).message).toMatch(/'batch' must be a positive integer, got 0/);
    expect(errorOf(() => new MultiTimescaleCountTask({ batch: 2, period: 1.5 })).message).toMatch(/'period' must be a positive integer/);
    expect(errorOf(() => new MultiTimescaleCountTask({ batch: 2, blocs: 2 } as never)).message).toMatch(/did you mean 'blocks'/);
    expect(errorOf(() => new MultiTimescaleCountTask({ batch: 2, period: 4 }).nextWindow(6)).message).toMatch(
      /'steps' \(6\) must be a multiple of the period 4/,
    );
    expect(errorOf(() => new MultiTimescaleCountTask({ batch: 2 }).restore({ position: 1 })).message).toMatch(/not a state of this task/);
  });
});

describe('learning', () => {
  test("B's gradient into A matters: bptt and dni leave B far below none on the held-out stream", async () => {
    const evaluate = async (method: MultiTimescaleMethod) => {
      const task = new MultiTimescaleCountTask({ batch: 16, period: 4, blocks: 2, seed: 0 });
      const model = new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 16 });
      const tr = new MultiTimescaleTraining(model, {
        method,
        period: 4,
        slow: { hidden: 16, outputs: task.slowSymbols },
        optimizer: () => new Adam({ lr: 0.01 }),
        seed: 0,
      });
      for (let i = 0; i < WINDOWS; i++) await tr.step(task.nextWindow(8));
      const held = new MultiTimescaleCountTask({ batch: 16, period: 4, blocks: 2, seed: 1 });
      let n = 0;
      const e = await tr.evaluate(() => (n++ < 10 ? held.nextWindow(8) : undefined));
      tr.dispose();
      return e;
    };
    const none = await evaluate('none');
    const bptt = await evaluate('bptt');
    const dni = await evaluate('dni');
    expect(none.fastAccuracy).toBeGreaterThan(0.95); // A's own task is learned either way
    expect(bptt.slowBits).toBeLessThan(0.5 * none.slowBits);
    expect(bptt.slowAccuracy).toBeGreaterThan(none.slowAccuracy + 0.2);
    expect(dni.slowBits).toBeLessThan(0.85 * none.slowBits);
  });
});

describe('checkpoints', () => {
  async function weightsOf(tr: MultiTimescaleTraining): Promise<Float32Array[]> {
    await tr.synchronize();
    const tensors = [
      ...tr.fast.parameters().map((p) => p.value),
      ...tr.slow.parameters().map((p) => p.value),
      ...(tr.synthesizer?.network.stateTensors() ?? []),
      tr.state!.fast.h,
      tr.state!.fast.c,
      tr.state!.slow.h,
      tr.state!.slow.c,
    ];
    return Promise.all(tensors.map((t) => t.readFloat32()));
  }

  test.each(['bptt', 'dni', 'none'] as const)('%s: a run resumed from a checkpoint continues bit for bit', async (method) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-multiscale-'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const task = () => new MultiTimescaleCountTask({ batch: 3, period: 2, blocks: 2, seed: 12 });
      const straight = trainer(method);
      const source = task();
      for (let i = 0; i < 6; i++) await straight.step(source.nextWindow(4));
      const want = await weightsOf(straight);

      const first = trainer(method);
      const source1 = task();
      for (let i = 0; i < 3; i++) await first.step(source1.nextWindow(4));
      await first.save(file, { source: source1.state() });
      first.dispose();

      const resumed = trainer(method, { seed: 77 }); // other initial weights: all of them come from the file
      const host = (await resumed.load(file)) as { source: unknown };
      const source2 = new MultiTimescaleCountTask({ batch: 3, period: 2, blocks: 2, seed: 1 });
      source2.restore(host.source);
      expect(resumed.windows).toBe(3);
      for (let i = 0; i < 3; i++) await resumed.step(source2.nextWindow(4));
      expect(await weightsOf(resumed)).toEqual(want);
      straight.dispose();
      resumed.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a checkpoint of another method, period or kind is refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-multiscale-'));
    try {
      const file = path.join(dir, 'run.ckpt');
      const tr = trainer('bptt');
      await tr.step(new MultiTimescaleCountTask({ batch: 2, period: 2 }).nextWindow(4));
      await tr.save(file);
      const other = trainer('dni');
      await expect(other.load(file)).rejects.toThrow(/method 'bptt', this trainer uses 'dni'/);
      const slower = trainer('bptt', { period: 4 });
      await expect(slower.load(file)).rejects.toThrow(/period 2, this trainer has 4/);
      const recurrent = new RecurrentTraining(new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 8 }), {
        optimizer: () => new SGD({ lr: 0.1 }),
      });
      await recurrent.save(path.join(dir, 'recurrent.ckpt'));
      await expect(tr.load(path.join(dir, 'recurrent.ckpt'))).rejects.toThrow(/not a multi-timescale training checkpoint/);
      for (const t of [tr, other, slower, recurrent]) t.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('errors before training', () => {
  test('options', () => {
    expect(errorOf(() => trainer('bptt', { period: 0 })).message).toMatch(/'period' must be a positive integer, got 0/);
    expect(errorOf(() => trainer('rtrl' as never)).message).toMatch(/'method' must be 'bptt', 'dni' or 'none'/);
    expect(errorOf(() => trainer('bptt', { synthesizer: {} })).message).toMatch(/'synthesizer' is given but method 'bptt'/);
    expect(errorOf(() => trainer('none', { synthesizer: {} })).message).toMatch(/'synthesizer' is given but method 'none'/);
    expect(errorOf(() => trainer('dni', { synthesizer: { hiden: [] } as never })).message).toMatch(/did you mean 'synthesizer.hidden'/);
    expect(errorOf(() => trainer('bptt', { slow: undefined as never })).message).toMatch(/'slow' must be \{ hidden, outputs \}/);
    expect(errorOf(() => trainer('bptt', { slow: { hidden: 4, outputs: 0 } })).message).toMatch(
      /'slow.outputs' must be a positive integer/,
    );
    expect(errorOf(() => trainer('bptt', { perod: 2 } as never)).message).toMatch(/did you mean 'period'/);
    const sigmoid = new LSTMSequenceModel({ inputSymbols: 2, outputs: 2, hidden: 4, loss: 'sigmoid-cross-entropy' });
    expect(
      errorOf(
        () => new MultiTimescaleTraining(sigmoid, { period: 2, slow: { hidden: 4, outputs: 3 }, optimizer: () => new SGD({ lr: 0.1 }) }),
      ).message,
    ).toMatch(/must use 'softmax-cross-entropy'/);
  });

  test('windows that do not fit the period, the slow read-out or the carried batch', async () => {
    const tr = trainer('dni');
    const w = new MultiTimescaleCountTask({ batch: 2, period: 2, blocks: 2, seed: 1 }).nextWindow(4);
    expect(errorOf(() => tr.step({ ...w, period: 4 })).message).toMatch(/'window.period' is 4, but the trainer's 'period' is 2/);
    expect(
      errorOf(() =>
        tr.step({ ...w, steps: 3, inputs: w.inputs.slice(0, 6), targets: w.targets.slice(0, 6), resets: [false, false, false] }),
      ).message,
    ).toMatch(/'window.steps' \(3\) must be a multiple of 'period' \(2\)/);
    expect(errorOf(() => tr.step({ ...w, slowTargets: new Int32Array(3) })).message).toMatch(
      /'window.slowTargets' must have \(steps \/ period\) \* batch = 4 values, got 3/,
    );
    expect(errorOf(() => tr.step({ ...w, slowTargets: Int32Array.from([0, 1, 5, -1]) })).message).toMatch(
      /'window.slowTargets\[2\]' \(tick 1, row 0\) is 5, outside B's outputs \[0, 5\)/,
    );
    expect(errorOf(() => tr.step({ ...w, resets: [false, true, false, false] })).message).toMatch(
      /'window.resets\[1\]' is true; resets are not supported/,
    );
    expect(errorOf(() => tr.step({ ...w, inputs: Int32Array.from([0, 1, 2, 0, 0, 0, 0, 0]) })).message).toMatch(
      /'window.inputs\[2\]' \(step 1, row 0\) is 2, outside the input symbols/,
    );
    await tr.step(w);
    const w3 = new MultiTimescaleCountTask({ batch: 3, period: 2, seed: 1 }).nextWindow(4);
    expect(errorOf(() => tr.step(w3)).message).toMatch(/'window.batch' is 3, but the carried state has 2 rows/);
    tr.resetState();
    await tr.step(w3);
    expect(tr.windows).toBe(2);
    tr.dispose();
  });
});
