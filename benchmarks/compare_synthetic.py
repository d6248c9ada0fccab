"""vbmkit compare on synthetic folders with a known relation; checks every figure against numpy/scipy.

The reference ("CAT12", written in CAT12's layout and XML) is a copy of vbmkit's maps shifted by one
voxel with noise (tests/workflows/compare_fixtures.py). The script runs ``run_compare`` with a
design (age, 100 subsamples of 80 %), recomputes every Dice, r and ICC of metrics.json from the
files with numpy/scipy, prints the largest difference, and renders report.html to a PNG with
headless Chromium (scripts/screenshot.py) when it is installed::

    .venv/bin/python benchmarks/compare_synthetic.py --out /tmp/vbmkit_compare_synthetic [--png docs/compare_report.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/vbmkit_compare_synthetic"))
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--png", type=Path, default=None, help="screenshot of report.html (default OUT/report.png)")
    args = ap.parse_args(argv)

    import nibabel as nib
    import numpy as np
    from scipy import stats

    from tests.workflows.compare_fixtures import make_study
    from vbmkit.config import GlmConfig
    from vbmkit.workflows.compare import run_compare

    print(f"load average {os.getloadavg()}")
    args.out.mkdir(parents=True, exist_ok=True)
    study = make_study(args.out / "data", n=args.subjects)
    t0 = time.perf_counter()
    m = run_compare(study["ours"], cat12=study["cat12"], out=args.out / "compare", covariates=study["covariates"],
                    id_column="participant_id",
                    glm=GlmConfig(formula="age", contrasts={"age": "age", "neg_age": "-age"}, subsamples=100, fraction=0.8, seed=0),
                    device="cpu", reference_note="synthetic reference: vbmkit's maps shifted by one voxel "
                    "with noise, in CAT12's layout")
    print(f"run_compare: {time.perf_counter() - t0:.1f} s for {len(m['matched'])} subjects")

    def ras(p):
        return np.asarray(nib.as_closest_canonical(nib.load(str(p))).dataobj, dtype=np.float64)

    worst = 0.0
    n_checked = 0
    for name in study["names"]:
        s = m["subjects"][name]
        a, b = ras(study["ours"] / name / "mri" / f"p0{name}.nii.gz"), ras(study["cat12"] / "mri" / f"p0{name}.nii")
        la, lb = np.clip(np.floor(a + 0.5), 0, 3), np.clip(np.floor(b + 0.5), 0, 3)
        for c, t in ((1, "csf"), (2, "gm"), (3, "wm")):
            A, B = la == c, lb == c
            worst = max(worst, abs(s[f"dice_{t}"] - 2 * (A & B).sum() / (A.sum() + B.sum())))
            n_checked += 1
        for kind in ("mwp1", "mwp2"):
            x = ras(study["ours"] / name / "mri" / f"{kind}{name}.nii.gz")
            y = ras(study["cat12"] / "mri" / f"{kind}{name}.nii")
            keep = (x + y) / 2 > 0.1
            worst = max(worst, abs(s[f"r_{kind}"] - stats.pearsonr(x[keep], y[keep])[0]))
            n_checked += 1
    ra = study["roi_ours"].set_index(["subject", "region", "tissue"])["volume_ml"]
    rb = study["roi_ref"].set_index(["subject", "region", "tissue"])["volume_ml"]
    for region, d in m["roi"].items():
        for tissue, v in d.items():
            x = ra.xs((region, tissue), level=("region", "tissue")).loc[study["names"]].to_numpy()
            y = rb.xs((region, tissue), level=("region", "tissue")).loc[study["names"]].to_numpy()
            k = np.stack([x, y], 1)
            n, r = k.shape
            g = k.mean()
            msr = r * ((k.mean(1) - g) ** 2).sum() / (n - 1)
            msc = n * ((k.mean(0) - g) ** 2).sum() / (r - 1)
            mse = ((k - k.mean(1, keepdims=True) - k.mean(0, keepdims=True) + g) ** 2).sum() / ((n - 1) * (r - 1))
            icc = (msr - mse) / (msr + (r - 1) * mse + r * (msc - mse) / n)
            worst = max(worst, abs(v["r"] - stats.pearsonr(x, y)[0]), abs(v["icc"] - icc))
            n_checked += 2
    glm = args.out / "compare"
    mask = (ras(glm / "glm_ours" / "mask.nii.gz") > 0) & (ras(glm / "glm_cat12" / "mask.nii.gz") > 0)
    for name, c in m["contrasts"].items():
        ta, tb = ras(glm / "glm_ours" / name / "t_median.nii.gz"), ras(glm / "glm_cat12" / name / "t_median.nii.gz")
        worst = max(worst, abs(c["r_median_t"] - stats.pearsonr(ta[mask], tb[mask])[0]))
        n_checked += 1
        thr = c["threshold_ours"]
        A, B = (ta > thr) & mask, (tb > thr) & mask
        if A.sum() + B.sum():
            worst = max(worst, abs(c["dice_suprathreshold"] - 2 * (A & B).sum() / (A.sum() + B.sum())))
            n_checked += 1
        print(f"contrast {name}: r(median t) {c['r_median_t']:.4f}, max|t| {c['max_abs_t_ours']:.2f} vs "
              f"{c['max_abs_t_cat12']:.2f}, Dice(t > {thr:.2f}) {c['dice_suprathreshold']}, same draws {c['same_draws']}")
    med = {k: float(np.median([s[k] for s in m["subjects"].values()])) for k in ("dice_gm", "dice_wm", "r_mwp1")}
    print(f"median dice_gm {med['dice_gm']:.4f}, dice_wm {med['dice_wm']:.4f}, r_mwp1 {med['r_mwp1']:.4f}; "
          f"ROI GM r median {np.median([d['gm']['r'] for d in m['roi'].values()]):.4f}")
    print(f"checked {n_checked} r/Dice/ICC values against numpy/scipy: max |difference| {worst:.2e} "
          f"({'PASS' if worst < 1e-6 else 'FAIL'} at 1e-6)")

    spec = importlib.util.spec_from_file_location("screenshot", REPO / "scripts" / "screenshot.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    png = args.png if args.png is not None else args.out / "report.png"
    if shot.find_chromium() is None:
        print("chromium not installed: no screenshot")
    else:
        shot.screenshot(glm / "report.html", png, width=1400, height=3000)
        print(f"screenshot {png}: {shot.png_size(png)} px, {png.stat().st_size} bytes")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
