// A distributed run's per-rank checkpoints merged into one one-process checkpoint, and resharded
// for another placement or rank count (ts/distributed/reshard.ts), with K ranks in this one
// process (test/helpers/local-transport.ts): the merged file of step t is, byte for byte, the
// file Trainer.fit writes at step t, and a run resumed from either continues as the
// uninterrupted one-process run. `synthgrad checkpoint` (ts/cli/checkpoint.ts) is run here too,
// and at the end a run over mpirun (3 ranks) resharded and resumed over 2 ranks (skipped, saying
// why, where mpirun or the MPI addon is missing, as in test/distributed.test.ts).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Trainer, distribute, mergeRankCheckpoints, mpiAddonPath, reshardRankCheckpoints } from '../ts';
import type { DistributedFitOptions } from '../ts';
import { readCheckpoint, writeCheckpointValues } from '../ts/train/checkpoint';
import { data, network, options, tempDirs } from './helpers/tiny-decoupled';
import { expectSame, localTransports, ownedBytes, stateBytes } from './helpers/local-transport';

const root = path.join(__dirname, '..');
const tempDir = tempDirs('synthgrad-reshard-');
const train = data();
const dispose = (ds: { dispose(): void }[]) => ds.forEach((d) => d.dispose());

/** `placement` over its ranks in this process; every rank's fit, awaited together. */
async function ranks(placement: number[], fit: DistributedFitOptions, extra: object = {}, size = Math.max(...placement) + 1) {
  const dists = localTransports(size).map((transport) => distribute(network(extra), { ...options, placement, transport }));
  const results = await Promise.all(dists.map((d) => d.fit(train, fit)));
  return { dists, results };
}

/** The one-process run of `steps` steps, checkpointed every `every` into `file` (written when it ends too). */
async function oneProcess(steps: number, extra: object = {}, checkpoint?: { path: string; every: number }) {
  const net = network(extra);
  const trainer = new Trainer(net, options);
  const result = await trainer.fit(train, { steps, batchSize: 16, ...(checkpoint ? { checkpoint } : {}) });
  return { trainer, net, result, bytes: await stateBytes(net) };
}

const file = (dir: string, r: number, t: number) => path.join(dir, `rank-${r}.step-${t}.ckpt`);

