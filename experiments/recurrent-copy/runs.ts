// The machinery of the recurrent experiment drivers (./recurrent_copy.ts and
// ../char-lm/char_lm.ts): a grid of trainSequences runs, one child process per run, up to
// `jobs` at once, each resumable.
//
// Files of a run set NAME (the driver's --out), per run ID (task-method-T<truncation>):
//   experiments/EXPERIMENT/results/NAME/ID.jsonl   progress, one JSON object a line: trainSequences' SequenceProgress
//                                                  and segmentSeconds, the seconds since this process started the run (committed)
//   experiments/EXPERIMENT/results/NAME/ID.json    the final score, with the run's options (committed)
//   experiments/EXPERIMENT/results/NAME/ID.txt     the child's stdout and stderr
//   experiments/EXPERIMENT/checkpoints/NAME/ID.ckpt  (not committed: experiments/*/checkpoints/)
// A run whose score file says it reached the budget (or stopped early on validation) is
// skipped; any other run starts, or resumes from its checkpoint (trainSequences does that bit
// for bit), and appends to its progress file. A resumed run repeats the progress lines between
// its last checkpoint and the interruption; readProgress() keeps the last line per window.
// A larger budget on the same NAME resumes finished runs where they stopped.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DEFAULT_SYNTHESIZER_LR, trainSequences, TrainSequencesOptions, SequenceProgress, SequenceScore } from '../../ts/recurrent/run';
import { DEFAULT_DISCOUNT } from '../../ts/recurrent/training';
import { projectRoot } from '../../bench/paths';

/** What a child needs: the run's identity and trainSequences' options (JSON only). */
export interface RunSpec {
  id: string;
  experiment: string;
  name: string;
  options: Omit<TrainSequencesOptions, 'checkpoint' | 'signal' | 'device' | 'onProgress'>;
  checkpointEvery: number;
}

export interface RunFiles {
  progress: string;
  score: string;
  log: string;
  checkpoint: string;
}

export function runFiles(spec: Pick<RunSpec, 'id' | 'experiment' | 'name'>): RunFiles {
  const results = path.join(projectRoot, 'experiments', spec.experiment, 'results', spec.name);
  const checkpoints = path.join(projectRoot, 'experiments', spec.experiment, 'checkpoints', spec.name);
  return {
    progress: path.join(results, `${spec.id}.jsonl`),
    score: path.join(results, `${spec.id}.json`),
    log: path.join(results, `${spec.id}.txt`),
    checkpoint: path.join(checkpoints, `${spec.id}.ckpt`),
  };
}

/** The saved score of a run, or undefined when it has none. */
export function readScore(spec: RunSpec): (SequenceScore & { budget: number }) | undefined {
  const file = runFiles(spec).score;
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as SequenceScore & { budget: number };
}

/** Whether a run is done at the spec's budget. */
export function finished(spec: RunSpec): boolean {
  const s = readScore(spec);
  return s !== undefined && (s.windows >= spec.options.steps || s.earlyStopped === true);
}

/** The run's progress lines, the last one per window, in window order. */
export function readProgress(spec: RunSpec): (SequenceProgress & { segmentSeconds: number })[] {
  const file = runFiles(spec).progress;
  if (!fs.existsSync(file)) return [];
  const byWindow = new Map<number, SequenceProgress & { segmentSeconds: number }>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const p = JSON.parse(line) as SequenceProgress & { segmentSeconds: number };
    byWindow.set(p.window, p);
  }
  return [...byWindow.values()].sort((a, b) => a.window - b.window);
}

/** The child's side: trains one run, appending progress, then writes the score. */
export async function runChild(spec: RunSpec): Promise<void> {
  const files = runFiles(spec);
  fs.mkdirSync(path.dirname(files.progress), { recursive: true });
  fs.mkdirSync(path.dirname(files.checkpoint), { recursive: true });
  const started = Date.now();
  const progress = fs.openSync(files.progress, 'a');
  try {
    const score = await trainSequences({
      ...spec.options,
      checkpoint: { path: files.checkpoint, every: spec.checkpointEvery },
      onProgress: (p) => {
        fs.writeSync(progress, JSON.stringify({ ...p, segmentSeconds: (Date.now() - started) / 1000 }) + '\n');
        console.log(`${spec.id} window ${p.window}: ${p.bits.toFixed(3)} bits` + (p.level !== undefined ? `, level ${p.level} (N ${p.length}, R ${p.repeats})` : '') +
          (p.validationBits !== undefined ? `, validation ${p.validationBits.toFixed(4)} bits/char` : ''));
      },
    });
    fs.writeFileSync(files.score, JSON.stringify({ ...score, budget: spec.options.steps, options: spec.options }, null, 2) + '\n');
    console.log(`${spec.id} done: ${JSON.stringify({ ...score, rises: undefined })}`);
  } finally {
    fs.closeSync(progress);
  }
}

