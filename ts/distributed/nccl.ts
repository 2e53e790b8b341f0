// The NCCL transport: h_i and δ_i move between GPUs as device buffers, ncclSend/ncclRecv
// enqueued on the module's stream, with no read-back to the host (mpi() reads every tensor
// back, sends host bytes, and uploads them again). The optional addon synthgrad_nccl.node
// (native/nccl/) loads libnccl.so.2 at run time; NCCL's unique id goes from rank 0 to the
// others over MPI, which also carries the host messages (the labels), the barrier and abort.
//
// Not verified on a GPU yet (docs/distributed-scaling.md, "NCCL"): the tests here cover the
// argument checks, the errors when NCCL or the addon is absent, and the calls the transport
// makes, against a fake binding.
import * as fs from 'fs';
import * as path from 'path';
import { checkOptions, describe } from '../check';
import { Device } from '../device';
import { error, rangeError, typeError } from '../errors';
import { Stream } from '../stream';
import { Tensor } from '../tensor';
import { DeviceHandles, deviceHandles } from '../raw-handles';
import { Payload, Transport, badTimeout, mpi } from './mpi';

/** The addon's functions (native/nccl/nccl_binding.cpp). */
export interface NcclBinding {
  load(library: string): { version: number; path: string };
  uniqueId(): Uint8Array;
  /** resolves with the communicator's handle once every rank joined */
  initRank(id: Uint8Array, ranks: number, rank: number, device: number): Promise<number>;
  send(comm: number, pointer: bigint, bytes: number, peer: number, stream: bigint): void;
  recv(comm: number, pointer: bigint, bytes: number, peer: number, stream: bigint): void;
  groupStart(): void;
  /** NCCL's returns nothing (the group runs on the streams); a test's stand-in may return a Promise of its host copies */
  groupEnd(): void | Promise<void>;
  asyncError(comm: number): string | null;
  destroy(comm: number): void;
  abort(comm: number): void;
}

export type { DeviceHandles };

/** Where the raw handles come from: the main addon's `rawHandles`, or a test's fake. */
export type HandleSource = (tensor: Tensor, stream: Stream) => DeviceHandles;

export interface NcclOptions {
  /** this rank's GPU, e.g. Device.cuda(localRank) */
  device: Device;
  /** the MPI transport that hands NCCL's unique id around and carries the labels; default mpi() */
  mpi?: Transport;
  /** the NCCL library: default SYNTHGRAD_NCCL_LIBRARY, else libnccl.so.2 (found by the dynamic linker) */
  library?: string;
  /**
   * Seconds a wait on a stream with NCCL transfers may last before the communicator is aborted
   * (a peer died or hangs), and the communicator's set-up may wait for every rank to join, but
   * no longer than the MPI transport's timeout (its receives carry the set-up's messages);
   * default the MPI transport's timeout (60 s, SYNTHGRAD_MPI_TIMEOUT); at most
   * LONGEST_TIMEOUT_S (./mpi.ts)
   */
  timeout?: number;
}

/** The MPI tag of the unique id's hand-out: the MPI standard's least upper bound, out of distribute()'s way. */
export const UNIQUE_ID_TAG = 32767;

/** Where the NCCL addon is: SYNTHGRAD_NCCL_ADDON, else build/Release/synthgrad_nccl.node of the package. */
export function ncclAddonPath(): string {
  if (process.env.SYNTHGRAD_NCCL_ADDON) return path.resolve(process.env.SYNTHGRAD_NCCL_ADDON);
  let dir = __dirname; // ts/distributed under ts-jest, dist/ts/distributed once compiled
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'build', 'Release', 'synthgrad_nccl.node');
}

const USE_MPI = 'or use mpi() (host buffers)';

let binding: NcclBinding | undefined;

