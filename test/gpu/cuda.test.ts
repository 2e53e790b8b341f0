// CUDA backend against the CPU backend, for `npm test` on a machine with a GPU: a few ops on
// the same random inputs on both devices, the stream/event semantics and a label error. The
// whole op-by-op check is bench/gpu_check.ts (npm run gpu:check); tolerances are explained there,
// and both compare with test/helpers/compare.ts.
// Without a CUDA device the CUDA block is skipped (its name says why); the helper tests run anywhere.
import { native, NativeStream, NativeTensor } from '../../ts/native';
import { Random } from '../../ts/random';
import { cudaUnavailableReason } from '../../ts/build-info';
import { TOL, U, compare, compareBits, describeReport as describeValues, gemmTolerance, mapF64 } from '../helpers/compare';
import type { CompareReport } from '../helpers/compare';
import { randomArray, randomLabels } from '../helpers/reference';

/** A report with the GPU as `got` and the CPU as `want`, as gpu:check prints it. */
const describeReport = (r: CompareReport) => describeValues(r, { got: 'gpu', want: 'cpu' });
import { adamStep } from '../helpers/optimizer-steps';
import { CopyTask, Device, SGD } from '../../ts';
import { LSTMSequenceModel } from '../../ts/recurrent/model';
import { RecurrentTraining } from '../../ts/recurrent/training';