describe('merged per-rank checkpoints (in-process ranks)', () => {
  // Steps 4 (mid-epoch: 40 rows in 16-row batches) and 3 (an epoch just ended), cDNI, stochastic
  // updates, λ > 0, the complete unlock: each merged file is the one-process checkpoint's bytes.
  test.each([
    ['DNI, placement 0,1,2, step 4 (mid-epoch)', [0, 1, 2], 4, {}],
    ['cDNI, placement 0,1,0, step 3 (end of an epoch)', [0, 1, 0], 3, { synthesizer: { hidden: [8], conditioned: true } }],
    ['pUpdate 0.5 and λ 0.5, placement 1,0,1, step 5', [1, 0, 1], 5, { schedule: { kind: 'lockstep', pUpdate: 0.5 }, lambda: 0.5 }],
    ['the complete unlock, placement 0,1,2, step 4', [0, 1, 2], 4, { unlock: { hidden: [10] } }],
  ] as const)('%s: the merged file equals the one-process checkpoint of that step, byte for byte', async (_, placement, step, extra) => {
    const dir = tempDir();
    const run = await ranks([...placement], { steps: step, batchSize: 16, checkpoint: { dir, every: step } }, extra);
    dispose(run.dists);
    const merged = path.join(tempDir(), 'merged.ckpt');
    const saved = await mergeRankCheckpoints(dir, merged);
    expect(saved.step).toBe(step);
    const want = path.join(tempDir(), 'one.ckpt');
    const one = await oneProcess(step, extra, { path: want, every: step });
    one.trainer.dispose();
    const got = fs.readFileSync(merged);
    const wanted = fs.readFileSync(want);
    expect(got.length).toBeGreaterThan(1000);
    // What differs, if anything, said first: the host record, the tensors' list; then every byte.
    const header = (b: Buffer) =>
      JSON.parse(b.subarray(44, 44 + b.readUInt32LE(8)).toString('utf8')) as { host: unknown; tensors: unknown[] };
    expect(header(got).host).toEqual(header(wanted).host);
    expect(header(got).tensors).toEqual(header(wanted).tensors);
    expect(got.equals(wanted)).toBe(true);
  });

  test('the merged checkpoint resumes in one process (Trainer.fit) as the uninterrupted one-process run; a rank file alone is refused', async () => {
    const dir = tempDir();
    dispose((await ranks([0, 1, 2], { steps: 4, batchSize: 16, checkpoint: { dir, every: 2 } })).dists);
    // What a user could do before: load a rank's file in one process. It holds one module: refused.
    const alone = new Trainer(network(), options);
    await expect(alone.load(file(dir, 0, 4))).rejects.toThrow(`checkpoint: ${file(dir, 0, 4)} has no trainer record`);
    alone.dispose();
    const merged = path.join(tempDir(), 'merged.ckpt');
    await mergeRankCheckpoints(dir, merged, { step: 4 });
    const net = network();
    const trainer = new Trainer(net, options);
    const result = await trainer.fit(train, { steps: 8, batchSize: 16, checkpoint: { path: merged, every: 100 } });
    expect(result.resumedFrom).toBe(4);
    const one = await oneProcess(8);
    expectSame(await stateBytes(net), one.bytes);
    // The control: one step fewer differs.
    const seven = await oneProcess(7);
    expect(seven.bytes.some((b, i) => !b.equals(one.bytes[i]))).toBe(true);
    // load() (to evaluate the trained model) takes it too: the weights of step 8, from the checkpoint just written.
    const evaluator = new Trainer(network(), options);
    await evaluator.load(merged);
    expect(await evaluator.evaluate(train)).toEqual(await one.trainer.evaluate(train));
    dispose([trainer, one.trainer, seven.trainer, evaluator]);
  });
});

describe('resharded per-rank checkpoints (in-process ranks)', () => {
  test.each([
    ['3 ranks 0,1,2 to 2 ranks 0,0,1', [0, 1, 2], [0, 0, 1], undefined, {}],
    ['2 ranks 0,0,1 to 3 ranks 2,1,0', [0, 0, 1], [2, 1, 0], undefined, { synthesizer: { hidden: [8], conditioned: true } }],
    ['3 ranks to 4 ranks, one idle: 0,1,3', [0, 1, 2], [0, 1, 3], 4, { unlock: { hidden: [10] } }],
  ] as const)('%s: resumes to step 8 as the uninterrupted one-process run', async (_, from, to, size, extra) => {
    const dir = tempDir();
    dispose((await ranks([...from], { steps: 4, batchSize: 16, checkpoint: { dir, every: 2 } }, extra)).dists);
    const out = path.join(tempDir(), 'resharded');
    await reshardRankCheckpoints(dir, out, { placement: [...to], ranks: size });
    const count = size ?? Math.max(...to) + 1;
    expect(fs.readdirSync(out).sort()).toEqual([...Array(count).keys()].map((r) => `rank-${r}.step-4.ckpt`));
    const b = await ranks([...to], { steps: 8, batchSize: 16, checkpoint: { dir: out, every: 2 } }, extra, count);
    expect(b.results.map((r) => r.resumedFrom)).toEqual(Array(count).fill(4));
    const one = await oneProcess(8, extra);
    expectSame(await ownedBytes(b.dists), one.bytes);
    // The resharded run's own checkpoints merge into the one-process run's state as well.
    const merged = path.join(tempDir(), 'merged.ckpt');
    await mergeRankCheckpoints(out, merged);
    const net = network(extra);
    const evaluator = new Trainer(net, options);
    await evaluator.load(merged);
    expectSame(await stateBytes(net), one.bytes);
    dispose([...b.dists, one.trainer, evaluator]);
  });
});

