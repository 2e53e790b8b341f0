#!/usr/bin/env bash
# The complete unlock on the MNIST FCN (784-256-256-256-10, BatchNorm + ReLU, cut after every
# hidden ReLU: 4 modules): backprop, DNI, cDNI, DNI+unlock and cDNI+unlock at the same budget
# (3 epochs = 705 steps of batch 256, Adam lr 1e-3 x0.1 at 60% and 85%, seed 0). The unlock
# runs go twice, with one stream per module and with one stream in all: the two must print the
# same numbers (bit-identical training), and their epoch times give the step time per stream mode.
# Writes one log per run beside this script (NAME.txt, its first line the command); a finished
# log is skipped, so the script resumes. DIST=path runs another build's CLI (default: ../../dist).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dist="${DIST:-$here/../../dist}"
common=(--epochs 3 --lr 1e-3 --seed 0)
run() {
  local name="$1"
  shift
  local log="$here/$name.txt"
  [ -s "$log" ] && return 0
  echo "node dist/ts/cli/main.js $* ${common[*]}" > "$log.tmp"
  nice -n 5 node "$dist/ts/cli/main.js" "$@" "${common[@]}" >> "$log.tmp" 2>&1
  mv "$log.tmp" "$log"
}
run backprop --method backprop
run cdni --method cdni
run cdni-unlock --method cdni --unlock
run cdni-unlock-single --method cdni --unlock --streams single
run dni --method dni
run dni-unlock --method dni --unlock
run dni-unlock-single --method dni --unlock --streams single
