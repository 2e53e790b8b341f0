#!/usr/bin/env node
// Writes the parts of the native op path that follow from the op table
// (native/core/op_table.json), so that an op is declared in one place:
//
//   native/core/gen/backend_ops.inc        Backend's pure virtual op methods (core/backend.h)
//   native/core/gen/backend_overrides.inc  the same as overrides, for each backend's class
//   native/core/gen/ops.inc                the checked front end's declarations (core/ops.h)
//   native/addon/gen/op_bindings.inc       the Node-API binding table (addon/ops_binding.cpp)
//   ts/native-ops.ts                       the TypeScript NativeOps interface (ts/native.ts)
//
// The generated files are checked in (the build needs no Node.js step, and a diff shows what a
// table change does). Hand-written per op: the argument check in core/ops.cpp, each backend's
// method and its kernels. Usage: node scripts/gen-ops.js [--check] (--check writes nothing
// and exits 1, naming the stale files, when a generated file differs from what the table gives).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const TABLE = 'native/core/op_table.json';

/**
 * Each argument kind: its C++ parameter type, the binding's conversion of JavaScript argument
 * `i` (`n` is the name that error messages use) and its TypeScript type.
 */
const KINDS = {
  stream: { cpp: 'Stream&', bind: (i) => `a.stream(${i}, "stream")`, ts: 'NativeStream' },
  tensor: { cpp: 'const Tensor&', bind: (i, n) => `a.tensor(${i}, "${n}")`, ts: 'NativeTensor' },
  'tensor?': { cpp: 'const Tensor&', bind: (i, n) => `a.tensor(${i}, "${n}", true)`, ts: 'NativeTensor | null' },
  tensors: { cpp: 'const std::vector<Tensor>&', bind: (i, n) => `a.tensors(${i}, "${n}")`, ts: 'NativeTensor[]' },
  'tensors?': { cpp: 'const std::vector<Tensor>&', bind: (i, n) => `a.tensors(${i}, "${n}", true)`, ts: 'NativeTensor[] | null' },
  float: { cpp: 'float', bind: (i, n) => `float(a.number(${i}, "${n}"))`, ts: 'number' },
  double: { cpp: 'double', bind: (i, n) => `a.number(${i}, "${n}")`, ts: 'number' },
  bool: { cpp: 'bool', bind: (i, n) => `a.boolean(${i}, "${n}")`, ts: 'boolean' },
  int64: { cpp: 'int64_t', bind: (i, n) => `a.integer(${i}, "${n}")`, ts: 'number' },
  floats: { cpp: 'const std::vector<float>&', bind: (i, n) => `a.floats(${i}, "${n}")`, ts: 'number[]' },
  activation: { cpp: 'Activation', bind: (i, n) => `activation(a, ${i}, "${n}")`, ts: 'ActivationName' },
  'activation?': { cpp: 'std::optional<Activation>', bind: (i, n) => `optionalActivation(a, ${i}, "${n}")`, ts: 'ActivationName | null' },
};

/** The table, checked: names unique identifiers, every argument a known kind, the stream first. */
function readTable(dir = root) {
  const file = path.join(dir, TABLE);
  const { ops } = JSON.parse(fs.readFileSync(file, 'utf8'));
  const fail = (why) => {
    throw new Error(`${TABLE}: ${why}`);
  };
  if (!Array.isArray(ops) || ops.length === 0) fail("'ops' must be a non-empty array");
  const seen = new Set();
  return ops.map((op, k) => {
    if (typeof op.name !== 'string' || !/^[a-z][A-Za-z0-9]*$/.test(op.name))
      fail(`op ${k}: 'name' must be a lowerCamelCase identifier, got ${JSON.stringify(op.name)}`);
    if (seen.has(op.name)) fail(`op '${op.name}' is declared twice`);
    seen.add(op.name);
    if (typeof op.doc !== 'string' || op.doc.trim() === '') fail(`op '${op.name}': 'doc' must be a line saying what it computes`);
    if (!Array.isArray(op.args)) fail(`op '${op.name}': 'args' must be an array of "kind name"`);
    const args = op.args.map((text) => {
      const m = /^(\S+)\s+([A-Za-z_][A-Za-z0-9_]*)$/.exec(typeof text === 'string' ? text.trim() : '');
      if (!m) fail(`op '${op.name}': argument ${JSON.stringify(text)} must be "kind name"`);
      if (!KINDS[m[1]]) fail(`op '${op.name}': argument '${m[2]}' has unknown kind '${m[1]}' (known: ${Object.keys(KINDS).join(', ')})`);
      return { kind: m[1], name: m[2] };
    });
    if (args.length === 0 || args[0].kind !== 'stream') fail(`op '${op.name}': the first argument must be the stream ("stream s")`);
    if (args.slice(1).some((a) => a.kind === 'stream')) fail(`op '${op.name}': only the first argument may be a stream`);
    return { name: op.name, doc: op.doc.trim(), args };
  });
}