describe('GPU check helpers (no GPU needed)', () => {
  test('compare: relative error against the CPU value, floor, per-element scale', () => {
    expect(compare([1, 2], [1, 2]).worst).toBe(0);
    expect(compare([1.0001], [1]).worst).toBeCloseTo(1e-4, 10);
    expect(compare([1.0001], [1]).worst).toBeGreaterThan(TOL);
    expect(compare([1 + 5e-6], [1]).worst).toBeLessThanOrEqual(TOL);
    // Near zero: the floor, or the scale of the terms that cancelled, sets the yardstick.
    expect(compare([1e-9], [0], { floor: 1e-6 }).worst).toBeCloseTo(1e-3, 10);
    expect(compare([1e-9], [0], { scale: [1] }).worst).toBeCloseTo(1e-9, 15);
    const r = compare([1, 2, 3.5, 4], [1, 2, 3, 4]);
    expect(r.index).toBe(2);
    expect(r.got).toBe(3.5);
    expect(r.want).toBe(3);
    expect(describeReport(r)).toMatch(/at \[2\]: gpu 3.5, cpu 3/);
  });

  test('compare: NaN and infinities never pass, also when both sides agree', () => {
    for (const [got, want] of [
      [NaN, 1],
      [1, NaN],
      [NaN, NaN],
      [Infinity, Infinity],
      [-Infinity, 1],
      [1, Infinity],
    ]) {
      const r = compare([got], [want]);
      expect(r.worst).toBe(Infinity);
      expect(r.nonFinite).toBe(1);
    }
    expect(compare([1, 2], [1, 2, 3]).worst).toBe(Infinity);
    expect(compare([1], [1], { scale: [1, 2] }).lengthMismatch).toBeDefined();
  });

  test('compareBits: bit for bit, NaN equals NaN, -0 differs from +0', () => {
    expect(compareBits(Float32Array.from([NaN, 1]), Float32Array.from([NaN, 1])).worst).toBe(0);
    expect(compareBits(Float32Array.from([-0]), Float32Array.from([0])).worst).toBe(Infinity);
    expect(compareBits(Float32Array.from([1, 2]), Float32Array.from([1, Math.fround(2 + 2 ** -22)])).index).toBe(1);
    expect(compareBits(Int32Array.from([5, -7]), Int32Array.from([5, -7])).worst).toBe(0);
    expect(compareBits(new Float32Array(0), new Float32Array(0)).worst).toBe(0);
  });

  test('gemmTolerance is twice the float32 dot-product bound (K + 2) u', () => {
    expect(gemmTolerance(0)).toBe(4 * U);
    expect(gemmTolerance(999)).toBeCloseTo(2 * 1001 * 2 ** -24, 15);
  });

  test('random inputs are non-zero and labels cover every class', () => {
    const a = randomArray(new Random(1), 10000);
    expect(a.every((v) => Math.abs(v) >= 0.1 && Math.abs(v) < 1)).toBe(true);
    expect(a.some((v) => v < 0) && a.some((v) => v > 0)).toBe(true);
    const l = randomLabels(new Random(2), 50, 10);
    expect(new Set(l).size).toBe(10);
  });

  test('buildInfo names the CUDA runtime error behind a missing device, and the skip reason quotes it', () => {
    const info = native.buildInfo();
    expect(typeof info.cudaError).toBe('string');
    if (!info.cuda || info.cudaDevices > 0) expect(info.cudaError).toBe('');
    else if (info.cudaError) {
      // e.g. 'cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)' here
      expect(info.cudaError).toMatch(/^cudaError\w+ \(/);
      expect(cudaUnavailableReason()).toContain(info.cudaError);
    }
  });
});

const why = cudaUnavailableReason();
const describeCuda = why ? describe.skip : describe;

describeCuda(`CUDA (cuda:0) against the CPU${why ? ` — skipped: ${why}` : ''}`, () => {
  const GPU = 'cuda:0' as const;
  const ops = native.ops;
  let cpuS: NativeStream;
  let gpuS: NativeStream;
  let live: NativeTensor[] = [];
  beforeAll(() => {
    cpuS = new native.Stream('cpu');
    gpuS = new native.Stream(GPU);
  });
  afterEach(() => {
    for (const t of live) if (!t.disposed) t.dispose();
    live = [];
  });

  function make(device: 'cpu' | typeof GPU, data: Float32Array | Int32Array, shape: number[]): NativeTensor {
    const t = new native.Tensor(shape, data instanceof Int32Array ? 'int32' : 'float32', device, data);
    live.push(t);
    return t;
  }
  /** [cpu, gpu] copies of the same data */
  function pair(data: Float32Array | Int32Array, shape: number[]): [NativeTensor, NativeTensor] {
    return [make('cpu', data, shape), make(GPU, data, shape)];
  }
  function nanPair(shape: number[]): [NativeTensor, NativeTensor] {
    return pair(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), shape);
  }
  async function read(p: [NativeTensor, NativeTensor]): Promise<[Float32Array, Float32Array]> {
    const [c, g] = await Promise.all([p[0].read(cpuS), p[1].read(gpuS)]);
    return [c as Float32Array, g as Float32Array];
  }
  function expectWithin(
    what: string,
    gpu: ArrayLike<number>,
    cpu: ArrayLike<number>,
    tol: number,
    opts: { scale?: ArrayLike<number>; floor?: number } = {},
  ): void {
    const r = compare(gpu, cpu, opts);
    if (!(r.worst <= tol)) throw new Error(`${what}: ${describeReport(r)} (tolerance ${tol})`);
  }

  test.each([
    [7, 13, 5],
    [33, 65, 17],
    [130, 257, 70],
    [1000, 999, 1001],
    [1537, 129, 1543],
  ])('gemm M=%p K=%p N=%p, all four transposes, beta = -0.5 and beta = 0 over NaN C', async (M, K, N) => {
    const rng = new Random(M + K + N);
    for (const [ta, tb] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ]) {
      const a = randomArray(rng, M * K),
        b = randomArray(rng, K * N),
        c0 = randomArray(rng, M * N);
      const sa = ta ? [K, M] : [M, K],
        sb = tb ? [N, K] : [K, N];
      const A = pair(a, sa),
        B = pair(b, sb);
      const absAB = make('cpu', new Float32Array(M * N), [M, N]);
      ops.gemm(cpuS, make('cpu', a.map(Math.abs), sa), make('cpu', b.map(Math.abs), sb), absAB, ta, tb, 1, 0);
      const ab = (await absAB.read(cpuS)) as Float32Array;
      for (const [alpha, beta] of [
        [1.25, -0.5],
        [0.75, 0],
      ]) {
        const C = beta === 0 ? nanPair([M, N]) : pair(c0, [M, N]);
        ops.gemm(cpuS, A[0], B[0], C[0], ta, tb, alpha, beta);
        ops.gemm(gpuS, A[1], B[1], C[1], ta, tb, alpha, beta);
        const [c, g] = await read(C);
        const scale = mapF64(ab, (v, i) => Math.abs(alpha) * v + Math.abs(beta * c0[i]));
        expectWithin(`gemm ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} beta ${beta}`, g, c, gemmTolerance(K), { scale });
      }
    }
  });

  test('batchNorm forward (training, |mean| >> std) and backward [256, 300]', async () => {
    const rows = 256,
      cols = 300,
      rng = new Random(7);
    const x = randomArray(rng, rows * cols).map((v, i) => 100 + (i % cols) * 0.01 + v);
    const gamma = randomArray(rng, cols, 0.5, 2),
      beta = randomArray(rng, cols);
    const X = pair(x, [rows, cols]),
      G = pair(gamma, [cols]),
      Bt = pair(beta, [cols]);
    const Y = nanPair([rows, cols]),
      RM = pair(new Float32Array(cols), [cols]),
      RV = pair(new Float32Array(cols).fill(1), [cols]);
    const SM = nanPair([cols]),
      SI = nanPair([cols]);
    for (const [k, s] of [
      [0, cpuS],
      [1, gpuS],
    ] as const)
      ops.batchNormForward(s, X[k], G[k], Bt[k], Y[k], RM[k], RV[k], SM[k], SI[k], 0.1, 1e-5, true);
    const [mean] = await read(SM);
    const [invStd] = await read(SI);
    const [yc, yg] = await read(Y);
    expectWithin('y', yg, yc, TOL, {
      scale: mapF64(x, (v, i) => Math.abs((v - mean[i % cols]) * invStd[i % cols] * gamma[i % cols]) + Math.abs(beta[i % cols])),
    });
    for (const [name, t] of [
      ['saveInvStd', SI],
      ['runningVar', RV],
    ] as const) {
      const [c, g] = await read(t);
      expectWithin(name, g, c, TOL);
    }
    const [mc, mg] = await read(SM);
    expectWithin('saveMean', mg, mc, TOL, { scale: new Float64Array(cols).fill(100) });

    const dy = randomArray(rng, rows * cols);
    const DY = pair(dy, [rows, cols]),
      DX = nanPair([rows, cols]);
    const DG = pair(new Float32Array(cols), [cols]),
      DB = pair(new Float32Array(cols), [cols]);
    const SMc = pair(mean, [cols]),
      SIc = pair(invStd, [cols]);
    for (const [k, s] of [
      [0, cpuS],
      [1, gpuS],
    ] as const)
      ops.batchNormBackward(s, X[k], DY[k], G[k], SMc[k], SIc[k], DX[k], DG[k], DB[k]);
    // dx = gamma invStd (dy - mean(dy) - xhat mean(dy xhat)): scale = the magnitudes of its terms.
    const xhat = mapF64(x, (v, i) => (v - mean[i % cols]) * invStd[i % cols]);
    const sumAbsDy = new Float64Array(cols),
      sumAbsDyX = new Float64Array(cols);
    dy.forEach((v, i) => {
      sumAbsDy[i % cols] += Math.abs(v);
      sumAbsDyX[i % cols] += Math.abs(v * xhat[i]);
    });
    const [dxc, dxg] = await read(DX);
    expectWithin('dx', dxg, dxc, TOL, {
      scale: mapF64(dy, (v, i) => {
        const c = i % cols;
        return Math.abs(gamma[c]) * invStd[c] * (Math.abs(v) + sumAbsDy[c] / rows + (Math.abs(xhat[i]) * sumAbsDyX[c]) / rows);
      }),
    });
    const [dgc, dgg] = await read(DG);
    expectWithin('dgamma', dgg, dgc, TOL, { scale: sumAbsDyX });
    const [dbc, dbg] = await read(DB);
    expectWithin('dbeta', dbg, dbc, TOL, { scale: sumAbsDy });
  });

  test('softmax cross-entropy forward/backward [300, 1000]; an out-of-range label rejects the stream', async () => {
    const rows = 300,
      classes = 1000,
      rng = new Random(8);
    const z = randomArray(rng, rows * classes, 0.1, 3),
      lab = randomLabels(rng, rows, classes);
    const Z = pair(z, [rows, classes]),
      L = pair(lab, [rows]),
      P = nanPair([rows, classes]),
      LOSS = nanPair([1]),
      D = nanPair([rows, classes]);
    for (const [k, s] of [
      [0, cpuS],
      [1, gpuS],
    ] as const) {
      ops.softmaxCrossEntropyForward(s, Z[k], L[k], P[k], LOSS[k]);
      ops.softmaxCrossEntropyBackward(s, P[k], L[k], D[k], 1);
    }
    const [lc, lg] = await read(LOSS);
    expectWithin('loss', lg, lc, TOL);
    const [dc, dg] = await read(D);
    expectWithin('dlogits', dg, dc, TOL, {
      scale: mapF64(dc, (v, i) => (Math.abs(v) + (lab[Math.floor(i / classes)] === i % classes ? 2 : 0)) / rows),
    });

    const s = new native.Stream(GPU);
    const probs = make(GPU, new Float32Array(6).fill(NaN), [2, 3]),
      loss = make(GPU, new Float32Array(1).fill(NaN), [1]);
    ops.softmaxCrossEntropyForward(
      s,
      make(GPU, Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]),
      make(GPU, Int32Array.from([0, 3]), [2]),
      probs,
      loss,
    );
    await expect(s.synchronize()).rejects.toThrow(/label/);
    expect(compareBits((await probs.read(s)) as Float32Array, new Float32Array(6).fill(NaN)).worst).toBe(0);
    expect(compareBits((await loss.read(s)) as Float32Array, new Float32Array(1).fill(NaN)).worst).toBe(0);
  });

  test('adamStepGroup on one tensor over 6 steps matches the CPU', async () => {
    const n = 100003,
      rng = new Random(9);
    const P = pair(randomArray(rng, n), [n]),
      M = pair(new Float32Array(n), [n]),
      V = pair(new Float32Array(n), [n]);
    for (let step = 1; step <= 6; step++) {
      const G = pair(randomArray(rng, n), [n]);
      for (const [k, s] of [
        [0, cpuS],
        [1, gpuS],
      ] as const)
        adamStep(s, P[k], G[k], M[k], V[k], 0.01, 0.9, 0.999, 1e-8, 0.01, step);
    }
    const [pc, pg] = await read(P);
    expectWithin('param', pg, pc, TOL, { floor: 0.1 });
    const [vc, vg] = await read(V);
    expectWithin('v', vg, vc, TOL);
  });

  test('adamStepGroup over 40 tensors, empty ones among them (two launches): each stepped once', async () => {
    const rng = new Random(10);
    const sizes = Array.from({ length: 40 }, (_, i) => (i % 9 === 4 ? 0 : 1 + ((i * 977) % 2600)));
    const P = sizes.map((n) => pair(randomArray(rng, n), [n])),
      G = sizes.map((n) => pair(randomArray(rng, n), [n]));
    const M = sizes.map((n) => pair(new Float32Array(n), [n])),
      V = sizes.map((n) => pair(new Float32Array(n), [n]));
    const H = pair(Float32Array.from(native.adamScalars(0.01, 0.9, 0.999, 1)), [2]);
    for (const [k, s] of [
      [0, cpuS],
      [1, gpuS],
    ] as const)
      ops.adamStepGroup(
        s,
        P.map((p) => p[k]),
        G.map((g) => g[k]),
        M.map((m) => m[k]),
        V.map((v) => v[k]),
        H[k],
        0.9,
        0.999,
        1e-8,
        0.01,
      );
    for (let t = 0; t < sizes.length; t++) {
      const [pc, pg] = await read(P[t]);
      expectWithin(`param of tensor ${t}`, pg, pc, TOL, { floor: 0.1 });
    }
  });

  test('linearForward (the GEMM with its bias + ReLU epilogue) matches the CPU', async () => {
    const [B, inF, outF] = [256, 784, 256];
    const rng = new Random(12);
    const x = randomArray(rng, B * inF),
      w = randomArray(rng, outF * inF),
      b = randomArray(rng, outF);
    const X = pair(x, [B, inF]),
      W = pair(w, [outF, inF]),
      Bias = pair(b, [outF]),
      Y = nanPair([B, outF]);
    for (const [k, s] of [
      [0, cpuS],
      [1, gpuS],
    ] as const)
      ops.linearForward(s, X[k], W[k], Bias[k], Y[k], 'relu');
    const [yc, yg] = await read(Y);
    // The pre-activation's scale: all inputs are positive, so it is the value itself.
    expectWithin('y', yg, yc, gemmTolerance(inF), { floor: 1 });
  });

  test('a graph with two streams replays exactly what it recorded, launch after launch', async () => {
    const main = new native.Stream(GPU),
      side = new native.Stream(GPU);
    const fork = new native.Event(GPU),
      join = new native.Event(GPU);
    const a = make(GPU, Float32Array.from([1, 1]), [2]),
      b = make(GPU, new Float32Array(2), [2]);
    native.beginCapture(main);
    ops.axpby(main, 2, a, 0, a);
    fork.record(main);
    side.wait(fork);
    ops.axpby(side, 1, a, 1, b);
    join.record(side);
    main.wait(join);
    ops.axpby(main, 1, b, 1, a);
    const graph = native.endCapture(main);
    for (let i = 0; i < 3; i++) graph.launch(main);
    let [ra, rb] = [1, 0];
    for (let i = 0; i < 3; i++) {
      ra *= 2;
      rb += ra;
      ra += rb;
    }
    expect(Array.from((await a.read(main)) as Float32Array)).toEqual([ra, ra]);
    expect(Array.from((await b.read(main)) as Float32Array)).toEqual([rb, rb]);
    graph.dispose();
  });

  test("streams: a wait on another stream's event orders the work; event.synchronize(); a 12 MiB round trip", async () => {
    const n = 2048,
      reps = 30;
    const s1 = new native.Stream(GPU),
      s2 = new native.Stream(GPU);
    const a = make(GPU, new Float32Array(n * n).fill(1 / 1024), [n, n]);
    const c = make(GPU, new Float32Array(n * n), [n, n]);
    for (let i = 0; i < reps; i++) ops.gemm(s1, a, a, c, false, false, 1, 1);
    const e = new native.Event(GPU);
    e.record(s1);
    s2.wait(e);
    const d = make(GPU, new Float32Array(n * n).fill(NaN), [n, n]);
    ops.copy(s2, c, d);
    const v = (await d.read(s2)) as Float32Array;
    expect(v.every((x) => x === reps * 2 ** -9)).toBe(true);
    await e.synchronize();
    await new native.Event(GPU).synchronize(); // never recorded: resolves

    const big = randomArray(new Random(10), 3 << 20);
    const t = make(GPU, big, [big.length]);
    expect(compareBits((await t.read()) as Float32Array, big).worst).toBe(0);
  });

  test('write (stream-ordered upload through pinned staging): ordered with the stream, data copied at the call, more writes in flight than staging buffers', async () => {
    const n = 2048,
      s = new native.Stream(GPU);
    const a = make(GPU, new Float32Array(n * n).fill(1 / 1024), [n, n]);
    const c = make(GPU, new Float32Array(n * n), [n, n]);
    for (let i = 0; i < 20; i++) ops.gemm(s, a, a, c, false, false, 1, 1); // keeps the stream busy
    const m = 100_000,
      writes = 9; // more than the backend's 4 staging buffers: later ones wait for earlier copies
    const x = make(GPU, new Float32Array(m).fill(-1), [m]);
    const before = x.read(s);
    const host = new Float32Array(m);
    const reads: Promise<Float32Array | Int32Array>[] = [];
    for (let w = 0; w < writes; w++) {
      for (let i = 0; i < m; i++) host[i] = w * m + i;
      x.write(host, s); // `host` changes right after: the call copied it
      reads.push(x.read(s));
    }
    expect((await before).every((v) => v === -1)).toBe(true);
    const got = await Promise.all(reads);
    for (let w = 0; w < writes; w++) expect(got[w].every((v, i) => v === w * m + i)).toBe(true);
  });

  test('reads after label-checked ops: each read gets its own value and its own label error, in order', async () => {
    // The download's copy and the label flags are host work done by the read's one host
    // function (cuda/runtime_streams.cuh, "Host work"): many reads in flight, none awaited yet.
    const s = new native.Stream(GPU);
    const rows = 6,
      classes = 4;
    const logits = make(GPU, randomArray(new Random(11), rows * classes), [rows, classes]);
    const good = make(GPU, Int32Array.from([0, 1, -1, 3, 2, 1]), [rows]);
    const bad = make(GPU, Int32Array.from([0, 1, 4, 3, 2, 1]), [rows]);
    const probs = make(GPU, new Float32Array(rows * classes), [rows, classes]);
    const loss = make(GPU, new Float32Array(1), [1]);
    const reads: Promise<Float32Array | Int32Array>[] = [];
    for (let i = 0; i < 70; i++) {
      ops.softmaxCrossEntropyForward(s, logits, i === 40 ? bad : good, probs, loss);
      reads.push(loss.read(s));
    }
    const settled = await Promise.allSettled(reads);
    const values = settled.map((r) => (r.status === 'fulfilled' ? r.value[0] : NaN));
    expect(settled.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(settled[40].status).toBe('rejected');
    expect(String((settled[40] as PromiseRejectedResult).reason)).toMatch(/a label is outside \[0, 4\)/);
    const first = values[0];
    expect(first).toBeGreaterThan(0);
    for (const [i, v] of values.entries()) if (i !== 40) expect(v).toBe(first);
  });

  test('recurrent windows (DNI, M on its own stream): the GPU follows the CPU; one window ahead is bit for bit the awaited run', async () => {
    const source = new CopyTask(32, { seed: 3, curriculum: { level: 3 } });
    const data = Array.from({ length: 6 }, () => source.nextWindow(5));
    const trainer = (device: Device) =>
      new RecurrentTraining(new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden: 64 }), {
        method: 'dni',
        streams: 'separate',
        device,
        seed: 3,
        optimizer: () => new SGD({ lr: 0.1 }),
        synthesizer: {},
      });
    const weights = async (t: RecurrentTraining) => {
      await t.synchronize();
      return Promise.all([...t.model.parameters(), ...t.synthesizer!.parameters()].map((p) => p.value.readFloat32(t.stream)));
    };
    const cpu = trainer(Device.cpu()),
      awaited = trainer(Device.cuda(0)),
      ahead = trainer(Device.cuda(0));
    try {
      const cpuLosses: number[] = [];
      const gpuLosses: number[] = [];
      for (const w of data) {
        cpuLosses.push((await cpu.step(w)).loss);
        gpuLosses.push((await awaited.step(w)).loss);
      }
      const pending = data.map((w) => ahead.step(w)); // all enqueued before any is awaited
      const aheadLosses = (await Promise.all(pending)).map((m) => m.loss);
      expect(aheadLosses).toEqual(gpuLosses);
      const [wc, wa, wp] = await Promise.all([weights(cpu), weights(awaited), weights(ahead)]);
      wa.forEach((w, i) => expect(compareBits(wp[i], w).worst).toBe(0));
      // Tolerance as bench/gpu_check.ts's 'recurrent' section: 1e-3, losses relative, weights absolute at their scale (floor 0.1).
      expectWithin('window losses', gpuLosses, cpuLosses, 1e-3, { floor: 1e-3 });
      wc.forEach((w, i) => expectWithin(`weights ${i}`, wa[i], w, 1e-3, { floor: 0.1 }));
    } finally {
      cpu.dispose();
      awaited.dispose();
      ahead.dispose();
    }
  });
});