function loadAddon(): NcclBinding {
  if (binding) return binding;
  const file = ncclAddonPath();
  if (!fs.existsSync(file))
    throw error(
      'ERR_SYNTHGRAD_NATIVE',
      `nccl(): the NCCL transport is not built (no ${file}); 'npm run build' builds it (it needs neither NCCL nor CUDA to build), ${USE_MPI}`,
    );
  try {
    // A native addon loads only through require (its path is known at run time).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as NcclBinding;
  } catch (e) {
    throw error('ERR_SYNTHGRAD_NATIVE', `nccl(): the NCCL transport ${file} failed to load: ${(e as Error).message}`);
  }
  return binding;
}

/** The library to load: `given`, else SYNTHGRAD_NCCL_LIBRARY, else libnccl.so.2. */
function libraryName(given: unknown): string {
  if (given !== undefined && (typeof given !== 'string' || given === ''))
    throw typeError(`nccl(): 'library' must be a file name or path (e.g. 'libnccl.so.2'), got ${describe(given)}`);
  return (given as string | undefined) ?? (process.env.SYNTHGRAD_NCCL_LIBRARY || 'libnccl.so.2');
}

/** Loads the addon and NCCL; NCCL's version as 'major.minor.patch', or a clear error. */
function loadNccl(library: string): { b: NcclBinding; version: string } {
  const b = loadAddon();
  let code: number;
  try {
    code = b.load(library).version;
  } catch (e) {
    const why = (e as Error).message.replace(/^nccl\.load: /, '');
    throw error(
      'ERR_SYNTHGRAD_NATIVE',
      `nccl(): ${why}; install NCCL (Debian/Ubuntu with NVIDIA's repository: apt-get install libnccl2; ` +
        `or pip's nvidia-nccl-cu12 and SYNTHGRAD_NCCL_LIBRARY=its libnccl.so.2) ${USE_MPI}`,
    );
  }
  return { b, version: versionText(code) };
}

/** NCCL's version code (major·10000 + minor·100 + patch from 2.9 on, major·1000 + minor·100 + patch before) as text. */
export function versionText(code: number): string {
  const major = code >= 10000 ? Math.floor(code / 10000) : Math.floor(code / 1000);
  const rest = code >= 10000 ? code % 10000 : code % 1000;
  return `${major}.${Math.floor(rest / 100)}.${rest % 100}`;
}

/** Whether the NCCL transport can run here: the addon is built and NCCL loads. */
export function ncclAvailable(library?: string): boolean {
  return ncclMissing(library) === undefined;
}

/** Why the NCCL transport cannot run here (the addon or NCCL is missing: what to install), or undefined when it can. */
export function ncclMissing(library?: string): string | undefined {
  try {
    loadNccl(libraryName(library));
    return undefined;
  } catch (e) {
    return (e as Error).message.replace(/^nccl\(\): /, '');
  }
}

/**
 * The NCCL transport of this rank, on `device` (its GPU). Every rank calls it at the same
 * point (it joins them into one NCCL communicator, the size of the MPI job). Rejects with
 * ERR_SYNTHGRAD_NATIVE when the addon or NCCL is absent, naming what to install, or when the
 * ranks have not all joined within `timeout` seconds, naming those that did not.
 */
export async function nccl(options: NcclOptions): Promise<NcclTransport> {
  if (!options || typeof options !== 'object') throw typeError('nccl(): expects options { device, mpi?, library? }');
  checkOptions('nccl()', options, ['device', 'mpi', 'library', 'timeout']);
  const library = libraryName(options.library);
  const badLimit = options.timeout === undefined ? undefined : badTimeout(options.timeout);
  if (badLimit) throw rangeError(`nccl(): 'timeout' ${badLimit}`);
  const device = options.device;
  if (!(device instanceof Device)) throw typeError(`nccl(): 'device' must be a Device (Device.cuda(i)), got ${describe(device)}`);
  if (options.mpi !== undefined && !isTransport(options.mpi))
    throw typeError(`nccl(): 'mpi' must be the MPI transport (mpi()), got ${describe(options.mpi)}`);
  // What is missing on this machine first (the addon, NCCL), then the device; MPI is started last.
  const { b, version } = loadNccl(library);
  if (!device.isCuda)
    throw rangeError(`nccl(): 'device' must be a CUDA device (Device.cuda(i)): NCCL moves GPU buffers, got ${device.name}; ${USE_MPI}`);
  const host = options.mpi ?? mpi();
  const timeout = options.timeout ?? defaultTimeout(host);
  // The join's messages travel over the host's receives, which give up after the host's timeout.
  const hostLimit = (host as { timeout?: unknown }).timeout;
  const joinLimit = typeof hostLimit === 'number' && hostLimit > 0 ? Math.min(timeout, hostLimit) : timeout;
  const comm = await join(b, host, Number(device.name.slice('cuda:'.length)), joinLimit);
  const t = new NcclTransport(b, comm, host, device, version);
  t.timeout = timeout;
  return t;
}

