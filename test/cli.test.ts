// `npm start`'s options: defaults, parsing, and errors that name the flag before any data loads;
// and its checkpoints, run end to end: saved on SIGINT/SIGTERM, extended, refused naming the flag.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { flagValues, readFlags } from '../ts/cli/flags';
import { parseArgs, usage } from '../ts/cli/options';

describe('npm start options', () => {
  test('defaults: backprop with Adam at 1e-3, 10 epochs, 3 hidden layers of 256', () => {
    const o = parseArgs([]);
    expect(o).toMatchObject({
      method: 'backprop',
      optimizer: 'adam',
      lr: 1e-3,
      epochs: 10,
      batchSize: 256,
      hidden: [256, 256, 256],
      center: false,
    });
    expect(o.synthLr).toBeUndefined();
  });

  test('DNI with SGD modules and Adam synthesizers at their own rate', () => {
    const o = parseArgs([
      '--method',
      'dni',
      '--optimizer',
      'sgd',
      '--lr',
      '3e-3',
      '--synth-lr',
      '1e-3',
      '--center',
      '--mask-inactive',
      '--hidden',
      '256,128',
    ]);
    expect(o).toMatchObject({
      method: 'dni',
      optimizer: 'sgd',
      lr: 3e-3,
      synthLr: 1e-3,
      center: true,
      maskInactive: true,
      hidden: [256, 128],
    });
  });

  test('one flag convention: --flag value and --flag=value; unknown flags list the known ones', () => {
    expect(parseArgs(['--method=dni', '--lr=3e-3', '--hidden', '8,4', '--at=2'])).toMatchObject({
      method: 'dni',
      lr: 3e-3,
      hidden: [8, 4],
      at: [2],
    });
    expect(() => parseArgs(['--lr=-1'])).toThrow(/--lr must be > 0, got -1/);
    expect(() => parseArgs(['--bogus'])).toThrow(
      /^unknown option '--bogus' \(known: --method, --epochs, .*, --json, --help; try --help\)$/,
    );
    expect(() => parseArgs(['-h'])).toThrow(/unknown option '-h'/);
    expect(() => parseArgs(['--graph=yes'])).toThrow(/--graph takes no value, got 'yes'/);
    expect(() => parseArgs(['--method', 'dni', 'extra'])).toThrow(/unexpected argument 'extra'/);
  });

  test('every flag the usage lists is accepted', () => {
    const listed = [...usage.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    expect(listed.length).toBeGreaterThan(20);
    for (const flag of listed) {
      let message = '';
      try {
        parseArgs([flag]); // a value flag without its value fails later, on the value
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).not.toMatch(/unknown option|unexpected argument/);
    }
  });

  test("the benchmarks' flags: defaults, values, switches, and a value flag without one", () => {
    const defaults = { steps: '40', out: 'cpu', 'skip-torch': false };
    expect(flagValues([], defaults)).toEqual(defaults);
    expect(flagValues(['--steps=7', '--skip-torch', '--out', 'a'], defaults)).toEqual({ steps: '7', out: 'a', 'skip-torch': true });
    expect(() => flagValues(['--steps'], defaults)).toThrow(/^--steps needs a value$/);
    expect(() => flagValues(['--step', '3'], defaults)).toThrow(
      /unknown option '--step' \(known: --steps, --out, --skip-torch; see the script's header\)/,
    );
    expect(readFlags(['--out', '--steps'], { out: 'value', steps: 'value' })).toEqual([{ flag: '--out', value: '--steps' }]);
  });

  test('bad values name the flag', () => {
    expect(() => parseArgs(['--optimizer', 'rmsprop'])).toThrow(/--optimizer must be adam or sgd, got 'rmsprop'/);
    expect(() => parseArgs(['--method', 'dnii'])).toThrow(
      /--method must be backprop, dni, cdni, fa, dfa, dtp, reinforce or coagent, got 'dnii'/,
    );
    expect(() => parseArgs(['--lr', '-1'])).toThrow(/--lr must be > 0, got -1/);
    expect(() => parseArgs(['--synth-lr', 'fast', '--method', 'dni'])).toThrow(/--synth-lr needs a number, got 'fast'/);
    expect(() => parseArgs(['--epochs'])).toThrow(/--epochs needs a number, got ''/);
    expect(() => parseArgs(['--streams', 'many'])).toThrow(/--streams must be per-module or single/);
    expect(() => parseArgs(['--bogus', '1'])).toThrow(/unknown option '--bogus'/);
  });

  test('--at chooses the cuts and --steps the budget', () => {
    expect(parseArgs(['--method', 'dni', '--at', '2,5']).at).toEqual([2, 5]);
    expect(parseArgs(['--method', 'cdni', '--at', 'every-layer']).at).toBe('every-layer');
    expect(parseArgs([]).at).toBe('every-activation');
    expect(parseArgs(['--steps', '30']).steps).toBe(30);
    expect(() => parseArgs(['--method', 'dni', '--at', '2,x'])).toThrow(
      /--at must be every-activation, every-layer or layer indices such as 2,5, got '2,x'/,
    );
    expect(() => parseArgs(['--method', 'dni', '--at', '-1'])).toThrow(/--at must be/);
  });

  test.each([
    '--p-update 0.2',
    '--pipeline 2',
    '--streams single',
    '--diagnose-every 5',
    '--center',
    '--mask-inactive',
    '--at 2',
    '--synth-lr 1e-3',
  ])('a DNI-only flag under --method backprop is refused: %s', (flags) => {
    const flag = flags.split(' ')[0];
    expect(() => parseArgs(flags.split(' '))).toThrow(`${flag} applies to dni and cdni only`);
    expect(() => parseArgs(['--method', 'cdni', ...flags.split(' ')])).not.toThrow();
  });

  test('options that do not fit the method are refused', () => {
    expect(() => parseArgs(['--method', 'cdni', '--optimizer', 'sgd'])).toThrow(/--optimizer sgd with dni or cdni needs --synth-lr/);
    expect(parseArgs(['--optimizer', 'sgd', '--lr', '0.01'])).toMatchObject({ method: 'backprop', optimizer: 'sgd', lr: 0.01 });
  });
});

describe('--save-every', () => {
  test('is a whole number of steps, and needs --checkpoint', () => {
    expect(parseArgs(['--checkpoint', 'run.ckpt', '--save-every', '50'])).toMatchObject({ checkpoint: 'run.ckpt', saveEvery: 50 });
    expect(parseArgs(['--checkpoint', 'run.ckpt']).saveEvery).toBeUndefined();
    expect(() => parseArgs(['--checkpoint', 'run.ckpt', '--save-every', '2.5'])).toThrow(
      /--save-every must be a whole number of steps, got 2\.5/,
    );
    expect(() => parseArgs(['--checkpoint', 'run.ckpt', '--save-every', '0'])).toThrow(/--save-every must be > 0, got 0/);
    expect(() => parseArgs(['--save-every', '10'])).toThrow(/--save-every needs --checkpoint FILE/);
  });
});

// `npm start` itself (dist/ts/cli/main.js: run `npx tsc` first) on MNIST with a tiny model,
// 60 steps of 1,000 images per epoch. Every file lies in a directory made with mkdtemp.
describe('npm start with --checkpoint', () => {
  const main = path.join(__dirname, '..', 'dist', 'ts', 'cli', 'main.js');
  const tiny = ['--device', 'cpu', '--hidden', '8', '--batch-size', '1000'];
  let dir: string;
  beforeAll(() => {
    if (!fs.existsSync(main)) throw new Error(`${main} is missing: run 'npx tsc -p tsconfig.json' first`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  interface Run {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }
  /** Runs the CLI; `whileRunning` gets the child once it has started. */
  function cli(args: string[], whileRunning?: (child: ChildProcess) => void): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [main, ...tiny, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += String(d);
      });
      child.stderr.on('data', (d) => {
        stderr += String(d);
      });
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      whileRunning?.(child);
    });
  }
  /** Sends `signal` once `file` exists (the first save), unless the child has ended by then. */
  function signalAfterFirstSave(file: string, signal: NodeJS.Signals) {
    return (child: ChildProcess) => {
      const poll = setInterval(() => {
        if (child.exitCode !== null || child.signalCode !== null) clearInterval(poll);
        else if (fs.existsSync(file)) {
          clearInterval(poll);
          child.kill(signal);
        }
      }, 20);
    };
  }

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s saves the run and exits %i; the same command resumes it', async (signal, code) => {
    const file = path.join(dir, `${signal}.ckpt`);
    const args = ['--epochs', '2', '--checkpoint', file, '--save-every', '7'];
    const stopped = await cli(args, signalAfterFirstSave(file, signal));
    expect(stopped.stderr).toBe('');
    expect(stopped).toMatchObject({ code, signal: null });
    const at = new RegExp(`stopped by ${signal}: saved .*${signal}\\.ckpt at step (\\d+); run the same command again to resume`).exec(
      stopped.stdout,
    );
    expect(at).not.toBeNull();
    const step = Number(at![1]);
    expect(step).toBeGreaterThanOrEqual(7);
    expect(step).toBeLessThan(120);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(signal))).toEqual([`${signal}.ckpt`]);
    if (signal === 'SIGTERM') {
      const resumed = await cli(args);
      expect(resumed.code).toBe(0);
      expect(resumed.stdout).toContain(`resumed after step ${step}; 120 steps in all`);
    }
  });

  test('more --epochs extend a finished run; another option is refused naming its flag, leaving the file as it was', async () => {
    const file = path.join(dir, 'extend.ckpt');
    expect((await cli(['--epochs', '1', '--checkpoint', file])).code).toBe(0);
    const longer = await cli(['--epochs', '2', '--checkpoint', file]);
    expect(longer.stderr).toBe('');
    expect(longer.stdout).toMatch(/epoch +2 +train loss/);
    expect(longer.stdout).toContain('resumed after step 60; 120 steps in all');
    const before = fs.readFileSync(file);
    const other = await cli(['--epochs', '3', '--batch-size', '500', '--checkpoint', file]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/extend\.ckpt was saved with --batch-size 1000, this run has 500: resume with the same settings/);
    expect(other.stderr).not.toMatch(/\{/); // not the whole options JSON
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('extend'))).toEqual(['extend.ckpt']);
  });

  test('a refused run leaves no file behind; a FIFO for --checkpoint is refused and left alone', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'refused-'));
    const pipelined = await cli(['--epochs', '1', '--method', 'dni', '--pipeline', '1', '--checkpoint', path.join(sub, 'p.ckpt')]);
    expect(pipelined.code).toBe(1);
    expect(pipelined.stderr).toMatch(/the pipelined schedule .* cannot be saved/);
    expect(fs.readdirSync(sub)).toEqual([]);
    const fifo = path.join(sub, 'fifo.ckpt');
    execFileSync('mkfifo', [fifo]);
    const refused = await cli(['--epochs', '1', '--checkpoint', fifo]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/fifo\.ckpt is a FIFO, not a regular file/);
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    expect(fs.readdirSync(sub)).toEqual(['fifo.ckpt']);
  });
});
