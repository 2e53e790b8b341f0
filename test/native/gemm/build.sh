#!/usr/bin/env bash
# Builds the GEMM correctness check (check_gemm.cpp here) into build/test/; run it as
# build/test/check_gemm [isa...]. (The timing against OpenBLAS is bench/gemm/build.sh.) The
# library's files are compiled as the library build does (scripts/gemm-library.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
OUT="$ROOT/build/test"
OBJ="$OUT/obj"
mkdir -p "$OBJ"
source "$ROOT/scripts/gemm-library.sh"

compile test/native/gemm/check_gemm.cpp check_gemm.o
"$CXX" "${COMMON[@]}" "$OBJ/check_gemm.o" "${LIB_OBJS[@]}" -o "$OUT/check_gemm"

echo "built $OUT/check_gemm"
