// How a DNI training step's time changes when another process shares the CPU: the MNIST FCN
// with DNI's synthesizers (two hidden layers of 1024), one stream per module and one stream in
// all, each timed alone and then beside a second process that trains the same model with
// backprop (one op thread) in a loop. Prints ms/step and the slowdowns; writes
// bench/results/dni-contention.{json,md}.
//
//   SYNTHGRAD_NUM_THREADS=1 node dist/bench/dni_contention.js [--depth 6] [--steps 40]
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { resultsDir } from './paths';
import { Streams, stepTime } from './step_time';

const batch = 256;

const hidden = (depth: number) => new Array(depth).fill(256);

/** The background load: backprop steps of the same model until killed. */
async function background(depth: number): Promise<never> {
  for (;;) await stepTime({ device: Device.cpu(), hidden: hidden(depth), batch, method: 'backprop', streams: 'single', steps: 200, warmup: 0 });
}

function startBackground(depth: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [__filename, '--background', '--depth', String(depth)], {
    env: { ...process.env, SYNTHGRAD_NUM_THREADS: '1' }, stdio: 'ignore',
  });
  return new Promise((resolve) => setTimeout(() => resolve(child), 3000)); // let it load and start stepping
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string, dflt: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
  const depth = Number(opt('--depth', '6'));
  if (argv.includes('--background')) return background(depth);
  const steps = Number(opt('--steps', '40'));
  const time = (streams: Streams) =>
    stepTime({ device: Device.cpu(), hidden: hidden(depth), batch, method: 'dni', streams, steps, warmup: 5 });

  const rows: { streams: Streams; aloneMs: number; sharedMs: number }[] = [];
  for (const streams of ['per-module', 'single'] as const) {
    const aloneMs = await time(streams);
    const load = await startBackground(depth);
    let sharedMs: number;
    try {
      sharedMs = await time(streams);
    } finally {
      load.kill();
    }
    rows.push({ streams, aloneMs, sharedMs });
    console.log(`${streams.padEnd(10)} alone ${aloneMs.toFixed(1)} ms/step, beside a backprop process ${sharedMs.toFixed(1)} ms/step (${(sharedMs / aloneMs).toFixed(2)}x slower)`);
  }

  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${native.threads()} op threads`;
  const md = [
    '# A DNI training step beside another process', '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/bench/dni_contention.js ${argv.join(' ')}\`; ` +
      `${depth} hidden layers of 256, DNI synthesizers two hidden layers of 1024, batch ${batch}, Adam, ${steps} steps timed.`, '',
    'The other process trains the same model with backprop in a loop, with one op thread.', '',
    '| streams | alone, ms/step | beside a backprop process, ms/step | slowdown |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.streams} | ${r.aloneMs.toFixed(1)} | ${r.sharedMs.toFixed(1)} | ${(r.sharedMs / r.aloneMs).toFixed(2)}x |`), '',
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'dni-contention.md'), md);
  fs.writeFileSync(path.join(resultsDir, 'dni-contention.json'), JSON.stringify({ date: new Date().toISOString(), machine, depth, batch, steps, rows }, null, 2) + '\n');
  console.log('\nwrote bench/results/dni-contention.md and .json');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
