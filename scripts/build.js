#!/usr/bin/env node
// `npm run build`: the native addon from source, then (in a clone of the repository, where the
// TypeScript sources are) the JavaScript in dist/. An installed package ships dist/ compiled, so
// there only the addon is rebuilt.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
require('./build-native.js');
if (!fs.existsSync(path.join(root, 'tsconfig.json')) || !fs.existsSync(path.join(root, 'ts'))) {
  console.log('synthgrad: dist/ comes compiled in the package (no TypeScript sources here); the addon was rebuilt');
  process.exit(0);
}
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  console.error('synthgrad: compiling ts/ needs the dev dependencies: run `npm install` in this folder first');
  process.exit(1);
}
for (const args of [[tsc, '-p', 'tsconfig.json'], [path.join(__dirname, 'build-esm.js')]]) {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status || 1);
}
