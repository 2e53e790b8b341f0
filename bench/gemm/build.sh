#!/usr/bin/env bash
# Builds the SGEMM timing against OpenBLAS (gemm_vs_openblas.cpp) into build/bench/. (The GEMM
# correctness check is test/native/gemm/build.sh.) The library's files are compiled as the
# library build does (scripts/gemm-library.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/bench"
OBJ="$OUT/obj"
mkdir -p "$OBJ"
source "$ROOT/scripts/gemm-library.sh"

compile bench/gemm/gemm_vs_openblas.cpp gemm_vs_openblas.o
"$CXX" "${COMMON[@]}" "$OBJ/gemm_vs_openblas.o" "${LIB_OBJS[@]}" -o "$OUT/gemm_vs_openblas" -ldl

echo "built $OUT/gemm_vs_openblas"
