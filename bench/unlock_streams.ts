// The complete unlock's training step (decouple(model, { unlock: true }): modules 2..N train on
// synthetic inputs from default input models, so that within a step no module waits for
// another) on one stream in all against one stream per module, on the CPU; and, for
// reference, the plain decoupled step (no unlock) in both layouts. Models: the MNIST FCN
// (Linear → BatchNorm1d → ReLU hidden layers; --fcn gives depth x width pairs) at batch
// --batch, and cnn() on [--cnn-batch, 1, 28, 28] images with --cnn-filters filters per block
// (conv synthesizers with two hidden layers of as many filters). Method --method (cDNI by
// default: DNI's 1024-wide synthesizers would dwarf the modules whose overlap this measures).
// Same seed and data on every side (bench/step_time.ts); interleaved: each of --rounds rounds
// times every configuration once (the two layouts in alternating order); the table gives the
// medians. Steps per run: chosen once per model from one unlocked single-stream step (about
// --target-ms of timed work, at least 2), each run after one warm-up step.
// Writes bench/results/unlock-streams.{json,md} (NAME.{json,md} with --out NAME).
//
//   nice -n 5 node dist/bench/unlock_streams.js [--fcn 3x256,6x256,3x1024,6x1024] [--batch 256]
//       [--cnn-filters 8] [--cnn-batch 32] [--method cdni] [--rounds 3] [--target-ms 4000] [--out unlock-streams]
import * as os from 'os';
import { Device, native } from '../ts';
import { benchFlags, positiveIntFlag, resultName } from './flags';
import { writeResults } from './paths';
import { commandLine, cpuModel, loadNow, median, stepsFor } from './stats';
import { CnnStep, Method, StepTimeOptions, Streams, stepTime } from './step_time';

interface Model {
  label: string;
  hidden: number[];
  cnn?: CnnStep;
  batch: number;
  steps: number;
}

