// The scaling model on paper (docs/distributed-scaling.md): the step time of a decoupled FCN's
// modules on K = 1..8 GPUs, model-parallel backprop against DNI/cDNI with distribute()'s
// lockstep schedule, over NVLink and over 100 Gb/s Ethernet (test/helpers/scaling-model.ts holds the
// formulas).
//
// Measured here, per module: the forward, backward (with the optimizer step) and synthesizer
// (predict, regress, update) time on this machine's CPU, each phase timed alone (enqueued,
// then the stream synchronised), the median of --reps steps after --warmup; the host's enqueue
// time of each phase (until the call returns); the ops each phase runs, with their GEMM FLOPs
// and the bytes the other ops move (test/helpers/op-work.ts), and the bytes each module hands
// off (h_i up, δ_i down: its output's size).
//
// Assumed (flags, stated in the results): the GPU's time per module is not measured (no GPU
// here). It is estimated per op as max(floor, FLOPs / GEMM rate + bytes / memory rate); with
// --host-floor a phase takes at least its host enqueue time as measured here (the host must
// issue the ops; off by default: this shared machine's host is slow and noisy, and a captured
// graph issues a step in one launch). The links are α + b/β with the figures below.
//
//   node dist/bench/distributed_model.js [--cases fcn6x256,fcn6x1024,fcn8x1024] [--method cdni|dni]
//     [--batch 256] [--reps 9] [--warmup 3] [--gpu-tflops 25] [--gpu-gbs 3000] [--gpu-op-us 4] [--host-floor]
//     [--nvlink-gbs 450] [--nvlink-us 5] [--eth-gbs 12.5] [--eth-us 15] [--pcie-gbs 50] [--pcie-us 10]
//     [--out distributed-model]
import * as os from 'os';
import { Adam, Arena, DecoupledTraining, Device, Random, Tensor, Trainer, decouple, mlp, native } from '../ts';
import { Prediction } from '../ts/dni/synthesizer';
import { LossForward } from '../ts/nn/losses';
import { Forwarded, StepContext } from '../ts/nn/module';
import { OpCall, opWork, traceOps } from '../test/helpers/op-work';
import { benchFlags, numberFlag, positiveIntFlag, resultName } from './flags';
import { writeResults } from './paths';
import { commandLine, cpuModel } from './stats';
import { Link, ModuleCost, backpropStepMs, balancedStages, chain, dniStepMs, rankTimes, transferMs } from '../test/helpers/scaling-model';

const PHASES = ['forward', 'backward', 'synthesizer'] as const;
type Phase = (typeof PHASES)[number];

interface GpuRates {
  tflops: number;
  gbPerSecond: number;
  opFloorUs: number;
  /** a phase takes at least its host enqueue time as measured here */
  hostFloor: boolean;
}

/** One phase of one module: measured on the CPU, counted from its ops, estimated for the GPU. */
interface PhaseResult {
  cpuMs: number;
  hostEnqueueMs: number;
  ops: number;
  gemmFlops: number;
  bytes: number;
  /** Σ per-op estimate (assumed rates) */
  gpuOpsMs: number;
  /** gpuOpsMs, or with --host-floor max(gpuOpsMs, hostEnqueueMs) (the host must issue the ops) */
  gpuMs: number;
}

interface ModuleResult {
  module: number;
  outputWidth: number;
  handoffBytes: number;
  phases: Record<Phase, PhaseResult>;
}

