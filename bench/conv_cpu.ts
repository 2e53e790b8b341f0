// CPU benchmark of a convolutional training step: cnn() on MNIST-sized images ([batch, 1, 28,
// 28], random pixels and labels, resident; `--blocks` blocks of F 5x5 filters, 'same' padding,
// BatchNorm2d, ReLU, a 3x3 stride-2 max pool after the first block and average pools after the
// others, a Linear classifier; Adam) with backprop, DNI and cDNI (decouple's default cuts,
// after every block's ReLU; conv synthesizers with two hidden 5x5 conv → BatchNorm2d → ReLU
// layers of --synth-filters filters, default F, and a zero-initialised 5x5 conv), on one
// stream, against the same model and step in PyTorch (bench/reference/torch_conv.py). Both
// sides at 1 and 2 op threads (on a loaded 2-core machine either may be the faster); the ratio
// is synthgrad's best over PyTorch's best. The peer is one Python process, a child of this one, kept running between
// requests (bench/torch_worker.ts).
// Interleaved: each of --rounds rounds times every configuration once on each side (synthgrad
// first in odd rounds, PyTorch first in even ones); the table gives the medians over the
// rounds. Each run times the same number of steps on every side, chosen once per
// configuration from one synthgrad step (about --target-ms of timed work), after one warm-up
// step. Writes bench/results/conv-cpu.{json,md} (NAME.{json,md} with --out NAME).
//
//   nice -n 5 node dist/bench/conv_cpu.js [--filters 8,16,32] [--methods backprop,dni,cdni]
//       [--batch 32] [--blocks 3] [--rounds 3] [--target-ms 1000] [--out conv-cpu]
import * as os from 'os';
import * as path from 'path';
import { Device, threads as opThreads } from '../ts';
import { benchFlags, positiveIntFlag, resultName } from './flags';
import { projectRoot as root, writeResults } from './paths';
import { commandLine, cpuModel, loadNow, median, stepsFor } from './stats';
import { Method, stepTime } from './step_time';
import { TorchWorker } from './torch_worker';

/** The op thread counts each side is timed at. */
const threadCounts = [1, 2];

interface Config {
  filters: number;
  method: Method;
  steps: number;
}

