#!/usr/bin/env bash
# Builds the CPU stream checks (check_streams.cpp here) with the stream and pool sources, runs
# them, then does the same under ThreadSanitizer (SG_STREAMS_TSAN=0 skips that).
# Usage: test/native/streams/build.sh [pool sizes...]   (exits non-zero if a check fails)
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p build/test
srcs=(native/cpu/cpu_streams.cpp native/core/parallel.cpp native/core/stream_order.cpp native/core/registry.cpp
  test/native/streams/check_streams.cpp)
g++ -O2 -std=c++17 -pthread -Inative "${srcs[@]}" -o build/test/check_streams
./build/test/check_streams "$@"
if [ "${SG_STREAMS_TSAN:-1}" != 0 ]; then
  g++ -O1 -g -std=c++17 -pthread -fsanitize=thread -Inative "${srcs[@]}" -o build/test/check_streams_tsan
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build/test/check_streams_tsan "$@"
fi
