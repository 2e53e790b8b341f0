// DNI (synthesizers with two hidden layers of 1024) with its diagnostics: how well each
// synthesizer's gradient matches the true, backpropagated one on a probe batch. The run is
// logged (fit's logDir) and turned into an HTML report with plots.
//   node examples/dni-diagnostics.mjs [steps]     (default: 1 epoch)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, Trainer, datasets, decouple, mlp, readRun, reportHtml } from 'synthgrad';

const steps = process.argv[2] ? Number(process.argv[2]) : undefined;
const { train, test } = await datasets.mnist();
const net = decouple(mlp(784, [256, 256, 256], 10), {
  at: [2, 5],                                   // cut between the hidden layers only
  synthesizer: { hidden: [1024, 1024], center: true, maskInactive: true },
});
const trainer = new Trainer(net, { device: Device.best(), optimizer: () => new Adam({ lr: 1e-3 }), seed: 0 });
const every = steps ? Math.max(1, Math.floor(steps / 2)) : 50;
const logDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-dni-')), 'run');
await trainer.fit(train, {
  epochs: 1, steps, batchSize: 256, diagnoseEvery: every, logEvery: every, validation: test, logDir,
  onStep: (m) => {
    if (!m.diagnostics) return;
    const cos = m.diagnostics.map((d) => `M${d.module} cos ${d.cosine.toFixed(3)} |ĝ|/|g| ${d.normRatio.toFixed(2)}`).join('  ');
    console.log(`step ${m.step}: loss ${m.loss.toFixed(4)}  ${cos}`);
  },
});
console.log(`test accuracy ${(100 * (await trainer.evaluate(test)).accuracy).toFixed(2)}%`);
trainer.dispose();
const report = path.join(logDir, 'report.html');
fs.writeFileSync(report, reportHtml([readRun(logDir)], { title: 'DNI with diagnostics' }));
console.log(`run log and report: ${report}`);
