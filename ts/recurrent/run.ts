// trainSequences: one recurrent run end to end, as the command line starts it: a task (Copy,
// Repeat Copy with the curriculum, or a character language model on a text file), a method
// (truncated BPTT, DNI, DNI + Aux, RTRL, UORO), a budget of windows, progress, checkpoints, and the score.
//
// Score: Copy and Repeat Copy, the largest level solved within the budget (its N and R); the
// text task, bits per character on the test split with the weights of the best validation
// (validation every `validateEvery` windows; the run stops early after `patience`
// validations without improvement). The text file's CRLF line ends become LF unless
// `newlines: 'keep'` (as the library's shakespeare() corpus does). Every argument is checked
// before anything is built.
//
// Checkpoints: saved every `checkpoint.every` windows and at the end (or on abort); a run
// started with an existing checkpoint file resumes from it (weights, optimizer state, carried
// state, the task's position, curriculum and random generator, the early-stopping record and
// best weights, the level rises and wall time so far) and continues bit for bit; its score
// covers the whole run. A checkpoint made with other arguments (anything
// but `steps`) is refused, naming the arguments that differ.
import * as fs from 'fs';
import { checkOptions, describe, numberOption } from '../check';
import { CopyTask, RepeatCopyTask } from '../data/copy';
import type { SequenceSource } from '../data/sequences';
import { TextCorpus, TextSource } from '../data/text';
import { Device } from '../device';
import { TARGET_SCALES, TargetScale } from '../dni/synthesizer';
import { Adam } from '../optim/optimizers';
import * as ops from '../ops';
import { Tensor } from '../tensor';
import { readCheckpoint } from '../train/checkpoint';
import { LSTMSequenceModel } from './model';
import { DEFAULT_DISCOUNT, RECURRENT_METHODS, RecurrentMethod, RecurrentTraining, usesSynthesizer, WindowMetrics } from './training';
import { error, rangeError, typeError } from '../errors';

export type SequenceTaskName = 'copy' | 'repeat-copy' | 'text';

export interface TrainSequencesOptions {
  task: SequenceTaskName;
  /** default 'bptt' */
  method?: RecurrentMethod;
  /** T, the steps of a window */
  truncation: number;
  /** the budget: windows to train (a resumed run counts those before the resume) */
  steps: number;
  /** LSTM units; default 128 */
  hidden?: number;
  /** parallel sequences; default 64 */
  batch?: number;
  /** Adam's learning rate (core and synthesizer); default 1e-3 */
  lr?: number;
  /** seeds the weights and the task's data; default 0 */
  seed?: number;
  /** the UTF-8 text file of the 'text' task */
  textFile?: string;
  /**
   * text: 'lf' turns CRLF line ends into LF before anything else (as `shakespeare()` does: a
   * '\n' after every '\r' would be a free prediction, lowering the bits per character without
   * any modelling); 'keep' reads the characters as they are; default 'lf'
   */
  newlines?: 'lf' | 'keep';
  /** DNI's synthesizer: hidden widths of an MLP; default [] (linear) */
  synthesizerHidden?: number[];
  /** DNI's bootstrap discount γ in (0, 1] (RecurrentSynthesizerOptions.discount); default DEFAULT_DISCOUNT */
  synthesizerDiscount?: number;
  /** DNI: Adam's learning rate of the synthesizer; default DEFAULT_SYNTHESIZER_LR */
  synthesizerLr?: number;
  /** DNI: what the synthesizer regresses (SynthesizerOptions.targetScale); default 'per-example' */
  synthesizerTargetScale?: TargetScale;
  /** DNI + Aux: the auxiliary loss's weight; default 1 */
  auxWeight?: number;
  /** M's regression on a stream of its own; default 'single' */
  streams?: 'single' | 'separate';
  /** text: validate every this many windows; default 500 */
  validateEvery?: number;
  /** text: stop after this many validations without a better one; default 5 */
  patience?: number;
  /** onProgress every this many windows (and at validations and level rises); default 100 */
  logEvery?: number;
  checkpoint?: { path: string; every: number };
  signal?: AbortSignal;
  device?: Device;
  onProgress?: (p: SequenceProgress) => void;
}

