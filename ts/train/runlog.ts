// Run logs: what a training run leaves behind to look at (fit's `logDir`, `npm start --log-dir`).
// A run's directory holds
//   config.json         what ran: the model, device, data and fit options (and what the caller adds)
//   steps.jsonl/.csv    one record per logged step: loss, learning rate, wall time per step
//   epochs.jsonl/.csv   one record per epoch: mean training loss, throughput, validation metrics
//   synthesizers.jsonl/.csv  one record per synthesizer per diagnostics step: its loss, cosine to
//                       the true gradient, cosine to its target, norm ratio
//   result.json         how fit ended: steps, seconds, or the error
//   events.out.tfevents.*  the same scalars as TensorBoard event files
// JSON Lines and CSV hold the same records (CSV columns are fixed by a file's first record).
// Records are buffered and appended (asynchronously: training never waits on the disk) about once
// a second and at every epoch's end, so a report of a run in progress sees all but its last
// second, and a killed run keeps nearly everything.
//
// TensorBoard's format, written here without TensorFlow: a file of TFRecords, each
//   uint64 length, uint32 masked CRC32C of the length, the bytes, uint32 masked CRC32C of them
// (little-endian), whose bytes are `Event` protocol buffers (tensorflow/core/util/event.proto):
// the first carries file_version "brain.Event:2", the others wall_time, step and a `Summary` of
// (tag, simple_value) scalars, which TensorBoard shows under its Scalars tab.
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { describe, positiveInt } from '../check';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import type { EpochMetrics, FitOptions, FitResult, StepMetrics } from './trainer';
import { error, typeError } from '../errors';

/** fit's `logDir`: a directory, or a directory and what to add to its config.json. */
export type LogDirOption = string | { dir: string; config?: Record<string, unknown> };

// ---- CRC32C (Castagnoli), as TFRecord frames use it ----

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord stores a rotated and offset CRC, so that a CRC of data holding CRCs stays strong. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// ---- protocol buffer encoding: the few field kinds an Event needs ----

class ProtoWriter {
  private readonly parts: Buffer[] = [];

  private varint(v: number): void {
    const out: number[] = [];
    // Steps and lengths are below 2^53; division keeps the high bits that >>> would lose.
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
    this.parts.push(Buffer.from(out));
  }

  private key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  uint64(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  double(field: number, v: number): this {
    this.key(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(b);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
    return this;
  }

  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(b);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** One TFRecord frame around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(data.length), 0);
  head.writeUInt32LE(maskedCrc32c(head.subarray(0, 8)), 8);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([head, data, tail]);
}

/** An Event (event.proto) with scalars: fields wall_time = 1, step = 2, file_version = 3, summary = 5. */
export function scalarEvent(wallTime: number, step: number, scalars: [tag: string, value: number][]): Buffer {
  const e = new ProtoWriter().double(1, wallTime).uint64(2, step);
  const summary = new ProtoWriter();
  // Summary.value = 1 (repeated); Value.tag = 1, Value.simple_value = 2 (a float)
  for (const [tag, value] of scalars) summary.bytes(1, new ProtoWriter().bytes(1, tag).float(2, value).finish());
  return e.bytes(5, summary.finish()).finish();
}

function versionEvent(wallTime: number): Buffer {
  return new ProtoWriter().double(1, wallTime).bytes(3, 'brain.Event:2').finish();
}

// ---- the log ----

/** A file appended to in batches; CSV files also fix their columns. */
class Appender {
  private pending: Buffer[] = [];
  columns?: string[];

  constructor(readonly file: string) {}

  add(data: string | Buffer): void {
    this.pending.push(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  async flush(): Promise<void> {
    if (!this.pending.length) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    await fsp.appendFile(this.file, data);
  }
}

type Row = Record<string, number | string | null>;

const csvCell = (v: unknown) => (v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v)) ? '' : String(v));
const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The numeric fields of a metrics object (what goes into a record). */
function numbers(o: object, skip: string[] = []): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number' && !skip.includes(k)) out[k] = v;
  return out;
}

/** event files opened by this process: a resumed run in the same second gets a name of its own */
let eventFiles = 0;

/** Whether `dir` already holds a run log. */
export function holdsRunLog(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'config.json'));
}

/**
 * Writes one run's records (see the top of this file). `fit({ logDir })` makes one; create one
 * yourself to log a loop of your own. Call close() at the end.
 */
export class RunLog {
  private readonly files = new Map<string, Appender>();
  private readonly events: Appender;
  private lastFlush = Date.now();

  private constructor(
    readonly dir: string,
    private readonly csvHeaders: Map<string, string[]>,
  ) {
    // TensorBoard reads every events.out.tfevents.* file of a directory, in name order.
    const stamp = `${Math.floor(Date.now() / 1000)}.${os.hostname()}.${process.pid}.${++eventFiles}`;
    this.events = new Appender(path.join(dir, `events.out.tfevents.${stamp}`));
    this.events.add(tfRecord(versionEvent(Date.now() / 1000)));
  }

