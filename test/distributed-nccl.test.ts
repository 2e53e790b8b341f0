// The NCCL transport (ts/distributed/nccl.ts, native/nccl/): what can run without a GPU. The
// errors when the addon or libnccl.so.2 is absent, the argument checks of nccl() and of the
// addon, the addon's loading of a library through dlopen/dlsym (a fake libnccl built here with
// the C compiler, when there is one), and the calls the transport makes, against a fake
// binding. distribute()'s NCCL hand-offs: the exact groups of transfers each rank issues per
// step (fake binding), a check that those of every rank meet without a deadlock under NCCL's
// rendezvous, and real mpirun runs through the NCCL code path on a CPU stand-in binding
// (test/fixtures/nccl-standin.js) that end bit for bit as the one-process run, the complete
// unlock included; nccl()'s bounded join (fake binding on in-process ranks, and the stand-in
// under mpirun). The GPU path (a real communicator, ncclSend/ncclRecv on a stream) is not run here.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Stream, Tensor, connect, decouple, distribute, mlp, mpiAddonPath, native } from '../ts';
import {
  NcclBinding,
  NcclTransport,
  JOIN_TAG,
  UNIQUE_ID_TAG,
  nccl,
  ncclAddonPath,
  ncclAvailable,
  useNcclBindingForTests,
  versionText,
} from '../ts/distributed/nccl';
import type { Payload, Transport } from '../ts/distributed/mpi';
import { localTransports } from './helpers/local-transport';

const built = fs.existsSync(ncclAddonPath());
const withAddon = built ? test : test.skip;
if (!built) console.warn(`distributed-nccl: ${ncclAddonPath()} is not built: the addon's tests skip (npm run build builds it)`);

function fakeHost(rank = 0, size = 2) {
  return {
    rank,
    size,
    send: jest.fn(async (_data?: Payload, _to?: number, _tag?: number) => undefined),
    receive: jest.fn(async <T>(into: T, _from?: number, _tag?: number, _what?: string) => into),
    barrier: jest.fn(async () => undefined),
    finalize: jest.fn(),
    abort: jest.fn(),
  };
}

function fakeBinding() {
  return {
    load: jest.fn(() => ({ version: 22105, path: 'fake' })),
    uniqueId: jest.fn(() => new Uint8Array(128)),
    initRank: jest.fn(async () => 0),
    send: jest.fn(),
    recv: jest.fn(),
    groupStart: jest.fn(),
    groupEnd: jest.fn(),
    asyncError: jest.fn((): string | null => null),
    destroy: jest.fn(),
    abort: jest.fn(),
  };
}

/** A Device that says cuda:0 without a GPU (Device's constructor is private): for the device checks only. */
const fakeCuda = Object.create(Device.prototype, { name: { value: 'cuda:0' } }) as Device;

describe('nccl() without the addon or NCCL', () => {
  test('a missing addon is ERR_SYNTHGRAD_NATIVE, naming the file and mpi()', async () => {
    process.env.SYNTHGRAD_NCCL_ADDON = path.join(os.tmpdir(), 'synthgrad-no-such-nccl-addon.node');
    useNcclBindingForTests(undefined);
    try {
      await expect(nccl({ device: Device.cpu() })).rejects.toMatchObject({
        code: 'ERR_SYNTHGRAD_NATIVE',
        message: expect.stringMatching(
          /^nccl\(\): the NCCL transport is not built \(no .*synthgrad-no-such-nccl-addon\.node\).*use mpi\(\)/,
        ),
      });
      expect(ncclAvailable()).toBe(false);
    } finally {
      delete process.env.SYNTHGRAD_NCCL_ADDON;
      useNcclBindingForTests(undefined);
    }
  });

  test('option checks name the bad argument', async () => {
    await expect(nccl(undefined as never)).rejects.toThrow(/nccl\(\): expects options \{ device/);
    await expect(nccl({ device: Device.cpu(), rank: 1 } as never)).rejects.toThrow(/rank/);
    await expect(nccl({ device: 'cuda:0' as never })).rejects.toThrow(/nccl\(\): 'device' must be a Device \(Device\.cuda\(i\)\), got/);
    await expect(nccl({ device: Device.cpu(), library: '' })).rejects.toThrow(/nccl\(\): 'library' must be a file name or path/);
    await expect(nccl({ device: Device.cpu(), mpi: {} as never })).rejects.toThrow(/nccl\(\): 'mpi' must be the MPI transport/);
    // Node fires a timer longer than 2^31 - 1 ms after 1 ms: such a timeout is refused, not cut short.
    for (const timeout of [0, Infinity, 2147484, NaN])
      await expect(nccl({ device: Device.cpu(), timeout })).rejects.toMatchObject({
        name: 'RangeError',
        message: `nccl(): 'timeout' must be a positive number of seconds, at most 2147483.647 (Node's longest timer), got ${timeout}`,
      });
  });

  withAddon('an absent libnccl.so.2 says what to install, or to use mpi()', async () => {
    const missing = path.join(os.tmpdir(), 'synthgrad-no-such-dir', 'libnccl.so.2');
    await expect(nccl({ device: Device.cpu(), library: missing })).rejects.toMatchObject({
      code: 'ERR_SYNTHGRAD_NATIVE',
      message: expect.stringMatching(/^nccl\(\): .*libnccl\.so\.2 not found or not loadable \(.*\); install NCCL .* or use mpi\(\)/),
    });
    expect(ncclAvailable(missing)).toBe(false);
    // This machine has no NCCL: the default name fails the same way (where NCCL is installed, it loads).
    if (!ncclAvailable()) await expect(nccl({ device: Device.cpu() })).rejects.toThrow(/libnccl\.so\.2 not found or not loadable/);
  });

  withAddon('a library without the NCCL functions is refused, naming them', async () => {
    // libm is loadable everywhere and has none of them
    await expect(nccl({ device: Device.cpu(), library: 'libm.so.6' })).rejects.toThrow(
      /nccl\(\): libm\.so\.6 is not NCCL 2\.7 or later \(no ncclGetVersion, ncclGetUniqueId, .*ncclRecv, ncclGetErrorString, ncclGroupStart, ncclGroupEnd\)/,
    );
  });
});

// A stand-in libnccl.so.2 (C, built here): every function succeeds; ncclGetVersion says 2.21.5.
const FAKE_NCCL = `
#include <string.h>
typedef struct { char internal[128]; } ncclUniqueId;
int ncclGetVersion(int* v) { *v = 22105; return 0; }
int ncclGetUniqueId(ncclUniqueId* id) { memset(id->internal, 7, 128); return 0; }
int ncclCommInitRank(void** comm, int n, ncclUniqueId id, int rank) { (void)n; (void)id; (void)rank; *comm = (void*)1; return 0; }
int ncclCommDestroy(void* c) { (void)c; return 0; }
int ncclCommAbort(void* c) { (void)c; return 0; }
int ncclCommGetAsyncError(void* c, int* e) { (void)c; *e = 0; return 0; }
int ncclSend(const void* p, unsigned long n, int t, int peer, void* c, void* s) { (void)p; (void)n; (void)t; (void)peer; (void)c; (void)s; return 0; }
int ncclRecv(void* p, unsigned long n, int t, int peer, void* c, void* s) { (void)p; (void)n; (void)t; (void)peer; (void)c; (void)s; return 0; }
const char* ncclGetErrorString(int r) { return r ? "fake error" : "no error"; }
int ncclGroupStart(void) { return 0; }
int ncclGroupEnd(void) { return 0; }
`;

function buildFakeNccl(): string | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-fake-nccl-'));
  const source = path.join(dir, 'fake_nccl.c');
  const library = path.join(dir, 'libnccl.so.2');
  fs.writeFileSync(source, FAKE_NCCL);
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-o', library, source], { stdio: 'pipe' });
    return library;
  } catch {
    return undefined;
  }
}

