// MNIST with cDNI: every hidden layer a module of its own, updated from a synthetic gradient
// predicted by a linear synthesizer that also sees the label, each module on its own stream.
//   node examples/mnist-cdni.mjs [steps]          (default: 3 epochs)
import { Adam, Device, Trainer, datasets, decouple, mlp } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const { train, test } = await datasets.mnist();
const net = decouple(mlp(784, [256, 256, 256], 10), {
  synthesizer: { conditioned: true },          // cDNI: M([h, onehot(y)]), one zero-initialised Linear
  schedule: { kind: 'lockstep', pUpdate: 1 },
});
console.log(net.name);
// A factory: each module (and each synthesizer) gets an optimizer of its own.
const trainer = new Trainer(net, { device: Device.best(), optimizer: () => new Adam({ lr: 1e-3 }), seed: 0 });
await trainer.fit(train, { epochs: 3, steps, batchSize: 256, onEpoch: (m) => console.log(`epoch ${m.epoch}: train loss ${m.loss.toFixed(4)}`) });
console.log(`test accuracy ${(100 * (await trainer.evaluate(test)).accuracy).toFixed(2)}%`);
trainer.dispose();
