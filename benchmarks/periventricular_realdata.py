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

``--permutations J`` adds, for each study, what chance alone gives in the band: the full-sample
``age + C(gender) + C(group) + TIV`` model is refitted on the s6mwp1 maps (``glm/design.csv``,
``glm/mask.nii.gz``) with J Freedman-Lane permutations of age (seed 0). Printed: the expected
count of band voxels with t > 3.3 under no effect (band voxels x P(t_df > 3.3), exact whatever
the smoothness), the permutation null's mean and 95th percentile of that count and the
permutation p of the observed count; and the band voxels significant at FWE 0.05 for GM gain
with age, by voxel maxT and by cluster extent (cluster-forming p 0.001) over the whole GLM mask.

    .venv/bin/python benchmarks/periventricular_realdata.py [--before out/ds002748_before] [--after out/ds002748]
        [--permutations 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from vbmkit.io.nifti import load_volume
from vbmkit.io.templates import load_shooting_template
from vbmkit.stats.design import Contrast
from vbmkit.stats.map_permutation import permutation_inference
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


def _s6mwp1(study: Path, subject: str) -> Path:
    """The subject's s6mwp1 in either layout (cat12: ``<name>/mri/``; bids: ``sub-X/anat/``)."""
    cat12 = sorted((study / "preprocess").glob(f"{subject}_*/mri/s6mwp1{subject}_*.nii.gz"))
    bids = sorted((study / "preprocess" / subject / "anat").glob(f"{subject}*label-GM_desc-s6modulated_probseg.nii.gz"))
    found = cat12 + bids
    if len(found) != 1:
        sys.exit(f"{study}: expected one s6mwp1 map of {subject}; found {[str(f) for f in found]}")
    return found[0]


def chance_in_band(study: Path, band: np.ndarray, permutations: int) -> dict[str, float]:
    """Band counts of t > THRESHOLD (GM gain with age) against permutations, and FWE findings."""
    design = pd.read_csv(study / "glm" / "design.csv")
    ids, columns = list(design.iloc[:, 0]), list(design.columns[1:])
    X = design[columns].to_numpy(np.float64)
    mask = load_volume(study / "glm" / "mask.nii.gz").data.numpy() > 0
    Y = np.stack([load_volume(_s6mwp1(study, s)).data.numpy()[mask] for s in ids]).astype(np.float32)
    age = Contrast("age_pos", np.eye(len(columns))[columns.index("age")])
    res = permutation_inference(torch.from_numpy(Y), X, [age], mask=mask, n_permutations=permutations,
                                tfce=None, cluster_p=0.001, columns=columns)["age_pos"]
    t = res.stat.numpy()
    in_band = band & mask
    df = len(ids) - len(columns)
    # the null count of the band alone: Freedman-Lane permutations of age drawn here (seed 0), refit on the band
    yb = Y[:, in_band[mask]].astype(np.float64)
    z = np.delete(X, columns.index("age"), axis=1)
    hz = z @ np.linalg.pinv(z)
    fitted, resid = hz @ yb, yb - hz @ yb
    pinv = np.linalg.pinv(X)
    c = np.eye(len(columns))[columns.index("age")]
    var_c = float(c @ np.linalg.inv(X.T @ X) @ c)
    rng = np.random.default_rng(0)
    counts = []
    for j in range(permutations):
        yp = fitted + (resid if j == 0 else resid[rng.permutation(len(ids))])
        beta = pinv @ yp
        rss = ((yp - X @ beta) ** 2).sum(0)
        tj = (c @ beta) / np.sqrt(rss / df * var_c)
        counts.append(int((tj > THRESHOLD).sum()))
    counts = np.asarray(counts)
    labels = res.cluster_labels.numpy() if res.cluster_labels is not None else np.zeros_like(mask, dtype=np.int32)
    significant = {cl.index for cl in res.clusters if cl.p_fwe_extent < 0.05}
    return {
        "band voxels in mask": int(in_band.sum()), "df": df,
        "observed": int((band & (t > THRESHOLD)).sum()), "observed (refit)": int(counts[0]),
        "expected": float(in_band.sum() * stats.t.sf(THRESHOLD, df)),
        "null mean": float(counts[1:].mean()), "null 95th": float(np.percentile(counts[1:], 95)),
        "p": float((counts >= counts[0]).mean()),
        "fwe voxel": int((band & (res.p_fwe_voxel.numpy() < 0.05)).sum()),
        "fwe voxel whole mask": int((res.p_fwe_voxel.numpy() < 0.05).sum()),
        "fwe t threshold": float(np.percentile(res.max_null_voxel.numpy(), 95)),
        "fwe cluster": int((band & np.isin(labels, list(significant))).sum()) if significant else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=ROOT / "out" / "ds002748_before")
    ap.add_argument("--after", type=Path, default=ROOT / "out" / "ds002748")
    ap.add_argument("--contrast", default="age_pos")
    ap.add_argument("--permutations", type=int, default=0, help="also chance in the band (0: skip)")
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

    if args.permutations > 0:
        for label, folder in (("before", args.before), ("after", args.after)):
            c = chance_in_band(folder, band, args.permutations)
            print(f"SUMMARY chance, {label} (full-sample model, {args.permutations} Freedman-Lane permutations, "
                  f"df {c['df']}): band voxels with t > {THRESHOLD}: observed {c['observed']} (refit "
                  f"{c['observed (refit)']}); under no effect expected {c['expected']:.1f}, permutation null mean "
                  f"{c['null mean']:.1f}, 95th percentile {c['null 95th']:.0f}, p = {c['p']:.3f}; significant at FWE "
                  f"0.05 in the band: {c['fwe voxel']} voxels by maxT (t > {c['fwe t threshold']:.2f}; whole mask "
                  f"{c['fwe voxel whole mask']}), {c['fwe cluster']} by cluster extent (p < 0.001 clusters)")


if __name__ == "__main__":
    main()
