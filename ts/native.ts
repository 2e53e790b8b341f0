// The TypeScript type of the whole native module, and its loader.
//
// This is the only file that knows the addon's shape (with ts/native-ops.ts, the ops' type that
// scripts/gen-ops.js writes from the op table); everything else goes through the typed
// wrappers (Tensor, Stream, layers). The native functions check every argument themselves and
// throw TypeError/RangeError naming it, so a wrong call never crashes the process.
import * as fs from 'fs';
import * as path from 'path';
import { error } from './errors';
import type { NativeOps } from './native-ops';

export type DTypeName = 'float32' | 'int32';
export type DeviceName = 'cpu' | `cuda:${number}`;
export type ActivationName = 'relu' | 'tanh' | 'sigmoid';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DTypeName;
  /** null once disposed */
  readonly device: DeviceName | null;
  readonly disposed: boolean;
  dispose(): void;
  reshape(shape: number[]): NativeTensor;
  view(offset: number, shape: number[]): NativeTensor;
  read(stream?: NativeStream): Promise<Float32Array | Int32Array>;
  /** Copies `data` in once `stream` gets there; `data` may change as soon as this returns. */
  write(data: Float32Array | Int32Array, stream?: NativeStream): void;
  sharesStorage(other: NativeTensor): boolean;
}

export interface NativeStream {
  readonly device: DeviceName;
  wait(event: NativeEvent): void;
  synchronize(): Promise<void>;
  /**
   * Drops the ops this thread enqueued here that have not started (CPU; CUDA: none, 0) and
   * returns how many; the next synchronize()/read() on the stream rejects saying so.
   */
  cancel(): number;
}

export interface NativeEvent {
  readonly device: DeviceName;
  record(stream: NativeStream): void;
  synchronize(): Promise<void>;
}

// The ops' type comes from the op table (native/core/op_table.json) through scripts/gen-ops.js.
export type { NativeOps } from './native-ops';

/** Recorded work of one or more streams; see beginCapture. */
export interface NativeGraph {
  readonly disposed: boolean;
  /** between beginCapture and endCapture */
  readonly capturing: boolean;
  launch(stream: NativeStream): void;
  /** Frees the graph; while it is still capturing, discards the capture. */
  dispose(): void;
}

export interface BuildInfo {
  /** the CUDA backend is compiled in */
  cuda: boolean;
  /** usable CUDA devices at run time */
  cudaDevices: number;
  /**
   * why cudaDevices is 0 when the CUDA runtime reported an error, by name (e.g.
   * 'cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA runtime version)'
   * on a driver older than R580 for this CUDA 13 build); '' otherwise
   */
  cudaError: string;
  /** the CPU GEMM's instruction set: 'avx512', 'avx2' or 'generic' */
  cpuGemm: string;
  /**
   * the instruction set the other CPU kernels (BatchNorm, activations, losses, optimizers...)
   * were compiled for, as the running code reports it; the same choice as cpuGemm
   */
  cpuKernels: string;
  napiVersion: number;
}

/** One op's line of the op profile (NativeModule.profile). */
export interface OpProfileEntry {
  /** the op's name in the op table, e.g. 'gemm' */
  readonly op: string;
  readonly calls: number;
  /** the total time of its calls */
  readonly seconds: number;
}

