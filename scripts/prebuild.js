#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): puts the addon built here (build/Release, by npm install
// or npm run build) into prebuilds/<platform>-<arch>/, where node-gyp-build finds it and
// scripts/install.js uses it instead of compiling. One file serves CPU-only and GPU machines
// when it is built with CUDA: the CUDA runtime is linked statically, and without a GPU or
// driver the addon runs its CPU backend. The name's tags (napi, glibc) are node-gyp-build's.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const built = path.join(root, 'build', 'Release', 'synthgrad.node');
if (!fs.existsSync(built)) {
  console.error('synthgrad prebuild: build/Release/synthgrad.node is missing: run `npm run build` first');
  process.exit(1);
}
const info = require(built).buildInfo();
if (process.env.SYNTHGRAD_PREBUILD_REQUIRE_CUDA === '1' && !info.cuda) {
  console.error('synthgrad prebuild: the addon was built without CUDA (SYNTHGRAD_CUDA=on npm run build builds it with CUDA)');
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
const target = path.join(dir, `synthgrad.napi.${process.platform === 'linux' ? 'glibc.' : ''}node`);
fs.copyFileSync(built, target);
console.log(
  `synthgrad prebuild: ${path.relative(root, target)} (${(fs.statSync(target).size / 1e6).toFixed(1)} MB, ` +
    `CPU GEMM ${info.cpuGemm}, ${info.cuda ? 'CUDA built in' : 'CPU only'})`,
);
