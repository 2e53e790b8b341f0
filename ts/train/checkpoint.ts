// Checkpoint files: named tensors plus a JSON record of host-side state, in one file.
//
// Layout: the 8 bytes 'SGCKPT01', a uint32 (little-endian) header length, the header (JSON:
// each tensor's name, dtype, shape and byte offset, then `host`), then the tensors' bytes
// (little-endian float32 / int32) back to back. A file is written next to its destination
// and renamed over it, so a run killed while saving leaves the previous checkpoint intact.
import { promises as fsp } from 'fs';
import { native } from '../native';
import { Stream } from '../stream';
import { DType, Tensor } from '../tensor';

const MAGIC = 'SGCKPT01';

export interface NamedTensor {
  name: string;
  tensor: Tensor;
}

interface TensorRecord {
  name: string;
  dtype: DType;
  shape: number[];
  offset: number;
}

interface Header {
  tensors: TensorRecord[];
  host: unknown;
}

/** A checkpoint read from disk: the host record, and the tensors' values by name. */
export interface LoadedCheckpoint {
  path: string;
  host: unknown;
  tensors: Map<string, { dtype: DType; shape: number[]; data: Float32Array | Int32Array }>;
}

/** Reads the tensors (after the work enqueued on `stream`) and writes the file. */
export async function writeCheckpoint(path: string, tensors: readonly NamedTensor[], host: unknown, stream: Stream): Promise<void> {
  const values = await Promise.all(tensors.map((t) => t.tensor.read(stream)));
  const records: TensorRecord[] = [];
  let offset = 0;
  tensors.forEach((t, i) => {
    records.push({ name: t.name, dtype: t.tensor.dtype, shape: [...t.tensor.shape], offset });
    offset += values[i].byteLength;
  });
  const header = Buffer.from(JSON.stringify({ tensors: records, host } satisfies Header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const body = values.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  const temporary = `${path}.partial-${process.pid}`;
  try {
    await fsp.writeFile(temporary, Buffer.concat([Buffer.from(MAGIC, 'latin1'), length, header, ...body]));
    await fsp.rename(temporary, path);
  } catch (e) {
    await fsp.rm(temporary, { force: true });
    throw new Error(`checkpoint: cannot write ${path}: ${(e as Error).message}`);
  }
}

export async function readCheckpoint(path: string): Promise<LoadedCheckpoint> {
  let file: Buffer;
  try {
    file = await fsp.readFile(path);
  } catch (e) {
    throw new Error(`checkpoint: cannot read ${path}: ${(e as Error).message}`);
  }
  const bad = (why: string) => new Error(`checkpoint: ${path} is not a synthgrad checkpoint (${why})`);
  if (file.length < 12 || file.toString('latin1', 0, 8) !== MAGIC) throw bad('wrong signature');
  const headerLength = file.readUInt32LE(8);
  if (12 + headerLength > file.length) throw bad('truncated header');
  let header: Header;
  try {
    header = JSON.parse(file.toString('utf8', 12, 12 + headerLength)) as Header;
  } catch {
    throw bad('unreadable header');
  }
  if (!header || !Array.isArray(header.tensors)) throw bad('no tensor list');
  const start = 12 + headerLength;
  const tensors: LoadedCheckpoint['tensors'] = new Map();
  for (const r of header.tensors) {
    const count = Array.isArray(r.shape) ? r.shape.reduce((a, b) => a * b, 1) : NaN;
    const bytes = 4 * count;
    if (!(r.dtype === 'float32' || r.dtype === 'int32') || !Number.isInteger(count) || !Number.isInteger(r.offset) ||
      r.offset < 0 || start + r.offset + bytes > file.length) throw bad(`tensor '${r.name}' lies outside the file`);
    const copy = new ArrayBuffer(bytes); // aligned, and independent of the file's buffer
    file.copy(new Uint8Array(copy), 0, start + r.offset, start + r.offset + bytes);
    tensors.set(r.name, { dtype: r.dtype, shape: r.shape, data: r.dtype === 'int32' ? new Int32Array(copy) : new Float32Array(copy) });
  }
  return { path, host: header.host, tensors };
}

/**
 * Copies the checkpoint's values into `targets`, which must match it exactly (same names,
 * dtypes and shapes); throws, changing nothing, when they do not.
 */
export async function restoreTensors(loaded: LoadedCheckpoint, targets: readonly NamedTensor[], stream: Stream): Promise<void> {
  const mismatch = (why: string) => new Error(`checkpoint: ${loaded.path} does not match this trainer: ${why}`);
  if (loaded.tensors.size !== targets.length)
    throw mismatch(`it holds ${loaded.tensors.size} tensors, the model and its training state have ${targets.length}`);
  for (const t of targets) {
    const saved = loaded.tensors.get(t.name);
    if (!saved) throw mismatch(`it has no tensor '${t.name}'`);
    if (saved.dtype !== t.tensor.dtype || saved.shape.join(',') !== t.tensor.shape.join(','))
      throw mismatch(`'${t.name}' is ${saved.dtype} [${saved.shape.join(', ')}] there, ${t.tensor.dtype} [${t.tensor.shape.join(', ')}] here`);
  }
  const sources: Tensor[] = [];
  try {
    for (const t of targets) {
      const src = Tensor.fromArray(loaded.tensors.get(t.name)!.data, t.tensor.shape, { device: t.tensor.device });
      sources.push(src);
      native.ops.copy(stream.handle, src.handle, t.tensor.handle);
    }
    await stream.synchronize();
  } finally {
    for (const s of sources) s.dispose();
  }
}
