#!/usr/bin/env bash
# Builds bench/conv/conv_ab.cpp into build/bench/conv_ab: the working tree's conv.cpp and
# pool.cpp against COMMIT's (default HEAD), compiled into namespace sg::oldcpu, with the
# working tree's GEMM (scripts/gemm-library.sh) under both.
#
#   bench/conv/build.sh [COMMIT]  then  build/bench/conv_ab [--threads N] [--reps R] ...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMMIT="${1:-HEAD}"
OUT="$ROOT/build/bench"
OBJ="$OUT/conv-obj"
mkdir -p "$OBJ/old/native/cpu"
source "$ROOT/scripts/gemm-library.sh"

# The commit's files, in a tree beside the working tree's headers (their includes are relative).
for f in conv.cpp pool.cpp; do git -C "$ROOT" show "$COMMIT:native/cpu/$f" >"$OBJ/old/native/cpu/$f"; done
cp -r "$ROOT/native/core" "$OBJ/old/native/"
for h in conv.h kernels.h kernels_api.inc; do git -C "$ROOT" show "$COMMIT:native/cpu/$h" >"$OBJ/old/native/cpu/$h"; done
for f in conv pool; do
  "$CXX" "${COMMON[@]}" -Dcpu=oldcpu -c "$OBJ/old/native/cpu/$f.cpp" -o "$OBJ/old_$f.o"
  compile "native/cpu/$f.cpp" "$f.o"
done
compile bench/conv/conv_ab.cpp conv_ab.o
"$CXX" "${COMMON[@]}" "$OBJ/conv_ab.o" "$OBJ/conv.o" "$OBJ/pool.o" "$OBJ/old_conv.o" "$OBJ/old_pool.o" \
  "${LIB_OBJS[@]}" -o "$OUT/conv_ab"
echo "built $OUT/conv_ab (old: $COMMIT)"
