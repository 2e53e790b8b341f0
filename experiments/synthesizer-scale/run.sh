#!/usr/bin/env bash
# The MNIST FCN table (experiments/dni-mnist/dni_mnist.ts, the paper's setup: Adam 3e-5, batch
# 256, lr /10 at 60% and 80%, DNI synthesizers 2x1024 at Adam 1e-3, cDNI linear ones at the
# model's lr) with each synthesizer target scale at the same budget: the same seed gives both
# scales the same initial weights and batches. Then the probes of docs/synthesizer-scale.md
# (probe.ts). One-thread processes; one results file per run in
# experiments/synthesizer-scale/results/ (written as each run ends; its log, not committed, beside it). A run
# whose results exist is skipped, so rerunning the script resumes where it stopped.
#   bash experiments/synthesizer-scale/run.sh        (after npm install)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/synthesizer-scale/results
run() { # method depth iterations seed [scale]
  local name="$1-depth$2-seed$4${5:+-$5}-$3it"
  [ -f "$out/$name.json" ] && return 0
  SYNTHGRAD_NUM_THREADS=1 nice -n 5 node dist/experiments/dni-mnist/dni_mnist.js --iterations "$3" \
    --depths "$2" --methods "$1" --stochastic none --synth-lr 1e-3 --seed "$4" ${5:+--synth-scale "$5"} \
    --out "../../synthesizer-scale/results/$name" >"$out/$name.log" 2>&1
}
both() { for s in per-example batch-mean; do run "$@" $s; done; }
probe() { # name, then probe.js's flags
  grep -qs testError "$out/$1.jsonl" && return 0 # finished already
  local name=$1
  shift
  SYNTHGRAD_NUM_THREADS=1 nice -n 5 node dist/experiments/synthesizer-scale/probe.js --out "$name" "$@" >"$out/$name.log" 2>&1
}
steps=0,1,2,3,5,10,20,50,100,200,400,600,800,1000
# DNI costs 10-20 times a cDNI step (two 1024-wide hidden layers per synthesizer): 1,000 steps
# for DNI, 3,000 for cDNI and backprop. Five processes, as the results were made.
(
  both dni 3 1000 0
  both dni 5 1000 0
) &
(
  both dni 4 1000 0
  both dni 6 1000 0
) &
(
  for d in 3 4 5 6; do both cdni $d 3000 0; run backprop $d 3000 0; done
  for d in 3 4 5 6; do run backprop $d 1000 0; done
) &
probe "probe-dni-depth3-per-example" --method dni --steps 1000 --probe-at $steps --probe-rows 512 --synth-scale per-example &
(
  for s in per-example batch-mean; do
    probe "probe-cdni-depth3-$s" --method cdni --steps 1000 --probe-at $steps --probe-rows 512 --synth-scale $s
  done
  # Adam's first steps: batch-mean DNI to step 100, and both scales at B = 64 to step 50.
  probe "probe-dni-depth3-batch-mean" --method dni --steps 1000 --stop-after 100 --probe-at $steps --probe-rows 512 --synth-scale batch-mean
  for s in per-example batch-mean; do
    probe "probe-dni-depth3-$s-batch64" --method dni --steps 1000 --stop-after 50 --batch-size 64 --probe-at $steps --probe-rows 512 --synth-scale $s
  done
) &
wait
