// `npm start --data`: loading each kind of data in-process (loadData), and one run of the
// compiled CLI, end to end, on tiny IDX files the test writes (errors come before training).
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as zlib from 'zlib';
import { loadData, parseDataSpec } from '../ts/cli/data';
import { cifarBytes, idxBytes, tempDir } from './helpers/data-files';

const { dir, write } = tempDir('synthgrad-cli-data-');

/** `count` images [3, 4] with labels i % 3; pixels vary with the row and the position. */
function idxPair(prefix: string, count: number, gzip = false): string[] {
  const values = Array.from({ length: count * 12 }, (_, i) => (i * 37) % 256);
  const labels = Array.from({ length: count }, (_, i) => i % 3);
  const pack = (b: Buffer) => (gzip ? zlib.gzipSync(b) : b);
  return [
    write(`${prefix}-images${gzip ? '.gz' : ''}`, pack(idxBytes([count, 3, 4], values))),
    write(`${prefix}-labels`, idxBytes([count], labels)),
  ];
}
const files = [...idxPair('train', 24), ...idxPair('test', 6, true)];
const spec = `idx:${files.join(',')}`;

describe('loadData: the sets --data names', () => {
  test('idx: both sets, their shape and classes in the line it prints', async () => {
    const { train, test, description } = await loadData(parseDataSpec(spec));
    expect([train.count, train.shape, train.classes, test.count]).toEqual([24, [1, 3, 4], 3, 6]);
    expect(description).toBe(`IDX files ${files[0]}, ...: 24 training and 6 test images of [1, 3, 4], 3 classes`);
  });

  test('cifar10:DIR reads the binary files', async () => {
    for (let i = 1; i <= 5; i++) write(`cifar/data_batch_${i}.bin`, cifarBytes([i, 0]));
    write('cifar/test_batch.bin', cifarBytes([9]));
    const { train, description } = await loadData(parseDataSpec(`cifar10:${path.join(dir, 'cifar')}`));
    expect(Array.from(train.labels)).toEqual([1, 0, 2, 0, 3, 0, 4, 0, 5, 0]);
    expect(description).toBe(`CIFAR-10 (${path.join(dir, 'cifar')}): 10 training and 1 test images of [3, 32, 32], 10 classes`);
  });

  test('mnist:DIR names the directory; missing files are errors naming them', async () => {
    await expect(loadData(parseDataSpec(`mnist:${dir}`))).rejects.toThrow(`MNIST: ${dir} has no train-images-idx3-ubyte, `);
    await expect(loadData(parseDataSpec(`cifar10:${dir}`))).rejects.toThrow(`CIFAR-10: ${dir} has no data_batch_1.bin, `);
  });
});

describe('npm start --data idx:... (the compiled CLI)', () => {
  const root = path.resolve(__dirname, '..');
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args], {
      cwd: dir,
      env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const small = ['--hidden', '8', '--batch-size', '8', '--epochs', '2'];

  test('trains a 12-8-3 MLP on the files and tests on their 6 test images', () => {
    const text = run(['--data', spec, ...small]);
    expect(text.status).toBe(0);
    expect(text.out).toContain('24 training and 6 test images of [1, 3, 4], 3 classes');
    expect(text.out).toMatch(/model: 12-8-3, BatchNorm \+ ReLU, backprop/);
    expect(text.out).toMatch(/final test accuracy: \d+\.\d\d% \(6 images\)/);
    // 2 epochs of ceil(24 / 8) = 3 steps; the accuracy is a count out of 6.
    const final = JSON.parse(
      run(['--data', spec, ...small, '--json'])
        .out.trim()
        .split('\n')
        .pop()!,
    ) as {
      type: string;
      steps: number;
      accuracy: number;
    };
    expect([final.type, final.steps]).toEqual(['final', 6]);
    expect(Math.abs(final.accuracy * 6 - Math.round(final.accuracy * 6))).toBeLessThan(1e-9);
  });

  test('a missing file or a bad spec is an error before training', () => {
    const missing = path.join(dir, 'nowhere-labels');
    const r = run(['--data', `idx:${files[0]},${missing},${files[2]},${files[3]}`, ...small]);
    expect(r.status).toBe(1);
    expect(r.out).toContain(`error: IDX file ${missing}: cannot read it`);
    expect(r.out).not.toMatch(/model:|step/);
    const bad = run(['--data', 'idx:a,b', ...small]);
    expect(bad.status).toBe(1);
    expect(bad.out).toMatch(/^error: --data idx: needs four comma-separated files/m);
  });

  test('a checkpoint records the data: resuming on other files is refused, naming --data', () => {
    const file = path.join(dir, 'run.ckpt');
    expect(run(['--data', spec, ...small, '--steps', '2', '--checkpoint', file]).status).toBe(0);
    const other = [...idxPair('other', 24), files[2], files[3]];
    const r = run(['--data', `idx:${other.join(',')}`, ...small, '--steps', '4', '--checkpoint', file]);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/was saved with --data .*train-images.*, this run has .*other-images/);
  });
});
