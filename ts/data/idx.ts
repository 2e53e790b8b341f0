// The IDX file format of MNIST-style data sets (plain or gzipped), and Datasets from pairs of
// IDX files (images and labels).
//
// Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
// each dimension as a big-endian uint32; the data follows, row-major.
import * as fs from 'fs';
import * as zlib from 'zlib';
import { checkOptions, describe, hostArray, positiveInt } from '../check';
import { error, typeError } from '../errors';
import { Dataset } from './dataset';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

/** Parses IDX bytes; `source` names the data in error messages. */
export function parseIdx(bytes: Uint8Array, source: string): IdxArray {
  const fail = (why: string): never => {
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${source}: ${why}`);
  };
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      fail(`corrupt gzip data (${(e as Error).message})`);
    }
  }
  if (bytes.length < 4) fail(`too short for a header (${bytes.length} bytes)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) fail('bad magic number (not an IDX file)');
  if (bytes[2] !== 0x08) fail(`unsupported element type 0x${bytes[2].toString(16)} (only unsigned bytes, 0x08)`);
  const rank = bytes[3];
  if (rank < 1 || rank > 4) fail(`unsupported number of dimensions ${rank}`);
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) fail(`truncated header (${bytes.length} bytes, need ${headerBytes})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const available = bytes.length - headerBytes;
  if (available < count) fail(`truncated: the header promises ${count} values of shape [${shape.join(', ')}], the file holds ${available}`);
  if (available > count) fail(`${available - count} unexpected bytes after the data`);
  return { shape, data: bytes.subarray(headerBytes, headerBytes + count) };
}

export function readIdx(file: string): IdxArray {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${file}: cannot read it (${(e as Error).message})`);
  }
  return parseIdx(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

/** A training set and a test set. */
export interface Split {
  train: Dataset;
  test: Dataset;
}

/** An images file and its labels file, read and checked against each other (not yet a Dataset). */
interface IdxPair {
  images: IdxArray;
  labels: Uint8Array;
  imagesFile: string;
  labelsFile: string;
}

function readIdxPair(imagesFile: string, labelsFile: string): IdxPair {
  const images = readIdx(imagesFile);
  const labels = readIdx(labelsFile);
  if (images.shape.length < 2)
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${imagesFile}: expected images [count, ...], got [${images.shape.join(', ')}]`);
  if (labels.shape.length !== 1)
    throw error('ERR_SYNTHGRAD_DATA', `IDX file ${labelsFile}: expected labels [count], got [${labels.shape.join(', ')}]`);
  const count = images.shape[0];
  if (labels.shape[0] !== count)
    throw error('ERR_SYNTHGRAD_DATA', `IDX files ${imagesFile} and ${labelsFile}: ${count} images but ${labels.shape[0]} labels`);
  if (count === 0) throw error('ERR_SYNTHGRAD_DATA', `IDX file ${imagesFile}: it holds no images`);
  return { images, labels: labels.data, imagesFile, labelsFile };
}

/** The shape of one row: [count, H, W] images are one channel, [1, H, W]; otherwise the dimensions after the count. */
function rowShapeOf(images: IdxArray): number[] {
  return images.shape.length === 3 ? [1, ...images.shape.slice(1)] : images.shape.slice(1);
}

function pairDataset(name: string, pair: IdxPair, classes: number): Dataset {
  const { images, labels, labelsFile } = pair;
  for (let i = 0; i < labels.length; i++)
    if (labels[i] >= classes)
      throw error('ERR_SYNTHGRAD_DATA', `IDX file ${labelsFile}: label ${labels[i]} at row ${i} is outside [0, ${classes})`);
  const inputs = hostArray(`IDX file ${pair.imagesFile}`, 'the images', images.data.length, () => new Float32Array(images.data.length));
  for (let i = 0; i < inputs.length; i++) inputs[i] = images.data[i] / 255;
  return new Dataset(name, inputs, Int32Array.from(labels), images.data.length / images.shape[0], classes, rowShapeOf(images));
}

/**
 * Reads an images/labels pair of IDX files (plain or gzipped) into a Dataset: pixels (unsigned
 * bytes) scaled to [0, 1], rows shaped by the file's dimensions ([count, H, W] → [1, H, W]),
 * labels checked against `classes`.
 */
export function loadIdxPair(name: string, imagesFile: string, labelsFile: string, classes = 10): Dataset {
  return pairDataset(name, readIdxPair(imagesFile, labelsFile), classes);
}

/** The four files of idx(), and its options. */
export interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
  /** the number of classes (default: the largest label in either labels file + 1) */
  classes?: number;
  /** names the sets `${name}-train` and `${name}-test` (default 'idx') */
  name?: string;
}

const fileKeys = ['trainImages', 'trainLabels', 'testImages', 'testLabels'] as const;

/**
 * A training and a test set from four IDX files (plain or gzipped), e.g. MNIST, Fashion-MNIST
 * or KMNIST downloaded by hand. Both sets share one class count and one row shape.
 */
export function idx(files: IdxFiles): Split {
  const owner = 'datasets.idx';
  if (files === undefined) throw typeError(`${owner}: expected { ${fileKeys.join(', ')} }, got undefined`);
  checkOptions(owner, files, [...fileKeys, 'classes', 'name']);
  for (const key of fileKeys)
    if (typeof files[key] !== 'string' || files[key] === '')
      throw typeError(`${owner}: '${key}' must be the path of an IDX file, got ${describe(files[key])}`);
  if (files.classes !== undefined) positiveInt(owner, 'classes', files.classes);
  if (files.name !== undefined && typeof files.name !== 'string')
    throw typeError(`${owner}: 'name' must be a string, got ${describe(files.name)}`);
  const train = readIdxPair(files.trainImages, files.trainLabels);
  const test = readIdxPair(files.testImages, files.testLabels);
  const trainRow = rowShapeOf(train.images);
  const testRow = rowShapeOf(test.images);
  if (trainRow.join(',') !== testRow.join(','))
    throw error(
      'ERR_SYNTHGRAD_DATA',
      `IDX files ${files.trainImages} and ${files.testImages}: training images are [${trainRow.join(', ')}], test images [${testRow.join(', ')}]`,
    );
  const largest = (labels: Uint8Array) => labels.reduce((a, b) => Math.max(a, b), 0);
  const classes = files.classes ?? Math.max(largest(train.labels), largest(test.labels)) + 1;
  const name = files.name ?? 'idx';
  return { train: pairDataset(`${name}-train`, train, classes), test: pairDataset(`${name}-test`, test, classes) };
}
