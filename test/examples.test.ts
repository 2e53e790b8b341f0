// Every example in examples/ runs (with a budget of a few steps, its first argument) and prints
// what it is meant to print. They import the package by name, as a user would.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');
const expected: Record<string, RegExp> = {
  'mnist-backprop.mjs': /test accuracy \d+\.\d\d%/,
  'mnist-cdni.mjs': /cDNI\(4 modules[\s\S]*test accuracy \d+\.\d\d%/,
  'dni-diagnostics.mjs': /step \d+: loss [\d.]+ {2}M1 cos -?[\d.]+[\s\S]*test accuracy[\s\S]*run log and report: \S+report\.html/,
  'custom-dataset.mjs': /training accuracy \d+\.\d%/,
  'regression.mjs': /mean squared error [\d.]+e[-+]\d+\nf\(0\.5\) = -?[\d.]+/,
  'inference.mjs': /test accuracy \d+\.\d\d% from the loaded model/,
};

test('every example is listed here', () => {
  expect(
    fs
      .readdirSync(path.join(root, 'examples'))
      .filter((f) => f.endsWith('.mjs'))
      .sort(),
  ).toEqual(Object.keys(expected).sort());
});

test.each(Object.entries(expected))('examples/%s', (name, pattern) => {
  const r = spawnSync(process.execPath, [path.join('examples', name), '4'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
  });
  if (r.status !== 0) throw new Error(`${name} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  expect(r.stdout).toMatch(pattern);
});
