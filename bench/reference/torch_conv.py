#!/usr/bin/env python3
"""PyTorch peer of bench/conv_cpu.ts: a training step of synthgrad's cnn() on MNIST-sized
images, with backprop, DNI or cDNI.

Model (ts/nn/conv.ts, cnn()): `--blocks` blocks of Conv2d(F 5x5 filters, padding 2, no bias)
-> BatchNorm2d -> ReLU -> 3x3 pool, stride 2, padding 1 (max after the first block, average
after the others, padding not counted: count_include_pad=False, as synthgrad's AvgPool2d);
then Flatten and Linear(F * 4 * 4, 10) for 28x28 inputs (28 -> 14 -> 7 -> 4). Softmax
cross-entropy, mean over the batch; Adam (lr 1e-4, as bench/step_time.ts).

Decoupled (torch_dni.py's Decoupled: lockstep, one stream, per-example target scale): cut
after every ReLU, as decouple()'s default, so module 1 is [Conv, BN, ReLU], module k is
[Pool, Conv, BN, ReLU] and the last module [AvgPool, Flatten, Linear]. The synthesizer after
module i (ts/dni/synthesizer.ts, image cuts): for each of `--synth-filters` a Conv2d(5x5,
padding 2, no bias) -> BatchNorm2d -> ReLU, then a zero-initialised Conv2d(5x5, padding 2,
with bias) back to F channels. cDNI feeds it [h, one constant map per class] (10 more input
channels).

  python3 bench/reference/torch_conv.py --method dni --filters 16 [--synth-filters 16,16] [--threads 1]
  python3 bench/reference/torch_conv.py --serve   # one request per stdin line: a JSON list of
                                                  # the flags above; one JSON line per answer
"""
import argparse
import json
import sys

import torch
from torch import nn

from torch_dni import CLASSES, Backprop, Decoupled, timed

IMAGE = (1, 28, 28)


def pooled(size, blocks):
    """The image size after `blocks` 3x3, stride-2, padding-1 pools (ops.windowOutputSize)."""
    for _ in range(blocks):
        size = (size + 2 - 3) // 2 + 1
    return size


def cnn_modules(filters, blocks, kernel=5):
    """cnn() on IMAGE, already cut after every ReLU."""
    pad = kernel // 2
    modules, channels = [], IMAGE[0]
    for b in range(blocks):
        layers = [] if b == 0 else [nn.MaxPool2d(3, 2, 1) if b == 1 else nn.AvgPool2d(3, 2, 1, count_include_pad=False)]
        layers += [nn.Conv2d(channels, filters, kernel, padding=pad, bias=False), nn.BatchNorm2d(filters), nn.ReLU()]
        modules.append(nn.Sequential(*layers))
        channels = filters
    last = nn.MaxPool2d(3, 2, 1) if blocks == 1 else nn.AvgPool2d(3, 2, 1, count_include_pad=False)
    side = pooled(IMAGE[1], blocks)
    modules.append(nn.Sequential(last, nn.Flatten(), nn.Linear(filters * side * side, CLASSES)))
    return modules


def conv_synthesizer(channels, conditioned, hidden, kernel=5):
    """M at an image cut of `channels` channels: hidden conv layers, then a zero conv to `channels`."""
    pad = kernel // 2
    layers, c = [], channels + (CLASSES if conditioned else 0)
    for f in hidden:
        layers += [nn.Conv2d(c, f, kernel, padding=pad, bias=False), nn.BatchNorm2d(f), nn.ReLU()]
        c = f
    last = nn.Conv2d(c, channels, kernel, padding=pad)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["backprop", "dni", "cdni"], default="backprop")
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--synth-filters", default="", help="the synthesizers' hidden filters; default: F,F")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=0, help="0: leave PyTorch's setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", action="store_true", help="answer requests from stdin (see the docblock)")
    return p


def run(a):
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device("cpu")
    modules = cnn_modules(a.filters, a.blocks)
    synth_filters = [int(f) for f in a.synth_filters.split(",") if f] if a.synth_filters else [a.filters, a.filters]
    if a.method == "backprop":
        strategy = Backprop(modules, a.lr)
    else:
        conditioned = a.method == "cdni"
        synths = [conv_synthesizer(a.filters, conditioned, synth_filters) for _ in modules[:-1]]
        strategy = Decoupled(modules, synths, conditioned, a.lr, a.lr, dev, "single")
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "method": a.method,
        "filters": a.filters,
        "blocks": a.blocks,
        "synth_filters": synth_filters if a.method != "backprop" else [],
        "batch": a.batch,
    }
    timed(a, dev, strategy, info, IMAGE)
    return info


def main():
    p = parser()
    a = p.parse_args()
    if not a.serve:
        print(json.dumps(run(a)))
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run(p.parse_args(json.loads(line)))
        except (Exception, SystemExit) as e:  # argparse exits on a bad flag: answer, keep serving
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
