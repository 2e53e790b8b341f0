// Checkpoint files: named tensors plus a JSON record of host-side state, in one file that is
// replaced atomically and durably, and refused on load when any byte of it has changed.
//
// Layout (format 2):
//   bytes 0-7     'SGCKPT02'
//   bytes 8-11    H, the header's length (uint32, little-endian)
//   bytes 12-43   SHA-256 of bytes 0-11 and of the header
//   H bytes       the header: JSON { tensors: [{ name, dtype, shape, offset, sha256 }], dataBytes, host }
//   dataBytes     the tensors' bytes (little-endian float32 / int32) at their offsets; the file ends there
// Each section carries its own checksum, so a damaged file is refused saying where: the header
// (any edited number in it), a named tensor's data, bytes missing at the end or appended after
// it. The checksums detect damage, not tampering: whoever edits a file can recompute them.
// Non-finite float32 values are refused on load, and never written: a save of a diverged run
// fails and leaves the previous checkpoint in place.
//
// Format 1 ('SGCKPT01', no checksums) is not read: it is refused with an error that says so,
// because a file without checksums cannot be checked, and this library has no release whose
// users would hold such files. A run saved in format 1 is started again.
//
// Writing: the bytes go to a temporary file beside the destination (same directory, so the
// rename cannot cross file systems), the file is fsync'ed, renamed over the destination, and
// the directory is fsync'ed, so that after a crash or power loss the path holds either the
// previous checkpoint or the new one, complete. Temporary files are named
// `<name>.partial-<host>-<pid>-<n>`; each write first removes those of its destination left by
// a process of this host that no longer runs (a writer killed mid-write). A pid reused by a
// live process keeps its file until that process is gone too. A destination that exists and
// is not a regular file (a symbolic link, FIFO, device, socket, directory) is refused, never
// replaced; reading refuses anything but a regular file as well (a FIFO would block forever),
// though it follows a symbolic link to one (load() of a linked file is harmless; fit() refuses
// the link, since it would later write there).
import { createHash } from 'crypto';
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ops from '../ops';
import { Stream } from '../stream';
import { DType, Tensor } from '../tensor';
import { error } from '../errors';

const SIGNATURE = 'SGCKPT';
const FORMAT = 2;
const MAGIC = `${SIGNATURE}${String(FORMAT).padStart(2, '0')}`;
/** magic, header length, header checksum */
const PREFIX_BYTES = 8 + 4 + 32;

export interface NamedTensor {
  name: string;
  tensor: Tensor;
}

interface TensorRecord {
  name: string;
  dtype: DType;
  shape: number[];
  offset: number;
  /** hex SHA-256 of the tensor's bytes */
  sha256: string;
}

interface Header {
  tensors: TensorRecord[];
  dataBytes: number;
  host: unknown;
}

/** A checkpoint read from disk: the host record, and the tensors' values by name. */
export interface LoadedCheckpoint {
  path: string;
  host: unknown;
  tensors: Map<string, { dtype: DType; shape: number[]; data: Float32Array | Int32Array }>;
}

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** What a directory entry is, for errors about a destination that is not a regular file. */
function kindOf(s: fs.Stats): string {
  if (s.isSymbolicLink()) return 'a symbolic link';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isDirectory()) return 'a directory';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Whether `file` exists; throws when it exists and is not a regular file (a symbolic link
 * counts as one that is not): a checkpoint is never written through a link or over a device.
 */