const variants: { unlock: boolean; streams: Streams }[] = [
  { unlock: true, streams: 'single' },
  { unlock: true, streams: 'per-module' },
  { unlock: false, streams: 'single' },
  { unlock: false, streams: 'per-module' },
];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flags = benchFlags(argv, {
    fcn: '3x256,6x256,3x1024,6x1024',
    batch: '256',
    'cnn-filters': '8',
    'cnn-batch': '32',
    method: 'cdni',
    rounds: '3',
    'target-ms': '4000',
    out: 'unlock-streams',
  });
  if (flags.method !== 'dni' && flags.method !== 'cdni') throw new Error(`--method must be dni or cdni, got ${flags.method}`);
  const method = flags.method as Method;
  const rounds = positiveIntFlag('--rounds', flags.rounds);
  const targetMs = positiveIntFlag('--target-ms', flags['target-ms']);
  const out = resultName('--out', flags.out);
  const batch = positiveIntFlag('--batch', flags.batch);
  const models: Model[] = flags.fcn
    .split(',')
    .filter((s) => s)
    .map((s) => {
      const m = /^(\d+)x(\d+)$/.exec(s);
      if (!m) throw new Error(`--fcn must be DEPTHxWIDTH pairs such as 3x256,6x1024, got ${s}`);
      const [depth, width] = [positiveIntFlag('--fcn', m[1]), positiveIntFlag('--fcn', m[2])];
      return { label: `FCN ${depth}x${width}`, hidden: new Array(depth).fill(width), batch, steps: 0 };
    });
  if (flags['cnn-filters'] !== '0') {
    const f = positiveIntFlag('--cnn-filters', flags['cnn-filters']);
    models.push({
      label: `CNN-3, F=${f}`,
      hidden: [],
      cnn: { filters: f, blocks: 3, synthFilters: [f, f] },
      batch: positiveIntFlag('--cnn-batch', flags['cnn-batch']),
      steps: 0,
    });
  }
  const device = Device.cpu();
  const threads = native.threads();
  const machine = cpuModel();
  const started = new Date().toISOString();
  const loadStart = loadNow();
  console.log(
    `unlocked-step streams benchmark on ${machine}, ${os.cpus().length} cores, ${threads} op threads; load average ${loadStart.join(' / ')}`,
  );

  const time = (m: Model, v: (typeof variants)[number], steps: number, warmup: number) => {
    const o: StepTimeOptions = { device, hidden: m.hidden, batch: m.batch, method, streams: v.streams, unlock: v.unlock, steps, warmup };
    if (m.cnn) o.cnn = m.cnn;
    return stepTime(o);
  };
  for (const m of models) m.steps = stepsFor(targetMs, await time(m, variants[0], 1, 1), 2, 200);

  const ms = models.map(() => variants.map(() => [] as number[]));
  for (let r = 0; r < rounds; r++)
    for (const [i, m] of models.entries()) {
      // The layouts in turn, alternating which goes first.
      const order = r % 2 === 0 ? [0, 1, 2, 3] : [1, 0, 3, 2];
      for (const k of order) ms[i][k].push(await time(m, variants[k], m.steps, 1));
      console.log(
        `round ${r + 1}: ${m.label.padEnd(14)} ${m.steps} steps: ` +
          variants.map((v, k) => `${v.unlock ? 'unlock' : 'plain'} ${v.streams} ${ms[i][k][r].toFixed(2)}`).join(', ') +
          ' ms/step',
      );
    }
  const loadEnd = loadNow();

  const rows = models.map((m, i) => {
    const med = variants.map((_, k) => median(ms[i][k]));
    return {
      model: m.label,
      batch: m.batch,
      steps_per_run: m.steps,
      unlock_single_ms: med[0],
      unlock_per_module_ms: med[1],
      plain_single_ms: med[2],
      plain_per_module_ms: med[3],
      // Above 1: one stream per module is faster.
      unlock_single_over_per_module: med[0] / med[1],
      plain_single_over_per_module: med[2] / med[3],
      rounds_ms: Object.fromEntries(variants.map((v, k) => [`${v.unlock ? 'unlock' : 'plain'} ${v.streams}`, ms[i][k]])),
    };
  });
  console.log('');
  for (const r of rows)
    console.log(
      `${r.model.padEnd(14)} unlocked: single ${r.unlock_single_ms.toFixed(2)} ms, per-module ${r.unlock_per_module_ms.toFixed(2)} ms ` +
        `(single / per-module ${r.unlock_single_over_per_module.toFixed(2)}); plain: ${r.plain_single_over_per_module.toFixed(2)}`,
    );

  const command = commandLine('dist/bench/unlock_streams.js', argv);
  const report = {
    date: started,
    machine: { cpu: machine, cores: os.cpus().length, node: process.version, load_average_start: loadStart, load_average_end: loadEnd },
    command,
    op_threads: threads,
    method,
    rounds,
    rows,
  };
  const md = [
    '# The unlocked step: one stream per module against one stream',
    '',
    `${started}; ${machine}, ${os.cpus().length} cores, Node ${process.version}; ${threads} op threads; command: \`${command}\`. ` +
      `The machine is shared: load average (1 / 5 / 15 min) ${loadStart.join(' / ')} at the start, ${loadEnd.join(' / ')} at the end, ` +
      `on ${os.cpus().length} cores. Each figure is the median of ${rounds} interleaved rounds (every round is in the JSON).`,
    '',
    `Method ${method === 'cdni' ? 'cDNI' : 'DNI'}, lockstep, Adam lr 1e-4, a resident random batch, the same seed everywhere (bench/step_time.ts). ` +
      '"unlock": decouple(model, { unlock: true }) with the default input models (FCN: an MLP with one hidden layer of 1024; CNN: one hidden 5x5 conv as wide as the cut, ' +
      'pools, a 5x5 conv; docs/unlock.md); "plain": the same without the unlock. FCN: Linear → BatchNorm1d → ReLU hidden layers, cut after every ReLU; ' +
      "CNN: cnn() with 3 blocks, cut after every block's ReLU, conv synthesizers with two hidden layers of F filters.",
    '',
    '| model | batch | steps per run | unlock, one stream (ms/step) | unlock, per module | single / per-module | plain, one stream | plain, per module | single / per-module |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.batch} | ${r.steps_per_run} | ${r.unlock_single_ms.toFixed(2)} | ${r.unlock_per_module_ms.toFixed(2)} | ` +
        `${r.unlock_single_over_per_module.toFixed(2)}x | ${r.plain_single_ms.toFixed(2)} | ${r.plain_per_module_ms.toFixed(2)} | ${r.plain_single_over_per_module.toFixed(2)}x |`,
    ),
    '',
    '"single / per-module": the one-stream time over the per-module time (above 1: one stream per module is faster).',
    '',
  ].join('\n');
  writeResults(out, report, md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
