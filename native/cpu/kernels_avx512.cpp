// The non-GEMM kernels (kernels_body.inc) compiled for one instruction set, into namespace
// sg::cpu::kernels_avx512. Its ISA flags: -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma; with -ffp-contract=off
// (no fused multiply-add), so every ISA computes bit-identical results (see kernels_body.inc).
#define SG_KERNELS_NS kernels_avx512
#include "kernels_body.inc"
