"""Image-quality rating (NCR, ICR, RES -> IQR) of real subjects and of one subject with artifacts.

Usage::

    .venv/bin/python benchmarks/quality_rating.py [PREPROCESS_OUT] [--artifact-subject sub-01_T1w]

``PREPROCESS_OUT`` (default ``out/ds002748/preprocess``) is a vbmkit preprocess folder in the
CAT12 layout. For every finished subject (``report/<name>.json``) the rating is taken from the
report's ``quality_rating`` or, for subjects preprocessed before vbmkit rated images, computed
now from the input image (the report's ``input``) and the native ``p0``. Then the input of one
subject is corrupted with each strong artifact of ``benchmarks/preprocess_robustness.py``
(Rician noise 8 %, bias field 0.4, blur 3 mm FWHM, motion 5 deg / 5 mm) and rated with the
clean image's ``p0`` as tissue masks (the segmentation is held fixed, so the change of the
rating is the artifact's alone; a preprocessed corrupted image would also change ``p0``). It
prints the measures, the marks, IQR (mark, percent, grade) and whether every artifact lowers
the grade (raises the IQR mark). With ``--figures DIR`` it also draws each subject's QC figure
(``DIR/<name>_qc.png``, as the preprocessing now writes it; the brain-mask outline is ``p0 > 0``
here because older runs did not save the mask).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import preprocess_robustness as robust  # noqa: E402

from vbmkit.preprocess.quality import rate_quality  # noqa: E402

ARTIFACTS = ("noise", "bias", "blur", "motion")


def _load(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(RAS data, voxel size) as the pipeline reads the image (so the rating is the report's)."""
    from vbmkit.io.nifti import load_volume

    vol = load_volume(path)
    return vol.data.numpy().astype(np.float32), tuple(float(v) for v in vol.grid.voxel_size)


def _row(name: str, r) -> dict:
    m = r.measures
    return {"name": name, "NCR": m["NCR"], "ICR": m["ICR"], "res_RMS": m["res_RMS"], "res_ECR": m["res_ECR"],
            **{f"mark_{k}": r.marks[k] for k in ("NCR", "ICR", "RES")}, "IQR": r.marks["IQR"],
            "percent": r.percent, "grade": r.grade}


def rate_subject(prep: Path, name: str):
    """(rating of the report or computed now, T1 array, p0 array, voxel size)."""
    report = json.loads((prep / name / "report" / f"{name}.json").read_text())
    t1, vx = _load(Path(report["input"]))
    p0, _ = _load(prep / name / "mri" / f"p0{name}.nii.gz")  # on the input's grid (both RAS here)
    return rate_quality(torch.from_numpy(t1), torch.from_numpy(p0), vx), t1, p0, vx


def draw_figure(prep: Path, name: str, rating, t1, p0, vx, folder: Path) -> None:
    """The subject's QC figure from its stored maps (RAS), as the preprocessing draws it."""
    from vbmkit.io.nifti import load_volume
    from vbmkit.io.templates import load_shooting_template
    from vbmkit.preprocess.quality import mark_to_grade
    from vbmkit.report.qc_figures import subject_qc_figure

    t1_ras = load_volume(Path(json.loads((prep / name / "report" / f"{name}.json").read_text())["input"]))
    p0_ras = load_volume(prep / name / "mri" / f"p0{name}.nii.gz")
    mwp1 = load_volume(prep / name / "mri" / f"mwp1{name}.nii.gz")
    tpl = load_shooting_template()
    m = rating.marks
    title = (f"{name}: IQR {rating.percent:.1f} % ({mark_to_grade(m['IQR'])}); marks NCR {m['NCR']:.2f}, "
             f"ICR {m['ICR']:.2f}, RES {m['RES']:.2f} (1 = A best, 6 = F)")
    subject_qc_figure(t1_ras.data.numpy(), p0_ras.data.numpy(), p0_ras.data.numpy() > 0, t1_ras.grid.voxel_size,
                      mwp1.data.numpy(), tpl.data[0].numpy(), tpl.grid.voxel_size, folder / f"{name}_qc.png",
                      title=title)


def _print(rows: list[dict]) -> None:
    head = f"{'image':<18} {'NCR':>6} {'ICR':>6} {'resRMS':>6} {'resECR':>6} | {'mNCR':>5} {'mICR':>5} {'mRES':>5} | {'IQR':>5} {'%':>5} grade"
    print(head)
    for r in rows:
        print(f"{r['name']:<18} {r['NCR']:>6.4f} {r['ICR']:>6.3f} {r['res_RMS']:>6.3f} {r['res_ECR']:>6.3f} | "
              f"{r['mark_NCR']:>5.2f} {r['mark_ICR']:>5.2f} {r['mark_RES']:>5.2f} | {r['IQR']:>5.2f} "
              f"{r['percent']:>5.1f} {r['grade']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prep", type=Path, nargs="?", default=REPO / "out" / "ds002748" / "preprocess")
    ap.add_argument("--artifact-subject", default="sub-01_T1w")
    ap.add_argument("--figures", type=Path, default=None, help="Also draw <name>_qc.png into this folder.")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()}")
    names = sorted(p.parent.parent.name for p in args.prep.glob("*/report/*.json")
                   if p.stem == p.parent.parent.name)
    rows, cache = [], {}
    for name in names:
        try:
            rating, t1, p0, vx = rate_subject(args.prep, name)
        except (OSError, KeyError, ValueError) as exc:
            print(f"{name}: not rated ({exc})")
            continue
        rows.append(_row(name, rating))
        if args.figures is not None:
            draw_figure(args.prep, name, rating, t1, p0, vx, args.figures)
        if name == args.artifact_subject:
            cache[name] = (rating, t1, p0, vx)
    print(f"{len(rows)} subjects rated")
    _print(rows)
    iqr = np.array([r["IQR"] for r in rows])
    if len(iqr):
        print(f"IQR mark: median {np.median(iqr):.2f} (range {iqr.min():.2f}-{iqr.max():.2f}); percent median "
              f"{105 - 10 * np.median(iqr):.1f}")
    if args.artifact_subject not in cache:
        print(f"{args.artifact_subject}: not among the rated subjects; no artifact test")
        return
    clean, t1, p0, vx = cache[args.artifact_subject]
    rng = np.random.default_rng(0)
    scale = float(np.percentile(t1[t1 > 0], 95))
    out = [_row(f"clean {args.artifact_subject[:7]}", clean)]
    lowered = {}
    for name in ARTIFACTS:
        level = robust.LEVELS[name][1]
        bad = robust.corrupt(t1.astype(np.float64), vx, name, level, rng, scale).astype(np.float32)
        r = rate_quality(torch.from_numpy(bad), torch.from_numpy(p0), vx)
        out.append(_row(f"{name} {level:g}", r))
        lowered[name] = r.marks["IQR"] > clean.marks["IQR"]
    print(f"\n{args.artifact_subject} with the strong artifacts of preprocess_robustness.py (clean p0 as masks):")
    _print(out)
    print("every strong artifact lowers the grade (raises the IQR mark): "
          f"{all(lowered.values())} ({', '.join(f'{k} {v}' for k, v in lowered.items())})")


if __name__ == "__main__":
    main()
