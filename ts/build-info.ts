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

/**
 * null when cuda:0 can be used, else why not, in words a user can act on (for gpu:check's and
 * bench:gpu's exit message and the GPU tests' skip).
 */
export function cudaUnavailableReason(): string | null {
  const info = native.buildInfo();
  if (!info.cuda)
    return (
      'this synthgrad build has no CUDA backend (rebuild with SYNTHGRAD_CUDA=on and nvcc: ' +
      'SYNTHGRAD_CUDA=on SYNTHGRAD_CUDA_ARCHS=90 npm run build)'
    );
  if (info.cudaDevices < 1)
    return (
      'the addon has the CUDA backend compiled in but sees no CUDA device' +
      (info.cudaError
        ? `: cudaGetDeviceCount failed with ${info.cudaError}` +
          (/InsufficientDriver/.test(info.cudaError) ? ' (no NVIDIA driver, or one older than R580, which this CUDA 13 build needs)' : '')
        : ' (no NVIDIA GPU or driver on this machine)')
    );
  return null;
}
