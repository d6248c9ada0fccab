"""Family-wise error rate of voxel maxT, TFCE and cluster extent/mass on null data.

Each null dataset: N subjects of Gaussian noise on a 1.5 mm grid, smoothed to 6 mm FWHM
(sigma = 6 / (2 sqrt(2 ln 2)) / 1.5 = 1.70 voxels), in a spherical mask of at least 20,000
voxels. Two designs per dataset:

* ``two-group``: intercept, group (N/2 + N/2) and a normal covariate; contrast group > 0,
  Freedman-Lane permutations;
* ``one-sample``: intercept only; contrast mean > 0, sign flipping.

A dataset is a family-wise rejection of a method when its smallest FWE p is <= 0.05. The
rates should lie within [0.025, 0.075] (about 2 Monte Carlo standard errors at 300 datasets).

    .venv/bin/python benchmarks/inference_null.py                                 # 300 x 300
    .venv/bin/python benchmarks/inference_null.py --datasets 40 --permutations 100  # quick check
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import scipy.ndimage
import torch

from vbmkit.stats.design import Contrast
from vbmkit.stats.map_permutation import permutation_inference

FWHM_MM, VOXEL_MM = 6.0, 1.5
METHODS = ("voxel", "tfce", "extent", "mass")


def sphere_mask(radius: float) -> np.ndarray:
    side = int(np.ceil(radius)) * 2 + 3
    g = np.indices((side, side, side)) - side // 2
    return (g ** 2).sum(0) <= radius ** 2


def dataset(seed: int, n: int, mask: np.ndarray) -> np.ndarray:
    """(N, V) float32: white noise on a padded box, smoothed, masked (edges do not bias t)."""
    rng = np.random.default_rng(seed)
    sigma = FWHM_MM / (2 * np.sqrt(2 * np.log(2))) / VOXEL_MM
    pad = int(np.ceil(3 * sigma))
    shape = tuple(s + 2 * pad for s in mask.shape)
    out = np.empty((n, int(mask.sum())), np.float32)
    for i in range(n):
        sm = scipy.ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
        out[i] = sm[pad:-pad, pad:-pad, pad:-pad][mask]
    return out


def one_dataset(args: tuple[int, int, int, float, float]) -> dict[str, dict[str, float]]:
    seed, n, n_perm, radius, cluster_p = args
    torch.set_num_threads(1)
    mask = sphere_mask(radius)
    Y = torch.from_numpy(dataset(seed, n, mask))
    rng = np.random.default_rng(10_000 + seed)
    group = np.repeat([0.0, 1.0], [n // 2, n - n // 2])
    designs = {
        "two-group": (np.column_stack([np.ones(n), group, rng.normal(size=n)]), Contrast("g", np.array([0, 1, 0.0]))),
        "one-sample": (np.ones((n, 1)), Contrast("g", np.array([1.0]))),
    }
    out = {}
    for name, (X, contrast) in designs.items():
        res = permutation_inference(Y, X, [contrast], mask=mask, n_permutations=n_perm, seed=seed,
                                    cluster_p=cluster_p)["g"]
        out[name] = {
            "voxel": float(np.nanmin(res.p_fwe_voxel.numpy())),
            "tfce": float(np.nanmin(res.p_fwe_tfce.numpy())),
            "extent": min((c.p_fwe_extent for c in res.clusters), default=1.0),
            "mass": min((c.p_fwe_mass for c in res.clusters), default=1.0),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=300)
    parser.add_argument("--permutations", type=int, default=300, help="including the identity")
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--radius", type=float, default=17.0, help="mask sphere radius in voxels (17: 20,479)")
    parser.add_argument("--cluster-p", type=float, default=0.001)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    mask = sphere_mask(args.radius)
    print(f"inference_null: {args.datasets} null datasets x {args.permutations} transforms, N={args.subjects}, "
          f"mask {int(mask.sum())} voxels in {mask.shape}, FWHM {FWHM_MM} mm on {VOXEL_MM} mm voxels, "
          f"cluster-forming p {args.cluster_p}, workers {args.workers}, load avg {os.getloadavg()}", flush=True)
    jobs = [(d, args.subjects, args.permutations, args.radius, args.cluster_p) for d in range(args.datasets)]
    rejections = {d: dict.fromkeys(METHODS, 0) for d in ("two-group", "one-sample")}
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for done, res in enumerate(pool.map(one_dataset, jobs), start=1):
            for design, ps in res.items():
                for m in METHODS:
                    rejections[design][m] += ps[m] <= args.alpha
            if done % 10 == 0 or done == args.datasets:
                rates = "; ".join(f"{d}: " + " ".join(f"{m} {r[m] / done:.3f}" for m in METHODS)
                                  for d, r in rejections.items())
                print(f"  {done}/{args.datasets} datasets, {time.perf_counter() - start:.0f} s: {rates}", flush=True)
    se = np.sqrt(args.alpha * (1 - args.alpha) / args.datasets)
    print(f"\nFWER at {args.alpha} over {args.datasets} datasets (Monte Carlo s.e. {se:.4f}; "
          f"target [0.025, 0.075]); {time.perf_counter() - start:.0f} s")
    for design, r in rejections.items():
        for m in METHODS:
            rate = r[m] / args.datasets
            ok = "ok" if 0.025 <= rate <= 0.075 else "OUTSIDE"
            print(f"  {design:10s} {m:7s} {rate:.4f}  ({r[m]}/{args.datasets}, {(rate - args.alpha) / se:+.1f} s.e.) {ok}")


if __name__ == "__main__":
    main()
