#!/usr/bin/env bash
# Registers, spills, stack and shared memory of every CUDA kernel, as ptxas reports them
# (nvcc -Xptxas -v), for one architecture: bench/cuda/ptxas-report.md. No GPU needed.
#   bash bench/cuda/ptxas_report.sh [ARCH]     (default 90: H100/H200; nvcc on PATH)
# Occupancy follows from the registers: an SM has 65536 of them, so a 256-thread block using
# R registers per thread fits floor(65536 / (256 R)) times (register file only).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
arch=${1:-90}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$root/bench/cuda/ptxas-report.md"
{
  echo "# ptxas resource usage of the CUDA kernels (sm_$arch)"
  echo
  echo "$(date -u +%Y-%m-%d); $(nvcc --version | tail -1); flags as CMakeLists.txt (-O3, -lineinfo);"
  echo "produced by \`bash bench/cuda/ptxas_report.sh $arch\`. Spills and local memory are build errors."
  echo
  echo '| file | kernel | registers | spill stores/loads (bytes) | stack (bytes) | shared memory (bytes) |'
  echo '|---|---|---|---|---|---|'
} > "$out"
for f in "$root"/cuda/*.cu; do
  name=$(basename "$f")
  nvcc -std=c++17 -O3 --expt-relaxed-constexpr -lineinfo -arch="sm_$arch" -Xptxas -v \
    -I"$root/native" -c "$f" -o "$work/x.o" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  # "Function properties for NAME" / "N bytes stack frame, S bytes spill stores, L bytes spill
  # loads" / "Used R registers, ..., M bytes smem"
  awk -v file="$name" '
    /Function properties for/ { fn = $NF; stack = ""; spill = "" }
    /bytes stack frame/ { stack = $1; spill = $5 "/" $9 }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = "0"; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      if (fn != "") print file "\t" fn "\t" regs "\t" spill "\t" stack "\t" smem
      fn = ""
    }' "$work/log" > "$work/rows"
  while IFS=$'\t' read -r file fn regs spill stack smem; do
    pretty=$(echo "$fn" | c++filt | sed -e 's/sg::cuda::(anonymous namespace):://g' -e 's/|/\\|/g')
    echo "| $file | \`$pretty\` | $regs | $spill | $stack | $smem |" >> "$out"
  done < "$work/rows"
done
echo "wrote $out"
