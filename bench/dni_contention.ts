// How a DNI training step's time changes when another process shares the CPU: the MNIST FCN
// with DNI's synthesizers (two hidden layers of 1024), one stream per module and one stream in
// all, each timed alone and then beside a second process that trains the same model with
// backprop (one op thread) in a loop: started in this process's session, and in a session of
// its own (as `setsid`, `nohup` from another shell or another terminal would start it). Linux's
// autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled) shares the CPU evenly
// between sessions, not threads, so in the second case the DNI process, however many threads
// it runs, gets about half the machine. Prints ms/step and the slowdowns; writes
// bench/results/dni-contention.{json,md}.
//
//   SYNTHGRAD_NUM_THREADS=1 node dist/bench/dni_contention.js [--depth 6] [--steps 40]
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { benchFlags, numberFlag } from './flags';
import { resultsDir } from './paths';
import { Streams, stepTime } from './step_time';

const batch = 256;

const hidden = (depth: number) => new Array(depth).fill(256);

/** The background load: backprop steps of the same model until killed. */
async function background(depth: number): Promise<never> {
  for (;;)
    await stepTime({ device: Device.cpu(), hidden: hidden(depth), batch, method: 'backprop', streams: 'single', steps: 200, warmup: 0 });
}

/** The load, in this session or (detached: setsid) in a new one. */
function startBackground(depth: number, ownSession: boolean): Promise<ChildProcess> {
  const child = spawn(process.execPath, [__filename, '--background', '--depth', String(depth)], {
    env: { ...process.env, SYNTHGRAD_NUM_THREADS: '1' },
    stdio: 'ignore',
    detached: ownSession,
  });
  return new Promise((resolve) => setTimeout(() => resolve(child), 3000)); // let it load and start stepping
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, { depth: '6', steps: '40', background: false });
  const depth = numberFlag('--depth', flags.depth);
  if (flags.background) return background(depth);
  const steps = numberFlag('--steps', flags.steps);
  const time = (streams: Streams) =>
    stepTime({ device: Device.cpu(), hidden: hidden(depth), batch, method: 'dni', streams, steps, warmup: 5 });

  /** ms/step beside the load. */
  const beside = async (streams: Streams, ownSession: boolean) => {
    const load = await startBackground(depth, ownSession);
    try {
      return await time(streams);
    } finally {
      load.kill();
    }
  };
  const rows: { streams: Streams; aloneMs: number; sameSessionMs: number; ownSessionMs: number }[] = [];
  for (const streams of ['per-module', 'single'] as const) {
    const aloneMs = await time(streams);
    const sameSessionMs = await beside(streams, false);
    const ownSessionMs = await beside(streams, true);
    rows.push({ streams, aloneMs, sameSessionMs, ownSessionMs });
    console.log(
      `${streams.padEnd(10)} alone ${aloneMs.toFixed(1)} ms/step; beside a backprop process in this session ` +
        `${sameSessionMs.toFixed(1)} (${(sameSessionMs / aloneMs).toFixed(2)}x), in its own session ${ownSessionMs.toFixed(1)} (${(ownSessionMs / aloneMs).toFixed(2)}x)`,
    );
  }

  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${native.threads()} op threads`;
  const autogroup = autogroupSetting();
  const md = [
    '# A DNI training step beside another process',
    '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/bench/dni_contention.js ${argv.join(' ')}\`; ` +
      `${depth} hidden layers of 256, DNI synthesizers two hidden layers of 1024, batch ${batch}, Adam, ${steps} steps timed.`,
    '',
    'The other process trains the same model with backprop in a loop, with one op thread, started in ' +
      `this process's session or in one of its own; kernel.sched_autogroup_enabled = ${autogroup}.`,
    '',
    '| streams | alone, ms/step | beside it, same session, ms/step (slowdown) | beside it, own session, ms/step (slowdown) |',
    '|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.streams} | ${r.aloneMs.toFixed(1)} | ${r.sameSessionMs.toFixed(1)} (${(r.sameSessionMs / r.aloneMs).toFixed(2)}x) | ` +
        `${r.ownSessionMs.toFixed(1)} (${(r.ownSessionMs / r.aloneMs).toFixed(2)}x) |`,
    ),
    '',
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'dni-contention.md'), md);
  fs.writeFileSync(
    path.join(resultsDir, 'dni-contention.json'),
    JSON.stringify({ date: new Date().toISOString(), machine, autogroup, depth, batch, steps, rows }, null, 2) + '\n',
  );
  console.log('\nwrote bench/results/dni-contention.md and .json');
}

/** The kernel's autogroup switch: '1' on, '0' off, 'unknown' where the file is absent (not Linux). */
function autogroupSetting(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
