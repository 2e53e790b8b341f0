#!/usr/bin/env bash
# The addon under AddressSanitizer + UndefinedBehaviorSanitizer: builds it (CPU only) into
# build-sanitize/ (the regular build/ is untouched), then runs a subset of the jest suite and the
# fuzzer (scripts/fuzz.js) against it. Passes with 0 sanitizer reports and both runs green.
#
#   bash scripts/sanitize.sh [--calls 10000] [--skip-build]        (needs dist/: npx tsc)
#
# How node runs an ASan addon: node itself is not instrumented, so the ASan runtime must be the
# first library loaded (it replaces malloc); it is preloaded (LD_PRELOAD, the libasan the compiler
# linked the addon against). detect_leaks=0: node does not free everything at exit, so
# LeakSanitizer would report node's own allocations (leaks are scripts/leak-check.js's job).
# allow_user_segv_handler=0: node installs its own SIGSEGV handler over ASan's, and a segfault
# would then be a bare signal instead of a report with a stack. UBSan halts on the first error
# with a stack. Reports are found in the output (log_path is not honoured by the UBSan runtime
# here): the jest log is searched, and the fuzzer counts those in its children's output itself.
# Allocations above 3 GiB fail and a process above 6 GiB resident is stopped (both reported), so
# a huge tensor cannot take the machine's memory. The subset leaves out the slow MNIST training
# tests (train.test.ts: minutes under ASan) and the CLI and package tests (no addon code of
# their own).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=10000
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

logs="$(mktemp -d "${TMPDIR:-/tmp}/synthgrad-sanitize-XXXXXX")"
trap 'rm -rf "$logs"' EXIT
run_sanitized() {
  SYNTHGRAD_ADDON="$addon" LD_PRELOAD="$libasan" \
  ASAN_OPTIONS="detect_leaks=0:allow_user_segv_handler=0:max_allocation_size_mb=3072:allocator_may_return_null=1:hard_rss_limit_mb=6144" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$@"
}
report_pattern='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL'

echo "== ASan + UBSan: jest subset against $addon"
tests=(test/ops.test.ts test/errors.test.ts test/streams.test.ts test/graph.test.ts test/dni.test.ts
       test/inference.test.ts test/data.test.ts test/options.test.ts test/checkpoint.test.ts)
tests+=(test/hardening-native.test.ts)
jest_status=0
jest_started=$SECONDS
run_sanitized npx jest --runInBand "${tests[@]}" >"$logs/jest.log" 2>&1 || jest_status=$?
grep -E '^(PASS|FAIL) |^Tests:' "$logs/jest.log" || tail -30 "$logs/jest.log"
jest_reports=$(grep -cE "$report_pattern" "$logs/jest.log" || true)
if [ "$jest_reports" != 0 ]; then grep -m1 -A30 -E "$report_pattern" "$logs/jest.log"; fi
echo "jest: $jest_reports sanitizer report(s), exit $jest_status, $((SECONDS - jest_started)) s"

echo "== ASan + UBSan: fuzzer, $calls calls (it fails on any sanitizer report in its children)"
fuzz_status=0
run_sanitized node scripts/fuzz.js --calls "$calls" --batch 150 --timeout 60 || fuzz_status=$?

echo "sanitize: jest $jest_reports sanitizer report(s) (exit $jest_status), fuzzer exit $fuzz_status; $((SECONDS - started)) s in all"
[ "$jest_reports" = 0 ] && [ "$jest_status" = 0 ] && [ "$fuzz_status" = 0 ]
