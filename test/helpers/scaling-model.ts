// The scaling model of a network's modules on K GPUs (docs/distributed-scaling.md): step times
// from each module's compute and the bytes it hands off, for model-parallel backprop and for
// decoupled training (DNI/cDNI, λ = 0) with distribute()'s lockstep schedule. Pure arithmetic:
// bench/distributed_model.ts measures the inputs, test/distributed-scaling.test.ts checks the
// formulas against hand-computed cases and against simulateSteps(), an event-by-event replay of
// the schedule's waits.
//
// Times are in milliseconds, sizes in bytes.

/** One module's work per step. */
export interface ModuleCost {
  /** forward (the last module: with the loss) */
  forward: number;
  /** backward and the optimizer step (the last module: with the loss's gradient) */
  backward: number;
  /** its synthesizer: predict, then regress and update (0 for the last module, and under backprop) */
  synthesizer: number;
  /** bytes of its output h_i (and of δ_i, the same shape); what crosses a cut after this module */
  handoffBytes: number;
}

/** A link between two GPUs (or hosts): a message of b bytes takes latency + b / bandwidth. */
export interface Link {
  name: string;
  latencyUs: number;
  /** GB/s (1e9 bytes per second) in each direction */
  gbPerSecond: number;
}

/** Milliseconds to move `bytes` over `link`: T(b) = α + b / β. */
export function transferMs(bytes: number, link: Link): number {
  return link.latencyUs / 1e3 + bytes / (link.gbPerSecond * 1e6);
}

/**
 * Links one after the other, each message crossing each in turn, not pipelined (e.g. the
 * device-to-host copy, the network, the host-to-device copy of today's mpi()): the latencies
 * add, and so do the times per byte.
 */
export function chain(name: string, links: Link[]): Link {
  const latencyUs = links.reduce((s, l) => s + l.latencyUs, 0);
  const secondsPerGB = links.reduce((s, l) => s + 1 / l.gbPerSecond, 0);
  return { name, latencyUs, gbPerSecond: 1 / secondsPerGB };
}

/** A stage: the modules (0-based, contiguous) one rank runs. */
export type Stage = number[];

/**
 * Modules 0..n-1 split into `ranks` contiguous stages, the largest stage's `weight` as small as
 * it can be (the linear-partition problem, by dynamic programming; n is small). Ties go to
 * the split that puts more modules early.
 */
