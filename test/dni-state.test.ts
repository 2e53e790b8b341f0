// The decoupled training strategy's state outside a single step: restoring checkpointState()
// rewinds a run exactly (step count and warm-up, each optimizer's step count, the stochastic
// schedule's draws, the synthesizers' losses reset), malformed saved state is refused naming the
// field, which schedules can be captured into a graph and from which step, what a probe reports
// for a synthesizer that still predicts zero, and dispose() freeing the optimizers' state.
// Small networks (Linear → ReLU → Linear → ReLU → Linear, linear synthesizers) on random data:
// each test runs in milliseconds.
import {
  Adam,
  Arena,
  DecoupledTraining,
  Device,
  Linear,
  MeanSquaredError,
  Random,
  ReLU,
  Sequential,
  Stream,
  Tensor,
  decouple,
} from '../ts';
import type { DecoupleOptions } from '../ts';
import { StepContext } from '../ts/nn/module';
import * as ops from '../ts/ops';
import * as ref from './helpers/reference';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
const B = 4;

function context(stream: Stream, arena: Arena): StepContext {
  return { device: cpu, stream, training: true, arena };
}

/** Writes `values` into `t` on `stream`, as a checkpoint's tensors are copied back. */
function write(t: Tensor, values: Float32Array, stream: Stream): void {
  const src = Tensor.fromArray(Float32Array.from(values), t.shape, { device: cpu }); // a copy in this realm (jest)
  ops.copy({ stream }, src, t);
  src.dispose();
}

/** A decoupled 3-module network on Adam (its bias corrections depend on each optimizer's step count). */
function setup(options: DecoupleOptions, seed = 1) {
  const model = new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
  const net = decouple(model, { ...options, synthesizer: { hidden: [], ...options.synthesizer } });
  const rng = new Random(seed);
  net.initialize(cpu, rng.fork());
  const strategy = net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => new Adam({ lr: 0.02 }) }) as DecoupledTraining;
  strategy.record = true;
  const stream = new Stream(cpu);
  const arena = new Arena();
  const data = new Random(seed + 100);
  const batches = Array.from({ length: 12 }, () => ({ x: ref.randomArray(data, B * 3), y: ref.randomArray(data, B * 2) }));
  const tensorsOf = (b: { x: Float32Array; y: Float32Array }) =>
    [Tensor.fromArray(b.x, [B, 3], { device: cpu, arena }), Tensor.fromArray(b.y, [B, 2], { device: cpu, arena })] as const;
  const step = async (k: number) => {
    const [x, y] = tensorsOf(batches[k]);
    return (await strategy.step(x, y, context(stream, arena)).readFloat32(stream))[0];
  };
  /** Everything a checkpoint holds: parameters, BatchNorm state, optimizer state tensors. */
  const tensors = () => [
    ...net.parameters().map((p) => p.value),
    ...net.synthesizerParameters().map((p) => p.value),
    ...net.stateTensors(),
    ...strategy.checkpointState().tensors.map((t) => t.tensor),
  ];
  const read = () => Promise.all(tensors().map((t) => t.readFloat32(stream)));
  const dispose = () => {
    arena.dispose();
    strategy.dispose();
    net.dispose();
  };
  return { net, strategy, stream, arena, step, tensorsOf, batches, read, tensors, dispose };
}

