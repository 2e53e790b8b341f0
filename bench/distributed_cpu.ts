// Time per step of a decoupled MLP 784-H-H-10 (3 modules, synthesizers with one hidden layer of
// H, Adam, batch B, CPU) on one process (Trainer.fit) against its modules on K MPI ranks
// (distribute(), placement 0..K-1, mpirun --oversubscribe), for DNI (λ = 0: a module never
// waits for the one above), BP(λ = 1) (each module waits for δ from above before its
// backward, as model-parallel backprop must) and DNI pipelined at depth 2 (a synthesizer
// regresses onto δ two steps later, so a rank may run two steps ahead), and DNI with the complete
// unlock (input models with one hidden layer of H: modules 2 and 3 run on I_i(x), so no forward
// waits for h from below), and cDNI (the synthesizers also see the labels). Per round, every
// configuration runs once, the one-process and the K-rank runs alternating which goes first;
// prints the median ms per step and samples/s, the ratio K ranks / one process, and each rank's
// share of its time spent waiting for hand-offs, for each K in --ranks. Writes
// bench/results/NAME.{md,json} with every round. Needs mpirun and
// build/Release/synthgrad_mpi.node (bash scripts/install-mpi.sh).
//
//   node dist/bench/distributed_cpu.js [--ranks 2,3] [--steps 30] [--warmup 5] [--batch 128] [--hidden 256] [--rounds 3] [--out NAME]
// (--lambda, --depth, --unlock and --conditioned are the children's.)
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Random, Trainer, decouple, distribute, mlp, mpi } from '../ts';
import { benchFlags, numberFlag, resultName } from './flags';
import { resultsDir } from './paths';
import { commandLine, cpuModel, loadNow, median } from './stats';

interface Setup {
  steps: number;
  warmup: number;
  batch: number;
  hidden: number;
  lambda: number;
  /** the pipelined schedule's depth (0: lockstep) */
  depth: number;
  /** the complete unlock (1) or not (0) */
  unlock: number;
  /** cDNI: synthesizers conditioned on the labels (1) or not (0) */
  conditioned: number;
}

function build(s: Setup) {
  const rng = new Random(3);
  const rows = s.batch * (s.steps + s.warmup);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 10));
  const data = new Dataset('random', rng.uniformArray(rows * 784, 0, 1), labels, 784, 10);
  const network = decouple(mlp(784, [s.hidden, s.hidden], 10), {
    synthesizer: { hidden: [s.hidden], conditioned: s.conditioned === 1 },
    lambda: s.lambda,
    schedule: s.depth > 0 ? { kind: 'pipelined', depth: s.depth } : { kind: 'lockstep' },
    ...(s.unlock ? { unlock: { hidden: [s.hidden] } } : {}),
  });
  return { data, network, options: { device: Device.cpu(), seed: 1, optimizer: () => new Adam({ lr: 1e-3 }) } };
}

/** One process: ms per step over `steps` steps after `warmup`. */
async function single(s: Setup): Promise<void> {
  const { data, network, options } = build(s);
  const trainer = new Trainer(network, options);
  let from = 0;
  await trainer.fit(data, {
    steps: s.warmup + s.steps,
    batchSize: s.batch,
    shuffle: false,
    onStep: (m) => {
      if (m.step === s.warmup) from = performance.now();
    },
  });
  console.log(JSON.stringify({ rank: -1, ms: (performance.now() - from) / s.steps, wait: 0 }));
}

/** One rank (under mpirun): its ms per step and the share of it spent waiting for hand-offs. */
async function rank(s: Setup): Promise<void> {
  const transport = mpi();
  const { data, network, options } = build(s);
  const placement = network.modules.map((_, i) => Math.min(i, transport.size - 1));
  const dist = distribute(network, { ...options, placement, transport });
  try {
    await dist.fit(data, { steps: s.warmup, batchSize: s.batch, shuffle: false });
    await transport.barrier();
    const r = await dist.fit(data, { steps: s.steps, batchSize: s.batch, shuffle: false });
    console.log(JSON.stringify({ rank: transport.rank, ms: (r.seconds * 1000) / s.steps, wait: r.waitSeconds / r.seconds }));
    await transport.barrier();
    transport.finalize();
  } catch (e) {
    console.error(`rank ${transport.rank}: ${(e as Error).message}`);
    transport.abort(1);
  }
}

interface Line {
  rank: number;
  ms: number;
  wait: number;
}

