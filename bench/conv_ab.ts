// A/B timing of two builds of the native addon on cnn()'s CPU training step (bench/conv_cpu.ts's
// model: 3 blocks of F 5x5 filters, batch 32; backprop, DNI or cDNI with conv synthesizers), with
// the op profile and a check of the results: each round runs the step once per build, in child
// processes started from this one (SYNTHGRAD_ADDON picks the build), alternating which goes
// first. Every child trains the same seeded model for the same steps and prints a SHA-256 of its
// final weights (synthesizers included), so equal hashes mean the two builds train
// bit-identically. For changes to the convolution and pooling kernels (issue 19).
//
//   node dist/bench/conv_ab.js --before OLD.node --after build/Release/synthgrad.node
//       [--filters 16] [--methods backprop,dni] [--threads 1] [--rounds 5] [--steps 4] [--out NAME]
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native, threads as opThreads } from '../ts';
import { benchFlags, positiveIntFlag, resultName } from './flags';
import { writeResults } from './paths';
import { fcnStep, Method } from './step_time';

/** What a child prints. */
interface ChildResult {
  stepMs: number;
  ops: Record<string, number>;
  weights: string;
}

const methods: Method[] = ['backprop', 'dni', 'cdni'];

async function child(method: Method, filters: number, steps: number, threads: number): Promise<void> {
  opThreads(threads);
  const s = fcnStep({
    device: Device.cpu(),
    hidden: [],
    cnn: { filters, blocks: 3, synthFilters: [filters, filters] },
    batch: 32,
    method,
    streams: 'single',
  });
  await s.step(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await s.step();
  const stepMs = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  native.profile('start');
  for (let i = 0; i < steps; i++) await s.step();
  const ops: Record<string, number> = {};
  for (const p of native.profile('read')) ops[p.op] = (p.seconds * 1000) / steps;
  native.profile('stop');
  const hash = crypto.createHash('sha256');
  for (const p of s.net.parameters()) hash.update(Buffer.from((await p.value.read()).buffer));
  s.dispose();
  const result: ChildResult = { stepMs, ops, weights: hash.digest('hex').slice(0, 16) };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runChild(addon: string, method: Method, filters: number, steps: number, threads: number): ChildResult {
  const out = execFileSync(process.execPath, [__filename, '--child', method, String(filters), String(steps), String(threads)], {
    env: { ...process.env, SYNTHGRAD_ADDON: addon },
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const CONV_OPS = new Set([
  'conv2dForward',
  'conv2dBackward',
  'maxPool2dForward',
  'maxPool2dBackward',
  'avgPool2dForward',
  'avgPool2dBackward',
]);

function main(): void {
  const f = benchFlags(process.argv.slice(2), {
    before: '',
    after: '',
    filters: '16',
    methods: 'backprop,dni',
    threads: '1',
    rounds: '5',
    steps: '4',
    out: 'conv-ab',
  });
  for (const which of ['before', 'after'] as const)
    if (!f[which] || !fs.existsSync(f[which])) throw new Error(`--${which} must name an addon file (.node), got '${f[which]}'`);
  const filters = f.filters.split(',').map((v) => positiveIntFlag('--filters', v));
  const chosen = f.methods.split(',').map((m) => {
    const method = methods.find((x) => x === m);
    if (!method) throw new Error(`--methods must list ${methods.join(', ')}, got '${m}'`);
    return method;
  });
  const threads = positiveIntFlag('--threads', f.threads);
  const rounds = positiveIntFlag('--rounds', f.rounds);
  const steps = positiveIntFlag('--steps', f.steps);
  const loadStart = os.loadavg();
  const configs = filters.flatMap((filters) => chosen.map((method) => ({ filters, method })));
  const runs = configs.map(() => ({ before: [] as ChildResult[], after: [] as ChildResult[] }));
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of configs.entries()) {
      const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
      for (const which of order) runs[i][which].push(runChild(path.resolve(f[which]), c.method, c.filters, steps, threads));
      const [b, a] = [runs[i].before[r], runs[i].after[r]];
      console.log(
        `round ${r + 1} F=${c.filters} ${c.method}: before ${b.stepMs.toFixed(1)} ms, after ${a.stepMs.toFixed(1)} ms, after/before ${(a.stepMs / b.stepMs).toFixed(3)}`,
      );
    }
  }
  const loadEnd = os.loadavg();

  const fmt = (x: number) => x.toFixed(2);
  const lines = [
    `# Convolution kernels A/B: ${path.basename(f.before)} vs ${path.basename(f.after)}`,
    '',
    `cnn() CPU training step (3 blocks of F 5x5 filters, batch 32, Adam; DNI/cDNI: conv synthesizers of F, F filters), ${threads} op thread(s); ` +
      `${rounds} interleaved rounds of ${steps} timed + ${steps} profiled steps per build, after one warm-up step. ` +
      `${os.cpus()[0]?.model ?? 'CPU'}, ${os.cpus().length} CPUs, load average (1 / 5 / 15 min) ${loadStart.map((x) => x.toFixed(1)).join(' / ')} at the start, ` +
      `${loadEnd.map((x) => x.toFixed(1)).join(' / ')} at the end: a shared machine, so compare the ratios, not the absolute times.`,
    '',
    `before: \`${f.before}\`; after: \`${f.after}\`. Command: \`node dist/bench/conv_ab.js ${process.argv.slice(2).join(' ')}\``,
    '',
  ];
  for (const [i, c] of configs.entries()) {
    const { before, after } = runs[i];
    const ratio = median(before.map((b, r) => after[r].stepMs / b.stepMs));
    const hashes = new Set([...before, ...after].map((x) => x.weights));
    lines.push(
      `## F = ${c.filters}, ${c.method}`,
      '',
      `Median after/before of the step time: **${ratio.toFixed(3)}** (per round: ${before.map((b, r) => (after[r].stepMs / b.stepMs).toFixed(3)).join(', ')}). ` +
        `Final weights after ${2 * steps + 1} steps: ${hashes.size === 1 ? `bit-identical in every run (${[...hashes][0]})` : `DIFFER (${[...hashes].join(', ')})`}.`,
      '',
      '| ms per step (median) | before | after | after/before |',
      '|---|---:|---:|---:|',
    );
    const row = (name: string, b: number, a: number) => `| ${name} | ${fmt(b)} | ${fmt(a)} | ${b > 0 ? (a / b).toFixed(3) : 'n/a'} |`;
    const opMs = (xs: ChildResult[], op: string) => median(xs.map((x) => x.ops[op] ?? 0));
    const sum = (xs: ChildResult[], conv: boolean) =>
      median(xs.map((x) => Object.entries(x.ops).reduce((s, [op, ms]) => s + (CONV_OPS.has(op) === conv ? ms : 0), 0)));
    lines.push(
      row('step (timed, unprofiled)', median(before.map((x) => x.stepMs)), median(after.map((x) => x.stepMs))),
      row('convolution and pooling ops (profiled)', sum(before, true), sum(after, true)),
      ...[...CONV_OPS].map((op) => row(`  ${op}`, opMs(before, op), opMs(after, op))),
      row('all other ops (profiled)', sum(before, false), sum(after, false)),
      '',
    );
  }
  const md = lines.join('\n');
  console.log(`\n${md}`);
  writeResults(
    resultName('--out', f.out),
    { loadStart, loadEnd, threads, rounds, steps, command: process.argv.slice(2), runs: configs.map((c, i) => ({ ...c, ...runs[i] })) },
    md,
  );
}

if (process.argv[2] === '--child') {
  const [, , , method, filters, steps, threads] = process.argv;
  child(method as Method, Number(filters), Number(steps), Number(threads)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main();
}
