// The package's two entries (package.json "exports"): `import` (ES modules, dist/esm/) and
// `require` (CommonJS, dist/ts/) give the same names, bound to the same objects, and the
// README's library snippet works as ES module code. Loaded by the package's own name, which
// Node resolves through "exports" from inside the package.
import { spawnSync } from 'child_process';
import * as path from 'path';

const root = path.join(__dirname, '..');

function node(args: string[]): string {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' } });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('import and require give the same exports, and the same objects', () => {
  const esm = node([
    '--input-type=module',
    '-e',
    `
    import * as esm from 'synthgrad';
    import { createRequire } from 'module';
    const cjs = createRequire(import.meta.url)('synthgrad');
    const names = Object.keys(cjs).filter((n) => n !== '__esModule').sort();
    const same = names.every((n) => esm[n] === cjs[n]);
    console.log(JSON.stringify({ esm: Object.keys(esm).sort(), cjs: names, same }));`,
  ]);
  const r = JSON.parse(esm) as { esm: string[]; cjs: string[]; same: boolean };
  expect(r.esm).toEqual(r.cjs);
  expect(r.cjs).toEqual(expect.arrayContaining(['Trainer', 'decouple', 'mlp', 'datasets', 'Device', 'Adam']));
  expect(r.same).toBe(true);
});

test('an ES module trains with top-level await, as in README', () => {
  const out = node([
    '--input-type=module',
    '-e',
    `
    import { Adam, Device, Trainer, Dataset, decouple, mlp } from 'synthgrad';
    const rows = 64, x = new Float32Array(rows * 4), y = new Int32Array(rows);
    for (let i = 0; i < rows; i++) { x[i * 4 + (i % 2)] = 1; y[i] = i % 2; }
    const data = new Dataset('parity', x, y, 4, 2);
    const net = decouple(mlp(4, [8, 8], 2), { synthesizer: { conditioned: true } });
    const trainer = new Trainer(net, { device: Device.cpu(), optimizer: () => new Adam({ lr: 1e-2 }), seed: 0 });
    const fit = await trainer.fit(data, { steps: 3, batchSize: 16 });
    console.log(fit.steps);`,
  ]);
  expect(out.trim()).toBe('3');
});

test('a CommonJS script requires it', () => {
  expect(node(['-e', "const { Trainer, Device } = require('synthgrad'); console.log(typeof Trainer, Device.cpu().name)"]).trim()).toBe(
    'function cpu',
  );
});