async function main(): Promise<void> {
  const f = benchFlags(process.argv.slice(2), {
    ranks: '2,3',
    steps: '30',
    warmup: '5',
    batch: '128',
    hidden: '256',
    rounds: '3',
    out: 'distributed-cpu',
    child: '',
    lambda: '0',
    depth: '0',
    unlock: '0',
    conditioned: '0',
  });
  const s: Setup = {
    steps: numberFlag('--steps', f.steps),
    warmup: numberFlag('--warmup', f.warmup),
    batch: numberFlag('--batch', f.batch),
    hidden: numberFlag('--hidden', f.hidden),
    lambda: numberFlag('--lambda', f.lambda),
    depth: numberFlag('--depth', f.depth),
    unlock: numberFlag('--unlock', f.unlock),
    conditioned: numberFlag('--conditioned', f.conditioned),
  };
  if (f.child === 'single') return single(s);
  if (f.child === 'rank') return rank(s);
  const rankCounts = f.ranks.split(',').map((v) => numberFlag('--ranks', v));
  if (rankCounts.some((k) => !Number.isInteger(k) || k < 2)) throw new Error(`--ranks must list rank counts of 2 or more, got ${f.ranks}`);
  const rounds = numberFlag('--rounds', f.rounds);
  const started = new Date().toISOString();
  const loadStart = loadNow();
  const out = resultName('--out', f.out);
  const args = (child: string, lambda: number, depth: number, unlock: number, conditioned: number) => [
    __filename,
    '--child',
    child,
    '--lambda',
    String(lambda),
    '--depth',
    String(depth),
    '--unlock',
    String(unlock),
    '--conditioned',
    String(conditioned),
    ...['steps', 'warmup', 'batch', 'hidden'].flatMap((k) => [`--${k}`, String(s[k as keyof Setup])]),
  ];
  const run = (cmd: string, argv: string[]): Line[] =>
    execFileSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 24 })
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
  const rows: string[] = [];
  const results: unknown[] = [];
  const perSecond = (ms: number) => Math.round((1000 * s.batch) / ms);
  for (const ranks of rankCounts) {
    const mpirun = ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath];
    for (const [lambda, depth, unlock, conditioned, name] of [
      [0, 0, 0, 0, 'DNI (λ = 0)'],
      [0, 0, 0, 1, 'cDNI (λ = 0)'],
      [1, 0, 0, 0, 'BP(λ = 1): waits like backprop'],
      [0, 2, 0, 0, 'DNI pipelined, depth 2'],
      [0, 0, 1, 0, 'DNI + complete unlock'],
    ] as const) {
      const one: number[] = [];
      const many: number[] = [];
      const waits: number[][] = Array.from({ length: ranks }, () => []);
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? ['single', 'ranks'] : ['ranks', 'single'];
        for (const which of order) {
          const argv = args(which === 'single' ? 'single' : 'rank', lambda, depth, unlock, conditioned);
          if (which === 'single') one.push(run(process.execPath, argv)[0].ms);
          else {
            const lines = run('mpirun', [...mpirun, ...argv]);
            many.push(Math.max(...lines.map((l) => l.ms)));
            for (const l of lines) waits[l.rank].push(l.wait);
          }
        }
        console.log(
          `${name}, ${ranks} ranks, round ${r + 1}: one process ${one[r].toFixed(1)} ms/step, ${ranks} ranks ${many[r].toFixed(1)} ms/step`,
        );
      }
      const [a, b] = [median(one), median(many)];
      rows.push(
        `| ${name} | ${ranks} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(2)} | ${perSecond(a)} | ${perSecond(b)} | ` +
          `${waits.map((w, k) => `${k}: ${(100 * median(w)).toFixed(0)}%`).join(', ')} |`,
      );
      results.push({ schedule: name, ranks, lambda, depth, unlock, conditioned, oneProcessMs: one, ranksMs: many, waitShare: waits });
    }
  }
  const command = commandLine('dist/bench/distributed_cpu.js', process.argv.slice(2));
  const loadEnd = loadNow();
  const table = [
    `# Modules on MPI ranks against one process (CPU)`,
    '',
    `${started}; ${cpuModel()}, ${os.cpus().length} cores, Node ${process.version}; command: \`${command}\`; load average (1 / 5 / 15 min) ` +
      `${loadStart.join(' / ')} at the start, ${loadEnd.join(' / ')} at the end.`,
    '',
    `MLP 784-${s.hidden}-${s.hidden}-10 in 3 modules, synthesizers [${s.hidden}], Adam, batch ${s.batch}, ${s.steps} timed steps after ${s.warmup}; ` +
      `median of ${rounds} rounds; ranks started with mpirun --oversubscribe on ${os.cpus().length} cores (placement 0,1,2 on 3 ranks, 0,1,1 on 2). ` +
      `A K-rank step is its slowest rank's; waiting: the share of each rank's time spent waiting for hand-offs.`,
    '',
    `| schedule | ranks | one process, ms/step | ranks, ms/step | ratio | one process, samples/s | ranks, samples/s | share of each rank's time waiting |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
  console.log(`\n${table}`);
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${out}.md`), `${table}\n`);
  fs.writeFileSync(
    path.join(resultsDir, `${out}.json`),
    JSON.stringify({ date: started, machine: cpuModel(), command, loadStart, loadEnd, setup: s, rounds, results }, null, 2) + '\n',
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