interface CaseResult {
  name: string;
  about: string;
  modules: ModuleResult[];
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** The estimated GPU milliseconds of the ops of one phase. */
function gpuEstimateMs(calls: OpCall[], g: GpuRates): number {
  return calls.reduce((sum, c) => {
    const w = opWork(c);
    return sum + Math.max(g.opFloorUs / 1e3, w.gemmFlops / (g.tflops * 1e9) + w.bytes / (g.gbPerSecond * 1e6));
  }, 0);
}

async function measure(depth: number, width: number, batch: number, method: string, reps: number, warmup: number, g: GpuRates) {
  const device = Device.cpu();
  const network = decouple(mlp(784, new Array<number>(depth).fill(width), 10), {
    synthesizer: method === 'cdni' ? { conditioned: true } : {},
  });
  const trainer = new Trainer(network, { optimizer: () => new Adam({ lr: 1e-4 }), seed: 1, device });
  const strategy = trainer.strategy as DecoupledTraining;
  const stream = trainer.stream;
  const rng = new Random(2);
  const x = Tensor.fromArray(rng.uniformArray(batch * 784, 0, 1), [batch, 784], { device });
  const y = Tensor.fromArray(
    Int32Array.from({ length: batch }, () => rng.int(10)),
    [batch],
    { device },
  );
  const n = network.modules.length;
  const cpu = PHASES.map(() => Array.from({ length: n }, () => [] as number[]));
  const host = PHASES.map(() => Array.from({ length: n }, () => [] as number[]));
  const traced = PHASES.map(() => Array.from({ length: n }, () => [] as OpCall[]));
  const outputWidth: number[] = [];

  // One step, module by module as distribute() runs them, each phase alone on the stream.
  // mode 'time' records the times, 'trace' the ops (untimed: tracing slows the host).
  const step = async (mode: 'warm' | 'time' | 'trace') => {
    const arena = new Arena();
    const cpuStep = PHASES.map(() => new Array<number>(n).fill(0));
    const hostStep = PHASES.map(() => new Array<number>(n).fill(0));
    const ctx: StepContext = { device, stream, training: true, arena };
    const phase = async (i: number, p: Phase, run: () => void) => {
      const k = PHASES.indexOf(p);
      if (mode === 'trace') {
        traced[k][i].push(
          ...(await traceOps(async () => {
            run();
            await stream.synchronize();
          })),
        );
        return;
      }
      const t0 = performance.now();
      run();
      const t1 = performance.now();
      await stream.synchronize();
      const t2 = performance.now();
      if (mode === 'time') {
        cpuStep[k][i] += t2 - t0; // the synthesizer's two phases (predict, regress) add up
        hostStep[k][i] += t1 - t0;
      }
    };
    const fw: Forwarded[] = [];
    const predictions: Prediction[] = [];
    let loss: LossForward | undefined;
    for (let i = 0; i < n; i++) {
      await phase(i, 'forward', () => {
        fw[i] = network.modules[i].forward(i === 0 ? x : fw[i - 1].output, ctx);
        if (i === n - 1) loss = trainer.loss.forward(fw[i].output, y, ctx);
      });
      outputWidth[i] = fw[i].output.shape[1];
      if (i < n - 1) await phase(i, 'synthesizer', () => (predictions[i] = network.synthesizers[i].predict(fw[i].output, y, ctx)));
    }
    const downs: (Tensor | undefined)[] = [];
    for (let i = n - 1; i >= 0; i--) {
      await phase(i, 'backward', () => {
        const grad = i === n - 1 ? loss!.backward(ctx) : predictions[i].gradient;
        downs[i] = fw[i].backward(grad, ctx, i > 0);
        strategy.optimizers[i].step(network.modules[i].parameters(), stream);
      });
      if (i < n - 1) await phase(i, 'synthesizer', () => predictions[i].learn(downs[i + 1]!, ctx));
    }
    arena.dispose();
    if (mode === 'time')
      PHASES.forEach((_, k) => {
        for (let i = 0; i < n; i++) {
          cpu[k][i].push(cpuStep[k][i]);
          host[k][i].push(hostStep[k][i]);
        }
      });
  };
  for (let r = 0; r < warmup; r++) await step('warm');
  for (let r = 0; r < reps; r++) await step('time');
  await step('trace');
  const modules: ModuleResult[] = [];
  for (let i = 0; i < n; i++) {
    const phases = {} as Record<Phase, PhaseResult>;
    PHASES.forEach((p, k) => {
      const calls = traced[k][i];
      const work = calls.map(opWork);
      // the best, not the median: the host's own cost, without the other processes' preemptions
      const hostEnqueueMs = host[k][i].length ? Math.min(...host[k][i]) : 0;
      const gpuOpsMs = gpuEstimateMs(calls, g);
      phases[p] = {
        cpuMs: cpu[k][i].length ? median(cpu[k][i]) : 0,
        hostEnqueueMs,
        ops: calls.length,
        gemmFlops: work.reduce((s, w) => s + w.gemmFlops, 0),
        bytes: work.reduce((s, w) => s + w.bytes, 0),
        gpuOpsMs,
        gpuMs: g.hostFloor ? Math.max(gpuOpsMs, hostEnqueueMs) : gpuOpsMs,
      };
    });
    // h_i and δ_i: float32, [batch, width]; the last module's output (the logits) is not handed off
    modules.push({ module: i + 1, outputWidth: outputWidth[i], handoffBytes: i < n - 1 ? 4 * batch * outputWidth[i] : 0, phases });
  }
  trainer.dispose();
  x.dispose();
  y.dispose();
  return modules;
}

function costs(c: CaseResult, which: 'cpuMs' | 'gpuMs'): ModuleCost[] {
  return c.modules.map((m) => ({
    forward: m.phases.forward[which],
    backward: m.phases.backward[which],
    synthesizer: m.phases.synthesizer[which],
    handoffBytes: m.handoffBytes,
  }));
}

interface Row {
  ranks: number;
  stages: number[][];
  /** per link name: backprop and DNI step ms */
  byLink: Record<string, { backprop: number; dni: number }>;
  /** max_k C_k: the DNI step if no transfer were ever waited for */
  dniComputeBound: number;
}

function scaling(modules: ModuleCost[], links: Link[], maxRanks: number): Row[] {
  const rows: Row[] = [];
  const dniWeights = modules.map((m) => m.forward + m.backward + m.synthesizer);
  for (let K = 1; K <= Math.min(maxRanks, modules.length); K++) {
    const stages = balancedStages(dniWeights, K);
    const byLink: Row['byLink'] = {};
    for (const link of links)
      byLink[link.name] = {
        backprop: backpropStepMs(rankTimes(modules, stages, link, false)),
        dni: dniStepMs(rankTimes(modules, stages, link, true)),
      };
    const dniComputeBound = Math.max(...rankTimes(modules, stages, links[0], true).map((r) => r.compute));
    rows.push({ ranks: K, stages, byLink, dniComputeBound });
  }
  return rows;
}

const f3 = (v: number) => (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));
const stagesText = (stages: number[][]) =>
  stages.map((s) => (s.length === 1 ? `${s[0] + 1}` : `${s[0] + 1}-${s[s.length - 1] + 1}`)).join(', ');