describe('the addon with a stand-in libnccl (dlopen, dlsym, the checks before any GPU work)', () => {
  const fake = built ? buildFakeNccl() : undefined;
  const withFake = fake ? test : test.skip;
  if (built && !fake) console.warn('distributed-nccl: no C compiler (cc): the stand-in libnccl tests skip');

  withFake('loads it, reads its version, and then refuses a CPU device', async () => {
    expect(ncclAvailable(fake)).toBe(true);
    await expect(nccl({ device: Device.cpu(), library: fake })).rejects.toMatchObject({
      name: 'RangeError',
      message: expect.stringMatching(
        /nccl\(\): 'device' must be a CUDA device \(Device\.cuda\(i\)\): NCCL moves GPU buffers, got cpu; or use mpi\(\)/,
      ),
    });
    // NCCL loads once per process: another library is refused, naming the first
    await expect(nccl({ device: Device.cpu(), library: 'libm.so.6' })).rejects.toThrow(/already loaded from .*libnccl\.so\.2/);
  });

  withFake("the addon's own checks name the argument (no GPU needed)", async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const b = require(ncclAddonPath()) as NcclBinding;
    expect(b.load(fake!)).toEqual({ version: 22105, path: fake });
    expect(versionText(b.load(fake!).version)).toBe('2.21.5');
    const id = b.uniqueId();
    expect(id).toBeInstanceOf(Uint8Array);
    expect(id.length).toBe(128);
    expect(id.every((v) => v === 7)).toBe(true); // the stand-in's bytes came through
    expect(() => b.initRank(new Uint8Array(64), 2, 0, 0)).toThrow(/'id' must be the 128-byte Uint8Array/);
    expect(() => b.initRank(id, 0, 0, 0)).toThrow(/'ranks' must be an integer in \[1, 1048576\], got 0/);
    expect(() => b.initRank(id, 2, 2, 0)).toThrow(/'rank' must be an integer in \[0, 1\], got 2/);
    expect(() => b.initRank(id, 2, 0, -1)).toThrow(/'device' must be an integer in \[0, 1023\]/);
    expect(() => b.send(0, 1n, 4, 1, 0n)).toThrow(/nccl\.send: 'comm' 0 is not an open communicator/);
    expect(() => b.recv(3.5, 1n, 4, 1, 0n)).toThrow(/nccl\.recv: 'comm' must be an integer/);
    expect(() => b.destroy(0)).toThrow(/not an open communicator/);
    expect(() => {
      b.groupStart();
      b.groupEnd();
    }).not.toThrow();
    if (!fs.existsSync('/dev/nvidiactl')) {
      // No driver here: making the device current fails with a clear message, as a rejection.
      await expect(b.initRank(id, 2, 0, 0)).rejects.toThrow(
        /nccl\.initRank: (the CUDA driver \(libcuda\.so\.1\) is not loadable|cannot make cuda:0 current)/,
      );
    }
  });
});

