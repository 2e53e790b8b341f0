// Run logs and progress: fit({ logDir }) writes what onStep and onEpoch saw as JSON Lines, CSV
// and TensorBoard event files (read back here with a decoder of the TFRecord and protobuf
// formats written for this test, CRCs checked), logging does not change training, a resumed
// run goes on with its log; `npm start`'s progress modes (bar, lines, quiet, json) on a test
// clock, and the CLI's --log-dir, --quiet and --json for real.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Trainer, datasets, decouple, mlp } from '../ts';
import type { EpochMetrics, FitOptions, StepMetrics } from '../ts';
import { Progress, ProgressMode, duration } from '../ts/cli/progress';

const cpu = Device.cpu();
const root = path.join(__dirname, '..');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-runlog-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- an independent reader of TensorBoard event files ----

/** CRC32C bit by bit (no table), the reference the writer's table-driven one must agree with. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function masked(bytes: Uint8Array): number {
  const c = crc32cBitwise(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** The records of a TFRecord file; throws on a bad length or data CRC. */
function tfRecords(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const len = Number(buf.readBigUInt64LE(at));
    if (buf.readUInt32LE(at + 8) !== masked(buf.subarray(at, at + 8))) throw new Error(`length CRC mismatch at byte ${at}`);
    const data = buf.subarray(at + 12, at + 12 + len);
    if (buf.readUInt32LE(at + 12 + len) !== masked(data)) throw new Error(`data CRC mismatch at byte ${at}`);
    out.push(data);
    at += 16 + len;
  }
  return out;
}

type Field = { field: number; wire: number; value: bigint | Buffer };

/** The fields of one protobuf message (varint, 64-bit, length-delimited, 32-bit). */
function protoFields(buf: Buffer): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[at++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const field = key >> 3,
      wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1) {
      fields.push({ field, wire, value: buf.subarray(at, at + 8) });
      at += 8;
    } else if (wire === 5) {
      fields.push({ field, wire, value: buf.subarray(at, at + 4) });
      at += 4;
    } else if (wire === 2) {
      const n = Number(varint());
      fields.push({ field, wire, value: buf.subarray(at, at + n) });
      at += n;
    } else throw new Error(`wire type ${wire} at byte ${at}`);
  }
  return fields;
}

interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Map<string, number>;
}

/** event.proto: wall_time 1 (double), step 2 (int64), file_version 3, summary 5 → value 1 → tag 1, simple_value 2 (float). */
function decodeEvent(buf: Buffer): DecodedEvent {
  const e: DecodedEvent = { wallTime: NaN, step: 0, scalars: new Map() };
  for (const f of protoFields(buf)) {
    if (f.field === 1 && f.wire === 1) e.wallTime = (f.value as Buffer).readDoubleLE(0);
    else if (f.field === 2 && f.wire === 0) e.step = Number(f.value);
    else if (f.field === 3 && f.wire === 2) e.fileVersion = (f.value as Buffer).toString('utf8');
    else if (f.field === 5 && f.wire === 2) {
      for (const v of protoFields(f.value as Buffer).filter((x) => x.field === 1)) {
        const parts = protoFields(v.value as Buffer);
        const tag = (parts.find((p) => p.field === 1)!.value as Buffer).toString('utf8');
        e.scalars.set(tag, (parts.find((p) => p.field === 2 && p.wire === 5)!.value as Buffer).readFloatLE(0));
      }
    }
  }
  return e;
}

/** Every event of every event file in `dir`, in file order. */
function readEvents(dir: string): DecodedEvent[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('events.out.tfevents.'))
    .sort()
    .flatMap((f) => tfRecords(fs.readFileSync(path.join(dir, f))).map(decodeEvent));
}

/** tag → [step, value] in event order */
function scalarSeries(events: DecodedEvent[], tag: string): [number, number][] {
  return events.filter((e) => e.scalars.has(tag)).map((e) => [e.step, e.scalars.get(tag)!]);
}

const jsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);

function csv(file: string): Record<string, string>[] {
  const [head, ...rows] = fs.readFileSync(file, 'utf8').trim().split('\n');
  const cols = head.split(',');
  return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [cols[i], v])));
}

test('the test decoder: CRC32C of the standard check string, and a flipped byte is caught', () => {
  expect(crc32cBitwise(Buffer.from('123456789'))).toBe(0xe3069283);
  const frame = Buffer.alloc(16 + 3);
  frame.writeBigUInt64LE(3n, 0);
  frame.writeUInt32LE(masked(frame.subarray(0, 8)), 8);
  frame.set([1, 2, 3], 12);
  frame.writeUInt32LE(masked(frame.subarray(12, 15)), 15);
  expect(tfRecords(frame)).toHaveLength(1);
  frame[13] ^= 1;
  expect(() => tfRecords(frame)).toThrow(/data CRC mismatch/);
});

