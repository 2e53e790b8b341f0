#!/usr/bin/env node
// Checks that the layering's arrows run one way (issue 17): it reads the #include lines of
// native/ and cuda/ and the imports of ts/, and names every arrow that runs the wrong way.
//
//   native: addon → backends (cpu, cuda) → core. core includes nothing from cpu/, cuda/ or
//           addon/; cpu/ and cuda/ include nothing from addon/ or from each other.
//   ts:     only the low-level wrappers (tensor, stream, graph, device, build-info, raw-handles), the ops layer
//           (ts/ops.ts) and the generated ops type (ts/native-ops.ts) import ts/native.ts; those import nothing above them (nn, dni, optim,
//           train, cli, data); nn, dni and optim import nothing from cli, and from train/
//           only ts/train/strategy.ts (the training-strategy interfaces, which sit below them)
//           and types (`import type`); ts/train/strategy.ts imports only types from nn, dni,
//           optim and the rest of train/. One exception: the package entry (ts/index.ts) may
//           re-export the raw addon as `native` (`export { native } from './native'`: kept
//           public, deprecated, for 0.1.0's users, the fuzzer and the op tests), nothing else.
//   test:   correctness lives in test/, timing in bench/: no test imports a file from bench/
//           (bench/ may use test/helpers, e.g. gpu:check's comparison).
//
// Arrows that were already there when the check was written are listed in KNOWN below, each a
// violation to fix later; they are reported as known and do not fail the check. Any other
// wrong-way arrow fails it (exit 1). Usage: node scripts/check-layers.js [repo root] [--json]
'use strict';
const fs = require('fs');
const path = require('path');

/**
 * Today's wrong-way arrows, as 'from -> to' (paths relative to the repo root). Remove an entry
 * when its arrow is fixed; the check prints entries that no longer match (as a note, not a
 * failure, so that fixing an arrow on one branch does not break another branch's build).
 */
const KNOWN = new Set([]); // none left (issue 17 removed the last)

function walk(dir, exts, out = []) {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, exts, out);
    else if (exts.some((x) => e.name.endsWith(x))) out.push(p);
  }
  return out;
}

const rel = (root, p) => path.relative(root, p).split(path.sep).join('/');

/** The native layer of a repo-relative path, or undefined outside native/ and cuda/. */
function nativeLayer(file) {
  const m = /^native\/(core|cpu|addon)\//.exec(file);
  if (m) return m[1];
  if (file.startsWith('cuda/')) return 'cuda';
  return undefined;
}

/** What each native layer may include besides itself. */
const NATIVE_ALLOWED = {
  core: [],
  cpu: ['core'],
  cuda: ['core'],
  addon: ['core', 'cpu', 'cuda'],
};

/** Project includes of the native sources: quoted or angled names that resolve to a file in the repo. */
function nativeArrows(root) {
  const files = [
    ...walk(path.join(root, 'native'), ['.h', '.cpp', '.cc', '.cuh', '.cu']),
    ...walk(path.join(root, 'cuda'), ['.h', '.cpp', '.cc', '.cuh', '.cu']),
  ];
  const arrows = [];
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const re = /^\s*#\s*include\s*["<]([^">]+)[">]/gm;
    let m;
    while ((m = re.exec(text))) {
      // The build's include paths: the file's folder, native/ and the repo root.
      const candidates = [path.dirname(file), path.join(root, 'native'), root].map((d) => path.resolve(d, m[1]));
      const target = candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
      if (target) arrows.push({ from: rel(root, file), to: rel(root, target) });
    }
  }
  return arrows;
}

function nativeViolation({ from, to }) {
  const a = nativeLayer(from);
  const b = nativeLayer(to);
  if (!a) return undefined;
  if (!b) return `${a} includes a file outside native/ and cuda/`;
  if (a === b || NATIVE_ALLOWED[a].includes(b)) return undefined;
  return `${a} must not include ${b}`;
}