describe('NcclTransport (fake binding): the calls it makes', () => {
  const x = () => Tensor.fromArray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);

  test('sendTensor and receiveTensor enqueue send/recv of the tensor bytes on the stream', () => {
    const b = fakeBinding();
    const handles = jest.fn(() => ({ pointer: 0x1000n, stream: 0x2000n }));
    const t = new NcclTransport(b, 5, fakeHost(1, 3), Device.cpu(), '2.21.5', handles);
    const s = new Stream(Device.cpu());
    const a = x();
    t.sendTensor(a, 2, s);
    expect(handles).toHaveBeenCalledWith(a, s);
    expect(b.send).toHaveBeenCalledWith(5, 0x1000n, 24, 2, 0x2000n);
    expect(t.receiveTensor(a, 0, s)).toBe(a);
    expect(b.recv).toHaveBeenCalledWith(5, 0x1000n, 24, 0, 0x2000n);
    // a group: start, the transfers, end; and end even when a transfer throws
    const order: string[] = [];
    b.groupStart.mockImplementation(() => order.push('start'));
    b.groupEnd.mockImplementation(() => order.push('end'));
    b.send.mockImplementation(() => order.push('send'));
    b.recv.mockImplementation(() => order.push('recv'));
    t.group(() => {
      t.sendTensor(a, 2, s);
      t.receiveTensor(a, 0, s);
    });
    expect(order).toEqual(['start', 'send', 'recv', 'end']);
    expect(() => t.group(() => t.sendTensor(a, 1, s))).toThrow(/'to' is this rank/);
    expect(order.slice(4)).toEqual(['start', 'end']);
    a.dispose();
  });

  test('peers, tensors, streams and devices are checked before anything is enqueued', () => {
    const b = fakeBinding();
    const t = new NcclTransport(b, 0, fakeHost(1, 3), Device.cpu(), '2.21.5', () => ({ pointer: 1n, stream: 0n }));
    const s = new Stream(Device.cpu());
    const a = x();
    expect(() => t.sendTensor(a, 1, s)).toThrow(/nccl\.sendTensor: 'to' is this rank \(1\)/);
    expect(() => t.sendTensor(a, 3, s)).toThrow(/'to' must be a rank in \[0, 2\], got 3/);
    expect(() => t.receiveTensor(a, 0.5, s)).toThrow(/nccl\.receiveTensor: 'from' must be a rank in \[0, 2\], got 0\.5/);
    expect(() => t.sendTensor(new Float32Array(4) as never, 2, s)).toThrow(/'x' must be a Tensor/);
    expect(() => t.sendTensor(a, 2, 'stream' as never)).toThrow(/'stream' must be a Stream/);
    const onGpu = new NcclTransport(b, 0, fakeHost(0, 2), fakeCuda, '2.21.5');
    expect(() => onGpu.sendTensor(a, 1, s)).toThrow(/nccl\.sendTensor: 'x' must be on cuda:0 \(this transport's device\), got cpu/);
    const gone = x();
    gone.dispose();
    expect(() => t.sendTensor(gone, 2, s)).toThrow(/'x' was disposed/);
    expect(b.send).not.toHaveBeenCalled();
    expect(b.recv).not.toHaveBeenCalled();
    a.dispose();
  });

  test("the main addon's rawHandles: CUDA tensors only, checked arguments", () => {
    const t = new NcclTransport(fakeBinding(), 0, fakeHost(0, 2), Device.cpu(), '2.21.5');
    const a = x();
    const s = new Stream(Device.cpu());
    // the default handle source is native.rawHandles, which refuses a CPU tensor
    expect(() => t.sendTensor(a, 1, s)).toThrow(/rawHandles: 'tensor' is on cpu: device handles exist for CUDA tensors only/);
    // the addon's errors come from Node's realm, not the test's: compare their names
    const nameOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(nameOf(() => native.rawHandles!(a.handle, s.handle))).toMatch(/^RangeError: rawHandles: 'tensor' is on cpu/);
    expect(nameOf(() => native.rawHandles!({} as never, s.handle))).toMatch(/^TypeError: rawHandles: 'tensor'/);
    expect(nameOf(() => native.rawHandles!(a.handle, a.handle as never))).toMatch(/^TypeError: rawHandles: 'stream'/);
    a.dispose();
  });

  test('host messages, the barrier, finalize and abort go through MPI; the communicator is closed first', async () => {
    const b = fakeBinding();
    const host = fakeHost(0, 2);
    const t = new NcclTransport(b, 4, host, Device.cpu(), '2.21.5');
    expect([t.rank, t.size]).toEqual([0, 2]);
    const labels = new Int32Array([1, 2]);
    await t.send(labels, 1, 2);
    expect(host.send).toHaveBeenCalledWith(labels, 1, 2);
    await t.receive(labels, 1, 5, 'labels');
    expect(host.receive).toHaveBeenCalledWith(labels, 1, 5, 'labels');
    await t.barrier();
    expect(host.barrier).toHaveBeenCalled();
    expect(t.asyncError()).toBeNull();
    t.finalize();
    expect(b.destroy).toHaveBeenCalledWith(4);
    expect(host.finalize).toHaveBeenCalled();
    expect(() => t.asyncError()).toThrow(/nccl\.asyncError: the transport was finalised or aborted/);
    const u = new NcclTransport(b, 6, host, Device.cpu(), '2.21.5');
    b.abort.mockImplementationOnce(() => {
      throw new Error('NCCL failed');
    });
    u.abort(3); // MPI's abort still runs when NCCL's fails
    expect(b.abort).toHaveBeenCalledWith(6);
    expect(host.abort).toHaveBeenCalledWith(3);
  });

  test('nccl() hands the unique id from rank 0 to the others over MPI, then joins the communicator', async () => {
    // The fake binding in place of the addon: rank 0 and rank 2 of 3, each with a fake MPI.
    const b = fakeBinding();
    b.uniqueId.mockReturnValue(Uint8Array.from({ length: 128 }, (_, i) => i));
    useNcclBindingForTests(b);
    try {
      const root = fakeHost(0, 3);
      const t0 = await nccl({ device: fakeCuda, mpi: root as Transport });
      expect(t0.version).toBe('2.21.5');
      expect(t0.timeout).toBe(60); // the join's limit and the watchdog's: the host's, else 60 s
      // the id to ranks 1 and 2, then the note that rank 0 joins, to each
      const sent = (root.send.mock.calls as unknown as [Int32Array, number, number][]).map(([data, to, tag]) => [
        tag === UNIQUE_ID_TAG ? Array.from(new Uint8Array(data.buffer)) : Array.from(data),
        to,
        tag,
      ]);
      const id = Array.from({ length: 128 }, (_, i) => i);
      expect(sent).toEqual([
        [id, 1, UNIQUE_ID_TAG],
        [id, 2, UNIQUE_ID_TAG],
        [[0], 1, JOIN_TAG],
        [[0], 2, JOIN_TAG],
      ]);
      expect(root.receive.mock.calls.map((c: unknown[]) => c.slice(1, 3))).toEqual([
        [1, JOIN_TAG],
        [2, JOIN_TAG],
      ]);
      expect(b.initRank).toHaveBeenLastCalledWith(Uint8Array.from(id), 3, 0, 0);
      const other = fakeHost(2, 3);
      other.receive.mockImplementation(async <T>(into: T, _from?: number, tag?: number) => {
        if (tag === UNIQUE_ID_TAG) new Uint8Array((into as unknown as Int32Array).buffer).set(Uint8Array.from(id));
        return into;
      });
      await nccl({ device: fakeCuda, mpi: other as Transport });
      expect(other.receive).toHaveBeenCalledWith(expect.any(Int32Array), 0, UNIQUE_ID_TAG, "NCCL's unique id");
      expect(b.initRank).toHaveBeenLastCalledWith(Uint8Array.from(id), 3, 2, 0);
      expect(b.uniqueId).toHaveBeenCalledTimes(1); // only rank 0 draws it
    } finally {
      useNcclBindingForTests(undefined);
    }
  });

  test('distribute() takes an NcclTransport as its transport (placement checked against its size)', () => {
    const t = new NcclTransport(fakeBinding(), 0, fakeHost(0, 2), Device.cpu(), '2.21.5');
    const network = decouple(mlp(4, [3], 2));
    const dist = distribute(network, { placement: [0, 1], transport: t, optimizer: () => new Adam({ lr: 1e-3 }), device: Device.cpu() });
    expect(dist.ownModules).toEqual([0]);
    expect(() => distribute(network, { placement: [0, 2], transport: t, optimizer: () => new Adam({ lr: 1e-3 }) })).toThrow(
      /'placement\[1\]' \(module 2\) must be a rank in \[0, 1\]/,
    );
    dist.dispose();
  });

  test('versionText reads both of NCCL version codes', () => {
    expect(versionText(22105)).toBe('2.21.5');
    expect(versionText(21803)).toBe('2.18.3');
    expect(versionText(2708)).toBe('2.7.8');
  });
});

/** One NCCL transfer as a rank issued it. */
interface Op {
  kind: 'send' | 'recv';
  peer: number;
  bytes: number;
}

/** A rank's NCCL calls, as groups of transfers (a transfer outside a group is an error). */
function recorder() {
  const b = fakeBinding();
  const groups: Op[][] = [];
  let open: Op[] | undefined;
  const transfer = (kind: 'send' | 'recv') => (_comm: number, _pointer: bigint, bytes: number, peer: number, stream: bigint) => {
    if (!open) throw new Error(`${kind} outside a group`);
    if (stream !== 7n) throw new Error(`${kind} on another stream than the trainer's`);
    open.push({ kind, peer, bytes });
  };
  b.send.mockImplementation(transfer('send'));
  b.recv.mockImplementation(transfer('recv'));
  b.groupStart.mockImplementation(() => {
    if (open) throw new Error('nested group');
    open = [];
  });
  b.groupEnd.mockImplementation(() => {
    groups.push(open!);
    open = undefined;
  });
  return { b, groups };
}

const text = (g: Op[]) => g.map((o) => (o.kind === 'send' ? `send ${o.bytes} to ${o.peer}` : `recv ${o.bytes} from ${o.peer}`)).join(', ');

/**
 * Each rank's groups when `fit` runs `steps` steps of mlp(6, [5, 7, 9], 3) cut into modules
 * (batches of 4 rows: h_1 is 80 bytes, h_2 112, h_3 144) on `size` ranks: every rank in turn
 * in this process, on the fake binding; the fake MPI answers the labels with zeros.
 */
async function groupsOf(size: number, placement: number[], decoupleOptions: object, steps: number): Promise<Op[][][]> {
  const hidden = [5, 7, 9].slice(0, placement.length - 1);
  const rows = 12;
  const data = new Dataset(
    'tiny',
    new Float32Array(rows * 6).map((_, k) => Math.sin(k)),
    new Int32Array(rows).map((_, k) => k % 3),
    6,
    3,
  );
  const all: Op[][][] = [];
  for (let rank = 0; rank < size; rank++) {
    const { b, groups } = recorder();
    const trainer: { stream?: Stream } = {}; // known once distribute() built the Trainer
    const handles = (_t: Tensor, s: Stream) => ({ pointer: 0x1000n, stream: s === trainer.stream ? 7n : 9n });
    const t = new NcclTransport(b, 0, echoHost(rank, size), Device.cpu(), '2.21.5', handles);
    const network = decouple(mlp(6, hidden, 3), { synthesizer: { hidden: [4] }, ...decoupleOptions });
    const dist = distribute(network, { placement, transport: t, optimizer: () => new Adam({ lr: 0.01 }), device: Device.cpu(), seed: 3 });
    trainer.stream = dist.trainer.stream;
    expect(dist.handOffs).toBe('nccl');
    await dist.fit(data, { steps, batchSize: 4, shuffle: false });
    dist.dispose();
    all.push(groups);
  }
  return all;
}

/**
 * The fake MPI of groupsOf: a receive gets what this rank last sent on the same tag (the
 * unlock's data check gathers the same digest from every rank), else zeros (the labels).
 */
function echoHost(rank: number, size: number) {
  const host = fakeHost(rank, size);
  const sent = new Map<number, Payload>();
  host.send.mockImplementation(async (data?: Payload, _to?: number, tag?: number) => void sent.set(tag!, data!.slice()));
  host.receive.mockImplementation(async <T>(into: T, _from?: number, tag?: number) => {
    const data = sent.get(tag!);
    const bytes = (a: Payload) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    if (data && data.byteLength === (into as unknown as Payload).byteLength) bytes(into as unknown as Payload).set(bytes(data));
    return into;
  });
  return host;
}

/**
 * NCCL's rendezvous on the ranks' sequences of groups: a rank's stream reaches its groups in
 * order; a transfer completes once its peer's stream is at the group with the matching one (the
 * k-th send from a to b matches the k-th receive on b from a); a group ends when all its
 * transfers completed. Returns undefined when every group ends, else where the ranks are stuck.
 */
function rendezvous(ranks: Op[][][]): string | undefined {
  const numbered = ranks.map((groups) => {
    const count = new Map<string, number>();
    return groups.map((g) =>
      g.map((op) => {
        const key = `${op.kind} ${op.peer}`;
        const n = count.get(key) ?? 0;
        count.set(key, n + 1);
        return { ...op, n, done: false };
      }),
    );
  });
  const at = ranks.map(() => 0);
  for (let moved = true; moved;) {
    moved = false;
    numbered.forEach((groups, r) => {
      if (at[r] >= groups.length) return;
      for (const op of groups[at[r]]) {
        if (op.done) continue;
        const peerGroup = numbered[op.peer][at[op.peer]] ?? [];
        const match = peerGroup.find((o) => !o.done && o.kind !== op.kind && o.peer === r && o.n === op.n);
        if (!match) continue;
        if (match.bytes !== op.bytes) throw new Error(`rank ${r} and rank ${op.peer} disagree on a transfer's bytes`);
        op.done = match.done = true;
        moved = true;
      }
    });
    numbered.forEach((groups, r) => {
      if (at[r] < groups.length && groups[at[r]].every((op) => op.done)) {
        at[r]++;
        moved = true;
      }
    });
  }
  const stuck = numbered.flatMap((groups, r) => (at[r] < groups.length ? [`rank ${r} at group ${at[r] + 1}: ${text(groups[at[r]])}`] : []));
  return stuck.length ? stuck.join('; ') : undefined;
}

describe("distribute() on the NCCL transport (fake binding): each rank's groups per step", () => {
  const x = (h: number, more = '') => `send ${h} to 1${more}`;

  test('lockstep, λ = 0: h_i up with the δ_i of the step before down, one group per cut; the last δ at the end', async () => {
    const [r0, r1, r2] = await groupsOf(3, [0, 1, 2], {}, 3);
    expect(r0.map(text)).toEqual([x(80), x(80, ', recv 80 from 1'), x(80, ', recv 80 from 1'), 'recv 80 from 1']);
    expect(r1.map(text)).toEqual([
      'recv 80 from 0',
      'send 112 to 2',
      'recv 80 from 0, send 80 to 0',
      'send 112 to 2, recv 112 from 2',
      'recv 80 from 0, send 80 to 0',
      'send 112 to 2, recv 112 from 2',
      'send 80 to 0, recv 112 from 2', // fit's end: the δ held back, one group
    ]);
    expect(r2.map(text)).toEqual(['recv 112 from 1', 'recv 112 from 1, send 112 to 1', 'recv 112 from 1, send 112 to 1', 'send 112 to 1']);
    expect(rendezvous([r0, r1, r2])).toBeUndefined();
  });

  test('λ > 0 (and warm-up steps): δ crosses within its step, in the backward order, then λ = 0 holds it back', async () => {
    const [, r1] = await groupsOf(3, [0, 1, 2], { lambda: 0.5 }, 2);
    const step = ['recv 80 from 0', 'send 112 to 2', 'recv 112 from 2', 'send 80 to 0'];
    expect(r1.map(text)).toEqual([...step, ...step]);
    const warm = await groupsOf(3, [0, 1, 2], { warmupSteps: 1 }, 3);
    expect(warm[1].map(text)).toEqual([
      ...step, // the warm-up step uses δ_2 (λ = 1)
      'recv 80 from 0',
      'send 112 to 2',
      'recv 80 from 0, send 80 to 0',
      'send 112 to 2, recv 112 from 2',
      'send 80 to 0, recv 112 from 2',
    ]);
    expect(rendezvous(warm)).toBeUndefined();
  });

  test('two modules per rank (placement 0,1,0,1), λ > 0: the δ receives go in the backward order (δ_3 before δ_1)', async () => {
    const ranks = await groupsOf(2, [0, 1, 0, 1], { lambda: 0.5 }, 2);
    const r0 = ['send 80 to 1', 'recv 112 from 1', 'send 144 to 1', 'recv 144 from 1', 'send 112 to 1', 'recv 80 from 1'];
    expect(ranks[0].map(text)).toEqual([...r0, ...r0]);
    expect(rendezvous(ranks)).toBeUndefined();
    // The same receives asked for in module order (δ_1 before δ_3, as the MPI hand-offs may, with
    // tags): NCCL pairs a rank pair's transfers in order, so δ_1's receive would meet δ_3's send.
    const early = ranks.map((groups) => [...groups]);
    [early[0][3], early[0][5]] = [early[0][5], early[0][3]];
    expect(() => rendezvous(early)).toThrow(/rank 0 and rank 1 disagree on a transfer's bytes/);
  });

  test('the pipelined schedule (depth 2) and stochastic updates: the same exchanges; a δ only when its module updated', async () => {
    const lockstep = await groupsOf(3, [0, 1, 2], {}, 4);
    const pipelined = await groupsOf(3, [0, 1, 2], { schedule: { kind: 'pipelined', depth: 2 } }, 4);
    expect(pipelined.map((r) => r.map(text))).toEqual(lockstep.map((r) => r.map(text)));
    const stochastic = await groupsOf(3, [0, 1, 2, 0], { schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 8);
    expect(rendezvous(stochastic)).toBeUndefined();
    // Some modules skipped their update: fewer δ than steps cross each cut, as many sent as received.
    const count = (r: number, kind: 'send' | 'recv', peer: number, bytes: number) =>
      stochastic[r].flat().filter((o) => o.kind === kind && o.peer === peer && o.bytes === bytes).length;
    expect(count(1, 'recv', 2, 112)).toBeLessThan(8);
    expect(count(1, 'recv', 2, 112)).toBe(count(2, 'send', 1, 112));
    expect(count(2, 'recv', 0, 144) + count(0, 'recv', 1, 80)).toBeLessThan(16);
    expect(count(0, 'send', 2, 144)).toBe(count(2, 'recv', 0, 144));
  });

  test('the rendezvous check finds a deadlock: two ranks that each send before they receive, ungrouped', () => {
    const send = (peer: number): Op => ({ kind: 'send', peer, bytes: 4 });
    const recv = (peer: number): Op => ({ kind: 'recv', peer, bytes: 4 });
    expect(
      rendezvous([
        [[send(1)], [recv(1)]],
        [[send(0)], [recv(0)]],
      ]),
    ).toBe('rank 0 at group 1: send 4 to 1; rank 1 at group 1: send 4 to 0');
    expect(rendezvous([[[send(1), recv(1)]], [[send(0), recv(0)]]])).toBeUndefined(); // grouped
    expect(() => rendezvous([[[send(1)]], [[{ kind: 'recv', peer: 0, bytes: 8 }]]])).toThrow(/disagree on a transfer's bytes/);
  });
});

describe("the complete unlock on the NCCL transport (fake binding): each rank's one group per step", () => {
  const unlock = { unlock: { hidden: [4] } };
  const repeat = (times: number, g: string) => Array.from({ length: times }, () => g);

  test('3 ranks: every step ends with one group per rank, its cuts ascending, h before δ; nothing is left for the end', async () => {
    const [r0, r1, r2] = await groupsOf(3, [0, 1, 2], unlock, 3);
    expect(r0.map(text)).toEqual(repeat(3, 'send 80 to 1, recv 80 from 1'));
    expect(r1.map(text)).toEqual(repeat(3, 'recv 80 from 0, send 80 to 0, send 112 to 2, recv 112 from 2'));
    expect(r2.map(text)).toEqual(repeat(3, 'recv 112 from 1, send 112 to 1'));
    expect(rendezvous([r0, r1, r2])).toBeUndefined();
  });

  test('modules 1 and 3 on rank 0: two cuts to one peer, in the same order on both ranks', async () => {
    const ranks = await groupsOf(2, [0, 1, 0], unlock, 2);
    expect(ranks[0].map(text)).toEqual(repeat(2, 'send 80 to 1, recv 80 from 1, recv 112 from 1, send 112 to 1'));
    expect(ranks[1].map(text)).toEqual(repeat(2, 'recv 80 from 0, send 80 to 0, send 112 to 0, recv 112 from 0'));
    expect(rendezvous(ranks)).toBeUndefined();
    // Rank 0 issuing its cuts the other way round: its first send to rank 1 (δ_2, 112 bytes)
    // would meet rank 1's first receive from it (h_1, 80 bytes).
    const swapped = ranks.map((groups, r) => (r === 0 ? groups.map((g) => [...g.slice(2), ...g.slice(0, 2)]) : groups));
    expect(() => rendezvous(swapped)).toThrow(/rank 0 and rank 1 disagree on a transfer's bytes/);
  });

  test('the same transfers not grouped (each rank its sends, then its receives) deadlock, and the check says where', async () => {
    const ranks = await groupsOf(3, [0, 1, 2], unlock, 2);
    const split = ranks.map((groups) =>
      groups.flatMap((g) => [g.filter((o) => o.kind === 'send'), g.filter((o) => o.kind === 'recv')].filter((part) => part.length > 0)),
    );
    expect(rendezvous(split)).toBe(
      'rank 0 at group 1: send 80 to 1; rank 1 at group 1: send 80 to 0, send 112 to 2; rank 2 at group 1: send 112 to 1',
    );
  });

  test('stochastic updates (pUpdate 0.5), 4 modules with 1 and 4 on rank 0: one group per step, a δ only when its module updated', async () => {
    const ranks = await groupsOf(3, [0, 1, 2, 0], { ...unlock, schedule: { kind: 'lockstep', pUpdate: 0.5 } }, 8);
    for (const groups of ranks) expect(groups).toHaveLength(8); // h crosses every cut in every step
    expect(rendezvous(ranks)).toBeUndefined();
    const count = (r: number, kind: 'send' | 'recv', peer: number, bytes: number) =>
      ranks[r].flat().filter((o) => o.kind === kind && o.peer === peer && o.bytes === bytes).length;
    expect([count(0, 'send', 1, 80), count(1, 'recv', 0, 80)]).toEqual([8, 8]); // h_1, every step
    expect([count(2, 'send', 0, 144), count(0, 'recv', 2, 144)]).toEqual([8, 8]); // h_3, every step
    expect(count(1, 'send', 0, 80)).toBe(count(0, 'recv', 1, 80)); // δ_1, when module 2 updated
    expect(count(1, 'send', 0, 80)).toBeGreaterThan(0);
    expect(count(1, 'send', 0, 80)).toBeLessThan(8);
    expect(count(0, 'send', 2, 144)).toBe(count(2, 'recv', 0, 144));
    expect(count(0, 'send', 2, 144)).toBeLessThan(8); // δ_3, when module 4 updated
  });
});

describe('NCCL watchdog and the choice of transport', () => {
  test('a wait that lasts past the timeout aborts the communicator (ncclCommAbort) and rejects, naming it', async () => {
    const b = fakeBinding();
    const t = new NcclTransport(b, 3, fakeHost(1, 2), Device.cpu(), '2.21.5');
    expect(t.timeout).toBe(60); // the host's, else 60 s
    t.timeout = 0.3;
    await expect(t.watch(Promise.resolve(5), 'nothing')).resolves.toBe(5);
    expect(b.abort).not.toHaveBeenCalled();
    await expect(t.watch(new Promise(() => undefined), 'the end of step 4')).rejects.toMatchObject({
      code: 'ERR_SYNTHGRAD_TRAINING',
      message: expect.stringMatching(
        /^rank 1: waited 0\.3 s for the end of step 4 \(NCCL\): a rank died, hangs or is far behind \(SYNTHGRAD_MPI_TIMEOUT, or nccl\(\)'s 'timeout', sets the limit in seconds\); the NCCL communicator was aborted$/,
      ),
    });
    expect(b.abort).toHaveBeenCalledWith(3);
    expect(() => t.group(() => undefined)).toThrow(/nccl\.group: the transport was finalised or aborted/);
  });

  test("NCCL's asynchronous error aborts the communicator at once", async () => {
    const b = fakeBinding();
    const host = { ...fakeHost(0, 2), timeout: 30 };
    const t = new NcclTransport(b, 2, host, Device.cpu(), '2.21.5');
    expect(t.timeout).toBe(30);
    b.asyncError.mockReturnValueOnce(null).mockReturnValue('remote process exited or there was a network error (ncclResult_t 6)');
    const started = Date.now();
    await expect(t.watch(new Promise(() => undefined), 'the loss of step 2')).rejects.toThrow(
      /^rank 0: NCCL reported an error \(remote process exited .*\) while waiting for the loss of step 2; the NCCL communicator was aborted$/,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(b.abort).toHaveBeenCalledWith(2);
  });

  describe("nccl()'s join (ncclCommInitRank) is bounded by 'timeout', naming the ranks that did not join", () => {
    /** K ranks over the in-memory MPI; `absent` ranks never call nccl(); the fake initRank resolves once every rank called it (after `stuck` ms: never when undefined and not all came). */
    async function joinOf(size: number, absent: number[], initRank?: NcclBinding['initRank']) {
      const called = new Set<number>();
      let everyone: () => void = () => undefined;
      const all = new Promise<void>((resolve) => (everyone = resolve));
      const b: NcclBinding = {
        ...fakeBinding(),
        initRank:
          initRank ??
          (async (_id, ranks, rank) => {
            called.add(rank);
            if (called.size === ranks) everyone();
            await all;
            return 10 + rank;
          }),
      };
      useNcclBindingForTests(b);
      try {
        const hosts = localTransports(size, 2000);
        const joins = hosts.filter((h) => !absent.includes(h.rank)).map((mpi) => nccl({ device: fakeCuda, mpi, timeout: 0.4 }));
        return { b, results: await Promise.allSettled(joins) };
      } finally {
        useNcclBindingForTests(undefined);
      }
    }
    const reason = (r: PromiseSettledResult<NcclTransport>) => (r.status === 'rejected' ? (r.reason as Error).message : 'joined');

    test('every rank joins: each gets its communicator, and the timeout for its waits', async () => {
      const { results } = await joinOf(3, []);
      const joined = results.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
      expect(joined.map((t) => t?.rank)).toEqual([0, 1, 2]);
      expect(joined.map((t) => t?.timeout)).toEqual([0.4, 0.4, 0.4]);
    });

    test('a rank that never calls nccl(): every other rank rejects after the timeout, naming it', async () => {
      const { results } = await joinOf(3, [2]);
      expect(results.map(reason)).toEqual(
        [0, 1].map((r) =>
          expect.stringMatching(
            new RegExp(
              `^nccl\\(\\): rank ${r}: the NCCL communicator's set-up did not complete within 0\\.4 s: rank 2 did not join \\(every rank calls nccl\\(\\), or connect\\(\\), at the same point\\); the lesser of nccl\\(\\)'s 'timeout' and the MPI transport's \\(SYNTHGRAD_MPI_TIMEOUT\\) sets the limit in seconds; end the job with abort\\(\\)$`,
            ),
          ),
        ),
      );
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_SYNTHGRAD_NATIVE' });
      const two = await joinOf(4, [1, 3]);
      expect(two.results.map(reason)).toEqual([0, 2].map(() => expect.stringMatching(/: ranks 1, 3 did not join /)));
      // Rank 0 hands out the unique id: without it the others name rank 0.
      const noRoot = await joinOf(3, [0]);
      expect(noRoot.results.map(reason)).toEqual(
        [1, 2].map((r) =>
          expect.stringMatching(new RegExp(`^nccl\\(\\): rank ${r}: .*: rank 0 did not join \\(rank 0 hands out NCCL's unique id\\)`)),
        ),
      );
    });

    test("a 'timeout' longer than the MPI transport's: the join is bounded by the MPI one, whose receives carry the notes", async () => {
      useNcclBindingForTests(fakeBinding());
      try {
        // The MPI receives give up after 0.3 s; rank 2 comes after 0.6 s, within nccl()'s 2 s.
        const hosts = localTransports(3, 300).map((h) => Object.assign(h, { timeout: 0.3 }));
        const early = hosts.slice(0, 2).map((mpi) => nccl({ device: fakeCuda, mpi, timeout: 2 }));
        const late = new Promise((resolve) => setTimeout(resolve, 600)).then(() => nccl({ device: fakeCuda, mpi: hosts[2], timeout: 2 }));
        const results = await Promise.allSettled(early);
        await late.catch(() => undefined);
        expect(results.map(reason)).toEqual(
          [0, 1].map((r) =>
            expect.stringMatching(
              new RegExp(
                `^nccl\\(\\): rank ${r}: the NCCL communicator's set-up did not complete within 0\\.3 s: rank 2 did not join .*; ` +
                  "the lesser of nccl\\(\\)'s 'timeout' and the MPI transport's \\(SYNTHGRAD_MPI_TIMEOUT\\) sets the limit in seconds",
              ),
            ),
          ),
        );
      } finally {
        useNcclBindingForTests(undefined);
      }
    });

    test('every rank came but NCCL does not connect them: said so; a join that completes late is aborted', async () => {
      const { b, results } = await joinOf(
        2,
        [],
        (_id, _ranks, rank) => new Promise((resolve) => setTimeout(() => resolve(20 + rank), 900)),
      );
      expect(results.map(reason)).toEqual(
        [0, 1].map(() =>
          expect.stringMatching(/within 0\.4 s: every rank reached ncclCommInitRank, so NCCL itself could not connect them/),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(b.abort).toHaveBeenCalledWith(20);
      expect(b.abort).toHaveBeenCalledWith(21);
    });
  });

  test('distribute: the NCCL transport of another device than the model is refused, naming both options', () => {
    const t = new NcclTransport(fakeBinding(), 0, fakeHost(0, 2), fakeCuda, '2.21.5');
    const network = decouple(mlp(4, [3], 2));
    expect(() =>
      distribute(network, { placement: [0, 1], transport: t, optimizer: () => new Adam({ lr: 1e-3 }), device: Device.cpu() }),
    ).toThrow(
      /^distribute: 'transport' is NCCL's on cuda:0 \(it moves that device's buffers\), but the model is on cpu \('device'\): train on cuda:0, or use transport mpi\(\) \(host buffers\)$/,
    );
    const host = distribute(network, {
      placement: [0, 1],
      transport: fakeHost(0, 2),
      optimizer: () => new Adam({ lr: 1e-3 }),
      device: Device.cpu(),
    });
    expect(host.handOffs).toBe('mpi');
    host.dispose();
  });

  test("connect(): 'nccl' for a CPU model, an unknown name, bad options: errors naming the option", async () => {
    await expect(connect({ device: Device.cpu(), transport: 'nccl' })).rejects.toMatchObject({
      name: 'RangeError',
      message:
        "connect: 'transport' is 'nccl', which moves GPU buffers, but 'device' is cpu: use transport 'mpi' (host buffers) or 'auto' for a model on the CPU",
    });
    await expect(connect({ device: Device.cpu(), transport: 'gloo' as never })).rejects.toThrow(
      /^connect: 'transport' must be 'auto', 'nccl' or 'mpi', got /,
    );
    await expect(connect({ device: 'cuda:0' as never })).rejects.toThrow(/^connect: 'device' must be a Device/);
    await expect(connect({ device: Device.cpu(), transprt: 'mpi' } as never)).rejects.toThrow(/transprt/);
  });

  test("connect(): 'nccl' where the NCCL transport cannot load says what is missing, before MPI starts", async () => {
    process.env.SYNTHGRAD_NCCL_ADDON = path.join(os.tmpdir(), 'synthgrad-no-such-nccl-addon.node');
    useNcclBindingForTests(undefined);
    try {
      await expect(connect({ device: fakeCuda, transport: 'nccl' })).rejects.toMatchObject({
        code: 'ERR_SYNTHGRAD_NATIVE',
        message: expect.stringMatching(
          /^connect: 'transport' is 'nccl', but the NCCL transport is not built \(no .*synthgrad-no-such-nccl-addon\.node\).*; transport 'auto' falls back to MPI$/,
        ),
      });
    } finally {
      delete process.env.SYNTHGRAD_NCCL_ADDON;
      useNcclBindingForTests(undefined);
    }
  });
});

/** Why the stand-in's mpirun runs cannot run here, or undefined. */
function mpiMissing(): string | undefined {
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) return 'mpirun is not installed';
  if (!fs.existsSync(mpiAddonPath())) return `the MPI addon ${mpiAddonPath()} is not built`;
  if (!fs.existsSync(path.join(__dirname, '..', 'dist', 'ts', 'index.js'))) return "dist/ts is missing (run 'npx tsc -p tsconfig.json')";
  return undefined;
}
const noMpi = mpiMissing();
if (noMpi) console.log(`test/distributed-nccl.test.ts: skipping the stand-in's mpirun runs: ${noMpi}`);

(noMpi ? describe.skip : describe)('distribute() through the NCCL hand-offs, on a CPU stand-in binding under mpirun', () => {
  jest.setTimeout(300_000);
  const fixture = path.join(__dirname, 'fixtures', 'distributed-run.js');

  function run(mode: 'single' | 'nccl', ranks: number, dir: string, config: object, env: Record<string, string> = {}) {
    const command = mode === 'single' ? process.execPath : 'mpirun';
    const args = [fixture, mode, dir, JSON.stringify(config)];
    const r = spawnSync(
      command,
      mode === 'single' ? args : ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, ...args],
      { encoding: 'utf8', timeout: 150_000, env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1', ...env } },
    );
    return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
  }

  /** The run over `ranks` ranks through the NCCL code path ends with every module's bytes as on one process. */
  function expectSame(ranks: number, config: { placement: number[]; hidden?: number[]; steps: number; decouple?: object }): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-nccl-standin-'));
    try {
      const one = run('single', 1, dir, config);
      if (one.status !== 0) throw new Error(`the one-process run failed:\n${one.output}`);
      const r = run('nccl', ranks, dir, config);
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      for (let i = 0; i < config.placement.length; i++) {
        const a = fs.readFileSync(path.join(dir, `single-module${i}.bin`));
        const b = fs.readFileSync(path.join(dir, `nccl-module${i}.bin`));
        expect(b.length).toBeGreaterThan(0);
        if (!a.equals(b)) throw new Error(`module ${i + 1} differs from the one-process run (${JSON.stringify(config)})`);
      }
      // every step's loss, to the last bit (toEqual on numbers is Object.is)
      const losses = (mode: string) => JSON.parse(fs.readFileSync(path.join(dir, `${mode}-losses.json`), 'utf8')) as number[];
      expect(losses('nccl')).toHaveLength(config.steps);
      expect(losses('nccl')).toEqual(losses('single'));
      for (let rank = 0; rank < ranks; rank++)
        expect(r.output).toMatch(new RegExp(`rank ${rank}: ${config.steps} steps, .*hand-offs nccl, stand-in \\d+ groups`));
      return r.output;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test('lockstep (λ = 0) on 3 ranks, and λ > 0 with warm-up on 2 (modules 1 and 3 on rank 0): bit for bit', () => {
    const out = expectSame(3, { placement: [0, 1, 2], steps: 5 });
    // rank 1: per step one group per cut (10), and the δ held back at the end (1)
    expect(out).toMatch(/rank 1: 5 steps, .*stand-in 11 groups, 10 sends, 10 receives/);
    expectSame(2, {
      placement: [0, 1, 0],
      steps: 6,
      decouple: { synthesizer: { hidden: [8], conditioned: true }, lambda: 0.5, warmupSteps: 2 },
    });
  });

  test('two modules per rank (0,1,0,1) with λ > 0, and with warm-up then λ = 0 and stochastic updates: bit for bit', () => {
    expectSame(2, { placement: [0, 1, 0, 1], hidden: [16, 16, 16], steps: 7, decouple: { lambda: 0.5 } });
    expectSame(2, {
      placement: [0, 1, 0, 1],
      hidden: [16, 16, 16],
      steps: 7,
      decouple: { warmupSteps: 3, schedule: { kind: 'lockstep', pUpdate: 0.6 } },
    });
  });

  test('the pipelined schedule (depth 2 on 3 ranks; depth 3 with placement 1,0,2,0): bit for bit', () => {
    expectSame(3, { placement: [0, 1, 2], steps: 8, decouple: { schedule: { kind: 'pipelined', depth: 2 } } });
    expectSame(3, { placement: [1, 0, 2, 0], hidden: [16, 16, 16], steps: 7, decouple: { schedule: { kind: 'pipelined', depth: 3 } } });
  });

  test('checkpoints (the δ held back are exchanged before each save), resumed: as the uninterrupted one-process run', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-nccl-standin-'));
    try {
      const checkpoint = { dir: path.join(dir, 'checkpoints'), every: 2 };
      let r = run('nccl', 3, dir, { placement: [0, 1, 2], steps: 5, checkpoint });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      r = run('nccl', 3, dir, { placement: [0, 1, 2], steps: 8, checkpoint });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      expect(r.output).toMatch(/rank 1: 8 steps, .*resumed from step 5, hand-offs nccl/);
      const one = run('single', 1, dir, { steps: 8 });
      if (one.status !== 0) throw new Error(one.output);
      for (let i = 0; i < 3; i++)
        if (!fs.readFileSync(path.join(dir, `single-module${i}.bin`)).equals(fs.readFileSync(path.join(dir, `nccl-module${i}.bin`))))
          throw new Error(`module ${i + 1} differs`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const unlock = { unlock: { hidden: [10] } };

  test('the complete unlock on 3 ranks, on 2 with modules 1 and 3 on rank 0 (cDNI), with pUpdate 0.5: bit for bit, losses too', () => {
    const out = expectSame(3, { placement: [0, 1, 2], steps: 6, decouple: unlock });
    // one group per rank and step (rank 1: h_1 and δ_1 with rank 0, h_2 and δ_2 with rank 2), none at the end
    expect(out).toMatch(/rank 0: 6 steps, .*stand-in 6 groups, 6 sends, 6 receives/);
    expect(out).toMatch(/rank 1: 6 steps, .*stand-in 6 groups, 12 sends, 12 receives/);
    expectSame(2, { placement: [0, 1, 0], steps: 7, decouple: { ...unlock, synthesizer: { hidden: [8], conditioned: true } } });
    expectSame(3, { placement: [0, 1, 2], steps: 8, decouple: { ...unlock, schedule: { kind: 'lockstep', pUpdate: 0.5 } } });
  });

  test('the complete unlock saved every 2 steps and resumed from the per-rank checkpoints: as the uninterrupted one-process run', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-nccl-standin-'));
    try {
      const checkpoint = { dir: path.join(dir, 'checkpoints'), every: 2 };
      const config = { placement: [0, 1, 0], decouple: { ...unlock, schedule: { kind: 'lockstep', pUpdate: 0.5 } }, checkpoint };
      let r = run('nccl', 2, dir, { ...config, steps: 5 });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      r = run('nccl', 2, dir, { ...config, steps: 9 });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      expect(r.output).toMatch(/rank 1: 9 steps, .*resumed from step 5, hand-offs nccl/);
      const one = run('single', 1, dir, { steps: 9, decouple: config.decouple });
      if (one.status !== 0) throw new Error(one.output);
      for (let i = 0; i < 3; i++)
        if (!fs.readFileSync(path.join(dir, `single-module${i}.bin`)).equals(fs.readFileSync(path.join(dir, `nccl-module${i}.bin`))))
          throw new Error(`module ${i + 1} differs`);
      // the resumed run's losses are the last 4 of the uninterrupted run's
      const losses = (mode: string) => JSON.parse(fs.readFileSync(path.join(dir, `${mode}-losses.json`), 'utf8')) as number[];
      expect(losses('nccl')).toEqual(losses('single').slice(5));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("nccl()'s join on the stand-in: every rank joins; a rank that never calls nccl() is named by the others", () => {
    const joinRun = (absent: number[]) =>
      spawnSync(
        'mpirun',
        [
          '--allow-run-as-root',
          '--oversubscribe',
          '-np',
          '3',
          process.execPath,
          path.join(__dirname, 'fixtures', 'nccl-join.js'),
          JSON.stringify(absent),
        ],
        {
          encoding: 'utf8',
          timeout: 120_000,
          env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1', SYNTHGRAD_MPI_TIMEOUT: '30' },
        },
      );
    const all = joinRun([]);
    expect(all.status).toBe(0);
    for (const rank of [0, 1, 2]) expect(all.stdout).toContain(`rank ${rank}: joined`);
    const started = Date.now();
    const one = joinRun([1]);
    expect(one.status).not.toBe(0);
    for (const rank of [0, 2])
      expect(one.stdout).toMatch(
        new RegExp(
          `rank ${rank} failed: nccl\\(\\): rank ${rank}: the NCCL communicator's set-up did not complete within 2 s: rank 1 did not join`,
        ),
      );
    expect(Date.now() - started).toBeLessThan(25_000); // the join's 2 s, not MPI's 30
  });

  test("connect({ transport: 'auto' }) on a GPU device: NCCL only when every rank loads it, MPI otherwise", () => {
    const fake = built ? buildFakeNccl() : undefined;
    if (!fake) return console.warn('distributed-nccl: no NCCL addon or C compiler: the connect() run skips');
    const missing = path.join(os.tmpdir(), 'synthgrad-no-such-dir', 'libnccl.so.2');
    const connectRun = (...args: string[]) => {
      const r = spawnSync(
        'mpirun',
        [
          '--allow-run-as-root',
          '--oversubscribe',
          '-np',
          '2',
          process.execPath,
          path.join(__dirname, 'fixtures', 'connect-run.js'),
          ...args,
        ],
        { encoding: 'utf8', timeout: 120_000, env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1' } },
      );
      return [0, 1].map((rank) => r.stdout.split('\n').find((l) => l.startsWith(`rank ${rank}`)));
    };
    // NCCL loads on rank 0 only: both ranks take MPI (rank 0 must not wait in NCCL's set-up).
    expect(connectRun('auto', fake, missing)).toEqual(['rank 0: MpiTransport', 'rank 1: MpiTransport']);
    // On both: both go to NCCL's set-up together (the unique id crosses over MPI), which then
    // fails here for want of a CUDA driver (where there is one, for want of a GPU 0 on each).
    for (const line of connectRun('auto', fake, fake))
      expect(line).toMatch(/^rank [01] failed: connect: 'transport' is 'auto', but nccl\.initRank: /);
    expect(connectRun('mpi', fake, fake)).toEqual(['rank 0: MpiTransport', 'rank 1: MpiTransport']);
  });

  test("a rank that hangs: the others' watchdog aborts the communicator, names the wait, and the job ends", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-nccl-standin-'));
    try {
      // The watchdog (2 s) fires before the stand-in's own MPI receives time out (30 s).
      const config = { placement: [0, 1, 2], steps: 50, stopRank: 1, stopAfter: 2, stop: 'hang', ncclTimeout: 2 };
      const started = Date.now();
      const r = run('nccl', 3, dir, config, { SYNTHGRAD_MPI_TIMEOUT: '30' });
      expect(r.status).not.toBe(0);
      expect(r.status).not.toBeNull();
      expect(r.output).toMatch(
        /rank [02] failed: rank [02]: waited 2 s for (h|δ)_\d (to|from) rank 1.* \(NCCL\): a rank died, hangs or is far behind .*; the NCCL communicator was aborted \(communicator aborted\)/,
      );
      expect(Date.now() - started).toBeLessThan(25_000);
      // With the complete unlock the wait that fires is a step's exchange, named with what it holds.
      const unlocked = run('nccl', 3, dir, { ...config, decouple: unlock }, { SYNTHGRAD_MPI_TIMEOUT: '30' });
      expect(unlocked.status).not.toBe(0);
      expect(unlocked.output).toMatch(
        /rank ([02]) failed: rank \1: waited 2 s for (h_1 to rank 1, δ_1 from rank 1|h_2 from rank 1, δ_2 to rank 1) of step 3 \(the complete unlock's exchange\) \(NCCL\): a rank died/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
