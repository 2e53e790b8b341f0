// Optimizer steps beyond the plain loop of optimizers.test.ts, each against the float64
// reference steps of helpers/reference.ts: a schedule that pauses learning (lr = 0 still counts
// the step and moves the optimizer state), steps captured into a graph and replayed with the
// schedule's value of each launch, interleaved with uncaptured steps as fit() runs a tail
// batch, and dispose() freeing the state tensors.
import { Adam, Device, Graph, native, Optimizer, Parameter, Random, SGD, Stream, Tensor } from '../ts';
import type { CaptureHooks } from '../ts/graph';
import * as ref from './helpers/reference';

const cpu = Device.cpu();
const shapes = [[2, 3], [3]];

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rel = 2e-5, floor = 1e-6): void {
  const r = ref.compare(got, want, floor);
  if (r.worst > rel) throw new Error(`${what}: ${ref.describeReport(r)}`);
  expect(r.worst).toBeLessThanOrEqual(rel);
}

/** The float64 step of one parameter at 1-based step t with learning rate lr. */
type Reference = (p: Float64Array, g: Float64Array, state: Float64Array[], lr: number, t: number) => void;

const sgdRef =
  (momentum: number, wd: number): Reference =>
  (p, g, [v], lr) =>
    ref.sgdStep(p, g, momentum ? v : null, lr, momentum, wd);
const adamRef =
  (b1: number, b2: number, eps: number, wd: number): Reference =>
  (p, g, [m, v], lr, t) =>
    ref.adamStep(p, g, m, v, lr, b1, b2, eps, wd, t);

/** A group of parameters, their float64 mirrors and state, and a way to write fresh gradients. */
async function fixture(stateCount: number, seed: number) {
  const rng = new Random(seed);
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
  /** Writes random gradients into every parameter (on the stream) and returns them. */
  const gradients = async () => {
    const gs: Float64Array[] = [];
    for (const p of params) {
      const g = ref.uniformArray(rng, p.grad.size, -1, 1);
      const gt = Tensor.fromArray(g, p.grad.shape, { device: cpu });
      native.ops.copy(stream.handle, gt.handle, p.grad.handle);
      await stream.synchronize();
      gt.dispose();
      gs.push(ref.f64(g));
    }
    return gs;
  };
  const reference = (f: Reference, gs: Float64Array[], lr: number, t: number) => gs.forEach((g, i) => f(want[i], g, state[i], lr, t));
  const compare = async (o: Optimizer, when: string) => {
    const tensors = o.stateTensors(params);
    for (const [i, p] of params.entries()) {
      expectClose(await p.value.readFloat32(stream), want[i], `${when}: parameter ${i}`);
      for (let k = 0; k < stateCount; k++)
        expectClose(await tensors[i * stateCount + k].readFloat32(stream), state[i][k], `${when}: state ${k} of parameter ${i}`);
    }
  };
  const dispose = () => {
    for (const p of params) {
      p.value.dispose();
      p.grad.dispose();
    }
  };
  return { params, stream, gradients, reference, compare, dispose, want };
}

describe('a schedule that gives lr = 0 pauses learning but not the optimizer', () => {
  // Steps 2 and 3 (0-based 1, 2) have lr 0: the parameters stand still, while the momentum,
  // Adam's moments and the step count (hence the bias corrections) move on.
  const lrAt = (step: number) => (step === 1 || step === 2 ? 0 : 0.05);
  test.each([
    ['SGD with momentum and weight decay', () => new SGD({ lr: lrAt, momentum: 0.8, weightDecay: 0.1 }), 1, sgdRef(0.8, 0.1)],
    ['Adam', () => new Adam({ lr: lrAt, beta1: 0.6, beta2: 0.8, eps: 1e-3 }), 2, adamRef(0.6, 0.8, 1e-3, 0)],
  ] as const)('%s', async (_, make, stateCount, f) => {
    const run = await fixture(stateCount, 4);
    const o = make();
    for (let t = 1; t <= 5; t++) {
      const before = run.want.map((w) => Float64Array.from(w));
      run.reference(f, await run.gradients(), lrAt(t - 1), t);
      o.step(run.params, run.stream);
      expect(o.steps).toBe(t);
      await run.compare(o, `step ${t}`);
      if (lrAt(t - 1) === 0) expect(run.want).toEqual(before); // the reference did stand still
    }
    o.dispose();
    run.dispose();
  });
});

describe('a step captured into a graph', () => {
  // The optimizer's learning rate changes at every step; the scalars are written before each
  // launch, so each replay must use the step count and learning rate of its own step. Step 3
  // runs uncaptured between launches (as fit() runs a short last batch) and must leave the
  // graph working: both paths share the step count and the scalars tensor.
  const lrAt = (step: number) => 0.1 / (1 + step);
  test.each([
    ['SGD with momentum', () => new SGD({ lr: lrAt, momentum: 0.5, weightDecay: 0.01 }), 1, sgdRef(0.5, 0.01)],
    ['Adam', () => new Adam({ lr: lrAt, beta1: 0.5, beta2: 0.7, eps: 1e-2 }), 2, adamRef(0.5, 0.7, 1e-2, 0)],
  ] as const)("%s: every launch reads its own step's scalars", async (_, make, stateCount, f) => {
    const run = await fixture(stateCount, 9);
    const o = make();
    const updates: ((s: Stream) => void)[] = [];
    const hooks: CaptureHooks = { beforeLaunch: (u) => updates.push(u) };
    // The state tensors exist before the capture (the graph reads them in place).
    o.stateTensors(run.params);
    const graph = Graph.capture(run.stream, () => o.step(run.params, run.stream, hooks));
    expect(o.steps).toBe(0); // capturing is not a step
    const captured = [true, true, false, true, true];
    for (const [k, viaGraph] of captured.entries()) {
      const t = k + 1;
      run.reference(f, await run.gradients(), lrAt(t - 1), t);
      if (viaGraph) {
        for (const u of updates) u(run.stream);
        graph.launch(run.stream);
      } else {
        o.step(run.params, run.stream);
      }
      expect(o.steps).toBe(t);
      await run.compare(o, `step ${t} (${viaGraph ? 'graph' : 'uncaptured'})`);
    }
    graph.dispose();
    o.dispose();
    run.dispose();
  });
});

describe('dispose()', () => {
  test.each([
    ['SGD with momentum', () => new SGD({ lr: 0.1, momentum: 0.9 }), 1],
    ['Adam', () => new Adam({ lr: 0.1 }), 2],
  ] as const)('%s frees its state tensors, and fresh state starts from zero', async (_, make, perParam) => {
    const run = await fixture(perParam, 2);
    const o = make();
    await run.gradients();
    o.step(run.params, run.stream);
    const state = o.stateTensors(run.params);
    expect(state).toHaveLength(perParam * run.params.length);
    for (const t of state) {
      expect(t.disposed).toBe(false);
      expect(ref.maxAbs(await t.readFloat32(run.stream))).toBeGreaterThan(0);
    }
    o.dispose();
    for (const t of state) expect(t.disposed).toBe(true);
    // What the optimizer hands out afterwards is new state (zeros), not the freed tensors.
    const fresh = o.stateTensors(run.params);
    for (const [k, t] of fresh.entries()) {
      expect(t).not.toBe(state[k]);
      expect(ref.maxAbs(await t.readFloat32(run.stream))).toBe(0);
    }
    o.dispose();
    run.dispose();
  });
});