  /**
   * Creates `dir` (and its parents) and writes config.json. With `append`, records go on after
   * those already there (a resumed run); without it, a directory that holds a run log is an error.
   */
  static async create(dir: string, config: Record<string, unknown>, options: { append?: boolean } = {}): Promise<RunLog> {
    if (typeof dir !== 'string' || dir === '') throw typeError(`RunLog: 'dir' must be a directory path, got ${describe(dir)}`);
    if (!options.append && holdsRunLog(dir))
      throw error('ERR_SYNTHGRAD_STATE', `RunLog: ${dir} already holds a run log; give each run its own directory`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    // A resumed run keeps the columns of the CSV files it appends to.
    const headers = new Map<string, string[]>();
    if (options.append) {
      for (const name of ['steps', 'epochs', 'synthesizers']) {
        const text = await fsp.readFile(path.join(dir, `${name}.csv`), 'utf8').catch(() => '');
        if (text) headers.set(name, text.split('\n', 1)[0].split(','));
      }
    }
    return new RunLog(dir, headers);
  }

  private write(name: string, row: Row): void {
    let jsonl = this.files.get(`${name}.jsonl`);
    let csv = this.files.get(`${name}.csv`);
    if (!jsonl || !csv) {
      jsonl = new Appender(path.join(this.dir, `${name}.jsonl`));
      csv = new Appender(path.join(this.dir, `${name}.csv`));
      csv.columns = this.csvHeaders.get(name);
      if (!csv.columns) {
        csv.columns = Object.keys(row);
        csv.add(`${csv.columns.join(',')}\n`);
      }
      this.files.set(`${name}.jsonl`, jsonl);
      this.files.set(`${name}.csv`, csv);
    }
    jsonl.add(`${JSON.stringify(row)}\n`);
    csv.add(`${csv.columns!.map((c) => csvCell(row[c])).join(',')}\n`);
  }

  private scalars(step: number, time: number, values: [string, number][]): void {
    const finite = values.filter(([, v]) => Number.isFinite(v));
    if (finite.length) this.events.add(tfRecord(scalarEvent(time, step, finite)));
  }

  /** Writes what is buffered when the last write is a second old. */
  async flushIfDue(): Promise<void> {
    if (Date.now() - this.lastFlush >= 1000) await this.flush();
  }

  /** A training step: `stepSeconds` is the wall time per step since the previous record. */
  step(m: StepMetrics, stepSeconds: number): void {
    const time = Date.now() / 1000;
    this.write('steps', { step: m.step, epoch: m.epoch, loss: m.loss, lr: m.lr, stepSeconds, time });
    this.scalars(m.step, time, [
      ['train/loss', m.loss],
      ['train/lr', m.lr],
      ['train/step_seconds', stepSeconds],
    ]);
    if (m.diagnostics) this.diagnostics(m.step, m.diagnostics, time);
  }

  /** Each synthesizer's diagnostics at `step`. */
  diagnostics(step: number, list: ModuleDiagnostics[], time = Date.now() / 1000): void {
    for (const d of list) {
      const values = numbers(d, ['module']);
      this.write('synthesizers', { step, module: d.module, ...values, time });
      // TensorBoard groups tags by their prefix: one group per synthesizer.
      this.scalars(
        step,
        time,
        Object.entries(values).map(([k, v]) => [`synthesizer_${d.module}/${snake(k)}`, v]),
      );
    }
  }

  /** An epoch's end, after `step` steps in all (then flush()). */
  epoch(m: EpochMetrics, step: number): void {
    const time = Date.now() / 1000;
    const validation = m.validation ? numbers(m.validation, ['count']) : {};
    const row: Row = { epoch: m.epoch, step, ...numbers(m, ['epoch']), time };
    for (const [k, v] of Object.entries(validation)) row[`validation${k[0].toUpperCase()}${k.slice(1)}`] = v;
    this.write('epochs', row);
    this.scalars(step, time, [
      ['epoch/train_loss', m.loss],
      ['epoch/samples_per_second', m.samplesPerSecond],
      ...Object.entries(validation).map(([k, v]) => [`validation/${snake(k)}`, v] as [string, number]),
    ]);
  }

  /** How the run ended (result.json). */
  async result(r: Record<string, unknown>): Promise<void> {
    await fsp.writeFile(path.join(this.dir, 'result.json'), `${JSON.stringify({ ...r, time: Date.now() / 1000 }, null, 2)}\n`);
  }

  async flush(): Promise<void> {
    this.lastFlush = Date.now();
    for (const f of [...this.files.values(), this.events]) await f.flush();
  }

  close(): Promise<void> {
    return this.flush();
  }
}

/** The JSON-safe part of fit's options (callbacks and datasets left out) for config.json. */
function fitConfig(options: FitOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options))
    if (k !== 'logDir' && (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string' || (k === 'checkpoint' && v)))
      out[k] = v;
  const validation = options.validation as { count?: unknown } | undefined;
  if (typeof validation?.count === 'number') out.validation = { rows: validation.count };
  return out;
}

/**
 * fit's `logDir` at work: wraps onStep and onEpoch so that every step they report (every
 * `logEvery` steps, and every diagnostics step) and every epoch reaches the log, and records how
 * fit ended. The directory is created at the first step, so a fit refused for its arguments
 * leaves nothing behind.
 */
export class FitLog {
  private log?: RunLog;
  private lastTime = 0;
  /** the latest step reported, and the steps of the epochs ended (0 until then) */
  private lastStep = 0;
  private epochSteps = 0;

  private constructor(
    private readonly dir: string,
    private readonly extra: Record<string, unknown> | undefined,
    private readonly append: boolean,
  ) {}

  /**
   * Checks `options.logDir` now; undefined without one. `resumes`: whether the run resumes from
   * its checkpoint (by default, whether `checkpoint.path` exists; a run over ranks says whether
   * its checkpoint directory holds rank files, since the directory is made before the first save).
   */
  static from(options: FitOptions, resumes?: boolean): FitLog | undefined {
    const o = options.logDir as unknown;
    if (o === undefined) return undefined;
    const given = typeof o === 'object' && o !== null ? (o as { dir?: unknown; config?: unknown }) : { dir: o };
    if (typeof given.dir !== 'string' || given.dir === '')
      throw typeError(`fit: 'logDir' must be a directory path or { dir, config }, got ${describe(o)}`);
    if (given.config !== undefined && (typeof given.config !== 'object' || given.config === null || Array.isArray(given.config)))
      throw typeError(`fit: 'logDir.config' must be an object, got ${describe(given.config)}`);
    if (options.onStep !== undefined && typeof options.onStep !== 'function')
      throw typeError(`fit: 'onStep' must be a function, got ${describe(options.onStep)}`);
    if (options.onEpoch !== undefined && typeof options.onEpoch !== 'function')
      throw typeError(`fit: 'onEpoch' must be a function, got ${describe(options.onEpoch)}`);
    if (options.logEvery !== undefined) positiveInt('fit', 'logEvery', options.logEvery);
    // A run that resumes from its checkpoint goes on writing the log it started.
    const resuming = resumes ?? (typeof options.checkpoint?.path === 'string' && fs.existsSync(options.checkpoint.path));
    if (!resuming && holdsRunLog(given.dir))
      throw error(
        'ERR_SYNTHGRAD_STATE',
        `fit: 'logDir' ${given.dir} already holds a run log; give each run its own directory (or resume it through 'checkpoint')`,
      );
    return new FitLog(given.dir, given.config as Record<string, unknown> | undefined, resuming);
  }

  /** Runs `fit` with the wrapped callbacks; `run` describes the run for config.json. */
  async around(options: FitOptions, run: Record<string, unknown>, fit: (o: FitOptions) => Promise<FitResult>): Promise<FitResult> {
    const open = async () => {
      if (!this.log)
        this.log = await RunLog.create(
          this.dir,
          { ...run, fit: fitConfig(options), ...this.extra, started: new Date().toISOString() },
          { append: this.append },
        );
      return this.log;
    };
    // performance.now(), not Date.now(): a step can take under a millisecond.
    this.lastTime = performance.now();
    const wrapped: FitOptions = {
      ...options,
      onStep: async (m) => {
        const now = performance.now();
        // A resumed run's first record would count from the step it resumed after, unknown here.
        const steps = this.lastStep > 0 || !this.append ? m.step - this.lastStep : NaN;
        const log = await open();
        log.step(m, (now - this.lastTime) / 1000 / steps);
        this.lastTime = now;
        this.lastStep = m.step;
        await log.flushIfDue();
        if (options.onStep) await options.onStep(m);
      },
      onEpoch: async (m) => {
        // Steps count from the run's start; an epoch may end between two reported steps.
        this.epochSteps += m.steps;
        const log = await open();
        log.epoch(m, this.append ? this.lastStep : this.epochSteps);
        await log.flush();
        if (options.onEpoch) await options.onEpoch(m);
        // The evaluation is no step's time: the next record's time per step counts from here.
        this.lastTime = performance.now();
        if (!this.append) this.lastStep = this.epochSteps;
      },
    };
    let result: FitResult;
    try {
      result = await fit(wrapped);
    } catch (e) {
      // The error that stopped fit matters more than one from writing its log.
      await this.log?.close().catch(() => undefined);
      await this.log?.result({ steps: this.lastStep, error: (e as Error).message }).catch(() => undefined);
      throw e;
    }
    if (this.log) {
      await this.log.close();
      await this.log.result({
        steps: result.steps,
        seconds: result.seconds,
        ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
      });
    }
    return result;
  }
}