// ---- fit({ logDir }) ----

let small: Promise<{ train: Dataset; test: Dataset }> | undefined;
function smallData(): Promise<{ train: Dataset; test: Dataset }> {
  small ??= datasets.mnist().then(({ train, test }) => ({ train: train.head(1200), test: test.head(300) }));
  return small;
}

/** A cDNI run of 2 epochs over 1,200 rows (10 steps each), diagnostics every 4 steps. */
async function cdniRun(extra: Partial<FitOptions>, seed = 3) {
  const { train, test } = await smallData();
  const net = decouple(mlp(784, [32, 32], 10), { synthesizer: { conditioned: true } });
  const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 1e-3 }), seed });
  const steps: StepMetrics[] = [];
  const epochs: EpochMetrics[] = [];
  try {
    const result = await trainer.fit(train, {
      epochs: 2,
      batchSize: 128,
      validation: test,
      diagnoseEvery: 4,
      onStep: (m) => {
        steps.push(m);
      },
      onEpoch: (m) => {
        epochs.push(m);
      },
      ...extra,
    });
    return { steps, epochs, result, modelName: net.name };
  } finally {
    trainer.dispose();
  }
}

describe('fit({ logDir })', () => {
  let dir: string;
  let run: Awaited<ReturnType<typeof cdniRun>>;
  beforeAll(async () => {
    dir = path.join(tmp, 'cdni');
    run = await cdniRun({ logDir: { dir, config: { purpose: 'test' } }, logEvery: 3 });
  });

  test('onStep still sees every logEvery-th and every diagnostics step, and nothing else', () => {
    expect(run.steps.map((m) => m.step)).toEqual([3, 4, 6, 8, 9, 12, 15, 16, 18, 20]);
    expect(run.result.steps).toBe(20);
  });

  test('logging does not change training: the same losses as a run without a log', async () => {
    const plain = await cdniRun({ logEvery: 3 });
    expect(run.steps.map((m) => m.loss)).toEqual(plain.steps.map((m) => m.loss));
    expect(run.epochs.map((m) => m.validation)).toEqual(plain.epochs.map((m) => m.validation));
  });

  test("config.json names the model, the data and the options, with the caller's additions", () => {
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model: run.modelName,
      device: 'cpu',
      loss: 'softmax-cross-entropy',
      data: { rows: 1200, features: 784 },
      fit: { epochs: 2, batchSize: 128, diagnoseEvery: 4, logEvery: 3, validation: { rows: 300 } },
      purpose: 'test',
    });
    expect(config.fit.onStep).toBeUndefined();
  });

  test('steps, epochs and synthesizers as JSON Lines and CSV hold what the callbacks saw', () => {
    const steps = jsonl(path.join(dir, 'steps.jsonl'));
    expect(steps.map((s) => [s.step, s.epoch, s.loss, s.lr])).toEqual(run.steps.map((m) => [m.step, m.epoch, m.loss, m.lr]));
    expect(steps.every((s) => s.stepSeconds > 0 && s.time > 1.7e9)).toBe(true);
    const stepsCsv = csv(path.join(dir, 'steps.csv'));
    expect(stepsCsv.map((r) => Number(r.loss))).toEqual(steps.map((s) => s.loss));
    expect(Object.keys(stepsCsv[0])).toEqual(Object.keys(steps[0]));

    const epochs = jsonl(path.join(dir, 'epochs.jsonl'));
    expect(epochs.map((e) => [e.epoch, e.step, e.loss, e.validationLoss, e.validationAccuracy])).toEqual(
      run.epochs.map((m, i) => [m.epoch, 10 * (i + 1), m.loss, m.validation!.loss, m.validation!.accuracy]),
    );
    expect(csv(path.join(dir, 'epochs.csv')).map((r) => Number(r.validationAccuracy))).toEqual(epochs.map((e) => e.validationAccuracy));

    const diagnosed = run.steps.filter((m) => m.diagnostics).flatMap((m) => m.diagnostics!.map((d) => ({ step: m.step, ...d })));
    expect(diagnosed).toHaveLength(5 * 2); // steps 4, 8, 12, 16, 20; 2 synthesizers (cuts after 2 ReLUs)
    const synth = jsonl(path.join(dir, 'synthesizers.jsonl'));
    expect(synth.map((s) => [s.step, s.module, s.synthesizerLoss, s.cosine, s.targetCosine, s.normRatio])).toEqual(
      diagnosed.map((d) => [d.step, d.module, d.synthesizerLoss, d.cosine, d.targetCosine, d.normRatio]),
    );
    expect(csv(path.join(dir, 'synthesizers.csv')).map((r) => Number(r.cosine))).toEqual(synth.map((s) => s.cosine));

    expect(JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8'))).toMatchObject({ steps: 20, seconds: run.result.seconds });
  });

  test('TensorBoard event files decode (CRCs checked) to the same scalars', () => {
    const events = readEvents(dir);
    expect(events[0].fileVersion).toBe('brain.Event:2');
    expect(events.every((e) => e.wallTime > 1.7e9)).toBe(true);
    const f32 = Math.fround;
    expect(scalarSeries(events, 'train/loss')).toEqual(run.steps.map((m) => [m.step, f32(m.loss)]));
    expect(scalarSeries(events, 'validation/accuracy')).toEqual(run.epochs.map((m, i) => [10 * (i + 1), f32(m.validation!.accuracy!)]));
    for (const module of [1, 2]) {
      const want = run.steps
        .filter((m) => m.diagnostics)
        .map((m) => [m.step, f32(m.diagnostics!.find((d) => d.module === module)!.cosine)]);
      expect(scalarSeries(events, `synthesizer_${module}/cosine`)).toEqual(want);
      expect(scalarSeries(events, `synthesizer_${module}/norm_ratio`)).toHaveLength(want.length);
      expect(scalarSeries(events, `synthesizer_${module}/target_cosine`)).toHaveLength(want.length);
      expect(scalarSeries(events, `synthesizer_${module}/synthesizer_loss`)).toHaveLength(want.length);
    }
  });

  test('a directory that holds a run log is refused; a bad logDir names the option; a refused fit writes nothing', async () => {
    await expect(cdniRun({ logDir: dir })).rejects.toThrow(`fit: 'logDir' ${dir} already holds a run log`);
    await expect(cdniRun({ logDir: 42 as unknown as string })).rejects.toThrow(TypeError);
    await expect(cdniRun({ logDir: 42 as unknown as string })).rejects.toThrow(
      /fit: 'logDir' must be a directory path or \{ dir, config \}, got number 42/,
    );
    const refused = path.join(tmp, 'refused');
    await expect(cdniRun({ logDir: refused, batchSize: 0 })).rejects.toThrow(/batchSize/);
    expect(fs.existsSync(refused)).toBe(false);
  });
});

