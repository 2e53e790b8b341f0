#!/usr/bin/env bash
# Runs the kernel sections of cuda/*.cu on the CPU (see cuda_runtime.h here) against the CPU
# kernels of native/cpu. No GPU and no nvcc needed: g++ only. Usage: bench/cuda/host_emulation/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen"
for f in gemm elementwise batchnorm loss optimizer; do
  # The text between the "// kernels" and "// launchers" banners, without namespace closers.
  sed -n '/^\/\/ kernels$/,/^\/\/ launchers$/p' "$root/cuda/$f.cu" | grep -v '^}  // namespace$' \
    > "$work/gen/${f}_kernels.inc"
done
flags="-std=c++17 -O2 -ffp-contract=off -pthread -I$root/native"
objs=()
for src in kernels parallel gemm gemm_avx2 gemm_avx512; do
  extra=""
  case $src in
    gemm_avx2) extra="-mavx2 -mfma" ;;
    gemm_avx512) extra="-mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma" ;;
  esac
  g++ $flags $extra -c "$root/native/cpu/$src.cpp" -o "$work/$src.o" 2>/dev/null ||
    g++ $flags $extra -c "$root/native/core/$src.cpp" -o "$work/$src.o"
  objs+=("$work/$src.o")
done
g++ $flags -w -I"$here" -I"$work" -I"$root/cuda" "$here/emulate.cpp" "${objs[@]}" -o "$work/emulate"
"$work/emulate"
