// The NCCL transport (ts/distributed/nccl.ts, native/nccl/): what can run without a GPU. The
// errors when the addon or libnccl.so.2 is absent, the argument checks of nccl() and of the
// addon, the addon's loading of a library through dlopen/dlsym (a fake libnccl built here with
// the C compiler, when there is one), and the calls the transport makes, against a fake
// binding. The GPU path (a real communicator, ncclSend/ncclRecv on a stream) is not run here.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, Stream, Tensor, decouple, distribute, mlp, native } from '../ts';
import {
  NcclBinding,
  NcclTransport,
  UNIQUE_ID_TAG,
  nccl,
  ncclAddonPath,
  ncclAvailable,
  useNcclBindingForTests,
  versionText,
} from '../ts/distributed/nccl';
import type { Transport } from '../ts/distributed/mpi';

const built = fs.existsSync(ncclAddonPath());
const withAddon = built ? test : test.skip;
if (!built) console.warn(`distributed-nccl: ${ncclAddonPath()} is not built: the addon's tests skip (npm run build builds it)`);

function fakeHost(rank = 0, size = 2) {
  return {
    rank,
    size,
    send: jest.fn(async () => undefined),
    receive: jest.fn(async <T>(into: T) => into),
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
      expect(root.send).toHaveBeenCalledTimes(2);
      const sent = (root.send.mock.calls as unknown as [Int32Array, number, number][]).map(([data, to, tag]) => [
        Array.from(new Uint8Array(data.buffer)),
        to,
        tag,
      ]);
      const id = Array.from({ length: 128 }, (_, i) => i);
      expect(sent).toEqual([
        [id, 1, UNIQUE_ID_TAG],
        [id, 2, UNIQUE_ID_TAG],
      ]);
      expect(b.initRank).toHaveBeenLastCalledWith(Uint8Array.from(id), 3, 0, 0);
      const other = fakeHost(2, 3);
      other.receive.mockImplementation(async <T>(into: T) => {
        new Uint8Array((into as unknown as Int32Array).buffer).set(Uint8Array.from(id));
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
