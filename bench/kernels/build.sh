#!/usr/bin/env bash
# Builds the CPU-kernel correctness check (bench/kernels/check_kernels.cpp) and runs it.
# Usage: bench/kernels/build.sh   (from anywhere; exits non-zero if the build or a check fails)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/bench
g++ -O3 -std=c++17 -pthread -I. native/cpu/kernels.cpp native/core/parallel.cpp \
  bench/kernels/check_kernels.cpp -o build/bench/check_kernels
./build/bench/check_kernels
