// What `npm start`'s options configure: the model (plain or decoupled), the Trainer's options
// and fit()'s, without loading data or training (main.ts adds the data and the logging), so
// that a test can check that every flag reaches what it configures.
import { Device } from '../device';
import { decouple, UpdateSchedule } from '../dni/network';
import { feedbackAlignment } from '../methods/feedback-alignment';
import { reinforce } from '../methods/reinforce';
import { coagent } from '../methods/coagent';
import { targetPropagation } from '../methods/target-propagation';
import { error } from '../errors';
import { mlp } from '../models';
import { cnn } from '../nn/conv';
import { Activation, Linear, Sequential } from '../nn/layers';
import type { ActivationName } from '../ops';
import { Module } from '../nn/module';
import { Adam, learningRateSchedules } from '../optim/optimizers';
import { FitOptions, TrainerOptions } from '../train/trainer';
import { Options, modelOptimizer } from './options';

/**
 * The model, the data order and the learning-rate schedule come from the options, so they are
 * saved in the checkpoint (fit's checkpoint.config, keyed by flag) and a resume with others is
 * refused, naming the flag. Free to change: the file, the device, --save-every, --steps and --epochs
 * (more epochs extend a run; the learning rate keeps the decay steps planned when it started).
 */
function runConfig(o: Options, lrDecaySteps: number[]): Record<string, unknown> {
  const {
    checkpoint: _file,
    device: _device,
    help: _help,
    epochs: _epochs,
    steps: _steps,
    saveEvery: _saveEvery,
    quiet: _quiet,
    json: _json,
    logDir: _logDir,
    transport: _transport,
    ...fixed
  } = o;
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fixed)) config[`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`] = value;
  config['lr decay steps'] = lrDecaySteps;
  return config;
}

export interface Configured {
  model: Module;
  decoupled: boolean;
  schedule: UpdateSchedule;
  stepsPerEpoch: number;
  /** the steps where the learning rates drop x0.1 */
  decaySteps: number[];
  trainer: TrainerOptions;
  /** fit()'s options but the data-dependent, logging and signal ones (validation, onStep, onEpoch, logDir, signal) */
  fit: FitOptions;
}

/** `--device`, or the best device present. */
export function deviceOf(o: Options): Device {
  return o.device ? Device.parse(o.device) : Device.best();
}

/** features → hidden → classes, each hidden Linear followed by `activation` (no BatchNorm: DTP and REINFORCE have no rule for it). */
function stack(features: number, hidden: number[], classes: number, activation: ActivationName): Sequential {
  const widths = [features, ...hidden];
  return new Sequential([
    ...hidden.flatMap((w, i) => [new Linear(widths[i], w), new Activation(activation)]),
    new Linear(widths[widths.length - 1], classes),
  ]);
}

/** What the model needs to know of the data: the shape of a row and the number of classes. */
export interface DataShape {
  shape: readonly number[];
  classes: number;
}

/** MNIST's, the default data. */
export const mnistShape: DataShape = { shape: [1, 28, 28], classes: 10 };

/**
 * The run `o` describes on a training set of `trainCount` examples. `plannedDecaySteps`: the
 * learning-rate decay steps a resumed run started with (default: 60% and 85% of the epochs' steps).
 * `data`: the rows' shape and the classes, which size the model's input and output.
 */
export function configure(o: Options, trainCount: number, plannedDecaySteps?: number[], data: DataShape = mnistShape): Configured {
  const device = deviceOf(o);
  const features = data.shape.reduce((a, b) => a * b, 1);
  // --model cnn: the paper's CNN on the data's images; decouple() needs their shape.
  const mlpModel = o.cnn ? cnn({ ...imageShape(data), classes: data.classes, ...o.cnn }) : mlp(features, o.hidden, data.classes);
  const decoupled = o.method === 'dni' || o.method === 'cdni';
  const schedule: UpdateSchedule =
    o.pipeline > 0 ? { kind: 'pipelined', depth: o.pipeline, pUpdate: o.pUpdate } : { kind: 'lockstep', pUpdate: o.pUpdate };
  const stepsPerEpoch = Math.ceil(trainCount / o.batchSize);
  // Step decay (x0.1 at 60% and 85% of the epochs' steps) settles the noisy late epochs of a constant lr.
  const total = o.epochs * stepsPerEpoch;
  const decaySteps = plannedDecaySteps ?? [Math.round(0.6 * total), Math.round(0.85 * total)];
  const decayed = (base: number) => learningRateSchedules.stepDecay(base, decaySteps, 0.1);
  const lr = decayed(o.lr);
  const synthLr = o.synthLr === undefined ? undefined : decayed(o.synthLr);
  const model: Module = decoupled
    ? decouple(mlpModel, {
        at: o.at,
        synthesizer: {
          conditioned: o.method === 'cdni',
          center: o.center,
          maskInactive: o.maskInactive,
          targetScale: o.synthScale,
          ...(o.synthFilters ? { filters: o.synthFilters } : {}),
          optimizer: synthLr === undefined ? undefined : () => new Adam({ lr: synthLr }),
        },
        schedule,
        streams: o.streams,
        unlock: o.unlock,
        ...(o.cnn ? { input: [...data.shape] } : {}),
      })
    : o.method === 'fa' || o.method === 'dfa'
      ? feedbackAlignment(mlpModel, { direct: o.method === 'dfa' }) // fixed matrices from --seed
      : o.method === 'dtp'
        ? targetPropagation(stack(features, o.hidden, data.classes, 'tanh'), { targetStep: o.targetStep, noise: o.noise }) // Lee et al.'s units; inverses, noise from --seed
        : o.method === 'reinforce'
          ? reinforce(stack(features, o.hidden, data.classes, 'sigmoid'), { decay: o.baselineDecay }) // Bernoulli units; samples from --seed
          : o.method === 'coagent'
            ? coagent(stack(features, o.hidden, data.classes, 'sigmoid')) // the same units, a critic's TD error as baseline
            : mlpModel;
  return {
    model,
    decoupled,
    schedule,
    stepsPerEpoch,
    decaySteps,
    // A factory: a decoupled network gives each module (and, without --synth-lr, each synthesizer) its own optimizer.
    trainer: { device, optimizer: () => modelOptimizer(o.optimizer, lr), seed: o.seed },
    fit: {
      epochs: o.epochs,
      steps: o.steps,
      batchSize: o.batchSize,
      logEvery: 1,
      diagnoseEvery: decoupled ? o.diagnoseEvery : undefined,
      graph: o.graph,
      checkpoint: o.checkpoint ? { path: o.checkpoint, every: o.saveEvery ?? stepsPerEpoch, config: runConfig(o, decaySteps) } : undefined,
    },
  };
}

/** The [channels, height, width] of image rows, for cnn(); rows of features are refused. */
function imageShape(data: DataShape): { channels: number; height: number; width: number } {
  if (data.shape.length !== 3)
    throw error(
      'ERR_SYNTHGRAD_CLI',
      `--model cnn needs images [channels, height, width], but the data's rows are [${data.shape.join(', ')}]`,
    );
  const [channels, height, width] = data.shape;
  return { channels, height, width };
}
