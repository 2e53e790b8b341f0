// SGD and Adam over several steps against float64 implementations written out here (PyTorch
// semantics): momentum, weight decay, Adam's bias corrections at each step, the step count and
// a step-decay learning-rate schedule; each step applies the gradients and zeroes them.
import { Adam, Device, native, Optimizer, Parameter, Random, SGD, Stream, Tensor, learningRateSchedules, schedules } from '../ts';
import * as ref from './helpers/reference';

const cpu = Device.cpu();
const shapes = [[3, 4], [4], [5]];

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 2e-5, floor = 1e-6): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

/** The float64 update of one parameter at 1-based step t. */
type ReferenceStep = (param: Float64Array, grad: Float64Array, state: Float64Array[], lr: number, t: number) => void;

/**
 * Runs `steps` steps of `optimizer` on a group of three parameters with fresh random gradients
 * at each step, and the same with `reference`; compares the parameters, the state tensors, the
 * step count and the zeroed gradients after every step.
 */
async function against(optimizer: Optimizer, stateCount: number, reference: ReferenceStep, lrAt: (step: number) => number, steps = 6) {
  const rng = new Random(17);
  const stream = new Stream(cpu);
  const params = shapes.map((s, i) =>
    Parameter.create(
      `p${i}`,
      ref.randomArray(
        rng,
        s.reduce((a, b) => a * b, 1),
      ),
      s,
      cpu,
    ),
  );
  const want = await Promise.all(params.map(async (p) => ref.f64(await p.value.readFloat32(stream))));
  const state = want.map((w) => Array.from({ length: stateCount }, () => new Float64Array(w.length)));
  for (let t = 1; t <= steps; t++) {
    expect(optimizer.lr).toBe(lrAt(t - 1));
    for (const [i, p] of params.entries()) {
      const g = ref.randomArray(rng, want[i].length);
      const gt = Tensor.fromArray(g, p.grad.shape, { device: cpu });
      native.ops.copy(stream.handle, gt.handle, p.grad.handle);
      await stream.synchronize();
      gt.dispose();
      reference(want[i], ref.f64(g), state[i], lrAt(t - 1), t);
    }
    optimizer.step(params, stream);
    expect(optimizer.steps).toBe(t);
    const tensors = optimizer.stateTensors(params);
    for (const [i, p] of params.entries()) {
      expectClose(await p.value.readFloat32(stream), want[i], `step ${t}: parameter ${i}`);
      expect(Array.from(await p.grad.readFloat32(stream)).every((v) => v === 0)).toBe(true);
      for (let k = 0; k < stateCount; k++)
        expectClose(await tensors[i * stateCount + k].readFloat32(stream), state[i][k], `step ${t}: state ${k} of parameter ${i}`);
    }
  }
  optimizer.dispose();
  for (const p of params) {
    p.value.dispose();
    p.grad.dispose();
  }
}

describe('SGD against a float64 reference over 6 steps', () => {
  const sgd =
    (momentum: number, wd: number): ReferenceStep =>
    (p, g, [v], lr) => {
      for (let k = 0; k < p.length; k++) {
        const d = g[k] + wd * p[k];
        if (momentum === 0) p[k] -= lr * d;
        else {
          v[k] = momentum * v[k] + d;
          p[k] -= lr * v[k];
        }
      }
    };
  test('plain', async () => {
    await against(new SGD({ lr: 0.1 }), 0, sgd(0, 0), () => 0.1);
  });
  test('momentum 0.9 and weight decay 0.01', async () => {
    await against(new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 0.01 }), 1, sgd(0.9, 0.01), () => 0.05);
  });
  test('weight decay without momentum, on a step-decay schedule', async () => {
    const lrAt = (t: number) => 0.2 * 0.5 ** [2, 4].filter((m) => t >= m).length;
    await against(new SGD({ lr: learningRateSchedules.stepDecay(0.2, [4, 2], 0.5), weightDecay: 0.1 }), 0, sgd(0, 0.1), lrAt);
  });
});