describe('restoring checkpointState() rewinds a decoupled run exactly', () => {
  test.each([
    ['a warm-up that ends after the checkpoint, Adam step counts', { warmupSteps: 5 }],
    ['stochastic updates (p = 0.5) drawn from the saved generator', { warmupSteps: 1, schedule: { kind: 'lockstep', pUpdate: 0.5 } }],
  ] as [string, DecoupleOptions][])('%s', async (_, options) => {
    const run = setup(options);
    for (let k = 0; k < 3; k++) await run.step(k);
    const saved = run.strategy.checkpointState();
    const host = JSON.parse(JSON.stringify(saved.host)) as Record<string, unknown>;
    expect(host.steps).toBe(3);
    expect(host.optimizerSteps).toEqual(run.strategy.optimizers.map((o) => o.steps));
    expect(saved.tensors.map((t) => t.name)).toEqual([
      ...[1, 2, 3].flatMap((m) => Array.from({ length: 4 }, (_, k) => `module${m}.optimizer.${k}`)),
      ...[1, 2].flatMap((s) => [0, 1, 2, 3].map((k) => `synthesizer${s}.optimizer.${k}`)),
    ]);
    const snapshot = await run.read();

    // Three more steps, recorded; then everything written back and the same three steps again.
    const losses: number[] = [];
    const updated: boolean[][] = [];
    for (let k = 3; k < 6; k++) {
      losses.push(await run.step(k));
      updated.push([...run.strategy.lastStep!.updated]);
    }
    const after = await run.read();
    const counts = run.strategy.optimizers.map((o) => o.steps);

    run.tensors().forEach((t, i) => write(t, snapshot[i], run.stream));
    run.strategy.restoreState(host);
    expect(run.strategy.steps).toBe(3);
    // The synthesizers' losses are unknown again until they next learn.
    const [px, py] = run.tensorsOf(run.batches[11]);
    for (const d of await run.strategy.diagnose(px, py, context(run.stream, run.arena))) expect(d.synthesizerLoss).toBeNaN();
    run.tensors().forEach((t, i) => write(t, snapshot[i], run.stream)); // the probe changed nothing, but be exact

    const again: number[] = [];
    const againUpdated: boolean[][] = [];
    for (let k = 3; k < 6; k++) {
      again.push(await run.step(k));
      againUpdated.push([...run.strategy.lastStep!.updated]);
    }
    expect(again).toEqual(losses);
    expect(againUpdated).toEqual(updated);
    expect(run.strategy.optimizers.map((o) => o.steps)).toEqual(counts);
    const replay = await run.read();
    replay.forEach((t, i) => expect(Buffer.from(t.buffer).equals(Buffer.from(after[i].buffer))).toBe(true));
    // Not a vacuous comparison: the three steps did move the weights.
    expect(after.some((t, i) => !Buffer.from(t.buffer).equals(Buffer.from(snapshot[i].buffer)))).toBe(true);
    run.dispose();
  });

  test('the warm-up counts from the restored step', async () => {
    const run = setup({ warmupSteps: 4 });
    for (let k = 0; k < 3; k++) await run.step(k);
    const host = run.strategy.checkpointState().host;
    for (let k = 3; k < 6; k++) await run.step(k);
    run.strategy.restoreState(host);
    expect(run.strategy.captureReady()).toBe(false);
    await run.step(3);
    expect(run.strategy.captureReady()).toBe(true);
    run.dispose();
  });

  test.each([
    [
      { steps: 2.5, optimizerSteps: [1, 1, 1], synthesizerSteps: [1, 1], updateRng: [] },
      /checkpoint: 'steps' must be a step count, got 2.5/,
    ],
    [{ steps: 2, optimizerSteps: [1, 1], synthesizerSteps: [1, 1] }, /checkpoint: 'optimizerSteps' must list 3 step counts, got \[1,1\]/],
    [{ steps: 2, optimizerSteps: [1, 1, -1], synthesizerSteps: [1, 1] }, /checkpoint: 'optimizerSteps' must be a step count, got -1/],
    [{ steps: 2, optimizerSteps: [1, 1, 1], synthesizerSteps: 'x' }, /checkpoint: 'synthesizerSteps' must list 2 step counts, got "x"/],
    [null, /checkpoint: 'steps' must be a step count, got undefined/],
  ])('saved state %j is refused, naming the field, before anything changes', async (host, message) => {
    const run = setup({});
    await run.step(0);
    const steps = run.strategy.optimizers.map((o) => o.steps);
    let thrown: unknown;
    try {
      run.strategy.restoreState(host);
    } catch (e) {
      thrown = e;
    }
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as { code?: string }).code).toBe('ERR_SYNTHGRAD_CHECKPOINT');
    expect(run.strategy.steps).toBe(1);
    expect(run.strategy.optimizers.map((o) => o.steps)).toEqual(steps);
    run.dispose();
  });

  test('the pipelined schedule cannot be saved (work is carried between steps)', () => {
    const run = setup({ schedule: { kind: 'pipelined', depth: 1 } });
    let thrown: unknown;
    try {
      run.strategy.checkpointState();
    } catch (e) {
      thrown = e;
    }
    expect((thrown as { code?: string }).code).toBe('ERR_SYNTHGRAD_CHECKPOINT');
    expect((thrown as Error).message).toMatch(/pipelined schedule .* cannot be saved/);
    run.dispose();
  });
});