test('a run resumed from its checkpoint goes on writing its log', async () => {
  const dir = path.join(tmp, 'resumed');
  const checkpoint = { path: path.join(tmp, 'resumed.ckpt'), every: 3 };
  await cdniRun({ logDir: dir, checkpoint, steps: 7 });
  const second = await cdniRun({ logDir: dir, checkpoint, steps: 14 });
  expect(second.result.resumedFrom).toBe(7);
  const steps = jsonl(path.join(dir, 'steps.jsonl')).map((s) => s.step);
  expect(steps).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
  expect(csv(path.join(dir, 'steps.csv')).map((r) => Number(r.step))).toEqual(steps);
  expect(fs.readdirSync(dir).filter((f) => f.startsWith('events.out.tfevents.')).length).toBe(2);
  expect(scalarSeries(readEvents(dir), 'train/loss').map(([s]) => s)).toEqual(steps);
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8'))).toMatchObject({ steps: 14, resumedFrom: 7 });
});

// ---- progress ----

function progress(mode: ProgressMode) {
  let t = 0;
  const out: string[] = [];
  const p = new Progress({ mode, write: (s) => out.push(s), now: () => t, columns: () => 200 });
  p.plan({ totalSteps: 100, epochs: 2, batchSize: 32 });
  const step = (n: number, extra: Partial<StepMetrics> = {}) => p.step({ step: n, epoch: n > 50 ? 2 : 1, loss: 1 / n, lr: 1e-3, ...extra });
  return {
    p,
    out,
    step,
    tick: (ms: number) => {
      t += ms;
    },
  };
}

const epoch: EpochMetrics = {
  epoch: 1,
  steps: 50,
  loss: 0.5,
  seconds: 5,
  samplesPerSecond: 320,
  validation: { loss: 0.4, accuracy: 0.9123, count: 1000 },
};
const final = { loss: 0.3, accuracy: 0.9512, count: 1000, steps: 100, seconds: 10 };

