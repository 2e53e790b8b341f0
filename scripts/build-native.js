#!/usr/bin/env node
// Builds the native addon with cmake-js; run by `npm install` and `npm run build`.
//   SYNTHGRAD_CUDA=auto|on|off   compile the CUDA backend when nvcc is found / always / never
//   SYNTHGRAD_CUDA_ARCHS="80;90" CUDA architectures (Hopper = 90)
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const cuda = (process.env.SYNTHGRAD_CUDA || 'auto').toUpperCase();
if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  console.error(`SYNTHGRAD_CUDA must be auto, on or off (got '${process.env.SYNTHGRAD_CUDA}')`);
  process.exit(1);
}
const defines = [`--CDSYNTHGRAD_CUDA=${cuda}`];
if (process.env.SYNTHGRAD_CUDA_ARCHS) defines.push(`--CDSYNTHGRAD_CUDA_ARCHS=${process.env.SYNTHGRAD_CUDA_ARCHS}`);
// nvcc is often outside PATH; make the usual location visible to CMake's detection.
const env = { ...process.env };
if (cuda !== 'OFF' && !env.CUDACXX) {
  for (const p of ['/usr/local/cuda/bin/nvcc']) {
    if (require('fs').existsSync(p)) { env.CUDACXX = p; break; }
  }
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const run = (args) => spawnSync(process.execPath, [cmakeJs, ...args], {
  stdio: 'inherit', env, cwd: path.join(__dirname, '..'),
});
// Configure every time, so that a changed switch takes effect in an existing build folder.
let r = run(['configure', ...defines]);
if (r.status === 0) r = run(['build']);
if (r.status !== 0) {
  console.error('\nsynthgrad: building the native addon failed (see above). Needs CMake >= 3.18 and a C++17 compiler;');
  console.error('without CMake, `npx node-gyp rebuild` builds the CPU-only addon from binding.gyp.');
  process.exit(r.status || 1);
}
