// distribute() with the complete unlock (decouple's `unlock`) and with the pipelined schedule
// under stochastic updates (`pUpdate` < 1), K ranks in one process over the in-memory transport
// (test/helpers/local-transport.ts): every module's state (weights, BatchNorm statistics, its
// synthesizer's and its input model's) and every step's loss are compared with the one-process
// Trainer.fit byte for byte. test/distributed.test.ts runs the same cases under mpirun.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Random, Trainer, cnn, decouple, distribute, mlp } from '../ts';
import type { DecoupledNetwork, DistributedFitOptions, DistributedNetwork, Evaluation } from '../ts';
import { localTransports, stateBytes } from './helpers/local-transport';

const rows = new Random(11);
const labels = new Int32Array(40).map(() => Math.floor(rows.next() * 4));
const train = new Dataset('tiny', rows.uniformArray(40 * 12, -1, 1), labels, 12, 4);
const images = Dataset.fromArrays(
  rows.uniformArray(24 * 2 * 7 * 7, -1, 1),
  Int32Array.from({ length: 24 }, (_, i) => i % 3),
  { shape: [2, 7, 7], name: 'tiny images', classes: 3 },
);
const test23 = new Dataset('tiny-test', rows.uniformArray(23 * 12, -1, 1), labels.slice(0, 23), 12, 4);
const options = { device: Device.cpu(), seed: 7, optimizer: () => new Adam({ lr: 0.01 }) };

type Build = () => DecoupledNetwork;
const fcn =
  (extra: object = {}): Build =>
  () =>
    decouple(mlp(12, [16, 16], 4), { synthesizer: { hidden: [8] }, ...extra });
const unlocked = (extra: object = {}) => fcn({ unlock: { hidden: [10] }, ...extra });

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Run {
  bytes: Buffer[];
  losses: number[];
  /** on test23, when asked for */
  evaluation?: Evaluation;
}

async function oneProcess(build: Build, steps: number, data = train, evaluate = false): Promise<Run> {
  const net = build();
  const trainer = new Trainer(net, options);
  const losses: number[] = [];
  try {
    await trainer.fit(data, { steps, batchSize: 8, onStep: (m) => void losses.push(m.loss) });
    const evaluation = evaluate ? await trainer.evaluate(test23, { batchSize: 10 }) : undefined;
    return { bytes: await stateBytes(net), losses, evaluation };
  } finally {
    trainer.dispose();
  }
}

/** `placement` over its ranks in this process, each rank with its own network; each module's state from the rank that ran it. */
async function overRanks(
  build: Build,
  placement: number[],
  fit: DistributedFitOptions,
  data = train,
  evaluate = false,
): Promise<Run & { dists: DistributedNetwork[] }> {
  const transports = localTransports(Math.max(...placement) + 1);
  const dists = transports.map((transport) => distribute(build(), { ...options, placement, transport }));
  try {
    const results = await Promise.all(dists.map((d) => d.fit(data, fit)));
    const bytes: Buffer[] = [];
    for (const d of dists) {
      const own = await stateBytes(d.network, [...d.ownModules]);
      d.ownModules.forEach((i, k) => (bytes[i] = own[k]));
    }
    // Every rank calls evaluate(); rank 0 reports.
    const evaluation = evaluate ? (await Promise.all(dists.map((d) => d.evaluate(test23, { batchSize: 10 }))))[0] : undefined;
    return { bytes, losses: results[placement[placement.length - 1]].losses, evaluation, dists };
  } finally {
    dists.forEach((d) => d.dispose());
  }
}

function expectSame(got: Run, want: Run, what: string): void {
  expect(got.bytes.length).toBe(want.bytes.length);
  got.bytes.forEach((b, i) => {
    expect(b.length).toBeGreaterThan(0);
    if (!b.equals(want.bytes[i])) throw new Error(`${what}: module ${i + 1} differs from the one-process run`);
  });
  // Every step's loss, to the last bit (toEqual on numbers is Object.is: NaN would match only NaN).
  expect(got.losses.length).toBeGreaterThan(0);
  expect(got.losses).toEqual(want.losses);
  expect(got.evaluation).toEqual(want.evaluation);
}

