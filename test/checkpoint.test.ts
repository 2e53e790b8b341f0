// Checkpoints: a run stopped and resumed from its checkpoint continues bit for bit as if it had
// never stopped (backprop, decoupled with stochastic updates on several streams, graph replay,
// a run stopped by an AbortSignal, a finished run extended); save/load round-trips a trained
// model; a file that does not fit is a clear error; files are replaced atomically and durably
// (temporary file, fsync, rename, fsync of the directory), never over a FIFO, link or directory;
// a damaged file (any byte flipped, bytes appended or cut, non-finite weights) is refused.
// Every file these tests make lies in a directory made for them with mkdtemp.
import { Adam, Dataset, Device, Parameter, Random, SGD, Tensor, Trainer, decouple, mlp, native, learningRateSchedules } from '../ts';
import type { DecoupleOptions, FitOptions } from '../ts';
import { readCheckpointConfig } from '../ts/train/position';
import { readCheckpoint } from '../ts/train/checkpoint';
import { execFileSync, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-ckpt-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// 300 rows in batches of 64: four full batches and a 44-row tail per epoch, so runs cross
// epoch boundaries (and reshuffles) and stop in the middle of epochs.
function data(rows = 300): Dataset {
  const rng = new Random(8);
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 10));
  return new Dataset('random', rng.uniformArray(rows * 12, 0, 1), labels, 12, 10);
}

function bits(arrays: Float32Array[]): Buffer {
  return Buffer.concat(arrays.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)));
}

function makeTrainer(dni?: DecoupleOptions) {
  const model = mlp(12, [16, 16, 16], 10);
  const net = dni ? decouple(model, dni) : model;
  const lr = learningRateSchedules.stepDecay(3e-3, [12], 0.1); // decays between the stop and the end
  const optimizer = () => (dni ? new Adam({ lr }) : new SGD({ lr, momentum: 0.9 }));
  return { trainer: new Trainer(net, { device: cpu, seed: 3, optimizer }), net };
}

/** Trains to `steps` (or options.epochs); returns the losses reported per step and every weight (and BN statistic). */
async function run(steps: number | undefined, options: Partial<FitOptions> = {}, dni?: DecoupleOptions) {
  const { trainer, net } = makeTrainer(dni);
  const losses: [number, number][] = [];
  const result = await trainer.fit(data(), {
    ...(steps === undefined ? {} : { steps }),
    batchSize: 64,
    ...options,
    onStep: (m) => {
      losses.push([m.step, m.loss]);
    },
  });
  const state = await Promise.all(net.stateTensors().map((t) => t.readFloat32(trainer.stream)));
  trainer.dispose();
  return { losses, state, result };
}

describe.each([
  ['backprop (SGD momentum)', undefined],
  [
    'DNI, stochastic updates, per-module streams',
    { schedule: { kind: 'lockstep', pUpdate: 0.6 }, synthesizer: { hidden: [8] } } as DecoupleOptions,
  ],
  ['cDNI with BP(λ) and warm-up', { lambda: 0.3, warmupSteps: 3, synthesizer: { conditioned: true } } as DecoupleOptions],
])('%s: a resumed run equals the uninterrupted one', (_name, dni) => {
  test('bit for bit, losses and weights', async () => {
    const whole = await run(27, {}, dni);
    const file = path.join(dir, `resume-${Math.random().toString(36).slice(2)}.ckpt`);
    // Stops at step 13 (mid-epoch; saves at 5, 10 and on the way out), then a new trainer resumes.
    const first = await run(13, { checkpoint: { path: file, every: 5 } }, dni);
    expect(first.result.resumedFrom).toBeUndefined();
    const second = await run(27, { checkpoint: { path: file, every: 5 } }, dni);
    expect(second.result.resumedFrom).toBe(13);
    expect(second.result.steps).toBe(27);
    expect(second.losses.map(([s]) => s)).toEqual(Array.from({ length: 14 }, (_, i) => 14 + i));
    expect([...first.losses, ...second.losses]).toEqual(whole.losses);
    expect(bits(second.state).equals(bits(whole.state))).toBe(true);
    // The weights really moved after the stop (the comparison above is not of untrained models).
    expect(bits(first.state).equals(bits(whole.state))).toBe(false);
  });
});

