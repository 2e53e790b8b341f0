// The data set loaders: any pair of IDX files (datasets.idx), MNIST from a directory of plain or
// gzipped files, CIFAR-10's binary version; each on small files the test writes in the format
// (the real data is not here), with errors that name the file.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { datasets } from '../ts';
import { cifarBytes, idxBytes, pixelByte, tempDir } from './helpers/data-files';

const { dir, write } = tempDir('synthgrad-datasets-');

/** `count` images of h x w bytes: image i's pixel (y, x) is pixelByte(i, 0, y, x). */
function images(count: number, h: number, w: number): Buffer {
  const values: number[] = [];
  for (let i = 0; i < count; i++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) values.push(pixelByte(i, 0, y, x));
  return idxBytes([count, h, w], values);
}

describe('datasets.idx: any four IDX files', () => {
  const files = {
    trainImages: write('idx/train-images', images(3, 2, 4)),
    trainLabels: write('idx/train-labels', idxBytes([3], [2, 0, 1])),
    testImages: write('idx/test-images.gz', zlib.gzipSync(images(2, 2, 4))),
    testLabels: write('idx/test-labels', idxBytes([2], [4, 1])),
  };

  test('gives both sets, rows [1, H, W], pixels / 255, classes from the largest label in either file', () => {
    const { train, test } = datasets.idx(files);
    expect([train.name, train.count, train.features, train.shape, train.classes]).toEqual(['idx-train', 3, 8, [1, 2, 4], 5]);
    expect([test.name, test.count, test.shape, test.classes]).toEqual(['idx-test', 2, [1, 2, 4], 5]);
    expect(Array.from(train.labels)).toEqual([2, 0, 1]);
    expect(Array.from(test.labels)).toEqual([4, 1]);
    // Row 2, pixel (y 1, x 3) is value 8 * 2 + 4 * 1 + 3 of the inputs.
    expect(train.inputs[8 * 2 + 4 * 1 + 3]).toBe(Math.fround(pixelByte(2, 0, 1, 3) / 255));
    expect(test.inputs[4 + 1]).toBe(Math.fround(pixelByte(0, 0, 1, 1) / 255));
    const named = datasets.idx({ ...files, classes: 10, name: 'fashion' });
    expect([named.train.name, named.test.classes]).toEqual(['fashion-train', 10]);
  });

  test('rows of [count, C, H, W] and [count, F] files keep their dimensions', () => {
    const cube = datasets.idx({
      ...files,
      trainImages: write('idx/cube-train', idxBytes([3, 2, 1, 2], new Array(12).fill(7))),
      testImages: write('idx/cube-test', idxBytes([2, 2, 1, 2], new Array(8).fill(9))),
    });
    expect([cube.train.shape, cube.test.shape, cube.train.features]).toEqual([[2, 1, 2], [2, 1, 2], 4]);
    const flat = datasets.idx({
      ...files,
      trainImages: write('idx/flat-train', idxBytes([3, 5], new Array(15).fill(1))),
      testImages: write('idx/flat-test', idxBytes([2, 5], new Array(10).fill(255))),
    });
    expect([flat.train.shape, flat.test.inputs[9]]).toEqual([[5], 1]);
  });

  test('a labels file whose count differs from its images file is an error naming both', () => {
    const labels = write('idx/four-labels', idxBytes([4], [0, 1, 2, 3]));
    expect(() => datasets.idx({ ...files, trainLabels: labels })).toThrow(
      `IDX files ${files.trainImages} and ${labels}: 3 images but 4 labels`,
    );
  });

  test("labels beyond 'classes' are an error naming the labels file", () => {
    expect(() => datasets.idx({ ...files, classes: 4 })).toThrow(`IDX file ${files.testLabels}: label 4 at row 0 is outside [0, 4)`);
    expect(() => datasets.loadIdxPair('x', files.trainImages, files.trainLabels, 2)).toThrow(
      `IDX file ${files.trainLabels}: label 2 at row 0 is outside [0, 2)`,
    );
  });

  test('a file that is not IDX, or of the wrong kind, is an error naming it', () => {
    const text = write('idx/readme.txt', Buffer.from('these are not images\n'));
    expect(() => datasets.idx({ ...files, testImages: text })).toThrow(`IDX file ${text}: bad magic number (not an IDX file)`);
    // Images where labels belong, and labels where images belong.
    expect(() => datasets.idx({ ...files, trainLabels: files.trainImages })).toThrow(
      `IDX file ${files.trainImages}: expected labels [count], got [3, 2, 4]`,
    );
    expect(() => datasets.idx({ ...files, testImages: files.testLabels })).toThrow(
      `IDX file ${files.testLabels}: expected images [count, ...], got [2]`,
    );
    const missing = path.join(dir, 'idx', 'nowhere');
    expect(() => datasets.idx({ ...files, trainLabels: missing })).toThrow(`IDX file ${missing}: cannot read it`);
  });

  test('training and test images of different shapes are an error naming both files', () => {
    const wide = write('idx/wide-test', images(2, 2, 5));
    expect(() => datasets.idx({ ...files, testImages: wide })).toThrow(
      `IDX files ${files.trainImages} and ${wide}: training images are [1, 2, 4], test images [1, 2, 5]`,
    );
  });

  test('bad arguments are errors naming them', () => {
    expect(() => datasets.idx(undefined as never)).toThrow(/datasets.idx: expected \{ trainImages, trainLabels, testImages, testLabels \}/);
    const { testLabels: _, ...three } = files;
    expect(() => datasets.idx(three as never)).toThrow("datasets.idx: 'testLabels' must be the path of an IDX file, got undefined");
    expect(() => datasets.idx({ ...files, trainImage: 'x' } as never)).toThrow(
      "datasets.idx: unknown option 'trainImage' (did you mean 'trainImages'?)",
    );
    expect(() => datasets.idx({ ...files, classes: 0 })).toThrow("datasets.idx: 'classes' must be a positive integer, got 0");
  });
});

