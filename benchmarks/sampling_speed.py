"""torch's grid_sample vs vbmkit.sampling.grid_sample on the CPU, in the same process (A/B).

PyTorch's CPU kernel for 5-D ``grid_sample`` samples one volume on one thread;
:func:`vbmkit.sampling.grid_sample` cuts it into one slab per thread. This script times both, in
turns (so a busy shared machine slows both alike), on:

1. one ``grid_sample`` of a (1, 3, 113, 137, 113) field, the size of Template_4_GS (median of
   ``--repeat`` calls);
2. the whole variational registration (``register_variational``, default schedule) of a
   SYNTHETIC pair: Template_4_GS's GM/WM and the same maps warped by a smooth random
   displacement of a few millimetres, with each sampler in turn (``vbmkit.preprocess.warp`` is
   pointed at torch's function for the "torch" runs). The velocities must be bit-identical.

Usage::

    .venv/bin/python benchmarks/sampling_speed.py [--threads 2] [--repeat 7] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import vbmkit.preprocess.warp as warp_module
from vbmkit import sampling
from vbmkit.io.templates import load_shooting_template
from vbmkit.preprocess.variational import register_variational
from vbmkit.preprocess.warp import blur, displacement_to_deformation, warp


def torch_grid_sample(input, grid, *, mode="bilinear", padding_mode="zeros", align_corners=True):
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


SAMPLERS = {"torch": torch_grid_sample, "vbmkit": sampling.grid_sample}


def synthetic_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]]:
    """(moving, fixed, voxel size): the template's GM/WM warped by a smooth random field (SYNTHETIC)."""
    shoot = load_shooting_template()
    fixed = shoot.data[:2].float()
    g = torch.Generator().manual_seed(seed)
    u = blur(torch.randn(1, 3, *fixed.shape[1:], generator=g), 6.0)
    u = u * (2.0 / u.abs().max())  # at most 2 voxels (3 mm)
    moving = warp(fixed[None], displacement_to_deformation(u))[0]
    return moving, fixed, tuple(float(v) for v in shoot.grid.voxel_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7, help="calls per sampler in part 1")
    ap.add_argument("--rounds", type=int, default=1, help="registrations per sampler in part 2")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")

    x = torch.randn(1, 3, 113, 137, 113, generator=torch.Generator().manual_seed(1))
    ident = F.affine_grid(torch.eye(4)[None, :3], [1, 3, 113, 137, 113], align_corners=True)
    grid = ident + 0.02 * torch.randn(ident.shape, generator=torch.Generator().manual_seed(2))
    times: dict[str, list[float]] = {k: [] for k in SAMPLERS}
    outs = {}
    for _ in range(args.repeat):
        for name, fn in SAMPLERS.items():
            t0 = time.perf_counter()
            outs[name] = fn(x, grid, padding_mode="border")
            times[name].append(time.perf_counter() - t0)
    same = torch.equal(outs["torch"], outs["vbmkit"])
    print("1. one grid_sample of a (1, 3, 113, 137, 113) field: "
          + ", ".join(f"{k} {1000 * statistics.median(v):.1f} ms" for k, v in times.items())
          + f"; speed-up {statistics.median(times['torch']) / statistics.median(times['vbmkit']):.2f}x; "
          f"identical: {same}")

    moving, fixed, vox = synthetic_pair()
    reg_times: dict[str, list[float]] = {k: [] for k in SAMPLERS}
    velocities = {}
    try:
        for _ in range(args.rounds):
            for name, fn in SAMPLERS.items():
                warp_module.grid_sample = fn  # what _FieldSampler and warp() call
                t0 = time.perf_counter()
                velocities[name] = register_variational(moving, fixed, voxel_size_mm=vox).velocity
                reg_times[name].append(time.perf_counter() - t0)
    finally:
        warp_module.grid_sample = sampling.grid_sample
    same = torch.equal(velocities["torch"], velocities["vbmkit"])
    print("2. variational registration, SYNTHETIC pair on the 1.5 mm template grid: "
          + ", ".join(f"{k} {statistics.median(v):.1f} s" for k, v in reg_times.items())
          + f"; speed-up {statistics.median(reg_times['torch']) / statistics.median(reg_times['vbmkit']):.2f}x; "
          f"velocity identical: {same}")
    print(f"load average after {os.getloadavg()}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
