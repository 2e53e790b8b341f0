// The MPI transport: the optional addon synthgrad_mpi.node (native/mpi/), loaded on first use
// only, so that synthgrad loads and runs without MPI. Sends and receives are non-blocking: each
// returns a Promise that the addon's progress thread settles, and a receive that waits longer
// than its timeout rejects, naming the rank it waited for (a rank that died or hangs).
import * as fs from 'fs';
import * as path from 'path';
import { shown } from '../check';
import { error, rangeError, typeError } from '../errors';

/** What moves between ranks: the bytes of a typed array. */
export type Payload = Float32Array | Int32Array;

/** How the ranks of a distributed run reach each other. */
export interface Transport {
  readonly rank: number;
  readonly size: number;
  /** Sends `data` to rank `to`; resolves once `data` may be reused. */
  send(data: Payload, to: number, tag: number): Promise<void>;
  /** Receives exactly `into.byteLength` bytes from rank `from` into `into`, and resolves with it. */
  receive<T extends Payload>(into: T, from: number, tag: number, what?: string): Promise<T>;
  /** Resolves when every rank got here. */
  barrier(): Promise<void>;
  /** Ends the transport (every send and receive settled); the process may exit after it. */
  finalize(): void;
  /** Ends every rank of the job at once, with `code` as the exit status. */
  abort(code?: number): void;
}

interface MpiBinding {
  init(): { rank: number; size: number; threadLevel: string; tagUpperBound: number; library: string };
  isend(data: Payload, dest: number, tag: number): Promise<void>;
  /** the Promise has an `id`, for cancel() */
  irecv<T extends Payload>(data: T, source: number, tag: number): Promise<T> & { id: number };
  cancel(id: number): boolean;
  ibarrier(): Promise<void>;
  finalize(): void;
  abort(code: number): void;
  pending(): number;
  state(): 'uninitialized' | 'initialized' | 'finalized';
}

export interface MpiOptions {
  /**
   * Seconds a receive (or the barrier) may wait before the run ends with an error naming the
   * rank it waited for; default 60 (SYNTHGRAD_MPI_TIMEOUT overrides), at most LONGEST_TIMEOUT_S.
   * A step's hand-off takes milliseconds; the timeout is for a rank that died or hangs where
   * mpirun did not notice.
   */
  timeout?: number;
}

/** The longest timeout in seconds: Node fires a timer of more than 2^31 - 1 ms after 1 ms. */
export const LONGEST_TIMEOUT_S = (2 ** 31 - 1) / 1000;

/** Why `timeout` is no timeout in seconds that a timer can wait, or undefined when it is. */
export function badTimeout(timeout: unknown): string | undefined {
  if (typeof timeout === 'number' && timeout > 0 && timeout <= LONGEST_TIMEOUT_S) return undefined;
  return `must be a positive number of seconds, at most ${LONGEST_TIMEOUT_S} (Node's longest timer), got ${shown(timeout)}`;
}

/** Where the MPI addon is: SYNTHGRAD_MPI_ADDON, else build/Release/synthgrad_mpi.node of the package. */
export function mpiAddonPath(): string {
  if (process.env.SYNTHGRAD_MPI_ADDON) return path.resolve(process.env.SYNTHGRAD_MPI_ADDON);
  let dir = __dirname; // ts/distributed under ts-jest, dist/ts/distributed once compiled
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'build', 'Release', 'synthgrad_mpi.node');
}

const INSTALL =
  'install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev, or bash scripts/install-mpi.sh) and rebuild the addon ' +
  "('npm run build': CMake then builds build/Release/synthgrad_mpi.node); SYNTHGRAD_MPI_ADDON=path picks another build";

let binding: MpiBinding | undefined;

/** The MPI addon, or a clear error naming what to install. */
function loadBinding(): MpiBinding {
  if (binding) return binding;
  const file = mpiAddonPath();
  if (!fs.existsSync(file)) throw error('ERR_SYNTHGRAD_NATIVE', `synthgrad: the MPI transport is not built (no ${file}): ${INSTALL}`);
  try {
    // A native addon loads only through require (its path is known at run time).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as MpiBinding;
  } catch (e) {
    throw error('ERR_SYNTHGRAD_NATIVE', `synthgrad: the MPI transport ${file} failed to load: ${(e as Error).message}; ${INSTALL}`);
  }
  return binding;
}

/** Whether the MPI transport can be loaded here (the addon was built). */
export function mpiAvailable(): boolean {
  try {
    loadBinding();
    return true;
  } catch {
    return false;
  }
}

let transport: MpiTransport | undefined;

/**
 * The MPI transport of this process (MPI is initialised on the first call; one per process).
 * Run the program with `mpirun -np K node program.js`; started without mpirun it is a
 * one-rank run (size 1).
 */
export function mpi(options: MpiOptions = {}): MpiTransport {
  if (!options || typeof options !== 'object') throw typeError('mpi: options must be an object');
  const fromEnv = process.env.SYNTHGRAD_MPI_TIMEOUT;
  const timeout = options.timeout ?? (fromEnv !== undefined ? Number(fromEnv) : 60);
  const bad = badTimeout(timeout);
  if (bad) throw rangeError(`mpi: 'timeout' (or SYNTHGRAD_MPI_TIMEOUT) ${bad}`);
  if (transport) {
    transport.timeout = timeout;
    return transport;
  }
  const b = loadBinding();
  const info = b.init();
  transport = new MpiTransport(b, info.rank, info.size, info.library, timeout);
  return transport;
}

export class MpiTransport implements Transport {
  /** @internal */
  constructor(
    private readonly b: MpiBinding,
    readonly rank: number,
    readonly size: number,
    /** the MPI library's name and version, e.g. 'Open MPI v4.1.4' */
    readonly library: string,
    /** seconds a receive may wait */
    public timeout: number,
  ) {}

  send(data: Payload, to: number, tag: number): Promise<void> {
    return this.b.isend(data, to, tag);
  }

  receive<T extends Payload>(into: T, from: number, tag: number, what?: string): Promise<T> {
    const p = this.b.irecv(into, from, tag);
    // A receive that timed out is cancelled: left posted, it would take a later message.
    return this.timed(p, `${what ?? `a message (tag ${tag})`} from rank ${from}`, () => this.b.cancel(p.id));
  }

  barrier(): Promise<void> {
    return this.timed(this.b.ibarrier(), 'the barrier (every rank)');
  }

  finalize(): void {
    this.b.finalize();
  }

  abort(code = 1): void {
    this.b.abort(code);
  }

  /** Rejects when `p` takes longer than the timeout, naming what it waited for. */
  private timed<T>(p: Promise<T>, what: string, onTimeout?: () => void): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    p.catch(() => undefined); // after a timeout its own rejection (cancelled) is expected
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout?.();
        reject(
          error(
            'ERR_SYNTHGRAD_TRAINING',
            `rank ${this.rank}: waited ${this.timeout} s for ${what}: that rank died, hangs or is far behind ` +
              '(SYNTHGRAD_MPI_TIMEOUT sets the limit in seconds)',
          ),
        );
      }, this.timeout * 1000);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }
}
