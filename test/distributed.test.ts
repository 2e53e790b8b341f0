// distribute(): a decoupled network's modules on several MPI ranks (docs/distributed.md).
// The runs over ranks (mpirun, Open MPI) are compared with the one-process Trainer.fit bit for
// bit; they skip, saying why, where mpirun or the MPI addon (build/Release/synthgrad_mpi.node)
// is missing: `bash scripts/install-mpi.sh` installs Open MPI and builds it. The option checks
// and the error without the addon run everywhere.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Device, decouple, distribute, mlp, mpi, mpiAddonPath } from '../ts';
import type { Transport } from '../ts';

const root = path.join(__dirname, '..');
const fixture = path.join(__dirname, 'fixtures', 'distributed-run.js');
const api = path.join(root, 'dist', 'ts', 'index.js');

/** Why the MPI runs cannot run here, or undefined when they can. */
function missing(): string | undefined {
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) return 'mpirun is not installed';
  if (!fs.existsSync(mpiAddonPath())) return `the MPI addon ${mpiAddonPath()} is not built`;
  if (!fs.existsSync(api)) return `${api} is missing (run 'npx tsc -p tsconfig.json')`;
  return undefined;
}
const why = missing();
if (why)
  console.log(
    `test/distributed.test.ts: skipping the MPI runs: ${why} (bash scripts/install-mpi.sh installs Open MPI and builds the addon)`,
  );
const withMpi = why ? describe.skip : describe;

interface Run {
  status: number | null;
  output: string;
  seconds: number;
}

function mpirun(ranks: number, dir: string, config: object, env: Record<string, string> = {}, timeout = 150_000): Run {
  const started = Date.now();
  const r = spawnSync(
    'mpirun',
    ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, fixture, 'mpi', dir, JSON.stringify(config)],
    { encoding: 'utf8', timeout, env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1', ...env } },
  );
  return { status: r.status, output: `${r.stdout}\n${r.stderr}`, seconds: (Date.now() - started) / 1000 };
}

function single(dir: string, config: object): void {
  const r = spawnSync(process.execPath, [fixture, 'single', dir, JSON.stringify(config)], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`the one-process run failed:\n${r.stdout}\n${r.stderr}`);
}

const read = (dir: string, mode: string, module: number) => fs.readFileSync(path.join(dir, `${mode}-module${module}.bin`));