test('resuming at an epoch boundary, with graph replay, equals the uninterrupted run', async () => {
  const whole = await run(15, { graph: true });
  const file = path.join(dir, 'epoch-boundary.ckpt');
  await run(10, { graph: true, checkpoint: { path: file, every: 5 } }); // step 10 ends epoch 2
  const second = await run(15, { graph: true, checkpoint: { path: file, every: 5 } });
  expect(second.result.resumedFrom).toBe(10);
  expect(second.losses).toEqual(whole.losses.slice(10));
  expect(bits(second.state).equals(bits(whole.state))).toBe(true);
});

test('a finished run resumes with nothing to do', async () => {
  const file = path.join(dir, 'finished.ckpt');
  const first = await run(6, { checkpoint: { path: file, every: 100 } });
  const again = await run(6, { checkpoint: { path: file, every: 100 } });
  expect(again.result).toMatchObject({ steps: 6, resumedFrom: 6 });
  expect(again.losses).toEqual([]);
  expect(bits(again.state).equals(bits(first.state))).toBe(true);
});

test('save() and load() carry a trained model to a new trainer', async () => {
  const a = makeTrainer({ synthesizer: { conditioned: true } });
  await a.trainer.fit(data(), { steps: 9, batchSize: 64 });
  const file = path.join(dir, 'saved.ckpt');
  await a.trainer.save(file);
  const b = makeTrainer({ synthesizer: { conditioned: true } });
  const before = await b.trainer.evaluate(data());
  await b.trainer.load(file);
  const [ea, eb] = [await a.trainer.evaluate(data()), await b.trainer.evaluate(data())];
  expect(eb).toEqual(ea);
  expect(eb.loss).not.toBe(before.loss);
  // Optimizer state came too: one more step from each is the same step.
  await a.trainer.fit(data(), { steps: 1, batchSize: 64, shuffle: false });
  await b.trainer.fit(data(), { steps: 1, batchSize: 64, shuffle: false });
  const weights = async (t: Trainer) => bits(await Promise.all(t.model.parameters().map((p: Parameter) => p.value.readFloat32(t.stream))));
  expect((await weights(b.trainer)).equals(await weights(a.trainer))).toBe(true);
  // fit() cannot resume from a save() file: it has no position in the data.
  await expect(b.trainer.fit(data(), { steps: 2, checkpoint: { path: file, every: 1 } })).rejects.toThrow(
    /written by save\(\), not by fit\(\)/,
  );
  a.trainer.dispose();
  b.trainer.dispose();
});

