"""Speed of whole-map permutation inference with TFCE: vbmkit vs nilearn (and the ``tfce`` package).

Data: N subjects x V voxels (ellipsoid mask in a 1.5 mm box), spatially smooth (random
mixtures of 24 smoothed fields) plus a two-group design with a covariate. Measured in one
process, vbmkit and nilearn interleaved in each round, median of the rounds:

* per permutation with TFCE: ``permutation_inference(..., tfce=TfceSettings())`` (exact TFCE,
  6-connectivity, no clusters) vs nilearn ``non_parametric_inference(..., tfce=True)``
  (100 steps, 6-connectivity); nilearn's per-permutation time is the difference of two runs
  (``--nilearn-perms`` and 2 permutations) divided by the difference in permutations, so its
  fixed cost (masking, the observed map) cancels;
* TFCE of one map: ``vbmkit.stats.tfce.tfce`` vs nilearn's ``calculate_tfce`` vs the ``tfce``
  package (exact max-tree in C; used when importable, e.g. ``--tfce-path`` to an unpacked wheel).

    .venv/bin/python benchmarks/inference_speed.py                        # N=500, V=200,000
    .venv/bin/python benchmarks/inference_speed.py --subjects 60 --rounds 1 --nilearn-perms 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np
import scipy.ndimage
import torch

from vbmkit.stats.design import Contrast
from vbmkit.stats.map_permutation import TfceSettings, permutation_inference
from vbmkit.stats.tfce import tfce as vbm_tfce


def geometry(n_voxels: int) -> np.ndarray:
    """An ellipsoid mask with at least ``n_voxels`` voxels in a box of aspect 1 : 1.2 : 1."""
    scale = (n_voxels / (4 / 3 * np.pi * 1.2)) ** (1 / 3) * 1.005
    radii = np.array([scale, 1.2 * scale, scale])
    shape = tuple(int(2 * r) + 5 for r in radii)
    g = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    d = sum(((g[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    mask = d <= 1
    flat = np.flatnonzero(mask.ravel())
    keep = np.zeros(mask.size, bool)
    keep[flat[np.argsort(d.ravel()[flat], kind="stable")[:n_voxels]]] = True
    return keep.reshape(shape)


def data(n: int, mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    fields = np.stack([scipy.ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.7)[mask] for _ in range(24)])
    fields /= fields.std(1, keepdims=True)
    Y = (rng.normal(size=(n, 24)) @ fields + 0.5 * rng.normal(size=(n, fields.shape[1]))).astype(np.float32)
    X = np.column_stack([np.ones(n), np.repeat([0.0, 1.0], [n // 2, n - n // 2]), rng.normal(size=n)])
    return Y, X


def run_vbmkit(Y: torch.Tensor, X: np.ndarray, mask: np.ndarray, n_perm: int) -> float:
    start = time.perf_counter()
    permutation_inference(Y, X, [Contrast("group", np.array([0, 1, 0.0]))], mask=mask, n_permutations=n_perm,
                          tfce=TfceSettings(), cluster_p=None)
    return (time.perf_counter() - start) / n_perm


def run_nilearn(img, mask_img, design, n_perm: int) -> float:
    from nilearn.glm.second_level import non_parametric_inference

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        non_parametric_inference(img, design_matrix=design, second_level_contrast="group", mask=mask_img,
                                 n_perm=n_perm, two_sided_test=False, tfce=True, n_jobs=1, verbose=0,
                                 random_state=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--voxels", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vbmkit-perms", type=int, default=32)
    parser.add_argument("--nilearn-perms", type=int, default=8)
    parser.add_argument("--tfce-path", default=None, help="folder holding the `tfce` package (optional)")
    args = parser.parse_args()
    import nibabel as nib
    import nilearn
    import pandas as pd
    from nilearn.mass_univariate._utils import calculate_tfce
    from scipy.ndimage import generate_binary_structure

    if args.tfce_path:
        sys.path.insert(0, args.tfce_path)
    try:
        import tfce as tfce_pkg
    except ImportError:
        tfce_pkg = None
    mask = geometry(args.voxels)
    Y, X = data(args.subjects, mask)
    print(f"inference_speed: N={args.subjects}, V={int(mask.sum())} in box {mask.shape}, torch threads "
          f"{torch.get_num_threads()}, nilearn {nilearn.__version__}, tfce package "
          f"{getattr(tfce_pkg, '__version__', 'absent') if tfce_pkg else 'absent'}, load avg {os.getloadavg()}",
          flush=True)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    vol = np.zeros((*mask.shape, args.subjects), np.float32)
    vol[mask] = Y.T
    img = [nib.Nifti1Image(vol[..., i], affine) for i in range(args.subjects)]
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    design = pd.DataFrame(X, columns=["intercept", "group", "cov"])
    Yt = torch.from_numpy(Y)
    # one observed t map for the single-map comparison
    stat = np.zeros(mask.shape)
    res = permutation_inference(Yt, X, [Contrast("group", np.array([0, 1, 0.0]))], mask=mask, n_permutations=2,
                                tfce=None, cluster_p=None)
    stat = res["group"].stat.double().numpy()
    times: dict[str, list[float]] = {k: [] for k in ("vbmkit_perm", "nilearn_perm", "vbm_map", "nilearn_map", "pkg_map")}
    bin6 = generate_binary_structure(3, 1)
    for r in range(args.rounds):
        times["vbmkit_perm"].append(run_vbmkit(Yt, X, mask, args.vbmkit_perms))
        few = run_nilearn(img, mask_img, design, 2)
        many = run_nilearn(img, mask_img, design, args.nilearn_perms)
        times["nilearn_perm"].append((many - few) / (args.nilearn_perms - 2))
        t0 = time.perf_counter()
        exact = vbm_tfce(stat, connectivity=6).numpy()
        times["vbm_map"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stepped = calculate_tfce(stat[..., None], bin_struct=bin6, two_sided_test=False)[..., 0]
        times["nilearn_map"].append(time.perf_counter() - t0)
        if tfce_pkg is not None:
            t0 = time.perf_counter()
            other = tfce_pkg.tfce(stat, E=0.5, H=2.0, connectivity=6, two_sided=False)
            times["pkg_map"].append(time.perf_counter() - t0)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items() if v), flush=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"\nper permutation with TFCE (median of {args.rounds}): vbmkit {med['vbmkit_perm']:.3f} s, nilearn "
          f"{med['nilearn_perm']:.3f} s; ratio vbmkit / nilearn = {med['vbmkit_perm'] / med['nilearn_perm']:.3f} "
          "(target <= 0.1)")
    print(f"TFCE of one map (6-connectivity): vbmkit {med['vbm_map']:.3f} s, nilearn calculate_tfce "
          f"{med['nilearn_map']:.3f} s" + (f", tfce package {med['pkg_map']:.3f} s" if "pkg_map" in med else
                                           ", tfce package not importable"))
    # nilearn follows fslmaths and does not multiply by the step: scale it for the comparison
    dh = np.abs(stat).max() / 100
    sel = exact > 0.01 * exact.max()
    print(f"accuracy vs vbmkit's exact TFCE (voxels above 1 % of the max): nilearn x dh max relative error "
          f"{np.max(np.abs(stepped[sel] * dh - exact[sel]) / exact[sel]):.4f}", end="")
    if tfce_pkg is not None:
        print(f"; tfce package {np.max(np.abs(other[sel] - exact[sel]) / exact[sel]):.2e}")
    else:
        print()


if __name__ == "__main__":
    main()
