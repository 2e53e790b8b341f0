// The synthesizer's target scale (targetScale, docs/synthesizer-scale.md): one decoupled step's
// ĝ (what module 1 backpropagates) and the synthesizer's regression target, for each scale
// and batch sizes 2 and 5, against a float64 hand computation; the two scales' equivalence on
// Adam up to the learning rate; the same in the recurrent trainer; bad values named where they are given (Synthesizer, decouple, RecurrentTraining, CLI).
import {
  Adam,
  Arena,
  DecoupledTraining,
  Device,
  Linear,
  LSTMSequenceModel,
  RecurrentTraining,
  Random,
  SGD,
  Sequential,
  SoftmaxCrossEntropy,
  Stream,
  Synthesizer,
  Tensor,
  decouple,
} from '../ts';
import type { TargetScale } from '../ts';
import { parseArgs } from '../ts/cli/options';
import { configure } from '../ts/cli/configure';
import { DecoupledNetwork } from '../ts/dni/network';
import { StepContext } from '../ts/nn/module';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

async function values(t: Tensor, stream: Stream): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(stream));
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 1e-5, floor = 1e-7): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

const scales: TargetScale[] = ['per-example', 'batch-mean'];
const cases = scales.flatMap((scale) => [2, 5].map((B) => [scale, B] as const));

describe('one DNI step against a float64 hand computation', () => {
  // f1 = Linear(3→4), f2 = Linear(4→3), softmax cross-entropy (mean over the batch); the
  // synthesizer M(h1) = h1 Aᵀ + c. Both on SGD, so every update is linear in its gradient.
  test.each(cases)('%s, batch %i', async (scale, B) => {
    const lr = 0.1,
      lrSynth = 0.05;
    const model = new Sequential([new Linear(3, 4), new Linear(4, 3)]);
    const net = decouple(model, {
      at: [0],
      synthesizer: { hidden: [], optimizer: () => new SGD({ lr: lrSynth }), targetScale: scale },
    });
    const rng = new Random(21 + B);
    net.initialize(cpu, rng.fork());
    const strategy = net.trainingStrategy({ loss: new SoftmaxCrossEntropy(), optimizer: () => new SGD({ lr }) }) as DecoupledTraining;
    strategy.record = true;
    const [l1, l2] = [model.layers[0] as Linear, model.layers[1] as Linear];
    const synthLinear = (net.synthesizers[0].network as Sequential).layers[0] as Linear;
    const init = {
      W1: ref.uniformArray(rng, 12, -1, 1),
      b1: ref.uniformArray(rng, 4, -0.5, 0.5),
      W2: ref.uniformArray(rng, 12, -1, 1),
      b2: ref.uniformArray(rng, 3, -0.5, 0.5),
      A: ref.uniformArray(rng, 16, -0.3, 0.3),
      c: ref.uniformArray(rng, 4, -0.3, 0.3),
    };
    await l1.weight!.assign(init.W1);
    await l1.bias!.assign(init.b1);
    await l2.weight!.assign(init.W2);
    await l2.bias!.assign(init.b2);
    await synthLinear.weight!.assign(init.A);
    await synthLinear.bias!.assign(init.c);
    const xs = ref.uniformArray(rng, B * 3, -1, 1);
    const labels = ref.randomLabels(rng, B, 3);
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const x = Tensor.fromArray(xs, [B, 3], { device: cpu, arena });
    const y = Tensor.fromArray(labels, [B], { device: cpu, dtype: 'int32', arena });
    await strategy.step(x, y, ctx).read(stream);

    // The hand computation: δ1 = ∂L/∂h1 of the batch-mean loss L = (1/B) Σ_n ℓ_n.
    const h1 = ref.addBias(ref.gemm(false, true, { M: B, N: 4, K: 3 }, 1, xs, init.W1, 0, null), init.b1, B, 4);
    const logits = ref.addBias(ref.gemm(false, true, { M: B, N: 3, K: 4 }, 1, h1, init.W2, 0, null), init.b2, B, 3);
    const p = ref.softmax(logits, B, 3);
    const onehot = ref.oneHot(labels, 3);
    const dLogits = p.map((v, k) => (v - onehot[k]) / B);
    const delta1 = ref.gemm(false, false, { M: B, N: 4, K: 3 }, 1, dLogits, init.W2, 0, null);
    const raw = ref.addBias(ref.gemm(false, true, { M: B, N: 4, K: 4 }, 1, h1, init.A, 0, null), init.c, B, 4);
    // The convention under test: per-example, M regresses B·δ1 and ĝ = M/B; batch-mean, δ1 and M.
    const factor = scale === 'per-example' ? B : 1;
    const synthetic = raw.map((v) => v / factor);
    const target = delta1.map((v) => v * factor);
    const W1 = ref.f64(init.W1).map((w, k) => w - lr * ref.gemm(true, false, { M: 4, N: 3, K: B }, 1, synthetic, xs, 0, null)[k]);
    const dRaw = raw.map((v, k) => (2 * (v - target[k])) / (B * 4)); // the mean squared error's gradient
    const A = ref.f64(init.A).map((a, k) => a - lrSynth * ref.gemm(true, false, { M: 4, N: 4, K: B }, 1, dRaw, h1, 0, null)[k]);
    const c = ref.f64(init.c).map((v, k) => v - lrSynth * ref.columnSums(dRaw, B, 4)[k]);

    const step = strategy.lastStep!;
    expectClose(await values(step.synthetic[0], stream), synthetic, 'ĝ');
    expectClose(await values(step.targets[0]!, stream), delta1, 'δ1');
    expectClose(await values(l1.weight!.value, stream), W1, 'module 1 updated with ĝ');
    expectClose(await values(synthLinear.weight!.value, stream), A, "M's weights after regressing onto its target");
    expectClose(await values(synthLinear.bias!.value, stream), c, "M's bias after regressing onto its target");
    // The other scale's ĝ differs by B (≠ 1 here): the comparison above tells them apart.
    expect(
      ref.compare(
        synthetic,
        raw.map((v) => v / (B + 1 - factor)),
      ).worst,
    ).toBeGreaterThan(0.1);
    arena.dispose();
    strategy.dispose();
    net.dispose();
  });
});

