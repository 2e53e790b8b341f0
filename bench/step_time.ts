// Times a training step of the MNIST FCN (Linear → BatchNorm → ReLU hidden layers, Adam) with
// backprop, cDNI or DNI on a resident random batch. The host reads every step's loss, as a
// training loop that logs does (PyTorch's peers call loss.item()). Shared by the benchmarks.
import {
  Adam, Arena, Backpropagation, Device, Module, Random, SoftmaxCrossEntropy, Stream, Tensor, TrainingStrategy,
  decouple, mlp,
} from '../ts';

export type Method = 'backprop' | 'cdni' | 'dni';
export type Streams = 'single' | 'per-module';

export interface StepTimeOptions {
  device: Device;
  hidden: number[];
  batch: number;
  method: Method;
  /** decoupled runs: one stream in all or one per module */
  streams: Streams;
  steps: number;
  warmup: number;
}

/** Milliseconds per training step. */
export async function stepTime(o: StepTimeOptions): Promise<number> {
  const { device, batch } = o;
  const rng = new Random(0);
  const model = mlp(784, o.hidden, 10);
  const loss = new SoftmaxCrossEntropy();
  const optimizer = () => new Adam({ lr: 1e-4 });
  let strategy: TrainingStrategy;
  let net: Module = model;
  if (o.method === 'backprop') {
    model.initialize(device, rng);
    strategy = new Backpropagation(model, loss, optimizer());
  } else {
    const synthesizer = o.method === 'cdni' ? { conditioned: true } : { hidden: [1024, 1024] };
    const d = decouple(model, { synthesizer, streams: o.streams });
    d.initialize(device, rng);
    strategy = d.trainingStrategy({ loss, optimizer });
    net = d;
  }
  const stream = new Stream(device);
  const x = Tensor.fromArray(rng.uniformArray(batch * 784, 0, 1), [batch, 784], { device });
  const y = Tensor.fromArray(Int32Array.from({ length: batch }, () => rng.int(10)), [batch], { device });
  const step = async () => {
    const arena = new Arena();
    await strategy.step(x, y, { device, stream, training: true, arena }).read(stream);
    arena.dispose();
  };
  for (let i = 0; i < o.warmup; i++) await step();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < o.steps; i++) await step();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / o.steps;
  strategy.dispose();
  net.dispose();
  x.dispose();
  y.dispose();
  return ms;
}