/** Relative imports of the TypeScript sources under `dir`, with whether the statement is type-only. */
function tsArrows(root, dir = 'ts') {
  const arrows = [];
  for (const file of walk(path.join(root, dir), ['.ts'])) {
    const text = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
    const patterns = [
      // import/export ... from '...'; `type` right after the keyword makes it type-only
      { re: /(?:^|[;\n])\s*(?:import|export)\s+(type\s+)?(?:[^;'"]*?)\s+from\s+['"]([^'"]+)['"]/g, spec: 2, type: 1 },
      { re: /(?:^|[;\n])\s*import\s+['"]([^'"]+)['"]/g, spec: 1 },
      { re: /\b(?:require|import)\s*\(\s*['"]([^'"]+)['"]\s*\)/g, spec: 1 },
    ];
    for (const { re, spec, type } of patterns) {
      let m;
      while ((m = re.exec(text))) {
        const name = m[spec];
        if (!name.startsWith('.')) continue;
        let target = path.resolve(path.dirname(file), name);
        if (fs.existsSync(target + '.ts')) target += '.ts';
        else if (fs.existsSync(target + '.js')) target += '.js';
        else if (fs.existsSync(path.join(target, 'index.ts'))) target = path.join(target, 'index.ts');
        else continue;
        arrows.push({
          from: rel(root, file),
          to: rel(root, target),
          typeOnly: type !== undefined && m[type] !== undefined,
          nativeReexport: /^\s*export\s*\{\s*native\s*\}\s*from\b/.test(m[0].replace(/^[;\n]/, '')),
        });
      }
    }
  }
  return arrows;
}

/** ts/native.ts's only importers (and, with it, the bottom of the TypeScript stack). */
const TS_LOW = new Set([
  'ts/native.ts',
  'ts/native-ops.ts',
  'ts/tensor.ts',
  'ts/stream.ts',
  'ts/graph.ts',
  'ts/device.ts',
  'ts/build-info.ts',
  'ts/raw-handles.ts',
  'ts/ops.ts',
]);
const TS_HIGH = /^ts\/(nn|dni|optim|train|cli|data)\//;
/** The training-strategy interfaces: below nn, dni and optim, which implement them. */
const TS_STRATEGY = 'ts/train/strategy.ts';

function tsViolation({ from, to, typeOnly, nativeReexport }) {
  if (to === 'ts/native.ts' && from === 'ts/index.ts' && nativeReexport) return undefined; // the one exception (see the top)
  if (to === 'ts/native.ts' && !TS_LOW.has(from)) return 'only the low-level wrappers and ts/ops.ts may import ts/native.ts';
  if (TS_LOW.has(from) && TS_HIGH.test(to)) return 'the low-level layer must not import the layers above it';
  if (/^ts\/(nn|dni|optim)\//.test(from)) {
    if (to.startsWith('ts/cli/')) return 'nn, dni and optim must not import the CLI';
    if (to.startsWith('ts/train/') && to !== TS_STRATEGY && !typeOnly)
      return 'nn, dni and optim may import from train/ only ts/train/strategy.ts, and types (import type) from the rest';
  }
  if (from === TS_STRATEGY && TS_HIGH.test(to) && !typeOnly)
    return 'ts/train/strategy.ts sits below nn, dni and optim: it may import only types from them and from train/';
  return undefined;
}

/** Runs the check on the tree at `root`; returns the wrong-way arrows, known and new, and stale allowlist entries. */
function checkLayers(root, known = KNOWN) {
  const found = [];
  for (const a of nativeArrows(root)) {
    const why = nativeViolation(a);
    if (why) found.push({ ...a, why });
  }
  for (const a of tsArrows(root)) {
    const why = tsViolation(a);
    if (why) found.push({ from: a.from, to: a.to, why });
  }
  for (const a of tsArrows(root, 'test')) {
    if (a.to.startsWith('bench/'))
      found.push({ from: a.from, to: a.to, why: 'tests must not import bench/ (timing only; shared helpers live in test/helpers)' });
  }
  const key = (v) => `${v.from} -> ${v.to}`;
  const seen = new Set(found.map(key));
  return {
    violations: found.filter((v) => !known.has(key(v))),
    known: found.filter((v) => known.has(key(v))),
    stale: [...known].filter((k) => !seen.has(k)),
  };
}

module.exports = { checkLayers, KNOWN };

if (require.main === module) {
  const args = process.argv.slice(2);
  const root = path.resolve(args.find((a) => !a.startsWith('--')) ?? path.join(__dirname, '..'));
  const result = checkLayers(root);
  if (args.includes('--json')) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    for (const v of result.known) console.log(`known (allowlisted): ${v.from} -> ${v.to}: ${v.why}`);
    for (const k of result.stale) console.log(`allowlist entry no longer needed, remove it: ${k}`);
    for (const v of result.violations) console.error(`wrong-way arrow: ${v.from} -> ${v.to}: ${v.why}`);
    console.log(
      `check-layers: ${result.violations.length} new wrong-way arrow(s), ${result.known.length} known, ${result.stale.length} stale allowlist entr${result.stale.length === 1 ? 'y' : 'ies'}`,
    );
  }
  process.exit(result.violations.length > 0 ? 1 : 0);
}
