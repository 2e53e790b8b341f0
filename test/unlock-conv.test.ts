// The complete unlock on image models: the convolutional input model (convInputModel in
// ts/dni/unlock.ts) predicts each cut of cnn() from the image, an unlocked CNN trains the same
// on one stream as on per-module streams, and `npm start -- --model cnn --method cdni --unlock`
// runs. The cut sizes are computed here from the pool's formula, not by cnn().
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  AvgPool2d,
  Conv2d,
  Dataset,
  DecoupledNetwork,
  Device,
  Flatten,
  Linear,
  Random,
  Sequential,
  Tensor,
  Trainer,
  cnn,
  decouple,
} from '../ts';
import { InputModel, convInputModel, mlpInputModel } from '../ts/dni/unlock';
import { configure } from '../ts/cli/configure';
import { parseArgs } from '../ts/cli/options';
import * as ref from './helpers/reference';
import { expectThrows } from './helpers/errors';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();

/** A stride-2 3x3 pool with padding 1: floor((s + 2 - 3) / 2) + 1 = ceil(s / 2). */
const pooled = (s: number) => Math.ceil(s / 2);

describe('the convolutional input model', () => {
  test.each([
    [2, 28, 28],
    [3, 28, 28],
    [4, 28, 28],
    [2, 9, 9],
    [3, 9, 9],
    [4, 9, 9],
    [3, 9, 13],
  ])("predicts each cut of cnn() with %i blocks on %ix%i images, the cut's shape exactly", (blocks, height, width) => {
    const filters = 3;
    const net = decouple(cnn({ channels: 2, height, width, classes: 4, filters, blocks, kernel: 3 }), {
      input: [2, height, width],
      unlock: true,
    });
    // Cut k (0-based, after block k's ReLU, before its pool) has k pools below it.
    const want = Array.from({ length: blocks }, (_, k) => {
      let [h, w] = [height, width];
      for (let p = 0; p < k; p++) [h, w] = [pooled(h), pooled(w)];
      return [filters, h, w];
    });
    expect(net.inputModels.map((m) => [...m.output])).toEqual(want);
    net.inputModels.forEach((m, k) => {
      expect(m.network.outputShape([5, 2, height, width])).toEqual([5, ...want[k]]);
      const layers = (m.network as Sequential).layers;
      expect(layers.filter((l) => l instanceof AvgPool2d)).toHaveLength(k);
      const convs = layers.filter((l): l is Conv2d => l instanceof Conv2d);
      // One hidden layer as wide as the cut, then the conv to its channels.
      expect(convs.map((c) => [c.inChannels, c.outChannels, ...c.window.kernel])).toEqual([
        [2, filters, 5, 5],
        [filters, filters, 5, 5],
      ]);
    });
  });

  test('unlock.hidden sets the hidden filters; a row output is Flatten → Linear; unreachable sizes ask for unlock.network', () => {
    const wide = convInputModel([1, 28, 28], [8, 7, 7], [6, 5]) as Sequential;
    expect(wide.layers.filter((l): l is Conv2d => l instanceof Conv2d).map((c) => c.outChannels)).toEqual([6, 5, 8]);
    expect(wide.outputShape([2, 1, 28, 28])).toEqual([2, 8, 7, 7]);
    const linear = convInputModel([1, 28, 28], [8, 7, 7], []) as Sequential; // no hidden layer: pools, then the conv
    expect(linear.layers.map((l) => l.constructor)).toEqual([AvgPool2d, AvgPool2d, Conv2d]);
    expect(linear.outputShape([2, 1, 28, 28])).toEqual([2, 8, 7, 7]);
    const rows = convInputModel([3, 9, 9], [10]) as Sequential;
    expect(rows.layers.slice(-2).map((l) => l.constructor)).toEqual([Flatten, Linear]);
    expect((rows.layers[rows.layers.length - 1] as Linear).inFeatures).toBe(32 * 9 * 9);
    expect(rows.outputShape([2, 3, 9, 9])).toEqual([2, 10]);
    expect(convInputModel([784], [16])).toBeUndefined();
    expect(mlpInputModel([1, 28, 28], [16])).toBeUndefined();
    // 28 → 14 → 7 → 4: never 9; and pools never enlarge.
    expect(convInputModel([1, 28, 28], [4, 9, 9])).toBeUndefined();
    expect(convInputModel([1, 8, 8], [4, 16, 16])).toBeUndefined();
    expect(convInputModel([1, 28, 28], [4, 14, 28])).toBeUndefined();
    expectThrows(
      () => new InputModel('input model 2', 1, [1, 28, 28], [4, 9, 9], {}),
      'RangeError',
      /^input model 2: no default input model maps rows of shape \[1, 28, 28\] to \[4, 9, 9\]; give 'unlock.network'$/,
    );
  });
});

