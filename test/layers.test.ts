// The layering check (scripts/check-layers.js): today's tree has no new wrong-way arrow, and
// an arrow planted in a temp copy of the tree is caught and named.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { checkLayers, KNOWN } = require('../scripts/check-layers.js') as {
  checkLayers(
    root: string,
    known?: Set<string>,
  ): {
    violations: { from: string; to: string; why: string }[];
    known: { from: string; to: string }[];
    stale: string[];
  };
  KNOWN: Set<string>;
};

const root = path.join(__dirname, '..');
const script = path.join(root, 'scripts', 'check-layers.js');

/** A copy of the tree's native/, cuda/ and ts/ in a fresh temp directory. */
function copyTree(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-layers-'));
  for (const d of ['native', 'cuda', 'ts']) fs.cpSync(path.join(root, d), path.join(dir, d), { recursive: true });
  return dir;
}

describe('check-layers', () => {
  let tmp: string | undefined;
  afterEach(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  test('the tree has no wrong-way arrow beyond the allowlist', () => {
    const r = checkLayers(root);
    expect(r.violations).toEqual([]);
    // The allowlist describes arrows that exist: each entry is found in the tree.
    expect(r.known.map((v) => `${v.from} -> ${v.to}`).sort()).toEqual([...KNOWN].filter((k) => !r.stale.includes(k)).sort());
  });

  test('no wrong-way arrow is left, allowlisted or not', () => {
    expect(KNOWN.size).toBe(0);
    expect(checkLayers(root, new Set()).violations).toEqual([]);
  });

  test('a planted include from core into cpu fails the script, naming the arrow', () => {
    tmp = copyTree();
    const ops = path.join(tmp, 'native', 'core', 'ops.cpp');
    fs.writeFileSync(ops, '#include "../cpu/gemm_kernels.h"\n' + fs.readFileSync(ops, 'utf8'));
    let failure: { status: number; stderr: string } | undefined;
    try {
      execFileSync(process.execPath, [script, tmp], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { status: number; stderr: Buffer };
      failure = { status: err.status, stderr: err.stderr.toString() };
    }
    expect(failure?.status).toBe(1);
    expect(failure?.stderr).toContain('native/core/ops.cpp -> native/cpu/gemm_kernels.h');
    expect(execFileSync(process.execPath, [script, root], { stdio: 'pipe' }).toString()).toContain('0 new wrong-way arrow');
  });

  test('a planted include from cuda into cpu is caught', () => {
    tmp = copyTree();
    const f = path.join(tmp, 'cuda', 'loss.cu');
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8') + '\n#include "cpu/cpu_backend.h"\n');
    expect(checkLayers(tmp).violations.map((v) => `${v.from} -> ${v.to}`)).toEqual(['cuda/loss.cu -> native/cpu/cpu_backend.h']);
  });

  test('planted TypeScript imports of native.ts and of the trainer are caught; a type-only one is not', () => {
    tmp = copyTree();
    const layers = path.join(tmp, 'ts', 'nn', 'layers.ts');
    fs.writeFileSync(
      layers,
      "import { native } from '../native';\nimport { stepCount } from '../train/trainer';\n" + fs.readFileSync(layers, 'utf8'),
    );
    const losses = path.join(tmp, 'ts', 'nn', 'losses.ts');
    fs.writeFileSync(losses, "import type { TrainingStrategy } from '../train/trainer';\n" + fs.readFileSync(losses, 'utf8'));
    const found = checkLayers(tmp)
      .violations.map((v) => `${v.from} -> ${v.to}`)
      .sort();
    expect(found).toEqual(['ts/nn/layers.ts -> ts/native.ts', 'ts/nn/layers.ts -> ts/train/trainer.ts']);
  });

  test('dni may use the strategy interfaces but no other train/ file at run time; strategy.ts only types from above', () => {
    tmp = copyTree();
    const network = path.join(tmp, 'ts', 'dni', 'network.ts');
    fs.writeFileSync(
      network,
      "import { stepCount } from '../train/strategy';\nimport { readCheckpoint } from '../train/checkpoint';\n" +
        fs.readFileSync(network, 'utf8'),
    );
    const strategy = path.join(tmp, 'ts', 'train', 'strategy.ts');
    fs.writeFileSync(
      strategy,
      "import { Linear } from '../nn/layers';\nimport type { Module } from '../nn/module';\n" + fs.readFileSync(strategy, 'utf8'),
    );
    const found = checkLayers(tmp)
      .violations.map((v) => `${v.from} -> ${v.to}`)
      .sort();
    expect(found).toEqual(['ts/dni/network.ts -> ts/train/checkpoint.ts', 'ts/train/strategy.ts -> ts/nn/layers.ts']);
  });

  test('the package entry may re-export native but not import it; the CLI may use build-info, not native', () => {
    tmp = copyTree();
    const index = path.join(tmp, 'ts', 'index.ts');
    fs.writeFileSync(index, fs.readFileSync(index, 'utf8') + "\nimport { native as raw } from './native';\nexport const gemm = raw.ops;\n");
    const main = path.join(tmp, 'ts', 'cli', 'main.ts');
    fs.writeFileSync(main, "import { native } from '../native';\n" + fs.readFileSync(main, 'utf8'));
    const found = checkLayers(tmp)
      .violations.map((v) => `${v.from} -> ${v.to}`)
      .sort();
    expect(found).toEqual(['ts/cli/main.ts -> ts/native.ts', 'ts/index.ts -> ts/native.ts']);
    expect(checkLayers(root).violations).toEqual([]);
  });

  test('a test that imports a file from bench/ is caught', () => {
    tmp = copyTree();
    fs.cpSync(path.join(root, 'test'), path.join(tmp, 'test'), { recursive: true });
    fs.mkdirSync(path.join(tmp, 'bench'));
    fs.copyFileSync(path.join(root, 'bench', 'step_time.ts'), path.join(tmp, 'bench', 'step_time.ts'));
    expect(checkLayers(tmp).violations).toEqual([]);
    const t = path.join(tmp, 'test', 'gpu', 'cuda.test.ts');
    fs.writeFileSync(t, "import { stepTime } from '../../bench/step_time';\n" + fs.readFileSync(t, 'utf8'));
    expect(checkLayers(tmp).violations.map((v) => `${v.from} -> ${v.to}`)).toEqual(['test/gpu/cuda.test.ts -> bench/step_time.ts']);
  });

  test('an import of the CLI from optim and of nn from the low-level layer are caught', () => {
    tmp = copyTree();
    const opt = path.join(tmp, 'ts', 'optim', 'optimizers.ts');
    fs.writeFileSync(opt, "import { x } from '../cli/options';\n" + fs.readFileSync(opt, 'utf8'));
    const ops = path.join(tmp, 'ts', 'ops.ts');
    fs.writeFileSync(ops, fs.readFileSync(ops, 'utf8') + "\nimport { Linear } from './nn/layers';\n");
    const found = checkLayers(tmp)
      .violations.map((v) => `${v.from} -> ${v.to}`)
      .sort();
    expect(found).toEqual(['ts/ops.ts -> ts/nn/layers.ts', 'ts/optim/optimizers.ts -> ts/cli/options.ts']);
  });
});