/** `head(items)tail`, the items wrapped to lines of at most `width` characters. */
function wrap(indent, head, items, tail, width = 100) {
  const one = `${indent}${head}${items.join(', ')}${tail}`;
  if (one.length <= width) return one;
  const cont = ' '.repeat(indent.length + head.length);
  const lines = [];
  let line = `${indent}${head}`;
  items.forEach((item, i) => {
    const piece = item + (i < items.length - 1 ? ',' : tail);
    if (line.trim() !== head.trim() && line.length + 1 + piece.length > width) {
      lines.push(line);
      line = cont + piece;
    } else {
      line += (line.endsWith('(') ? '' : ' ') + piece;
    }
  });
  lines.push(line);
  return lines.join('\n');
}

const cppParams = (op) => op.args.map((a) => `${KINDS[a.kind].cpp} ${a.name}`);
const banner = (comment) => `${comment} Generated by scripts/gen-ops.js from ${TABLE}: edit the table, then run \`npm run gen:ops\`.`;

function backendOps(ops) {
  const lines = [banner('//'), '// Included inside class Backend (core/backend.h): one pure virtual method per op.'];
  for (const op of ops) lines.push(`// ${op.doc}`, wrap('virtual ', `void ${op.name}(`, cppParams(op), ') = 0;'));
  return lines.join('\n') + '\n';
}

function backendOverrides(ops) {
  const lines = [banner('//'), "// Included inside each backend's class: its overrides of Backend's op methods."];
  for (const op of ops) lines.push(wrap('', `void ${op.name}(`, cppParams(op), ') override;'));
  return lines.join('\n') + '\n';
}

function opsDeclarations(ops) {
  const lines = [banner('//'), '// Included inside namespace sg::ops (core/ops.h): the checked front end of each op.'];
  for (const op of ops) lines.push(`// ${op.doc}`, wrap('', `void ${op.name}(`, cppParams(op), ');'));
  return lines.join('\n') + '\n';
}

function bindings(ops) {
  const lines = [banner('//'), '// Included inside the kOps table of addon/ops_binding.cpp: JavaScript arguments -> ops::<name>.'];
  for (const op of ops) {
    const call = op.args.map((a, i) => KINDS[a.kind].bind(i, a.name));
    lines.push(`{"${op.name}", [](const Args& a) {`, wrap('   ', `ops::${op.name}(`, call, ');'), ' }},');
  }
  return lines.join('\n') + '\n';
}

function tsInterface(ops) {
  const lines = [
    banner('//'),
    "// The type of the native module's `ops` object; ts/native.ts re-exports it.",
    "import type { ActivationName, NativeStream, NativeTensor } from './native';",
    '',
    '/** Every op enqueues work on a stream and returns at once; see native/core/op_table.json. */',
    'export interface NativeOps {',
  ];
  for (const op of ops) {
    lines.push(`  /** ${op.doc.replace(/\*\//g, '* /')} */`);
    lines.push(
      wrap(
        '  ',
        `${op.name}(`,
        op.args.map((a) => `${a.name}: ${KINDS[a.kind].ts}`),
        '): void;',
        110,
      ),
    );
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Every generated file: repo-relative path -> content. */
function generate(dir = root) {
  const ops = readTable(dir);
  return {
    'native/core/gen/backend_ops.inc': backendOps(ops),
    'native/core/gen/backend_overrides.inc': backendOverrides(ops),
    'native/core/gen/ops.inc': opsDeclarations(ops),
    'native/addon/gen/op_bindings.inc': bindings(ops),
    'ts/native-ops.ts': tsInterface(ops),
  };
}

/** The generated files whose content on disk differs from the table's (missing ones too). */
function staleFiles(dir = root) {
  return Object.entries(generate(dir))
    .filter(([file, text]) => {
      const p = path.join(dir, file);
      return !fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== text;
    })
    .map(([file]) => file);
}

module.exports = { readTable, generate, staleFiles, KINDS };

if (require.main === module) {
  const args = process.argv.slice(2);
  const dirArg = args.find((a) => !a.startsWith('--'));
  const dir = dirArg ? path.resolve(dirArg) : root;
  try {
    if (args.includes('--check')) {
      const stale = staleFiles(dir);
      for (const f of stale) console.error(`gen-ops: ${f} is stale; run \`npm run gen:ops\``);
      if (stale.length === 0) console.log(`gen-ops: the generated files match ${TABLE}`);
      process.exit(stale.length > 0 ? 1 : 0);
    }
    for (const [file, text] of Object.entries(generate(dir))) {
      const p = path.join(dir, file);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== text) {
        fs.writeFileSync(p, text);
        console.log(`gen-ops: wrote ${file}`);
      }
    }
  } catch (e) {
    console.error(`gen-ops: ${e.message}`);
    process.exit(1);
  }
}