/** The MPI tag of the notes the ranks send each other as they join the communicator (below UNIQUE_ID_TAG and connect()'s). */
export const JOIN_TAG = 32764;

/**
 * The communicator's set-up, bounded: rank 0 draws NCCL's unique id and hands it to every
 * other rank over MPI, then every rank calls ncclCommInitRank, which waits until every rank
 * joined; a rank that never calls nccl() (or is stuck before it) would keep the others waiting
 * forever. So each rank first tells every other one over MPI that it is joining, and when the
 * set-up lasts longer than `timeout` seconds, the ranks whose note has not arrived (or rank 0,
 * when the id has not) are named as those that did not join; when every note arrived, NCCL's
 * own connection is what is stuck, and the error says so. `timeout` is at most the host's
 * (nccl() takes the lesser): past the host's, its receives of the notes would give up first.
 */
async function join(b: NcclBinding, host: Transport, device: number, timeout: number): Promise<number> {
  const others = [...Array(host.size).keys()].filter((r) => r !== host.rank);
  const arrived = new Set<number>();
  let haveId = host.rank === 0;
  const pending: Promise<unknown>[] = []; // sends and note receives: awaited once joined, moot after a failure
  let joined: Promise<number> | undefined;
  const setUp = async (): Promise<number> => {
    let id: Uint8Array;
    if (host.rank === 0) {
      id = b.uniqueId();
      await Promise.all(others.map((r) => host.send(new Int32Array(id.slice().buffer), r, UNIQUE_ID_TAG)));
    } else {
      const words = await host.receive(new Int32Array(32), 0, UNIQUE_ID_TAG, "NCCL's unique id");
      id = new Uint8Array(words.buffer);
      haveId = true;
    }
    for (const r of others) {
      pending.push(host.send(Int32Array.of(host.rank), r, JOIN_TAG));
      const note = host.receive(new Int32Array(1), r, JOIN_TAG, `rank ${r}'s note that it joins the NCCL communicator`);
      pending.push(note.then(() => arrived.add(r)));
    }
    for (const p of pending) p.catch(() => undefined);
    joined = b.initRank(id, host.size, host.rank, device);
    const comm = await joined;
    await Promise.all(pending); // every rank joined, so every note was sent: here or arriving
    return comm;
  };
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const missing = haveId ? others.filter((r) => !arrived.has(r)) : [0];
      const who =
        missing.length === 0
          ? 'every rank reached ncclCommInitRank, so NCCL itself could not connect them (NCCL_DEBUG=INFO shows where it stopped)'
          : `${missing.length === 1 ? 'rank' : 'ranks'} ${missing.join(', ')} did not join` +
            (haveId ? '' : " (rank 0 hands out NCCL's unique id)") +
            ' (every rank calls nccl(), or connect(), at the same point)';
      reject(
        error(
          'ERR_SYNTHGRAD_NATIVE',
          `nccl(): rank ${host.rank}: the NCCL communicator's set-up did not complete within ${timeout} s: ${who}; ` +
            "the lesser of nccl()'s 'timeout' and the MPI transport's (SYNTHGRAD_MPI_TIMEOUT) sets the limit in seconds; end the job with abort()",
        ),
      );
    }, timeout * 1000);
  });
  const done = setUp();
  done.catch(() => undefined); // raced below
  try {
    return await Promise.race([done, late]);
  } catch (e) {
    // A join that completes after all: its communicator is not used.
    joined?.then((comm) => b.abort(comm)).catch(() => undefined);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** The host transport's receive timeout (mpi()'s: SYNTHGRAD_MPI_TIMEOUT, else 60 s). */
