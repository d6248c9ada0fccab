"""100-subsample median t-maps on a CUDA GPU: N = 4,000 x V = 500,000 (8 GB of float32).

Times ``fit_subsamples`` with the data (a) in ordinary host memory, (b) in pinned host memory
and (c) already on the GPU, fp32 with TF32 off, after one warm-up run; median of 3. Checks a
voxel subset against the CPU engine. Targets of issue 2 (H100 class): <= 1 s from host
memory, <= 0.25 s with the data on the GPU.

    .venv/bin/python benchmarks/glm_gpu.py                 # full size
    .venv/bin/python benchmarks/glm_gpu.py --subjects 1000 --voxels 100000

Exits with status 2 and a message when torch sees no CUDA device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from vbmkit.stats.design import Contrast
from vbmkit.stats.subsample import draw_subsamples, fit_subsamples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4000)
    parser.add_argument("--voxels", type=int, default=500_000)
    parser.add_argument("--subsamples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("glm_gpu: torch sees no CUDA device; this benchmark needs an NVIDIA GPU "
              "(run it on a GPU machine; CPU figures come from benchmarks/glm_speed.py)")
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 accuracy, as the CPU engine
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    n, v, k = args.subjects, args.voxels, args.subsamples
    print(f"glm_gpu: {torch.cuda.get_device_name(dev)}, N={n} V={v} K={k}, torch {torch.__version__}, "
          f"load avg {os.getloadavg()}")

    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    site = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), age, sex, rng.normal(1500, 120, n) + 80 * sex, site == 1, site == 2]).astype(float)
    contrasts = [Contrast("age", np.array([0, 1, 0, 0, 0, 0.0]))]
    gen = torch.Generator(device=dev).manual_seed(0)
    y_gpu = torch.randn((n, v), generator=gen, device=dev).mul_(0.06).add_(0.45)
    y_gpu[:, : v // 10] -= torch.from_numpy(0.002 * (age - 50)).float().to(dev)[:, None]
    y_host = y_gpu.cpu()
    y_pinned = y_host.pin_memory()
    weights = draw_subsamples(n, k=k, fraction=0.8, seed=0)
    thresholds = {"age": 3.1}
    print(f"data: {y_host.numel() * 4 / 1e9:.1f} GB float32")

    def run(data):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fit_subsamples(data, X, contrasts, weights, thresholds=thresholds, device=dev)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    sides = {"host (pageable)": y_host, "host (pinned)": y_pinned, "on GPU": y_gpu}
    run(y_gpu)  # warm-up: CUDA context, kernels, allocator
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, data in sides.items():
            times[name].append(run(data)[0])
    _, out = run(y_gpu)
    flops = 2.0 * k * (X.shape[1] + 1) * n * v
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<16} median {med:.3f} s over {args.rounds} ({', '.join(f'{x:.3f}' for x in t)}); "
              f"{flops / med / 1e12:.1f} TFLOP/s effective")
    print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 1e9:.1f} GB")

    sub = slice(0, min(v, 20_000))
    ref = fit_subsamples(y_host[:, sub].contiguous(), X, contrasts, weights, thresholds=thresholds)
    err = (out["age"].median[sub] - ref["age"].median).abs().max().item()
    print(f"median t on GPU vs CPU engine ({sub.stop} voxels): max |diff| = {err:.2e} (gate 1e-4: "
          f"{'PASS' if err <= 1e-4 else 'FAIL'})")
    print(f"targets: host <= 1 s: {'PASS' if statistics.median(times['host (pageable)']) <= 1 else 'FAIL'}; "
          f"on GPU <= 0.25 s: {'PASS' if statistics.median(times['on GPU']) <= 0.25 else 'FAIL'}")


if __name__ == "__main__":
    main()
