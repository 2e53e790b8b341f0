// A/B timing of two builds of the native addon on bench:cpu's synthgrad side (a training step
// of the MNIST FCN 784-256-256-256-10, Adam, batch 256, on the CPU; backprop unless --method
// names cdni or dni): each round runs
// the step once per build, in child processes started from this one (SYNTHGRAD_ADDON picks the
// build), alternating which goes first; prints the per-round ratio and the median. For changes
// that must not slow the step (a refactor of the native layers): run it with the build from
// before the change and the one after.
//
//   node dist/bench/addon_ab.js --before OLD.node --after build/Release/synthgrad.node [--rounds 6] [--method backprop] [--steps 200] [--out NAME]
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device } from '../ts';
import { benchFlags, numberFlag, positiveIntFlag, resultName } from './flags';
import { resultsDir } from './paths';
import { Method, stepTime } from './step_time';

const methods: Method[] = ['backprop', 'cdni', 'dni'];

async function child(method: Method, steps: number): Promise<void> {
  const ms = await stepTime({
    device: Device.cpu(),
    hidden: [256, 256, 256],
    batch: 256,
    method,
    streams: 'single',
    steps,
    warmup: Math.ceil(steps / 7),
  });
  process.stdout.write(`${ms}\n`);
}

function timeBuild(addon: string, method: Method, steps: number): number {
  const out = execFileSync(process.execPath, [__filename, '--child', method, String(steps)], {
    env: { ...process.env, SYNTHGRAD_ADDON: addon },
    encoding: 'utf8',
  });
  return Number(out.trim());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const f = benchFlags(process.argv.slice(2), { before: '', after: '', rounds: '6', method: 'backprop', steps: '200', out: 'addon-ab' });
  const method = methods.find((m) => m === f.method);
  if (!method) throw new Error(`--method must be one of ${methods.join(', ')}, got '${f.method}'`);
  for (const which of ['before', 'after'] as const)
    if (!f[which] || !fs.existsSync(f[which])) throw new Error(`--${which} must name an addon file (.node), got '${f[which]}'`);
  const rounds = numberFlag('--rounds', f.rounds);
  const steps = positiveIntFlag('--steps', f.steps);
  const rows: { before: number; after: number }[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    const t: Record<string, number> = {};
    for (const which of order) t[which] = timeBuild(path.resolve(f[which]), method, steps);
    rows.push({ before: t.before, after: t.after });
    console.log(
      `round ${r + 1}: before ${t.before.toFixed(2)} ms, after ${t.after.toFixed(2)} ms, after/before ${(t.after / t.before).toFixed(3)}`,
    );
  }
  const ratio = median(rows.map((x) => x.after / x.before));
  const load = os.loadavg()[0].toFixed(1);
  console.log(`median after/before: ${ratio.toFixed(3)} (1.000 = no change; load average ${load} on ${os.cpus().length} CPUs)`);
  const name = resultName('--out', f.out);
  const md = [
    `# Addon A/B: ${name}`,
    '',
    `MNIST FCN training step (${method}, Adam, batch 256) on the CPU, ${steps} steps a run; ${rounds} rounds, alternating order; ` +
      `${os.cpus()[0].model}, ${os.cpus().length} CPUs, load average ${load} at the end.`,
    '',
    `before: \`${f.before}\``,
    `after: \`${f.after}\``,
    '',
    '| round | before (ms) | after (ms) | after/before |',
    '|---|---|---|---|',
    ...rows.map((x, i) => `| ${i + 1} | ${x.before.toFixed(2)} | ${x.after.toFixed(2)} | ${(x.after / x.before).toFixed(3)} |`),
    '',
    `Median ratio after/before: **${ratio.toFixed(3)}**.`,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(resultsDir, `${name}.md`), md);
}

if (process.argv[2] === '--child')
  child(process.argv[3] as Method, Number(process.argv[4])).catch((e) => {
    console.error(e);
    process.exit(1);
  });
else
  main().catch((e) => {
    console.error((e as Error).message);
    process.exit(1);
  });