/**
 * The parent's side: runs every unfinished spec as `node SCRIPT --child SPEC`, up to `jobs` at
 * once; resolves with the ids that failed (their logs say why).
 */
export async function runAll(script: string, specs: RunSpec[], jobs: number): Promise<string[]> {
  const todo = specs.filter((s) => {
    if (finished(s)) {
      console.log(`${s.id}: finished at ${readScore(s)!.windows} windows, skipped`);
      return false;
    }
    return true;
  });
  const failed: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const spec = todo[next++];
      const files = runFiles(spec);
      fs.mkdirSync(path.dirname(files.log), { recursive: true });
      console.log(`${spec.id}: ${fs.existsSync(files.checkpoint) ? 'resuming' : 'starting'} (${spec.options.steps} windows)`);
      const code = await new Promise<number>((resolve) => {
        const log = fs.openSync(files.log, 'a');
        const child = spawn(process.execPath, [script, '--child', JSON.stringify(spec)], { cwd: projectRoot, stdio: ['ignore', log, log] });
        child.on('exit', (c, signal) => {
          fs.closeSync(log);
          resolve(c ?? (signal ? 128 : 1));
        });
        child.on('error', () => resolve(1));
      });
      const score = readScore(spec);
      if (code !== 0) failed.push(spec.id);
      console.log(`${spec.id}: ${code === 0 ? `done in ${score?.seconds.toFixed(0)} s` : `FAILED (exit ${code}; see ${path.relative(projectRoot, files.log)})`}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
  return failed;
}

/** `--flag value` pairs into a map; a flag outside `known` is an error. */
export function flags(argv: string[], known: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (!known.includes(k)) throw new Error(`unknown option ${k}; known: ${known.join(' ')}`);
    if (v === undefined) throw new Error(`${k} needs a value`);
    out.set(k, v);
  }
  return out;
}

export function intFlag(f: Map<string, string>, name: string, fallback: number, min = 1): number {
  const v = f.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

export function listFlag<T extends string>(f: Map<string, string>, name: string, fallback: readonly T[], allowed?: readonly T[]): T[] {
  const v = f.get(name);
  if (v === undefined) return [...fallback];
  const items = v.split(',').filter((s) => s !== '') as T[];
  if (allowed) for (const x of items) if (!allowed.includes(x)) throw new Error(`${name}: ${x} is not one of ${allowed.join(', ')}`);
  return items;
}

/** The DNI synthesizer's --synth-lr and --discount (defaults: the library's). */
export function synthesizerFlags(f: Map<string, string>): { synthLr: number; discount: number } {
  const synthLr = Number(f.get('--synth-lr') ?? String(DEFAULT_SYNTHESIZER_LR));
  if (!(synthLr > 0) || !Number.isFinite(synthLr)) throw new Error(`--synth-lr must be a number > 0, got ${f.get('--synth-lr')}`);
  const discount = Number(f.get('--discount') ?? String(DEFAULT_DISCOUNT));
  if (!(discount > 0 && discount <= 1)) throw new Error(`--discount must be a number in (0, 1], got ${f.get('--discount')}`);
  return { synthLr, discount };
}

export function intListFlag(f: Map<string, string>, name: string, fallback: readonly number[]): number[] {
  const v = f.get(name);
  if (v === undefined) return [...fallback];
  return v.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: ${s} is not a positive integer`);
    return n;
  });
}

/** Replaces the text between `<!-- table:start -->` and `<!-- table:end -->` in a README. */
export function fillReadme(readme: string, table: string): void {
  const text = fs.readFileSync(readme, 'utf8');
  const start = '<!-- table:start -->';
  const end = '<!-- table:end -->';
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${readme} has no ${start} ... ${end} section`);
  fs.writeFileSync(readme, `${text.slice(0, a + start.length)}\n${table}\n${text.slice(b)}`);
}