export function balancedStages(weights: number[], ranks: number): Stage[] {
  const n = weights.length;
  if (!Number.isInteger(ranks) || ranks < 1 || ranks > n)
    throw new RangeError(`balancedStages: 'ranks' must be an integer in [1, ${n}] (one module per rank at least), got ${ranks}`);
  const prefix = [0];
  for (const w of weights) prefix.push(prefix[prefix.length - 1] + w);
  // best[k][j]: the smallest largest-stage weight of modules 0..j-1 in k stages; cut[k][j]: where the last stage starts
  const best = Array.from({ length: ranks + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const cut = Array.from({ length: ranks + 1 }, () => new Array<number>(n + 1).fill(0));
  best[0][0] = 0;
  for (let k = 1; k <= ranks; k++)
    for (let j = k; j <= n; j++)
      for (let s = k - 1; s < j; s++) {
        const v = Math.max(best[k - 1][s], prefix[j] - prefix[s]);
        if (v < best[k][j]) {
          best[k][j] = v;
          cut[k][j] = s;
        }
      }
  const stages: Stage[] = [];
  for (let k = ranks, j = n; k >= 1; k--) {
    const s = cut[k][j];
    stages.unshift(Array.from({ length: j - s }, (_, i) => s + i));
    j = s;
  }
  return stages;
}

/** What the formulas take per rank: its compute per step, and the round trip across the cut above it. */
export interface RankTimes {
  /** C_k: the rank's compute per step */
  compute: number;
  /** T(h_k) + T(δ_k) across the cut between this rank and the next (0 for the last rank) */
  roundTrip: number;
}

/** The per-rank inputs of the formulas for `stages` (with or without the synthesizers). */
export function rankTimes(modules: ModuleCost[], stages: Stage[], link: Link, synthesizers: boolean): RankTimes[] {
  return stages.map((stage, k) => {
    const compute = stage.reduce((s, i) => s + modules[i].forward + modules[i].backward + (synthesizers ? modules[i].synthesizer : 0), 0);
    const top = stage[stage.length - 1];
    const roundTrip = k < stages.length - 1 ? 2 * transferMs(modules[top].handoffBytes, link) : 0;
    return { compute, roundTrip };
  });
}

/**
 * Model-parallel backprop, one batch per step: every rank waits for h from below before its
 * forward and for δ from above before its backward, so nothing overlaps:
 *   P_BP = Σ_k C_k + Σ_{k<K} (T(h_k) + T(δ_k))
 * (with C_k = the rank's forward + backward, no synthesizers). On one GPU: Σ C.
 */
export function backpropStepMs(ranks: RankTimes[]): number {
  return ranks.reduce((s, r) => s + r.compute + r.roundTrip, 0);
}

/**
 * Decoupled training (λ = 0) with distribute()'s lockstep schedule, in the steady state. Rank
 * k waits for h_{k-1} of step t before its forward of step t, and, in step t+1, for δ_k of
 * step t before its synthesizer predicts again (after its forward of step t+1); it never
 * waits before a backward. The step time is then the largest mean, over any run of
 * neighbouring ranks a..b, of their compute plus the round trips between them:
 *   P_DNI = max_{a ≤ b} [ Σ_{k=a..b} C_k + Σ_{k=a..b-1} (T(h_k) + T(δ_k)) ] / (b - a + 1)
 * (the maximum cycle mean of the schedule's waits: a cycle goes up through the h's of one
 * step and comes down through the δ's, one rank per step). With a = b this is C_k: no rank is
 * faster than its own compute. K equal ranks give C + (K-1)/K · (T(h) + T(δ)).
 */
export function dniStepMs(ranks: RankTimes[]): number {
  let worst = 0;
  for (let a = 0; a < ranks.length; a++) {
    let sum = 0;
    for (let b = a; b < ranks.length; b++) {
      sum += ranks[b].compute + (b > a ? ranks[b - 1].roundTrip : 0);
      worst = Math.max(worst, sum / (b - a + 1));
    }
  }
  return worst;
}

/**
 * The lockstep schedule replayed step by step (a check of dniStepMs, and with `lambda1` of
 * backpropStepMs): per rank k and step t,
 *   start_k(t)  = max(end_k(t-1), up_{k-1}(t) + T(h_{k-1}))      (h from below; none for rank 0)
 *   up_k(t)     = start_k(t) + F_k                                  (its forward done: h sent up)
 *   ready_k(t)  = max(up_k(t), down_{k+1}(t-1) + T(δ_k))           (δ_k of the previous step, λ = 0)
 *               = max(up_k(t), down_{k+1}(t) + T(δ_k))              (δ_k of this step, λ = 1)
 *   end_k(t)    = down_k(t) = ready_k(t) + C_k - F_k                 (backward done: δ sent down)
 * where F_k is the part of C_k before h is sent (`forwardShare` · C_k). Returns the mean step
 * time over the last `steps` / 2 steps of the top rank.
 */
export function simulateSteps(ranks: RankTimes[], forwardShare: number[], steps: number, lambda1 = false): number {
  const K = ranks.length;
  const half = (r: RankTimes) => r.roundTrip / 2; // T(h) = T(δ): the same bytes each way
  let end = new Array<number>(K).fill(0);
  let down = new Array<number>(K).fill(-Infinity); // previous step's δ sends
  const ends: number[] = [];
  for (let t = 0; t < steps; t++) {
    const up = new Array<number>(K).fill(0);
    const start = new Array<number>(K).fill(0);
    for (let k = 0; k < K; k++) {
      start[k] = Math.max(end[k], k > 0 ? up[k - 1] + half(ranks[k - 1]) : 0);
      up[k] = start[k] + forwardShare[k] * ranks[k].compute;
    }
    const nextDown = new Array<number>(K).fill(0);
    const nextEnd = new Array<number>(K).fill(0);
    for (let k = K - 1; k >= 0; k--) {
      const fromAbove = k === K - 1 ? -Infinity : (lambda1 ? nextDown[k + 1] : down[k + 1]) + half(ranks[k]);
      const ready = Math.max(up[k], fromAbove);
      nextEnd[k] = nextDown[k] = ready + (1 - forwardShare[k]) * ranks[k].compute;
    }
    end = nextEnd;
    down = nextDown;
    ends.push(Math.max(...end));
  }
  const from = Math.floor(steps / 2);
  return (ends[steps - 1] - ends[from - 1]) / (steps - from);
}