describe('datasets.mnist(dir): plain or gzipped files', () => {
  // MNIST's names, 2 training and 1 test image of 28 x 28, some files gzipped as downloaded.
  const mnistDir = path.join(dir, 'mnist');
  write('mnist/train-images-idx3-ubyte.gz', zlib.gzipSync(images(2, 28, 28)));
  write('mnist/train-labels-idx1-ubyte.gz', zlib.gzipSync(idxBytes([2], [7, 3])));
  write('mnist/t10k-images-idx3-ubyte', images(1, 28, 28));
  write('mnist/t10k-labels-idx1-ubyte.gz', zlib.gzipSync(idxBytes([1], [9])));

  test('finds each file plain or with .gz', async () => {
    const { train, test } = await datasets.mnist(mnistDir);
    expect([train.count, train.shape, train.classes, Array.from(train.labels)]).toEqual([2, [1, 28, 28], 10, [7, 3]]);
    expect([test.count, Array.from(test.labels)]).toEqual([1, [9]]);
    expect(train.inputs[784 + 28 * 27 + 5]).toBe(Math.fround(pixelByte(1, 0, 27, 5) / 255));
  });

  test('missing files are an error naming the directory and each missing file', async () => {
    fs.mkdirSync(path.join(dir, 'half'));
    write('half/train-images-idx3-ubyte', images(1, 28, 28));
    write('half/t10k-images-idx3-ubyte.gz', zlib.gzipSync(images(1, 28, 28)));
    await expect(datasets.mnist(path.join(dir, 'half'))).rejects.toThrow(
      `MNIST: ${path.join(dir, 'half')} has no train-labels-idx1-ubyte, t10k-labels-idx1-ubyte (each as it is named, or with .gz when gzipped)`,
    );
    await expect(datasets.mnist(path.join(dir, 'absent'))).rejects.toThrow(
      `MNIST: ${path.join(dir, 'absent')} has no train-images-idx3-ubyte, `,
    );
  });
});