export async function checkDestination(file: string): Promise<boolean> {
  let s: fs.Stats;
  try {
    s = await fsp.lstat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot inspect ${file}: ${(e as Error).message}`);
  }
  if (!s.isFile())
    throw error(
      'ERR_SYNTHGRAD_CHECKPOINT',
      `checkpoint: ${file} is ${kindOf(s)}, not a regular file; refusing to replace it (give the path of a file)`,
    );
  return true;
}

/** The first non-finite value of a float32 tensor's values, or undefined. */
function firstNonFinite(values: Float32Array | Int32Array, dtype: DType): { index: number; value: number } | undefined {
  if (dtype !== 'float32') return undefined; // (by dtype: arrays made by the addon may come from another realm, e.g. under jest)
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return { index: i, value: values[i] };
  return undefined;
}

// In temporary names; only the characters a file name may safely hold.
const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_') || 'host';
let writes = 0;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/**
 * Removes the temporary files of `file` left by dead processes of this host; returns their
 * names. Files of live processes (this one included: a write may be in flight) are kept.
 */
export async function removeStaleTemporaries(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const pattern = new RegExp(`^${escapeRegExp(path.basename(file))}\\.partial-(.+)-(\\d+)-(\\d+)$`);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return []; // a missing directory is reported by the write itself
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m || m[1] !== host) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || alive(pid)) continue;
    const stale = path.join(dir, name);
    try {
      if (!(await fsp.lstat(stale)).isFile()) continue;
      await fsp.rm(stale);
      removed.push(name);
    } catch {
      // another process cleaned it up first
    }
  }
  return removed;
}

/** Makes a rename in `dir` durable; file systems that cannot sync a directory are let be. */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw e;
  } finally {
    await handle.close();
  }
}

/** A tensor's values on the host, as a checkpoint holds them. */
export interface SavedTensor {
  name: string;
  dtype: DType;
  shape: readonly number[];
  data: Float32Array | Int32Array;
}

/** Reads the tensors (after the work enqueued on `stream`) and replaces the file with them. */
export async function writeCheckpoint(file: string, tensors: readonly NamedTensor[], hostRecord: unknown, stream: Stream): Promise<void> {
  await checkDestination(file);
  const values = await Promise.all(tensors.map((t) => t.tensor.read(stream)));
  await writeCheckpointValues(
    file,
    tensors.map((t, i) => ({ name: t.name, dtype: t.tensor.dtype, shape: t.tensor.shape, data: values[i] })),
    hostRecord,
  );
}

/** Replaces the file with tensors already on the host (as writeCheckpoint, which reads them first). */
export async function writeCheckpointValues(file: string, tensors: readonly SavedTensor[], hostRecord: unknown): Promise<void> {
  await checkDestination(file);
  const records: TensorRecord[] = [];
  const body: Buffer[] = [];
  let offset = 0;
  tensors.forEach((t) => {
    const bad = firstNonFinite(t.data, t.dtype);
    if (bad)
      throw error(
        'ERR_SYNTHGRAD_CHECKPOINT',
        `checkpoint: not saved to ${file}: tensor '${t.name}' holds ${bad.value} at element ${bad.index}; the previous checkpoint is kept`,
      );
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    records.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], offset, sha256: sha256(bytes).toString('hex') });
    body.push(bytes);
    offset += bytes.length;
  });
  const header = Buffer.from(JSON.stringify({ tensors: records, dataBytes: offset, host: hostRecord } satisfies Header), 'utf8');
  const start = Buffer.alloc(12);
  start.write(MAGIC, 0, 'latin1');
  start.writeUInt32LE(header.length, 8);
  const contents = [start, sha256(start, header), header, ...body];

  await removeStaleTemporaries(file);
  const temporary = `${file}.partial-${host}-${process.pid}-${++writes}`;
  try {
    const handle = await fsp.open(temporary, 'wx'); // never through a file or link already there
    try {
      await handle.writeFile(Buffer.concat(contents)); // writes it all, looping over short writes
      await handle.sync();
    } finally {
      await handle.close();
    }
    await checkDestination(file); // again: it may have been replaced while this one was written
    await fsp.rename(temporary, file);
  } catch (e) {
    await fsp.rm(temporary, { force: true });
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot write ${file}: ${(e as Error).message.replace(/^checkpoint: /, '')}`);
  }
  try {
    await syncDirectory(path.dirname(file));
  } catch (e) {
    throw error(
      'ERR_SYNTHGRAD_CHECKPOINT',
      `checkpoint: wrote ${file}, but cannot make it durable (fsync of its directory): ${(e as Error).message}`,
    );
  }
}

