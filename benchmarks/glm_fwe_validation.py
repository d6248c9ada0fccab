"""Family-wise error rate of vbmkit's Freedman-Lane maxT on pure-noise data.

Each null dataset: N subjects with age, sex, a 3-level site factor and TIV as covariates,
V voxels of noise plus nuisance effects (site and TIV shift every voxel, age has no effect).
The age t-contrast (nuisance: everything else) and the site F-contrast (nuisance: age, sex,
TIV) are tested with ``freedman_lane``; a dataset is a family-wise rejection when any voxel
has p_FWE <= 0.05. The rate should be about 5 %, within its Monte Carlo error
``sqrt(0.05 * 0.95 / datasets)``.

    .venv/bin/python benchmarks/glm_fwe_validation.py                # 2000 datasets x 100 permutations
    .venv/bin/python benchmarks/glm_fwe_validation.py --datasets 200 # quicker
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from vbmkit.stats.design import Contrast
from vbmkit.stats.permutation import freedman_lane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=100, help="including the identity")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--voxels", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"glm_fwe_validation: {args.datasets} null datasets x {args.permutations} permutations, "
          f"N={args.subjects}, V={args.voxels}, load avg {os.getloadavg()}")
    rng = np.random.default_rng(2026)
    contrasts = [Contrast("age", np.array([0, 1, 0, 0, 0, 0.0])),
                 Contrast("site", np.array([[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0.0]]), "F")]
    rejections = {c.name: 0 for c in contrasts}
    smallest_p = {c.name: [] for c in contrasts}
    start = time.perf_counter()
    for d in range(args.datasets):
        n, v = args.subjects, args.voxels
        age = rng.uniform(20, 80, n)
        sex = rng.integers(0, 2, n)
        site = rng.integers(0, 3, n)
        tiv = rng.normal(1500, 120, n) + 60 * sex + 0.5 * age  # TIV correlated with age and sex
        X = np.column_stack([np.ones(n), age, sex, site == 1, site == 2, tiv]).astype(float)
        # heavy-ish tails (t with 5 df) and nuisance effects (TIV, sex); no age or site effect
        noise = rng.standard_t(5, size=(n, v))
        Y = 0.5 + 0.001 * (tiv[:, None] - 1500) + 0.3 * sex[:, None] + noise
        out = freedman_lane(torch.from_numpy(Y.astype(np.float32)), X, contrasts,
                            n_permutations=args.permutations, seed=d)
        for c in contrasts:
            p_min = out[c.name].p_fwe.min().item()
            smallest_p[c.name].append(p_min)
            rejections[c.name] += p_min <= args.alpha
    elapsed = time.perf_counter() - start
    mc = np.sqrt(args.alpha * (1 - args.alpha) / args.datasets)
    for c in contrasts:
        rate = rejections[c.name] / args.datasets
        z = (rate - args.alpha) / mc
        print(f"contrast {c.name:<5} ({c.kind}): family-wise rejection rate {rate:.4f} "
              f"(+/- {mc:.4f} Monte Carlo s.e.; nominal {args.alpha}; z = {z:+.2f}) "
              f"{'OK' if abs(z) <= 2.58 else 'OUTSIDE 99% band'}")
    print(f"{args.datasets} datasets in {elapsed:.1f} s; load avg {os.getloadavg()}")


if __name__ == "__main__":
    main()
