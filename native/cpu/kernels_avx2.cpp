// The non-GEMM kernels (kernels_body.inc) compiled for one instruction set, into namespace
// sg::cpu::kernels_avx2. Its ISA flags: -mavx2 -mfma; with -ffp-contract=off
// (no fused multiply-add), so every ISA computes bit-identical results (see kernels_body.inc).
#define SG_KERNELS_NS kernels_avx2
#include "kernels_body.inc"