describe('on Adam, batch-mean at lr η is per-example at lr B·η (a linear synthesizer)', () => {
  // Adam's step does not depend on the gradient's scale (up to ε), and per-example targets are
  // B times batch-mean ones: from M = 0, the per-example weights stay B times the batch-mean
  // ones when their learning rate is B times larger, so ĝ = M/B and ĝ = M agree step by step.
  test.each([2, 5])('batch %i, four steps', async (B) => {
    const width = 4,
      lr = 0.01,
      rng = new Random(50 + B);
    const stream = new Stream(cpu);
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream, training: true, arena };
    const labels = Tensor.zeros([B], { device: cpu, dtype: 'int32', arena });
    const make = (scale: TargetScale, rate: number) => {
      const s = new Synthesizer('s', width, 1, { hidden: [], targetScale: scale });
      s.initialize(cpu, new Random(1), new Adam({ lr: rate }));
      return s;
    };
    const perExample = make('per-example', B * lr),
      batchMean = make('batch-mean', lr);
    let last: Float64Array[] = [];
    for (let step = 0; step < 4; step++) {
      const h = Tensor.fromArray(ref.uniformArray(rng, B * width, -1, 1), [B, width], { device: cpu, arena });
      const delta = Tensor.fromArray(ref.uniformArray(rng, B * width, -0.5, 0.5), [B, width], { device: cpu, arena });
      const predictions = [perExample, batchMean].map((s) => s.predict(h, labels, ctx));
      last = await Promise.all(predictions.map((q) => values(q.gradient, stream)));
      predictions.forEach((q) => q.learn(delta, ctx));
    }
    expect(ref.maxAbs(last[1])).toBeGreaterThan(1e-3); // M has moved from 0
    expectClose(last[0], last[1], 'ĝ after three steps', 1e-4);
    arena.dispose();
    perExample.dispose();
    batchMean.dispose();
  });
});