function scalingTable(rows: Row[], links: Link[], unit: string): string[] {
  const base = rows[0].byLink[links[0].name].backprop; // one device, backprop
  const cell = (ms: number) => `${f3(ms)} (${(base / ms).toFixed(2)}x)`;
  return [
    `| K | modules per rank | ${links.map((l) => `BP, ${l.name}`).join(' | ')} | ${links.map((l) => `DNI, ${l.name}`).join(' | ')} | DNI, no wait (max C_k) |`,
    `|---|---|${links.map(() => '---|').join('')}${links.map(() => '---|').join('')}---|`,
    ...rows.map(
      (r) =>
        `| ${r.ranks} | ${stagesText(r.stages)} | ${links.map((l) => cell(r.byLink[l.name].backprop)).join(' | ')} | ` +
        `${links.map((l) => cell(r.byLink[l.name].dni)).join(' | ')} | ${cell(r.dniComputeBound)} |`,
    ),
    '',
    `${unit} per step, and in brackets the speed-up over backprop on one ${unit === 'GPU ms' ? 'GPU' : 'host'} (K = 1, first column).`,
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const f = benchFlags(argv, {
    cases: 'fcn6x256,fcn6x1024,fcn8x1024',
    method: 'cdni',
    batch: '256',
    reps: '9',
    warmup: '3',
    'gpu-tflops': '25',
    'gpu-gbs': '3000',
    'gpu-op-us': '4',
    'nvlink-gbs': '450',
    'nvlink-us': '5',
    'eth-gbs': '12.5',
    'eth-us': '15',
    'pcie-gbs': '50',
    'pcie-us': '10',
    'host-floor': false,
    'max-ranks': '8',
    out: 'distributed-model',
  });
  const method = f.method;
  if (method !== 'cdni' && method !== 'dni') throw new Error(`--method must be cdni or dni, got ${method}`);
  const batch = positiveIntFlag('--batch', f.batch);
  const reps = positiveIntFlag('--reps', f.reps);
  const warmup = numberFlag('--warmup', f.warmup);
  const maxRanks = positiveIntFlag('--max-ranks', f['max-ranks']);
  const positive = (flag: string, v: string) => {
    const x = numberFlag(flag, v);
    if (!(x > 0)) throw new Error(`${flag} must be a positive number, got ${v}`);
    return x;
  };
  const gpu: GpuRates = {
    tflops: positive('--gpu-tflops', f['gpu-tflops']),
    gbPerSecond: positive('--gpu-gbs', f['gpu-gbs']),
    opFloorUs: positive('--gpu-op-us', f['gpu-op-us']),
    hostFloor: f['host-floor'] === true,
  };
  const nvlink: Link = {
    name: 'NVLink',
    latencyUs: positive('--nvlink-us', f['nvlink-us']),
    gbPerSecond: positive('--nvlink-gbs', f['nvlink-gbs']),
  };
  const eth: Link = { name: '100 GbE', latencyUs: positive('--eth-us', f['eth-us']), gbPerSecond: positive('--eth-gbs', f['eth-gbs']) };
  const pcie: Link = { name: 'PCIe', latencyUs: positive('--pcie-us', f['pcie-us']), gbPerSecond: positive('--pcie-gbs', f['pcie-gbs']) };
  const viaHost = chain('100 GbE via host', [pcie, eth, pcie]);
  const out = resultName('--out', f.out);
  const cases = f.cases.split(',').map((name) => {
    const m = /^fcn(\d+)x(\d+)$/.exec(name);
    if (!m) throw new Error(`--cases: '${name}' is not fcnDEPTHxWIDTH (e.g. fcn6x256)`);
    return { name, depth: Number(m[1]), width: Number(m[2]) };
  });

  const loadStart = os.loadavg();
  const results: CaseResult[] = [];
  for (const c of cases) {
    const about = `MNIST FCN 784-${c.depth}x${c.width}-10 (Linear, BatchNorm, ReLU), ${method === 'cdni' ? 'cDNI (conditioned linear synthesizers)' : 'DNI (synthesizers [1024, 1024])'}, Adam, batch ${batch}`;
    console.log(`measuring ${c.name}: ${about}`);
    results.push({ name: c.name, about, modules: await measure(c.depth, c.width, batch, method, reps, warmup, gpu) });
  }
  const loadEnd = os.loadavg();

  const gpuLinks = [nvlink, eth, viaHost];
  const md: string[] = [
    '# Scaling model: modules on K GPUs, backprop against DNI',
    '',
    `${new Date().toISOString()}; ${cpuModel()}, ${os.cpus().length} cores, ${native.threads()} threads; load average ` +
      `${loadStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${loadEnd.map((l) => l.toFixed(2)).join(' ')} at the end ` +
      `(the machine was shared); command: \`${commandLine('dist/bench/distributed_model.js', argv)}\`.`,
    '',
    'Formulas and caveats: docs/distributed-scaling.md. Measured here (CPU, this machine): each phase of each module, timed alone ' +
      `(median of ${reps} steps after ${warmup}), its host enqueue time (the best of the steps), its ops (GEMM FLOPs, bytes of the other ops) and the bytes handed off. ` +
      '**Assumed**, not measured (no GPU here): the GPU time of an op = max(' +
      `${gpu.opFloorUs} µs, GEMM FLOPs / ${gpu.tflops} TFLOP/s + bytes / ${gpu.gbPerSecond} GB/s)${gpu.hostFloor ? ', a phase at least its host enqueue time' : ' (the host enqueue time not counted: see the doc)'}; ` +
      `links: NVLink ${nvlink.latencyUs} µs + b / ${nvlink.gbPerSecond} GB/s, 100 GbE ${eth.latencyUs} µs + b / ${eth.gbPerSecond} GB/s, ` +
      `"via host" = PCIe (${pcie.latencyUs} µs + b / ${pcie.gbPerSecond} GB/s) device to host, 100 GbE, PCIe host to device, in series (today's mpi(), which reads tensors back).`,
    '',
  ];
  const report = {
    date: new Date().toISOString(),
    argv,
    gpu,
    links: [nvlink, eth, pcie, viaHost],
    loadStart,
    loadEnd,
    cases: [] as unknown[],
  };
  for (const c of results) {
    const gpuRows = scaling(costs(c, 'gpuMs'), gpuLinks, maxRanks);
    const cpuRows = scaling(costs(c, 'cpuMs'), [eth], maxRanks);
    report.cases.push({ ...c, gpuRows, cpuRows });
    md.push(
      `## ${c.name}: ${c.about}`,
      '',
      'Per module (h_i goes up and δ_i comes down: the hand-off bytes each way; forward of the last module includes the loss; ' +
        'backward includes the optimizer step; synthesizer = predict + regress + its update):',
      '',
      '| module | width out | hand-off KiB | CPU ms F / B / S | host enqueue ms (best) F / B / S | ops F / B / S | GEMM MFLOP F / B / S | other MB F / B / S | GPU µs (assumed) F / B / S |',
      '|---|---|---|---|---|---|---|---|---|',
      ...c.modules.map((m) => {
        const per = (fn: (p: PhaseResult) => string) => PHASES.map((p) => fn(m.phases[p])).join(' / ');
        return (
          `| ${m.module} | ${m.outputWidth} | ${m.handoffBytes ? (m.handoffBytes / 1024).toFixed(0) : '-'} | ${per((p) => f3(p.cpuMs))} | ` +
          `${per((p) => f3(p.hostEnqueueMs))} | ${per((p) => String(p.ops))} | ${per((p) => (p.gemmFlops / 1e6).toFixed(1))} | ` +
          `${per((p) => (p.bytes / 1e6).toFixed(2))} | ${per((p) => (p.gpuMs * 1e3).toFixed(0))} |`
        );
      }),
      '',
      `One hand-off of ${(c.modules[0].handoffBytes / 1024).toFixed(0)} KiB takes ${(transferMs(c.modules[0].handoffBytes, nvlink) * 1e3).toFixed(1)} µs on NVLink, ` +
        `${(transferMs(c.modules[0].handoffBytes, eth) * 1e3).toFixed(1)} µs on 100 GbE, ${(transferMs(c.modules[0].handoffBytes, viaHost) * 1e3).toFixed(1)} µs via host.`,
      '',
      '### GPUs (compute assumed, see above)',
      '',
      ...scalingTable(gpuRows, gpuLinks, 'GPU ms'),
      '',
      '### Hosts like this one (CPU compute as measured here), over 100 GbE from host memory',
      '',
      ...scalingTable(cpuRows, [eth], 'CPU ms'),
      '',
    );
    console.log(`\n${c.name}`);
    for (const line of scalingTable(gpuRows, gpuLinks, 'GPU ms')) console.log(line);
  }
  writeResults(out, report, md.join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
