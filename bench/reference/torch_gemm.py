#!/usr/bin/env python3
"""cuBLAS SGEMM through PyTorch, for bench/gpu.ts: C = A B on float32 CUDA tensors, square n x n.

fp32: TF32 off (the IEEE float32 path); tf32: TF32 allowed (tensor cores, 10-bit mantissa
products). Each size: a few warm-up products, then a timed loop sized to about --seconds of GPU
time, timed with CUDA events around the whole loop. Prints one JSON line:
  {"torch": ..., "device": ..., "tf32_api": ..., "fp32": [{"n", "ms", "gflops"}], "tf32": [...]}

  python3 bench/reference/torch_gemm.py --sizes 256,512,1024,2048,4096,8192 [--no-tf32]
"""
import argparse
import json

import torch


def set_tf32(enabled):
    """Turns TF32 for float32 matmuls on or off; returns the API used."""
    m = torch.backends.cuda.matmul
    # PyTorch >= 2.9 has fp32_precision and refuses a mix of the old and new APIs, so use
    # only one of them.
    if hasattr(m, "fp32_precision"):
        m.fp32_precision = "tf32" if enabled else "ieee"
        return "torch.backends.cuda.matmul.fp32_precision"
    m.allow_tf32 = enabled
    return "torch.backends.cuda.matmul.allow_tf32"


def time_gemm(n, seconds, dev):
    a = torch.randn(n, n, device=dev, dtype=torch.float32)
    b = torch.randn(n, n, device=dev, dtype=torch.float32)
    c = torch.empty(n, n, device=dev, dtype=torch.float32)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.matmul(a, b, out=c)
    end.record()
    end.synchronize()
    one = max(start.elapsed_time(end), 1e-3)  # ms
    reps = int(min(2000, max(5, seconds * 1000 / one)))
    start.record()
    for _ in range(reps):
        torch.matmul(a, b, out=c)
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end) / reps
    return {"n": n, "ms": ms, "gflops": 2.0 * n ** 3 / (ms * 1e-3) / 1e9, "reps": reps}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="256,512,1024,2048,4096,8192")
    p.add_argument("--seconds", type=float, default=0.2, help="GPU time per size and mode")
    p.add_argument("--no-tf32", action="store_true", help="fp32 only")
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_gemm.py: PyTorch sees no CUDA device")
    dev = torch.device("cuda")
    sizes = [int(s) for s in a.sizes.split(",") if s]
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    out["tf32_api"] = set_tf32(False)
    out["fp32"] = [time_gemm(n, a.seconds, dev) for n in sizes]
    if not a.no_tf32:
        set_tf32(True)
        out["tf32"] = [time_gemm(n, a.seconds, dev) for n in sizes]
        set_tf32(False)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