/** Trains a tiny unlocked cDNI CNN for 2 steps; returns every state tensor's bytes, the model's alone, and the input models' parameters. */
async function trained(options: { streams: 'single' | 'per-module'; unlock?: boolean }) {
  const rng = new Random(4);
  const rows = 32;
  const x = ref.uniformArray(rng, rows * 2 * 7 * 7, -1, 1);
  const y = Int32Array.from({ length: rows }, (_, i) => i % 3);
  const data = Dataset.fromArrays(x, y, { shape: [2, 7, 7], name: 'tiny images', classes: 3 });
  const net = decouple(cnn({ channels: 2, height: 7, width: 7, classes: 3, filters: 3, blocks: 3, kernel: 3 }), {
    input: [2, 7, 7],
    streams: options.streams,
    synthesizer: { conditioned: true, filters: [4], kernel: 3 },
    unlock: options.unlock ?? true,
  });
  const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: 6 });
  try {
    const before = await bytes(
      net.inputModelParameters().map((p) => p.value),
      trainer,
    );
    await trainer.fit(data, { steps: 2, batchSize: 16 });
    return {
      model: await bytes(net.model.stateTensors(), trainer),
      all: await bytes([...net.stateTensors(), ...net.inputModelParameters().map((p) => p.value)], trainer),
      inputsBefore: before,
      inputsAfter: await bytes(
        net.inputModelParameters().map((p) => p.value),
        trainer,
      ),
    };
  } finally {
    trainer.dispose();
  }
}

async function bytes(ts: Tensor[], trainer: Trainer): Promise<Buffer> {
  return Buffer.concat((await Promise.all(ts.map((t) => t.readFloat32(trainer.stream)))).map((a) => Buffer.from(a.buffer)));
}

test('an unlocked CNN (cDNI, 3 blocks, BatchNorm2d everywhere) trains bit for bit alike on one stream and on per-module streams', async () => {
  const perModule = await trained({ streams: 'per-module' });
  const single = await trained({ streams: 'single' });
  expect(single.all.equals(perModule.all)).toBe(true);
  // The input models learned, and the unlock changed the model's training.
  expect(perModule.inputsAfter.length).toBeGreaterThan(0);
  expect(perModule.inputsAfter.equals(perModule.inputsBefore)).toBe(false);
  expect((await trained({ streams: 'single', unlock: false })).model.equals(perModule.model)).toBe(false);
});

test('npm start -- --model cnn --method cdni --unlock trains on MNIST', () => {
  const net = configure(parseArgs('--model cnn --filters 4 --blocks 2 --method cdni --unlock'.split(' ')), 1000).model as DecoupledNetwork;
  expect(net.inputModels.map((m) => [m.module, [...m.input], [...m.output]])).toEqual([
    [1, [1, 28, 28], [4, 28, 28]],
    [2, [1, 28, 28], [4, 14, 14]],
  ]);
  const root = path.resolve(__dirname, '..');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-unlock-conv-'));
  try {
    const args = '--model cnn --filters 4 --blocks 2 --method cdni --unlock --batch-size 32 --epochs 1 --steps 2 --diagnose-every 1';
    const r = spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args.split(' ')], {
      cwd: dir,
      env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
      encoding: 'utf8',
      timeout: 300_000,
    });
    const out = `${r.stdout}${r.stderr}`;
    expect(out).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(out).toMatch(
      /model: CNN-2 \(4 5x5 filters per layer, max then average pools\), BatchNorm \+ ReLU, cdni \(cDNI\+unlock\(3 modules/,
    );
    expect(out).toMatch(/final test accuracy: \S+%/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
