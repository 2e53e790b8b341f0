// The CLI over MPI ranks: `mpirun -np 3 npx synthgrad train --placement 0,1,2 ...` (and the
// `npm start -- ...` form) against the one-process `npm start` with the same flags, on tiny
// IDX files this test writes; and --placement's errors, which need no mpirun. The mpirun runs
// skip, saying why, where mpirun or the MPI addon is missing (bash scripts/install-mpi.sh).
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { mpiAddonPath } from '../ts';
import { plannedDecaySteps } from '../ts/cli/distributed';
import { writeCheckpointValues } from '../ts/train/checkpoint';
import { idxBytes, tempDir } from './helpers/data-files';

const root = path.join(__dirname, '..');
const main = path.join(root, 'dist', 'ts', 'cli', 'main.js');
const bin = path.join(root, 'dist', 'ts', 'cli', 'report.js'); // package.json's bin: `npx synthgrad`
const { dir, write } = tempDir('synthgrad-distributed-cli-');

/** `count` images [4, 4] with labels i % 3. */
function idxPair(prefix: string, count: number): string[] {
  const values = Array.from({ length: count * 16 }, (_, i) => (i * 37 + (i >> 4) * 11) % 256);
  return [
    write(`${prefix}-images`, idxBytes([count, 4, 4], values)),
    write(
      `${prefix}-labels`,
      idxBytes(
        [count],
        Array.from({ length: count }, (_, i) => i % 3),
      ),
    ),
  ];
}
const data = `idx:${[...idxPair('train', 64), ...idxPair('test', 20)].join(',')}`;
const flags = ['--data', data, '--method', 'cdni', '--hidden', '8,8', '--batch-size', '16', '--epochs', '2', '--device', 'cpu'];

