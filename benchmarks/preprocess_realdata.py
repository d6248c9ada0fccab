"""Registration and volume figures on the 20 real subjects of ds002748 (issue 3, "Must show" 3).

Targets: median warp MSE <= 0.0105 (deepmriprep 0.0099, CAT12 0.0092), no folded voxel in any
subject, linear elasticity printed (paper: ~250 / ~240), volume preservation within 2 % (sum of
mwp1 x voxel volume vs native GM) for every subject, every TIV in 1,100-2,000 mL.

Resumable: subjects already finished in ``--out`` are skipped, so it can run in pieces
(``--subjects sub-01,sub-02``) or in the background:

    nohup .venv/bin/python benchmarks/preprocess_realdata.py > out/realdata.log 2>&1 &

The table is printed from every report found in ``--out`` and written to ``OUT/realdata_figures.csv``.
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
           ("volume_preservation_gm", "{:.4f}"), ("total_s", "{:.1f}")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "prep_ds002748")
    ap.add_argument("--subjects", default="", help="comma-separated sub-XX to run now (default: all 20)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report-only", action="store_true", help="only print the table of finished subjects")
    args = ap.parse_args(argv)

    import pandas as pd

    from vbmkit.config import PreprocessConfig
    from vbmkit.io.bids import find_t1_inputs
    from vbmkit.io.records import read_json
    from vbmkit.workflows.preprocess import run_preprocess, volume_row

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

    rows = []
    for t in find_t1_inputs([args.data]):
        rep = read_json(args.out / t.name / "report" / f"{t.name}.json")
        if rep is not None:
            rows.append(volume_row(rep))
    if not rows:
        print("no finished subject yet")
        return 1
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "realdata_figures.csv", index=False)
    print("\n" + "  ".join(f"{c:>12}" for c, _ in COLUMNS))
    for _, r in table.iterrows():
        print("  ".join(f"{fmt.format(r[c]):>12}" for c, fmt in COLUMNS))

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
