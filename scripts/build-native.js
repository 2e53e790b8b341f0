#!/usr/bin/env node
// Builds the native addon from source with cmake-js (run by `npm install` when no prebuilt addon
// fits, and by `npm run build`). It says in one line what it builds and why, keeps the
// compiler's output in a log (printed when the build fails, or streamed with
// SYNTHGRAD_VERBOSE=1), and, when installed as a dependency, leaves only the addon behind.
//   SYNTHGRAD_CUDA=auto|on|off   CUDA backend: when nvcc and an NVIDIA GPU are both here / always / never
//   SYNTHGRAD_CUDA_ARCHS="80;90" CUDA architectures (Hopper = 90)
//   SYNTHGRAD_SANITIZE=1         an ASan + UBSan build (CPU only) into build-sanitize/ instead, for
//                                scripts/sanitize.sh; the regular build/ is left as it is
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const sanitize = process.env.SYNTHGRAD_SANITIZE === '1';
const cuda = sanitize ? 'off' : (process.env.SYNTHGRAD_CUDA || 'auto').toLowerCase();
if (!['auto', 'on', 'off'].includes(cuda)) {
  console.error(`synthgrad: SYNTHGRAD_CUDA must be auto, on or off (got '${process.env.SYNTHGRAD_CUDA}')`);
  process.exit(1);
}

// nvcc is often outside PATH; make the usual location visible to CMake's detection.
const env = { ...process.env };
function findNvcc() {
  if (env.CUDACXX && fs.existsSync(env.CUDACXX)) return env.CUDACXX;
  for (const dir of [...(env.PATH || '').split(path.delimiter), '/usr/local/cuda/bin']) {
    const p = path.join(dir, 'nvcc');
    if (dir && fs.existsSync(p)) return p;
  }
  return undefined;
}
const hasGpu = () => fs.existsSync('/dev/nvidiactl') || spawnSync('nvidia-smi', ['-L'], { stdio: 'ignore' }).status === 0;

// What to build, and the one-line reason.
const nvcc = cuda === 'off' ? undefined : findNvcc();
let withCuda;
let why;
if (sanitize) [withCuda, why] = [false, 'SYNTHGRAD_SANITIZE=1: ASan + UBSan, into build-sanitize/'];
else if (cuda === 'off') [withCuda, why] = [false, 'SYNTHGRAD_CUDA=off'];
else if (cuda === 'on') [withCuda, why] = [true, 'SYNTHGRAD_CUDA=on'];
else if (!nvcc) [withCuda, why] = [false, 'no nvcc found; SYNTHGRAD_CUDA=on to require it'];
else if (!hasGpu()) [withCuda, why] = [false, `nvcc found, but no NVIDIA GPU here; SYNTHGRAD_CUDA=on builds it anyway`];
else [withCuda, why] = [true, 'nvcc and an NVIDIA GPU found'];
if (withCuda && nvcc && !env.CUDACXX) env.CUDACXX = nvcc;

const archs = process.env.SYNTHGRAD_CUDA_ARCHS || '80;90';
console.log(
  `synthgrad: building the native addon (C++17, N-API 8): CPU backend${withCuda ? ` + CUDA for sm_${archs.split(';').join(', sm_')}` : ' only'}` +
    ` (${why}); about ${withCuda ? '3-5 minutes' : sanitize ? 'a few minutes' : '30 seconds'} on 2 cores`,
);

const defines = [`--CDSYNTHGRAD_CUDA=${withCuda ? 'ON' : 'OFF'}`, `--CDSYNTHGRAD_CUDA_ARCHS=${archs}`];
const buildDir = sanitize ? 'build-sanitize' : 'build';
if (sanitize) defines.push('--CDSYNTHGRAD_SANITIZE=ON', '--out', buildDir);
const verbose = process.env.SYNTHGRAD_VERBOSE === '1';
const logFile = path.join(os.tmpdir(), `synthgrad-build-${process.pid}.log`);
const log = verbose ? undefined : fs.openSync(logFile, 'w');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const run = (args) =>
  spawnSync(process.execPath, [cmakeJs, ...args], {
    stdio: verbose ? 'inherit' : ['ignore', log, log],
    env,
    cwd: root,
  });
const started = Date.now();
// Configure every time, so that a changed switch takes effect in an existing build folder.
let r = run(['configure', ...defines]);
if (r.status === 0) r = run(['build', ...(sanitize ? ['--out', buildDir] : [])]);
if (log !== undefined) fs.closeSync(log);
if (r.status !== 0) {
  if (!verbose) {
    const lines = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n');
    console.error(lines.slice(-40).join('\n'));
    console.error(`(the whole build log: ${logFile})`);
  }
  console.error('\nsynthgrad: building the native addon failed (see above). It needs CMake >= 3.18 and a C++17 compiler;');
  console.error('without CMake, `npx node-gyp rebuild` builds the CPU-only addon from binding.gyp.');
  process.exit(r.status || 1);
}
if (!verbose) fs.rmSync(logFile, { force: true });

// Installed as a dependency: keep the addon, drop the object files and CMake's cache.
const build = path.join(root, 'build');
if (root.split(path.sep).includes('node_modules')) {
  // synthgrad_mpi.node, the optional MPI transport, is there when CMake found MPI; synthgrad_nccl.node always (it loads NCCL at run time).
  const addons = ['synthgrad.node', 'synthgrad_mpi.node', 'synthgrad_nccl.node']
    .map((n) => path.join(build, 'Release', n))
    .filter((f) => fs.existsSync(f));
  const kept = addons.map((f) => fs.readFileSync(f));
  fs.rmSync(build, { recursive: true, force: true });
  fs.mkdirSync(path.join(build, 'Release'), { recursive: true });
  addons.forEach((f, i) => fs.writeFileSync(f, kept[i]));
}
console.log(`synthgrad: built ${buildDir}/Release/synthgrad.node in ${Math.round((Date.now() - started) / 1000)} s`);
