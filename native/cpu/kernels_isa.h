// Internal to the CPU kernels: the non-GEMM kernels once per instruction set. kernels_body.inc
// is compiled three times (kernels_generic.cpp, kernels_avx2.cpp, kernels_avx512.cpp), each
// time into its own namespace with its ISA's compiler flags (CMakeLists.txt, binding.gyp);
// kernels.cpp forwards every call of kernels.h to the namespace of the ISA sgemm uses.
#pragma once
#include "kernels.h"

namespace sg::cpu::kernels_generic {
#include "kernels_api.inc"
// What the compiler flags of this translation unit gave: "avx512", "avx2" or "generic".
const char* compiledIsa();
}  // namespace sg::cpu::kernels_generic

namespace sg::cpu::kernels_avx2 {
#include "kernels_api.inc"
const char* compiledIsa();
}  // namespace sg::cpu::kernels_avx2

namespace sg::cpu::kernels_avx512 {
#include "kernels_api.inc"
const char* compiledIsa();
}  // namespace sg::cpu::kernels_avx512
