// Using a trained model: batched predictions in evaluation mode (BatchNorm's running
// statistics, no optimizer, nothing updated), and the weights alone saved and loaded for that
// (a training checkpoint carries the optimizer state and the run's position as well).
//
// A decoupled network predicts with its plain model: the synthesizers are a training device and
// are neither used nor saved here.
import { checkOptions, describe, positiveInt } from '../check';
import { Dataset } from '../data/dataset';
import { Device } from '../device';
import { Module, StepContext } from '../nn/module';
import { Random } from '../random';
import { Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { readCheckpoint, restoreTensors, writeCheckpoint } from './checkpoint';
import { error, rangeError, typeError } from '../errors';

export interface PredictOptions {
  /** rows per forward pass; default 1000 */
  batchSize?: number;
  /** the stream to run on; default the device's default stream */
  stream?: Stream;
}

/** What a model predicts for each row: its raw outputs, and for classifiers the softmax and the best class. */
export class Predictions {
  constructor(
    /** [rows, outputs], row-major: the model's outputs (logits for a classifier) */
    readonly outputs: Float32Array,
    readonly rows: number,
    readonly width: number,
  ) {}

  /** Softmax of each row's outputs (float64 arithmetic, stored as float32). */
  probabilities(): Float32Array {
    const p = new Float32Array(this.outputs.length);
    for (let r = 0; r < this.rows; r++) {
      const row = this.outputs.subarray(r * this.width, (r + 1) * this.width);
      const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
      let sum = 0;
      for (let c = 0; c < this.width; c++) sum += Math.exp(row[c] - max);
      for (let c = 0; c < this.width; c++) p[r * this.width + c] = Math.exp(row[c] - max) / sum;
    }
    return p;
  }

  /** Each row's class with the largest output (the first, on ties). */
  classes(): Int32Array {
    const out = new Int32Array(this.rows);
    for (let r = 0; r < this.rows; r++) {
      let best = 0;
      for (let c = 1; c < this.width; c++) if (this.outputs[r * this.width + c] > this.outputs[r * this.width + best]) best = c;
      out[r] = best;
    }
    return out;
  }
}

/** The module that runs at inference: a decoupled network's plain model, else the model itself. */
export function inferenceModule(model: Module): Module {
  const inner = (model as { model?: unknown }).model;
  return typeof (model as { synthesizers?: unknown }).synthesizers === 'object' && inner instanceof Module ? inner : model;
}

/** The model's state tensors; a model without them has not been initialized (or has no weights at all). */
function stateTensors(fn: string, model: Module): Tensor[] {
  const fail = () =>
    error('ERR_SYNTHGRAD_STATE', `${fn}: ${model.name} has no weights yet: train it with a Trainer, or load them with loadModel()`);
  let state: Tensor[];
  try {
    state = model.stateTensors();
  } catch {
    throw fail();
  }
  if (state.length === 0 || state.some((t) => t.disposed)) throw fail();
  return state;
}

/**
 * Runs `model` in evaluation mode on `input`: a Tensor of a batch ([rows, features], or
 * [rows, channels, height, width] for a model that takes images), a Float32Array of whole rows
 * (a model that takes rows of a fixed width), or a Dataset (its labels are ignored; fed as the
 * Trainer feeds it). Resolves with the outputs of every row.
 */
export async function predict(model: Module, input: Tensor | Float32Array | Dataset, options: PredictOptions = {}): Promise<Predictions> {
  if (!(model instanceof Module)) throw typeError(`predict: 'model' must be a Module, got ${describe(model)}`);
  checkOptions('predict', options, ['batchSize', 'stream']);
  const net = inferenceModule(model);
  const device = stateTensors('predict', net)[0].device;
  const batchSize = positiveInt('predict', 'batchSize', options.batchSize ?? 1000);
  if (options.stream !== undefined && !(options.stream instanceof Stream))
    throw typeError(`predict: 'stream' must be a Stream, got ${describe(options.stream)}`);
  const stream = options.stream ?? Stream.default(device);
  const takes = net.inputShape();

  let rows: number;
  let example: number[]; // the shape of one row as fed
  let rowsOf: (start: number, end: number, arena: Arena) => Tensor;
  let batchSizeFor = batchSize;
  if (input instanceof Tensor) {
    const rank = takes?.kind === 'images' ? 4 : takes?.kind === 'any' ? input.shape.length : 2;
    if (input.dtype !== 'float32' || input.shape.length !== rank || rank < 2)
      throw typeError(
        `predict: 'input' must be a float32 tensor of shape ${rank === 4 ? '[rows, channels, height, width]' : '[rows, features]'}, ` +
          `got ${input.dtype} [${input.shape.join(', ')}]`,
      );
    if (!input.device.equals(device)) throw typeError(`predict: 'input' is on ${input.device.name}, the model on ${device.name}`);
    rows = input.shape[0];
    example = input.shape.slice(1);
    // A tensor already on the device runs in one pass: its rows are there already.
    const whole = input;
    rowsOf = () => whole;
    batchSizeFor = rows;
  } else if (input instanceof Float32Array || input instanceof Dataset) {
    const values = input instanceof Dataset ? input.inputs : input;
    if (input instanceof Dataset) {
      if (takes?.kind === 'images' && input.shape.length !== 3)
        throw rangeError(
          `predict: 'input' (${input.name}) has rows of shape [${input.shape.join(', ')}], but ${net.name} takes images: give the Dataset its image shape`,
        );
      example = takes?.kind === 'images' || takes?.kind === 'any' ? [...input.shape] : [input.features];
    } else {
      const features = net.inputFeatures();
      if (features === undefined)
        throw typeError(`predict: ${net.name} does not fix its input width: pass a Tensor of a batch or a Dataset`);
      example = [features];
    }
    const width = example.reduce((a, b) => a * b, 1);
    if (values.length % width !== 0)
      throw rangeError(`predict: 'input' has ${values.length} values, not a whole number of rows of ${width}`);
    rows = values.length / width;
    rowsOf = (start, end, arena) =>
      Tensor.fromArray(values.subarray(start * width, end * width), [end - start, ...example], { device, arena });
  } else {
    throw typeError(`predict: 'input' must be a Tensor, a Float32Array or a Dataset, got ${describe(input)}`);
  }
  if (rows === 0) throw rangeError("predict: 'input' has no rows");
  let out: number[];
  try {
    out = net.outputShape([1, ...example]);
  } catch (e) {
    throw rangeError(`predict: 'input' does not fit the model: ${(e as Error).message}`);
  }
  if (out.length !== 2) throw rangeError(`predict: ${net.name} outputs shape [${out.join(', ')}] per batch, not rows of outputs`);
  const outWidth = out[1];

  const outputs = new Float32Array(rows * outWidth);
  for (let start = 0; start < rows; start += batchSizeFor) {
    const end = Math.min(rows, start + batchSizeFor);
    const arena = new Arena();
    try {
      const ctx: StepContext = { device, stream, training: false, arena };
      const y = net.forward(rowsOf(start, end, arena), ctx).output;
      outputs.set(await y.readFloat32(stream), start * outWidth);
    } finally {
      arena.dispose();
    }
  }
  return new Predictions(outputs, rows, outWidth);
}

/** The record a model file carries besides its tensors. */
interface ModelRecord {
  kind: 'synthgrad-model';
  model: string;
}

/**
 * Saves the weights of `model` (parameters and BatchNorm statistics; for a decoupled network,
 * those of its plain model) to `path`, for loadModel(). Written like a checkpoint: atomically.
 */
export async function saveModel(model: Module, path: string): Promise<void> {
  if (!(model instanceof Module)) throw typeError(`saveModel: 'model' must be a Module, got ${describe(model)}`);
  if (typeof path !== 'string' || path === '') throw typeError(`saveModel: 'path' must be a file path, got ${describe(path)}`);
  const net = inferenceModule(model);
  const tensors = stateTensors('saveModel', net).map((tensor, i) => ({ name: `model.${i}`, tensor }));
  if (tensors.length === 0) throw error('ERR_SYNTHGRAD_STATE', `saveModel: ${net.name} has no weights to save`);
  const record: ModelRecord = { kind: 'synthgrad-model', model: net.name };
  await writeCheckpoint(path, tensors, record, Stream.default(tensors[0].tensor.device));
}

/**
 * Loads weights saved by saveModel() into `model`, built the same way (the same layers and
 * widths). A model that has weights (e.g. one a Trainer is training) gets the saved values in
 * place, on its device; a new one is created on `device` (default Device.best()). Resolves
 * with the model, ready for predict().
 */
export async function loadModel<M extends Module>(model: M, path: string, options: { device?: Device } = {}): Promise<M> {
  if (!(model instanceof Module)) throw typeError(`loadModel: 'model' must be a Module, got ${describe(model)}`);
  if (typeof path !== 'string' || path === '') throw typeError(`loadModel: 'path' must be a file path, got ${describe(path)}`);
  checkOptions('loadModel', options, ['device']);
  if (options.device !== undefined && !(options.device instanceof Device))
    throw typeError(`loadModel: 'device' must be a Device, got ${describe(options.device)}`);
  const saved = await readCheckpoint(path);
  const record = saved.host as Partial<ModelRecord> | null;
  if (!record || record.kind !== 'synthgrad-model')
    throw error(
      'ERR_SYNTHGRAD_CHECKPOINT',
      `loadModel: ${path} is not a model file written by saveModel() (a training checkpoint loads with Trainer.load)`,
    );
  const net = inferenceModule(model);
  if (record.model !== net.name)
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `loadModel: ${path} holds ${record.model}; this model is ${net.name}`);
  let state: Tensor[];
  try {
    state = stateTensors('loadModel', net);
  } catch {
    net.initialize(options.device ?? Device.best(), new Random(0)); // values overwritten below
    state = net.stateTensors();
  }
  const device = state[0].device;
  if (options.device && !options.device.equals(device))
    throw typeError(`loadModel: the model's weights are on ${device.name}, not on the 'device' ${options.device.name}`);
  const stream = Stream.default(device);
  await restoreTensors(
    saved,
    state.map((tensor, i) => ({ name: `model.${i}`, tensor })),
    stream,
  );
  await stream.synchronize();
  return model;
}
