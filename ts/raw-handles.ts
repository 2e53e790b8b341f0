// Raw device handles: a CUDA tensor's device address and its stream's cudaStream_t, for code
// that hands GPU buffers to another library on a module's stream (the NCCL transport,
// ts/distributed/nccl.ts). A low-level wrapper of the addon, like tensor.ts and stream.ts.
import { error } from './errors';
import { native } from './native';
import { Stream } from './stream';
import { Tensor } from './tensor';

export interface DeviceHandles {
  /** the tensor's first byte on its device */
  pointer: bigint;
  /** the stream's cudaStream_t */
  stream: bigint;
}

/** `tensor`'s device address and `stream`'s CUDA stream; a RangeError for a CPU tensor, or when they are on different devices. */
export function deviceHandles(tensor: Tensor, stream: Stream): DeviceHandles {
  if (typeof native.rawHandles !== 'function')
    throw error(
      'ERR_SYNTHGRAD_NATIVE',
      "this build of synthgrad's addon does not expose a tensor's device address and a stream's CUDA stream " +
        '(native.rawHandles): rebuild it',
    );
  return native.rawHandles(tensor.handle, stream.handle);
}
