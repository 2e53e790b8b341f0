// The op table (native/core/op_table.json) is the one declaration of every op: the files that
// scripts/gen-ops.js writes from it are up to date, the loaded addon exports exactly its ops,
// in its order, and a table edit that is not regenerated, or a malformed entry, is caught.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../ts/native';

interface Op {
  name: string;
  doc: string;
  args: { kind: string; name: string }[];
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const gen = require('../scripts/gen-ops.js') as {
  readTable(dir?: string): Op[];
  generate(dir?: string): Record<string, string>;
  staleFiles(dir?: string): string[];
};

const root = path.join(__dirname, '..');
const tableFile = path.join('native', 'core', 'op_table.json');

/** A temp copy of the table and of the generated files. */
function copyGenerated(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-ops-'));
  for (const f of [tableFile, ...Object.keys(gen.generate(root))]) {
    fs.mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(dir, f));
  }
  return dir;
}

describe('the op table', () => {
  let tmp: string | undefined;
  afterEach(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  test('the generated files are what the table gives (npm run gen:ops writes them)', () => {
    expect(gen.staleFiles(root)).toEqual([]);
  });

  test('native.ops has exactly the ops of the table, in its order', () => {
    const names = gen.readTable(root).map((op) => op.name);
    expect(names.length).toBeGreaterThan(10);
    expect(Object.keys(native.ops)).toEqual(names);
    for (const name of names) expect(typeof (native.ops as unknown as Record<string, unknown>)[name]).toBe('function');
  });

  test('the per-tensor optimizer steps are gone; the group steps remain', () => {
    const names = Object.keys(native.ops);
    expect(names).not.toContain('sgdStep');
    expect(names).not.toContain('adamStep');
    expect(names).toEqual(expect.arrayContaining(['sgdStepGroup', 'adamStepGroup']));
  });

  test('an op added to the table but not regenerated makes every generated file stale', () => {
    tmp = copyGenerated();
    const file = path.join(tmp, tableFile);
    const table = JSON.parse(fs.readFileSync(file, 'utf8')) as { ops: unknown[] };
    table.ops.push({ name: 'sigmoidForward', args: ['stream s', 'tensor x', 'tensor y'], doc: 'y = sigmoid(x)' });
    fs.writeFileSync(file, JSON.stringify(table));
    expect(gen.staleFiles(tmp).sort()).toEqual(Object.keys(gen.generate(root)).sort());
    // Each generated file names the new op.
    for (const text of Object.values(gen.generate(tmp))) expect(text).toContain('sigmoidForward');
  });

  test('gen-ops --check exits 0 on the tree and 1 on a stale copy, naming the file', () => {
    const script = path.join(root, 'scripts', 'gen-ops.js');
    expect(spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' }).status).toBe(0);
    tmp = copyGenerated();
    fs.appendFileSync(path.join(tmp, 'native', 'core', 'gen', 'ops.inc'), '// edited by hand\n');
    const r = spawnSync(process.execPath, [script, tmp, '--check'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('native/core/gen/ops.inc is stale');
  });

  test('a hand edit of a generated file is stale', () => {
    tmp = copyGenerated();
    const file = path.join(tmp, 'ts', 'native-ops.ts');
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('): void;', ', extra: number): void;'));
    expect(gen.staleFiles(tmp)).toEqual(['ts/native-ops.ts']);
  });

  test.each([
    [{ name: 'bad', args: ['stream s', 'tensr x'], doc: 'd' }, /argument 'x' has unknown kind 'tensr'/],
    [{ name: 'bad', args: ['tensor x'], doc: 'd' }, /op 'bad': the first argument must be the stream/],
    [{ name: 'copy', args: ['stream s'], doc: 'd' }, /op 'copy' is declared twice/],
    [{ name: 'bad', args: ['stream s'], doc: '' }, /op 'bad': 'doc' must be a line/],
  ])('a malformed entry is an error naming it: %j', (entry, message) => {
    tmp = copyGenerated();
    const file = path.join(tmp, tableFile);
    const table = JSON.parse(fs.readFileSync(file, 'utf8')) as { ops: unknown[] };
    table.ops.push(entry);
    fs.writeFileSync(file, JSON.stringify(table));
    expect(() => gen.readTable(tmp)).toThrow(message);
  });
});
