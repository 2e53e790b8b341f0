#!/usr/bin/env bash
# The cost of the pipelined schedule's staleness: cDNI on MNIST (784-256-256-256-10, Adam lr
# 1e-3, batch 256, 2 epochs, seed 0) in lockstep and with modules running 1 and 2 batches ahead.
# With OLD_DIST=path/to/dist it runs that build's CLI instead (the code before the fix).
# Writes one log per run beside this script (NAME.txt); README.md has the table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dist="${OLD_DIST:-$here/../../dist}"
tag="${OLD_DIST:+before-fix-}"
for pipeline in 0 1 2; do
  log="$here/${tag}cdni-pipeline$pipeline.txt"
  [ -s "$log" ] && continue
  args=(--method cdni --epochs 2 --lr 1e-3 --seed 0 --diagnose-every 100)
  [ "$pipeline" -gt 0 ] && args+=(--pipeline "$pipeline")
  echo "node dist/ts/cli/main.js ${args[*]}" > "$log.tmp"
  node "$dist/ts/cli/main.js" "${args[@]}" >> "$log.tmp" 2>&1
  mv "$log.tmp" "$log"
done
