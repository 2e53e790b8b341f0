#!/usr/bin/env bash
# Mutation check of the C++ CPU kernels, run on demand (not in CI: ~1-2 min per mutation).
# Each mutation below is a small deliberate mistake (a sign, an index, a dropped term) in one
# kernel family; the script applies it, rebuilds the native check program that covers that
# family (test/native/gemm/check_gemm for the GEMM paths, test/native/kernels/check_kernels for the rest),
# runs it, and restores the source. A mutation the check program does not catch is a gap in
# the checks. The GEMM mutations of an ISA this CPU lacks are reported as not run.
#
#   scripts/mutate-kernels.sh            every mutation
#   scripts/mutate-kernels.sh avx2 adam  only those whose name contains one of the words
#   scripts/mutate-kernels.sh --list     the list
# Exit status: 0 when every mutation that ran was caught, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# name | file | perl substitution (applied once) | check: gemm:<isa> or kernels
MUTATIONS=(
  "gemm-avx2-edge-drops-beta|native/cpu/gemm_avx2.cpp|s/out = _mm256_fmadd_ps\(betaV, _mm256_maskload_ps\(cRow \+ 8 \* v, lastMask\), out\);/(void)lastMask;/|gemm:avx2"
  "gemm-avx2-beta-sign|native/cpu/gemm_avx2.cpp|s/_mm256_fmadd_ps\(betaV, _mm256_loadu_ps\(/_mm256_fnmadd_ps(betaV, _mm256_loadu_ps(/|gemm:avx2"
  "gemm-avx512-edge-drops-beta|native/cpu/gemm_avx512.cpp|s/out = _mm512_fmadd_ps\(betaV, _mm512_maskz_loadu_ps\(lastMask, cRow \+ 16 \* v\), out\);/(void)lastMask;/|gemm:avx512"
  "gemm-avx512-beta-sign|native/cpu/gemm_avx512.cpp|s/_mm512_fmadd_ps\(betaV, _mm512_loadu_ps\(/_mm512_fnmadd_ps(betaV, _mm512_loadu_ps(/|gemm:avx512"
  "gemm-generic-index|native/cpu/gemm.cpp|s/acc\[r\]\[j\] \+= a\[r\] \* b\[j\]/acc[r][j] += a[r] * b[r]/|gemm:generic"
  "gemm-generic-drops-beta|native/cpu/gemm.cpp|s/alpha \* acc\[r\]\[j\] \+ beta \* cRow\[j\]/alpha * acc[r][j]/|gemm:generic"
  "bias-add-index|native/cpu/kernels_body.inc|s/yr\[c\] \+= bs\[c\]/yr[c] += bs[0]/|kernels"
  "bias-backward-overwrites|native/cpu/kernels_body.inc|s/dbias\[c\] \+= static_cast<float>\(sum\[c\]\)/dbias[c] = static_cast<float>(sum[c])/|kernels"
  "relu-backward-at-zero|native/cpu/kernels_body.inc|s/yv > 0.0f \? g : 0.0f/yv >= 0.0f ? g : 0.0f/|kernels"
  "tanh-backward-sign|native/cpu/kernels_body.inc|s/g \* \(\(1.0f - yv\) \* \(1.0f \+ yv\)\)/g * ((1.0f - yv) * (1.0f - yv))/|kernels"
  "batchnorm-backward-sign|native/cpu/kernels_body.inc|s/a1\[c\] \+= g \* xc;/a1[c] -= g * xc;/|kernels"
  "softmax-backward-drops-one|native/cpu/kernels_body.inc|s/d\[label\] = k \* \(pl - 1.0f\)/d[label] = k * pl/|kernels"
  "mse-backward-sign|native/cpu/kernels_body.inc|s/dpred\[i\] = k \* \(pred\[i\] - target\[i\]\)/dpred[i] = k * (target[i] - pred[i])/|kernels"
  "sgd-momentum-sign|native/cpu/kernels_body.inc|s/p\[i\] -= lr \* v\[i\];/p[i] += lr * v[i];/|kernels"
  "adam-drops-weight-decay|native/cpu/kernels_body.inc|s/const float gi = g\[i\] \+ weightDecay \* p\[i\];/const float gi = g[i];/|kernels"
)

if [[ "${1:-}" == "--list" ]]; then
  for m in "${MUTATIONS[@]}"; do IFS='|' read -r name file _ check <<<"$m"; echo "$name ($file, checked by $check)"; done
  exit 0
fi

backup="$(mktemp -d)"   # the unmutated source while a mutation is applied
log="$(mktemp)"
restore() {
  for f in "$backup"/*; do [[ -e "$f" ]] && cp "$f" "native/cpu/$(basename "$f")"; done
  rm -rf "$backup" "$log"
}
trap restore EXIT

# Which GEMM paths this CPU and build have: check_gemm (from the real sources) says at once
# when a path is missing; a present one starts its long run, cut short here.
bash test/native/gemm/build.sh >/dev/null
declare -A HAS_ISA
for isa in avx512 avx2 generic; do
  out="$(timeout 3 ./build/test/check_gemm "$isa" 2>/dev/null || true)"
  if grep -q "not available" <<<"$out"; then HAS_ISA[$isa]=0; else HAS_ISA[$isa]=1; fi
done
has_isa() { [[ "${HAS_ISA[$1]}" == 1 ]]; }

caught=0 missed=0 skipped=0
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file sub check <<<"$m"
  if (($# > 0)); then
    match=0; for w in "$@"; do [[ "$name" == *"$w"* ]] && match=1; done
    ((match)) || continue
  fi
  if [[ "$check" == gemm:* ]] && ! has_isa "${check#gemm:}"; then
    echo "[not run] $name: the ${check#gemm:} path is not on this CPU/build"; skipped=$((skipped + 1)); continue
  fi
  cp "$file" "$backup/$(basename "$file")"
  perl -0pi -e "$sub" "$file"
  if cmp -s "$file" "$backup/$(basename "$file")"; then
    echo "[error] $name: the mutation no longer applies to $file (update this script)"; exit 2
  fi
  status=0
  if [[ "$check" == gemm:* ]]; then
    { bash test/native/gemm/build.sh && ./build/test/check_gemm "${check#gemm:}"; } >"$log" 2>&1 || status=$?
  else
    bash test/native/kernels/build.sh >"$log" 2>&1 || status=$?
  fi
  cp "$backup/$(basename "$file")" "$file"
  rm "$backup/$(basename "$file")"
  if ((status != 0)); then
    echo "[caught] $name: $(grep -m1 -E 'FAIL|fail|error' "$log" | cut -c1-110)"; caught=$((caught + 1))
  else
    echo "[MISSED] $name: $check passed with the mutation"; missed=$((missed + 1))
  fi
done
# Leave the check programs built from the real sources.
bash test/native/gemm/build.sh >/dev/null
echo "$caught caught, $missed missed, $skipped not run"
((missed == 0))
