// A/B timing of two builds of the native addon on DNI's CPU step with one stream per module
// and with one stream in all, alone and beside a busy process in a session of its own (as
// `setsid` would start it: Linux's autogroup then shares the CPU between the sessions). For
// changes to how CPU streams are run (a thread per stream, or queues on one pool). Each round
// times every (build, streams) pair in child processes (SYNTHGRAD_ADDON picks the build), the
// builds' order alternating between rounds; the busy process runs through the whole "beside"
// phase, so both builds see the same load. Prints ms/step and the ratios per round, and the
// medians; writes bench/results/NAME.{md,json}.
//
//   node dist/bench/streams_ab.js --before OLD.node --after build/Release/synthgrad.node \
//     [--depth 6] [--steps 30] [--rounds 3] [--out streams-ab]
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device } from '../ts';
import { benchFlags, numberFlag, resultName } from './flags';
import { resultsDir } from './paths';
import { Streams, stepTime } from './step_time';

const batch = 256;
const hidden = (depth: number) => new Array(depth).fill(256);

async function child(streams: Streams, depth: number, steps: number): Promise<void> {
  const ms = await stepTime({ device: Device.cpu(), hidden: hidden(depth), batch, method: 'dni', streams, steps, warmup: 5 });
  process.stdout.write(`${ms}\n`);
}

/** The load: backprop steps of the same model with one op thread until killed, in its own session. */
function startLoad(depth: number): Promise<ChildProcess> {
  const load = spawn(process.execPath, [path.join(__dirname, 'dni_contention.js'), '--background', '--depth', String(depth)], {
    env: { ...process.env, SYNTHGRAD_NUM_THREADS: '1' },
    stdio: 'ignore',
    detached: true,
  });
  return new Promise((resolve) => setTimeout(() => resolve(load), 3000)); // let it load and start stepping
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

type Build = 'before' | 'after';
type Load = 'alone' | 'beside';
interface Row {
  round: number;
  load: Load;
  build: Build;
  streams: Streams;
  ms: number;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const f = benchFlags(argv, { before: '', after: '', depth: '6', steps: '30', rounds: '3', out: 'streams-ab' });
  for (const which of ['before', 'after'] as const)
    if (!f[which] || !fs.existsSync(f[which])) throw new Error(`--${which} must name an addon file (.node), got '${f[which]}'`);
  const depth = numberFlag('--depth', f.depth);
  const steps = numberFlag('--steps', f.steps);
  const rounds = numberFlag('--rounds', f.rounds);
  const name = resultName('--out', f.out);
  const time = (build: Build, streams: Streams) =>
    Number(
      execFileSync(process.execPath, [__filename, '--child', streams, String(depth), String(steps)], {
        env: { ...process.env, SYNTHGRAD_ADDON: path.resolve(f[build]) },
        encoding: 'utf8',
      }).trim(),
    );
  const rows: Row[] = [];
  for (const load of ['alone', 'beside'] as const) {
    const busy = load === 'beside' ? await startLoad(depth) : undefined;
    try {
      for (let round = 0; round < rounds; round++) {
        const builds: Build[] = round % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
        for (const build of builds)
          for (const streams of ['per-module', 'single'] as const) {
            const ms = time(build, streams);
            rows.push({ round, load, build, streams, ms });
            console.log(`${load} round ${round + 1} ${build.padEnd(6)} ${streams.padEnd(10)} ${ms.toFixed(1)} ms/step`);
          }
      }
    } finally {
      if (busy?.pid) process.kill(-busy.pid); // its whole session's process group
    }
  }

  const pick = (load: Load, build: Build, streams: Streams) =>
    rows.filter((r) => r.load === load && r.build === build && r.streams === streams).sort((a, b) => a.round - b.round);
  const ratios = (a: Row[], b: Row[]) => a.map((r, i) => r.ms / b[i].ms);
  const lines: string[] = [];
  const summary: Record<string, number> = {};
  for (const load of ['alone', 'beside'] as const) {
    const pm = { before: pick(load, 'before', 'per-module'), after: pick(load, 'after', 'per-module') };
    const single = { before: pick(load, 'before', 'single'), after: pick(load, 'after', 'single') };
    const entries: [string, number[]][] = [
      ['per-module / single, before', ratios(pm.before, single.before)],
      ['per-module / single, after', ratios(pm.after, single.after)],
      ['after / before, per-module', ratios(pm.after, pm.before)],
      ['after / before, single', ratios(single.after, single.before)],
    ];
    for (const [what, xs] of entries) {
      summary[`${load}: ${what}`] = median(xs);
      lines.push(`| ${load} | ${what} | ${xs.map((x) => x.toFixed(3)).join(', ')} | **${median(xs).toFixed(3)}** |`);
    }
  }
  console.log(lines.join('\n'));
  const loadAvg = os.loadavg()[0].toFixed(1);
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} CPUs, load average ${loadAvg} at the end`;
  const md = [
    `# Streams A/B: ${name}`,
    '',
    `${new Date().toISOString()}; ${machine}; SYNTHGRAD_NUM_THREADS=${process.env.SYNTHGRAD_NUM_THREADS ?? '(unset: all cores)'}; ` +
      `command: \`node dist/bench/streams_ab.js ${argv.join(' ')}\`. DNI step of the MNIST FCN, ${depth} hidden layers of 256, ` +
      `synthesizers two hidden layers of 1024, batch ${batch}, Adam, ${steps} steps timed per run. "beside": a backprop ` +
      'training loop of the same model (one op thread) runs in a session of its own throughout.',
    '',
    `before: \`${f.before}\``,
    `after: \`${f.after}\``,
    '',
    '| load | ratio | per round | median |',
    '|---|---|---|---|',
    ...lines,
    '',
    '| load | round | build | streams | ms/step |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.load} | ${r.round + 1} | ${r.build} | ${r.streams} | ${r.ms.toFixed(1)} |`),
    '',
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${name}.md`), md);
  fs.writeFileSync(
    path.join(resultsDir, `${name}.json`),
    JSON.stringify({ date: new Date().toISOString(), machine, depth, steps, rows, summary }, null, 2) + '\n',
  );
  console.log(`wrote bench/results/${name}.md and .json`);
}

if (process.argv[2] === '--child')
  child(process.argv[3] as Streams, Number(process.argv[4]), Number(process.argv[5])).catch((e) => {
    console.error(e);
    process.exit(1);
  });
else
  main().catch((e) => {
    console.error((e as Error).message);
    process.exit(1);
  });
