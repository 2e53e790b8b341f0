# Sourced by the GEMM programs' build scripts (test/native/gemm/build.sh, bench/gemm/build.sh):
# compiles the library's GEMM files into $OBJ with the flags of the library build (-O3 for all,
# the ISA flags only on the micro-kernel files, never -march=native, so the binaries also run
# on CPUs without AVX-512/AVX2: the code picks its path at run time). Needs ROOT and OBJ; sets
# CXX, COMMON, compile() and LIB_OBJS.
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
LIB_OBJS=("$OBJ/gemm.o" "$OBJ/gemm_avx512.o" "$OBJ/gemm_avx2.o" "$OBJ/parallel.o")