describe('refusals', () => {
  let dir: string;
  beforeAll(async () => {
    dir = tempDir();
    dispose((await ranks([0, 1, 2], { steps: 4, batchSize: 16, checkpoint: { dir, every: 2 } })).dists);
  });
  /** A copy of the run's files to damage. */
  const copy = () => {
    const d = tempDir();
    for (const f of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, f), path.join(d, f));
    return d;
  };
  const out = () => path.join(tempDir(), 'merged.ckpt');

  test('a missing rank file, files of different steps, no files', async () => {
    const d = copy();
    fs.rmSync(file(d, 1, 4));
    await expect(mergeRankCheckpoints(d, out(), { step: 4 })).rejects.toThrow(
      `checkpoint: rank 1's file of step 4 (${file(d, 1, 4)}) is missing: rank 1 has step 2`,
    );
    // Without a step: the latest step every rank saved (2).
    expect((await mergeRankCheckpoints(d, out())).step).toBe(2);
    fs.rmSync(file(d, 0, 2));
    await expect(mergeRankCheckpoints(d, out())).rejects.toThrow(
      `checkpoint: the ranks' files in ${d} have no step in common: rank 0 has step 4; rank 1 has step 2; rank 2 has steps 2, 4`,
    );
    await expect(mergeRankCheckpoints(d, out(), { step: 6 })).rejects.toThrow(/rank 0's file of step 6 .* is missing: rank 0 has step 4/);
    await expect(mergeRankCheckpoints(d, out(), { step: 0 })).rejects.toThrow("checkpoint: 'step' must be a positive integer, got 0");
    await expect(mergeRankCheckpoints(tempDir(), out())).rejects.toThrow(/holds no per-rank checkpoint/);
    await expect(mergeRankCheckpoints(path.join(d, 'nothing'), out())).rejects.toThrow(/cannot read the directory .*nothing/);
  });

  test('files of different runs', async () => {
    const d = copy();
    const other = tempDir();
    dispose((await ranks([0, 1, 2], { steps: 4, batchSize: 16, checkpoint: { dir: other, every: 2 } })).dists);
    fs.copyFileSync(file(other, 1, 4), file(d, 1, 4));
    await expect(mergeRankCheckpoints(d, out(), { step: 4 })).rejects.toThrow(
      new RegExp(`the files come from different runs: rank 0's from run [0-9a-f]{16}, .*rank-1\\.step-4\\.ckpt from run [0-9a-f]{16}`),
    );
    // A fourth rank's file in a run of 3.
    fs.copyFileSync(file(d, 2, 4), file(d, 3, 4));
    await expect(mergeRankCheckpoints(d, out(), { step: 4 })).rejects.toThrow(
      /holds files of step 4 of rank 3, but rank 0's .* was saved by a run of 3 ranks: files of different runs/,
    );
    // A one-process checkpoint named as a rank's file.
    const f = copy();
    const onePath = path.join(tempDir(), 'one.ckpt');
    (await oneProcess(4, {}, { path: onePath, every: 4 })).trainer.dispose();
    fs.copyFileSync(onePath, file(f, 1, 4));
    await expect(mergeRankCheckpoints(f, out(), { step: 4 })).rejects.toThrow(
      `checkpoint: ${file(f, 1, 4)} is not a distributed run's checkpoint (no rank record)`,
    );
    // A file renamed to another rank.
    const e = copy();
    fs.copyFileSync(file(e, 2, 4), file(e, 1, 4));
    await expect(mergeRankCheckpoints(e, out(), { step: 4 })).rejects.toThrow(`checkpoint: ${file(e, 1, 4)} was written by rank 2`);
  });

  test('a damaged file: the checkpoint reader names it and what fails', async () => {
    const d = copy();
    const bytes = fs.readFileSync(file(d, 2, 4));
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(file(d, 2, 4), bytes);
    await expect(reshardRankCheckpoints(d, path.join(tempDir(), 'r'), { placement: [0, 0, 1] })).rejects.toThrow(
      new RegExp(
        `checkpoint: ${file(d, 2, 4).replace(/[.]/g, '\\.')} is not a valid synthgrad checkpoint \\(tensor '.*' fails its checksum`,
      ),
    );
  });

  test("a file that lacks a part's last tensor, or a whole part: refused, naming the file and what is missing", async () => {
    /** A copy whose rank 1 file of step 4 (modules 2 and synthesizer 2) is rewritten without the tensors `drop` picks. */
    const without = async (drop: (name: string) => boolean) => {
      const d = copy();
      const saved = await readCheckpoint(file(d, 1, 4));
      const kept = [...saved.tensors].filter(([name]) => !drop(name)).map(([name, t]) => ({ name, ...t }));
      expect(kept.length).toBeLessThan(saved.tensors.size);
      fs.rmSync(file(d, 1, 4));
      await writeCheckpointValues(file(d, 1, 4), kept, saved.host);
      return d;
    };
    const names = [...(await readCheckpoint(file(dir, 1, 4))).tensors.keys()];
    const lastOf = (part: string) =>
      `${part}.${names.filter((n) => new RegExp(`^${part.replace('.', '\\.')}\\.\\d+$`).test(n)).length - 1}`;
    let d = await without((n) => n === lastOf('module2'));
    await expect(mergeRankCheckpoints(d, out(), { step: 4 })).rejects.toThrow(
      new RegExp(`^checkpoint: ${file(d, 1, 4).replace(/[.]/g, '\\.')} lacks state tensors of module 2: it holds \\d+ \\(module2\\.\\*`),
    );
    d = await without((n) => n.startsWith('synthesizer2.'));
    await expect(reshardRankCheckpoints(d, path.join(tempDir(), 'r'), { placement: [0, 0, 1] })).rejects.toThrow(
      `checkpoint: ${file(d, 1, 4)} lacks every synthesizer2.* tensor`,
    );
    d = await without((n) => n.startsWith('module2.optimizer.'));
    await expect(mergeRankCheckpoints(d, out(), { step: 4 })).rejects.toThrow(
      `checkpoint: ${file(d, 1, 4)} lacks every module2.optimizer.* tensor (the other modules' files have theirs)`,
    );
  });

  test('an output that exists is not replaced unless asked; the input directory is never the output', async () => {
    const merged = out();
    fs.writeFileSync(merged, 'keep me');
    await expect(mergeRankCheckpoints(dir, merged)).rejects.toThrow(`checkpoint: ${merged} exists; refusing to replace it`);
    expect(fs.readFileSync(merged, 'utf8')).toBe('keep me');
    await mergeRankCheckpoints(dir, merged, { overwrite: true });
    expect(fs.statSync(merged).size).toBeGreaterThan(1000);
    const target = tempDir();
    fs.writeFileSync(path.join(target, 'rank-0.step-9.ckpt'), 'old');
    fs.writeFileSync(path.join(target, 'notes.txt'), 'mine');
    await expect(reshardRankCheckpoints(dir, target, { placement: [0, 0, 1] })).rejects.toThrow(
      `checkpoint: ${target} already holds per-rank checkpoints (rank-0.step-9.ckpt); refusing to replace them`,
    );
    await reshardRankCheckpoints(dir, target, { placement: [0, 0, 1], overwrite: true });
    expect(fs.readdirSync(target).sort()).toEqual(['notes.txt', 'rank-0.step-4.ckpt', 'rank-1.step-4.ckpt']);
    await expect(reshardRankCheckpoints(dir, dir, { placement: [0, 0, 1], overwrite: true })).rejects.toThrow(
      `checkpoint: the output directory ${dir} is the input directory`,
    );
  });

  test('a placement that does not fit the run', async () => {
    const to = path.join(tempDir(), 'r');
    await expect(reshardRankCheckpoints(dir, to, { placement: [0, 1] })).rejects.toThrow(
      "checkpoint: the new placement must list a rank for each of the run's 3 modules, got [0,1]",
    );
    await expect(reshardRankCheckpoints(dir, to, { placement: [0, 1, 2], ranks: 2 })).rejects.toThrow(
      "checkpoint: the new placement's module 3 has rank 2, not a rank in [0, 1] (2 ranks)",
    );
    await expect(reshardRankCheckpoints(dir, to, { placement: [0, -1, 0] })).rejects.toThrow(/module 2 has rank -1/);
    expect(fs.existsSync(to)).toBe(false);
  });
});

