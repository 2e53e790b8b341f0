#!/usr/bin/env bash
# The DNI variants of README's 100,000-iteration table, beside
# experiments/dni-mnist/dni_mnist_100k.sh (the paper's setup): synthesizers centred and masked, with
# the modules on Adam or on SGD with momentum, and backprop on SGD as that column's baseline. Two
# queues of one-thread processes, as in experiments/dni-mnist/dni_mnist_100k.sh; each run saves
# itself to experiments/dni-mnist/checkpoints every 1000 steps, so running this again resumes them.
# Each run writes its own results file.
#   bash experiments/dni-mnist/dni_mnist_100k_variants.sh     (after npm install; progress in experiments/dni-mnist/checkpoints/*.log)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/dni-mnist/checkpoints
common=(--iterations 100000 --checkpoint-dir experiments/dni-mnist/checkpoints --stochastic none)
refined=(--synth-lr 1e-3 --center on --mask-inactive on)
sgd=(--lr 3e-3 --optimizer sgd)
run() { SYNTHGRAD_NUM_THREADS=1 node dist/experiments/dni-mnist/dni_mnist.js "${common[@]}" "$@"; }
(
  run "${refined[@]}" --depths 4 --methods dni --out dni-mnist-100k-depth4-dni-centered-masked
  run "${refined[@]}" --depths 5 --methods dni --out dni-mnist-100k-depth5-dni-centered-masked
  run "${sgd[@]}" --depths 5 --methods backprop --out dni-mnist-100k-depth5-bp-sgd
  run "${sgd[@]}" --depths 6 --methods backprop --out dni-mnist-100k-depth6-bp-sgd
) >>experiments/dni-mnist/checkpoints/run-variants-a.log 2>&1 &
(
  run "${sgd[@]}" "${refined[@]}" --depths 5 --methods dni --out dni-mnist-100k-depth5-dni-centered-masked-sgd
  run "${sgd[@]}" "${refined[@]}" --depths 6 --methods dni --out dni-mnist-100k-depth6-dni-centered-masked-sgd
) >>experiments/dni-mnist/checkpoints/run-variants-b.log 2>&1 &
wait
