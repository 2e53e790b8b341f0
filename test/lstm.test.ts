// The LSTM layer and the sequence model: forward values and the gradients of a whole window
// (with a state carried in, a reset inside, unscored steps and a gradient arriving at the final
// state) against float64 finite differences of the loss written out in
// helpers/lstm-reference.ts; the initialisation; argument errors.
import { Arena, Device, Random, Stream, Tensor } from '../ts';
import { LSTM } from '../ts/nn/lstm';
import { StepContext } from '../ts/nn/module';
import { LSTMSequenceModel, WindowTensors } from '../ts/recurrent/model';
import * as ref from './helpers/reference';
import { expectClose } from './helpers/reference';
import { Dims, lstmWindow, LSTMParams, WindowSpec } from './helpers/lstm-reference';
import { errorOf } from './helpers/errors';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

async function read(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

/** A model with random (non-zero) weights written into it, and those weights. */
async function randomModel(d: Dims, rng: Random, loss: 'softmax-cross-entropy' | 'sigmoid-cross-entropy' = 'softmax-cross-entropy') {
  const model = new LSTMSequenceModel({ inputSymbols: d.I, outputs: d.O, hidden: d.H, loss });
  model.initialize(cpu, rng);
  const p: LSTMParams = {
    W: ref.randomArray(rng, 4 * d.H * (d.I + d.H), 0.1, 0.8),
    b: ref.randomArray(rng, 4 * d.H, 0.1, 0.5),
    Wr: ref.randomArray(rng, d.O * d.H, 0.1, 1),
    br: ref.randomArray(rng, d.O, 0.1, 0.5),
  };
  await model.core.weight!.assign(Float32Array.from(p.W));
  await model.core.bias!.assign(Float32Array.from(p.b));
  await model.readout.weight!.assign(Float32Array.from(p.Wr));
  await model.readout.bias!.assign(Float32Array.from(p.br));
  return { model, p };
}

function oneHotRows(labels: ArrayLike<number>, classes: number): Float64Array {
  return ref.oneHot(labels, classes);
}

describe('LSTM window gradients against float64 finite differences', () => {
  const d: Dims = { B: 3, I: 4, H: 3, O: 4 };
  const T = 5;

  async function check(resets: boolean[], loss: 'softmax-cross-entropy' | 'sigmoid-cross-entropy') {
    const rng = new Random(loss === 'softmax-cross-entropy' ? 31 : 32);
    const { model, p } = await randomModel(d, rng, loss);
    const symbols = Array.from({ length: T }, () => Int32Array.from(ref.randomLabels(rng, d.B, d.I)));
    // Step 1 scores nothing; step 2 scores some rows (-1 elsewhere); the others score every row.
    const labels: (Int32Array | undefined)[] = symbols.map((s) => Int32Array.from(s, (v) => (v + 1) % d.O));
    labels[1] = undefined;
    labels[2]![0] = -1;
    const bits: (Float32Array | undefined)[] = labels.map((l) =>
      l ? Float32Array.from({ length: d.B * d.O }, () => (rng.next() < 0.5 ? 1 : 0)) : undefined,
    );
    const h0 = ref.randomArray(rng, d.B * d.H),
      c0 = ref.randomArray(rng, d.B * d.H, 0.5, 2);
    const gh = ref.randomArray(rng, d.B * d.H),
      gc = ref.randomArray(rng, d.B * d.H);

    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const opts = { device: cpu, arena };
    const window: WindowTensors = {
      inputs: symbols.map((s) => Tensor.fromArray(s, [d.B], opts)),
      targets:
        loss === 'softmax-cross-entropy'
          ? labels.map((l) => (l ? Tensor.fromArray(l, [d.B], opts) : undefined))
          : bits.map((b) => (b ? Tensor.fromArray(b, [d.B, d.O], opts) : undefined)),
      resets,
    };
    const state = { h: Tensor.fromArray(h0, [d.B, d.H], opts), c: Tensor.fromArray(c0, [d.B, d.H], opts) };
    const f = model.forward(window, state, ctx);
    const dState = f.backward({ h: Tensor.fromArray(gh, [d.B, d.H], opts), c: Tensor.fromArray(gc, [d.B, d.H], opts) }, ctx);

    const spec = (over: Partial<WindowSpec> = {}): WindowSpec => ({
      xs: symbols.map((s) => oneHotRows(s, d.I)),
      resets,
      h0,
      c0,
      ...(loss === 'softmax-cross-entropy' ? { labels } : { bits }),
      ...over,
    });
    // The objective: the window's loss plus the final state's gradient ⟨g, s_T⟩.
    const objective = (q: LSTMParams, s: WindowSpec) => {
      const r = lstmWindow(q, d, s);
      return r.loss + ref.dot(gh, r.h) + ref.dot(gc, r.c);
    };
    const want = lstmWindow(p, d, spec());
    expectClose('loss', await read(f.loss, stream), [want.loss], 1e-5, 1e-6);
    expectClose('h_T', await read(f.state.h, stream), want.h, 1e-5, 1e-6);
    expectClose('c_T', await read(f.state.c, stream), want.c, 1e-5, 1e-6);

    const grads = {
      W: ref.numericGrad((v) => objective({ ...p, W: v }, spec()), p.W),
      b: ref.numericGrad((v) => objective({ ...p, b: v }, spec()), p.b),
      Wr: ref.numericGrad((v) => objective({ ...p, Wr: v }, spec()), p.Wr),
      br: ref.numericGrad((v) => objective({ ...p, br: v }, spec()), p.br),
      h0: ref.numericGrad((v) => objective(p, spec({ h0: v })), h0),
      c0: ref.numericGrad((v) => objective(p, spec({ c0: v })), c0),
    };
    expectClose('dW', await read(model.core.weight!.grad, stream), grads.W, 2e-4, 1e-3);
    expectClose('db', await read(model.core.bias!.grad, stream), grads.b, 2e-4, 1e-3);
    expectClose('dWr', await read(model.readout.weight!.grad, stream), grads.Wr, 2e-4, 1e-3);
    expectClose('dbr', await read(model.readout.bias!.grad, stream), grads.br, 2e-4, 1e-3);
    expectClose('dh0', await read(dState.h, stream), grads.h0, 2e-4, 1e-3);
    expectClose('dc0', await read(dState.c, stream), grads.c0, 2e-4, 1e-3);
    arena.dispose();
    model.dispose();
    return grads;
  }

  test('softmax read-out, state carried in, no reset', async () => {
    const g = await check([false, false, false, false, false], 'softmax-cross-entropy');
    expect(ref.maxAbs(g.h0)).toBeGreaterThan(1e-3); // the carried state matters to the loss
  });

  test('a reset inside the window cuts the gradient to the state carried in', async () => {
    const g = await check([false, false, true, false, false], 'softmax-cross-entropy');
    expect(ref.maxAbs(g.h0)).toBeGreaterThan(1e-4); // step 0's read-out, before the reset, still depends on it
    expect(ref.maxAbs(g.W)).toBeGreaterThan(1e-3);
  });

  test('a reset at the first step: the state carried in gets no gradient', async () => {
    const g = await check([true, false, false, false, false], 'softmax-cross-entropy');
    expect(ref.maxAbs(g.h0)).toBe(0);
    expect(ref.maxAbs(g.c0)).toBe(0);
  });

  test('sigmoid cross-entropy read-out', async () => {
    await check([false, false, false, true, false], 'sigmoid-cross-entropy');
  });
});

describe('LSTM layer input gradients (no embedding: float inputs)', () => {
  test('dx_t and the initial state against finite differences of ⟨w_t, h_t⟩ summed', async () => {
    const d: Dims = { B: 2, I: 3, H: 4, O: 1 };
    const T = 4;
    const rng = new Random(41);
    const lstm = new LSTM(d.I, d.H);
    lstm.initialize(cpu, rng);
    const p: LSTMParams = {
      W: ref.randomArray(rng, 4 * d.H * (d.I + d.H), 0.1, 0.8),
      b: ref.randomArray(rng, 4 * d.H, 0.1, 0.5),
      Wr: [0],
      br: [0],
    };
    await lstm.weight!.assign(Float32Array.from(p.W));
    await lstm.bias!.assign(Float32Array.from(p.b));
    const xs = Array.from({ length: T }, () => ref.randomArray(rng, d.B * d.I));
    const ws = Array.from({ length: T }, () => ref.randomArray(rng, d.B * d.H));
    const h0 = ref.randomArray(rng, d.B * d.H),
      c0 = ref.randomArray(rng, d.B * d.H);
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const opts = { device: cpu, arena };
    const f = lstm.forward(
      xs.map((x) => Tensor.fromArray(x, [d.B, d.I], opts)),
      { h: Tensor.fromArray(h0, [d.B, d.H], opts), c: Tensor.fromArray(c0, [d.B, d.H], opts) },
      ctx,
    );
    const { dState, dInputs } = f.backward(
      ws.map((w) => Tensor.fromArray(w, [d.B, d.H], opts)),
      undefined,
      ctx,
      true,
    );
    const objective = (s: WindowSpec, q: LSTMParams = p) => lstmWindow(q, d, s).hs.reduce((a, h, t) => a + ref.dot(ws[t], h), 0);
    const spec = (over: Partial<WindowSpec> = {}): WindowSpec => ({ xs, h0, c0, ...over });
    for (let t = 0; t < T; t++) {
      const want = ref.numericGrad((v) => objective(spec({ xs: xs.map((x, k) => (k === t ? v : x)) })), xs[t]);
      expectClose(`dx_${t}`, await read(dInputs![t], stream), want, 2e-4, 1e-3);
    }
    expectClose(
      'dh0',
      await read(dState.h, stream),
      ref.numericGrad((v) => objective(spec({ h0: v })), h0),
      2e-4,
      1e-3,
    );
    expectClose(
      'dc0',
      await read(dState.c, stream),
      ref.numericGrad((v) => objective(spec({ c0: v })), c0),
      2e-4,
      1e-3,
    );
    expectClose(
      'dW',
      await read(lstm.weight!.grad, stream),
      ref.numericGrad((v) => objective(spec(), { ...p, W: v }), p.W),
      2e-4,
      1e-3,
    );
    arena.dispose();
    lstm.dispose();
  });
});

describe('LSTM initialisation and errors', () => {
  test('W ~ U(-1/√H, 1/√H); b is 0 except the forget block, which holds forgetBias', async () => {
    const H = 16;
    for (const forgetBias of [1, 0.5]) {
      const lstm = new LSTM(5, H, forgetBias === 1 ? {} : { forgetBias });
      lstm.initialize(cpu, new Random(1));
      const W = await lstm.weight!.value.readFloat32();
      const b = await lstm.bias!.value.readFloat32();
      expect(lstm.weight!.value.shape).toEqual([4 * H, 5 + H]);
      const bound = 1 / Math.sqrt(H);
      expect(Math.max(...W.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...W.map(Math.abs))).toBeGreaterThan(0.9 * bound); // spread over the whole range
      expect(Array.from(b)).toEqual(Array.from({ length: 4 * H }, (_, j) => (j >= H && j < 2 * H ? forgetBias : 0)));
      lstm.dispose();
    }
  });

  test('bad arguments name themselves', async () => {
    expect(errorOf(() => new LSTM(0, 3)).message).toMatch(/'inputSize' must be a positive integer/);
    expect(errorOf(() => new LSTM(3, 2.5)).message).toMatch(/'hiddenSize'/);
    expect(errorOf(() => new LSTM(3, 2, { forgetBias: '1' as unknown as number })).message).toMatch(/'forgetBias' must be a number/);
    expect(errorOf(() => new LSTM(3, 2, { forgetbias: 1 } as never)).message).toMatch(/did you mean 'forgetBias'/);
    const lstm = new LSTM(3, 2);
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const x = Tensor.zeros([4, 3], { device: cpu, arena });
    expect(errorOf(() => lstm.forward([x], lstm.zeroState(4, ctx), ctx)).message).toMatch(/before initialize/);
    lstm.initialize(cpu, new Random(2));
    expect(errorOf(() => lstm.forward([x], lstm.zeroState(5, ctx), ctx)).message).toMatch(/'state.h' must be float32 \[4, 2\]/);
    expect(errorOf(() => lstm.forward([Tensor.zeros([4, 2], { device: cpu, arena })], lstm.zeroState(4, ctx), ctx)).message).toMatch(
      /'inputs\[0\]' must be float32 \[4, 3\]/,
    );
    expect(errorOf(() => lstm.forward([x], lstm.zeroState(4, ctx), ctx, [false, true])).message).toMatch(
      /'resets' must have one flag per step \(1\)/,
    );
    expect(errorOf(() => new LSTMSequenceModel({ inputSymbols: 3, outputs: 2, hidden: 4, loss: 'mse' as never })).message).toMatch(
      /'loss' must be/,
    );
    arena.dispose();
    lstm.dispose();
  });
});
