// K ranks in one process, for tests of distribute() that need no mpirun: messages are copied
// between the ranks' transports in memory, in order per (sender, receiver, tag) as MPI keeps
// them; a receive of the wrong length rejects (as MPI_ERR_TRUNCATE would), and one that waits
// longer than `timeoutMs` rejects naming what it waited for. Also: stateBytes, to compare ranks
// with one process.
import { moduleState } from '../../ts';
import type { DecoupledNetwork, DistributedNetwork, Payload, Transport } from '../../ts';

export function localTransports(size: number, timeoutMs = 30_000): Transport[] {
  const queues = new Map<string, Payload[]>();
  const waiting = new Map<string, ((data: Payload) => void)[]>();
  let arrived = 0;
  let released: (() => void)[] = [];
  const key = (from: number, to: number, tag: number) => `${from}>${to}#${tag}`;
  const make = (rank: number): Transport => ({
    rank,
    size,
    send(data, to, tag) {
      if (!Number.isInteger(to) || to < 0 || to >= size) return Promise.reject(new RangeError(`send: no rank ${to}`));
      const copy = data.slice();
      const k = key(rank, to, tag);
      const waiter = waiting.get(k)?.shift();
      if (waiter) waiter(copy);
      else queues.set(k, [...(queues.get(k) ?? []), copy]);
      return Promise.resolve();
    },
    receive(into, from, tag, what) {
      const k = key(from, rank, tag);
      return new Promise((resolve, reject) => {
        const take = (data: Payload) => {
          clearTimeout(timer);
          if (data.byteLength !== into.byteLength)
            reject(
              new Error(`rank ${rank}: ${what ?? `tag ${tag}`} from rank ${from} has ${data.byteLength} bytes, not ${into.byteLength}`),
            );
          else {
            new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(
              new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
            );
            resolve(into);
          }
        };
        const timer = setTimeout(() => {
          const list = waiting.get(k) ?? [];
          list.splice(list.indexOf(take), 1);
          reject(new Error(`rank ${rank}: waited ${timeoutMs} ms for ${what ?? `tag ${tag}`} from rank ${from}`));
        }, timeoutMs);
        const queued = queues.get(k)?.shift();
        if (queued) take(queued);
        else waiting.set(k, [...(waiting.get(k) ?? []), take]);
      });
    },
    barrier() {
      return new Promise<void>((resolve) => {
        released.push(resolve);
        if (++arrived === size) {
          const all = released;
          released = [];
          arrived = 0;
          for (const r of all) r();
        }
      });
    },
    finalize: () => undefined,
    abort: () => undefined,
  });
  return Array.from({ length: size }, (_, r) => make(r));
}

/** Module i's state (module, synthesizer, and with the unlock its input model; moduleState's order) as bytes, for the given modules. */
export async function stateBytes(net: DecoupledNetwork, modules = net.modules.map((_, i) => i)): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const i of modules) {
    const parts = await Promise.all(moduleState(net, i).map((t) => t.readFloat32()));
    out.push(Buffer.concat(parts.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
  }
  return out;
}

/** Each module's state (stateBytes) from the rank that ran it. */
export async function ownedBytes(dists: DistributedNetwork[]): Promise<Buffer[]> {
  const bytes: Buffer[] = [];
  for (const d of dists) {
    const own = await stateBytes(d.network, [...d.ownModules]);
    d.ownModules.forEach((i, k) => (bytes[i] = own[k]));
  }
  return bytes;
}

/** Every module's bytes equal the one-process run's (the error names the first that differs). */
export function expectSame(got: Buffer[], want: Buffer[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((b, i) => {
    expect(b.length).toBeGreaterThan(0);
    if (!b.equals(want[i])) throw new Error(`module ${i + 1} differs from the one-process run`);
  });
}
