// `npm start -- --task ...`: the recurrent run's flags (each reaches the library option it
// configures; errors name the flag before anything trains) and the command end to end: a Copy
// run's progress and score, a text run's bits per character, a checkpointed run resumed.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isSequenceRun, parseSequenceArgs, progressLine, scoreLine, sequenceRunOptions, sequenceUsage } from '../ts/cli/sequences';

const main = path.join(__dirname, '..', 'dist', 'ts', 'cli', 'main.js');
const run = (args: string[]) =>
  execFileSync(process.execPath, [main, ...args], { encoding: 'utf8', env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' } });

describe('recurrent run flags', () => {
  test('--task selects the recurrent command', () => {
    expect(isSequenceRun(['--method', 'dni', '--task=copy'])).toBe(true);
    expect(isSequenceRun(['--method', 'dni'])).toBe(false);
  });

  test('every flag reaches its option', () => {
    const o = parseSequenceArgs([
      '--task',
      'text',
      '--text',
      'a.txt',
      '--method',
      'dni-aux',
      '--truncation',
      '5',
      '--steps',
      '300',
      '--hidden',
      '64',
      '--batch-size',
      '8',
      '--lr',
      '3e-3',
      '--seed',
      '4',
      '--device',
      'cpu',
      '--streams',
      'separate',
      '--aux-weight',
      '0.5',
      '--synth-lr',
      '3e-5',
      '--discount',
      '0.25',
      '--synth-scale',
      'batch-mean',
      '--validate-every',
      '50',
      '--patience',
      '3',
      '--log-every',
      '10',
      '--checkpoint',
      'c.ckpt',
      '--save-every',
      '20',
    ]);
    const options = sequenceRunOptions(o);
    expect(options).toMatchObject({
      task: 'text',
      textFile: 'a.txt',
      method: 'dni-aux',
      truncation: 5,
      steps: 300,
      hidden: 64,
      batch: 8,
      lr: 3e-3,
      seed: 4,
      streams: 'separate',
      auxWeight: 0.5,
      synthesizerLr: 3e-5,
      synthesizerDiscount: 0.25,
      synthesizerTargetScale: 'batch-mean',
      validateEvery: 50,
      patience: 3,
      logEvery: 10,
      checkpoint: { path: 'c.ckpt', every: 20 },
    });
    expect(options.device!.name).toBe('cpu');
    // Defaults: BPTT, the calibration sizes (LSTM 128, batch 64), Adam 1e-3, seed 0.
    expect(sequenceRunOptions(parseSequenceArgs(['--task', 'copy', '--truncation', '3', '--steps', '9']))).toMatchObject({
      task: 'copy',
      method: 'bptt',
      hidden: 128,
      batch: 64,
      lr: 1e-3,
      seed: 0,
      truncation: 3,
      steps: 9,
    });
  });

  test('values on the edge of each check are accepted', () => {
    const o = parseSequenceArgs([
      '--task',
      'copy',
      '--method',
      'dni-aux',
      '--truncation',
      '1',
      '--steps',
      '1',
      '--discount',
      '1',
      '--aux-weight',
      '0',
    ]);
    expect(o).toMatchObject({ truncation: 1, steps: 1, discount: 1, auxWeight: 0, quiet: false, json: false });
    expect(parseSequenceArgs(['--task=copy', '--truncation', '2', '--steps', '3', '--device', 'cpu', '--seed', '-2'])).toMatchObject({
      task: 'copy',
      device: 'cpu',
      seed: -2,
    });
    expect(isSequenceRun(['--task=copy'])).toBe(true);
    expect(isSequenceRun(['--method', 'dni'])).toBe(false);
  });

  test('every flag the usage lists is known', () => {
    const listed = [...sequenceUsage.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    expect(listed.length).toBe(22); // all but --help
    for (const flag of listed) {
      let message = '';
      try {
        parseSequenceArgs([flag]);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).not.toMatch(/unknown option/);
    }
  });

  test.each([
    [['--task', 'copy', '--steps', '10'], /--truncation T is required/],
    [['--task', 'copy', '--truncation', '3'], /--steps N is required/],
    [['--task', 'copy', '--truncation', '0', '--steps', '5'], /--truncation must be a whole number >= 1, got 0/],
    [['--task', 'copy', '--truncation', '2.5', '--steps', '5'], /--truncation must be a whole number >= 1, got 2.5/],
    [['--task', 'sort', '--truncation', '3', '--steps', '5'], /--task must be copy, repeat-copy, text, got 'sort'/],
    [
      ['--task', 'copy', '--method', 'rtlr', '--truncation', '3', '--steps', '5'],
      /--method must be bptt, dni, dni-aux, rtrl, uoro, got 'rtlr'/,
    ],
    [['--task', 'text', '--truncation', '3', '--steps', '5'], /--task text needs --text FILE/],
    [['--task', 'copy', '--text', 'a', '--truncation', '3', '--steps', '5'], /--text applies to --task text only/],
    [['--task', 'copy', '--patience', '2', '--truncation', '3', '--steps', '5'], /--patience applies to --task text only/],
    [['--task', 'copy', '--streams', 'separate', '--truncation', '3', '--steps', '5'], /--streams applies to dni and dni-aux only/],
    [['--task', 'copy', '--synth-lr', '1e-4', '--truncation', '3', '--steps', '5'], /--synth-lr applies to dni and dni-aux only/],
    [['--task', 'copy', '--discount', '0.5', '--truncation', '3', '--steps', '5'], /--discount applies to dni and dni-aux only/],
    [
      ['--task', 'copy', '--method', 'uoro', '--synth-scale', 'batch-mean', '--truncation', '3', '--steps', '5'],
      /--synth-scale applies to dni and dni-aux only \(uoro has no synthesizer\)/,
    ],
    [
      ['--task', 'copy', '--method', 'dni', '--synth-scale', 'mean', '--truncation', '3', '--steps', '5'],
      /--synth-scale must be per-example, batch-mean, got 'mean'/,
    ],
    [
      ['--task', 'copy', '--method', 'dni', '--discount', '1.5', '--truncation', '3', '--steps', '5'],
      /--discount must be in \(0, 1\], got 1.5/,
    ],
    [['--task', 'copy', '--method', 'dni', '--synth-lr', '0', '--truncation', '3', '--steps', '5'], /--synth-lr must be > 0, got 0/],
    [
      ['--task', 'copy', '--method', 'dni', '--aux-weight', '2', '--truncation', '3', '--steps', '5'],
      /--aux-weight applies to --method dni-aux only/,
    ],
    [['--task', 'copy', '--save-every', '2', '--truncation', '3', '--steps', '5'], /--save-every needs --checkpoint FILE/],
    [['--task', 'copy', '--epochs', '2'], /unknown option '--epochs'/],
    // Boundaries of each value check (found by mutation testing: each row fails a mutant that survived).
    [['--task', 'copy', '--lr', '0', '--truncation', '3', '--steps', '5'], /--lr must be > 0, got 0/],
    [
      ['--task', 'copy', '--method', 'dni', '--discount', '0', '--truncation', '3', '--steps', '5'],
      /--discount must be in \(0, 1\], got 0/,
    ],
    [['--task', 'copy', '--seed', '1.5', '--truncation', '3', '--steps', '5'], /--seed must be an integer, got 1.5/],
    [
      ['--task', 'copy', '--method', 'dni-aux', '--aux-weight', '-1', '--truncation', '3', '--steps', '5'],
      /--aux-weight must be >= 0, got -1/,
    ],
    [['--task', 'text', '--text=', '--truncation', '3', '--steps', '5'], /--text needs a file path/],
    [['--task', 'copy', '--truncation', '3', '--steps', '5', '--quiet', '--json'], /--quiet and --json: choose one/],
  ])('%j is refused naming the flag', (args, message) => {
    expect(() => parseSequenceArgs(args)).toThrow(message);
  });

  test('progress and score lines', () => {
    expect(progressLine({ task: 'repeat-copy', window: 50, bits: 0.25, level: 3, length: 2, repeats: 2 }, 100, 12.5)).toBe(
      'window 50/100  level 3 (N 2, R 2)  0.250 bits/symbol  12.5 windows/s',
    );
    expect(progressLine({ task: 'text', window: 10, bits: 2, validationBits: 2.5 }, 20, 1)).toBe(
      'window 10/20  2.000 bits/symbol  validation 2.500 bits/char  1.0 windows/s',
    );
    expect(
      scoreLine({
        task: 'copy',
        method: 'dni',
        truncation: 3,
        windows: 9,
        stopped: false,
        seconds: 1,
        solved: { level: -1, length: 0, repeats: 0 },
      }),
    ).toBe('copy, dni, T = 3: 9 windows in 1.0 s; no level solved');
  });
});

describe('npm start -- --task, end to end', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-cli-seq-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('Copy with DNI: progress lines with the level, then the largest length solved', () => {
    const out = run([
      '--task',
      'copy',
      '--method',
      'dni',
      '--truncation',
      '4',
      '--steps',
      '400',
      '--hidden',
      '32',
      '--batch-size',
      '16',
      '--lr',
      '3e-3',
      '--log-every',
      '100',
    ]);
    expect(out).toMatch(/^synthgrad: copy, LSTM 32, dni, truncation 4/);
    expect(out).toMatch(/window 400\/400 {2}level \d+ \(N \d+\)/);
    // N = 1 (level 0) is solved within 400 windows on this setting (it needs only the last item remembered).
    expect(out).toMatch(/copy, dni, T = 4: 400 windows in [\d.]+ s; largest level solved \d+ \(N \d+\)\n$/);
  }, 60_000);

  test('text with BPTT: validation and test bits per character; --json', () => {
    const file = path.join(dir, 'tiny.txt');
    fs.writeFileSync(file, 'the cat sat on the mat. '.repeat(400));
    const lines = run([
      '--task',
      'text',
      '--text',
      file,
      '--truncation',
      '5',
      '--steps',
      '60',
      '--hidden',
      '16',
      '--batch-size',
      '4',
      '--validate-every',
      '30',
      '--json',
    ])
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const final = lines[lines.length - 1];
    expect(final).toMatchObject({ type: 'final', task: 'text', method: 'bptt', windows: 60 });
    expect(final.testBits).toBeGreaterThan(0);
    // A repeated sentence is learnt below the 4.2 bits of a uniform guess over its 13 symbols.
    expect(final.testBits).toBeLessThan(Math.log2(13));
    expect(lines.filter((l) => l.validationBits !== undefined)).toHaveLength(2);
  }, 60_000);

  test('--checkpoint: a longer budget resumes where the run stopped', () => {
    const ckpt = path.join(dir, 'copy.ckpt');
    const args = [
      '--task',
      'repeat-copy',
      '--method',
      'dni',
      '--truncation',
      '3',
      '--hidden',
      '16',
      '--batch-size',
      '8',
      '--checkpoint',
      ckpt,
      '--quiet',
    ];
    expect(run([...args, '--steps', '40'])).toMatch(/40 windows/);
    expect(fs.existsSync(ckpt)).toBe(true);
    expect(run([...args, '--steps', '70'])).toMatch(/repeat-copy, dni, T = 3: 70 windows/);
    expect(() =>
      execFileSync(process.execPath, [main, ...args.map((a) => (a === '3' ? '4' : a)), '--steps', '80'], {
        encoding: 'utf8',
        stdio: 'pipe',
      }),
    ).toThrow(/truncation: 3 there, 4 here/);
  }, 60_000);
});