describe('synthgrad checkpoint (the CLI)', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/report.js'), 'checkpoint', ...args], { encoding: 'utf8', timeout: 60_000 });

  test('merge and reshard write what the functions write; refusals exit 1 with the reason', async () => {
    const dir = tempDir();
    dispose((await ranks([0, 1, 2], { steps: 4, batchSize: 16, checkpoint: { dir, every: 2 } })).dists);
    const merged = path.join(tempDir(), 'merged.ckpt');
    let r = cli('merge', dir, '--step', '4', '--out', merged);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^merged step 4 of run [0-9a-f]{16} \\(3 ranks, placement 0,1,2\\) into ${merged}`));
    const byFunction = path.join(tempDir(), 'f.ckpt');
    await mergeRankCheckpoints(dir, byFunction, { step: 4 });
    expect(fs.readFileSync(merged).equals(fs.readFileSync(byFunction))).toBe(true);
    r = cli('merge', dir, '--out', merged);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(`checkpoint: ${merged} exists; refusing to replace it (remove it, or allow overwriting: --force)`);
    expect(cli('merge', dir, '--out', merged, '--force').status).toBe(0);
    const out = path.join(tempDir(), 'two');
    r = cli('reshard', dir, '--placement', '0,0,1', '--out', out);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(`resharded step 4 of run`);
    expect(fs.readdirSync(out).sort()).toEqual(['rank-0.step-4.ckpt', 'rank-1.step-4.ckpt']);
    for (const [args, message] of [
      [['merge', dir], /checkpoint merge: give --out FILE/],
      [['reshard', dir, '--out', out], /checkpoint reshard: give --placement/],
      [['merge', dir, '--out', merged, '--step', 'x'], /--step must be a positive integer, got 'x'/],
      [['split', dir], /checkpoint: the command is merge or reshard, got 'split'/],
      [['merge', dir, '--out', merged, '--bogus'], /checkpoint merge: unknown option '--bogus'/],
    ] as const) {
      r = cli(...args);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    r = cli('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: synthgrad checkpoint merge DIR/);
  });
});

/** Why the mpirun run cannot run here, or undefined when it can. */
function mpiMissing(): string | undefined {
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) return 'mpirun is not installed';
  if (!fs.existsSync(mpiAddonPath())) return `the MPI addon ${mpiAddonPath()} is not built`;
  if (!fs.existsSync(path.join(root, 'dist/ts/index.js'))) return "dist/ts is missing (run 'npx tsc -p tsconfig.json')";
  return undefined;
}
const noMpi = mpiMissing();
if (noMpi) console.log(`test/distributed-reshard.test.ts: skipping the mpirun run: ${noMpi} (bash scripts/install-mpi.sh)`);

(noMpi ? describe.skip : describe)('over MPI ranks (mpirun --oversubscribe)', () => {
  // test/fixtures/distributed-run.js trains this file's network on this file's data (the same seeds).
  const fixture = path.join(__dirname, 'fixtures', 'distributed-run.js');
  const run = (command: string, args: string[]) => {
    const r = spawnSync(command, args, {
      encoding: 'utf8',
      timeout: 150_000,
      env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1' },
    });
    if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const mpirun = (ranks: number, dir: string, config: object) =>
    run('mpirun', [
      '--allow-run-as-root',
      '--oversubscribe',
      '-np',
      String(ranks),
      process.execPath,
      fixture,
      'mpi',
      dir,
      JSON.stringify(config),
    ]);

  test('trained on 3 ranks (0,1,2) to step 4, resharded, resumed on 2 ranks (0,0,1) to 8: the uninterrupted one-process run; merged, too', async () => {
    const dir = tempDir();
    const saved = path.join(dir, 'three');
    mpirun(3, dir, { placement: [0, 1, 2], steps: 4, checkpoint: { dir: saved, every: 2 } });
    const moved = path.join(dir, 'two');
    const said = run(process.execPath, [
      path.join(root, 'dist/ts/cli/report.js'),
      'checkpoint',
      'reshard',
      saved,
      '--placement',
      '0,0,1',
      '--out',
      moved,
    ]);
    expect(said).toMatch(/^resharded step 4 of run [0-9a-f]{16} \(3 ranks, placement 0,1,2\) into .*: 2 ranks, placement 0,0,1/);
    const out = mpirun(2, dir, { placement: [0, 0, 1], steps: 8, checkpoint: { dir: moved, every: 2 } });
    for (const rank of [0, 1])
      expect(out).toMatch(new RegExp(`rank ${rank}: 8 steps, modules ${rank === 0 ? '0,1' : '2'}, .*resumed from step 4`));
    run(process.execPath, [fixture, 'single', dir, JSON.stringify({ steps: 8 })]);
    const want = [0, 1, 2].map((i) => fs.readFileSync(path.join(dir, `single-module${i}.bin`)));
    expectSame(
      [0, 1, 2].map((i) => fs.readFileSync(path.join(dir, `mpi-module${i}.bin`))),
      want,
    );
    // The 3-rank run's step 4, merged and resumed here in one process to step 8: the same state.
    const merged = path.join(dir, 'merged.ckpt');
    await mergeRankCheckpoints(saved, merged);
    const net = network();
    const trainer = new Trainer(net, options);
    expect((await trainer.fit(train, { steps: 8, batchSize: 16, checkpoint: { path: merged, every: 100 } })).resumedFrom).toBe(4);
    expectSame(await stateBytes(net), want);
    trainer.dispose();
  });

  test('the CLI: trained with --placement 0,1,2, resharded to 0,0,1 and resumed, merged: the one-process CLI checkpoint, byte for byte', () => {
    const dir = tempDir();
    const main = path.join(root, 'dist/ts/cli/main.js');
    const synthgrad = (...args: string[]) => run(process.execPath, [path.join(root, 'dist/ts/cli/report.js'), ...args]);
    const flags = ['--method', 'dni', '--hidden', '32,32', '--device', 'cpu'];
    const ranksRun = (ranks: number, placement: string, steps: number, checkpoint: string) =>
      run('mpirun', [
        ...['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, main, ...flags],
        ...['--placement', placement, '--steps', String(steps), '--checkpoint', checkpoint, '--save-every', '2'],
      ]);
    ranksRun(3, '0,1,2', 4, path.join(dir, 'three'));
    synthgrad('checkpoint', 'reshard', path.join(dir, 'three'), '--placement', '0,0,1', '--out', path.join(dir, 'two'));
    expect(ranksRun(2, '0,0,1', 6, path.join(dir, 'two'))).toMatch(/resumed after step 4/);
    synthgrad('checkpoint', 'merge', path.join(dir, 'two'), '--out', path.join(dir, 'merged.ckpt'));
    // The uninterrupted one-process run of 6 steps, saved when it ends.
    run(process.execPath, [main, ...flags, '--steps', '6', '--checkpoint', path.join(dir, 'one.ckpt')]);
    expect(fs.readFileSync(path.join(dir, 'merged.ckpt')).equals(fs.readFileSync(path.join(dir, 'one.ckpt')))).toBe(true);
    // And the 3-rank run's step 4, merged, resumes in the one-process CLI (the same flags but --placement).
    synthgrad('checkpoint', 'merge', path.join(dir, 'three'), '--out', path.join(dir, 'four.ckpt'));
    expect(run(process.execPath, [main, ...flags, '--steps', '6', '--checkpoint', path.join(dir, 'four.ckpt')])).toMatch(
      /resuming from .*four\.ckpt/,
    );
    expect(fs.readFileSync(path.join(dir, 'four.ckpt')).equals(fs.readFileSync(path.join(dir, 'one.ckpt')))).toBe(true);
  });
});
