"""Power of voxel maxT, TFCE and cluster-extent FWE on the simulated cohort's true maps.

Runs ``vbmkit simulate --no-images`` (truth maps and participants.tsv only), then ``vbmkit glm``
on the true ``s6mwp1`` maps with ``--tfce`` and permutations, and counts the planted age
voxels (``truth/effect_age.nii.gz`` is smooth and non-zero almost everywhere, so "planted"
means an atrophy of at least ``--share`` (default 10 %) of the largest one, inside the analysis
mask; the count of all non-zero voxels is printed too) found at FWE p < 0.05 by
each method: ``p_fwe`` (voxel maxT), ``p_fwe_tfce`` and the clusters of ``clusters.csv`` with
``p_fwe_cluster`` < 0.05 (their voxels: the connected component of the cluster-forming
threshold holding the listed peak).

    .venv/bin/python benchmarks/inference_power.py                       # n 20, 200 permutations
    .venv/bin/python benchmarks/inference_power.py --permutations 50     # quick check
    .venv/bin/python benchmarks/inference_power.py --n 60 --permutations 500   # enough signal to compare

Measured figures (n 20: nothing survives any correction, max t 3.04; n 60: maxT 94.3 %, TFCE
94.6 %, cluster extent 96.5 % of the planted voxels) are in ``docs/algorithms_glm.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from vbmkit.stats.clusters import cluster_labels


def _vbmkit(*args: str) -> None:
    # the console script installed beside this interpreter (vbmkit has no __main__ module)
    subprocess.run([str(Path(sys.executable).parent / "vbmkit"), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=0.1, help="Planted: effect <= -share x max |effect|.")
    parser.add_argument("--work", type=Path, default=None, help="Folder to keep (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work if args.work is not None else Path(tmp)
        cohort, out = work / "cohort", work / "glm"
        if not (cohort / "participants.tsv").is_file():
            _vbmkit("simulate", "--n", str(args.n), "--no-images", "--seed", str(args.seed), "-o", str(cohort))
        _vbmkit("glm", str(cohort / "truth"), "--covariates", str(cohort / "participants.tsv"), "--formula",
                "age + C(sex) + C(group)", "--contrast", "age_neg=-age", "--subsamples", "0", "--permutations",
                str(args.permutations), "--tfce", "--seed", str(args.seed), "--out", str(out), "-q")
        summary = json.loads((out / "summary.json").read_text())
        truth_img = nib.load(str(cohort / "truth" / "effect_age.nii.gz"))
        t_img = nib.load(str(out / "age_neg" / "t.nii.gz"))
        if truth_img.shape != t_img.shape or not np.allclose(truth_img.affine, t_img.affine):
            raise SystemExit("effect_age.nii.gz and the GLM maps are not on one grid")
        mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj) > 0
        effect = np.asarray(truth_img.dataobj, dtype=np.float64)
        planted = (effect <= -args.share * np.abs(effect).max()) & mask
        found = {}
        for name in ("p_fwe", "p_fwe_tfce"):
            p = np.asarray(nib.load(str(out / "age_neg" / f"{name}.nii.gz")).dataobj)
            found[name] = p < 0.05
        t = np.asarray(t_img.dataobj, dtype=np.float64)
        labels, _ = cluster_labels(t, summary["contrasts"]["age_neg"]["cluster_threshold"], connectivity=26)
        table = pd.read_csv(out / "age_neg" / "clusters.csv")
        extent = np.zeros(t.shape, bool)
        inverse = np.linalg.inv(t_img.affine)
        for _, row in table[table["p_fwe_cluster"] < 0.05].iterrows():
            ijk = np.rint(inverse @ [row["peak_x_mm"], row["peak_y_mm"], row["peak_z_mm"], 1.0])[:3].astype(int)
            extent |= labels == labels[tuple(ijk)]
        found["p_fwe_cluster"] = extent
        print(f"{args.n} subjects, {args.permutations} permutations, {int(planted.sum())} planted age voxels "
              f"(>= {args.share:.0%} of the peak atrophy; {int(((effect != 0) & mask).sum())} non-zero) in the mask of "
              f"{int(mask.sum())}")
        for name, hit in found.items():
            tp, fp = int((hit & planted).sum()), int((hit & ~planted).sum())
            print(f"  {name:14s} planted voxels found at FWE p < 0.05: {tp:7d} ({tp / max(planted.sum(), 1):6.1%}); "
                  f"outside the planted regions: {fp}")


if __name__ == "__main__":
    main()