describe('graph capture', () => {
  test.each([
    [{}, undefined],
    [{ schedule: { kind: 'lockstep', pUpdate: 0.5 } }, /stochastic updates are drawn on the host/],
    [{ schedule: { kind: 'pipelined', depth: 1 } }, /pipelined schedule carries work from one step into later ones/],
  ] as [DecoupleOptions, RegExp | undefined][])('%j: captureBlocker', (options, reason) => {
    const run = setup(options);
    const blocker = run.strategy.captureBlocker();
    if (reason) expect(blocker).toMatch(reason);
    else expect(blocker).toBeUndefined();
    run.dispose();
  });

  test('steps can be captured once the warm-up is over', async () => {
    const run = setup({ warmupSteps: 2 });
    expect(run.strategy.captureReady()).toBe(false);
    await run.step(0);
    expect(run.strategy.captureReady()).toBe(false);
    await run.step(1);
    expect(run.strategy.captureReady()).toBe(true);
    run.dispose();
  });
});

describe('a probe', () => {
  test('of a synthesizer that still predicts 0 reports cosine 0 and norm ratio 0, not NaN', async () => {
    // The synthesizers' last layers start at zero: before any step, ĝ = 0 exactly, while the
    // true gradient is not.
    const run = setup({});
    const [x, y] = run.tensorsOf(run.batches[0]);
    const report = await run.strategy.diagnose(x, y, context(run.stream, run.arena));
    expect(report.map((d) => d.module)).toEqual([1, 2]);
    for (const d of report) {
      expect(d.cosine).toBe(0);
      expect(d.targetCosine).toBe(0);
      expect(d.normRatio).toBe(0);
      expect(d.synthesizerLoss).toBeNaN(); // nothing learned yet
    }
    run.dispose();
  });
});

test("dispose() frees every module optimizer's state", async () => {
  const run = setup({});
  await run.step(0);
  const state = run.strategy.optimizers.flatMap((o, i) => o.stateTensors(run.net.modules[i].parameters()));
  expect(state.length).toBe(12);
  expect(state.every((t) => !t.disposed)).toBe(true);
  run.dispose();
  expect(state.every((t) => t.disposed)).toBe(true);
});

describe('what a step keeps', () => {
  test("nothing is recorded unless asked; a record holds each cut's tensors (N − 1 of each)", async () => {
    const run = setup({});
    run.strategy.record = false;
    await run.step(0);
    expect(run.strategy.lastStep).toBeUndefined();
    run.strategy.record = true;
    await run.step(1);
    const r = run.strategy.lastStep!;
    expect([r.activations.length, r.synthetic.length, r.targets.length, r.updated.length]).toEqual([2, 2, 2, 3]);
    expect(r.activations.map((t) => t.shape)).toEqual([
      [B, 5],
      [B, 4],
    ]);
    run.dispose();
  });

  test.each([
    ['lockstep: only the current step', {}, 1],
    ['pipelined depth 2: the current step and the 2 before, whose targets arrive late', { schedule: { kind: 'pipelined', depth: 2 } }, 3],
  ] as [string, DecoupleOptions, number][])("a step's tensors are freed once no later work needs them (%s)", async (_, options, kept) => {
    const run = setup(options);
    const records = [];
    for (let k = 0; k < 6; k++) {
      await run.step(k);
      records.push(run.strategy.lastStep!.activations[0]);
    }
    // The current step's arena and the `kept - 1` before it live on; older ones are disposed of.
    expect(records.map((t) => t.disposed)).toEqual(records.map((_, k) => k < records.length - kept));
    run.dispose();
  });

  test('one optimizer shared by the modules is refused (each module needs its own state)', () => {
    const net = decouple(new Sequential([new Linear(3, 4), new ReLU(), new Linear(4, 2)]), { synthesizer: { hidden: [] } });
    net.initialize(cpu, new Random(1));
    const shared = new Adam({ lr: 0.1 });
    expect(() => net.trainingStrategy({ loss: new MeanSquaredError(), optimizer: () => shared })).toThrow(
      /^decoupled training needs one optimizer per module/,
    );
    net.dispose();
  });
});
