"""Speed of vbmkit's batched GLM against nilearn, a naive loop and a reference sgemm.

One process, the same thread count for torch and numpy's BLAS on every side, interleaved
rounds, median of the rounds. Default problem: N = 500 images x V = 200,000 voxels, 6 design
columns (intercept, age, sex, TIV, 2 site dummies), 100 subsamples of 80 %, t-contrast age.

    .venv/bin/python benchmarks/glm_speed.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/glm_speed.py --quick    # smoke run (N = 120, V = 20,000; the
                                                        # targets are for the full size)
    .venv/bin/python benchmarks/glm_speed.py --accuracy-only   # only the float64 accuracy gate

Printed ratios (targets of issue 2):
(a) vbmkit 100-subsample median t from the in-memory images / nilearn SecondLevelModel fit +
    contrast on the same images (<= 0.3); (b) vbmkit from the masked matrix / nilearn run_glm +
    compute_contrast (<= 10); (c) vbmkit / a naive loop of 100 fits (<= 0.05); (d) GFLOP/s of
    the subsample GEMM stage / reference sgemm (>= 60 %); (e) per-permutation time of vbmkit's
    Freedman-Lane maxT / nilearn permuted_ols (<= 0.1). Accuracy gate: every subsample t within
    1e-4 of a float64 reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from vbmkit.stats.design import Contrast
from vbmkit.stats.permutation import freedman_lane
from vbmkit.stats.subsample import draw_subsamples, fit_subsamples

COLUMNS = ["Intercept", "age", "sex", "TIV", "site2", "site3"]


def make_problem(n: int, v: int, seed: int = 0):
    """Design (N, 6), data (N, V) float32 with a planted age effect in 10 % of the voxels."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n).astype(float)
    tiv = rng.normal(1500, 120, n) + 80 * sex
    site = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), age, sex, tiv, site == 1, site == 2]).astype(float)
    Y = rng.normal(0.45, 0.06, size=(n, v)).astype(np.float32)
    Y[:, : v // 10] -= (0.002 * (age - 50)).astype(np.float32)[:, None]
    Y += (0.01 * (site == 2)).astype(np.float32)[:, None]
    return X, Y


def make_images(Y: np.ndarray, shape: tuple[int, int, int]):
    """One in-memory NIfTI per subject; the first V voxels (C order) form the mask."""
    mask = np.zeros(int(np.prod(shape)), bool)
    mask[: Y.shape[1]] = True
    mask = mask.reshape(shape)
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    images = []
    for row in Y:
        vol = np.zeros(shape, np.float32)
        vol[mask] = row
        images.append(nib.Nifti1Image(vol, affine))
    return images, nib.Nifti1Image(mask.astype(np.uint8), affine), mask


def naive_loop(Y: torch.Tensor, X: np.ndarray, weights: torch.Tensor, c: np.ndarray, dtype=torch.float32,
               centre: bool = False) -> torch.Tensor:
    """K independent OLS fits (gather, pinv, residuals), then the per-voxel median."""
    stats = []
    for row in weights:
        idx = torch.nonzero(row)[:, 0]
        xk = X[idx.numpy()]
        yk = Y[idx].to(dtype)
        if centre:
            yk = yk - yk.mean(0)
            xk = np.column_stack([xk[:, :1], xk[:, 1:] - xk[:, 1:].mean(0)])
        pinv = torch.from_numpy(np.linalg.pinv(xk)).to(dtype)
        beta = pinv @ yk
        resid = yk - torch.from_numpy(xk).to(dtype) @ beta
        sigma2 = (resid * resid).sum(0) / (xk.shape[0] - xk.shape[1])
        var = float(c @ np.linalg.inv(xk.T @ xk) @ c)
        stats.append(torch.from_numpy(c).to(dtype) @ beta / torch.sqrt(sigma2 * var))
    return torch.stack(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subsamples", type=int, default=100)
    parser.add_argument("--accuracy-only", action="store_true", help="only the float64 accuracy gate")
    args = parser.parse_args()
    n, v, shape = (120, 20_000, (32, 32, 20)) if args.quick else (500, 200_000, (64, 64, 50))
    k, n_perm, n_perm_nilearn = args.subsamples, 101, 50  # nilearn: 50 so the per-permutation difference (N - 0) is not lost in noise
    torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)
    print(f"glm_speed: N={n} V={v} P={len(COLUMNS)} K={k} threads={args.threads} "
          f"torch {torch.__version__} load avg {os.getloadavg()}")

    X, Y = make_problem(n, v)
    Yt = torch.from_numpy(Y)
    images, mask_img, mask = make_images(Y, shape)
    frame = pd.DataFrame(X, columns=COLUMNS)
    c_age = np.array([0, 1, 0, 0, 0, 0.0])
    contrasts = [Contrast("age", c_age)]
    weights = draw_subsamples(n, k=k, fraction=0.8, seed=0)
    thresholds = {"age": 3.1}

    from nilearn.glm import compute_contrast
    from nilearn.glm.first_level import run_glm
    from nilearn.glm.second_level import SecondLevelModel
    from nilearn.mass_univariate import permuted_ols

    gemm_stage: list[float] = []

    flat_mask = mask.reshape(-1)

    def vbm_images():
        # images -> (N, V) as vbmkit.io.maps.load_maps does: one preallocated matrix, a flat
        # boolean index per image (np.stack of per-image copies costs ~1 s more at this size)
        data = torch.empty((len(images), int(flat_mask.sum())), dtype=torch.float32)
        for k, img in enumerate(images):
            data[k] = torch.from_numpy(np.asarray(img.dataobj).reshape(-1)[flat_mask])
        return fit_subsamples(data, X, contrasts, weights, thresholds=thresholds)

    def vbm_matrix():
        timings: dict[str, float] = {}
        out = fit_subsamples(Yt, X, contrasts, weights, thresholds=thresholds, timings=timings)
        gemm_stage.append(timings["gemm"])
        return out

    def nilearn_slm():
        model = SecondLevelModel(mask_img=mask_img).fit(images, design_matrix=frame)
        return model.compute_contrast("age", output_type="stat")

    def nilearn_run_glm():
        labels, results = run_glm(Y, X, noise_model="ols")
        return compute_contrast(labels, results, c_age, stat_type="t").stat()

    def naive():
        return naive_loop(Yt, X, weights, c_age).median(0)

    a_ref = torch.randn(k * len(COLUMNS), n)

    def sgemm():
        return torch.mm(a_ref, Yt)

    def vbm_perm():
        return freedman_lane(Yt, X, contrasts, n_permutations=n_perm, seed=0)

    def _nilearn_perm(count):
        return permuted_ols(X[:, [1]], Y, confounding_vars=X[:, [0, 2, 3, 4, 5]], model_intercept=False,
                            n_perm=count, two_sided_test=False, n_jobs=1, random_state=0, verbose=0)

    sides = {"vbm_images": vbm_images, "nilearn_slm": nilearn_slm, "vbm_matrix": vbm_matrix,
             "nilearn_run_glm": nilearn_run_glm, "naive_loop": naive, "sgemm": sgemm, "vbm_perm": vbm_perm,
             "nilearn_perm0": lambda: _nilearn_perm(0), "nilearn_permN": lambda: _nilearn_perm(n_perm_nilearn)}
    if args.accuracy_only:
        sides, args.rounds = {}, 0
    times: dict[str, list[float]] = {name: [] for name in sides}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(args.rounds):
            for name, side in sides.items():
                t0 = time.perf_counter()
                side()
                times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: " + ", ".join(f"{k_}={t[-1]:.2f}s" for k_, t in times.items())
                  + f"  load avg {os.getloadavg()}", flush=True)
    med = {name: statistics.median(t) for name, t in times.items() if t}

    # accuracy gate: every subsample t against a float64 loop with centred data
    out = fit_subsamples(Yt, X, contrasts, weights, thresholds=thresholds, return_all=True)
    ref = naive_loop(Yt, X, weights, c_age, dtype=torch.float64, centre=True)
    err = (out["age"].all_stats.double() - ref).abs().max().item()
    med_err = (out["age"].median.double() - ref.sort(0).values[[k // 2 - 1, k // 2]].mean(0)
               if k % 2 == 0 else out["age"].median.double() - ref.median(0).values).abs().max().item()

    if args.accuracy_only:
        print(f"accuracy: max |t - float64 reference| over all {k} subsamples x {v} voxels = {err:.2e} "
              f"(target <= 1e-4: {'PASS' if err <= 1e-4 else 'FAIL'}); max |median t - float64 median| = "
              f"{med_err:.2e}; load avg {os.getloadavg()}")
        return
    flops_gemm = 2.0 * k * (len(COLUMNS) + 1) * n * v  # z = G Y and W (Y*Y)
    flops_ref = 2.0 * k * len(COLUMNS) * n * v
    gflops_stage = flops_gemm / statistics.median(gemm_stage) / 1e9
    gflops_fit = flops_gemm / med["vbm_matrix"] / 1e9
    gflops_ref = flops_ref / med["sgemm"] / 1e9
    per_perm_vbm = med["vbm_perm"] / n_perm
    per_perm_nilearn = (med["nilearn_permN"] - med["nilearn_perm0"]) / n_perm_nilearn
    print("\nmedian seconds: " + ", ".join(f"{k_}={t:.3f}" for k_, t in med.items()))
    print(f"reference sgemm ({k * len(COLUMNS)} x {n}) @ ({n} x {v}): {med['sgemm']:.3f} s = {gflops_ref:.1f} GFLOP/s")

    def line(label, value, target, ok):
        print(f"{label:<74} {value:8.3f}  target {target:<8} {'PASS' if ok else 'FAIL'}")

    ra = med["vbm_images"] / med["nilearn_slm"]
    rb = med["vbm_matrix"] / med["nilearn_run_glm"]
    rc = med["vbm_matrix"] / med["naive_loop"]
    rd = gflops_stage / gflops_ref
    re = per_perm_vbm / per_perm_nilearn
    line(f"(a) vbmkit {k}-subsample median t (images) / nilearn SecondLevelModel", ra, "<= 0.3", ra <= 0.3)
    line(f"(b) vbmkit {k}-subsample (matrix) / nilearn run_glm + contrast", rb, "<= 10", rb <= 10)
    line(f"(c) vbmkit / naive loop of {k} fits", rc, "<= 0.05", rc <= 0.05)
    line(f"(d) GEMM stage {gflops_stage:.1f} GFLOP/s / sgemm {gflops_ref:.1f} GFLOP/s "
         f"(whole fit {gflops_fit:.1f})", rd, ">= 0.6", rd >= 0.6)
    line(f"(e) per-permutation maxT {per_perm_vbm * 1e3:.1f} ms / nilearn permuted_ols "
         f"{per_perm_nilearn * 1e3:.1f} ms", re, "<= 0.1", re <= 0.1)
    print(f"{'accuracy: max |t - float64 reference| over all subsamples and voxels':<74} {err:8.2e}  "
          f"target <= 1e-4   {'PASS' if err <= 1e-4 else 'FAIL'}")
    print(f"accuracy: max |median t - float64 median| = {med_err:.2e}; load avg {os.getloadavg()}")
    limits.restore_original_limits()


if __name__ == "__main__":
    main()
