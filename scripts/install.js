#!/usr/bin/env node
// `npm install` of the package: use the prebuilt addon shipped in prebuilds/ when it loads on
// this machine (seconds), else build from source (scripts/build-native.js).
// SYNTHGRAD_BUILD_FROM_SOURCE=1 always builds. In a clone of the repository there is no
// prebuilds/ folder, so it always builds.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const prebuilds = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

function prebuilt() {
  if (process.env.SYNTHGRAD_BUILD_FROM_SOURCE === '1' || process.env.SYNTHGRAD_CUDA) return undefined;
  if (!fs.existsSync(prebuilds)) return undefined;
  for (const name of fs.readdirSync(prebuilds).filter((n) => n.endsWith('.node'))) {
    const file = path.join(prebuilds, name);
    try {
      const addon = require(file);
      return { file, info: addon.buildInfo() };
    } catch (e) {
      console.log(`synthgrad: the prebuilt addon ${name} does not load here (${e.message.split('\n')[0]}); building from source`);
    }
  }
  return undefined;
}

const found = prebuilt();
if (found) {
  console.log(
    `synthgrad: using the prebuilt addon prebuilds/${path.basename(prebuilds)}/${path.basename(found.file)}` +
      ` (CPU GEMM ${found.info.cpuGemm}${found.info.cuda ? ', CUDA built in' : ', CPU only'}); SYNTHGRAD_BUILD_FROM_SOURCE=1 builds it instead`,
  );
} else {
  require('./build-native.js');
}
