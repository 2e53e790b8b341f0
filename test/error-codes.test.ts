// Every error carries a stable `code` (ts/errors.ts): checked at the source (no error is built
// without one) and on a sample of each kind, from TypeScript and from the native addon.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Dataset, Device, Sequential, Linear, Tensor, Trainer, loadModel, mlp, native, predict } from '../ts';
import { parseArgs } from '../ts/cli/options';

const cpu = Device.cpu();

async function codeOf(f: () => unknown): Promise<{ name: string; code: unknown }> {
  try {
    await f();
  } catch (e) {
    return { name: (e as Error).constructor.name, code: (e as { code?: unknown }).code };
  }
  throw new Error('expected an error');
}

test('no error is constructed in ts/ except through ts/errors.ts (so each has a code)', () => {
  const root = path.join(__dirname, '..', 'ts');
  const out = execFileSync('grep', ['-rn', '-E', 'new (Type|Range)?Error\\(', root, '--include=*.ts'], { encoding: 'utf8' })
    .trim()
    .split('\n');
  expect(out.filter((l) => !l.startsWith(path.join(root, 'errors.ts')))).toEqual([]);
});

test('TypeScript errors: argument type and value, state, checkpoint, CLI', async () => {
  const data = Dataset.fromArrays(
    [
      [0, 1],
      [1, 0],
    ],
    [0, 1],
    { classes: 2 },
  );
  const trainer = new Trainer(mlp(2, [4], 2), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
  expect(await codeOf(() => trainer.fit(data, { epochs: 1, batchsize: 2 } as never))).toEqual({
    name: 'TypeError',
    code: 'ERR_SYNTHGRAD_INVALID_ARG_TYPE',
  });
  expect(await codeOf(() => data.head(-1))).toEqual({ name: 'RangeError', code: 'ERR_SYNTHGRAD_INVALID_ARG_VALUE' });
  expect(await codeOf(() => predict(new Sequential([new Linear(2, 2)]), data))).toEqual({ name: 'Error', code: 'ERR_SYNTHGRAD_STATE' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-codes-'));
  try {
    await trainer.save(path.join(dir, 'run.ckpt'));
    expect(await codeOf(() => loadModel(mlp(2, [4], 2), path.join(dir, 'run.ckpt')))).toEqual({
      name: 'Error',
      code: 'ERR_SYNTHGRAD_CHECKPOINT',
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  expect(await codeOf(() => parseArgs(['--bogus']))).toEqual({ name: 'Error', code: 'ERR_SYNTHGRAD_CLI' });
  trainer.dispose();
});

test('native errors: argument type and value thrown at once, and a failed queued op rejecting', async () => {
  const s = native.defaultStream(cpu.name as 'cpu');
  expect(await codeOf(() => native.ops.fill(s, {} as never, 0))).toEqual({ name: 'TypeError', code: 'ERR_SYNTHGRAD_INVALID_ARG_TYPE' });
  const t = Tensor.zeros([2, 3], { device: cpu });
  expect(await codeOf(() => native.ops.fill(s, t.handle, Infinity))).toEqual({
    name: 'RangeError',
    code: 'ERR_SYNTHGRAD_INVALID_ARG_VALUE',
  });
  // A label out of range is found by the kernel, on the stream: the next read rejects.
  const logits = Tensor.zeros([2, 3], { device: cpu });
  const labels = Tensor.fromArray(new Int32Array([0, 7]), [2], { device: cpu, dtype: 'int32' });
  const probs = Tensor.zeros([2, 3], { device: cpu });
  const loss = Tensor.zeros([1], { device: cpu });
  native.ops.softmaxCrossEntropyForward(s, logits.handle, labels.handle, probs.handle, loss.handle);
  expect(await codeOf(() => loss.read())).toEqual({ name: 'Error', code: 'ERR_SYNTHGRAD_NATIVE' });
  for (const x of [t, logits, labels, probs, loss]) x.dispose();
});
