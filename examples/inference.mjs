// Train, save the weights alone, and load them into a fresh model for predictions.
//   node examples/inference.mjs [steps]           (default: 1 epoch)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, Trainer, datasets, loadModel, mlp, predict, saveModel } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const { train, test } = await datasets.mnist();
const trainer = new Trainer(mlp(784, [256, 256], 10), { device: Device.best(), optimizer: new Adam({ lr: 1e-3 }), seed: 0 });
await trainer.fit(train, { epochs: 1, steps, batchSize: 256 });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-example-'));
const file = path.join(dir, 'mnist.model');
await saveModel(trainer.model, file);
trainer.dispose();

const model = await loadModel(mlp(784, [256, 256], 10), file);   // the same layers, the saved weights
const predictions = await predict(model, test);
const classes = predictions.classes();
const probabilities = predictions.probabilities();
console.log(`first test image: class ${classes[0]} (label ${test.labels[0]}), p = ${probabilities[classes[0]].toFixed(3)}`);
let correct = 0;
for (let i = 0; i < test.count; i++) if (classes[i] === test.labels[i]) correct++;
console.log(`test accuracy ${(100 * correct / test.count).toFixed(2)}% from the loaded model`);
model.dispose();
fs.rmSync(dir, { recursive: true });