describe('datasets.cifar10(dir): the binary version', () => {
  // Records per file: 2, 1, 1, 1, 3 training, 2 test; row r of the training set has pixelByte(r, ...).
  const perFile = [[3, 9], [0], [5], [1], [2, 8, 4]];
  const cifarDir = path.join(dir, 'cifar');
  let first = 0;
  perFile.forEach((labels, i) => {
    write(`cifar/data_batch_${i + 1}.bin`, cifarBytes(labels, first));
    first += labels.length;
  });
  write('cifar/test_batch.bin', cifarBytes([6, 7], 100));

  test('reads every batch in order: rows [3, 32, 32] channels-major, pixels / 255, the labels', async () => {
    const { train, test } = await datasets.cifar10(cifarDir);
    expect([train.count, train.features, train.shape, train.classes]).toEqual([8, 3072, [3, 32, 32], 10]);
    expect(Array.from(train.labels)).toEqual([3, 9, 0, 5, 1, 2, 8, 4]);
    expect([test.count, Array.from(test.labels)]).toEqual([2, [6, 7]]);
    // Value (c, y, x) of row r is at r * 3072 + c * 1024 + y * 32 + x.
    for (const [r, c, y, x] of [
      [0, 0, 0, 0],
      [1, 2, 31, 31],
      [5, 1, 17, 4],
      [7, 2, 0, 30],
    ])
      expect(train.inputs[r * 3072 + c * 1024 + y * 32 + x]).toBe(Math.fround(pixelByte(r, c, y, x) / 255));
    expect(test.inputs[3072 + 1024 + 32 * 3 + 2]).toBe(Math.fround(pixelByte(101, 1, 3, 2) / 255));
  });

  test('finds the files in the folder the archive unpacks into', async () => {
    fs.mkdirSync(path.join(dir, 'download'));
    fs.cpSync(cifarDir, path.join(dir, 'download', 'cifar-10-batches-bin'), { recursive: true });
    expect((await datasets.cifar10(path.join(dir, 'download'))).train.count).toBe(8);
  });

  test('a file that is not whole records is an error naming it', async () => {
    const bad = path.join(dir, 'cifar-bad');
    fs.cpSync(cifarDir, bad, { recursive: true });
    const file = write('cifar-bad/data_batch_3.bin', Buffer.concat([cifarBytes([1]), Buffer.from([0])]));
    await expect(datasets.cifar10(bad)).rejects.toThrow(
      `CIFAR-10 file ${file}: 3074 bytes is not a whole, non-zero number of 3073-byte records (1 label byte + 3072 pixel bytes)`,
    );
    write('cifar-bad/data_batch_3.bin', Buffer.alloc(0));
    await expect(datasets.cifar10(bad)).rejects.toThrow(`CIFAR-10 file ${file}: 0 bytes is not a whole, non-zero number`);
  });

  test('a label above 9 is an error naming the file and the record', async () => {
    const bad = path.join(dir, 'cifar-label');
    fs.cpSync(cifarDir, bad, { recursive: true });
    const file = write('cifar-label/test_batch.bin', cifarBytes([9, 4, 10]));
    await expect(datasets.cifar10(bad)).rejects.toThrow(`CIFAR-10 file ${file}: label 10 of record 2 is outside [0, 10)`);
  });

  test('missing files are an error naming the directory and each missing file', async () => {
    const partial = path.join(dir, 'cifar-partial');
    fs.cpSync(cifarDir, partial, { recursive: true });
    fs.rmSync(path.join(partial, 'data_batch_2.bin'));
    fs.rmSync(path.join(partial, 'test_batch.bin'));
    await expect(datasets.cifar10(partial)).rejects.toThrow(
      `CIFAR-10: ${partial} has no data_batch_2.bin, test_batch.bin (the binary version's files)`,
    );
    await expect(datasets.cifar10(path.join(dir, 'none'))).rejects.toThrow(/has no data_batch_1.bin, .*, data_batch_5.bin, test_batch.bin/);
    await expect(datasets.cifar10(3 as never)).rejects.toThrow(
      "datasets.cifar10: 'directory' must be the path of the folder of its binary files, got number 3",
    );
  });
});