function defaultTimeout(host: Transport): number {
  const t = (host as { timeout?: unknown }).timeout;
  return typeof t === 'number' && t > 0 ? t : 60;
}

function isTransport(t: unknown): t is Transport {
  const o = t as Transport;
  return !!o && typeof o === 'object' && typeof o.send === 'function' && typeof o.receive === 'function' && Number.isInteger(o.rank);
}

export class NcclTransport implements Transport {
  /** Seconds watch() lets a wait last (see NcclOptions.timeout). */
  timeout: number;

  /** @internal (nccl() builds it; tests give a fake binding and handle source) */
  constructor(
    private readonly b: NcclBinding,
    private comm: number | undefined,
    /** the MPI transport under it: the unique id, the labels, the barrier, abort */
    readonly host: Transport,
    readonly device: Device,
    /** NCCL's version, e.g. '2.21.5' */
    readonly version: string,
    private readonly handles: HandleSource = deviceHandles,
  ) {
    this.timeout = defaultTimeout(host);
  }

  get rank(): number {
    return this.host.rank;
  }

  get size(): number {
    return this.host.size;
  }

  /** Host arrays (the labels) go over MPI. */
  send(data: Payload, to: number, tag: number): Promise<void> {
    return this.host.send(data, to, tag);
  }

  receive<T extends Payload>(into: T, from: number, tag: number, what?: string): Promise<T> {
    return this.host.receive(into, from, tag, what);
  }

  barrier(): Promise<void> {
    return this.host.barrier();
  }

  /**
   * Enqueues the send of `x`'s bytes to rank `to` on `stream`, after the work already enqueued
   * there (the op that wrote `x`); returns at once. `x` must stay alive and unchanged until
   * `stream` has passed the send (the rank above receives the same byte count).
   */
  sendTensor(x: Tensor, to: number, stream: Stream): void {
    this.transfer('sendTensor', 'x', x, to, stream, false);
  }

  /** Enqueues the receive of `into`'s bytes from rank `from` on `stream`; returns `into` at once (ops after it on `stream` see the bytes). */
  receiveTensor(into: Tensor, from: number, stream: Stream): Tensor {
    this.transfer('receiveTensor', 'into', into, from, stream, true);
    return into;
  }

  /**
   * Runs `transfers` (sendTensor and receiveTensor calls) as one NCCL group: they start
   * together. An NCCL send may wait on its stream until the peer posts the receive, so two
   * ranks that each enqueue a send before a receive on one stream wait for each other forever
   * unless the pair is grouped (or sends and receives go on separate streams).
   * With NCCL the transfers are enqueued when this returns and the Promise is resolved; a
   * test's stand-in binding (host copies) resolves it once its copies are done.
   */
  group(transfers: () => void): Promise<void> {
    this.open('group');
    this.b.groupStart();
    let ended: void | Promise<void>;
    try {
      transfers();
    } finally {
      ended = this.b.groupEnd();
    }
    return Promise.resolve(ended);
  }

