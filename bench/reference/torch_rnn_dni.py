#!/usr/bin/env python3
"""PyTorch reference for synthgrad's recurrent training: truncated BPTT, recurrent DNI and
DNI + Aux, a few windows in a row, from given weights, state and window data.

It mirrors ts/recurrent/training.ts (RecurrentTraining.step), ts/recurrent/model.ts
(LSTMSequenceModel) and ts/nn/lstm.ts, written independently with PyTorch's own LSTM cell
(torch.nn.LSTMCell) and autograd, so that bench/reference/compare_rnn_dni.ts can check
synthgrad window by window. Input and output are JSON files (the formats are below); the
computation runs in float64 by default, so the comparison measures synthgrad's float32 error
against an (almost) exact computation, not against another float32 rounding.

Model. One-hot input of I symbols; an LSTM of H units whose one weight W [4H, I+H] acts on
[x_t, h_{t-1}] with gate blocks i | f | g | o (PyTorch's order: nn.LSTMCell gets
weight_ih = W[:, :I], weight_hh = W[:, I:], bias_ih = b and bias_hh = 0, frozen); a per-step
read-out Linear(H, O) scored by softmax cross-entropy where the target is not -1. The window's
loss is the sum over its steps of each step's cross-entropy summed over the scored rows and
divided by B (rows not scored count in the divisor). resets[t]: h and c are zeroed before
step t (no gradient flows past it).

One window, from the carried state s_0 = (h_0, c_0):
  forward the T steps; loss as above.
  DNI: g = discount * M([h_T, c_T]) / B (M: Linear(2H, 2H); discount γ in (0, 1]), detached,
       enters the last step: the core's objective is loss + <g_h, h_T> + <g_c, c_T>.
  DNI + Aux: plus aux_weight * (1/T) * sum_t mse(A h_t, M([h_T, c_T])) (A: Linear(H, 2H);
       mse the mean over all B*2H elements; the target detached and not discounted); A is
       trained with the core.
  backward; delta_0 = the gradient w.r.t. (h_0, c_0) (the synthesizer's target); one step of
  the core's optimizer (core, read-out and A).
  DNI: M regresses onto B * delta_0 from s_0 with its current weights:
       mse(M([h_0, c_0]), B * [delta_0_h, delta_0_c]) (weight 1); one step of M's optimizer.
  carry s_T.
Optimizers: torch.optim.SGD (no momentum) or torch.optim.Adam (betas 0.9/0.999, eps 1e-8),
one for the core (+ read-out, + A) and one for M, at the given learning rates.

Input JSON (written by compare_rnn_dni.ts):
  { "dims": {"batch", "inputs", "hidden", "outputs"}, "method": "bptt"|"dni"|"dni-aux",
    "optimizer": {"kind": "sgd"|"adam", "lr", "synthLr"}, "auxWeight", "discount" (default 1),
    "params": {"core.weight", "core.bias", "readout.weight", "readout.bias",
               ["synthesizer.weight", "synthesizer.bias"], ["aux.weight", "aux.bias"]}  (flat, row-major),
    "state": {"h", "c"}  ([B*H] each, row-major),
    "windows": [{"steps", "inputs", "targets", "resets"}]  (time-major [T*B] ints, T booleans) }
Output JSON: { "torch", "dtype", "windows": [{ "loss", "synthetic" ([B*2H] or null),
  "delta0" ([B*2H], [h | c] per row), "state": {"h", "c"}, "params": {name: flat values} }] }
the params and state as they are after the window.

  /usr/bin/python3 bench/reference/torch_rnn_dni.py --input IN.json --output OUT.json [--input ... --output ...] [--dtype float32]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch import nn


def tensor(values, shape, dtype):
    return torch.tensor(values, dtype=dtype).reshape(shape)


def flat(t):
    return t.detach().reshape(-1).tolist()


class Reference:
    def __init__(self, spec, dtype):
        d = spec["dims"]
        self.B, self.I, self.H, self.O = d["batch"], d["inputs"], d["hidden"], d["outputs"]
        self.method = spec["method"]
        self.aux_weight = spec.get("auxWeight", 1.0)
        self.discount = spec.get("discount", 1.0)
        self.dtype = dtype
        p = spec["params"]
        B, I, H, O = self.B, self.I, self.H, self.O
        W = tensor(p["core.weight"], (4 * H, I + H), dtype)
        self.cell = nn.LSTMCell(I, H).to(dtype)
        with torch.no_grad():
            self.cell.weight_ih.copy_(W[:, :I])
            self.cell.weight_hh.copy_(W[:, I:])
            self.cell.bias_ih.copy_(tensor(p["core.bias"], (4 * H,), dtype))
            self.cell.bias_hh.zero_()
        self.cell.bias_hh.requires_grad_(False)  # synthgrad's LSTM has one bias
        self.readout = self.linear(H, O, p["readout.weight"], p["readout.bias"])
        core_params = [self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih, *self.readout.parameters()]
        self.synth = None
        self.aux = None
        opt = spec["optimizer"]
        if self.method in ("dni", "dni-aux"):
            self.synth = self.linear(2 * H, 2 * H, p["synthesizer.weight"], p["synthesizer.bias"])
            self.synth_opt = self.make_optimizer(opt["kind"], self.synth.parameters(), opt.get("synthLr", opt["lr"]))
        if self.method == "dni-aux":
            self.aux = self.linear(H, 2 * H, p["aux.weight"], p["aux.bias"])
            core_params += list(self.aux.parameters())
        self.core_opt = self.make_optimizer(opt["kind"], core_params, opt["lr"])
        self.h = tensor(spec["state"]["h"], (B, H), dtype)
        self.c = tensor(spec["state"]["c"], (B, H), dtype)

    def linear(self, fan_in, fan_out, weight, bias):
        layer = nn.Linear(fan_in, fan_out).to(self.dtype)
        with torch.no_grad():
            layer.weight.copy_(tensor(weight, (fan_out, fan_in), self.dtype))
            layer.bias.copy_(tensor(bias, (fan_out,), self.dtype))
        return layer

    @staticmethod
    def make_optimizer(kind, params, lr):
        if kind == "sgd":
            return torch.optim.SGD(params, lr=lr)
        if kind == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        raise ValueError(f"optimizer kind must be sgd or adam, got {kind!r}")

    def params(self):
        out = {
            "core.weight": flat(torch.cat([self.cell.weight_ih, self.cell.weight_hh], dim=1)),
            "core.bias": flat(self.cell.bias_ih),
            "readout.weight": flat(self.readout.weight),
            "readout.bias": flat(self.readout.bias),
        }
        if self.synth is not None:
            out["synthesizer.weight"] = flat(self.synth.weight)
            out["synthesizer.bias"] = flat(self.synth.bias)
        if self.aux is not None:
            out["aux.weight"] = flat(self.aux.weight)
            out["aux.bias"] = flat(self.aux.bias)
        return out

    def window(self, w):
        B, H, T = self.B, self.H, w["steps"]
        inputs = torch.tensor(w["inputs"], dtype=torch.long).reshape(T, B)
        targets = torch.tensor(w["targets"], dtype=torch.long).reshape(T, B)
        h0 = self.h.clone().requires_grad_(True)
        c0 = self.c.clone().requires_grad_(True)
        h, c = h0, c0
        outputs = []
        loss = torch.zeros((), dtype=self.dtype)
        for t in range(T):
            if w["resets"][t]:
                h = torch.zeros(B, H, dtype=self.dtype)
                c = torch.zeros(B, H, dtype=self.dtype)
            x = F.one_hot(inputs[t], self.I).to(self.dtype)
            h, c = self.cell(x, (h, c))
            outputs.append(h)
            if (targets[t] != -1).any():
                logits = self.readout(h)
                loss = loss + F.cross_entropy(logits, targets[t], ignore_index=-1, reduction="sum") / B
        objective = loss
        synthetic = None
        if self.synth is not None:
            with torch.no_grad():
                m_T = self.synth(torch.cat([h, c], dim=1))  # M(s_T), per example
            synthetic = self.discount * m_T / B
            objective = objective + (synthetic[:, :H] * h).sum() + (synthetic[:, H:] * c).sum()
            if self.aux is not None:
                aux_loss = sum(F.mse_loss(self.aux(o), m_T) for o in outputs) / T
                objective = objective + self.aux_weight * aux_loss
        self.core_opt.zero_grad(set_to_none=False)
        objective.backward()
        delta0 = torch.cat([h0.grad, c0.grad], dim=1)
        self.core_opt.step()
        if self.synth is not None:
            self.synth_opt.zero_grad(set_to_none=False)
            prediction = self.synth(torch.cat([h0, c0], dim=1).detach())
            F.mse_loss(prediction, B * delta0).backward()
            self.synth_opt.step()
        self.h, self.c = h.detach(), c.detach()
        return {
            "loss": float(loss),
            "synthetic": None if synthetic is None else flat(synthetic),
            "delta0": flat(delta0),
            "state": {"h": flat(self.h), "c": flat(self.c)},
            "params": self.params(),
        }


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", action="append", required=True, help="repeatable: one case per --input/--output pair")
    ap.add_argument("--output", action="append", required=True)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if len(a.input) != len(a.output):
        ap.error(f"give one --output per --input, got {len(a.input)} and {len(a.output)}")
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    for source, target in zip(a.input, a.output):
        with open(source) as f:
            spec = json.load(f)
        ref = Reference(spec, dtype)
        windows = [ref.window(w) for w in spec["windows"]]
        with open(target, "w") as f:
            json.dump({"torch": torch.__version__, "dtype": a.dtype, "windows": windows}, f)
        print(json.dumps({"torch": torch.__version__, "dtype": a.dtype, "method": spec["method"],
                          "losses": [w["loss"] for w in windows]}))


if __name__ == "__main__":
    main(sys.argv[1:])
