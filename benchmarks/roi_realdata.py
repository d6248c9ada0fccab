"""ROI volumes of every atlas on a real preprocess output folder (e.g. the 20 ds002748 subjects).

Usage::

    .venv/bin/python benchmarks/roi_realdata.py PREPROCESS_OUT [--out DIR]

``PREPROCESS_OUT`` is a ``vbmkit preprocess`` output folder (``<out>/<name>/mri/mwp1<name>.nii.gz``,
``report/<name>.json``) or a CAT12 / deepmriprep folder. Runs ``run_roi`` with every atlas
(``--atlas all``) and prints, per atlas, the share of each subject's GM (modulated map summed
over the grid) that the atlas holds minus the share of Template_4_GS's own GM it holds, in
percentage points (median and range over subjects; target: within 2 points, i.e.
preprocessing loses nothing the atlas could hold), and whether neuromorphometrics' regional GM
sums lie within 3 % of each subject's total GM. Then, for LPBA40, it prints per
subject: the table shape (regions x tissues), the sum of regional GM, the subject's total GM
(the modulated map summed over the whole grid, and the native GM of the preprocessing report
when there is one), the fraction the atlas covers, and whether the regional sum lies within
10 % of the total. It then checks the atlas itself: the fraction of Template_4_GS's GM it
covers, whether moving it by whole voxels covers more (it would if it sat off the template), and
where the GM outside it lies (neuromorphometrics structures), for the subjects next to the
template. When every subject also has native ``p1``/``p2`` and ``y_`` (vbmkit preprocess
with ``save_deformation: true``), it runs ``--native`` too and prints how the native-space
volumes (CAT12's way) agree with the template-space ones (correlation over regions, median and
largest relative difference, sums).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vbmkit.errors import ImageError  # noqa: E402
from vbmkit.workflows.roi import run_roi  # noqa: E402


def native_gm(prep: Path, subject: str) -> float | None:
    report = next(iter(prep.rglob(f"report/{subject}.json")), None)
    if report is None:
        return None
    return json.loads(report.read_text()).get("volumes_ml", {}).get("gm")


def _atlases_on_template_grid():
    """Template_4_GS GM, LPBA40 and neuromorphometrics labels on the 1.5 mm output grid (RAS)."""
    from vbmkit.io.atlas import load_atlas
    from vbmkit.io.templates import load_shooting_template

    shooting = load_shooting_template()
    lpba = np.asarray(load_atlas("lpba40", grid=shooting.grid).labels)
    nmm = load_atlas("neuromorphometrics", grid=shooting.grid)
    names = dict(zip(nmm.table["region_id"], nmm.table["name"], strict=True))
    gm = shooting.data[0].numpy().astype(np.float64)
    return gm, lpba, np.asarray(nmm.labels).astype(np.int64), names


def coverage(gm: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of the GM (sum of probabilities or mL) inside labels > 0."""
    return float(gm[labels > 0].sum() / gm.sum())


def shifted_coverage(gm: np.ndarray, labels: np.ndarray, shifts=(-2, -1, 1, 2)) -> dict[tuple[int, int], float]:
    """Coverage with the label image moved by whole voxels (1.5 mm) along each axis.

    Returns ``{(axis, shift): fraction}``; if the atlas sat off the template, some shift would
    cover more GM than none.
    """
    return {(axis, s): coverage(gm, np.roll(labels, s, axis=axis)) for axis in range(3) for s in shifts}


def uncovered_by_structure(gm: np.ndarray, lpba: np.ndarray, other: np.ndarray) -> np.ndarray:
    """GM outside LPBA40 per neuromorphometrics label, as a fraction of all GM (index = label id)."""
    outside = lpba == 0
    return np.bincount(other[outside], weights=gm[outside], minlength=other.max() + 1) / gm.sum()


