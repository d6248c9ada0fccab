"""Issue 18, must-show 2: periventricular GM and the age-positive t-map on the 20 ds002748 subjects,
before (five tissue classes) and after (the CSF/WM class, the default).

Reads two finished study folders of ``vbmkit run``:

- before: ``vbmkit run benchmarks/ds002748_before.yaml`` -> ``out/ds002748_before``
  (``preprocess.csf_wm_class: false``; BIDS layout, which changes names, not numbers);
- after: ``vbmkit run examples/ds002748.yaml`` -> ``out/ds002748`` (the defaults).

Both fit ``age + C(gender) + C(group) + TIV`` with 100 x 80 % subsamples (seed 0). Printed: the
periventricular GM of every subject (``periventricular_gm_ml`` of ``preprocess/volumes.csv``:
modulated GM within 3 mm of neuromorphometrics' lateral ventricles, mL) before and after, and the
number of voxels with t > 3.3 inside that 3 mm band on the template grid for the ``age_pos``
contrast (GM gain with age): the median t-map over the subsamples (the study's map) and the
full-sample t-map. Target: a drop of at least 75 %.

    .venv/bin/python benchmarks/periventricular_realdata.py [--before out/ds002748_before] [--after out/ds002748]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vbmkit.io.nifti import load_volume
from vbmkit.io.templates import load_shooting_template
from vbmkit.workflows.preprocess.steps import template_band

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 3.3


def _subject_id(name: str) -> str:
    return name.split("_")[0]


def periventricular_table(study: Path) -> pd.Series:
    """``periventricular_gm_ml`` per subject ID (``sub-01``) from ``preprocess/volumes.csv``."""
    table = pd.read_csv(study / "preprocess" / "volumes.csv")
    return table.set_index(table["name"].map(_subject_id))["periventricular_gm_ml"].sort_index()


def band_counts(study: Path, contrast: str, band: np.ndarray, affine: np.ndarray) -> dict[str, int]:
    """Voxels with t > :data:`THRESHOLD` inside ``band`` in the median and full-sample t-maps."""
    folder = study / "glm" / contrast
    out = {}
    for label, file in (("median t", "t_median.nii.gz"), ("full-sample t", "t.nii.gz")):
        image = load_volume(folder / file)
        if image.data.shape != band.shape or not np.allclose(image.grid.affine, affine, atol=1e-3):
            sys.exit(f"{folder / file}: expected the template grid {band.shape}; got {tuple(image.data.shape)}")
        t = image.data.numpy()
        out[label] = int((band & (t > THRESHOLD)).sum())
        out[f"{label} band voxels in mask"] = int((band & (t != 0)).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=ROOT / "out" / "ds002748_before")
    ap.add_argument("--after", type=Path, default=ROOT / "out" / "ds002748")
    ap.add_argument("--contrast", default="age_pos")
    args = ap.parse_args()
    for label, folder, yaml in (("before", args.before, "benchmarks/ds002748_before.yaml"),
                                ("after", args.after, "examples/ds002748.yaml")):
        if not (folder / "glm" / args.contrast / "t_median.nii.gz").is_file():
            sys.exit(f"{label}: {folder} has no finished study; run `vbmkit run {yaml}` first")

    before, after = periventricular_table(args.before), periventricular_table(args.after)
    if list(before.index) != list(after.index):
        sys.exit(f"the two studies hold different subjects: {list(before.index)} vs {list(after.index)}")
    table = pd.DataFrame({"before_ml": before, "after_ml": after})
    table["change_percent"] = 100.0 * (table["after_ml"] - table["before_ml"]) / table["before_ml"]
    print("periventricular GM (mL within 3 mm of the lateral ventricles), real data, ds002748:")
    print(table.round(2).to_string())
    print(f"SUMMARY periventricular GM: median before {before.median():.2f} mL, after {after.median():.2f} mL, "
          f"median change {table['change_percent'].median():+.1f} % (range {table['change_percent'].min():+.1f} "
          f"to {table['change_percent'].max():+.1f} %), N = {len(table)}")

    template = load_shooting_template()
    band = template_band().numpy()
    counts = {label: band_counts(folder, args.contrast, band, template.grid.affine)
              for label, folder in (("before", args.before), ("after", args.after))}
    print(f"3 mm band around neuromorphometrics' lateral ventricles: {int(band.sum())} voxels on the template grid")
    for stat in ("median t", "full-sample t"):
        b, a = counts["before"][stat], counts["after"][stat]
        change = 100.0 * (a - b) / b if b else float("nan")
        print(f"SUMMARY {args.contrast} ({stat}): voxels with t > {THRESHOLD} in the band: before {b}, after {a}, "
              f"change {change:+.1f} % (target <= -75 %; band voxels in the GLM mask: "
              f"{counts['before'][stat + ' band voxels in mask']} / {counts['after'][stat + ' band voxels in mask']})")


if __name__ == "__main__":
    main()
