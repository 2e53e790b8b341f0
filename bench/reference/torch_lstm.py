#!/usr/bin/env python3
"""Times PyTorch's nn.LSTM on the CPU: forward and backward over a window of T steps, the peer of
synthgrad's LSTM layer in bench/rnn_cpu.ts.

One iteration: out, (h_T, c_T) = lstm(x, (h_0, c_0)) on a resident random input x [T, B, I]
(not requiring a gradient) and a random initial state, then out.backward(d_out) with a
resident random d_out [T, B, H]: the parameter gradients only, as synthgrad's side computes
(its LSTM backward with needInputGrad false). Gradients are set to None before each iteration,
so backward writes them rather than accumulating (PyTorch's usual loop). Prints one JSON line.
Timing stops early, after at least 3 iterations, once --max-seconds have passed (on a loaded
machine OpenMP's spinning threads can make one iteration take a second); "iterations" in the
output says how many were timed.

  /usr/bin/python3 bench/reference/torch_lstm.py --steps 5 [--hidden 128 --batch 64 --inputs 10
      --iterations 200 --warmup 20 --threads N --max-seconds 20]
"""
import argparse
import json
import time

import torch
from torch import nn


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, required=True, help="T, the window's steps")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    lstm = nn.LSTM(a.inputs, a.hidden)
    x = torch.rand(a.steps, a.batch, a.inputs)
    h0 = torch.rand(1, a.batch, a.hidden) - 0.5
    c0 = torch.rand(1, a.batch, a.hidden) - 0.5
    d_out = torch.rand(a.steps, a.batch, a.hidden) - 0.5

    def iteration():
        lstm.zero_grad(set_to_none=True)
        out, _ = lstm(x, (h0, c0))
        out.backward(d_out)

    t0 = time.perf_counter()
    for i in range(a.warmup):
        iteration()
        if i >= 1 and time.perf_counter() - t0 > a.max_seconds / 4:
            break
    t0 = time.perf_counter()
    done = 0
    while done < a.iterations:
        iteration()
        done += 1
        if done >= 3 and time.perf_counter() - t0 > a.max_seconds:
            break
    ms = (time.perf_counter() - t0) * 1000 / done
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps,
                      "hidden": a.hidden, "batch": a.batch, "inputs": a.inputs, "ms_per_window": ms, "iterations": done,
                      "mkldnn": torch.backends.mkldnn.is_available()}))


if __name__ == "__main__":
    main()