interface Run {
  status: number | null;
  out: string;
}
const env = { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1' };
function node(args: string[], extraEnv: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...env, ...extraEnv } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
function mpirun(ranks: number, command: string[]): Run {
  const r = spawnSync('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), ...command], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 150_000,
    env,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
/** The {"type":"final"} record of a --json run (rank 0's, under mpirun), less its time. */
function final(r: Run): Record<string, unknown> {
  if (r.status !== 0) throw new Error(`the run exited with ${r.status}:\n${r.out}`);
  const lines = r.out.split('\n').filter((l) => l.startsWith('{"type":"final"'));
  expect(lines).toHaveLength(1);
  const { seconds, ...rest } = JSON.parse(lines[0]) as Record<string, unknown>;
  expect(typeof seconds).toBe('number');
  return rest;
}

const missing = (() => {
  if (!fs.existsSync(main)) return `${main} is missing (run 'npx tsc -p tsconfig.json')`;
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) return 'mpirun is not installed';
  if (!fs.existsSync(mpiAddonPath())) return `the MPI addon ${mpiAddonPath()} is not built`;
  return undefined;
})();
if (missing) console.log(`test/distributed-cli.test.ts: skipping the mpirun runs: ${missing} (bash scripts/install-mpi.sh)`);

(missing ? describe.skip : describe)('the CLI under mpirun (--oversubscribe)', () => {
  jest.setTimeout(400_000);

  test('npx synthgrad train --placement 0,1,2 on 3 ranks (lockstep, --pipeline 2, --p-update 0.5, both, --unlock), npm start -- on 2: the one-process result', () => {
    const one = final(node([main, ...flags, '--json']));
    expect(one).toMatchObject({ type: 'final', count: 20, steps: 8 });
    const three = mpirun(3, [process.execPath, bin, 'train', ...flags, '--placement', '0,1,2']);
    expect(three.status).toBe(0);
    expect(three.out).toMatch(
      /synthgrad: 3 MPI ranks \(Open MPI v[\d.]+, transport .*synthgrad_mpi\.node\), h and δ over MPI \(--transport auto\), device cpu on each/,
    );
    expect(three.out).toMatch(/rank 0 runs module 1; rank 1 runs module 2; rank 2 runs module 3/);
    expect(three.out).toMatch(/rank 2: 8 steps, last loss \d\.\d{4}/);
    expect(three.out).toMatch(/final test accuracy: \d+\.\d\d% \(20 images\)/);
    // The test loss in full: the training (every weight) and the evaluation are the one process's, bit for bit.
    expect(final(mpirun(3, [process.execPath, bin, 'train', ...flags, '--placement', '0,1,2', '--json']))).toEqual(one);
    expect(final(mpirun(2, ['npm', '--prefix', root, 'start', '--silent', '--', ...flags, '--placement', '0,1,0', '--json']))).toEqual(one);
    // The pipelined schedule, stochastic updates, both, and the complete unlock too (each against its own one-process run).
    for (const schedule of [['--pipeline', '2'], ['--p-update', '0.5'], ['--pipeline', '2', '--p-update', '0.5'], ['--unlock']]) {
      const alone = final(node([main, ...flags, ...schedule, '--json']));
      expect(alone).not.toEqual(one);
      expect(final(mpirun(3, [process.execPath, bin, 'train', ...flags, ...schedule, '--placement', '0,1,2', '--json']))).toEqual(alone);
    }
  });

  test('--checkpoint DIR: 5 steps saved every 3, then the same command resumes to the uninterrupted result', () => {
    const one = final(node([main, ...flags, '--json']));
    const ckpt = ['--placement', '0,1,2', '--checkpoint', path.join(dir, 'run'), '--save-every', '3', '--json'];
    final(mpirun(3, [process.execPath, bin, 'train', ...flags, ...ckpt, '--steps', '5']));
    expect(fs.readdirSync(path.join(dir, 'run')).filter((f) => f.startsWith('rank-0.'))).toEqual([
      'rank-0.step-3.ckpt',
      'rank-0.step-5.ckpt',
    ]);
    expect(final(mpirun(3, [process.execPath, bin, 'train', ...flags, ...ckpt]))).toEqual({ ...one, resumedFrom: 5 });
    // Another learning rate: refused, naming the flag.
    const r = mpirun(3, [process.execPath, bin, 'train', ...flags, ...ckpt, '--lr', '0.01']);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(
      /error: rank \d: fit: cannot resume from .*run: rank 0's checkpoint .* was saved with --lr 0\.001, this run has 0\.01/,
    );
  });

  test('a finished run given more --epochs goes on, keeping its learning-rate plan: as the one-process CLI', () => {
    const file = path.join(dir, 'one-epoch.ckpt');
    const ranksDir = path.join(dir, 'one-epoch');
    const once = (extra: string[]) => [...flags, '--epochs', '1', ...extra];
    const twice = (extra: string[]) => [...flags, '--epochs', '2', ...extra, '--json'];
    final(node([main, ...once(['--checkpoint', file, '--json'])]));
    const alone = final(node([main, ...twice(['--checkpoint', file])]));
    expect(alone).toMatchObject({ steps: 8, resumedFrom: 4 });
    // The comparison sees the plan: a fresh 2-epoch run decays at other steps.
    const { resumedFrom: _r, ...extended } = alone;
    expect(final(node([main, ...twice([])]))).not.toEqual(extended);
    const ranks = ['--placement', '0,1,2', '--checkpoint', ranksDir];
    final(mpirun(3, [process.execPath, bin, 'train', ...once([...ranks, '--json'])]));
    expect(final(mpirun(3, [process.execPath, bin, 'train', ...twice(ranks)]))).toEqual(alone);
  });

  test('validation after every epoch, --diagnose-every and --log-dir: the one-process records and log; synthgrad report reads it', () => {
    const records = (r: Run, type: string) => {
      if (r.status !== 0) throw new Error(`the run exited with ${r.status}:\n${r.out}`);
      return r.out
        .split('\n')
        .filter((l) => l.startsWith(`{"type":"${type}"`))
        .map((l) => {
          const { seconds: _s, samplesPerSecond: _r, ...rest } = JSON.parse(l) as Record<string, unknown>;
          return rest;
        });
    };
    const oneLog = path.join(dir, 'log-one');
    const threeLog = path.join(dir, 'log-three');
    const diagnose = ['--diagnose-every', '3', '--json'];
    const one = node([main, ...flags, ...diagnose, '--log-dir', oneLog]);
    const ranks = ['--placement', '0,1,2', '--transport', 'mpi'];
    const three = mpirun(3, [process.execPath, bin, 'train', ...flags, ...ranks, ...diagnose, '--log-dir', threeLog]);
    // Each epoch's mean training loss and validation, and the synthesizers' diagnostics (steps 3 and 6), bit for bit.
    expect(records(one, 'epoch')).toHaveLength(2);
    expect(records(three, 'epoch')).toEqual(records(one, 'epoch'));
    expect(records(one, 'step').map((r) => [r.step, (r.diagnostics as unknown[]).length])).toEqual([
      [3, 2],
      [6, 2],
    ]);
    expect(records(three, 'step')).toEqual(records(one, 'step'));
    expect(records(three, 'final')).toEqual(records(one, 'final'));
    // The same log: every step's loss and learning rate, the epochs' validation.
    const read = (log: string, name: string) =>
      fs
        .readFileSync(path.join(log, `${name}.jsonl`), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const fields = (rows: Record<string, unknown>[], keys: string[]) => rows.map((r) => keys.map((k) => r[k]));
    expect(fields(read(threeLog, 'steps'), ['step', 'epoch', 'loss', 'lr'])).toEqual(
      fields(read(oneLog, 'steps'), ['step', 'epoch', 'loss', 'lr']),
    );
    expect(read(threeLog, 'steps')).toHaveLength(8);
    const epochKeys = ['epoch', 'step', 'steps', 'loss', 'validationLoss', 'validationAccuracy'];
    expect(fields(read(threeLog, 'epochs'), epochKeys)).toEqual(fields(read(oneLog, 'epochs'), epochKeys));
    const synthesizerKeys = ['step', 'module', 'synthesizerLoss', 'cosine', 'normRatio', 'targetCosine'];
    expect(fields(read(threeLog, 'synthesizers'), synthesizerKeys)).toEqual(fields(read(oneLog, 'synthesizers'), synthesizerKeys));
    expect(read(threeLog, 'synthesizers')).toHaveLength(4);
    const config = JSON.parse(fs.readFileSync(path.join(threeLog, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ ranks: 3, placement: [0, 1, 2], handOffs: 'mpi', command: 'npm start' });
    expect(JSON.parse(fs.readFileSync(path.join(threeLog, 'result.json'), 'utf8'))).toMatchObject({ steps: 8 });
    // Only the reporting rank wrote it: one TensorBoard file.
    expect(fs.readdirSync(threeLog).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    const page = node([bin, 'report', threeLog]);
    expect(page.status).toBe(0);
    expect(fs.readFileSync(path.join(threeLog, 'report.html'), 'utf8')).toContain('log-three');
  });

  test('SIGINT to mpirun mid-run: every rank stops after the same step, saves, and the same command resumes', async () => {
    // Epochs of 1024 steps, so that the reporting rank prints a few lines a second: after a Ctrl-C,
    // mpirun stops reading the ranks' output, and a rank whose output is full waits until killed.
    const big = `idx:${[...idxPair('big-train', 16384), ...idxPair('big-test', 20)].join(',')}`;
    const ckpt = path.join(dir, 'stopped');
    const args = [
      process.execPath,
      bin,
      'train',
      ...flags,
      '--data',
      big,
      '--epochs',
      '1000',
      '--placement',
      '0,1,2',
      '--checkpoint',
      ckpt,
    ];
    // Open MPI's mpirun gives the ranks a SIGTERM and then, odls_base_sigkill_timeout seconds later, a SIGKILL (default 1 s).
    const child = spawn('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '3', ...args], {
      cwd: dir,
      env: { ...env, OMPI_MCA_odls_base_sigkill_timeout: '6' },
    });
    let out = '';
    const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const bounded = setTimeout(() => child.kill('SIGKILL'), 120_000);
    await new Promise<void>((resolve) => {
      const read = (b: Buffer) => {
        out += b.toString();
        if (/step 1\/\d+/.test(out)) resolve();
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
      child.on('close', () => resolve());
    });
    child.kill('SIGINT');
    const status = await ended;
    clearTimeout(bounded);
    expect(status).not.toBe(0); // Open MPI's own status for a job it ended (1); a rank's is 143
    expect(out).toContain('SIGTERM: stopping after the steps in flight and saving the checkpoint');
    const m = new RegExp(`stopped by SIGTERM: saved ${ckpt} at step (\\d+); run the same command again to resume`).exec(out);
    expect(m).not.toBeNull();
    const step = Number(m![1]);
    for (const r of [0, 1, 2]) expect(fs.readdirSync(ckpt)).toContain(`rank-${r}.step-${step}.ckpt`);
    // Resumed to two steps more: the one-process run of as many steps, bit for bit.
    const more = ['--steps', String(step + 2), '--json'];
    const alone = final(node([main, ...flags, '--data', big, '--epochs', '1000', ...more]));
    expect(final(mpirun(3, [...args, ...more]))).toEqual({ ...alone, resumedFrom: step });
  });

  test('more ranks in --placement than mpirun started: an error naming -np', () => {
    const r = mpirun(2, [process.execPath, main, ...flags, '--placement', '0,1,2']);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain(
      "error: --placement names rank 2, but this run has 2 process(es): start it with mpirun -np 3 (each rank in --placement must be below mpirun's -np)",
    );
  });
});

test("more --epochs keep the decay plan of the newest rank file there, any rank's (a directory per host may lack rank 0's)", async () => {
  const saved = (file: string, steps: number[]) =>
    writeCheckpointValues(path.join(dir, file), [], { distributed: { config: { 'lr decay steps': steps } } });
  fs.mkdirSync(path.join(dir, 'host-b'));
  await saved('host-b/rank-2.step-3.ckpt', [4, 6]);
  await saved('host-b/rank-2.step-5.ckpt', [8, 12]);
  await saved('host-b/rank-1.step-5.ckpt', [8, 12]);
  expect(await plannedDecaySteps(path.join(dir, 'host-b'))).toEqual([8, 12]);
  expect(await plannedDecaySteps(path.join(dir, 'no-such-dir'))).toBeUndefined();
});

describe('--placement errors (no mpirun)', () => {
  const error = (args: string[], extraEnv: Record<string, string> = {}) => {
    const r = node([main, ...args], extraEnv);
    expect(r.status).toBe(1);
    return r.out.trim();
  };

  test('a bad list, a method without synthesizers, and what does not run over ranks yet', () => {
    expect(error([...flags, '--placement', '0,x'])).toBe(
      "error: --placement must list a rank (0, 1, ...) for each module, such as 0,1,2, got '0,x'",
    );
    expect(error(['--placement', '0,1'])).toBe('error: --placement applies to dni and cdni only (--method backprop has no synthesizers)');
    expect(error([...flags, '--placement', '0,1,2', '--unlock', '--pipeline', '1'])).toBe(
      'error: --unlock needs the lockstep schedule: drop --pipeline 1',
    );
    expect(error([...flags, '--placement', '0,1,2', '--graph'])).toBe('error: --graph does not run over ranks (--placement) yet');
  });

  test('--transport: its values, only with --placement, nccl only on a GPU (said before MPI starts)', () => {
    expect(error([...flags, '--transport', 'nccl'])).toBe(
      'error: --transport nccl applies to runs over MPI ranks only: add --placement (one rank per module)',
    );
    expect(error([...flags, '--placement', '0,1,2', '--transport', 'tcp'])).toBe("error: --transport must be auto, mpi or nccl, got 'tcp'");
    if (!fs.existsSync(mpiAddonPath())) return; // the addon's error comes first
    expect(error([...flags, '--placement', '0,1,2', '--transport', 'nccl'])).toBe(
      'error: --transport nccl moves GPU buffers, but the device is cpu: use --transport mpi (host buffers) or auto on the CPU',
    );
  });

  test('without the MPI addon: says what to install', () => {
    const out = error([...flags, '--placement', '0,1,2'], { SYNTHGRAD_MPI_ADDON: path.join(dir, 'no-such-mpi-addon.node') });
    expect(out).toMatch(
      /^error: --placement trains over MPI ranks, but the MPI transport is not built \(no .*no-such-mpi-addon\.node\): install Open MPI/,
    );
    expect(out).toContain('bash scripts/install-mpi.sh');
  });

  test('a rank for each module: the count of modules the flags cut the network into', () => {
    // Checked before MPI starts (the addon need not be there).
    const out = error([...flags, '--placement', '0,1'], { SYNTHGRAD_MPI_ADDON: mpiAddonPath() });
    if (fs.existsSync(mpiAddonPath()))
      expect(out).toBe(
        'error: --placement lists 2 rank(s), but --method cdni cuts this network into 3 modules (--at every-activation): give one rank per module, such as 0,1,2',
      );
    else expect(out).toMatch(/the MPI transport is not built/);
  });

  test('--log-dir holding a run log: refused unless --checkpoint DIR holds rank files (an empty DIR is no run to resume)', () => {
    if (!fs.existsSync(mpiAddonPath())) return; // the addon's error comes first
    const logDir = path.join(dir, 'log-taken');
    write('log-taken/config.json', Buffer.from('{}'));
    const ckpt = path.join(dir, 'ckpt-empty'); // what a run that died before its first save leaves
    fs.mkdirSync(ckpt);
    const args = [...flags, '--placement', '0,1,2', '--checkpoint', ckpt, '--log-dir', logDir];
    expect(error(args)).toBe(
      `error: fit: 'logDir' ${logDir} already holds a run log; give each run its own directory (or resume it through 'checkpoint')`,
    );
    // With a rank's file there, the run resumes that log: it goes on to MPI (one process here).
    write('ckpt-empty/rank-1.step-4.ckpt', Buffer.from('not read before MPI starts'));
    expect(error(args)).toMatch(/^error: --placement names rank 2, but this run has 1 process\(es\)/);
  });

  test('without mpirun, --placement 0,1,2 is a run of one process: an error naming mpirun -np 3', () => {
    if (!fs.existsSync(mpiAddonPath())) return; // the addon's error is the test above
    expect(error([...flags, '--placement', '0,1,2'])).toBe(
      "error: --placement names rank 2, but this run has 1 process(es) (it was not started by mpirun): start it with mpirun -np 3 (each rank in --placement must be below mpirun's -np)",
    );
  });
});
