#!/usr/bin/env bash
# Builds the CPU-kernel correctness check (test/native/kernels/check_kernels.cpp) and runs it
# once per ISA path this CPU has (SYNTHGRAD_SGEMM_ISA forces the kernels' path with the
# GEMM's). Also checks that the per-ISA objects define no weak symbol outside their own
# namespace: the linker could pick such an AVX-512 copy for the generic path.
# Usage: test/native/kernels/build.sh   (from anywhere; exits non-zero if the build or a check fails)
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p build/test/kernels
flags="-O3 -std=c++17 -pthread -I."
kernel_flags="-fno-math-errno -ffp-contract=off"  # as CMakeLists.txt compiles them
objs=()
for src in kernels_generic kernels_avx2 kernels_avx512 gemm_avx2 gemm_avx512; do
  extra=""
  case $src in
    *_avx2) extra="-mavx2 -mfma" ;;
    *_avx512) extra="-mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma" ;;
  esac
  [[ $src == kernels_* ]] && extra="$extra $kernel_flags"
  g++ $flags $extra -c native/cpu/$src.cpp -o build/test/kernels/$src.o
  objs+=(build/test/kernels/$src.o)
done
for isa in avx2 avx512; do
  leaked="$(nm -C --defined-only build/test/kernels/kernels_$isa.o | grep -E ' [WVu] ' |
    grep -v -e "kernels_$isa::" -e 'DW.ref.__gxx_personality_v0' || true)"
  if [[ -n "$leaked" ]]; then
    echo "kernels_$isa.o defines weak symbols outside its namespace:"; echo "$leaked"; exit 1
  fi
done
g++ $flags native/cpu/kernels.cpp native/cpu/gemm.cpp native/core/parallel.cpp "${objs[@]}" \
  test/native/kernels/check_kernels.cpp -o build/test/check_kernels
for isa in generic avx2 avx512; do
  echo "== SYNTHGRAD_SGEMM_ISA=$isa"
  SYNTHGRAD_SGEMM_ISA=$isa ./build/test/check_kernels
done
