// Small helpers of the interleaved benchmarks: the median of repeated timings and the load
// average written beside them.
import { execFileSync } from 'child_process';
import * as os from 'os';

/** The median (the mean of the two middle values for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The 1, 5 and 15 minute load averages, to two decimals. */
export const loadNow = (): number[] => os.loadavg().map((v) => Number(v.toFixed(2)));

/** The CPU's model name as `lscpu` gives it ('Model name:'), else Node's. */
export function cpuModel(): string {
  try {
    const line = execFileSync('lscpu', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .find((l) => l.startsWith('Model name:'));
    if (line) return line.slice('Model name:'.length).trim();
  } catch {
    // not Linux, or no lscpu
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

/** Timed steps for a run of about `targetMs`, from one step's `msPerStep`: at least `min`, at most `max`. */
export function stepsFor(targetMs: number, msPerStep: number, min: number, max: number): number {
  if (!(msPerStep > 0)) return min;
  return Math.max(min, Math.min(max, Math.round(targetMs / msPerStep)));
}

/** The command a results file records: `script argv...`, behind the `nice -n N` it really ran under (if any). */
export function commandLine(script: string, argv: readonly string[]): string {
  const niceness = os.getPriority();
  return [...(niceness > 0 ? [`nice -n ${niceness}`] : []), `node ${script}`, ...argv].join(' ');
}