describe('the complete unlock over ranks (in-process ranks)', () => {
  test('FCN on 3 ranks and on 2 (both ways), with pUpdate 0.5 and cDNI: bit for bit the one-process run, losses and evaluation too', async () => {
    const cases: [string, Build, number[]][] = [
      ['3 ranks', unlocked(), [0, 1, 2]],
      ['2 ranks, modules 1 and 3 on rank 0', unlocked(), [0, 1, 0]],
      ['2 ranks, modules 1 and 2 on rank 0', unlocked(), [0, 0, 1]],
      ['pUpdate 0.5, 3 ranks', unlocked({ schedule: { kind: 'lockstep', pUpdate: 0.5 } }), [0, 1, 2]],
      ['cDNI, 2 ranks', unlocked({ synthesizer: { hidden: [8], conditioned: true } }), [1, 0, 1]],
    ];
    for (const [what, build, placement] of cases) {
      const one = await oneProcess(build, 9, train, true); // 40 rows in batches of 8: an epoch and 4 steps
      expect(one.evaluation!.count).toBe(23);
      expectSame(await overRanks(build, placement, { steps: 9, batchSize: 8 }, train, true), one, what);
    }
  });

  test('the comparison sees the unlock: module 1 trains otherwise, modules 2 and 3 hold input models, the losses differ', async () => {
    const withUnlock = await oneProcess(unlocked(), 6);
    const without = await oneProcess(fcn(), 6);
    // Module 1 has no input model, so its bytes are comparable; it trained differently (its ĝ
    // came from M_1 on another trajectory). Modules 2 and 3 hold the input model's state too.
    expect(withUnlock.bytes[0].length).toBe(without.bytes[0].length);
    expect(withUnlock.bytes[0].equals(without.bytes[0])).toBe(false);
    expect(withUnlock.bytes[1].length).toBeGreaterThan(without.bytes[1].length);
    expect(withUnlock.losses).not.toEqual(without.losses);
  });

  test('a CNN (cDNI, BatchNorm2d, convolutional input models) on 2 ranks: bit for bit the one-process run', async () => {
    const build = () =>
      decouple(cnn({ channels: 2, height: 7, width: 7, classes: 3, filters: 3, blocks: 2, kernel: 3 }), {
        input: [2, 7, 7],
        synthesizer: { conditioned: true, filters: [4], kernel: 3 },
        unlock: true,
      });
    expect(build().modules.length).toBe(3);
    const one = await oneProcess(build, 4, images);
    expectSame(await overRanks(build, [0, 1, 1], { steps: 4, batchSize: 8 }, images), one, 'CNN');
  });

  test('checkpoints: 3 steps saved at 2 and 3, resumed to 8 (input models and their optimizers restored): as the uninterrupted run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-dist-unlock-'));
    dirs.push(dir);
    const build = unlocked({ schedule: { kind: 'lockstep', pUpdate: 0.5 } });
    const checkpoint = { dir, every: 2 };
    const first = await overRanks(build, [0, 1, 2], { steps: 3, batchSize: 8, checkpoint });
    expect(fs.readdirSync(dir).sort()).toEqual([0, 1, 2].flatMap((r) => [`rank-${r}.step-2.ckpt`, `rank-${r}.step-3.ckpt`]).sort());
    const second = await overRanks(build, [0, 1, 2], { steps: 8, batchSize: 8, checkpoint });
    expect(second.dists.map((d) => d.network.name)[0]).toMatch(/\+unlock/);
    const one = await oneProcess(build, 8);
    expectSame({ bytes: second.bytes, losses: [...first.losses, ...second.losses] }, one, 'resumed');
  });
});