export interface SequenceProgress {
  task: SequenceTaskName;
  window: number;
  /** mean bits per scored target over the windows since the last progress report */
  bits: number;
  /** Copy tasks: the curriculum level being trained, and its N and R */
  level?: number;
  length?: number;
  repeats?: number;
  /** text: the validation bits per character, when this report follows a validation */
  validationBits?: number;
}

export interface SequenceScore {
  task: SequenceTaskName;
  method: RecurrentMethod;
  truncation: number;
  /** windows trained in all */
  windows: number;
  /** the window a resumed run started after */
  resumedFrom?: number;
  /** stopped by the signal before the budget */
  stopped: boolean;
  /** Copy tasks: the largest level solved and its N and R (-1, 0, 0: none) */
  solved?: { level: number; length: number; repeats: number };
  /** Copy tasks: the level reached after each rise, with the window it was reached in (a resumed run's too) */
  rises?: { level: number; window: number }[];
  /** text */
  testBits?: number;
  bestValidationBits?: number;
  /** text: true when validation stopped improving before the budget */
  earlyStopped?: boolean;
  /** the run's wall time, the parts before any resume included */
  seconds: number;
}

/** The options a resumed run must share with the checkpoint. */
const CONFIG_KEYS = [
  'task',
  'method',
  'truncation',
  'hidden',
  'batch',
  'lr',
  'seed',
  'textFile',
  'newlines',
  'synthesizerHidden',
  'synthesizerDiscount',
  'synthesizerLr',
  'synthesizerTargetScale',
  'auxWeight',
  'validateEvery',
  'patience',
] as const;
/** Every option: the configuration, and what may differ between a run and its resumption. */
const OPTIONS = [...CONFIG_KEYS, 'steps', 'streams', 'logEvery', 'checkpoint', 'signal', 'device', 'onProgress'];

const OWNER = 'trainSequences';

/**
 * The synthesizer's default Adam learning rate: ten times below the core's default, because
 * Adam's steps do not scale with the regression targets (per-example gradients of order 1e-1),
 * and at 1e-3 the zero-initialised M overshoots by an order of magnitude in its first windows
 * while the core follows it (experiments/char-lm/README.md, "The synthesizer's learning rate").
 */
export const DEFAULT_SYNTHESIZER_LR = 1e-4;

function positive(name: string, v: unknown, fallback?: number): number {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number') throw typeError(`${OWNER}: '${name}' must be a positive integer, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1) throw rangeError(`${OWNER}: '${name}' must be a positive integer, got ${v}`);
  return v;
}

