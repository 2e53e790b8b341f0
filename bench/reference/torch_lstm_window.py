#!/usr/bin/env python3
"""Times a truncated-BPTT training window of an LSTM sequence model in PyTorch (CUDA or CPU): the
peer of synthgrad's RecurrentTraining with method 'bptt' in bench/gpu.ts (LSTM rows).

The model is that of ts/recurrent/model.ts at the Copy task's sizes: a one-hot input of I symbols,
nn.LSTM(I, H) (cuDNN on CUDA), and a per-step read-out Linear(H, O) scored by softmax
cross-entropy with ignore_index -1. The window's loss is the sum over its T steps of each step's
summed cross-entropy divided by B. One window: forward the T steps from the carried state
(detached), backward, one Adam step (lr 1e-3), carry the state, and read the loss on the host
(loss.item()), as synthgrad's trainer reads one loss per window. Inputs and targets are resident
random windows (about half the targets -1), cycled; the input one-hot is built on the device.
Also timed: the bare nn.LSTM forward + backward over the window (parameter gradients only, a
resident input and output gradient, torch.cuda.synchronize() after each), as bench/reference/
torch_lstm.py does on the CPU.

Prints one JSON line: {"torch", "cuda", "cudnn", "device", "steps", "rows": [{"batch", "hidden",
"window_ms", "lstm_ms", "windows", "iterations"}]}.

  python3 bench/reference/torch_lstm_window.py --device cuda --steps 5 --shapes 64x128,256x512
      [--inputs 10 --outputs 8 --windows 200 --warmup 20 --max-seconds 20]
"""
import argparse
import json
import time

import torch
from torch import nn
import torch.nn.functional as F


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(fn, count, warmup, max_seconds, device):
    """Milliseconds per call of fn over up to `count` calls after `warmup`; stops early (at
    least 3 calls) once max_seconds have passed."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    done = 0
    while done < count:
        fn()
        done += 1
        if done >= 3 and time.perf_counter() - t0 > max_seconds:
            break
    sync(device)
    return (time.perf_counter() - t0) * 1000 / done, done


def one_shape(a, device, batch, hidden):
    torch.manual_seed(0)
    lstm = nn.LSTM(a.inputs, hidden).to(device)
    readout = nn.Linear(hidden, a.outputs).to(device)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(readout.parameters()), lr=1e-3)
    n_windows = 16
    inputs = torch.randint(0, a.inputs, (n_windows, a.steps, batch), device=device)
    targets = torch.randint(0, a.outputs, (n_windows, a.steps, batch), device=device)
    targets[torch.rand(targets.shape, device=device) < 0.5] = -1
    state = [torch.zeros(1, batch, hidden, device=device), torch.zeros(1, batch, hidden, device=device)]
    k = [0]

    def window():
        i = k[0] % n_windows
        k[0] += 1
        x = F.one_hot(inputs[i], a.inputs).float()
        opt.zero_grad(set_to_none=True)
        out, (h, c) = lstm(x, (state[0], state[1]))
        logits = readout(out).reshape(-1, a.outputs)
        loss = F.cross_entropy(logits, targets[i].reshape(-1), ignore_index=-1, reduction="sum") / batch
        loss.backward()
        opt.step()
        state[0], state[1] = h.detach(), c.detach()
        return loss.item()

    window_ms, windows = time_loop(window, a.windows, a.warmup, a.max_seconds, device)

    x = torch.rand(a.steps, batch, a.inputs, device=device)
    h0 = torch.rand(1, batch, hidden, device=device) - 0.5
    c0 = torch.rand(1, batch, hidden, device=device) - 0.5
    d_out = torch.rand(a.steps, batch, hidden, device=device) - 0.5

    def fwd_bwd():
        lstm.zero_grad(set_to_none=True)
        out, _ = lstm(x, (h0, c0))
        out.backward(d_out)
        sync(device)

    lstm_ms, iterations = time_loop(fwd_bwd, a.windows, a.warmup, a.max_seconds, device)
    return {"batch": batch, "hidden": hidden, "window_ms": window_ms, "lstm_ms": lstm_ms, "windows": windows,
            "iterations": iterations}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=5, help="T, the window's steps")
    ap.add_argument("--shapes", default="64x128,256x128,64x512,256x512", help="BATCHxHIDDEN,...")
    ap.add_argument("--inputs", type=int, default=10)
    ap.add_argument("--outputs", type=int, default=8)
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_lstm_window.py: --device cuda, but torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # fp32, as synthgrad's default GEMM
    rows = []
    for shape in a.shapes.split(","):
        batch, hidden = (int(v) for v in shape.lower().split("x"))
        rows.append(one_shape(a, device, batch, hidden))
    print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                      "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
                      "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "steps": a.steps, "rows": rows}))


if __name__ == "__main__":
    main()
