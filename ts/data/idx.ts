// The IDX file format of MNIST-style data sets (plain or gzipped).
//
// Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
// each dimension as a big-endian uint32; the data follows, row-major.
import * as fs from 'fs';
import * as zlib from 'zlib';
import { error } from '../errors';

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
