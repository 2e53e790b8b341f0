// Regression: fit y = sin(3x) with an MLP and the mean squared error.
//   node examples/regression.mjs [steps]          (default: 200 epochs)
import { Adam, Dataset, Device, Trainer, mlp, predict } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const xs = Array.from({ length: 256 }, (_, i) => [-1 + (2 * i) / 255]);
const data = Dataset.fromArrays(xs, xs.map(([x]) => [Math.sin(3 * x)]));   // rows of numbers: regression targets
const trainer = new Trainer(mlp(1, [64, 64], 1), { device: Device.cpu(), optimizer: new Adam({ lr: 3e-3 }), loss: 'mse', seed: 0 });
await trainer.fit(data, { epochs: 200, steps, batchSize: 32 });
console.log(`mean squared error ${(await trainer.evaluate(data)).loss.toExponential(2)}`);
const { outputs } = await predict(trainer.model, new Float32Array([0.5]));
console.log(`f(0.5) = ${outputs[0].toFixed(3)} (sin(1.5) = ${Math.sin(1.5).toFixed(3)})`);
trainer.dispose();
