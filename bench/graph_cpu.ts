// What graph capture saves on the CPU: the step time of the MNIST FCN (6 hidden layers of 256,
// batch 256, Adam) run op by op against the same step captured once (Graph.capture) and
// replayed, for backprop and cDNI. On the CPU a replay skips the JavaScript → native call and
// argument checks of every op; the kernels are the same. Writes bench/results/graph-cpu.{json,md}.
//
//   node dist/bench/graph_cpu.js [--steps 200] [--depth 6]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { benchFlags, numberFlag } from './flags';
import { resultsDir } from './paths';
import { Method, Streams, stepTime } from './step_time';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, { steps: '200', depth: '6' });
  const steps = numberFlag('--steps', flags.steps);
  const depth = numberFlag('--depth', flags.depth);
  const batch = 256;
  const rows: { method: Method; streams: Streams; eager: number; graph: number }[] = [];
  for (const [method, streams] of [
    ['backprop', 'single'],
    ['cdni', 'single'],
    ['cdni', 'per-module'],
  ] as [Method, Streams][]) {
    const run = (graph: boolean) =>
      stepTime({ device: Device.cpu(), hidden: new Array(depth).fill(256), batch, method, streams, steps, warmup: 20, graph });
    const eager = await run(false);
    const graph = await run(true);
    rows.push({ method, streams, eager, graph });
    console.log(
      `${method.padEnd(8)} ${streams.padEnd(10)} eager ${eager.toFixed(3)} ms  graph ${graph.toFixed(3)} ms  (${(eager / graph).toFixed(2)}x)`,
    );
  }
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${native.threads()} threads`;
  const md = [
    '# Graph capture on the CPU: step time op by op vs replayed',
    '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/bench/graph_cpu.js ${argv.join(' ')}\`.`,
    '',
    `MNIST FCN, ${depth} hidden layers of 256 (Linear → BatchNorm → ReLU), batch ${batch}, Adam; ${steps} timed steps after 20 warm-up; the host reads every step's loss.`,
    '',
    '| method | streams | op by op ms/step | graph ms/step | speed-up |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) => `| ${r.method} | ${r.streams} | ${r.eager.toFixed(3)} | ${r.graph.toFixed(3)} | ${(r.eager / r.graph).toFixed(2)}x |`,
    ),
    '',
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'graph-cpu.md'), md);
  fs.writeFileSync(
    path.join(resultsDir, 'graph-cpu.json'),
    JSON.stringify({ date: new Date().toISOString(), machine, steps, depth, batch, rows }, null, 2) + '\n',
  );
  console.log(`\n${md}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
