#!/usr/bin/env bash
# Builds the SGEMM timing against OpenBLAS (gemm_vs_openblas.cpp) into build/bench/. (The
# GEMM correctness check is test/native/gemm/build.sh.)
# Each library file gets the same flags as in the library build: -O3 for all, and the
# ISA flags only on the micro-kernel files (never -march=native, so the binaries also run
# on CPUs without AVX-512/AVX2; the code picks its path at run time).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/bench"
OBJ="$OUT/obj"
mkdir -p "$OBJ"

CXX="${CXX:-g++}"
COMMON=(-O3 -std=c++17 -pthread -Wall -Wextra)
case "$(uname -m)" in
  x86_64 | i?86)
    AVX512_FLAGS=(-mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma)
    AVX2_FLAGS=(-mavx2 -mfma)
    ;;
  *)  # no x86 SIMD paths: those files compile to stubs and the generic kernel is used
    AVX512_FLAGS=()
    AVX2_FLAGS=()
    ;;
esac

compile() {  # source object extra-flags...
  local src="$1" obj="$2"
  shift 2
  "$CXX" "${COMMON[@]}" "$@" -c "$ROOT/$src" -o "$OBJ/$obj"
}

compile native/cpu/gemm.cpp gemm.o
compile native/cpu/gemm_avx512.cpp gemm_avx512.o "${AVX512_FLAGS[@]}"
compile native/cpu/gemm_avx2.cpp gemm_avx2.o "${AVX2_FLAGS[@]}"
compile native/core/parallel.cpp parallel.o
compile bench/gemm/gemm_vs_openblas.cpp gemm_vs_openblas.o

LIB_OBJS=("$OBJ/gemm.o" "$OBJ/gemm_avx512.o" "$OBJ/gemm_avx2.o" "$OBJ/parallel.o")
"$CXX" "${COMMON[@]}" "$OBJ/gemm_vs_openblas.o" "${LIB_OBJS[@]}" -o "$OUT/gemm_vs_openblas" -ldl

echo "built $OUT/gemm_vs_openblas"
