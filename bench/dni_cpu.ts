// Step-time benchmark of decoupled training: backprop vs DNI vs cDNI for the MNIST FCN with
// 3..6 hidden layers of 256 (batch 256, Adam), decoupled runs on one stream and on one stream
// per module. Prints samples/s and the ratios; writes bench/results/dni-cpu.{json,md}
// (NAME.{json,md} with --out NAME).
// Peers: PyTorch's implementations of the same methods (bench/reference/torch_dni.py), when
// Debian's python3-torch is installed (bash bench/setup.sh).
//
//   node dist/bench/dni_cpu.js [--depths 3,6] [--steps 100] [--out dni-cpu]
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device, native } from '../ts';
import { benchFlags, numberFlag, resultName } from './flags';
import { projectRoot as root, resultsDir } from './paths';
import { Method, Streams, stepTime } from './step_time';

const batch = 256;

interface Row {
  depth: number;
  method: string;
  streams: string;
  msPerStep: number;
  samplesPerSecond: number;
  torchMsPerStep?: number;
  torchThreads?: number;
}

function time(depth: number, method: Method, streams: Streams, steps: number): Promise<number> {
  return stepTime({ device: Device.cpu(), hidden: new Array(depth).fill(256), batch, method, streams, steps, warmup: Math.min(20, steps) });
}

// PyTorch's fastest of: our thread count, and one thread (on this 2-core machine PyTorch's
// OpenMP and OpenBLAS threads contend, and one thread is often faster).
function torchTime(depth: number, method: string, steps: number): { ms: number; threads: number } | undefined {
  const script = path.join(root, 'bench/reference/torch_dni.py');
  if (!fs.existsSync(script)) return undefined;
  let best: { ms: number; threads: number } | undefined;
  for (const threads of new Set([native.threads(), 1])) {
    try {
      const out = execFileSync(
        '/usr/bin/python3',
        [
          script,
          '--time',
          '--method',
          method,
          '--hidden',
          new Array(depth).fill(256).join(','),
          '--steps',
          String(steps),
          '--threads',
          String(threads),
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      );
      const ms = JSON.parse(out.trim().split('\n').pop()!).ms_per_step as number;
      if (!best || ms < best.ms) best = { ms, threads };
    } catch {
      // reported as absent
    }
  }
  return best;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, { depths: '3,6', steps: '100', out: 'dni-cpu' });
  const depths = flags.depths.split(',').map((d) => numberFlag('--depths', d));
  const steps = numberFlag('--steps', flags.steps);
  const out = resultName('--out', flags.out);
  const rows: Row[] = [];
  for (const depth of depths) {
    for (const method of ['backprop', 'cdni', 'dni'] as const) {
      for (const streams of method === 'backprop' ? ['single' as const] : ['single' as const, 'per-module' as const]) {
        const ms = await time(depth, method, streams, method === 'dni' ? Math.max(10, Math.round(steps / 5)) : steps);
        const row: Row = { depth, method, streams, msPerStep: ms, samplesPerSecond: (1000 * batch) / ms };
        if (streams === 'single') {
          const t = torchTime(depth, method, method === 'dni' ? Math.max(10, Math.round(steps / 5)) : steps);
          if (t) Object.assign(row, { torchMsPerStep: t.ms, torchThreads: t.threads });
        }
        rows.push(row);
        console.log(
          `${depth} hidden, ${method.padEnd(8)} ${streams.padEnd(10)} ${ms.toFixed(2)} ms/step  ${Math.round(row.samplesPerSecond)} samples/s` +
            (row.torchMsPerStep
              ? `  PyTorch ${row.torchMsPerStep.toFixed(2)} ms at ${row.torchThreads} thread(s) (synthgrad ${(row.torchMsPerStep / ms).toFixed(2)}x)`
              : ''),
        );
      }
    }
  }
  const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${native.threads()} threads`;
  const find = (d: number, m: string, s: string) => rows.find((r) => r.depth === d && r.method === m && r.streams === s)!;
  const md = [
    '# Decoupled training step on the CPU',
    '',
    `${new Date().toISOString()}; ${machine}; command: \`node dist/bench/dni_cpu.js ${argv.join(' ')}\`; batch ${batch}, Adam; ` +
      `PyTorch's OpenBLAS kernel: ${process.env.OPENBLAS_CORETYPE ? `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE}` : 'auto-detected'}.`,
    '',
    '| hidden layers | method | streams | ms/step | samples/s | vs backprop | per-module vs single | PyTorch ms/step (threads) | synthgrad vs PyTorch |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const bp = find(r.depth, 'backprop', 'single').msPerStep;
      const single = find(r.depth, r.method, 'single').msPerStep;
      return (
        `| ${r.depth} | ${r.method} | ${r.streams} | ${r.msPerStep.toFixed(2)} | ${Math.round(r.samplesPerSecond)} | ${(bp / r.msPerStep).toFixed(2)}x | ` +
        `${r.method === 'backprop' ? '–' : `${(single / r.msPerStep).toFixed(2)}x`} | ${r.torchMsPerStep ? `${r.torchMsPerStep.toFixed(2)} (${r.torchThreads})` : '–'} | ` +
        `${r.torchMsPerStep ? `${(r.torchMsPerStep / r.msPerStep).toFixed(2)}x` : '–'} |`
      );
    }),
    '',
    'PyTorch: bench/reference/torch_dni.py (the same algorithm), the faster of 2 threads and 1 thread. ' +
      "DNI uses the paper's synthesizer (two hidden layers of 1024), so its step costs several backprop steps of this small model; " +
      'on a 2-core CPU the streams share the cores, so one stream per module can gain little.',
    '',
  ].join('\n');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${out}.md`), md);
  fs.writeFileSync(
    path.join(resultsDir, `${out}.json`),
    JSON.stringify({ date: new Date().toISOString(), machine, batch, rows }, null, 2) + '\n',
  );
  console.log(`\nwrote bench/results/${out}.md and .json`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
