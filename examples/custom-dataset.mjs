// Your own data from arrays: two interleaved spirals, a classifier trained with cDNI.
//   node examples/custom-dataset.mjs [steps]      (default: 300 epochs)
import { Adam, Dataset, Device, Trainer, decouple, mlp } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const rows = [];
const labels = [];
for (let i = 0; i < 400; i++) {
  const arm = i % 2;
  const t = (i / 400) * 3 * Math.PI;
  const r = 0.2 + t / (3 * Math.PI);
  rows.push([r * Math.cos(t + arm * Math.PI), r * Math.sin(t + arm * Math.PI)]);
  labels.push(arm);
}
const data = Dataset.fromArrays(rows, labels, { name: 'spirals', classes: 2 });
const net = decouple(mlp(2, [64, 64], 2), { synthesizer: { conditioned: true } });
const trainer = new Trainer(net, { device: Device.cpu(), optimizer: () => new Adam({ lr: 3e-3 }), seed: 0 });
await trainer.fit(data, { epochs: 300, steps, batchSize: 64 });
console.log(`training accuracy ${(100 * (await trainer.evaluate(data)).accuracy).toFixed(1)}%`);
trainer.dispose();
