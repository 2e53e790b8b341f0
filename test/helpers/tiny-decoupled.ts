// The small decoupled MLP and data that the in-process distributed suites train (on ranks and
// on one process, to compare them bit for bit), and their temporary directories.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Random, decouple, mlp } from '../../ts';

/** Random rows of 12 features in 4 classes. */
export function data(rows = 40, features = 12, classes = 4, seed = 11): Dataset {
  const rng = new Random(seed);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * classes));
  return new Dataset('tiny', rng.uniformArray(rows * features, -1, 1), labels, features, classes);
}

export const options = { device: Device.cpu(), seed: 7, optimizer: () => new Adam({ lr: 0.01 }) };

/** A 12-16-16-4 MLP decoupled with synthesizers of one hidden layer of 8; `extra`: more decouple() options. */
export const network = (extra: object = {}) => decouple(mlp(12, [16, 16], 4), { synthesizer: { hidden: [8] }, ...extra });

/** A temporary-directory maker for one suite: each directory is removed after the suite's tests. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}