export interface NativeModule {
  Tensor: new (shape: number[], dtype: DTypeName, device: DeviceName, init?: Float32Array | Int32Array | 'zeros') => NativeTensor;
  /** useDefault: a handle on the device's default stream (as defaultStream()) */
  Stream: new (device: DeviceName, useDefault?: boolean) => NativeStream;
  Event: new (device: DeviceName) => NativeEvent;
  ops: NativeOps;
  buildInfo(): BuildInfo;
  deviceName(device: DeviceName): string;
  defaultStream(device: DeviceName): NativeStream;
  /** Sets (when given) and returns the number of CPU threads ops may use. */
  threads(count?: number): number;
  /**
   * The stream-order checker (a debug mode, off by default; SYNTHGRAD_CHECK_STREAMS=1 turns it
   * on at load): sets it (when given) and returns whether it is on. While on, every op, read,
   * record and wait is checked when it is enqueued: an access to memory that another stream
   * wrote (or, for a write, read) without an event wait or a resolved synchronize() ordering
   * it before throws an Error ('stream order: ...') naming the op, the tensor and both
   * streams, and nothing is enqueued. Switching it forgets what it knew.
   */
  checkStreams(enabled?: boolean): boolean;
  /**
   * The op profile (off by default): 'start' forgets the totals and times every CPU op from
   * then on, on its stream's worker around its kernels; 'stop' stops; 'read' returns the
   * totals per op name (an op timed while on and finished after 'stop' is not counted).
   */
  profile(action: 'start' | 'stop'): void;
  profile(action: 'read'): OpProfileEntry[];
  /**
   * Opt-in TF32 tensor cores for CUDA GEMMs (about 10 mantissa bits per product; default off,
   * exact fp32). Sets (when given) and returns the setting; enabling throws without CUDA.
   */
  gemmTf32(enabled?: boolean): boolean;
  /**
   * Work enqueued on `stream` from now on (and on streams that wait for its events) is
   * recorded rather than run, until endCapture(stream). Returns the capture's graph: keep it
   * until endCapture, since disposing of it, or its garbage collection, discards the capture
   * (so that a capture never ended cannot block later ones, one capture at a time per device).
   */
  beginCapture(stream: NativeStream): NativeGraph;
  /** Ends the capture begun on `stream`: the graph beginCapture returned, now launchable. */
  endCapture(stream: NativeStream): NativeGraph;
  /**
   * Drops the ops this thread enqueued on the device's streams that have not started, and
   * returns how many (see NativeStream.cancel; CUDA: 0).
   */
  cancelQueued(device: DeviceName): number;
  /** Adam's step-dependent scalars, the hyper tensor of adamStepGroup: [lr/(1-b1^t), sqrt(1-b2^t)]. */
  adamScalars(lr: number, beta1: number, beta2: number, step: number): [number, number];
  /**
   * A CUDA tensor's device address and its stream's cudaStream_t, for the NCCL transport
   * (ts/distributed/nccl.ts); a RangeError for a CPU tensor. Absent from addons built before it.
   */
  rawHandles?(tensor: NativeTensor, stream: NativeStream): { pointer: bigint; stream: bigint };
}

// The package root: the nearest folder above this file with a package.json (this file runs
// from ts/ under ts-jest and from dist/ts/ once compiled).
function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
const root = packageRoot();

/**
 * Where the addon is: SYNTHGRAD_ADDON, else what node-gyp-build finds (a source build in
 * build/Release or build/Debug first, then the prebuilt addon for this platform in prebuilds/).
 */
function locate(): { file?: string; looked: string } {
  if (process.env.SYNTHGRAD_ADDON) {
    const file = path.resolve(process.env.SYNTHGRAD_ADDON);
    return { file: fs.existsSync(file) ? file : undefined, looked: file };
  }
  const looked = `${path.join(root, 'build', 'Release')}, ${path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)}`;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    return { file: nodeGypBuild.path(root), looked };
  } catch {
    return { looked };
  }
}

function load(): NativeModule {
  const { file, looked } = locate();
  if (file) {
    try {
      // A native addon loads only through require (its path is known at run time).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(file) as NativeModule;
    } catch (e) {
      throw error(
        'ERR_SYNTHGRAD_NATIVE',
        `synthgrad: the native addon at ${file} failed to load: ${(e as Error).message}\n` +
          `Build it from source with 'npm run build' in ${root} (SYNTHGRAD_BUILD_FROM_SOURCE=1 npm install does the same).`,
      );
    }
  }
  throw error(
    'ERR_SYNTHGRAD_NATIVE',
    `synthgrad: the native addon was not found (looked in ${looked}).\n` +
      `Build it with 'npm run build' in ${root} (it needs CMake and a C++17 compiler; without CMake, ` +
      `'npx node-gyp rebuild' builds the CPU-only addon). SYNTHGRAD_ADDON=path picks another build.`,
  );
}

/** The native module, loaded on first use. */
export const native: NativeModule = load();
