#!/usr/bin/env bash
# The MNIST reproduction (experiments/dni-mnist/dni_mnist.ts) at 100,000 iterations, resumable. Two
# processes of one thread each (on a 2-core machine they get through more steps than one process of
# two threads) save their runs to experiments/dni-mnist/checkpoints every 1000 steps; running this
# script again after an interruption resumes them. Once both halves are done, a last pass, which
# only loads and evaluates the finished runs, writes the whole table to
# experiments/dni-mnist/results/dni-mnist-100k.md.
#   bash experiments/dni-mnist/dni_mnist_100k.sh     (after npm install; progress in experiments/dni-mnist/checkpoints/*.log)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p experiments/dni-mnist/checkpoints
common=(--iterations 100000 --synth-lr 1e-3 --checkpoint-dir experiments/dni-mnist/checkpoints)
SYNTHGRAD_NUM_THREADS=1 node dist/experiments/dni-mnist/dni_mnist.js "${common[@]}" --depths 4,6 --methods backprop,dni,cdni \
  --stochastic none --out dni-mnist-100k-depth46 >>experiments/dni-mnist/checkpoints/run-a.log 2>&1 &
SYNTHGRAD_NUM_THREADS=1 node dist/experiments/dni-mnist/dni_mnist.js "${common[@]}" --depths 5,3 --methods backprop,dni,cdni \
  --stochastic 0.2,1 --out dni-mnist-100k-depth53 >>experiments/dni-mnist/checkpoints/run-b.log 2>&1 &
wait
node dist/experiments/dni-mnist/dni_mnist.js "${common[@]}" --out dni-mnist-100k