  /**
   * `p`, a wait for a stream that runs this transport's transfers (a read, a synchronize), with
   * a watchdog: a transfer whose peer died or hangs would keep the stream, and `p`, waiting
   * forever. When NCCL reports an asynchronous error, or `p` lasts longer than `timeout`
   * seconds, the communicator is aborted (ncclCommAbort ends its pending transfers) and the
   * Promise rejects, naming `what`; the run then ends every rank with abort(). Once the
   * communicator is aborted, a wait still ends after `timeout` seconds.
   */
  watch<T>(p: Promise<T>, what: string): Promise<T> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    p.catch(() => undefined); // after the watchdog fired its own outcome no longer matters
    const fired = new Promise<never>((_, reject) => {
      const fail = (why: string) => {
        clearInterval(timer);
        this.abortCommunicator();
        reject(error('ERR_SYNTHGRAD_TRAINING', `rank ${this.rank}: ${why}; the NCCL communicator was aborted`));
      };
      timer = setInterval(
        () => {
          let asyncError: string | null = null;
          try {
            asyncError = this.comm === undefined ? null : this.b.asyncError(this.comm);
          } catch (e) {
            asyncError = (e as Error).message;
          }
          if (asyncError !== null) fail(`NCCL reported an error (${asyncError}) while waiting for ${what}`);
          else if (Date.now() - started >= this.timeout * 1000)
            fail(
              `waited ${this.timeout} s for ${what} (NCCL): a rank died, hangs or is far behind ` +
                "(SYNTHGRAD_MPI_TIMEOUT, or nccl()'s 'timeout', sets the limit in seconds)",
            );
        },
        Math.min(100, this.timeout * 1000),
      );
    });
    return Promise.race([p, fired]).finally(() => clearInterval(timer));
  }

  /** NCCL's asynchronous error (a failed peer, a broken connection), or null; a run checks it while it waits. */
  asyncError(): string | null {
    return this.b.asyncError(this.open('asyncError'));
  }

  /** Destroys the communicator (after every stream finished its transfers), then finalises MPI. */
  finalize(): void {
    if (this.comm !== undefined) this.b.destroy(this.comm);
    this.comm = undefined;
    this.host.finalize();
  }

  /** Aborts the communicator (in-flight transfers end), then ends every rank through MPI. */
  abort(code = 1): void {
    this.abortCommunicator();
    this.host.abort(code);
  }

  private abortCommunicator(): void {
    if (this.comm === undefined) return;
    try {
      this.b.abort(this.comm);
    } catch {
      // ending anyway
    }
    this.comm = undefined;
  }

  private open(fn: string): number {
    if (this.comm === undefined) throw error('ERR_SYNTHGRAD_STATE', `nccl.${fn}: the transport was finalised or aborted`);
    return this.comm;
  }

  private transfer(fn: string, name: string, t: Tensor, peer: number, stream: Stream, receive: boolean): void {
    const comm = this.open(fn);
    if (!(t instanceof Tensor)) throw typeError(`nccl.${fn}: '${name}' must be a Tensor, got ${describe(t)}`);
    if (t.disposed) throw error('ERR_SYNTHGRAD_STATE', `nccl.${fn}: '${name}' was disposed`);
    if (!t.device.equals(this.device))
      throw rangeError(`nccl.${fn}: '${name}' must be on ${this.device.name} (this transport's device), got ${t.device.name}`);
    if (!(stream instanceof Stream)) throw typeError(`nccl.${fn}: 'stream' must be a Stream, got ${describe(stream)}`);
    if (!stream.device.equals(this.device))
      throw rangeError(`nccl.${fn}: 'stream' must be on ${this.device.name} (this transport's device), got ${stream.device.name}`);
    const what = receive ? 'from' : 'to';
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.size)
      throw rangeError(`nccl.${fn}: '${what}' must be a rank in [0, ${this.size - 1}], got ${String(peer)}`);
    if (peer === this.rank)
      throw rangeError(`nccl.${fn}: '${what}' is this rank (${peer}): a module next to one on the same rank takes its tensor directly`);
    const bytes = t.size * 4; // float32 and int32 alike
    if (bytes === 0) return; // nothing to move (NCCL takes a count of 0 as a no-op too)
    const { pointer, stream: handle } = this.handles(t, stream);
    if (receive) this.b.recv(comm, pointer, bytes, peer, handle);
    else this.b.send(comm, pointer, bytes, peer, handle);
  }
}

/** @internal for tests: use `b` as the addon (undefined: load the real one again on next use). */
export function useNcclBindingForTests(b: NcclBinding | undefined): void {
  binding = b;
}
