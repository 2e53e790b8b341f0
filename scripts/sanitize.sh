#!/usr/bin/env bash
# The addon under AddressSanitizer + UndefinedBehaviorSanitizer: builds it (CPU only) into
# build-sanitize/ (the regular build/ is untouched), then runs a subset of the jest suite and the
# fuzzer (scripts/fuzz.js) against it. Passes with 0 sanitizer reports and both runs green.
#
#   bash scripts/sanitize.sh [--calls 3000] [--skip-build]        (needs dist/: npx tsc)
#
# How node runs an ASan addon: node itself is not instrumented, so the ASan runtime must be the
# first library loaded (it replaces malloc); it is preloaded (LD_PRELOAD, the libasan the compiler
# linked the addon against). detect_leaks=0: node does not free everything at exit, so
# LeakSanitizer would report node's own allocations (leaks are scripts/leak-check.js's job).
# Every report goes to a file in a fresh directory (log_path), so that one raised in a jest
# worker or a fuzzer child is counted too; the script prints them and fails when there is any.
# UBSan halts on the first error with a stack. Allocations above 3 GiB fail and a process above
# 6 GiB resident is stopped (both reported), so a huge tensor cannot take the machine's memory.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=3000
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    *) echo "sanitize.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
started=$SECONDS

if [ "$build" = 1 ]; then SYNTHGRAD_SANITIZE=1 node scripts/build-native.js; fi
addon="$PWD/build-sanitize/Release/synthgrad.node"
[ -f "$addon" ] || { echo "sanitize.sh: $addon is missing (run without --skip-build)"; exit 1; }
[ -d dist/ts ] || npx tsc -p tsconfig.json
libasan="$(ldd "$addon" | awk '/libasan/ { print $3 }')"
[ -n "$libasan" ] && [ -f "$libasan" ] || { echo "sanitize.sh: the addon is not linked against libasan ($addon)"; exit 1; }

reports="$(mktemp -d "${TMPDIR:-/tmp}/synthgrad-sanitize-XXXXXX")"
trap 'rm -rf "$reports"' EXIT
run_sanitized() {
  SYNTHGRAD_ADDON="$addon" LD_PRELOAD="$libasan" \
  ASAN_OPTIONS="detect_leaks=0:log_path=$reports/asan:max_allocation_size_mb=3072:allocator_may_return_null=1:hard_rss_limit_mb=6144:detect_stack_use_after_return=0" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
    "$@"
}

echo "== ASan + UBSan: jest subset against $addon"
tests=(test/ops.test.ts test/errors.test.ts test/streams.test.ts test/graph.test.ts test/dni.test.ts
       test/train.test.ts test/inference.test.ts test/data.test.ts test/options.test.ts)
for extra in test/native-hardening.test.ts test/hardening.test.ts; do [ -f "$extra" ] && tests+=("$extra"); done
jest_status=0
run_sanitized npx jest --runInBand "${tests[@]}" 2>&1 | tail -40 || jest_status=$?

echo "== ASan + UBSan: fuzzer, $calls calls"
fuzz_status=0
run_sanitized node scripts/fuzz.js --calls "$calls" --batch 150 --timeout 60 || fuzz_status=$?

count=$(find "$reports" -type f | wc -l)
for f in $(find "$reports" -type f | head -5); do
  echo "---- $(basename "$f")"
  head -40 "$f"
done
echo "sanitize: $count sanitizer report(s); jest exit $jest_status, fuzzer exit $fuzz_status; $((SECONDS - started)) s"
[ "$count" = 0 ] && [ "$jest_status" = 0 ] && [ "$fuzz_status" = 0 ]
