"""Registration and volume figures on the 20 real subjects of ds002748 (issues 3 and 13).

Issue 3: median warp MSE <= 0.0105, no folded voxel, linear elasticity printed, volume
preservation within 2 %, every TIV in 1,100-2,000 mL. Issue 13 (pipeline version 5: variational
registration, push modulation): median torchreg linear elasticity <= 300 with median warp MSE
<= 0.0099; no folded voxel; inside the template brain (GM + WM > 0.5) the nonlinear Jacobian
determinant divided by its median has 0.5 / 99.5 percentiles within [0.4, 2.5], min >= 0.1 and
max <= 5 for every subject; bending energy of the non-affine displacement (mm^-2) printed, and
compared with ``--before`` when that run recorded it; |sum(mwp1) x voxel volume / native GM - 1|
<= 0.1 % for every subject.

Resumable: subjects already finished in ``--out`` are skipped, so it can run in pieces
(``--subjects sub-01,sub-02``) or in the background:

    nohup .venv/bin/python benchmarks/preprocess_realdata.py > out/realdata.log 2>&1 &

``--out`` may also be a study's ``preprocess`` folder (``--report-only --out out/ds002748/preprocess``).
``--before DIR``: another such folder (e.g. a copy of an older pipeline version's outputs) whose
medians are printed beside this one's. The table is printed from every report found in ``--out``
and written to ``OUT/realdata_figures.csv``.
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

COLUMNS = [("name", "{}"), ("tiv_ml", "{:.0f}"), ("gm_ml", "{:.0f}"), ("wm_ml", "{:.0f}"), ("csf_ml", "{:.0f}"),
           ("affine_loss", "{:.4f}"), ("warp_mse", "{:.4f}"), ("linear_elasticity", "{:.1f}"),
           ("jacobian_min", "{:.3f}"), ("jacobian_max", "{:.2f}"), ("folded_voxels", "{}"),
           ("brain_jacobian_p0.5_rel", "{:.3f}"), ("brain_jacobian_p99.5_rel", "{:.3f}"),
           ("bending_energy", "{:.4f}"), ("volume_preservation_gm", "{:.5f}"), ("total_s", "{:.1f}")]


def _table(out: Path, data: Path):
    """One ``volumes.csv``-style row per finished subject report in ``out`` (None: none yet)."""
    import pandas as pd

    from vbmkit.io.bids import find_t1_inputs
    from vbmkit.io.records import read_json
    from vbmkit.workflows.preprocess import volume_row

    rows = []
    for t in find_t1_inputs([data]):
        rep = read_json(out / t.name / "report" / f"{t.name}.json")
        if rep is not None:
            rows.append(volume_row(rep))
    return pd.DataFrame(rows) if rows else None


def _median(table, column: str) -> float | None:
    if table is None or column not in table or table[column].isna().all():
        return None
    return float(statistics.median(table[column].dropna()))


def _issue13(table, before) -> None:
    """Issue 13's registration and volume targets, with ``before``'s medians where given."""
    print("\nissue 13 (this run" + (", before" if before is not None else "") + "):")
    for column, fmt in (("linear_elasticity", "{:.1f}"), ("warp_mse", "{:.5f}"), ("bending_energy", "{:.5f}"),
                        ("elastic_energy", "{:.5f}")):
        now, old = _median(table, column), _median(before, column)
        text = "-" if now is None else fmt.format(now)
        if before is not None:
            text += " (before " + ("not recorded" if old is None else fmt.format(old)) + ")"
        print(f"  median {column}: {text}")
    le, mse = _median(table, "linear_elasticity"), _median(table, "warp_mse")
    print(f"  median LE <= 300 with median warp MSE <= 0.0099: {'PASS' if le <= 300 and mse <= 0.0099 else 'FAIL'}"
          f" (stretch LE <= 240, MSE <= 0.0092: {'PASS' if le <= 240 and mse <= 0.0092 else 'not met'})")
    if "brain_jacobian_median" in table and not table["brain_jacobian_median"].isna().any():
        med = table["brain_jacobian_median"]
        lo, hi = table["brain_jacobian_p0.5_rel"], table["brain_jacobian_p99.5_rel"]
        jmin, jmax = table["brain_jacobian_min"] / med, table["brain_jacobian_max"] / med
        ok = bool(((lo >= 0.4) & (hi <= 2.5) & (jmin >= 0.1) & (jmax <= 5)).all())
        print(f"  template brain, Jacobian / median: p0.5 {lo.min():.3f}-{lo.max():.3f}, p99.5 {hi.min():.3f}-"
              f"{hi.max():.3f}, min {jmin.min():.3f}, max {jmax.max():.2f} (targets [0.4, 2.5], >= 0.1, <= 5 "
              f"for every subject): {'PASS' if ok else 'FAIL'}; folded voxels in the brain "
              f"{int(table['brain_folded_voxels'].sum())}")
    else:
        print("  template-brain Jacobian figures: not recorded by this pipeline version")
    bend, bend_old = _median(table, "bending_energy"), _median(before, "bending_energy")
    if bend is not None and bend_old is not None:
        print(f"  bending energy ratio now / before {bend / bend_old:.2f} (target <= 0.5): "
              f"{'PASS' if bend <= 0.5 * bend_old else 'FAIL'}")
    pres = 100 * (table["volume_preservation_gm"] - 1).abs()
    text = f"  volume |sum(mwp1) / native GM - 1|: max {pres.max():.3f} % (target <= 0.1 % for every subject): " \
           f"{'PASS' if bool((pres <= 0.1).all()) else 'FAIL'}"
    if before is not None:
        text += f"; before max {100 * (before['volume_preservation_gm'] - 1).abs().max():.3f} %"
    print(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "prep_ds002748")
    ap.add_argument("--subjects", default="", help="comma-separated sub-XX to run now (default: all 20)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report-only", action="store_true", help="only print the table of finished subjects")
    ap.add_argument("--before", type=Path, default=None, help="an earlier run's output folder to compare with")
    args = ap.parse_args(argv)

    import pandas as pd

    from vbmkit.config import PreprocessConfig
    from vbmkit.io.bids import find_t1_inputs
    from vbmkit.workflows.preprocess import run_preprocess

    torch.set_num_threads(args.threads)
    inputs = find_t1_inputs([args.data])
    if args.subjects:
        wanted = {s.strip() for s in args.subjects.split(",") if s.strip()}
        inputs = [t for t in inputs if t.name.split("_")[0] in wanted]
    print(f"{len(inputs)} subjects, out {args.out}, load average {os.getloadavg()}", flush=True)
    if not args.report_only:
        t0 = time.perf_counter()
        summary = run_preprocess([t.path for t in inputs], args.out, PreprocessConfig(jobs=args.jobs),
                                 device=args.device, progress=lambda m: print(m, flush=True))
        print(f"done {len(summary.done)}, skipped {len(summary.skipped)}, failed {len(summary.failed)} "
              f"in {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}", flush=True)
        for name, reason in summary.failed.items():
            print(f"FAILED {name}: {reason}")

    table = _table(args.out, args.data)
    if table is None:
        print("no finished subject yet")
        return 1
    table.to_csv(args.out / "realdata_figures.csv", index=False)
    print("\n" + "  ".join(f"{c:>12.12}" for c, _ in COLUMNS))
    for _, r in table.iterrows():
        print("  ".join(f"{fmt.format(r[c]) if c in r and pd.notna(r[c]) else '-':>12}" for c, fmt in COLUMNS))

    n = len(table)
    med_mse = statistics.median(table["warp_mse"])
    folded = int((table["folded_voxels"] > 0).sum())
    pres = (table["volume_preservation_gm"] - 1).abs()
    tiv_ok = table["tiv_ml"].between(1100, 2000)
    print(f"\nsubjects finished: {n} of 20")
    print(f"median warp MSE {med_mse:.4f} (target <= 0.0105; range {table['warp_mse'].min():.4f}-"
          f"{table['warp_mse'].max():.4f}): {'PASS' if med_mse <= 0.0105 else 'FAIL'}")
    print(f"subjects with folded voxels: {folded} (max {int(table['folded_voxels'].max())} voxels; "
          f"min Jacobian {table['jacobian_min'].min():.3f}): {'PASS' if folded == 0 else 'FAIL'}")
    print(f"linear elasticity median {statistics.median(table['linear_elasticity']):.1f} "
          f"(range {table['linear_elasticity'].min():.1f}-{table['linear_elasticity'].max():.1f}; paper ~250)")
    print(f"volume preservation |mwp1/native GM - 1|: max {100 * pres.max():.2f} % (target < 2 %): "
          f"{'PASS' if bool((pres < 0.02).all()) else 'FAIL'}")
    print(f"TIV {table['tiv_ml'].min():.0f}-{table['tiv_ml'].max():.0f} mL (target 1100-2000): "
          f"{'PASS' if bool(tiv_ok.all()) else 'FAIL'}")
    print(f"time per subject: median {statistics.median(table['total_s']):.1f} s")
    _issue13(table, None if args.before is None else
             _table(args.before, args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
