// The scaling model's formulas (test/helpers/scaling-model.ts, docs/distributed-scaling.md): hand-computed
// cases, and the closed forms against an event-by-event replay of the schedule's waits.
import {
  ModuleCost,
  backpropStepMs,
  balancedStages,
  chain,
  dniStepMs,
  rankTimes,
  simulateSteps,
  transferMs,
} from './helpers/scaling-model';
import { Random } from '../ts';

// 3 ms latency and 1 GB/s: 1e6 bytes take 3 + 1 = 4 ms each way, so a round trip is 8 ms.
const link = { name: 'test', latencyUs: 3000, gbPerSecond: 1 };
const modules: ModuleCost[] = [
  { forward: 1, backward: 2, synthesizer: 1, handoffBytes: 1e6 }, // C = 4 (3 without M)
  { forward: 2, backward: 3, synthesizer: 1, handoffBytes: 1e6 }, // C = 6 (5)
  { forward: 1, backward: 1, synthesizer: 0, handoffBytes: 40 }, // C = 2 (2), the loss's module
];

describe('scaling model', () => {
  test('T(b) = α + b/β, and links in series add latencies and times per byte', () => {
    expect(transferMs(1e6, link)).toBeCloseTo(4, 12);
    expect(transferMs(0, link)).toBeCloseTo(3, 12);
    const host = chain('host', [
      { name: 'a', latencyUs: 10, gbPerSecond: 50 },
      { name: 'b', latencyUs: 15, gbPerSecond: 12.5 },
      { name: 'c', latencyUs: 10, gbPerSecond: 50 },
    ]);
    expect(host.latencyUs).toBe(35);
    // 1 MB: 20 µs + 80 µs + 20 µs of bytes, plus 35 µs
    expect(transferMs(1e6, host)).toBeCloseTo(0.155, 12);
  });

  test('balancedStages: contiguous stages with the smallest largest stage', () => {
    expect(balancedStages([4, 6, 2], 2)).toEqual([[0], [1, 2]]); // max(4, 8) beats max(10, 2)
    expect(balancedStages([4, 6, 2], 3)).toEqual([[0], [1], [2]]);
    expect(balancedStages([1, 1, 1, 1, 5], 2)).toEqual([[0, 1, 2, 3], [4]]);
    expect(balancedStages([3, 3, 3, 3], 1)).toEqual([[0, 1, 2, 3]]);
    expect(() => balancedStages([1, 2], 3)).toThrow(/'ranks' must be an integer in \[1, 2\]/);
  });

  test('two ranks, by hand: backprop 18 ms, DNI 10 ms (the round trip half hidden)', () => {
    const stages = balancedStages([4, 6, 2], 2);
    const bp = rankTimes(modules, stages, link, false);
    expect(bp).toEqual([
      { compute: 3, roundTrip: 8 },
      { compute: 7, roundTrip: 0 },
    ]);
    expect(backpropStepMs(bp)).toBeCloseTo(3 + 7 + 8, 12);
    const dni = rankTimes(modules, stages, link, true);
    // max(C_0 = 4, C_1 = 8, (4 + 8 + 8) / 2 = 10)
    expect(dniStepMs(dni)).toBeCloseTo(10, 12);
  });

  test('three ranks, by hand: the run of all three ranks sets the DNI step (28/3 ms)', () => {
    const stages = [[0], [1], [2]];
    expect(backpropStepMs(rankTimes(modules, stages, link, false))).toBeCloseTo(3 + 5 + 2 + 8 + 8, 12);
    // singles 4, 6, 2; pairs (4+6+8)/2 = 9, (6+2+8)/2 = 8; all three (12 + 16)/3
    expect(dniStepMs(rankTimes(modules, stages, link, true))).toBeCloseTo(28 / 3, 12);
    // one rank: no transfer, the sum of the compute
    expect(dniStepMs(rankTimes(modules, [[0, 1, 2]], link, true))).toBeCloseTo(12, 12);
    expect(backpropStepMs(rankTimes(modules, [[0, 1, 2]], link, false))).toBeCloseTo(10, 12);
  });

  test('K equal ranks: C + (K-1)/K of a round trip', () => {
    for (const K of [2, 4, 8]) {
      const ranks = Array.from({ length: K }, (_, k) => ({ compute: 5, roundTrip: k < K - 1 ? 2 : 0 }));
      expect(dniStepMs(ranks)).toBeCloseTo(5 + ((K - 1) / K) * 2, 12);
      expect(backpropStepMs(ranks)).toBeCloseTo(5 * K + 2 * (K - 1), 12);
    }
  });

  test('the closed forms equal the replayed schedule on random ranks', () => {
    const rng = new Random(7);
    for (let trial = 0; trial < 40; trial++) {
      const K = 2 + rng.int(7);
      const ranks = Array.from({ length: K }, (_, k) => ({
        compute: 0.1 + 10 * rng.next(),
        roundTrip: k < K - 1 ? 6 * rng.next() : 0,
      }));
      const share = ranks.map(() => 0.05 + 0.9 * rng.next());
      const formula = dniStepMs(ranks);
      const replayed = simulateSteps(ranks, share, 2000);
      expect(Math.abs(replayed - formula) / formula).toBeLessThan(1e-3);
      expect(simulateSteps(ranks, share, 200, true)).toBeCloseTo(backpropStepMs(ranks), 6);
    }
  });
});
