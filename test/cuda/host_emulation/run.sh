#!/usr/bin/env bash
# Runs the kernel files of cuda/*.cu on the CPU (see cuda_runtime.h here) against the CPU
# kernels of native/cpu: their kernel sections directly, and the whole files (launchers
# included, through SG_LAUNCH) as separate translation units. Then the backend's runtime files
# (cuda_backend.cu and its parts) on a fake CUDA runtime (fake_runtime.cpp; tests in
# fake_test.cpp), also under ThreadSanitizer.
# No GPU and no nvcc needed: g++ only. Usage: test/cuda/host_emulation/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen"
for f in gemm elementwise batchnorm loss lstm conv optimizer; do
  # The text between the "// kernels" and "// launchers" banner lines, without namespace
  # closers (each of these .cu files says so beside its banner).
  sed -n '/^\/\/ kernels$/,/^\/\/ launchers$/p' "$root/cuda/$f.cu" | grep -v '^}  // namespace$' \
    > "$work/gen/${f}_kernels.inc"
done
flags="-std=c++17 -O2 -ffp-contract=off -pthread -I$root/native"
objs=()
# The CPU kernels: kernels.cpp calls the per-ISA copies (kernels_*.cpp) on sgemm's path.
isaFlags() {  # isaFlags SOURCE-NAME: the ISA flags CMakeLists.txt gives that file
  case $1 in
    *_avx2) echo "-mavx2 -mfma" ;;
    *_avx512) echo "-mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma" ;;
  esac
}
cpuKernelSources="kernels kernels_generic kernels_avx2 kernels_avx512 gemm gemm_avx2 gemm_avx512"
for src in $cpuKernelSources conv pool parallel; do
  extra="$(isaFlags $src) -fno-math-errno"
  g++ $flags $extra -c "$root/native/cpu/$src.cpp" -o "$work/$src.o" 2>/dev/null ||
    g++ $flags $extra -c "$root/native/core/$src.cpp" -o "$work/$src.o"
  objs+=("$work/$src.o")
done
# The launchers: each kernel file compiled whole, as nvcc would (one translation unit each).
kernelObjs=()
for f in gemm elementwise batchnorm loss lstm conv optimizer; do
  g++ $flags -w -x c++ -I"$here" -I"$root/cuda" -c "$root/cuda/$f.cu" -o "$work/cu_$f.o"
  kernelObjs+=("$work/cu_$f.o")
done
g++ $flags -w -I"$here" -I"$work" -I"$root/cuda" "$here/emulate.cpp" "${objs[@]}" "${kernelObjs[@]}" \
  -o "$work/emulate"
"$work/emulate"

# The runtime side: cuda_backend.cu on the fake CUDA runtime (fake_runtime.cpp), see
# fake_test.cpp; then the same under ThreadSanitizer (SG_EMULATION_TSAN=0 skips that: it
# recompiles the kernel files, a few minutes).
fakeBuild() {  # fakeBuild DIR EXTRA_FLAGS...
  local dir=$1; shift
  mkdir -p "$dir"
  local o=()
  # Every .cu: the kernel files and the backend's runtime files (cuda_backend.cu, cuda_ops.cu,
  # cuda_graphs.cu, cuda_transfers.cu, ...), as the CMake build compiles them.
  for src in "$root"/cuda/*.cu; do
    f=$(basename "$src" .cu)
    g++ $flags "$@" -w -x c++ -I"$here" -I"$root/cuda" -c "$src" -o "$dir/cu_$f.o"
    o+=("$dir/cu_$f.o")
  done
  for name in $cpuKernelSources; do
    g++ $flags "$@" $(isaFlags $name) -fno-math-errno -w -c "$root/native/cpu/$name.cpp" -o "$dir/$name.o"
    o+=("$dir/$name.o")
  done
  for src in "$root/native/core/parallel.cpp" "$root/native/core/registry.cpp" \
      "$here/fake_runtime.cpp"; do
    g++ $flags "$@" -w -I"$here" -I"$root/cuda" -c "$src" -o "$dir/$(basename "$src" .cpp).o"
    o+=("$dir/$(basename "$src" .cpp).o")
  done
  g++ $flags "$@" -w -I"$here" -I"$root/cuda" "$here/fake_test.cpp" "${o[@]}" -o "$dir/fake_test"
}
echo
echo '== the runtime side (cuda_backend.cu and its parts) on the fake runtime'
fakeBuild "$work/fake"
"$work/fake/fake_test"
if [[ ${SG_EMULATION_TSAN:-1} != 0 ]]; then
  echo
  echo '== the same under ThreadSanitizer'
  fakeBuild "$work/tsan" -fsanitize=thread -g
  TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$work/tsan/fake_test"
fi
