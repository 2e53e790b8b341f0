// `npm start -- --model cnn`: the flags reach the CNN and its decoupling (parseArgs → configure),
// the flags that do not apply are errors naming them, MNIST reaches the model as [1, 28, 28]
// images, and a short run prints the usual progress.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AvgPool2d, Conv2d, DecoupledNetwork, Linear, MaxPool2d, Sequential } from '../ts';
import { configure } from '../ts/cli/configure';
import { parseArgs } from '../ts/cli/options';

const cli = (args: string) => configure(parseArgs(args.split(' ').filter(Boolean)), 1000);

describe('--model cnn', () => {
  test("builds the paper's CNN on [1, 28, 28] images: 3 blocks of 128 5x5 filters by default, --filters and --blocks", () => {
    const model = cli('--model cnn').model as Sequential;
    expect(model).toBeInstanceOf(Sequential);
    const convs = model.layers.filter((l): l is Conv2d => l instanceof Conv2d);
    expect(convs.map((c) => [c.inChannels, c.outChannels, ...c.window.kernel])).toEqual([
      [1, 128, 5, 5],
      [128, 128, 5, 5],
      [128, 128, 5, 5],
    ]);
    expect(model.layers.filter((l) => l instanceof MaxPool2d)).toHaveLength(1);
    expect(model.layers.filter((l) => l instanceof AvgPool2d)).toHaveLength(2);
    // 28 → 14 → 7 → 4 after the three stride-2 pools.
    expect((model.layers[model.layers.length - 1] as Linear).inFeatures).toBe(128 * 4 * 4);
    expect(model.outputShape([2, 1, 28, 28])).toEqual([2, 10]);

    const cnn4 = cli('--model cnn --filters 8 --blocks 4').model as Sequential;
    expect(cnn4.layers.filter((l): l is Conv2d => l instanceof Conv2d).map((c) => c.outChannels)).toEqual([8, 8, 8, 8]);
    expect(parseArgs(['--filters', '8', '--model', 'cnn']).cnn).toEqual({ filters: 8, blocks: 3 });
    expect(parseArgs([]).cnn).toBeUndefined(); // the FCN's saved run configuration is unchanged
    expect(parseArgs(['--model', 'mlp']).cnn).toBeUndefined();
  });

  test('--method dni and cdni cut after each block’s ReLU, with convolutional synthesizers (cdni: + 10 label maps)', () => {
    const dni = cli('--model cnn --filters 8 --method dni').model as DecoupledNetwork;
    expect(dni).toBeInstanceOf(DecoupledNetwork);
    expect(dni.config.cuts).toEqual([2, 6, 10]);
    expect(dni.input).toEqual([1, 28, 28]);
    expect(dni.synthesizers.map((s) => s.shape)).toEqual([
      [8, 28, 28],
      [8, 14, 14],
      [8, 7, 7],
    ]);
    expect(dni.synthesizers.map((s) => s.inputs)).toEqual([8, 8, 8]);
    const cdni = cli('--model cnn --filters 8 --blocks 4 --method cdni --mask-inactive').model as DecoupledNetwork;
    expect(cdni.synthesizers).toHaveLength(4);
    expect(cdni.synthesizers.map((s) => [s.conditioned, s.inputs, s.maskInactive])).toEqual(Array(4).fill([true, 18, true]));
  });

  test("--synth-filters sets the conv synthesizers' hidden filters (5x5 Conv2d → BatchNorm2d → ReLU each) and is saved in a checkpoint", () => {
    const convs = (net: DecoupledNetwork) =>
      net.synthesizers.map((s) =>
        (s.network as Sequential).layers.filter((l): l is Conv2d => l instanceof Conv2d).map((c) => [c.inChannels, c.outChannels]),
      );
    const given = cli('--model cnn --filters 8 --blocks 2 --method cdni --synth-filters 6,5,4 --checkpoint run.ckpt');
    // cDNI: 8 channels of h + 10 label maps in; 8 channels of ĝ out.
    expect(convs(given.model as DecoupledNetwork)).toEqual(
      Array(2).fill([
        [18, 6],
        [6, 5],
        [5, 4],
        [4, 8],
      ]),
    );
    expect(given.fit.checkpoint!.config).toHaveProperty('--synth-filters', [6, 5, 4]);
    const plain = cli('--model cnn --filters 8 --blocks 2 --method dni --checkpoint run.ckpt');
    expect(convs(plain.model as DecoupledNetwork)[0]).toEqual([
      [8, 128],
      [128, 128],
      [128, 8],
    ]);
    expect(plain.fit.checkpoint!.config).not.toHaveProperty('--synth-filters');
  });

  test.each([
    ['--synth-filters 8', /^--synth-filters applies to --model cnn only$/],
    ['--method dni --synth-filters 8', /^--synth-filters applies to --model cnn only$/],
    ['--model cnn --synth-filters 8', /^--synth-filters applies to dni and cdni only \(--method backprop has no synthesizers\)$/],
    ['--model cnn --method dni --synth-filters 8,0', /^--synth-filters must be positive whole numbers such as 128,128, got '8,0'$/],
    ['--model cnn --method dni --synth-filters 8,x', /^--synth-filters must be positive whole numbers such as 128,128, got '8,x'$/],
    ['--model cnn --method dni --synth-filters 2.5', /^--synth-filters must be positive whole numbers such as 128,128, got '2.5'$/],
  ])('%s is an error naming the flag', (args, message) => {
    expect(() => cli(args)).toThrow(message);
  });

  test.each([
    ['--model cnn --hidden 16', /--hidden applies to --model mlp only, not cnn/],
    ['--model cnn --method dni --center', /--center applies to --model mlp only, not cnn/],
    ['--model cnn --method dfa', /--model cnn trains with backprop, dni or cdni, not --method dfa/],
    ['--filters 8', /--filters applies to --model cnn only/],
    ['--model mlp --blocks 2', /--blocks applies to --model cnn only/],
    ['--model resnet', /--model must be mlp or cnn, got 'resnet'/],
    ['--model cnn --filters 0', /--filters must be > 0, got 0/],
    ['--model cnn --blocks 1.5', /--blocks must be a whole number, got 1.5/],
  ])('%s is an error naming the flag', (args, message) => {
    expect(() => cli(args)).toThrow(message);
  });

  test("the CNN takes the data's image shape and classes; rows of features are refused", () => {
    const small = configure(parseArgs(['--model', 'cnn', '--filters', '4', '--method', 'dni']), 100, undefined, {
      shape: [3, 8, 8],
      classes: 4,
    });
    const net = small.model as DecoupledNetwork;
    expect(net.input).toEqual([3, 8, 8]);
    expect(net.model.outputShape([2, 3, 8, 8])).toEqual([2, 4]);
    expect(() => configure(parseArgs(['--model', 'cnn']), 100, undefined, { shape: [64], classes: 4 })).toThrow(
      /--model cnn needs images \[channels, height, width\], but the data's rows are \[64\]/,
    );
  });

  test('npm start -- --model cnn --method cdni trains on MNIST with the usual progress output', () => {
    const root = path.resolve(__dirname, '..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-cli-cnn-'));
    try {
      const args = '--model cnn --filters 4 --blocks 2 --method cdni --batch-size 64 --epochs 1 --steps 2 --diagnose-every 1';
      const r = spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args.split(' ')], {
        cwd: dir,
        env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
        encoding: 'utf8',
        timeout: 300_000,
      });
      const out = `${r.stdout}${r.stderr}`;
      expect(out).not.toMatch(/error/);
      expect(r.status).toBe(0);
      expect(out).toMatch(/model: CNN-2 \(4 5x5 filters per layer, max then average pools\), BatchNorm \+ ReLU, cdni \(cDNI\(3 modules/);
      expect(out).toMatch(/final test accuracy: \S+%/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
