// Times a training step of the MNIST FCN (Linear → BatchNorm → ReLU hidden layers, Adam), or of
// cnn() on MNIST-sized images, with backprop, cDNI or DNI (optionally with the complete unlock)
// on a resident random batch, run op by op or captured once into a graph and replayed. The host reads every step's loss, as a training loop that logs does (PyTorch's
// peers call loss.item()). Shared by the benchmarks.
import {
  Adam,
  Arena,
  Backpropagation,
  Device,
  Graph,
  Module,
  Random,
  SoftmaxCrossEntropy,
  Stream,
  Tensor,
  TrainingStrategy,
  SynthesizerOptions,
  cnn,
  decouple,
  mlp,
} from '../ts';

export type Method = 'backprop' | 'cdni' | 'dni';
export type Streams = 'single' | 'per-module';

/** cnn() on [batch, 1, 28, 28] images, and its conv synthesizers' hidden filters (DNI and cDNI alike). */
export interface CnnStep {
  filters: number;
  blocks: number;
  synthFilters: number[];
}

export interface StepTimeOptions {
  device: Device;
  /** the FCN's hidden widths (ignored with `cnn`) */
  hidden: number[];
  /** time cnn() instead of the FCN */
  cnn?: CnnStep;
  /** decoupled runs: the complete unlock (decouple's `unlock: true`, default input models) */
  unlock?: boolean;
  batch: number;
  method: Method;
  /** decoupled runs: one stream in all or one per module */
  streams: Streams;
  steps: number;
  warmup: number;
  /** capture the step into a graph after the warm-up and time its launches */
  graph?: boolean;
}

/** The MNIST FCN's (or cnn()'s) training step, ready to run on a resident random batch. */
export interface FcnStep {
  strategy: TrainingStrategy;
  /** the trained network (decoupled runs: with its synthesizers) */
  net: Module;
  stream: Stream;
  x: Tensor;
  y: Tensor;
  /** one step, awaited through the host's read of its loss */
  step(): Promise<void>;
  dispose(): void;
}

/** Builds the model, its training strategy and a resident batch (see stepTime). */
export function fcnStep(o: Pick<StepTimeOptions, 'device' | 'hidden' | 'cnn' | 'unlock' | 'batch' | 'method' | 'streams'>): FcnStep {
  const { device, batch } = o;
  if (o.unlock && o.method === 'backprop') throw new Error("stepTime: 'unlock' needs method dni or cdni, got backprop");
  const rng = new Random(0);
  const example = o.cnn ? [1, 28, 28] : [784];
  const model = o.cnn
    ? cnn({ channels: 1, height: 28, width: 28, classes: 10, filters: o.cnn.filters, blocks: o.cnn.blocks })
    : mlp(784, o.hidden, 10);
  const loss = new SoftmaxCrossEntropy();
  const optimizer = () => new Adam({ lr: 1e-4 });
  let strategy: TrainingStrategy;
  let net: Module = model;
  if (o.method === 'backprop') {
    model.initialize(device, rng);
    strategy = new Backpropagation(model, loss, optimizer());
  } else {
    const conditioned = o.method === 'cdni';
    const synthesizer: SynthesizerOptions = o.cnn
      ? { conditioned, filters: o.cnn.synthFilters }
      : conditioned
        ? { conditioned }
        : { hidden: [1024, 1024] };
    const d = decouple(model, {
      synthesizer,
      streams: o.streams,
      ...(o.cnn ? { input: example } : {}),
      ...(o.unlock ? { unlock: true } : {}),
    });
    d.initialize(device, rng);
    strategy = d.trainingStrategy({ loss, optimizer });
    net = d;
  }
  const stream = new Stream(device);
  const size = example.reduce((a, b) => a * b, 1);
  const x = Tensor.fromArray(rng.uniformArray(batch * size, 0, 1), [batch, ...example], { device });
  const y = Tensor.fromArray(
    Int32Array.from({ length: batch }, () => rng.int(10)),
    [batch],
    { device },
  );
  return {
    strategy,
    net,
    stream,
    x,
    y,
    step: async () => {
      const arena = new Arena();
      await strategy.step(x, y, { device, stream, training: true, arena }).read(stream);
      arena.dispose();
    },
    dispose: () => {
      strategy.dispose();
      net.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

/** Milliseconds per training step. */
export async function stepTime(o: StepTimeOptions): Promise<number> {
  const { device } = o;
  const fcn = fcnStep(o);
  const { strategy, stream, x, y } = fcn;
  let step = fcn.step;
  for (let i = 0; i < Math.max(o.warmup, o.graph ? 1 : 0); i++) await step();
  const captureArena = new Arena();
  let graph: Graph | undefined;
  if (o.graph) {
    const hooks: ((s: Stream) => void)[] = [];
    let loss: Tensor | undefined;
    graph = Graph.capture(stream, () => {
      loss = strategy.step(x, y, { device, stream, training: true, arena: captureArena, capture: { beforeLaunch: (f) => hooks.push(f) } });
    });
    const g = graph;
    step = async () => {
      for (const update of hooks) update(stream);
      g.launch(stream);
      await loss!.read(stream);
    };
    for (let i = 0; i < o.warmup; i++) await step();
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < o.steps; i++) await step();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / o.steps;
  graph?.dispose();
  captureArena.dispose();
  fcn.dispose();
  return ms;
}
