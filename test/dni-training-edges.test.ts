// Edge cases of the complete unlock's training strategy (ts/dni/training.ts) that the other
// tests left open: the names of the input models' optimizer state in a checkpoint, the error
// for a checkpoint whose 'inputSteps' is malformed, and the recorded targets δ_i of a step in
// which some modules skipped their update (one entry per cut, undefined where skipped); and
// graph capture on one stream, where a captured step must wait for no cross-stream event.
import {
  Adam,
  Arena,
  Dataset,
  DecoupledTraining,
  Device,
  Graph,
  Linear,
  MeanSquaredError,
  Random,
  ReLU,
  SGD,
  Sequential,
  Stream,
  Tensor,
  Trainer,
  decouple,
  mlp,
} from '../ts';
import type { DecoupleOptions } from '../ts';
import { StepContext } from '../ts/nn/module';

const cpu = Device.cpu();
const B = 4;

/** Three modules 3 → 5 → 4 → 2, so two cuts and two input models (for modules 2 and 3). */
function strategyFor(options: DecoupleOptions): DecoupledTraining {
  const model = new Sequential([new Linear(3, 5), new ReLU(), new Linear(5, 4), new ReLU(), new Linear(4, 2)]);
  const net = decouple(model, {
    synthesizer: { hidden: [], optimizer: () => new SGD({ lr: 0.05 }) },
    unlock: { hidden: [], optimizer: () => new SGD({ lr: 0.05, momentum: 0.5 }) },
    ...options,
  });
  net.initialize(cpu, new Random(11));
  const strategy = net.trainingStrategy({
    loss: new MeanSquaredError(),
    optimizer: () => new SGD({ lr: 0.1, momentum: 0.5 }),
  }) as DecoupledTraining;
  strategy.record = true;
  return strategy;
}

async function step(strategy: DecoupledTraining, rng: Random, stream: Stream, arena: Arena): Promise<void> {
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
  const x = Tensor.fromArray(values(B * 3), [B, 3], { device: cpu, arena });
  const y = Tensor.fromArray(values(B * 2), [B, 2], { device: cpu, arena });
  const ctx: StepContext = { device: cpu, stream, training: true, arena };
  await strategy.step(x, y, ctx).read(stream);
}

describe('checkpoint state of the unlock', () => {
  test("names the input models' optimizer state after the module they feed: input2, input3", async () => {
    const strategy = strategyFor({});
    const stream = new Stream(cpu);
    const arena = new Arena();
    await step(strategy, new Random(3), stream, arena);
    const names = strategy.checkpointState().tensors.map((t) => t.name);
    const inputNames = names.filter((name) => name.startsWith('input'));
    // SGD with momentum keeps one velocity per parameter: a weight and a bias per linear input model.
    expect(inputNames).toEqual(['input2.optimizer.0', 'input2.optimizer.1', 'input3.optimizer.0', 'input3.optimizer.1']);
    arena.dispose();
  });

  test("a malformed 'inputSteps' is rejected with a message naming it", () => {
    const strategy = strategyFor({});
    const host = strategy.checkpointState().host as Record<string, unknown>;
    expect(host.inputSteps).toEqual([0, 0]);
    expect(() => strategy.restoreState({ ...host, inputSteps: [1] })).toThrow("checkpoint: 'inputSteps' must list 2 step counts, got [1]");
    expect(() => strategy.restoreState({ ...host, inputSteps: undefined })).toThrow(/'inputSteps' must list 2 step counts/);
  });
});

describe('recorded targets of the unlock with stochastic updates', () => {
  test('one entry per cut at every step, undefined exactly where the module above skipped', async () => {
    const strategy = strategyFor({ schedule: { kind: 'lockstep', pUpdate: 0.5 } });
    const stream = new Stream(cpu);
    const arena = new Arena();
    const rng = new Random(5);
    let skippedAbove = 0;
    for (let s = 0; s < 12; s++) {
      await step(strategy, rng, stream, arena);
      const r = strategy.lastStep!;
      // Cut i sits between module i and module i+1 (0-based): its target comes from module i+1.
      expect(r.targets).toHaveLength(2);
      expect(Object.keys(r.targets)).toEqual(['0', '1']);
      for (let i = 0; i < 2; i++) {
        if (r.updated[i + 1]) expect(r.targets[i]).toBeInstanceOf(Tensor);
        else {
          expect(r.targets[i]).toBeUndefined();
          skippedAbove++;
        }
      }
    }
    expect(skippedAbove).toBeGreaterThan(0);
    arena.dispose();
  });
});

describe('graph capture of the unlock on one stream', () => {
  test('captured steps replay bit for bit as uncaptured ones, with no cross-stream event to wait for', async () => {
    // One stream: no module records an event for another, so a captured step must not wait for one
    // (a capturing stream may only wait for events recorded during its own capture).
    const rng = new Random(9);
    const rows = 64;
    const labels = Int32Array.from({ length: rows }, () => Math.floor(rng.next() * 4));
    const data = new Dataset('random', rng.uniformArray(rows * 6, 0, 1), labels, 6, 4);
    const weights = async (graph: boolean) => {
      const net = decouple(mlp(6, [8, 7], 4), { synthesizer: { hidden: [5] }, unlock: { hidden: [5] }, streams: 'single' });
      const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 1e-2 }), seed: 5 });
      const launch = jest.spyOn(Graph.prototype, 'launch');
      try {
        await trainer.fit(data, { steps: 4, batchSize: 16, graph, logEvery: 1000 });
        expect(launch).toHaveBeenCalledTimes(graph ? 3 : 0);
      } finally {
        launch.mockRestore();
      }
      const all = [...net.stateTensors(), ...net.inputModelParameters().map((p) => p.value)];
      const out = await Promise.all(all.map((t) => t.readFloat32(trainer.stream)));
      trainer.dispose();
      return Buffer.concat(out.map((a) => Buffer.from(a.buffer)));
    };
    const uncaptured = await weights(false);
    expect((await weights(true)).equals(uncaptured)).toBe(true);
  });
});