function list(flag: string, v: string): number[] {
  return v.split(',').map((s) => positiveIntFlag(flag, s));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, {
    filters: '8,16,32',
    methods: 'backprop,dni,cdni',
    batch: '32',
    blocks: '3',
    'synth-filters': '',
    rounds: '3',
    'target-ms': '1000',
    out: 'conv-cpu',
  });
  const filters = list('--filters', flags.filters);
  const methods = flags.methods.split(',').map((m) => {
    if (m !== 'backprop' && m !== 'dni' && m !== 'cdni') throw new Error(`--methods must be backprop, dni or cdni, got ${m}`);
    return m as Method;
  });
  const [batch] = list('--batch', flags.batch);
  const [blocks] = list('--blocks', flags.blocks);
  const [rounds] = list('--rounds', flags.rounds);
  const [targetMs] = list('--target-ms', flags['target-ms']);
  const synthFiltersOf = (f: number) => (flags['synth-filters'] ? list('--synth-filters', flags['synth-filters']) : [f, f]);
  const out = resultName('--out', flags.out);
  const device = Device.cpu();
  const defaultThreads = opThreads();
  const machine = cpuModel();
  const started = new Date().toISOString();
  const loadStart = loadNow();
  console.log(`conv step benchmark on ${machine}, ${os.cpus().length} cores; load average ${loadStart.join(' / ')}`);

  const ours = async (c: Config, steps: number, warmup: number, t: number) => {
    opThreads(t);
    try {
      const cnn = { filters: c.filters, blocks, synthFilters: synthFiltersOf(c.filters) };
      return await stepTime({ device, hidden: [], cnn, batch, method: c.method, streams: 'single', steps, warmup });
    } finally {
      opThreads(defaultThreads);
    }
  };
  const worker = new TorchWorker(path.join(root, 'bench/reference/torch_conv.py'));
  const theirs = async (c: Config, t: number) => {
    const flagList = ['--method', c.method, '--filters', String(c.filters), '--blocks', String(blocks), '--batch', String(batch)];
    if (flags['synth-filters']) flagList.push('--synth-filters', flags['synth-filters']);
    flagList.push('--steps', String(c.steps), '--warmup', '1', '--threads', String(t));
    const answer = await worker.request(flagList);
    return { ms: answer.ms_per_step as number, torch: answer.torch as string };
  };

  // Steps per configuration, from one synthgrad step after one warm-up step.
  const configs: Config[] = [];
  for (const f of filters)
    for (const method of methods) {
      const one = await ours({ filters: f, method, steps: 1 }, 1, 1, defaultThreads);
      configs.push({ filters: f, method, steps: stepsFor(targetMs, one, 2, 100) });
    }

  const oursMs = configs.map(() => threadCounts.map(() => [] as number[]));
  const torchMs = configs.map(() => threadCounts.map(() => [] as number[]));
  let torchVersion = '';
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [i, c] of configs.entries()) {
        const runOurs = async () => {
          for (const [j, t] of threadCounts.entries()) oursMs[i][j].push(await ours(c, c.steps, 1, t));
        };
        const runTheirs = async () => {
          for (const [j, t] of threadCounts.entries()) {
            const a = await theirs(c, t);
            torchMs[i][j].push(a.ms);
            torchVersion = a.torch;
          }
        };
        // Alternate which side goes first.
        if (r % 2 === 0) {
          await runOurs();
          await runTheirs();
        } else {
          await runTheirs();
          await runOurs();
        }
        const each = (side: string, ms: number[][]) => threadCounts.map((t, j) => `${side} ${t}T ${ms[j][r].toFixed(1)}`).join(', ');
        console.log(
          `round ${r + 1}: F=${c.filters} ${c.method.padEnd(8)} ${c.steps} steps: ${each('synthgrad', oursMs[i])}, ${each('PyTorch', torchMs[i])} ms/step`,
        );
      }
    }
  } finally {
    worker.close();
  }
  const loadEnd = loadNow();

  const side = (ms: number[][]) => threadCounts.map((t, j) => ({ threads: t, ms: median(ms[j]), rounds_ms: ms[j] }));
  const fastest = (runs: { threads: number; ms: number }[]) => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const rows = configs.map((c, i) => {
    const synthgrad = side(oursMs[i]);
    const pytorch = side(torchMs[i]);
    const [ourBest, theirBest] = [fastest(synthgrad), fastest(pytorch)];
    return {
      filters: c.filters,
      method: c.method,
      synth_filters: c.method === 'backprop' ? [] : synthFiltersOf(c.filters),
      steps_per_run: c.steps,
      synthgrad,
      pytorch,
      synthgrad_best: ourBest,
      pytorch_best: theirBest,
      // Below 1: synthgrad's step is faster.
      ratio_ours_over_pytorch_best: ourBest.ms / theirBest.ms,
      ratio_same_threads: synthgrad.map((o, j) => ({ threads: o.threads, ratio: o.ms / pytorch[j].ms })),
    };
  });
  console.log('');
  for (const r of rows)
    console.log(
      `F=${r.filters} ${r.method.padEnd(8)} synthgrad best ${r.synthgrad_best.ms.toFixed(1)} ms/step (${r.synthgrad_best.threads}T), ` +
        `PyTorch best ${r.pytorch_best.ms.toFixed(1)} ms (${r.pytorch_best.threads}T): ours / PyTorch = ${r.ratio_ours_over_pytorch_best.toFixed(2)}`,
    );

  const command = commandLine('dist/bench/conv_cpu.js', argv);
  const model =
    `cnn(): ${blocks} blocks of Conv2d(F 5x5, 'same', no bias) → BatchNorm2d → ReLU → 3x3 pool (stride 2, padding 1; max, then average), ` +
    `Linear to 10; input [${batch}, 1, 28, 28] (random, resident); softmax cross-entropy; Adam lr 1e-4`;
  const report = {
    date: started,
    machine: { cpu: machine, cores: os.cpus().length, node: process.version, load_average_start: loadStart, load_average_end: loadEnd },
    command,
    pytorch: torchVersion,
    rounds,
    model,
    rows,
  };
  const ms = (runs: { ms: number }[]) => runs.map((p) => p.ms.toFixed(1)).join(' | ');
  const md = [
    '# Convolutional training step on the CPU',
    '',
    `${started}; ${machine}, ${os.cpus().length} cores, Node ${process.version}; PyTorch ${torchVersion}; ` +
      `command: \`${command}\`. The machine is shared: load average (1 / 5 / 15 min) ${loadStart.join(' / ')} at the start, ` +
      `${loadEnd.join(' / ')} at the end, on ${os.cpus().length} cores. Each figure is the median of ${rounds} interleaved rounds ` +
      '(every round is in the JSON).',
    '',
    `Model: ${model}. DNI and cDNI: decouple()'s cuts after every ReLU, one conv synthesizer per cut (two hidden 5x5 Conv2d → ` +
      "BatchNorm2d → ReLU layers, then a zero-initialised 5x5 Conv2d to the cut's channels; cDNI adds one constant map per class as " +
      "input channels), lockstep, one stream, the synthesizers' targets scaled per example.",
    '',
    '| F | method | synth filters | steps per run | synthgrad 1 thread (ms/step) | synthgrad 2 threads | PyTorch 1 thread | PyTorch 2 threads | best / best | 1 thread / 1 thread | 2 / 2 |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.filters} | ${r.method} | ${r.synth_filters.join(', ') || '–'} | ${r.steps_per_run} | ${ms(r.synthgrad)} | ${ms(r.pytorch)} | ` +
        `${r.ratio_ours_over_pytorch_best.toFixed(2)} | ${r.ratio_same_threads.map((x) => x.ratio.toFixed(2)).join(' | ')} |`,
    ),
    '',
    "Ratios: synthgrad's time over PyTorch's (below 1: synthgrad's step is faster); \"best / best\": each side at its faster thread count.",
    '',
    'PyTorch side: bench/reference/torch_conv.py, eager PyTorch on the CPU: nn.Conv2d / BatchNorm2d / ReLU / MaxPool2d / ' +
      "AvgPool2d(count_include_pad=False) / Linear, one torch.optim.Adam for backprop; for DNI and cDNI torch_dni.py's Decoupled " +
      '(the lockstep step of ts/dni/training.ts on one stream: each module forward on its detached input, its synthesizer predicts ' +
      'ĝ = M(h)/B, backward from the top with the true gradient for the last module and ĝ for the others, Adam per module, then ' +
      'each synthesizer regresses (MSE) onto B·δ from the module above and takes its Adam step), loss.item() every step. ' +
      'The same number of steps on every side, after one warm-up step.',
    '',
  ].join('\n');
  writeResults(out, report, md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
