// connect(): the transport for distribute(), chosen by name. 'mpi' moves h and δ as host
// buffers (any device); 'nccl' as device buffers on the GPU's stream (a CUDA model, NCCL
// present at run time); 'auto' takes NCCL where it can run and MPI otherwise.
import { checkOptions, describe } from '../check';
import { Device } from '../device';
import { error, rangeError, typeError } from '../errors';
import { Transport, mpi } from './mpi';
import { nccl, ncclMissing } from './nccl';

export type TransportName = 'auto' | 'nccl' | 'mpi';

export interface ConnectOptions {
  /** this rank's device, the model's (Device.cuda(localRank) on a GPU) */
  device: Device;
  /** default 'auto': NCCL when `device` is a GPU, the job has more than one rank and NCCL loads; else MPI */
  transport?: TransportName;
  /** seconds a hand-off may wait for another rank (mpi()'s and nccl()'s timeout) */
  timeout?: number;
  /** the NCCL library (nccl()'s 'library') */
  library?: string;
}

const NAMES: readonly TransportName[] = ['auto', 'nccl', 'mpi'];

/**
 * The transport of this rank; every rank calls it at the same point (NCCL joins them into
 * one communicator): distribute(network, { transport: await connect({ device }), ... }). The
 * distributed network's `handOffs` then says which one its steps use.
 */
export async function connect(options: ConnectOptions): Promise<Transport> {
  if (!options || typeof options !== 'object') throw typeError('connect: expects options { device, transport?, timeout?, library? }');
  checkOptions('connect', options, ['device', 'transport', 'timeout', 'library']);
  const { device, library, timeout } = options;
  const name = options.transport ?? 'auto';
  if (!(device instanceof Device)) throw typeError(`connect: 'device' must be a Device (the model's), got ${describe(device)}`);
  if (!NAMES.includes(name)) throw rangeError(`connect: 'transport' must be 'auto', 'nccl' or 'mpi', got ${describe(name)}`);
  if (name === 'nccl' && !device.isCuda)
    throw rangeError(
      `connect: 'transport' is 'nccl', which moves GPU buffers, but 'device' is ${device.name}: ` +
        "use transport 'mpi' (host buffers) or 'auto' for a model on the CPU",
    );
  // What is missing is said before MPI starts.
  const missing = name === 'mpi' || !device.isCuda ? 'not asked for' : ncclMissing(library);
  if (name === 'nccl' && missing !== undefined)
    throw error('ERR_SYNTHGRAD_NATIVE', `connect: 'transport' is 'nccl', but ${missing}; transport 'auto' falls back to MPI`);
  const host = mpi(timeout === undefined ? {} : { timeout });
  if (name === 'mpi' || host.size === 1) return host;
  // 'auto': every rank makes the same choice (a rank in NCCL's set-up would wait for the others forever).
  if (name === 'auto' && !(await everyRank(host, missing === undefined))) return host;
  try {
    return await nccl({ device, mpi: host, library, timeout });
  } catch (e) {
    throw error('ERR_SYNTHGRAD_NATIVE', `connect: 'transport' is '${name}', but ${(e as Error).message}`);
  }
}

/** The MPI tags of connect()'s agreement, below nccl()'s UNIQUE_ID_TAG and above distribute()'s. */
const VOTE_TAG = 32766;
const DECISION_TAG = 32765;

/** Whether `mine` holds on every rank (rank 0 gathers the answers and hands out the decision). */
async function everyRank(host: Transport, mine: boolean): Promise<boolean> {
  const what = "whether NCCL loads there (connect's 'auto')";
  if (host.rank !== 0) {
    await host.send(Int32Array.of(mine ? 1 : 0), 0, VOTE_TAG);
    const [all] = await host.receive(new Int32Array(1), 0, DECISION_TAG, `rank 0's decision on ${what}`);
    return all === 1;
  }
  const votes = await Promise.all(
    Array.from({ length: host.size - 1 }, (_, r) => host.receive(new Int32Array(1), r + 1, VOTE_TAG, what).then(([v]) => v === 1)),
  );
  const all = mine && votes.every((v) => v);
  await Promise.all(Array.from({ length: host.size - 1 }, (_, r) => host.send(Int32Array.of(all ? 1 : 0), r + 1, DECISION_TAG)));
  return all;
}