def print_atlas_shares(wide: pd.DataFrame, summary: dict) -> None:
    """Per atlas: subject GM share minus the template's GM share (points); neuromorphometrics' 3 % check."""
    from vbmkit.io.atlas import describe_atlases

    template = {r["name"]: r["template_gm_fraction"] for r in describe_atlases(list(summary["atlases"]))}
    print(f"{len(wide)} subjects; share of each subject's GM inside the atlas minus the share of "
          "Template_4_GS's GM inside it, percentage points (target |difference| <= 2):")
    print(f"  {'atlas':<20} {'template %':>10} {'median':>7} {'min':>7} {'max':>7}  within 2")
    for name in summary["atlases"]:
        share = 100 * wide[f"{name}.atlas_gm"] / wide["total_gm"]
        diff = share - 100 * template[name]
        print(f"  {name:<20} {100 * template[name]:>10.2f} {diff.median():>+7.2f} {diff.min():>+7.2f} "
              f"{diff.max():>+7.2f}  {int((diff.abs() <= 2).sum())}/{len(diff)}")
    diffs = pd.DataFrame({name: 100 * wide[f"{name}.atlas_gm"] / wide["total_gm"] - 100 * template[name]
                          for name in summary["atlases"]})
    outside = diffs.abs() > 2
    if outside.any().any():  # is it GM lost, or GM sitting elsewhere (anatomy: cerebellum vs cortex)?
        print("subjects beyond 2 points, with their cerebellum (suit) and whole-brain (neuromorphometrics) "
              "differences, points:")
        for subject in diffs.index[outside.any(axis=1)]:
            over = ", ".join(f"{a} {diffs.loc[subject, a]:+.2f}" for a in diffs.columns if outside.loc[subject, a])
            print(f"  {subject}: {over}; suit {diffs.loc[subject, 'suit']:+.2f}, neuromorphometrics "
                  f"{diffs.loc[subject, 'neuromorphometrics']:+.2f}")
        if len(diffs) > 2:
            r = np.corrcoef(diffs["suit"], diffs["schaefer100"])[0, 1]
            print(f"  correlation over subjects of the suit and schaefer100 differences: r = {r:.2f}")
    rel = wide["neuromorphometrics.atlas_gm"] / wide["total_gm"] - 1
    print(f"neuromorphometrics regional GM sum vs total GM: {100 * rel.median():+.2f} % median "
          f"({100 * rel.min():+.2f} .. {100 * rel.max():+.2f} %); within 3 %: "
          f"{int((rel.abs() <= 0.03).sum())}/{len(rel)} subjects")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prep", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()}")
    out = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="roi_realdata_"))
    summary = run_roi([args.prep], out=out, atlas="all", progress=False)
    every = pd.read_csv(out / "roi_long.csv")
    wide = pd.read_csv(out / "roi_wide.csv").set_index("subject")
    print_atlas_shares(wide, summary)
    long = every[every["atlas"] == "lpba40"]
    wide = wide.rename(columns={"lpba40.atlas_gm": "atlas_gm"})
    print(f"{summary['subjects']} subjects, atlas {summary['atlas']}, tissues {summary['tissues']}, "
          f"{summary['seconds']['total']} s; tables in {out}")
    rows = []
    for subject, part in long.groupby("subject", sort=True):
        gmwm = part[part["tissue"].isin(["gm", "wm"])]
        regional = wide.loc[subject, "atlas_gm"]
        total = wide.loc[subject, "total_gm"]
        nat = native_gm(args.prep, subject)
        rows.append({"subject": subject, "regions": gmwm["region_id"].nunique(),
                     "tissues": gmwm["tissue"].nunique(), "regional_gm_ml": regional,
                     "total_gm_ml": total, "native_gm_ml": nat, "atlas_fraction": regional / total,
                     "within_10pct": abs(regional / total - 1) <= 0.10})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.max_rows", 100):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"all tables 56 regions x 2 tissues: {bool(((table['regions'] == 56) & (table['tissues'] == 2)).all())}")
    print(f"atlas covers GM: median {table['atlas_fraction'].median():.3f} "
          f"(min {table['atlas_fraction'].min():.3f}, max {table['atlas_fraction'].max():.3f}); "
          f"within 10 %: {int(table['within_10pct'].sum())}/{len(table)}")
    gm_template, lpba, other, names = _atlases_on_template_grid()
    template_fraction = coverage(gm_template, lpba)
    print(f"for scale: the atlas covers {template_fraction:.3f} of Template_4_GS's own GM (LPBA40 has no "
          "thalamus, and its cortical labels stop short of the template's GM rim), so a subject matching "
          "the template exactly would be at that fraction too")
    shifted = shifted_coverage(gm_template, lpba)
    best = max(shifted, key=shifted.get)
    print(f"alignment: atlas moved by whole voxels along one axis covers at most {shifted[best]:.3f} "
          f"(axis {best[0]}, {best[1]:+d} voxels) vs {template_fraction:.3f} unmoved: "
          f"{'the unmoved atlas is best' if shifted[best] <= template_fraction else 'A SHIFT COVERS MORE'}")
    from vbmkit.io.nifti import load_volume
    from vbmkit.workflows.roi.inputs import find_subject_maps

    maps = [s.maps["gm"] for s in find_subject_maps([args.prep])]
    per_subject = np.mean([uncovered_by_structure(load_volume(m).data.numpy().astype(np.float64), lpba, other)
                           for m in maps], axis=0)
    in_template = uncovered_by_structure(gm_template, lpba, other)
    print(f"GM outside LPBA40 by neuromorphometrics structure, % of all GM: mean of {len(maps)} subjects' "
          "mwp1 vs Template_4_GS:")
    for i in np.argsort(per_subject)[::-1][:10]:
        print(f"  {names.get(int(i), 'no neuromorphometrics label')}: {100 * per_subject[i]:.2f} % "
              f"(template {100 * in_template[i]:.2f} %)")
    print(f"  all: {100 * per_subject.sum():.2f} % (template {100 * in_template.sum():.2f} %)")
    try:
        native = run_roi([args.prep], out=out.with_name(out.name + "_native"), native=True, progress=False)
    except ImageError as exc:
        print(f"native mode not run: {exc}")
        return
    nat = pd.read_csv(out.with_name(out.name + "_native") / "roi_long.csv")
    merged = long.merge(nat, on=["subject", "region", "tissue"], suffixes=("_template", "_native"))
    print(f"native mode: {native['subjects']} subjects, {native['seconds']['total']} s")
    for tissue in ("gm", "wm"):
        part = merged[merged["tissue"] == tissue]
        a, b = part["volume_ml_template"].to_numpy(), part["volume_ml_native"].to_numpy()
        rel = np.abs(b / np.maximum(a, 1e-9) - 1)
        print(f"native vs template {tissue}: r = {np.corrcoef(a, b)[0, 1]:.4f} over {len(a)} region volumes; "
              f"|relative difference| median {np.median(rel):.2%}, max {rel.max():.2%}; "
              f"sum {b.sum():.1f} vs {a.sum():.1f} mL")
    wn = pd.read_csv(out.with_name(out.name + "_native") / "roi_wide.csv").set_index("subject")
    for subject in wn.index[:5]:
        ref = native_gm(args.prep, subject)
        if ref is not None:
            print(f"{subject}: native total GM {wn.loc[subject, 'total_gm']:.2f} mL vs preprocessing report "
                  f"{ref:.2f} mL")


if __name__ == "__main__":
    main()