describe('the complete unlock checks that every rank holds the same data (in-process ranks)', () => {
  /** fit on 3 ranks, rank r given `data(r)`: each rank's error message, or 'trained' (2 steps done). */
  async function fitWith(data: (rank: number) => Dataset, build: Build = unlocked()): Promise<string[]> {
    const transports = localTransports(3, 5000);
    const dists = transports.map((transport) => distribute(build(), { ...options, placement: [0, 1, 2], transport }));
    let steps = 0; // on the last module's rank
    const onStep = () => void steps++;
    try {
      const results = await Promise.allSettled(dists.map((d, r) => d.fit(data(r), { steps: 2, batchSize: 8, onStep })));
      const said = results.map((x) =>
        x.status === 'fulfilled' ? 'trained' : `${(x.reason as { code?: string }).code}: ${(x.reason as Error).message}`,
      );
      expect(steps).toBe(said[2] === 'trained' ? 2 : 0); // a refusal comes before any step
      return said;
    } finally {
      dists.forEach((d) => d.dispose());
    }
  }
  const changed = (at: number) => {
    const inputs = train.inputs.slice();
    inputs[at] = -inputs[at];
    return new Dataset('tiny', inputs, train.labels, 12, 4);
  };
  const says = (ranks: string) =>
    new RegExp(
      `^ERR_SYNTHGRAD_DATA: fit: with the complete unlock every rank reads the batches from its own 'data', but ${ranks} from rank 0's \\(40 rows, sha256 [0-9a-f]{12}…\\): give every rank the same Dataset \\(the same rows in the same order\\)$`,
    );

  test('a rank given other rows, or a value changed, or other labels: every rank refuses alike, naming it, before any step', async () => {
    const one = await fitWith((r) => (r === 2 ? changed(479) : train)); // the last input value
    expect(one).toEqual([0, 1, 2].map(() => expect.stringMatching(says("rank 2's \\(40 rows, sha256 [0-9a-f]{12}…\\) differs"))));
    const two = await fitWith((r) => (r === 0 ? train : r === 1 ? train.head(32) : changed(0)));
    expect(two).toEqual(
      [0, 1, 2].map(() =>
        expect.stringMatching(says("rank 1's \\(32 rows, sha256 [0-9a-f]{12}…\\), rank 2's \\(40 rows, sha256 [0-9a-f]{12}…\\) differ")),
      ),
    );
    const labels = train.labels.slice();
    labels[5] = (labels[5] + 1) % 4;
    const otherLabels = await fitWith((r) => (r === 1 ? new Dataset('tiny', train.inputs, labels, 12, 4) : train));
    expect(otherLabels[0]).toMatch(says("rank 1's \\(40 rows, sha256 [0-9a-f]{12}…\\) differs"));
  });

  test('the same data in other Dataset objects trains; without the unlock nothing is compared', async () => {
    const copy = () => new Dataset('a copy', train.inputs.slice(), train.labels.slice(), 12, 4);
    expect(await fitWith((r) => (r === 0 ? train : copy()))).toEqual(['trained', 'trained', 'trained']);
    // Without the unlock only module 1's rank reads rows: the others' copies are not compared.
    expect(await fitWith((r) => (r === 2 ? changed(0) : train), fcn())).toEqual(['trained', 'trained', 'trained']);
  });
});

describe('the pipelined schedule with pUpdate < 1 over ranks (in-process ranks)', () => {
  test('depth 1 and 2, pUpdate 0.5, on 3 ranks and on 2 (cDNI): bit for bit the one-process run, losses too', async () => {
    const cases: [string, Build, number[]][] = [
      ['depth 1, 3 ranks', fcn({ schedule: { kind: 'pipelined', depth: 1, pUpdate: 0.5 } }), [0, 1, 2]],
      ['depth 2, 3 ranks', fcn({ schedule: { kind: 'pipelined', depth: 2, pUpdate: 0.5 } }), [0, 1, 2]],
      [
        'depth 2, cDNI, 2 ranks',
        fcn({ schedule: { kind: 'pipelined', depth: 2, pUpdate: 0.5 }, synthesizer: { hidden: [8], conditioned: true } }),
        [0, 1, 0],
      ],
    ];
    for (const [what, build, placement] of cases) {
      const one = await oneProcess(build, 12);
      expectSame(await overRanks(build, placement, { steps: 12, batchSize: 8 }, train), one, what);
    }
  });

  test('the comparison sees the draws: pUpdate 0.5 differs from pUpdate 1 at depth 2', async () => {
    const half = await oneProcess(fcn({ schedule: { kind: 'pipelined', depth: 2, pUpdate: 0.5 } }), 12);
    const all = await oneProcess(fcn({ schedule: { kind: 'pipelined', depth: 2 } }), 12);
    for (let i = 0; i < 3; i++) expect(half.bytes[i].equals(all.bytes[i])).toBe(false);
  });
});
