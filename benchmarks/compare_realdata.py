"""vbmkit compare on real data: the 20 ds002748 subjects preprocessed twice, compared like CAT12 (issue 5, "Must show" 4).

No CAT12 outputs exist for these subjects, so the reference is a second preprocessing by vbmkit
with another setting: the segmentation grid at 1.5 mm instead of the default 1.0 mm
(``segmentation_resolution_mm``; everything after segmentation then differs too). Both output
folders use CAT12's naming (``<name>/mri/p0<name>.nii.gz`` ...), so the second one is given as
``--cat12``. The design: ``age + C(gender)``, contrasts ``age`` and ``neg_age``, 100 subsamples of
80 %, seed 0 (the paper's scheme). ROI volumes are measured on both sides with ``vbmkit roi``.

Resumable: subjects are preprocessed one by one with both settings, finished ones are skipped, and
``--compare-only`` compares the subjects finished on both sides so far (the GLM needs >= 7). ``--ours``
defaults to the output of ``benchmarks/preprocess_realdata.py --out out/prep_ds002748_v3``
(pipeline version 3), whose finished subjects are reused::

    nohup .venv/bin/python benchmarks/compare_realdata.py > compare_realdata.log 2>&1 &

Prints: subjects finished on each side, median Dice per tissue, r of mwp1/mwp2, ROI r, and
the r of the median t-maps per contrast.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ds002748"


def _median(values) -> str:
    vals = [v for v in values if v is not None]
    return f"{statistics.median(vals):.3f} (range {min(vals):.3f}-{max(vals):.3f}, n = {len(vals)})" if vals else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ours", type=Path, default=REPO / "out" / "prep_ds002748_v3",
                    help="first preprocessing (default settings)")
    ap.add_argument("--second", type=Path, default=REPO / "out" / "prep_ds002748_v3_seg15",
                    help="second preprocessing (segmentation_resolution_mm = 1.5)")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "compare_realdata_v3")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subsamples", type=int, default=100)
    ap.add_argument("--compare-only", action="store_true", help="skip preprocessing; compare what exists")
    ap.add_argument("--formula", default="age + C(gender)", help="model of the per-contrast comparison")
    args = ap.parse_args(argv)

    from vbmkit.config import GlmConfig, PreprocessConfig
    from vbmkit.io.bids import find_t1_inputs
    from vbmkit.workflows.compare import run_compare
    from vbmkit.workflows.preprocess import run_preprocess

    torch.set_num_threads(args.threads)
    inputs = find_t1_inputs([args.data])
    print(f"{len(inputs)} subjects; load average {os.getloadavg()}", flush=True)
    settings = {args.ours: PreprocessConfig(), args.second: PreprocessConfig(segmentation_resolution_mm=1.5)}
    if not args.compare_only:
        # subject by subject, both settings: a partial run still gives matched pairs to compare
        for t1 in inputs:
            for out, cfg in settings.items():
                t0 = time.perf_counter()
                summary = run_preprocess([t1.path], out, cfg, device=args.device, progress=False)
                state = "done" if summary.done else "skipped" if summary.skipped else f"FAILED {summary.failed}"
                print(f"{t1.name} -> {out}: {state} in {time.perf_counter() - t0:.0f} s; "
                      f"load average {os.getloadavg()}", flush=True)

    t0 = time.perf_counter()
    m = run_compare(args.ours, cat12=args.second, out=args.out, covariates=args.data / "participants.tsv",
                    id_column="participant_id",
                    glm=GlmConfig(formula=args.formula, contrasts={"age": "age", "neg_age": "-age"},
                                  subsamples=args.subsamples, fraction=0.8, seed=0),
                    device=args.device)
    print(f"\ncompare: {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}")
    print(f"matched subjects: {len(m['matched'])}; unmatched {m['unmatched']}")
    subjects = m["subjects"].values()
    for key in ("dice_gm", "dice_wm", "dice_csf", "prob_dice_gm", "r_mwp1", "r_mwp2"):
        print(f"median {key}: {_median([s.get(key) for s in subjects])}")
    for key in ("tiv", "gm", "wm"):
        diffs = [s[f"{key}_ours_ml"] - s[f"{key}_cat12_ml"] for s in subjects
                 if s.get(f"{key}_ours_ml") is not None and s.get(f"{key}_cat12_ml") is not None]
        if diffs:
            print(f"{key} difference (1.0 mm - 1.5 mm segmentation): mean {statistics.mean(diffs):.1f} mL")
    for tissue in ("gm", "wm"):
        rs = [d[tissue]["r"] for d in m["roi"].values() if tissue in d]
        if rs:
            print(f"ROI {tissue} r: median {statistics.median(rs):.3f}; regions with r > 0.9: "
                  f"{sum(r > 0.9 for r in rs if r is not None)} of {len(rs)}")
    for name, c in m["contrasts"].items():
        print(f"contrast {name}: r(median t) {c.get('r_median_t')}, max|t| {c.get('max_abs_t_ours')} vs "
              f"{c.get('max_abs_t_cat12')}, Dice(t > {c.get('threshold_ours')}) {c.get('dice_suprathreshold')}, "
              f"same draws {c.get('same_draws')}, N {c.get('n_subjects')}")
    for msg in m["missing"]:
        print(f"missing: {msg}")
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