/** Reads a regular file without ever blocking on a FIFO or device. */
async function readRegularFile(file: string): Promise<Buffer> {
  let s: fs.Stats;
  try {
    s = await fsp.stat(file);
  } catch (e) {
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot read ${file}: ${(e as Error).message}`);
  }
  if (!s.isFile()) throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot read ${file}: it is ${kindOf(s)}, not a regular file`);
  let handle: fsp.FileHandle;
  try {
    // O_NONBLOCK: if the path was swapped for a FIFO since the stat, opening it does not hang.
    handle = await fsp.open(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile())
      throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: cannot read ${file}: it is ${kindOf(opened)}, not a regular file`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Reads and verifies a checkpoint: its signature and format, the header's and each tensor's
 * checksum, the file's length, and that every float32 value is finite. Throws with the reason.
 */
export async function readCheckpoint(file: string): Promise<LoadedCheckpoint> {
  const bytes = await readRegularFile(file);
  const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${file} is not a valid synthgrad checkpoint (${why})`);
  const signature = bytes.toString('latin1', 0, Math.min(8, bytes.length));
  if (signature.length === 8 && signature.startsWith(SIGNATURE) && /^\d\d$/.test(signature.slice(6)) && signature !== MAGIC) {
    const version = Number(signature.slice(6));
    if (version < FORMAT)
      throw error(
        'ERR_SYNTHGRAD_CHECKPOINT',
        `checkpoint: ${file} is checkpoint format ${version}, older than format ${FORMAT} (which adds checksums) that this version reads; start the run again`,
      );
    throw error(
      'ERR_SYNTHGRAD_CHECKPOINT',
      `checkpoint: ${file} is checkpoint format ${version}, newer than format ${FORMAT} that this version reads; use a newer synthgrad`,
    );
  }
  if (signature !== MAGIC) throw bad('wrong signature');
  if (bytes.length < PREFIX_BYTES) throw bad(`truncated: ${bytes.length} bytes, fewer than the ${PREFIX_BYTES} of the fixed header`);
  const headerLength = bytes.readUInt32LE(8);
  const headerEnd = PREFIX_BYTES + headerLength;
  if (headerEnd > bytes.length)
    throw bad(`truncated, or its header length was changed: the header would end at byte ${headerEnd}, the file has ${bytes.length}`);
  const headerBytes = bytes.subarray(PREFIX_BYTES, headerEnd);
  if (!sha256(bytes.subarray(0, 12), headerBytes).equals(bytes.subarray(12, PREFIX_BYTES)))
    throw bad('the header fails its checksum: it was changed or damaged');
  let header: Header;
  try {
    header = JSON.parse(headerBytes.toString('utf8')) as Header;
  } catch {
    throw bad('unreadable header');
  }
  if (!header || !Array.isArray(header.tensors) || !Number.isInteger(header.dataBytes) || header.dataBytes < 0) throw bad('no tensor list');
  const end = headerEnd + header.dataBytes;
  if (bytes.length < end) throw bad(`truncated: the data ends at byte ${end}, the file has ${bytes.length}`);
  if (bytes.length > end) throw bad(`${bytes.length - end} byte${bytes.length - end === 1 ? '' : 's'} after the end of its data`);
  const tensors: LoadedCheckpoint['tensors'] = new Map();
  for (const r of header.tensors) {
    const name = typeof r?.name === 'string' ? r.name : undefined;
    if (name === undefined || tensors.has(name)) throw bad(`a tensor without a name of its own: ${JSON.stringify(r?.name)}`);
    const shapeOk = Array.isArray(r.shape) && r.shape.every((d) => Number.isInteger(d) && d >= 0);
    const count = shapeOk ? r.shape.reduce((a, b) => a * b, 1) : NaN;
    const size = 4 * count;
    if (
      !(r.dtype === 'float32' || r.dtype === 'int32') ||
      !Number.isSafeInteger(size) ||
      !Number.isInteger(r.offset) ||
      r.offset < 0 ||
      r.offset + size > header.dataBytes
    )
      throw bad(`tensor '${name}' lies outside the data`);
    const data = bytes.subarray(headerEnd + r.offset, headerEnd + r.offset + size);
    if (sha256(data).toString('hex') !== r.sha256) throw bad(`tensor '${name}' fails its checksum: its data was changed or damaged`);
    const copy = new ArrayBuffer(size); // aligned, and independent of the file's buffer
    data.copy(new Uint8Array(copy));
    const values = r.dtype === 'int32' ? new Int32Array(copy) : new Float32Array(copy);
    const nonFinite = firstNonFinite(values, r.dtype);
    if (nonFinite) throw bad(`tensor '${name}' holds ${nonFinite.value} at element ${nonFinite.index}`);
    tensors.set(name, { dtype: r.dtype, shape: r.shape, data: values });
  }
  return { path: file, host: header.host, tensors };
}

/**
 * Copies the checkpoint's values into `targets`, which must match it exactly (same names,
 * dtypes and shapes); throws, changing nothing, when they do not.
 */
export async function restoreTensors(loaded: LoadedCheckpoint, targets: readonly NamedTensor[], stream: Stream): Promise<void> {
  const mismatch = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: ${loaded.path} does not match this trainer: ${why}`);
  if (loaded.tensors.size !== targets.length)
    throw mismatch(`it holds ${loaded.tensors.size} tensors, the model and its training state have ${targets.length}`);
  for (const t of targets) {
    const saved = loaded.tensors.get(t.name);
    if (!saved) throw mismatch(`it has no tensor '${t.name}'`);
    if (saved.dtype !== t.tensor.dtype || saved.shape.join(',') !== t.tensor.shape.join(','))
      throw mismatch(
        `'${t.name}' is ${saved.dtype} [${saved.shape.join(', ')}] there, ${t.tensor.dtype} [${t.tensor.shape.join(', ')}] here`,
      );
  }
  const sources: Tensor[] = [];
  try {
    for (const t of targets) {
      const src = Tensor.fromArray(loaded.tensors.get(t.name)!.data, t.tensor.shape, { device: t.tensor.device });
      sources.push(src);
      ops.copy({ stream }, src, t.tensor);
    }
    await stream.synchronize();
  } finally {
    for (const s of sources) s.dispose();
  }
}
