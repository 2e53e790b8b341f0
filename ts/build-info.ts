// What this build of the addon has (CUDA compiled in, usable devices, the CPU GEMM's
// instruction set) and the CPU thread count: the facts about the native module that the layers
// above (the CLI, a user checking why no GPU is used) need, so that they do not import the raw
// addon (ts/native.ts), which only the low-level wrappers and the ops layer see.
import { native } from './native';
import type { BuildInfo } from './native';

export type { BuildInfo } from './native';

/** The addon's build and the devices it found (see BuildInfo; cudaError says why none). */
export function buildInfo(): BuildInfo {
  return native.buildInfo();
}

/**
 * The number of CPU threads ops may use; with `count`, sets it first (a positive integer,
 * checked by the addon). SYNTHGRAD_NUM_THREADS sets it at load time.
 */
export function threads(count?: number): number {
  return count === undefined ? native.threads() : native.threads(count);
}