describe('checkpoint errors', () => {
  test('a model of another shape or kind is refused, naming the difference', async () => {
    const file = path.join(dir, 'shape.ckpt');
    const { trainer } = makeTrainer();
    await trainer.save(file);
    const wider = new Trainer(mlp(12, [16, 20, 16], 10), { device: cpu, optimizer: new SGD({ lr: 1e-3, momentum: 0.9 }) });
    await expect(wider.load(file)).rejects.toThrow(
      /was saved from Sequential\(Linear\(12→16\).*this trainer trains Sequential\(Linear\(12→16\), BatchNorm1d\(16\), ReLU, Linear\(16→20\)/,
    );
    const adam = new Trainer(mlp(12, [16, 16, 16], 10), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    await expect(adam.load(file)).rejects.toThrow(
      /does not match this trainer: it holds \d+ tensors, the model and its training state have \d+/,
    );
    const { trainer: dni } = makeTrainer({});
    await expect(dni.load(file)).rejects.toThrow(/was saved from Sequential.*this trainer trains DNI\(4 modules/);
    for (const t of [trainer, wider, adam, dni]) t.dispose();
  });

  test('resuming with other data or batch size is refused', async () => {
    const file = path.join(dir, 'data.ckpt');
    await run(3, { checkpoint: { path: file, every: 10 } });
    const { trainer } = makeTrainer();
    await expect(trainer.fit(data(), { steps: 6, batchSize: 32, checkpoint: { path: file, every: 10 } })).rejects.toThrow(
      /data\.ckpt was saved with batchSize 64, this run has 32: resume with the same settings/,
    );
    await expect(trainer.fit(data(200), { steps: 6, batchSize: 64, checkpoint: { path: file, every: 10 } })).rejects.toThrow(
      /was saved with data rows 300, this run has 200/,
    );
    await expect(trainer.fit(data(), { steps: 6, batchSize: 64, shuffle: false, checkpoint: { path: file, every: 10 } })).rejects.toThrow(
      /was saved with shuffle true, this run has false/,
    );
    trainer.dispose();
  });

  test('bad files and options are clear errors; the pipelined schedule is refused before training', async () => {
    const { trainer } = makeTrainer();
    const junk = path.join(dir, 'junk.ckpt');
    fs.writeFileSync(junk, 'not a checkpoint at all');
    await expect(trainer.load(junk)).rejects.toThrow(/junk\.ckpt is not a valid synthgrad checkpoint \(wrong signature\)/);
    await expect(trainer.load(path.join(dir, 'missing.ckpt'))).rejects.toThrow(/checkpoint: cannot read .*missing\.ckpt/);
    await expect(trainer.load(3 as never)).rejects.toThrow(/load: 'path' must be a file path, got number 3/);
    await expect(trainer.fit(data(), { steps: 1, checkpoint: { path: junk } as never })).rejects.toThrow(
      /fit: 'checkpoint.every' must be a positive integer/,
    );
    await expect(trainer.fit(data(), { steps: 1, checkpoint: 'x' as never })).rejects.toThrow(
      /fit: 'checkpoint' must be \{ path: string, every: number \}/,
    );
    // A truncated file (a copy cut short) is refused too.
    const good = path.join(dir, 'good.ckpt');
    await trainer.save(good);
    const cut = path.join(dir, 'cut.ckpt');
    fs.writeFileSync(cut, fs.readFileSync(good).subarray(0, fs.statSync(good).size - 8));
    await expect(trainer.load(cut)).rejects.toThrow(
      /cut\.ckpt is not a valid synthgrad checkpoint \(truncated: the data ends at byte \d+, the file has \d+\)/,
    );
    trainer.dispose();

    const pipelined = makeTrainer({ schedule: { kind: 'pipelined', depth: 1 } });
    const file = path.join(dir, 'pipelined.ckpt');
    await expect(pipelined.trainer.fit(data(), { steps: 3, checkpoint: { path: file, every: 1 } })).rejects.toThrow(
      /the pipelined schedule carries work from one step into later ones and cannot be saved/,
    );
    expect(fs.existsSync(file)).toBe(false);
    pipelined.trainer.dispose();
  });
});

// ---- The file format, written out here independently of checkpoint.ts (its header comment is the spec).
const PREFIX = 44;
interface ParsedFile {
  header: { tensors: { name: string; dtype: string; shape: number[]; offset: number; sha256: string }[]; dataBytes: number; host: unknown };
  data: Buffer;
}

function parseFile(bytes: Buffer): ParsedFile {
  const headerLength = bytes.readUInt32LE(8);
  return { header: JSON.parse(bytes.toString('utf8', PREFIX, PREFIX + headerLength)), data: bytes.subarray(PREFIX + headerLength) };
}

/** A file with valid checksums for `header` and `data` (each tensor's checksum recomputed). */
function buildFile(header: ParsedFile['header'], data: Buffer): Buffer {
  for (const t of header.tensors) {
    const size = 4 * t.shape.reduce((a, b) => a * b, 1);
    t.sha256 = createHash('sha256')
      .update(data.subarray(t.offset, t.offset + size))
      .digest('hex');
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const start = Buffer.alloc(12);
  start.write('SGCKPT02', 0, 'latin1');
  start.writeUInt32LE(json.length, 8);
  return Buffer.concat([start, createHash('sha256').update(start).update(json).digest(), json, data]);
}

describe('damaged files are refused with the reason', () => {
  let good: Buffer;
  let n = 0;
  beforeAll(async () => {
    const { trainer } = makeTrainer();
    await trainer.fit(data(), { steps: 3, batchSize: 64 });
    const file = path.join(dir, 'intact.ckpt');
    await trainer.save(file);
    trainer.dispose();
    good = fs.readFileSync(file);
  });

  /** Loads `bytes` (written to a fresh file) into a new trainer. */
  async function load(bytes: Buffer): Promise<void> {
    const file = path.join(dir, `damaged-${n++}.ckpt`);
    fs.writeFileSync(file, bytes);
    const { trainer } = makeTrainer();
    try {
      await trainer.load(file);
    } finally {
      trainer.dispose();
      fs.rmSync(file);
    }
  }
  /** Reads `bytes` as a checkpoint file, without a trainer. */
  async function read(bytes: Buffer): Promise<void> {
    const file = path.join(dir, 'read.ckpt');
    fs.writeFileSync(file, bytes);
    await readCheckpoint(file);
  }
  const flipped = (at: number) => {
    const copy = Buffer.from(good);
    copy[at] ^= 0x10;
    return copy;
  };

  test('the intact file and one rebuilt from its parts load', async () => {
    await load(good);
    const { header, data: body } = parseFile(good);
    expect(buildFile(header, body).equals(good)).toBe(true); // the format is as documented
  });

  test('one flipped bit anywhere in the file is refused, saying which section', async () => {
    const { header } = parseFile(good);
    const dataStart = good.length - header.dataBytes;
    await expect(load(flipped(3))).rejects.toThrow(/not a valid synthgrad checkpoint \(wrong signature\)/);
    await expect(load(flipped(9))).rejects.toThrow(/\(truncated, or its header length was changed|\(the header fails its checksum/);
    await expect(load(flipped(20))).rejects.toThrow(/\(the header fails its checksum: it was changed or damaged\)/);
    await expect(load(flipped(PREFIX + 30))).rejects.toThrow(/\(the header fails its checksum/);
    expect(header.tensors.length).toBeGreaterThan(8);
    for (const t of header.tensors) {
      const size = 4 * t.shape.reduce((a, b) => a * b, 1);
      await expect(read(flipped(dataStart + t.offset + Math.floor(size / 2)))).rejects.toThrow(
        new RegExp(`\\(tensor '${t.name.replace('.', '\\.')}' fails its checksum: its data was changed or damaged\\)`),
      );
    }
    // And every 61st byte of the file, whatever lies there (read only: no trainer needed).
    let tried = 0;
    let refused = 0;
    for (let at = 0; at < good.length; at += 61, tried++)
      await read(flipped(at)).then(
        () => undefined,
        () => {
          refused++;
        },
      );
    expect(tried).toBeGreaterThan(100);
    expect(refused).toBe(tried);
  });

  test('an edited number in the header, an edited length, bytes appended or cut are refused', async () => {
    const text = good.toString('latin1');
    const at = text.indexOf('"dataBytes":') + '"dataBytes":'.length;
    const edited = Buffer.from(good);
    edited[at] = edited[at] === 0x39 ? 0x38 : edited[at] + 1; // the first digit, one more (same length)
    await expect(load(edited)).rejects.toThrow(/\(the header fails its checksum: it was changed or damaged\)/);
    const shape = text.indexOf('"shape":[16,12]');
    expect(shape).toBeGreaterThan(0);
    const reshaped = Buffer.from(good);
    reshaped.write('"shape":[12,16]', shape, 'latin1');
    await expect(load(reshaped)).rejects.toThrow(/\(the header fails its checksum/);
    const longer = Buffer.from(good);
    longer.writeUInt32LE(good.readUInt32LE(8) + 1, 8);
    await expect(load(longer)).rejects.toThrow(/\(the header fails its checksum/);
    await expect(load(Buffer.concat([good, Buffer.from([0])]))).rejects.toThrow(/\(1 byte after the end of its data\)/);
    await expect(load(Buffer.concat([good, good]))).rejects.toThrow(new RegExp(`\\(${good.length} bytes after the end of its data\\)`));
    await expect(load(good.subarray(0, good.length - 1))).rejects.toThrow(/\(truncated: the data ends at byte \d+, the file has \d+\)/);
    await expect(load(good.subarray(0, 30))).rejects.toThrow(/\(truncated: 30 bytes, fewer than the 44 of the fixed header\)/);
  });

  test('NaN or infinite weights are refused on load, even with valid checksums', async () => {
    const { header, data: body } = parseFile(good);
    const poisoned = (name: string, element: number, value: number) => {
      const copy = Buffer.from(body);
      copy.writeFloatLE(value, header.tensors.find((t) => t.name === name)!.offset + 4 * element);
      return buildFile(JSON.parse(JSON.stringify(header)), copy);
    };
    await expect(load(poisoned('model.0', 5, NaN))).rejects.toThrow(/\(tensor 'model\.0' holds NaN at element 5\)/);
    await expect(load(poisoned('model.4', 0, Infinity))).rejects.toThrow(/\(tensor 'model\.4' holds Infinity at element 0\)/);
    await expect(load(poisoned('optimizer.1', 3, -Infinity))).rejects.toThrow(/\(tensor 'optimizer\.1' holds -Infinity at element 3\)/);
  });

  test('a non-finite weight is never saved: the previous checkpoint stays', async () => {
    const { trainer } = makeTrainer();
    const file = path.join(dir, 'diverged.ckpt');
    await trainer.save(file);
    const before = fs.readFileSync(file);
    const weight = trainer.model.parameters()[2].value;
    const values = await weight.readFloat32(trainer.stream);
    values[2] = -Infinity;
    const poison = Tensor.fromArray(Array.from(values), weight.shape, { device: cpu });
    native.ops.copy(trainer.stream.handle, poison.handle, weight.handle);
    await trainer.stream.synchronize();
    poison.dispose();
    await expect(trainer.save(file)).rejects.toThrow(
      /checkpoint: not saved to .*diverged\.ckpt: tensor 'model\.\d+' holds -Infinity at element 2; the previous checkpoint is kept/,
    );
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    trainer.dispose();
  });

  test('format 1 (no checksums) and formats newer than 2 are refused, naming the format', async () => {
    const v1 = Buffer.concat([Buffer.from('SGCKPT01', 'latin1'), good.subarray(8)]);
    await expect(load(v1)).rejects.toThrow(
      /is checkpoint format 1, older than format 2 \(which adds checksums\) that this version reads; start the run again/,
    );
    const v3 = Buffer.concat([Buffer.from('SGCKPT03', 'latin1'), good.subarray(8)]);
    await expect(load(v3)).rejects.toThrow(/is checkpoint format 3, newer than format 2 that this version reads/);
  });
});

describe('checkpoints are written atomically and durably', () => {
  afterEach(() => jest.restoreAllMocks());

  test('a temporary file beside the destination, fsync of it, rename, fsync of the directory', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'durable-'));
    const file = path.join(sub, 'run.ckpt');
    const events: string[] = [];
    const opened = new Map<unknown, string>();
    const fsp = fs.promises;
    const realOpen = fsp.open.bind(fsp);
    const realRename = fsp.rename.bind(fsp);
    const probe = await realOpen(sub, 'r');
    const handleClass = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const realSync = handleClass.sync;
    const where = (p: unknown) => path.relative(sub, String(p)) || '.';
    jest.spyOn(fsp, 'open').mockImplementation(async (p: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
      const handle = await realOpen(p, flags, mode);
      opened.set(handle, where(p));
      events.push(`open ${where(p)} ${String(flags)}`);
      return handle;
    });
    jest.spyOn(handleClass, 'sync').mockImplementation(async function (this: unknown) {
      events.push(`sync ${opened.get(this)}`);
      return realSync.call(this);
    });
    jest.spyOn(fsp, 'rename').mockImplementation(async (a: fs.PathLike, b: fs.PathLike) => {
      events.push(`rename ${where(a)} ${where(b)}`);
      return realRename(a, b);
    });
    const { trainer } = makeTrainer();
    await trainer.save(file);
    trainer.dispose();
    const temporary = events[0].split(' ')[1];
    expect(temporary).toMatch(/^run\.ckpt\.partial-.+-\d+-\d+$/); // in the same directory
    expect(events).toEqual([`open ${temporary} wx`, `sync ${temporary}`, `rename ${temporary} run.ckpt`, 'open . r', 'sync .']);
    expect(fs.readdirSync(sub)).toEqual(['run.ckpt']);
  });

  test('a write that fails keeps the previous checkpoint and leaves no temporary file', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'failed-'));
    const file = path.join(sub, 'run.ckpt');
    const { trainer } = makeTrainer();
    await trainer.save(file);
    const before = fs.readFileSync(file);
    await trainer.fit(data(), { steps: 2, batchSize: 64 });
    jest.spyOn(fs.promises, 'rename').mockRejectedValueOnce(new Error('EIO: simulated'));
    await expect(trainer.save(file)).rejects.toThrow(/checkpoint: cannot write .*run\.ckpt: EIO: simulated/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(sub)).toEqual(['run.ckpt']);
    trainer.dispose();
  });

  test('a FIFO, a symbolic link or a directory at the destination is refused, not replaced', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'special-'));
    const fifo = path.join(sub, 'fifo.ckpt');
    execFileSync('mkfifo', [fifo]);
    const target = path.join(sub, 'target.txt');
    fs.writeFileSync(target, 'keep me');
    const link = path.join(sub, 'link.ckpt');
    fs.symlinkSync(target, link);
    const folder = path.join(sub, 'folder.ckpt');
    fs.mkdirSync(folder);
    const { trainer } = makeTrainer();
    await expect(trainer.save(fifo)).rejects.toThrow(/checkpoint: .*fifo\.ckpt is a FIFO, not a regular file; refusing to replace it/);
    await expect(trainer.save(link)).rejects.toThrow(
      /checkpoint: .*link\.ckpt is a symbolic link, not a regular file; refusing to replace it/,
    );
    await expect(trainer.save(folder)).rejects.toThrow(/checkpoint: .*folder\.ckpt is a directory, not a regular file/);
    // fit refuses before its first step (and never opens the FIFO, which would block).
    const steps: number[] = [];
    await expect(
      trainer.fit(data(), {
        steps: 2,
        batchSize: 64,
        onStep: (m) => {
          steps.push(m.step);
        },
        checkpoint: { path: fifo, every: 1 },
      }),
    ).rejects.toThrow(/fifo\.ckpt is a FIFO, not a regular file/);
    await expect(trainer.fit(data(), { steps: 2, batchSize: 64, checkpoint: { path: link, every: 1 } })).rejects.toThrow(
      /link\.ckpt is a symbolic link/,
    );
    expect(steps).toEqual([]);
    await expect(trainer.load(fifo)).rejects.toThrow(/checkpoint: cannot read .*fifo\.ckpt: it is a FIFO, not a regular file/);
    await expect(readCheckpointConfig(fifo)).rejects.toThrow(/fifo\.ckpt is a FIFO/);
    trainer.dispose();
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me');
    expect(fs.lstatSync(folder).isDirectory()).toBe(true);
    expect(fs.readdirSync(sub).sort()).toEqual(['fifo.ckpt', 'folder.ckpt', 'link.ckpt', 'target.txt']);
  });

  test('temporary files left by dead processes are removed; those of live processes and other hosts are kept', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'stale-'));
    const file = path.join(sub, 'run.ckpt');
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    expect(() => process.kill(deadPid, 0)).toThrow(); // it has exited
    const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_');
    const stale = [`run.ckpt.partial-${host}-${deadPid}-1`, `run.ckpt.partial-${host}-${deadPid}-7`];
    const kept = [
      `run.ckpt.partial-${host}-${process.ppid}-1`, // a live process (jest's parent) may be writing it
      `run.ckpt.partial-${host}-${process.pid}-999`, // this process's own
      `run.ckpt.partial-elsewhere-${deadPid}-1`, // another host's pids mean nothing here
      `other.ckpt.partial-${host}-${deadPid}-1`, // another checkpoint's
    ];
    for (const name of [...stale, ...kept]) fs.writeFileSync(path.join(sub, name), 'partial');
    const { trainer } = makeTrainer();
    await trainer.save(file);
    trainer.dispose();
    expect(fs.readdirSync(sub).sort()).toEqual(['run.ckpt', ...kept].sort());
  });
});

