"""Robustness of s6mwp1 to MRI artifacts on one real subject (issue 3, "Must show" 4).

The clean T1 of one ds002748 subject is corrupted with six synthetic artifacts at a medium and
a strong level (Rician noise, smooth bias field, blur, ghosting, motion, Gibbs ringing), every
version is preprocessed, and the Pearson correlation of its s6mwp1 with the clean s6mwp1 is
printed (target >= 0.95 for each). Voxels: where the clean s6mwp1 exceeds 0.1 (the usual
absolute-threshold analysis mask) and, for reference, the whole grid.

Resumable (finished images are skipped):

    nohup .venv/bin/python benchmarks/preprocess_robustness.py > out/robust.log 2>&1 &
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import fft, ndimage

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "ds002748" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"

# (medium, strong) parameter of each artifact; see the functions for the units
LEVELS = {
    "noise": (0.04, 0.08),  # Rician noise sigma, fraction of the brain's 95th percentile
    "bias": (0.2, 0.4),  # log-amplitude of a smooth multiplicative field (x0.82..1.22, x0.67..1.49)
    "blur": (2.0, 3.0),  # Gaussian FWHM in mm
    "ghosting": (0.15, 0.3),  # fraction of odd phase-encoding lines' signal lost (ghost at N/2)
    "motion": (2.5, 5.0),  # rotation in degrees and translation in mm of the moved k-space segments
    "gibbs": (0.5, 0.3),  # fraction of k-space kept along the slice axis (truncation ringing)
}


def rician(x, level, rng, scale):
    s = level * scale
    return np.sqrt((x + rng.normal(0, s, x.shape)) ** 2 + rng.normal(0, s, x.shape) ** 2)


def bias(x, level, rng, vox):
    # a random smooth field: low-order cosine series over the field of view
    axes = [np.linspace(-1, 1, n) for n in x.shape]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    field = np.zeros(x.shape)
    for _ in range(6):
        kx, ky, kz = rng.uniform(0.2, 1.2, 3)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(np.pi * (kx * gx + ky * gy + kz * gz) + phase)
    field = field / np.abs(field).max()
    return x * np.exp(level * field)


def blur(x, fwhm, vox):
    sigma = fwhm / 2.3548 / np.asarray(vox)
    return ndimage.gaussian_filter(x, sigma)


def ghosting(x, level, axis=1):
    k = fft.fftn(x, workers=2)
    idx = [slice(None)] * 3
    idx[axis] = slice(1, None, 2)
    k[tuple(idx)] *= (1 - level)
    return np.abs(fft.ifftn(k, workers=2))


def motion(x, level, vox, axis=1):
    # three head positions during the scan; each fills a contiguous block of phase-encoding lines
    from scipy.spatial.transform import Rotation

    centre = (np.asarray(x.shape) - 1) / 2
    k = fft.fftshift(fft.fftn(x, workers=2))
    n = x.shape[axis]
    blocks = [(0, int(0.4 * n)), (int(0.6 * n), n)]  # the outer lines; the central 20 % stay still
    for b, sign in zip(blocks, (1, -1), strict=True):
        rot = Rotation.from_euler("xyz", [sign * level, 0.5 * level, -0.5 * sign * level], degrees=True).as_matrix()
        # voxel-space rotation about the centre plus a translation of `level` mm along x
        m = np.diag(1 / np.asarray(vox)) @ rot @ np.diag(np.asarray(vox))
        offset = centre - m @ centre + np.array([sign * level / vox[0], 0, 0])
        moved = ndimage.affine_transform(x, m, offset=offset, order=1)
        km = fft.fftshift(fft.fftn(moved, workers=2))
        idx = [slice(None)] * 3
        idx[axis] = slice(*b)
        k[tuple(idx)] = km[tuple(idx)]
    return np.abs(fft.ifftn(fft.ifftshift(k), workers=2))


def gibbs(x, keep, axis=2):
    k = fft.fftshift(fft.fftn(x, workers=2))
    n = x.shape[axis]
    lo, hi = int(n * (1 - keep) / 2), int(n * (1 + keep) / 2)
    idx = [slice(None)] * 3
    idx[axis] = np.r_[0:lo, hi:n]
    k[tuple(idx)] = 0
    return np.abs(fft.ifftn(fft.ifftshift(k), workers=2))


def corrupt(x, vox, name, level, rng, scale):
    if name == "noise":
        return rician(x, level, rng, scale)
    if name == "bias":
        return bias(x, level, rng, vox)
    if name == "blur":
        return blur(x, level, vox)
    if name == "ghosting":
        return ghosting(x, level)
    if name == "motion":
        return motion(x, level, vox)
    return gibbs(x, level)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "robust")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import nibabel as nib

    from vbmkit.config import PreprocessConfig
    from vbmkit.io.nifti import image_stem
    from vbmkit.workflows.preprocess import run_preprocess

    torch.set_num_threads(args.threads)
    img = nib.load(str(args.input))
    x = np.asarray(img.dataobj, dtype=np.float64)
    vox = img.header.get_zooms()[:3]
    scale = float(np.quantile(x[x > 0], 0.95))
    stem = image_stem(args.input)
    indir = args.out / "inputs"
    indir.mkdir(parents=True, exist_ok=True)
    names = [stem]
    clean_path = indir / f"{stem}.nii.gz"
    if not clean_path.is_file():
        nib.save(nib.Nifti1Image(x.astype(np.float32), img.affine), str(clean_path))
    for art, levels in LEVELS.items():
        for tag, level in zip(("medium", "strong"), levels, strict=True):
            name = f"{stem}_{art}_{tag}"
            names.append(name)
            path = indir / f"{name}.nii.gz"
            if not path.is_file():
                rng = np.random.default_rng(args.seed)
                y = corrupt(x, vox, art, level, rng, scale)
                nib.save(nib.Nifti1Image(y.astype(np.float32), img.affine), str(path))
    print(f"{len(names)} images in {indir}; load average {os.getloadavg()}", flush=True)
    t0 = time.perf_counter()
    summary = run_preprocess([indir / f"{n}.nii.gz" for n in names], args.out / "preprocess",
                             PreprocessConfig(), device=args.device, progress=lambda m: print(m, flush=True))
    print(f"done {len(summary.done)}, skipped {len(summary.skipped)}, failed {len(summary.failed)} in "
          f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}", flush=True)

    def s6(name):
        p = args.out / "preprocess" / name / "mri" / f"s6mwp1{name}.nii.gz"
        return np.asarray(nib.load(str(p)).dataobj, dtype=np.float64) if p.is_file() else None

    clean = s6(stem)
    if clean is None:
        print("the clean image failed:", summary.failed.get(stem))
        return 1
    mask = clean > 0.1
    print(f"\n{'artifact':<10} {'level':<7} {'param':>6} {'r (s6mwp1>0.1)':>15} {'r (all)':>8} "
          f"{'TIV mL':>7} {'warp MSE':>9}")
    worst = 1.0
    for art, levels in LEVELS.items():
        for tag, level in zip(("medium", "strong"), levels, strict=True):
            name = f"{stem}_{art}_{tag}"
            y = s6(name)
            if y is None:
                print(f"{art:<10} {tag:<7} {level:>6} FAILED: {summary.failed.get(name)}")
                worst = 0.0
                continue
            r_mask = float(np.corrcoef(clean[mask], y[mask])[0, 1])
            r_all = float(np.corrcoef(clean.ravel(), y.ravel())[0, 1])
            rep = summary.reports[name]
            worst = min(worst, r_mask)
            print(f"{art:<10} {tag:<7} {level:>6} {r_mask:>15.4f} {r_all:>8.4f} "
                  f"{rep['volumes_ml']['tiv']:>7.0f} {rep['quality']['warp_mse']:>9.4f}")
    clean_rep = summary.reports[stem]
    print(f"{'clean':<10} {'-':<7} {'-':>6} {1.0:>15.4f} {1.0:>8.4f} {clean_rep['volumes_ml']['tiv']:>7.0f} "
          f"{clean_rep['quality']['warp_mse']:>9.4f}")
    print(f"\nlowest correlation {worst:.4f} (target >= 0.95): {'PASS' if worst >= 0.95 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