describe('the recurrent trainer', () => {
  // The first window starts from s_0 = 0, so M(s_0) = c and only M's bias learns: c' = c -
  // lr · colsum(2 (c - factor·δ_0) / (B·2H)). ĝ at the window's end is M(s_T)/factor.
  test.each(cases)('%s, batch %i', async (scale, B) => {
    const lr = 0.05,
      H = 3,
      T = 2;
    const model = new LSTMSequenceModel({ inputSymbols: 4, hidden: H, outputs: 4 });
    const trainer = new RecurrentTraining(model, {
      method: 'dni',
      optimizer: () => new SGD({ lr }),
      seed: 3,
      synthesizer: { targetScale: scale, discount: 1 },
    });
    trainer.record = true;
    const synthLinear = (trainer.synthesizer!.network as Sequential).layers[0] as Linear;
    const rng = new Random(40 + B);
    const A = ref.uniformArray(rng, 4 * H * H, -0.3, 0.3),
      c = ref.uniformArray(rng, 2 * H, -0.3, 0.3);
    await synthLinear.weight!.assign(A);
    await synthLinear.bias!.assign(c);
    const inputs = Int32Array.from({ length: T * B }, (_, k) => k % 4);
    await trainer.step({ inputs, targets: inputs, batch: B, steps: T, resets: [false, false] });
    const stream = trainer.stream;
    const factor = scale === 'per-example' ? B : 1;
    const state = trainer.state!;
    const sT = ref.concatColumns(await values(state.h, stream), await values(state.c, stream), B, H, H);
    const raw = ref.addBias(ref.gemm(false, true, { M: B, N: 2 * H, K: 2 * H }, 1, sT, A, 0, null), c, B, 2 * H);
    expectClose(
      await values(trainer.lastWindow!.synthetic, stream),
      raw.map((v) => v / factor),
      'ĝ at the window end',
    );
    const delta0 = await values(trainer.lastWindow!.target, stream);
    const dBias = ref.columnSums(
      Float64Array.from(delta0, (d, k) => (2 * (c[k % (2 * H)] - factor * d)) / (B * 2 * H)),
      B,
      2 * H,
    );
    expectClose(
      await values(synthLinear.bias!.value, stream),
      ref.f64(c).map((v, k) => v - lr * dBias[k]),
      "M's bias",
    );
    expect(ref.maxAbs(delta0)).toBeGreaterThan(1e-4); // a target that tells the two scales apart
    trainer.dispose();
  });
});

describe('bad values are named where they are given', () => {
  const message = /'targetScale' must be 'per-example' or 'batch-mean', got "mean"/;
  test('Synthesizer', () => {
    expect(() => new Synthesizer('synthesizer 1', 4, 3, { targetScale: 'mean' as never })).toThrow(TypeError);
    expect(() => new Synthesizer('synthesizer 1', 4, 3, { targetScale: 'mean' as never })).toThrow(
      /^synthesizer 1: 'targetScale' must be 'per-example' or 'batch-mean', got "mean"$/,
    );
  });

  test('decouple names the synthesizer; a misspelt key is an unknown option', () => {
    const model = () => new Sequential([new Linear(3, 4), new Linear(4, 2)]);
    expect(() => decouple(model(), { at: [0], synthesizer: { targetScale: 'mean' as never } })).toThrow(
      /^synthesizer 1 \(after layer 0\): 'targetScale' must be/,
    );
    expect(() => decouple(model(), { at: [0], synthesizer: { targetscale: 'batch-mean' } as never })).toThrow(
      /unknown option 'synthesizer.targetscale'/,
    );
  });

  test('RecurrentTraining', () => {
    const model = new LSTMSequenceModel({ inputSymbols: 4, hidden: 3, outputs: 4 });
    expect(
      () =>
        new RecurrentTraining(model, {
          method: 'dni',
          optimizer: () => new SGD({ lr: 0.1 }),
          synthesizer: { targetScale: 'mean' as never },
        }),
    ).toThrow(message);
  });

  test('--synth-scale: its values, refused for a method without synthesizers, and passed to every synthesizer', () => {
    expect(() => parseArgs(['--method', 'dni', '--synth-scale', 'mean'])).toThrow(
      /^--synth-scale must be per-example or batch-mean, got 'mean'$/,
    );
    expect(() => parseArgs(['--synth-scale', 'batch-mean'])).toThrow(/--synth-scale applies to dni and cdni only/);
    expect(parseArgs(['--method', 'dni']).synthScale).toBeUndefined();
    const scalesOf = (argv: string[]) =>
      (configure(parseArgs(argv), 1000).model as DecoupledNetwork).synthesizers.map((s) => s.targetScale);
    expect(scalesOf(['--method', 'cdni', '--synth-scale', 'batch-mean'])).toEqual(['batch-mean', 'batch-mean', 'batch-mean']);
    expect(scalesOf(['--method', 'dni', '--synth-scale', 'per-example'])).toEqual(['per-example', 'per-example', 'per-example']);
  });
});

test('the default is per-example', () => {
  expect(new Synthesizer('s', 4, 3).targetScale).toBe('per-example');
  expect(new Synthesizer('s', 4, 3).targetFactor(7)).toBe(7);
  expect(new Synthesizer('s', 4, 3, { targetScale: 'batch-mean' }).targetFactor(7)).toBe(1);
});
