"""Must-show 1: ``vbmkit demo`` from scratch, timed, and the planted age effect recovered.

Runs ``vbmkit demo --out DIR`` in a fresh temporary folder (a new process, as a user would),
prints the wall time and the load average, then reads the study it wrote and checks, for the
age contrast (``age_decline``: -age) and the group contrast (``patients_lower``):

- the peak of the median t-map (100 subsamples of 80 %) lies in a planted LPBA40 region;
- Pearson r between the median t-map and the true effect map (``cohort/truth/effect_age``,
  smoothed by 6 mm like the analysed s6mwp1 maps; also unsmoothed), inside the GLM mask.

Targets: wall time <= 300 s on a 2-core CPU, peak inside a planted region, r >= 0.5.

Usage: ``python benchmarks/demo_check.py [--keep DIR] [--n 20] [--truth]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _vbmkit() -> list[str]:
    exe = Path(sys.executable).parent / "vbmkit"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vbmkit"]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="Write the demo here (must not exist) and keep it.")
    ap.add_argument("--n", type=int, default=None, help="Subjects (default: the demo's).")
    ap.add_argument("--truth", action="store_true", help="vbmkit demo --truth (true maps, no preprocessing).")
    args = ap.parse_args()
    tmp = None
    if args.keep is not None:
        out = args.keep
    else:
        tmp = Path(tempfile.mkdtemp(prefix="vbmkit_demo_check_"))
        out = tmp / "demo"
    cmd = _vbmkit() + ["demo", "--out", str(out)] + (["--subjects", str(args.n)] if args.n else []) + (["--truth"] if args.truth else [])
    print(f"load average before: {os.getloadavg()}")
    print("running:", " ".join(cmd))
    import resource

    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(proc.stdout[-3000:])
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        print(f"FAILED: vbmkit demo exited with {proc.returncode} after {wall:.1f} s")
        return 1
    print(f"load average after: {os.getloadavg()}")
    print(f"wall time of `vbmkit demo`: {wall:.1f} s (target <= 300 s) -> {'OK' if wall <= 300 else 'TOO SLOW'}; "
          f"CPU time (user + sys) {cpu:.1f} s on {os.cpu_count()} cores")

    # Independent check with nibabel/numpy (not the demo's own evaluation code).
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    study, truth = out / "study", out / "cohort" / "truth"
    regions = json.loads((truth / "regions.json").read_text())
    atlas_img = nib.load(REPO / "atlases" / "lpba40" / "lpba40.nii.gz")
    import pandas as pd

    table = pd.read_csv(REPO / "atlases" / "lpba40" / "lpba40_labels.csv")
    abbr = dict(zip(table["region_id"], table["abbr"], strict=True))
    mask_img = nib.load(study / "glm" / "mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    ok = True
    for contrast, effect in (("age_decline", "age"), ("patients_lower", "group")):
        t_img = nib.load(study / "glm" / contrast / "t_median.nii.gz")
        t = np.asarray(t_img.dataobj, dtype=np.float64)
        e_img = nib.load(truth / f"effect_{effect}.nii.gz")
        assert np.allclose(e_img.affine, t_img.affine) and np.allclose(atlas_img.affine, t_img.affine)
        e = -np.asarray(e_img.dataobj, dtype=np.float64)  # the contrasts test a decline
        sigma_vox = 6.0 / (2 * np.sqrt(2 * np.log(2))) / 1.5
        e_s = gaussian_filter(e, sigma_vox, mode="constant")
        peak = np.unravel_index(np.argmax(np.where(mask, t, -np.inf)), t.shape)
        label = abbr.get(int(np.asarray(atlas_img.dataobj)[peak]), "")
        xyz = t_img.affine @ np.r_[np.asarray(peak, dtype=float), 1.0]
        inside = label in regions[effect]
        r_s, r_raw = pearson(t[mask], e_s[mask]), pearson(t[mask], e[mask])
        print(f"{contrast}: peak median t = {t[peak]:.2f} at ({xyz[0]:.1f}, {xyz[1]:.1f}, {xyz[2]:.1f}) mm "
              f"in {label or 'no region'} (planted: {', '.join(regions[effect])}) -> "
              f"{'inside' if inside else 'OUTSIDE'}")
        print(f"{contrast}: Pearson r(median t, true effect smoothed 6 mm) = {r_s:.3f}; "
              f"unsmoothed = {r_raw:.3f} (target >= 0.5)")
        if effect == "age":
            ok = ok and inside and r_s >= 0.5 and r_raw >= 0.5 and wall <= 300
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    print("MUST-SHOW 1:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