/** Runs `config` on one process and over `ranks` ranks; expects each module's final state to be the same bytes. */
function expectSameAsOneProcess(ranks: number, config: { placement: number[]; steps?: number; decouple?: object }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
  try {
    single(dir, config);
    const r = mpirun(ranks, dir, config);
    if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
    for (let i = 0; i < config.placement.length; i++) {
      const one = read(dir, 'single', i);
      const many = read(dir, 'mpi', i);
      expect(many.length).toBe(one.length);
      expect(many.length).toBeGreaterThan(0);
      // Buffer.equals: every byte, so every float32 bit for bit.
      if (!many.equals(one)) throw new Error(`module ${i + 1} differs from the one-process run (placement ${config.placement})`);
    }
    // Every step's loss (the last module's rank wrote them), every digit.
    const losses = fs.readFileSync(path.join(dir, 'mpi-losses.json'), 'utf8');
    expect(JSON.parse(losses)).toHaveLength(config.steps ?? 5);
    expect(losses).toBe(fs.readFileSync(path.join(dir, 'single-losses.json'), 'utf8'));
    return r.output;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

withMpi('over MPI ranks (mpirun --oversubscribe)', () => {
  jest.setTimeout(300_000);

  test('3 ranks, one module each: every module and synthesizer ends bit for bit as on one process', () => {
    const output = expectSameAsOneProcess(3, { placement: [0, 1, 2], steps: 5 });
    for (const rank of [0, 1, 2]) expect(output).toMatch(new RegExp(`rank ${rank}: 5 steps, modules ${rank}`));
  });

  test('the comparison sees a one-step difference (4 steps against 5 differ in every module)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      single(dir, { steps: 5 });
      for (let i = 0; i < 3; i++) fs.renameSync(path.join(dir, `single-module${i}.bin`), path.join(dir, `five-module${i}.bin`));
      single(dir, { steps: 4 });
      for (let i = 0; i < 3; i++) expect(read(dir, 'single', i).equals(read(dir, 'five', i))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('2 ranks, modules 1 and 3 on rank 0, cDNI with BP(λ) and warm-up: bit for bit as on one process', () => {
    // Labels go to rank 1 (its conditioned synthesizer); δ crosses ranks before the backward
    // (λ > 0), and module 3 sends δ_2 to rank 1 while rank 0 still runs module 1.
    const output = expectSameAsOneProcess(2, {
      placement: [0, 1, 0],
      steps: 6,
      decouple: { synthesizer: { hidden: [8], conditioned: true }, lambda: 0.5, warmupSteps: 2 },
    });
    expect(output).toMatch(/rank 0: 6 steps, modules 0,2/);
    expect(output).toMatch(/rank 1: 6 steps, modules 1/);
  });

  test('2 ranks, cDNI, 2 warm-up steps then λ = 0 (regressions carried into the next step): bit for bit as on one process', () => {
    // From step 3 on, M_2 on rank 1 regresses onto δ_2 of step t from rank 0 in step t+1,
    // just before it predicts again; the warm-up steps await δ before the backward instead.
    const output = expectSameAsOneProcess(2, {
      placement: [0, 1, 0],
      steps: 6,
      decouple: { synthesizer: { hidden: [8], conditioned: true }, warmupSteps: 2 },
    });
    expect(output).toMatch(/rank 1: 6 steps, modules 1/);
  });

  test('stochastic updates (pUpdate 0.5) over 3 ranks: bit for bit as on one process', () => {
    expectSameAsOneProcess(3, { placement: [0, 1, 2], steps: 8, decouple: { schedule: { kind: 'lockstep', pUpdate: 0.5 } } });
  });

  test('the pipelined schedule (depth 2) over 3 ranks, and cDNI on 2: bit for bit as on one process', () => {
    expectSameAsOneProcess(3, { placement: [0, 1, 2], steps: 8, decouple: { schedule: { kind: 'pipelined', depth: 2 } } });
    expectSameAsOneProcess(2, {
      placement: [0, 1, 0],
      steps: 8,
      decouple: { schedule: { kind: 'pipelined', depth: 1 }, synthesizer: { hidden: [8], conditioned: true } },
    });
  });

  test('the complete unlock over 3 ranks, and over 2 with pUpdate 0.5: bit for bit as on one process (input models too)', () => {
    // Every rank reads x itself; h_i goes up and δ_i down as regression targets only, awaited in the next step.
    expectSameAsOneProcess(3, { placement: [0, 1, 2], steps: 6, decouple: { unlock: { hidden: [10] } } });
    expectSameAsOneProcess(2, {
      placement: [0, 1, 0],
      steps: 6,
      decouple: { unlock: { hidden: [10] }, schedule: { kind: 'lockstep', pUpdate: 0.5 } },
    });
  });

  test('the complete unlock refuses, on every rank, a run whose rank 2 holds other data (one value), naming that rank', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const r = mpirun(3, dir, { placement: [0, 1, 2], steps: 4, decouple: { unlock: { hidden: [10] } }, otherData: 2 });
      expect(r.status).not.toBe(0);
      expect(r.output).toMatch(
        /rank [012] failed: fit: with the complete unlock every rank reads the batches from its own 'data', but rank 2's \(40 rows, sha256 [0-9a-f]{12}…\) differs from rank 0's \(40 rows, sha256 [0-9a-f]{12}…\): give every rank the same Dataset/,
      );
      expect(fs.existsSync(path.join(dir, 'mpi-module0.bin'))).toBe(false); // nothing trained
      // The same data on every rank (and without the unlock, where only module 1's rank reads rows): no refusal.
      const same = mpirun(3, dir, { placement: [0, 1, 2], steps: 2, decouple: { unlock: { hidden: [10] } } });
      expect(same.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the pipelined schedule with pUpdate 0.5, depth 2 over 3 ranks and depth 1 over 2: bit for bit as on one process', () => {
    expectSameAsOneProcess(3, { placement: [0, 1, 2], steps: 10, decouple: { schedule: { kind: 'pipelined', depth: 2, pUpdate: 0.5 } } });
    expectSameAsOneProcess(2, { placement: [0, 1, 0], steps: 10, decouple: { schedule: { kind: 'pipelined', depth: 1, pUpdate: 0.5 } } });
  });

  /** Expects each module's state after the mpirun run to be the bytes of the one-process run's. */
  const expectSameFiles = (dir: string, modules: number) => {
    for (let i = 0; i < modules; i++)
      if (!read(dir, 'mpi', i).equals(read(dir, 'single', i))) throw new Error(`module ${i + 1} differs from the one-process run`);
  };

  test('per-rank checkpoints: 4 steps saved every 2, resumed to 8, evaluated on rank 0: as the uninterrupted one-process run', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const checkpoint = { dir: path.join(dir, 'checkpoints'), every: 2 };
      let r = mpirun(3, dir, { placement: [0, 1, 2], steps: 4, checkpoint });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      expect(fs.readdirSync(checkpoint.dir).sort()).toEqual([0, 1, 2].flatMap((k) => [`rank-${k}.step-2.ckpt`, `rank-${k}.step-4.ckpt`]));
      r = mpirun(3, dir, { placement: [0, 1, 2], steps: 8, checkpoint, evaluate: true });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      for (const rank of [0, 1, 2]) expect(r.output).toMatch(new RegExp(`rank ${rank}: 8 steps, modules ${rank}, .*resumed from step 4`));
      single(dir, { steps: 8, evaluate: true });
      expectSameFiles(dir, 3);
      // Rank 0's evaluation (the loss's rank 2 scored it) equals Trainer.evaluate's, every digit.
      const evaluation = fs.readFileSync(path.join(dir, 'mpi-evaluation.json'), 'utf8');
      expect(evaluation).toBe(fs.readFileSync(path.join(dir, 'single-evaluation.json'), 'utf8'));
      expect(JSON.parse(evaluation).count).toBe(23);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a rank killed mid-run (SIGKILL in step 6): the run resumes from the last checkpoint every rank saved, bit for bit', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const checkpoint = { dir: path.join(dir, 'checkpoints'), every: 2 };
      const config = { placement: [0, 1, 2], steps: 8, checkpoint };
      let r = mpirun(3, dir, { ...config, stopRank: 1, stopAfter: 5, stop: 'kill' }, {}, 120_000);
      expect(r.status).not.toBe(0);
      expect(r.status).not.toBeNull(); // null: killed by the test's timeout, i.e. a hang
      expect(
        fs
          .readdirSync(checkpoint.dir)
          .filter((f) => f.endsWith('.ckpt'))
          .sort(),
      ).toEqual([0, 1, 2].flatMap((k) => [`rank-${k}.step-2.ckpt`, `rank-${k}.step-4.ckpt`]));
      r = mpirun(3, dir, config);
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      for (const rank of [0, 1, 2]) expect(r.output).toMatch(new RegExp(`rank ${rank}: 8 steps, .*resumed from step 4`));
      single(dir, { steps: 8 });
      expectSameFiles(dir, 3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('checkpoints that disagree (steps, placement) are refused on every rank, naming the rank', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const checkpoint = { dir: path.join(dir, 'checkpoints'), every: 2 };
      let r = mpirun(3, dir, { placement: [0, 1, 2], steps: 4, checkpoint });
      if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.output}`);
      for (const f of fs.readdirSync(dir)) if (f.startsWith('mpi-')) fs.rmSync(path.join(dir, f));
      r = mpirun(3, dir, { placement: [0, 0, 1], steps: 6, checkpoint });
      expect(r.status).not.toBe(0);
      expect(r.output).toMatch(
        /rank \d failed: fit: cannot resume from .*: rank 0's checkpoint .*rank-0\.step-2\.ckpt was saved with placement 0,1,2; this run has 0,0,1/,
      );
      fs.rmSync(path.join(checkpoint.dir, 'rank-1.step-4.ckpt'));
      fs.rmSync(path.join(checkpoint.dir, 'rank-0.step-2.ckpt'));
      r = mpirun(3, dir, { placement: [0, 1, 2], steps: 6, checkpoint });
      expect(r.status).not.toBe(0);
      expect(r.output).toMatch(
        /rank \d failed: fit: cannot resume from .*: the ranks saved no step in common: rank 0 step 4; rank 1 step 2; rank 2 steps 2, 4/,
      );
      expect(fs.readdirSync(dir).filter((f) => f.startsWith('mpi-'))).toEqual([]); // no rank trained
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the MPI addon: argument errors, a timed-out receive cancelled, a message longer than its receive, use after finalize', () => {
    const r = spawnSync(
      'mpirun',
      ['--allow-run-as-root', '--oversubscribe', '-np', '2', process.execPath, path.join(__dirname, 'fixtures', 'mpi-binding.js')],
      { encoding: 'utf8', timeout: 120_000 },
    );
    if (r.status !== 0) throw new Error(`mpirun exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
    for (const [me, peer] of [
      [0, 1],
      [1, 0],
    ]) {
      const lines = new Map(
        r.stdout
          .split('\n')
          .filter((l) => l.startsWith(`[${me}] `))
          .map((l) => {
            const [key, ...rest] = l.slice(4).split(': ');
            return [key, rest.join(': ')] as [string, string];
          }),
      );
      expect(lines.get('before init')).toBe('Error: mpi.isend: MPI is not initialised (call init() first)');
      expect(lines.get('array')).toBe("TypeError: mpi.isend: 'data' must be a typed array (e.g. a Float32Array)");
      expect(lines.get('dest')).toBe("RangeError: mpi.isend: 'dest' must be an integer in [0, 1], got 2");
      expect(lines.get('tag')).toBe("RangeError: mpi.isend: 'tag' must be an integer in [0, 2147483647], got -1");
      expect(lines.get('source')).toBe("RangeError: mpi.irecv: 'source' must be an integer in [0, 1], got 0.5");
      expect(lines.get('timeout option')).toMatch(/^RangeError: mpi: 'timeout' .* got 0$/);
      expect(lines.get('finalize while pending')).toBe('Error: mpi.finalize: 1 send(s)/receive(s) still pending; await them (or abort())');
      expect(lines.get('timed out')).toBe(
        `ERR_SYNTHGRAD_TRAINING rank ${me}: waited 1 s for a test message from rank ${peer}: that rank died, hangs or is far behind ` +
          '(SYNTHGRAD_MPI_TIMEOUT sets the limit in seconds)',
      );
      // Left posted, the timed-out receive would have taken this message, and the next receive would time out.
      expect(lines.get('next message')).toBe(`3,${peer}`);
      expect(lines.get('longer than the receive')).toBe(
        `receive from rank ${peer} (tag 10, 4 bytes) on rank ${me}: MPI_ERR_TRUNCATE: message truncated`,
      );
      expect(lines.get('after finalize')).toBe('Error: mpi.isend: MPI was finalised finalized');
    }
  });

  test('a rank that exits mid-run ends the others, with mpirun naming it, within a bounded time', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const r = mpirun(3, dir, { placement: [0, 1, 2], steps: 50, stopRank: 1, stopAfter: 2, stop: 'exit' }, {}, 120_000);
      expect(r.status).not.toBe(0);
      expect(r.status).not.toBeNull(); // null: killed by the test's timeout, i.e. a hang
      // Open MPI names a rank as [[job, 1], rank].
      expect(r.output).toMatch(/Process name: \[\[\d+,\d+\],1\]\s+Exit code:\s+3/);
      expect(r.seconds).toBeLessThan(100);
      expect(fs.readdirSync(dir)).toEqual([]); // no rank finished
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a rank that hangs mid-run: the others time out naming it, and the job ends', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-distributed-'));
    try {
      const config = { placement: [0, 1, 2], steps: 50, stopRank: 1, stopAfter: 2, stop: 'hang' };
      const r = mpirun(3, dir, config, { SYNTHGRAD_MPI_TIMEOUT: '3' }, 120_000);
      expect(r.status).not.toBe(0);
      expect(r.status).not.toBeNull();
      // Rank 2 waits for h_2 of step 3 from rank 1; rank 0 for δ_1 of step 3 (its forward and
      // backward need nothing from rank 1). The first to time out aborts the job, which may end
      // the other before its own timeout.
      const failures = [...r.output.matchAll(/rank (\d) failed: rank \d: waited 3 s for (\S+) of step (\d) from rank (\d)/g)].map((m) =>
        m.slice(1).join(' '),
      );
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) expect(['2 h_2 3 1', '0 δ_1 3 1']).toContain(f);
      expect(r.seconds).toBeLessThan(100);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('distribute: options (no MPI needed)', () => {
  // A transport that is never used: the checks run before any hand-off.
  const transport = (rank: number, size: number): Transport => ({
    rank,
    size,
    send: () => Promise.reject(new Error('unused')),
    receive: () => Promise.reject(new Error('unused')),
    barrier: () => Promise.resolve(),
    finalize: () => undefined,
    abort: () => undefined,
  });
  const options = (placement: unknown, extra: object = {}) => ({
    placement: placement as number[],
    transport: transport(0, 3),
    optimizer: () => new Adam({ lr: 0.01 }),
    device: Device.cpu(),
    ...extra,
  });
  const net = (o: object = {}) => decouple(mlp(6, [5, 5], 3), o);

  test('placement: a rank per module, each in [0, size)', () => {
    expect(() => distribute(net(), options([0, 1]))).toThrow("distribute: 'placement' must list a rank for each of the 3 modules, got");
    expect(() => distribute(net(), options([0, 1, 3]))).toThrow(
      "distribute: 'placement[2]' (module 3) must be a rank in [0, 2] (the run has 3 rank(s)), got 3",
    );
    expect(() => distribute(net(), options([0, 1.5, 2]))).toThrow(RangeError);
    expect(() => distribute(net(), options('0,1,2'))).toThrow(/'placement' must list a rank/);
  });

  test('the pipelined schedule with pUpdate < 1 and the complete unlock are accepted; the unlock with pipelining is refused by decouple', () => {
    for (const extra of [{ schedule: { kind: 'pipelined', depth: 1, pUpdate: 0.5 } }, { unlock: true }]) {
      const d = distribute(net(extra), options([0, 1, 2]));
      expect(d.ownModules).toEqual([0]);
      d.dispose();
    }
    // decouple refuses it before distribute() could, as for one process.
    expect(() => net({ unlock: true, schedule: { kind: 'pipelined', depth: 1 } })).toThrow(
      "decouple: 'unlock' needs the lockstep schedule, got 'schedule.kind' 'pipelined'",
    );
  });

  test('unknown keys, a missing transport and a model that is not decoupled are errors', () => {
    expect(() => distribute(net(), options([0, 1, 2], { placment: [0] }))).toThrow(/placment/);
    expect(() => distribute(net(), { ...options([0, 1, 2]), transport: undefined as unknown as Transport })).toThrow(
      /distribute: 'transport' must be a Transport \(mpi\(\)\)/,
    );
    expect(() => distribute(mlp(6, [5], 3) as never, options([0, 1]))).toThrow(/'network' must be a DecoupledNetwork/);
  });

  test('a rank runs the modules placed on it', () => {
    const d = distribute(net(), { ...options([1, 0, 1]), transport: transport(1, 2) });
    expect(d.ownModules).toEqual([0, 2]);
    expect(d.ownState().map((s) => s.module)).toEqual([0, 2]);
    d.dispose();
  });

  test("mpi()'s timeout: a positive number of seconds Node's timers can wait (checked before MPI starts)", () => {
    const refused = (timeout: number) =>
      `mpi: 'timeout' (or SYNTHGRAD_MPI_TIMEOUT) must be a positive number of seconds, at most 2147483.647 (Node's longest timer), got ${timeout}`;
    for (const timeout of [0, -1, Infinity, 2147484]) expect(() => mpi({ timeout })).toThrow(new RangeError(refused(timeout)));
    const saved = process.env.SYNTHGRAD_MPI_TIMEOUT;
    process.env.SYNTHGRAD_MPI_TIMEOUT = 'Infinity';
    try {
      expect(() => mpi()).toThrow(new RangeError(refused(Infinity)));
    } finally {
      if (saved === undefined) delete process.env.SYNTHGRAD_MPI_TIMEOUT;
      else process.env.SYNTHGRAD_MPI_TIMEOUT = saved;
    }
  });

  test('without the MPI addon, synthgrad loads and mpi() says what to install', () => {
    if (!fs.existsSync(api)) throw new Error(`${api} is missing: run 'npx tsc -p tsconfig.json' first`);
    const script = `const s = require(${JSON.stringify(api)}); console.log('loaded', typeof s.decouple, s.mpiAvailable()); try { s.mpi(); } catch (e) { console.log(e.code, e.message); }`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, SYNTHGRAD_MPI_ADDON: path.join(os.tmpdir(), 'synthgrad-no-such-mpi-addon.node') },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^loaded function false$/m);
    expect(r.stdout).toMatch(/ERR_SYNTHGRAD_NATIVE synthgrad: the MPI transport is not built \(no .*synthgrad-no-such-mpi-addon\.node\)/);
    expect(r.stdout).toMatch(/apt-get install openmpi-bin libopenmpi-dev/);
  });
});