describe('Adam against a float64 reference over 6 steps', () => {
  const adam =
    (b1: number, b2: number, eps: number, wd: number): ReferenceStep =>
    (p, g, [m, v], lr, t) => {
      for (let k = 0; k < p.length; k++) {
        const d = g[k] + wd * p[k];
        m[k] = b1 * m[k] + (1 - b1) * d;
        v[k] = b2 * v[k] + (1 - b2) * d * d;
        const mHat = m[k] / (1 - b1 ** t),
          vHat = v[k] / (1 - b2 ** t);
        p[k] -= (lr * mHat) / (Math.sqrt(vHat) + eps);
      }
    };
  test('defaults (bias corrections at every step)', async () => {
    await against(new Adam({ lr: 0.01 }), 2, adam(0.9, 0.999, 1e-8, 0), () => 0.01);
  });
  test('betas far from 1, a large eps and weight decay (each correction weighs)', async () => {
    await against(new Adam({ lr: 0.03, beta1: 0.5, beta2: 0.7, eps: 0.1, weightDecay: 0.05 }), 2, adam(0.5, 0.7, 0.1, 0.05), () => 0.03);
  });
  test('on a step-decay schedule: lr read at the 0-based step, bias corrections at the 1-based one', async () => {
    const lrAt = (t: number) => 0.05 * 0.1 ** [3].filter((m) => t >= m).length;
    await against(new Adam({ lr: learningRateSchedules.stepDecay(0.05, [3]), beta1: 0.6, beta2: 0.8 }), 2, adam(0.6, 0.8, 1e-8, 0), lrAt);
  });
});

test('an optimizer of an empty group still counts the step (the schedule moves on)', () => {
  const o = new Adam({ lr: learningRateSchedules.stepDecay(1, [1], 0.5) });
  o.step([], new Stream(cpu));
  expect(o.steps).toBe(1);
  expect(o.lr).toBe(0.5);
});

