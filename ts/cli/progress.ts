// What `npm start` prints while it trains, in one of four modes:
//   bar    (stdout is a terminal) one line redrawn in place: a bar over the run's steps, the
//          epoch, throughput, the latest loss and the time left; the epoch lines scroll above it
//   lines  (a pipe or a file) the same facts as a line every few seconds (and at the first
//          step), so a log is never silent for a whole epoch; the epoch lines as in bar mode
//   quiet  (--quiet) only the final result; errors go to stderr in every mode
//   json   (--json) one JSON object per line: {"type":"step"} every 10 steps and at every
//          diagnostics step, {"type":"epoch"} per epoch, {"type":"final"} at the end
// Throughput and the time left come from the steps of the last 10 seconds, not counting the
// evaluation at each epoch's end (which the time left leaves out too).
import type { ModuleDiagnostics } from '../dni/diagnostics';
import type { EpochMetrics, Evaluation, StepMetrics } from '../train/trainer';

export type ProgressMode = 'bar' | 'lines' | 'quiet' | 'json';

/** The run's length, known once the data is. */
export interface RunPlan {
  /** the run's last step */
  totalSteps: number;
  epochs: number;
  batchSize: number;
}

export interface ProgressOptions {
  mode: ProgressMode;
  /** where the text goes (stdout) */
  write: (text: string) => void;
  /** lines mode: seconds between progress lines; default 5 */
  lineSeconds?: number;
  /** bar mode: the terminal's width */
  columns?: () => number | undefined;
  /** milliseconds; a test's clock */
  now?: () => number;
}

/** The end of a run as `npm start` reports it. */
export interface FinalResult extends Evaluation {
  steps: number;
  seconds: number;
  resumedFrom?: number;
}

/** 65 s → "1m05s"; 3725 s → "1h02m". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function describeDiagnostics(d: ModuleDiagnostics[]): string {
  return d
    .map(
      (m) =>
        `M${m.module}: loss ${m.synthesizerLoss.toExponential(2)} cos ${m.cosine.toFixed(3)} ` +
        `(to its target ${m.targetCosine.toFixed(3)}) |ĝ|/|g| ${m.normRatio.toFixed(2)}` +
        // The complete unlock: the input model that predicts this module's output.
        (m.inputCosine === undefined ? '' : `  I${m.module + 1}: loss ${m.inputLoss!.toExponential(2)} cos ${m.inputCosine.toFixed(3)}`),
    )
    .join('  ');
}

const jsonEvery = 10;
const windowMs = 10_000;
const redrawMs = 100;

export class Progress {
  private readonly now: () => number;
  /** (time, step) of the steps in the rate window, oldest first */
  private window: [number, number][] = [];
  private lastLine = -Infinity;
  private lastDraw = -Infinity;
  private barShown = false;
  private run: RunPlan = { totalSteps: NaN, epochs: NaN, batchSize: NaN };

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Sets the run's length (before its first step). */
  plan(run: RunPlan): void {
    this.run = run;
  }

  /** A line of the run's description (device, data, model): not in quiet or json mode. */
  info(line: string): void {
    if (this.o.mode === 'bar' || this.o.mode === 'lines') this.print(line);
  }

  step(m: StepMetrics): void {
    const t = this.now();
    this.window.push([t, m.step]);
    while (this.window.length > 2 && t - this.window[1][0] >= windowMs) this.window.shift();
    switch (this.o.mode) {
      case 'json':
        if (m.step % jsonEvery === 0 || m.diagnostics)
          this.o.write(`${JSON.stringify({ type: 'step', ...m, samplesPerSecond: this.samplesPerSecond() ?? null })}\n`);
        break;
      case 'lines':
        if (t - this.lastLine >= (this.o.lineSeconds ?? 5) * 1000) {
          this.lastLine = t;
          this.o.write(`${this.status(m)}\n`);
        }
        break;
      case 'bar':
        if (t - this.lastDraw >= redrawMs || m.step === this.run.totalSteps) {
          this.lastDraw = t;
          this.o.write(`\r${this.fit(this.bar(m))}\x1b[K`);
          this.barShown = true;
        }
        break;
      case 'quiet':
        break;
    }
  }

  /** An epoch's line, and the synthesizers' latest diagnostics under it. */
  epoch(m: EpochMetrics, diagnostics?: ModuleDiagnostics[]): void {
    this.window = []; // the evaluation just run is no training time
    if (this.o.mode === 'json') {
      this.o.write(`${JSON.stringify({ type: 'epoch', ...m })}\n`);
      return;
    }
    if (this.o.mode === 'quiet') return;
    const v = m.validation;
    this.print(
      `epoch ${String(m.epoch).padStart(2)}  train loss ${m.loss.toFixed(4)}  ` +
        (v ? `test loss ${v.loss.toFixed(4)}  test accuracy ${(100 * v.accuracy!).toFixed(2)}%  ` : '') +
        `${Math.round(m.samplesPerSecond)} samples/s  ${m.seconds.toFixed(1)} s`,
    );
    if (diagnostics) this.print(`          synthesizers (probe batch): ${describeDiagnostics(diagnostics)}`);
  }

  final(r: FinalResult): void {
    if (this.o.mode === 'json') {
      this.o.write(`${JSON.stringify({ type: 'final', ...r })}\n`);
      return;
    }
    this.print(`final test accuracy: ${(100 * r.accuracy!).toFixed(2)}% (${r.count} images)`);
  }

  /** Removes the bar (before an error message, say). */
  clear(): void {
    if (this.barShown) this.o.write('\r\x1b[K');
    this.barShown = false;
  }

  private print(line: string): void {
    this.clear();
    this.o.write(`${line}\n`);
  }

  /** steps per second over the window; undefined until two steps are apart in time */
  private rate(): number | undefined {
    const first = this.window[0];
    const last = this.window[this.window.length - 1];
    if (!first || last[0] <= first[0]) return undefined;
    return (last[1] - first[1]) / ((last[0] - first[0]) / 1000);
  }

  private samplesPerSecond(): number | undefined {
    const r = this.rate();
    return r === undefined ? undefined : Math.round(r * this.run.batchSize);
  }

  /** throughput, loss and time left */
  private facts(m: StepMetrics): string {
    const r = this.rate();
    const speed = r === undefined ? '… samples/s' : `${Math.round(r * this.run.batchSize)} samples/s`;
    const eta = r ? duration((this.run.totalSteps - m.step) / r) : '?';
    return `loss ${m.loss.toFixed(4)}  ${speed}  ETA ${eta}`;
  }

  private status(m: StepMetrics): string {
    return `step ${m.step}/${this.run.totalSteps}  epoch ${m.epoch}/${this.run.epochs}  ${this.facts(m)}`;
  }

  private bar(m: StepMetrics): string {
    const width = 24;
    const filled = Math.min(width, Math.round((m.step / this.run.totalSteps) * width));
    return `epoch ${m.epoch}/${this.run.epochs} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${m.step}/${this.run.totalSteps}  ${this.facts(m)}`;
  }

  /** A line no wider than the terminal (a wrapped line cannot be redrawn in place). */
  private fit(line: string): string {
    const columns = this.o.columns?.();
    return columns && line.length >= columns ? line.slice(0, columns - 1) : line;
  }
}
