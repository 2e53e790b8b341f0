// CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html; the user downloads
// and unpacks it, synthgrad never fetches it): data_batch_1.bin .. data_batch_5.bin (training,
// 50,000 images) and test_batch.bin (10,000). Each record is 1 label byte (0-9) and 3072 pixel
// bytes, channels-major: the 1024 red values row by row, then green, then blue, which is the
// [3, 32, 32] layout a row of the Dataset has; pixels scaled to [0, 1].
import * as fs from 'fs';
import * as path from 'path';
import { describe, hostArray } from '../check';
import { error, typeError } from '../errors';
import { Dataset } from './dataset';
import type { Split } from './idx';

const pixels = 3 * 32 * 32;
const recordBytes = 1 + pixels;
const trainFiles = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
const testFiles = ['test_batch.bin'];

/** The records of several files in one Dataset; errors name the file. */
function readBatches(name: string, files: string[]): Dataset {
  const contents = files.map((file) => {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      throw error('ERR_SYNTHGRAD_DATA', `CIFAR-10 file ${file}: cannot read it (${(e as Error).message})`);
    }
    if (bytes.length === 0 || bytes.length % recordBytes !== 0)
      throw error(
        'ERR_SYNTHGRAD_DATA',
        `CIFAR-10 file ${file}: ${bytes.length} bytes is not a whole, non-zero number of ${recordBytes}-byte records (1 label byte + ${pixels} pixel bytes)`,
      );
    return { file, bytes };
  });
  const count = contents.reduce((n, c) => n + c.bytes.length / recordBytes, 0);
  const inputs = hostArray(`CIFAR-10 ${name}`, 'the images', count * pixels, () => new Float32Array(count * pixels));
  const labels = new Int32Array(count);
  let row = 0;
  for (const { file, bytes } of contents) {
    for (let r = 0; r < bytes.length / recordBytes; r++, row++) {
      const at = r * recordBytes;
      if (bytes[at] > 9) throw error('ERR_SYNTHGRAD_DATA', `CIFAR-10 file ${file}: label ${bytes[at]} of record ${r} is outside [0, 10)`);
      labels[row] = bytes[at];
      const out = row * pixels;
      for (let i = 0; i < pixels; i++) inputs[out + i] = bytes[at + 1 + i] / 255;
    }
  }
  return new Dataset(name, inputs, labels, pixels, 10, [3, 32, 32]);
}

/**
 * CIFAR-10's training and test sets from `directory`: the folder of the binary version's
 * files, or the folder the archive unpacks into (cifar-10-batches-bin) is inside.
 */
export async function cifar10(directory: string): Promise<Split> {
  if (typeof directory !== 'string' || directory === '')
    throw typeError(`datasets.cifar10: 'directory' must be the path of the folder of its binary files, got ${describe(directory)}`);
  const all = [...trainFiles, ...testFiles];
  const missingIn = (dir: string) => all.filter((f) => !fs.existsSync(path.join(dir, f)));
  const unpacked = path.join(directory, 'cifar-10-batches-bin');
  const dir = missingIn(directory).length === all.length && missingIn(unpacked).length < all.length ? unpacked : directory;
  const missing = missingIn(dir);
  if (missing.length) throw error('ERR_SYNTHGRAD_DATA', `CIFAR-10: ${dir} has no ${missing.join(', ')} (the binary version's files)`);
  return {
    train: readBatches(
      'cifar10-train',
      trainFiles.map((f) => path.join(dir, f)),
    ),
    test: readBatches(
      'cifar10-test',
      testFiles.map((f) => path.join(dir, f)),
    ),
  };
}