/** The checked options with their defaults. */
function resolve(options: TrainSequencesOptions) {
  if (options === null || typeof options !== 'object') throw typeError(`${OWNER}: 'options' must be an object, got ${describe(options)}`);
  checkOptions(OWNER, options, OPTIONS);
  const task = options.task;
  if (task !== 'copy' && task !== 'repeat-copy' && task !== 'text')
    throw typeError(`${OWNER}: 'task' must be 'copy', 'repeat-copy' or 'text', got ${describe(task)}`);
  const method = options.method ?? 'bptt';
  if (!RECURRENT_METHODS.includes(method))
    throw typeError(`${OWNER}: 'method' must be one of ${RECURRENT_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`);
  const synthesized = usesSynthesizer(method);
  const truncation = positive('truncation', options.truncation);
  const steps = positive('steps', options.steps);
  const hidden = positive('hidden', options.hidden, 128);
  const batch = positive('batch', options.batch, 64);
  const lr = numberOption(OWNER, 'lr', options.lr, 1e-3);
  if (!(lr > 0) || !Number.isFinite(lr)) throw rangeError(`${OWNER}: 'lr' must be a finite number > 0, got ${lr}`);
  const seed = numberOption(OWNER, 'seed', options.seed, 0);
  if (!Number.isInteger(seed)) throw rangeError(`${OWNER}: 'seed' must be an integer, got ${seed}`);
  if (task === 'text') {
    if (typeof options.textFile !== 'string' || options.textFile === '')
      throw typeError(`${OWNER}: 'textFile' must name a UTF-8 text file for task 'text', got ${describe(options.textFile)}`);
  } else {
    for (const key of ['textFile', 'newlines'] as const)
      if (options[key] !== undefined) throw rangeError(`${OWNER}: '${key}' is given but task '${task}' reads no text (use task 'text')`);
  }
  const newlines = task === 'text' ? (options.newlines ?? 'lf') : undefined;
  if (task === 'text' && newlines !== 'lf' && newlines !== 'keep')
    throw rangeError(`${OWNER}: 'newlines' must be 'lf' or 'keep', got ${describe(options.newlines)}`);
  const synthesizerHidden = options.synthesizerHidden;
  if (synthesizerHidden !== undefined) {
    if (!synthesized) throw rangeError(`${OWNER}: 'synthesizerHidden' is given but method '${method}' uses no synthesizer`);
    if (!Array.isArray(synthesizerHidden) || synthesizerHidden.some((h) => !Number.isInteger(h) || h < 1))
      throw rangeError(`${OWNER}: 'synthesizerHidden' must be an array of positive integers, got ${JSON.stringify(synthesizerHidden)}`);
  }
  let synthesizerDiscount: number | undefined;
  if (options.synthesizerDiscount !== undefined) {
    if (!synthesized) throw rangeError(`${OWNER}: 'synthesizerDiscount' is given but method '${method}' uses no synthesizer`);
    synthesizerDiscount = numberOption(OWNER, 'synthesizerDiscount', options.synthesizerDiscount, DEFAULT_DISCOUNT);
    if (!(synthesizerDiscount > 0 && synthesizerDiscount <= 1))
      throw rangeError(`${OWNER}: 'synthesizerDiscount' must be a number in (0, 1], got ${synthesizerDiscount}`);
  } else if (synthesized) {
    synthesizerDiscount = DEFAULT_DISCOUNT;
  }
  let synthesizerLr: number | undefined;
  if (options.synthesizerLr !== undefined) {
    if (!synthesized) throw rangeError(`${OWNER}: 'synthesizerLr' is given but method '${method}' uses no synthesizer`);
    synthesizerLr = numberOption(OWNER, 'synthesizerLr', options.synthesizerLr, DEFAULT_SYNTHESIZER_LR);
    if (!(synthesizerLr > 0) || !Number.isFinite(synthesizerLr))
      throw rangeError(`${OWNER}: 'synthesizerLr' must be a finite number > 0, got ${synthesizerLr}`);
  } else if (synthesized) {
    synthesizerLr = DEFAULT_SYNTHESIZER_LR;
  }
  const synthesizerTargetScale = options.synthesizerTargetScale;
  if (synthesizerTargetScale !== undefined) {
    if (!synthesized) throw rangeError(`${OWNER}: 'synthesizerTargetScale' is given but method '${method}' uses no synthesizer`);
    if (!TARGET_SCALES.includes(synthesizerTargetScale))
      throw rangeError(
        `${OWNER}: 'synthesizerTargetScale' must be ${TARGET_SCALES.map((t) => `'${t}'`).join(' or ')}, got ${JSON.stringify(synthesizerTargetScale)}`,
      );
  }
  const auxWeight = options.auxWeight;
  if (auxWeight !== undefined && method !== 'dni-aux')
    throw rangeError(`${OWNER}: 'auxWeight' is given but method '${method}' has no auxiliary loss`);
  const streams = options.streams ?? 'single';
  if (streams !== 'single' && streams !== 'separate')
    throw typeError(`${OWNER}: 'streams' must be 'single' or 'separate', got ${describe(streams)}`);
  if (task !== 'text') {
    for (const key of ['validateEvery', 'patience'] as const)
      if (options[key] !== undefined)
        throw rangeError(`${OWNER}: '${key}' is given but task '${task}' has no validation (use task 'text')`);
  }
  const validateEvery = positive('validateEvery', options.validateEvery, 500);
  const patience = positive('patience', options.patience, 5);
  const logEvery = positive('logEvery', options.logEvery, 100);
  const checkpoint = options.checkpoint;
  if (checkpoint !== undefined) {
    if (checkpoint === null || typeof checkpoint !== 'object' || typeof checkpoint.path !== 'string' || checkpoint.path === '')
      throw typeError(`${OWNER}: 'checkpoint' must be { path: string, every: number }, got ${describe(checkpoint)}`);
    checkOptions(OWNER, checkpoint, ['path', 'every'], 'checkpoint');
    positive('checkpoint.every', checkpoint.every);
    if (method === 'rtrl' || method === 'uoro')
      throw rangeError(`${OWNER}: 'checkpoint' is given but method '${method}' has no checkpoints (its sensitivities are not saved)`);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw typeError(`${OWNER}: 'signal' must be an AbortSignal, got ${describe(options.signal)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function')
    throw typeError(`${OWNER}: 'onProgress' must be a function, got ${describe(options.onProgress)}`);
  const device = options.device ?? Device.cpu();
  if (!(device instanceof Device)) throw typeError(`${OWNER}: 'device' must be a Device, got ${describe(options.device)}`);
  return {
    task,
    method,
    truncation,
    steps,
    hidden,
    batch,
    lr,
    seed,
    textFile: options.textFile,
    newlines,
    synthesizerHidden,
    synthesizerDiscount,
    synthesizerLr,
    synthesizerTargetScale,
    auxWeight,
    streams,
    validateEvery,
    patience,
    logEvery,
    checkpoint,
    signal: options.signal,
    device,
    onProgress: options.onProgress,
  };
}

type Resolved = ReturnType<typeof resolve>;

/** The arguments a checkpoint records and a resume must match. */
function configOf(o: Resolved): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) config[key] = o[key] ?? null;
  return config;
}

/** What the text task keeps across validations (saved with checkpoints). */
interface EarlyStopping {
  best: number;
  sinceBest: number;
  stopped: boolean;
}

/** Trains as `options` says and resolves with the score; see the file comment. */
export async function trainSequences(options: TrainSequencesOptions): Promise<SequenceScore> {
  const o = resolve(options);
  const started = Date.now();
  // The data first: a bad text file is an error before any model is built.
  let source: SequenceSource;
  let corpus: TextCorpus | undefined;
  if (o.task === 'text') {
    corpus = TextCorpus.fromFile(o.textFile!, { newlines: o.newlines });
    source = corpus.source('train', o.batch);
    if (o.truncation > (source as TextSource).streamLength)
      throw rangeError(
        `${OWNER}: 'truncation' is ${o.truncation}, longer than each of the ${o.batch} training streams (${(source as TextSource).streamLength} characters)`,
      );
    corpus.source('validation', o.batch); // too short a split for the batch is an error now, not after training
    corpus.source('test', o.batch);
  } else {
    source = o.task === 'copy' ? new CopyTask(o.batch, { seed: o.seed }) : new RepeatCopyTask(o.batch, { seed: o.seed });
  }
  const model = new LSTMSequenceModel({ inputSymbols: source.inputSymbols, outputs: source.outputSymbols, hidden: o.hidden });
  const trainer = new RecurrentTraining(model, {
    method: o.method,
    optimizer: () => new Adam({ lr: o.lr }),
    device: o.device,
    seed: o.seed,
    streams: o.streams,
    ...(!usesSynthesizer(o.method)
      ? {}
      : {
          synthesizer: {
            hidden: o.synthesizerHidden ?? [],
            discount: o.synthesizerDiscount,
            optimizer: () => new Adam({ lr: o.synthesizerLr! }),
            ...(o.synthesizerTargetScale !== undefined ? { targetScale: o.synthesizerTargetScale } : {}),
          },
        }),
    ...(o.auxWeight !== undefined ? { auxWeight: o.auxWeight } : {}),
  });
  // The text task's weights at its best validation (restored for the test split).
  const best = corpus ? model.parameters().map((p) => Tensor.zeros(p.value.shape, { device: o.device })) : [];
  const bestNamed = best.map((tensor, i) => ({ name: `best.${i}`, tensor }));
  const early: EarlyStopping = { best: Infinity, sinceBest: 0, stopped: false };
  const config = configOf(o);
  let resumedFrom: number | undefined;
  // A resumed run's score covers the whole run: the level rises and wall time before the resume are carried in the checkpoint.
  const rises: { level: number; window: number }[] = [];
  let secondsBefore = 0;
  const seconds = () => secondsBefore + (Date.now() - started) / 1000;
  try {
    if (o.checkpoint && fs.existsSync(o.checkpoint.path)) {
      const saved = (await readCheckpoint(o.checkpoint.path)).host as { host?: { config?: Record<string, unknown> } } | null;
      const savedConfig = saved?.host?.config ?? {};
      const differ = CONFIG_KEYS.filter((k) => JSON.stringify(savedConfig[k] ?? null) !== JSON.stringify(config[k]));
      if (differ.length)
        throw error(
          'ERR_SYNTHGRAD_CHECKPOINT',
          `${OWNER}: ${o.checkpoint.path} was saved by a run with other arguments (${differ.map((k) => `${k}: ${JSON.stringify(savedConfig[k] ?? null)} there, ${JSON.stringify(config[k])} here`).join('; ')}); use another checkpoint path or the same arguments`,
        );
      const host = (await trainer.load(o.checkpoint.path, bestNamed)) as {
        source: unknown;
        early: EarlyStopping;
        rises?: { level: number; window: number }[];
        seconds?: number;
      };
      source.restore(host.source);
      rises.push(...(host.rises ?? []));
      secondsBefore = host.seconds ?? 0;
      Object.assign(early, host.early, { best: host.early.best ?? Infinity });
      resumedFrom = trainer.windows;
    }
    const save = async () => {
      if (!o.checkpoint) return;
      await trainer.save(
        o.checkpoint.path,
        {
          config,
          source: source.state(),
          early: { ...early, best: Number.isFinite(early.best) ? early.best : null },
          rises,
          seconds: seconds(),
        },
        bestNamed,
      );
    };

    const copyTask = source instanceof CopyTask || source instanceof RepeatCopyTask ? source : undefined;
    let bitsSum = 0;
    let bitsWeight = 0;
    let stopped = false;
    const progress = (window: number, extra: Partial<SequenceProgress> = {}) => {
      if (!o.onProgress) return;
      const level = copyTask?.curriculum.level;
      o.onProgress({
        task: o.task,
        window,
        bits: bitsWeight > 0 ? bitsSum / bitsWeight : NaN,
        ...(copyTask ? { level, ...copyTask.levelShape(level!) } : {}),
        ...extra,
      });
      bitsSum = bitsWeight = 0;
    };
    // Text: the next window does not depend on this one's loss, so it is enqueued before that
    // loss is awaited (awaiting first would leave the device idle while the host makes and
    // enqueues the next window). Not past a window after which the host acts on the trained
    // state or may be told to stop: a validation, a checkpoint (the source's position is saved),
    // a progress report (onProgress may abort), the last window. The same windows run in the
    // same order on the same streams: the run is bit for bit the one that awaits every window.
    // Copy tasks: the curriculum picks the next window from this one's loss, so each is awaited.
    const ahead = corpus !== undefined;
    const hostActsAfter = (n: number) =>
      n >= o.steps || n % o.logEvery === 0 || n % o.validateEvery === 0 || (o.checkpoint !== undefined && n % o.checkpoint.every === 0);
    const start = () => {
      const window = source.nextWindow(o.truncation);
      const metrics = trainer.step(window);
      // Handled from the start: a window run ahead may fail before the loop awaits it (or after
      // the window before it failed); awaiting it below still throws its error.
      metrics.catch(() => undefined);
      return { window, metrics };
    };
    let next: ReturnType<typeof start> | undefined;
    for (;;) {
      if (!next) {
        if (trainer.windows >= o.steps || early.stopped) break;
        if (o.signal?.aborted) {
          stopped = true;
          break;
        }
        next = start();
      }
      const { window, metrics } = next;
      next = undefined;
      if (ahead && !hostActsAfter(trainer.windows) && !o.signal?.aborted) next = start();
      const m: WindowMetrics = await metrics; // on a rejection the window run ahead is dropped
      if (m.scored > 0) {
        bitsSum += m.bits * m.scored;
        bitsWeight += m.scored;
      }
      let rose = false;
      if (copyTask && copyTask.report(m.scored > 0 ? m.bits : 0, window)) {
        rose = true;
        rises.push({ level: copyTask.curriculum.level, window: m.window });
      }
      if (corpus && m.window % o.validateEvery === 0) {
        const bits = await evaluateSplit(trainer, corpus, 'validation', o.batch);
        if (bits < early.best) {
          early.best = bits;
          early.sinceBest = 0;
          await copyWeights(
            model.parameters().map((p) => p.value),
            best,
            trainer,
          );
        } else if (++early.sinceBest >= o.patience) {
          early.stopped = true;
        }
        progress(m.window, { validationBits: bits });
      } else if (rose || m.window % o.logEvery === 0) {
        progress(m.window);
      }
      if (o.checkpoint && m.window % o.checkpoint.every === 0) await save();
    }
    await save();
    const score: SequenceScore = {
      task: o.task,
      method: o.method,
      truncation: o.truncation,
      windows: trainer.windows,
      stopped,
      seconds: seconds(),
      ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    };
    if (copyTask) {
      score.solved = copyTask.score();
      score.rises = rises;
    } else if (corpus) {
      if (!Number.isFinite(early.best)) {
        // No validation ran yet (a budget under validateEvery): validate the final weights.
        early.best = await evaluateSplit(trainer, corpus, 'validation', o.batch);
        await copyWeights(
          model.parameters().map((p) => p.value),
          best,
          trainer,
        );
      }
      await copyWeights(
        best,
        model.parameters().map((p) => p.value),
        trainer,
      );
      score.bestValidationBits = early.best;
      score.testBits = await evaluateSplit(trainer, corpus, 'test', o.batch);
      score.earlyStopped = early.stopped;
    }
    return score;
  } finally {
    for (const t of best) t.dispose();
    trainer.dispose();
  }
}

/** Bits per character over one pass of a split, from a zero state (windows of 64 steps or fewer). */
async function evaluateSplit(trainer: RecurrentTraining, corpus: TextCorpus, split: 'validation' | 'test', batch: number): Promise<number> {
  const source = corpus.source(split, batch);
  const steps = Math.min(64, source.streamLength);
  return (await trainer.evaluate(() => (source.done ? undefined : source.nextWindow(steps)))).bits;
}

async function copyWeights(from: readonly Tensor[], to: readonly Tensor[], trainer: RecurrentTraining): Promise<void> {
  from.forEach((t, i) => ops.copy({ stream: trainer.stream }, t, to[i]));
  await trainer.synchronize();
}
