// Stand-in for CUDA's <mma.h> (wmma) in the host emulation: the TF32 kernel of cuda/gemm.cu
// uses wmma only under __CUDA_ARCH__ >= 800, which g++ never defines, so nothing is needed.
#pragma once
