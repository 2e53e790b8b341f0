// Data files written byte by byte from the formats' descriptions, for the loaders' tests.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** An IDX file of unsigned bytes: magic 0 0 0x08 rank, each dimension big-endian, then the data. */
export function idxBytes(shape: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

/** A temporary directory (removed after the file's tests) and a writer of files in it. */
export function tempDir(prefix: string): { dir: string; write: (name: string, bytes: Buffer) => string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    write: (name, bytes) => {
      const file = path.join(dir, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, bytes);
      return file;
    },
  };
}

/** A pixel byte that differs between nearby rows, channels and positions. */
export function pixelByte(row: number, channel: number, y: number, x: number): number {
  return (row * 53 + channel * 101 + y * 7 + x * 3) % 256;
}

/**
 * A CIFAR-10 binary file: per record, the label byte, then the red plane's 1024 bytes row by row
 * (y, then x), then green, then blue. `firstRow` numbers the records for pixelByte.
 */
export function cifarBytes(labels: number[], firstRow = 0): Buffer {
  const bytes: number[] = [];
  labels.forEach((label, r) => {
    bytes.push(label);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) bytes.push(pixelByte(firstRow + r, c, y, x));
  });
  return Buffer.from(bytes);
}