describe('npm start progress', () => {
  test('on a pipe: a line at the first step, then one every 5 seconds, with throughput and time left', () => {
    const { out, step, tick } = progress('lines');
    for (let n = 1; n <= 60; n++) {
      step(n);
      tick(100); // 10 steps/s = 320 samples/s
    }
    expect(out).toHaveLength(2); // steps 1 and 51 (5 s later)
    expect(out[0]).toMatch(/^step 1\/100 {2}epoch 1\/2 {2}loss 1\.0000 {2}… samples\/s {2}ETA \?\n$/);
    expect(out[1]).toBe('step 51/100  epoch 2/2  loss 0.0196  320 samples/s  ETA 5s\n');
  });

  test('on a terminal: one bar redrawn in place, at most every 100 ms; the epoch line clears it', () => {
    const { p, out, step, tick } = progress('bar');
    for (let n = 1; n <= 10; n++) {
      step(n);
      tick(40);
    }
    expect(out.length).toBe(4); // at 0, 120, 240, 360 ms
    // eslint-disable-next-line no-control-regex -- \x1b[K is the terminal's erase-to-end-of-line the bar writes
    expect(out[3]).toMatch(/^\repoch 1\/2 \[##\.{22}\] 10\/100 {2}loss 0\.1000 {2}800 samples\/s {2}ETA 4s\x1b\[K$/);
    p.epoch(epoch);
    expect(out[4]).toBe('\r\x1b[K');
    expect(out[5]).toBe('epoch  1  train loss 0.5000  test loss 0.4000  test accuracy 91.23%  320 samples/s  5.0 s\n');
  });

  test('--quiet: the final line only', () => {
    const { p, out, step } = progress('quiet');
    p.info('synthgrad: device cpu');
    step(1);
    p.epoch(epoch);
    p.final(final);
    expect(out).toEqual(['final test accuracy: 95.12% (1000 images)\n']);
  });

  test('--json: step records every 10 steps and at diagnostics, epoch and final records', () => {
    const { p, out, step, tick } = progress('json');
    p.info('not printed');
    const diagnostics = [{ module: 1, synthesizerLoss: 1e-3, cosine: 0.5, normRatio: 0.9, targetCosine: 0.7 }];
    for (let n = 1; n <= 20; n++) {
      step(n, n === 13 ? { diagnostics } : {});
      tick(100);
    }
    p.epoch(epoch);
    p.final(final);
    const records = out.map((l) => JSON.parse(l));
    expect(records.map((r) => [r.type, r.step ?? r.epoch])).toEqual([
      ['step', 10],
      ['step', 13],
      ['step', 20],
      ['epoch', 1],
      ['final', undefined],
    ]);
    expect(records[1].diagnostics).toEqual(diagnostics);
    expect(records[2].samplesPerSecond).toBe(320);
    expect(records[3].validation.accuracy).toBe(0.9123);
    expect(records[4]).toEqual({ type: 'final', ...final });
  });

  test('durations read as a person would say them', () => {
    expect([duration(42), duration(65), duration(3725), duration(Infinity)]).toEqual(['42s', '1m05s', '1h02m', '?']);
  });
});

describe('npm start --log-dir, --quiet, --json', () => {
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args], {
      cwd: tmp,
      env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
      encoding: 'utf8',
      timeout: 120_000,
    });

  test("--json prints only JSON records; --log-dir writes the run with the command's options", () => {
    const r = cli(['--method', 'cdni', '--steps', '12', '--diagnose-every', '5', '--json', '--log-dir', 'runs/json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const records = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // steps 5 and 10 (diagnostics; 10 is also a tenth step), the epoch cut short at step 12, the end
    expect(records.map((x) => [x.type, x.step ?? x.steps])).toEqual([
      ['step', 5],
      ['step', 10],
      ['epoch', 12],
      ['final', 12],
    ]);
    expect(records[0].diagnostics).toHaveLength(3);
    expect(records[3].accuracy).toBeGreaterThan(0.2); // chance: 0.1
    const dir = path.join(tmp, 'runs/json');
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))).toMatchObject({
      command: 'npm start',
      options: { method: 'cdni', steps: 12, diagnoseEvery: 5 },
      fit: { logEvery: 1, diagnoseEvery: 5 },
    });
    expect(jsonl(path.join(dir, 'steps.jsonl')).map((s) => s.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(jsonl(path.join(dir, 'synthesizers.jsonl')).map((s) => s.step)).toEqual([5, 5, 5, 10, 10, 10]);
    expect(jsonl(path.join(dir, 'epochs.jsonl'))[0].validationAccuracy).toBe(records[3].accuracy);
  });

  test('--quiet prints the final line alone; a pipe gets progress lines and the epoch lines', () => {
    const quiet = cli(['--steps', '3', '--quiet']);
    expect(quiet.status).toBe(0);
    expect(quiet.stdout).toMatch(/^final test accuracy: \d+\.\d\d% \(10000 images\)\n$/);
    const piped = cli(['--steps', '3']);
    expect(piped.status).toBe(0);
    expect(piped.stdout).toMatch(/^step 1\/3 {2}epoch 1\/10 {2}loss \d\.\d{4}/m);
    expect(piped.stdout).toMatch(/^epoch {2}1 {2}train loss .* test accuracy \d+\.\d\d%/m);
    expect(piped.stdout).toMatch(/^final test accuracy: \d+\.\d\d%/m);
  });

  test('--quiet with --json is refused', () => {
    const r = cli(['--quiet', '--json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--quiet and --json: choose one/);
  });
});
