// The IDX reader (plain and gzipped, with clear errors for damaged files) and the MNIST loader.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { Dataset, datasets, parseIdx, readIdx } from '../ts';

function idxBytes(shape: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-idx-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

describe('IDX files', () => {
  const values = [0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255];

  test('a plain file gives its shape and bytes', () => {
    const a = readIdx(write('plain', idxBytes([2, 3, 2], values)));
    expect(a.shape).toEqual([2, 3, 2]);
    expect(Array.from(a.data)).toEqual(values);
  });

  test('a gzipped file reads the same', () => {
    const a = readIdx(write('zipped.gz', zlib.gzipSync(idxBytes([12], values))));
    expect(a.shape).toEqual([12]);
    expect(Array.from(a.data)).toEqual(values);
  });

  test('a truncated file is an error naming the file', () => {
    const file = write('truncated', idxBytes([2, 3, 2], values).subarray(0, 20));
    expect(() => readIdx(file)).toThrow(new RegExp(`IDX file ${file}: truncated: the header promises 12 values`));
    const header = write('short-header', idxBytes([2, 3, 2], values).subarray(0, 9));
    expect(() => readIdx(header)).toThrow(/short-header: truncated header/);
  });

  test('corrupt files are errors naming the file', () => {
    expect(() => readIdx(write('magic', Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])))).toThrow(/magic: bad magic number/);
    expect(() => readIdx(write('type', Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0])))).toThrow(
      /type: unsupported element type 0xd/,
    );
    const gz = zlib.gzipSync(idxBytes([12], values));
    expect(() => readIdx(write('bad.gz', gz.subarray(0, gz.length - 6)))).toThrow(/bad.gz: corrupt gzip data/);
    expect(() => parseIdx(Buffer.concat([idxBytes([2], [1, 2]), Buffer.from([9])]), 'extra')).toThrow(/extra: 1 unexpected bytes/);
    expect(() => readIdx(path.join(dir, 'missing'))).toThrow(/missing: cannot read it/);
  });
});

describe('MNIST', () => {
  test('loads the full 60k/10k sets with pixels in [0, 1]', async () => {
    const { train, test } = await datasets.mnist();
    expect(train.count).toBe(60000);
    expect(test.count).toBe(10000);
    expect(train.features).toBe(784);
    expect(train.shape).toEqual([1, 28, 28]);
    expect(train.classes).toBe(10);
    let max = 0;
    let min = 1;
    for (const v of test.inputs) {
      max = Math.max(max, v);
      min = Math.min(min, v);
    }
    expect([min, max]).toEqual([0, 1]);
    const counts = new Array(10).fill(0);
    for (const l of train.labels) counts[l]++;
    // Every digit is well represented (each has 5421..6742 training images).
    expect(Math.min(...counts)).toBeGreaterThan(5000);
  });

  test('a damaged copy is reported by file name', () => {
    const images = write('images', idxBytes([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]));
    const labels = write('labels', idxBytes([3], [1, 2, 3]));
    expect(() => datasets.loadIdxPair('x', images, labels)).toThrow(/2 images but 3 labels/);
    const badLabels = write('labels-big', idxBytes([2], [1, 12]));
    expect(() => datasets.loadIdxPair('x', images, badLabels)).toThrow(/labels-big: label 12 at row 1 is outside \[0, 10\)/);
  });

  test.each([
    [[2, 3], [3]],
    [
      [2, 2, 3],
      [1, 2, 3],
    ],
    [
      [2, 3, 1, 2],
      [3, 1, 2],
    ],
  ])('images of dimensions %j give rows of shape %j', (dims, rowShape) => {
    const values = Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => i);
    const images = write(`images-${dims.join('x')}`, idxBytes(dims, values));
    const d = datasets.loadIdxPair('x', images, write('labels-2', idxBytes([2], [0, 1])));
    expect([d.shape, d.features, d.count]).toEqual([rowShape, values.length / 2, 2]);
  });
});

describe('Dataset row shapes', () => {
  const x = new Float32Array(2 * 12).map((_, i) => i);
  const y = Int32Array.from([0, 1]);

  test('a row is a vector of its features unless a shape is given', () => {
    expect(new Dataset('d', x, y, 12, 2).shape).toEqual([12]);
    const images = new Dataset('d', x, y, 12, 2, [3, 2, 2]);
    expect(images.shape).toEqual([3, 2, 2]);
    expect(images.head(1).shape).toEqual([3, 2, 2]);
    expect(Object.isFrozen(images.shape)).toBe(true);
  });

  test('fromArrays takes the shape, and the features from it', () => {
    const d = Dataset.fromArrays(x, y, { shape: [1, 3, 4] });
    expect([d.features, d.count, d.shape]).toEqual([12, 2, [1, 3, 4]]);
    expect(Dataset.fromArrays(x, y, { shape: [2, 6], features: 12 }).shape).toEqual([2, 6]);
  });

  test.each([
    [[5, 2], "'shape' [5, 2] holds 10 values per row, but rows have 12 features"],
    [[], "'shape' must be a non-empty array of positive integers"],
    [[3, 0, 4], "'shape' must be a non-empty array of positive integers"],
    [[3, 1.5, 4], "'shape' must be a non-empty array of positive integers"],
  ])('a shape %j that does not fit is refused, naming it', (shape, message) => {
    expect(() => new Dataset('d', x, y, 12, 2, shape)).toThrow(message);
  });

  test('a shape that is not an array is refused', () => {
    expect(() => new Dataset('d', x, y, 12, 2, '3,4' as unknown as number[])).toThrow(RangeError);
  });
});
