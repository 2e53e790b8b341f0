#!/usr/bin/env bash
# Builds the CPU-kernel correctness check (test/native/kernels/check_kernels.cpp) and runs it.
# Usage: test/native/kernels/build.sh   (from anywhere; exits non-zero if the build or a check fails)
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p build/test
g++ -O3 -std=c++17 -pthread -I. native/cpu/kernels.cpp native/core/parallel.cpp \
  test/native/kernels/check_kernels.cpp -o build/test/check_kernels
./build/test/check_kernels