describe('fit runs: stopped by a signal, extended, and resumed only with the same configuration', () => {
  test('an aborted fit saves where it stopped; resuming it equals the uninterrupted run', async () => {
    const whole = await run(20);
    const file = path.join(dir, 'aborted.ckpt');
    const controller = new AbortController();
    const { trainer, net } = makeTrainer();
    const losses: [number, number][] = [];
    const first = await trainer.fit(data(), {
      steps: 20,
      batchSize: 64,
      signal: controller.signal,
      checkpoint: { path: file, every: 100 },
      onStep: (m) => {
        losses.push([m.step, m.loss]);
        if (m.step === 7) controller.abort();
      },
    });
    trainer.dispose();
    expect(first.stopped).toBe(true);
    expect(first.steps).toBeGreaterThanOrEqual(7);
    expect(first.steps).toBeLessThan(10);
    expect(first.epochs.map((e) => e.epoch)).toEqual([1]); // epoch 2 was cut short: not reported
    expect(net.stateTensors().length).toBeGreaterThan(0);
    const second = await run(20, { checkpoint: { path: file, every: 100 } });
    expect(second.result.resumedFrom).toBe(first.steps);
    expect(second.result.stopped).toBeUndefined();
    expect([...losses, ...second.losses]).toEqual(whole.losses);
    expect(bits(second.state).equals(bits(whole.state))).toBe(true);
    // Aborted before it starts: nothing trained, nothing written.
    const idle = makeTrainer();
    const never = path.join(dir, 'never.ckpt');
    expect(
      await idle.trainer.fit(data(), { steps: 5, batchSize: 64, signal: AbortSignal.abort(), checkpoint: { path: never, every: 1 } }),
    ).toMatchObject({ steps: 0, stopped: true, epochs: [] });
    expect(fs.existsSync(never)).toBe(false);
    idle.trainer.dispose();
  });

  test('a finished run given more epochs continues, equal to the longer run', async () => {
    const whole = await run(undefined, { epochs: 3 });
    const file = path.join(dir, 'extended.ckpt');
    const first = await run(undefined, { epochs: 2, checkpoint: { path: file, every: 3 } });
    expect(first.result.steps).toBe(10);
    const more = await run(undefined, { epochs: 3, checkpoint: { path: file, every: 3 } });
    expect(more.result).toMatchObject({ resumedFrom: 10, steps: 15 });
    expect(more.result.epochs.map((e) => e.epoch)).toEqual([3]);
    expect(bits(more.state).equals(bits(whole.state))).toBe(true);
  });

  test('a configuration that differs is refused naming each key that differs; the file is left as it was', async () => {
    const file = path.join(dir, 'config.ckpt');
    const config = { method: 'dni', lr: 0.001, hidden: [16, 16], note: undefined };
    await run(3, { checkpoint: { path: file, every: 10, config } });
    const before = fs.readFileSync(file);
    expect(await readCheckpointConfig(file)).toEqual({ method: 'dni', lr: 0.001, hidden: [16, 16] });
    expect(await readCheckpointConfig(path.join(dir, 'no-such.ckpt'))).toBeUndefined();
    const { trainer } = makeTrainer();
    const resume = (c: Record<string, unknown>) =>
      trainer.fit(data(), { steps: 6, batchSize: 64, checkpoint: { path: file, every: 10, config: c } });
    await expect(resume({ ...config, lr: 0.01 })).rejects.toThrow(
      /config\.ckpt was saved with lr 0\.001, this run has 0\.01: resume with the same settings/,
    );
    await expect(resume({ ...config, lr: 0.01 })).rejects.not.toThrow(/hidden|method/);
    await expect(resume({ method: 'dni', lr: 0.001, hidden: [16] })).rejects.toThrow(/was saved with hidden 16,16, this run has 16:/);
    await expect(resume({ lr: 0.001, hidden: [16, 16], extra: true })).rejects.toThrow(
      /was saved with method dni, this run has none; was saved without extra, this run has extra true:/,
    );
    await expect(resume({ ...config, lr: 0.01, batch: 1 })).rejects.toThrow(/lr 0\.001, this run has 0\.01; was saved without batch/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    await expect(trainer.fit(data(), { steps: 1, checkpoint: { path: file, every: 1, config: 3 as never } })).rejects.toThrow(
      /fit: 'checkpoint\.config' must be an object of JSON values, got number 3/,
    );
    await expect(trainer.fit(data(), { steps: 1, signal: 'stop' as never })).rejects.toThrow(
      /fit: 'signal' must be an AbortSignal, got string stop/,
    );
    const same = await trainer.fit(data(), { steps: 6, batchSize: 64, checkpoint: { path: file, every: 10, config } });
    expect(same.resumedFrom).toBe(3);
    trainer.dispose();
  });
});
