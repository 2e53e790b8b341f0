#!/usr/bin/env bash
# DNI at depth at twice the 100k runs' length: 5 and 6 hidden layers, 200,000 iterations, DNI with
# the best variant at 100k (centred and masked synthesizers, modules on SGD) against backprop on SGD
# and on the paper's Adam, each run its own results file, one thread each. Every run saves itself to
# experiments/dni-mnist/checkpoints every 1000 steps, so running this again after an interruption
# resumes them; a finished run (its results file exists) is skipped. Each results file gives its
# run's ms/step.
#   bash experiments/dni-mnist/dni_mnist_200k.sh     (after npm install; progress in experiments/dni-mnist/checkpoints/run-200k-depth*.log)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/dni-mnist/checkpoints
common=(--iterations 200000 --checkpoint-dir experiments/dni-mnist/checkpoints --stochastic none)
sgd=(--lr 3e-3 --optimizer sgd)
dni=(--methods dni --synth-lr 1e-3 --center on --mask-inactive on)
# run NAME ARGS...: one run writing experiments/dni-mnist/results/NAME.md; skipped when that file exists (done).
run() {
  local out=$1; shift
  if [ -f "experiments/dni-mnist/results/$out.md" ]; then echo "$out: done (experiments/dni-mnist/results/$out.md)"; return; fi
  SYNTHGRAD_NUM_THREADS=1 node dist/experiments/dni-mnist/dni_mnist.js "${common[@]}" "$@" --out "$out"
}
dni_run() { run dni-mnist-200k-depth$1-dni-centered-masked-sgd "${sgd[@]}" "${dni[@]}" --depths $1; }
bp_runs() {
  run dni-mnist-200k-depth$1-bp-sgd "${sgd[@]}" --methods backprop --depths $1 &
  run dni-mnist-200k-depth$1-bp --methods backprop --depths $1 &
  wait
}
# A DNI run alone, then its depth's two backprop runs side by side. Not a DNI run beside a
# backprop run: by its checkpoint times, the depth-6 DNI run took 56 s per 1000 steps alone and
# 203-209 s beside a backprop run (an observation, not a benchmark). bench/dni_contention.ts times
# 1.23x beside a backprop process of the same session and 2.00x beside one in a session of its
# own (Linux's autogroup scheduling gives each session an even share of the CPU); the rest of
# the 3.7x is not explained.
for depth in 6 5; do   # 6 first: the depth furthest from the target
  dni_run $depth >>experiments/dni-mnist/checkpoints/run-200k-depth$depth.log 2>&1
  bp_runs $depth >>experiments/dni-mnist/checkpoints/run-200k-depth$depth.log 2>&1
done
