// The non-GEMM kernels (kernels_body.inc) compiled for one instruction set, into namespace
// sg::cpu::kernels_generic. Its ISA flags: none (baseline x86-64: SSE2); with -ffp-contract=off
// (no fused multiply-add), so every ISA computes bit-identical results (see kernels_body.inc).
#define SG_KERNELS_NS kernels_generic
#include "kernels_body.inc"
