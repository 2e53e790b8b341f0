# The CPU-only addon built with node-gyp, for machines without CMake:
#   npx node-gyp rebuild
# CMakeLists.txt is the main build (it adds the CUDA backend). The source lists here must name
# every .cpp of CMake's globs (native/core, native/cpu, native/addon): test/build-sources.test.ts
# fails when they differ.
{
  "variables": {
    "core_flags": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wno-unused-parameter"]
  },
  "targets": [
    {
      # The GEMM micro-kernels and the per-ISA kernels are the only code built with AVX2/AVX-512
      # (chosen at run time).
      "target_name": "gemm_avx2",
      "type": "static_library",
      "sources": ["native/cpu/gemm_avx2.cpp"],
      "cflags_cc": ["<@(core_flags)", "-fPIC", "-mavx2", "-mfma"]
    },
    {
      "target_name": "gemm_avx512",
      "type": "static_library",
      "sources": ["native/cpu/gemm_avx512.cpp"],
      "cflags_cc": ["<@(core_flags)", "-fPIC", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mfma"]
    },
    {
      # The non-GEMM kernels once per ISA (native/cpu/kernels_isa.h); no FMA contraction, so
      # every ISA gives bit-identical results.
      "target_name": "kernels_generic",
      "type": "static_library",
      "sources": ["native/cpu/kernels_generic.cpp"],
      "include_dirs": ["native"],
      "cflags_cc": ["<@(core_flags)", "-fPIC", "-fno-math-errno", "-ffp-contract=off"]
    },
    {
      "target_name": "kernels_avx2",
      "type": "static_library",
      "sources": ["native/cpu/kernels_avx2.cpp"],
      "include_dirs": ["native"],
      "cflags_cc": ["<@(core_flags)", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-mavx2", "-mfma"]
    },
    {
      "target_name": "kernels_avx512",
      "type": "static_library",
      "sources": ["native/cpu/kernels_avx512.cpp"],
      "include_dirs": ["native"],
      "cflags_cc": ["<@(core_flags)", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mfma"]
    },
    {
      "target_name": "synthgrad",
      "dependencies": ["gemm_avx2", "gemm_avx512", "kernels_generic", "kernels_avx2", "kernels_avx512"],
      "sources": [
        "native/core/ops.cpp",
        "native/core/parallel.cpp",
        "native/core/registry.cpp",
        "native/core/stream_order.cpp",
        "native/cpu/conv.cpp",
        "native/cpu/cpu_allocator.cpp",
        "native/cpu/cpu_backend.cpp",
        "native/cpu/cpu_conv_ops.cpp",
        "native/cpu/cpu_graphs.cpp",
        "native/cpu/cpu_ops.cpp",
        "native/cpu/cpu_streams.cpp",
        "native/cpu/gemm.cpp",
        "native/cpu/kernels.cpp",
        "native/cpu/pool.cpp",
        "native/addon/addon.cpp",
        "native/addon/completion.cpp",
        "native/addon/convert.cpp",
        "native/addon/handles.cpp",
        "native/addon/ops_binding.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["<@(core_flags)", "-fno-math-errno"],
      "libraries": ["-lpthread"]
    }
  ]
}
