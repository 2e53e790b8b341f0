#!/usr/bin/env python3
"""PyTorch reference for the benchmark: one training step of the MNIST FCN.

The same model as synthgrad's (Linear -> BatchNorm1d -> ReLU per hidden layer, then Linear;
softmax cross-entropy; Adam), on a fixed random batch that stays resident, timed over many
steps after a warm-up. A step is zero_grad, forward, loss, backward, optimizer step and
reading the loss value (as a training loop that logs every step does). Prints one JSON line.
"""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", default="256,256,256")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="0: leave PyTorch's default")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    hidden = [int(h) for h in a.hidden.split(",") if h]
    layers, width = [], 784
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.BatchNorm1d(h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 10))
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(a.batch, 784, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": a.device,
        "hidden": hidden,
        "batch": a.batch,
        "steps": a.steps,
        "ms_per_step": 1000 * seconds / a.steps,
        "samples_per_s": a.batch * a.steps / seconds,
    }))


if __name__ == "__main__":
    main()
