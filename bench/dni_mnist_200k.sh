#!/usr/bin/env bash
# DNI at depth at twice the 100k runs' length: 5 and 6 hidden layers, 200,000 iterations, DNI
# with the best variant at 100k (centred and masked synthesizers, modules on SGD) against
# backprop on SGD and on the paper's Adam, each run its own results file. Two queues of one
# thread each; every run saves itself to bench/checkpoints every 1000 steps, so running this
# again after an interruption resumes them. On this project's 2-core machine the two DNI runs
# wrote a checkpoint about every 95 s (1000 steps) each while sharing the cores; from that, an
# estimated 7 hours for the whole script (each finished run's results file gives its ms/step).
#   bash bench/dni_mnist_200k.sh     (after npm install; progress in bench/checkpoints/run-200k-*.log)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/checkpoints
common=(--iterations 200000 --checkpoint-dir bench/checkpoints --stochastic none)
sgd=(--lr 3e-3 --optimizer sgd)
dni=(--methods dni --synth-lr 1e-3 --center on --mask-inactive on)
run() { SYNTHGRAD_NUM_THREADS=1 node dist/bench/dni_mnist.js "${common[@]}" "$@"; }
for depth in 5 6; do
  (
    run "${sgd[@]}" "${dni[@]}" --depths $depth --out dni-mnist-200k-depth$depth-dni-centered-masked-sgd
    run "${sgd[@]}" --methods backprop --depths $depth --out dni-mnist-200k-depth$depth-bp-sgd
    run --methods backprop --depths $depth --out dni-mnist-200k-depth$depth-bp
  ) >>bench/checkpoints/run-200k-depth$depth.log 2>&1 &
done
wait
