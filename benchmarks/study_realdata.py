"""Must-show 3: the real study ``vbmkit run examples/ds002748.yaml`` (20 subjects), timed, with a
headless-Chromium screenshot of its report committed as ``docs/study_report.png``.

Prints the wall time, the load average, the stage statuses and seconds from provenance.json,
the QC flags, and per contrast the maximum full-sample t, the maximum median t, the number of
clusters and the LPBA40 region of the largest cluster. Needs ``../shared/data/ds002748``.

Usage: ``python benchmarks/study_realdata.py [--out DIR] [--no-screenshot]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "examples" / "ds002748.yaml"
DATA = REPO.parent / "shared" / "data" / "ds002748"


def _vbmkit() -> list[str]:
    exe = Path(sys.executable).parent / "vbmkit"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vbmkit.cli.main"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Output folder (default: the YAML's out).")
    ap.add_argument("--no-screenshot", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"SKIP: {DATA} is absent (realdata)")
        return 0
    cmd = _vbmkit() + ["run", str(YAML)] + (["--out", str(args.out)] if args.out else [])
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    lines = proc.stdout.splitlines()
    print("\n".join(ln for ln in lines if ln.startswith(("[", "report", "Error")))[-6000:])
    print(f"load average after: {os.getloadavg()}")
    print(f"wall time of `vbmkit run examples/ds002748.yaml`: {wall:.0f} s ({wall / 60:.1f} min); exit {proc.returncode}")
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
        return 1
    report = next(ln.split("report: ", 1)[1] for ln in lines if ln.startswith("report: "))
    out = Path(report).parent
    prov = json.loads((out / "provenance.json").read_text())
    for stage, info in prov["stages"].items():
        print(f"  stage {stage}: {info.get('status')} ({info.get('seconds', 0) or 0:.0f} s)")
    qc = json.loads((out / "qc" / "qc.json").read_text())
    print(f"QC: {qc['n_subjects']} subjects, mean r {qc['mean_of_mean_correlation']:.3f}, "
          f"threshold {qc['threshold']:.3f}, flagged {qc['flagged']}")
    glm = json.loads((out / "glm" / "summary.json").read_text())
    print(f"GLM: N = {glm['n_subjects']}, {glm['n_voxels']} voxels, formula {glm['formula']}")
    import nibabel as nib
    import numpy as np
    import pandas as pd

    for name, c in glm["contrasts"].items():
        med = out / "glm" / c["files"].get("median", "")
        max_med = float(np.asarray(nib.load(med).dataobj).max()) if med.is_file() else float("nan")
        clusters = pd.read_csv(out / "glm" / c["files"]["clusters"])
        top = clusters.sort_values("size_voxels", ascending=False).head(1)
        where = (f"largest cluster {int(top['size_voxels'].iloc[0])} voxels, peak in "
                 f"{top['lpba40_region'].iloc[0]}") if len(top) else "no cluster"
        print(f"  {name}: max t {c['max_statistic']:.2f}, max median t {max_med:.2f}, "
              f"{c['n_clusters']} clusters above {c['threshold']:.2f}; {where}")
    if not args.no_screenshot:
        png = REPO / "docs" / "study_report.png"
        shot = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshot.py"), str(out / "report.html"),
                               str(png), "--width", "1400", "--height", "4000"], capture_output=True, text=True)
        print(shot.stdout.strip() or shot.stderr.strip()[-500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