describe('options are checked at their boundaries', () => {
  test.each([
    [() => new SGD({ lr: 0 }), RangeError, /SGD: 'lr' must be a finite number > 0, got 0/],
    [() => new SGD({ lr: Infinity }), RangeError, /SGD: 'lr' must be a finite number > 0, got Infinity/],
    [() => new SGD({ lr: '0.1' as never }), RangeError, /SGD: 'lr' must be a finite number > 0, got 0.1/],
    [() => new SGD(undefined as never), TypeError, /SGD: expects an options object \{ lr, \.\.\. \}/],
    [() => new SGD(null as never), TypeError, /SGD: expects an options object/],
    [() => new Adam(5 as never), TypeError, /Adam: expects an options object/],
    [() => new SGD({ lr: 0.1, weightDecay: -1e-9 }), RangeError, /SGD: 'weightDecay' must be a finite number >= 0, got -1e-9/],
    [() => new SGD({ lr: 0.1, momentum: -0.1 }), RangeError, /SGD: 'momentum' must be in \[0, 1\), got -0.1/],
    [() => new SGD({ lr: 0.1, momentum: 1 }), RangeError, /SGD: 'momentum' must be in \[0, 1\), got 1/],
    [() => new Adam({ lr: 0.1, beta1: 1 }), RangeError, /Adam: 'beta1' must be in \[0, 1\), got 1/],
    [() => new Adam({ lr: 0.1, beta1: -0.5 }), RangeError, /Adam: 'beta1' must be in \[0, 1\), got -0.5/],
    [() => new Adam({ lr: 0.1, beta2: 1 }), RangeError, /Adam: 'beta2' must be in \[0, 1\), got 1/],
    [() => new Adam({ lr: 0.1, eps: 0 }), RangeError, /Adam: 'eps' must be a finite number > 0, got 0/],
    [() => learningRateSchedules.constant(-1), RangeError, /constant: 'lr' must be a finite number > 0, got -1/],
    [() => learningRateSchedules.stepDecay(0, [1]), RangeError, /stepDecay: 'lr' must be a finite number > 0, got 0/],
    [
      () => learningRateSchedules.stepDecay(1, [-1]),
      TypeError,
      /stepDecay: 'milestones' must be an array of non-negative integers, got -1/,
    ],
    [() => learningRateSchedules.stepDecay(1, 5 as never), TypeError, /stepDecay: 'milestones' must be an array/],
    [
      () => learningRateSchedules.stepDecay(1, [2, -1]),
      TypeError,
      /stepDecay: 'milestones' must be an array of non-negative integers, got 2,-1/,
    ],
    [() => learningRateSchedules.stepDecay(1, [1], 0), RangeError, /stepDecay: 'gamma' must be a finite number > 0, got 0/],
  ])('%#', (make, type, message) => {
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });

  test('the edges of the valid ranges are accepted', () => {
    expect(new SGD({ lr: 0.1, momentum: 0, weightDecay: 0 }).momentum).toBe(0);
    expect(new Adam({ lr: 0.1, beta1: 0, beta2: 0 }).beta1).toBe(0);
    const a = new Adam({ lr: 0.1 });
    expect([a.beta1, a.beta2, a.eps]).toEqual([0.9, 0.999, 1e-8]);
    expect(learningRateSchedules.stepDecay(1, [0, 3])(0)).toBeCloseTo(0.1, 12); // a milestone at 0 applies from the start
    expect(learningRateSchedules.stepDecay(2, [3], 0.5)(2)).toBe(2);
    expect(learningRateSchedules.stepDecay(2, [3], 0.5)(3)).toBe(1);
  });

  test('the deprecated name schedules is the same object as learningRateSchedules', () => {
    expect(schedules).toBe(learningRateSchedules);
    expect(Object.keys(learningRateSchedules).sort()).toEqual(['constant', 'stepDecay']);
  });

  test('a schedule that gives a bad learning rate stops the step, naming the step', () => {
    const stream = new Stream(cpu);
    const p = Parameter.create('p', Float32Array.from([1, 2]), [2], cpu);
    const o = new SGD({ lr: (step) => (step < 1 ? 0.1 : -1) });
    o.step([p], stream);
    expect(() => o.step([p], stream)).toThrow(/optimizer: the schedule gave lr = -1 at step 1/);
    expect(o.steps).toBe(1);
    const nan = new SGD({ lr: () => NaN });
    expect(() => nan.step([p], stream)).toThrow(/lr = NaN at step 0/);
    o.dispose();
    nan.dispose();
  });

  test('without momentum SGD keeps no state; a group that grows gets state for the new parameter', async () => {
    const stream = new Stream(cpu);
    const rng = new Random(3);
    const ps = [Parameter.create('a', ref.randomArray(rng, 3), [3], cpu), Parameter.create('b', ref.randomArray(rng, 2), [2], cpu)];
    expect(new SGD({ lr: 0.1 }).stateTensors(ps)).toEqual([]);
    const o = new SGD({ lr: 0.1, momentum: 0.5 });
    const group = [ps[0]];
    native.ops.fill(stream.handle, ps[0].grad.handle, 1);
    o.step(group, stream);
    group.push(ps[1]);
    native.ops.fill(stream.handle, ps[0].grad.handle, 1);
    native.ops.fill(stream.handle, ps[1].grad.handle, 1);
    const before = Float64Array.from(await ps[1].value.readFloat32(stream));
    o.step(group, stream);
    // The second parameter moved by lr·1 (fresh velocity), the first by lr·(0.5 + 1).
    expectClose(
      await ps[1].value.readFloat32(stream),
      before.map((v) => v - 0.1),
      'new parameter',
    );
    expect(o.stateTensors(group)).toHaveLength(2);
    o.dispose();
  });
});
