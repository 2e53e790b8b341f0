#!/usr/bin/env bash
# The GEMM timing against OpenBLAS (gemm_vs_openblas) for the working tree's GEMM and for a
# commit's, in alternating runs. Each run times one GEMM and OpenBLAS interleaved in one
# process, so the two ratios (ours / OpenBLAS) compare the builds on a shared machine.
#
#   bench/gemm/before_after.sh COMMIT OUT_PREFIX [ROUNDS] [gemm_vs_openblas flags...]
#
# Writes OUT_PREFIX.json (every run's results, the load average before each) and
# OUT_PREFIX.md (per shape: the median over rounds of each build's ratio). The commit's
# native/cpu/gemm* files (and kernels.h) are built with today's benchmark program and
# library script in a scratch tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMMIT="$1"
PREFIX="$2"
ROUNDS="${3:-3}"
shift $(($# < 3 ? $# : 3))

bash "$ROOT/bench/gemm/build.sh" >/dev/null
AFTER="$ROOT/build/bench/gemm_vs_openblas"

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/native/cpu" "$SCRATCH/bench/gemm" "$SCRATCH/scripts"
for f in $(git -C "$ROOT" ls-tree --name-only "$COMMIT" native/cpu/ | grep -E '/(gemm[^/]*|kernels\.h)$'); do
  git -C "$ROOT" show "$COMMIT:$f" >"$SCRATCH/$f"
done
cp -r "$ROOT/native/core" "$SCRATCH/native/core"
cp "$ROOT/bench/gemm/gemm_vs_openblas.cpp" "$ROOT/bench/gemm/build.sh" "$SCRATCH/bench/gemm/"
cp "$ROOT/scripts/gemm-library.sh" "$SCRATCH/scripts/"
bash "$SCRATCH/bench/gemm/build.sh" >/dev/null
BEFORE="$SCRATCH/build/bench/gemm_vs_openblas"

runs=()
for ((r = 1; r <= ROUNDS; r++)); do
  for which in before after; do
    bin="$BEFORE"
    [ "$which" = after ] && bin="$AFTER"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    echo "== round $r, $which (load average $load)"
    "$bin" "$@" --json "$SCRATCH/$which-$r.json" | sed -n '/shape/,$p'
    runs+=("{\"round\": $r, \"build\": \"$which\", \"load_average\": $load, \"result\": $(cat "$SCRATCH/$which-$r.json")}")
  done
done

node - "$PREFIX" "$COMMIT" "$ROUNDS" "$*" "${runs[@]}" <<'NODE'
const fs = require('fs');
const [prefix, commit, rounds, flags, ...runs] = process.argv.slice(2);
const parsed = runs.map((r) => JSON.parse(r));
fs.writeFileSync(`${prefix}.json`, JSON.stringify({ commit, rounds: Number(rounds), flags, runs: parsed }, null, 2) + '\n');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const shapes = parsed[0].result.training_shapes.map((s) => s.label);
const ratios = (build, label) =>
  parsed.filter((r) => r.build === build).map((r) => r.result.training_shapes.find((s) => s.label === label));
const loads = parsed.map((r) => r.load_average);
const first = parsed[0].result;
const lines = [
  `# GEMM before/after: ours against OpenBLAS`,
  '',
  `bench/gemm/before_after.sh ${commit} ${prefix} ${rounds} ${flags}`,
  '',
  `${first.machine}, ${first.threads} thread(s), ${first.isa} path, OpenBLAS ${first.openblas_corename}, clock: ${first.clock}. ` +
    `Load average ${Math.min(...loads)} to ${Math.max(...loads)} on a shared 2-core machine. ` +
    `"before" is the GEMM of ${commit}, "after" the working tree's; each run times ours and OpenBLAS interleaved in one ` +
    `process; the table holds the median over ${rounds} rounds of each.`,
  '',
  '| shape | M | N | K | op | before GF/s | after GF/s | OpenBLAS GF/s | before / OpenBLAS | after / OpenBLAS |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const label of shapes) {
  const b = ratios('before', label),
    a = ratios('after', label);
  const s = a[0];
  const op = (s.transA ? 'T' : 'N') + (s.transB ? 'T' : 'N');
  const blas = median([...a, ...b].map((x) => x.openblas_gflops));
  lines.push(
    `| ${label} | ${s.m} | ${s.n} | ${s.k} | ${op} | ${median(b.map((x) => x.ours_gflops)).toFixed(1)} | ` +
      `${median(a.map((x) => x.ours_gflops)).toFixed(1)} | ${blas.toFixed(1)} | ${median(b.map((x) => x.ratio)).toFixed(2)} | ` +
      `${median(a.map((x) => x.ratio)).toFixed(2)} |`,
  );
}
fs.writeFileSync(`${prefix}.md`, lines.join('\n') + '\n');
console.log(lines.join('\n'));
NODE
