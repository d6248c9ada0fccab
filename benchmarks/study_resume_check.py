"""Must-show 2: kill ``vbmkit run`` mid-preprocessing, rerun, compare with an uninterrupted run.

1. ``vbmkit simulate --n 4`` (T1 images) and a study YAML that preprocesses them, checks
   homogeneity and fits ``age``.
2. Run A: start ``vbmkit run``, wait until the first subject's preprocessing report exists but
   not all, then SIGKILL the whole process group (a crash, no clean-up).
3. Run A again: it must finish, redo only the unfinished subjects (finished subjects' files
   keep their modification times) and report "N done, M already done".
4. Run B: the same study uninterrupted into another folder.
5. Every NIfTI of A's ``preprocess/`` and ``glm/`` equals B's (max |difference| printed), and
   ``qc/qc.csv`` holds the same numbers.

Usage: ``python benchmarks/study_resume_check.py [--n 4] [--keep DIR]``;
``--keep DIR --compare-only`` repeats step 5 on the folders of an earlier run (e.g. when run B
was started by hand beside run A to save time: ``vbmkit run DIR/b.yaml``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

YAML = """\
name: resume
out: {out}
inputs:
  t1: [cohort]
  covariates: cohort/participants.tsv
preprocess:
  fwhm: [6]
  segmentation_resolution_mm: 2.0   # coarse: this checks resumption, not accuracy (CPU time)
qc:
  sd_threshold: 2.0
glm:
  formula: age
  contrasts:
    age_neg: -age
  subsamples: 0
"""


def _vbmkit() -> list[str]:
    exe = Path(sys.executable).parent / "vbmkit"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vbmkit"]


def _reports(out: Path) -> list[Path]:
    return sorted((out / "preprocess").glob("*/report/*.json"))


def _mtimes(out: Path, names: list[str]) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for n in names for p in (out / "preprocess" / n).rglob("*") if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--compare-only", action="store_true", help="Only compare DIR/out_a with DIR/out_b.")
    args = ap.parse_args()
    if args.compare_only:
        return 0 if compare(args.keep / "out_a", args.keep / "out_b") else 1
    root = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="vbmkit_resume_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"folder: {root}; load average {os.getloadavg()}")
    subprocess.run(_vbmkit() + ["simulate", "--n", str(args.n), "--out", str(root / "cohort"), "--seed", "11"],
                   check=True, capture_output=True)
    for name in ("a", "b"):
        (root / f"{name}.yaml").write_text(YAML.format(out=f"out_{name}"))

    # Run A, killed mid-preprocessing.
    t0 = time.perf_counter()
    proc = subprocess.Popen(_vbmkit() + ["run", str(root / "a.yaml")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out_a = root / "out_a"
    while proc.poll() is None and len(_reports(out_a)) < 1:
        time.sleep(1.0)
    if proc.poll() is not None:
        print("FAIL: the run finished before it could be interrupted")
        return 1
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.parent.parent.name for p in _reports(out_a))
    print(f"killed run A after {time.perf_counter() - t0:.0f} s with {len(finished)} of {args.n} subjects "
          f"preprocessed: {finished}; partial files left: "
          f"{sorted(p.name for p in out_a.rglob('.*') if p.is_file())}")
    before = _mtimes(out_a, finished)

    t1 = time.perf_counter()
    rerun = subprocess.run(_vbmkit() + ["run", str(root / "a.yaml")], capture_output=True, text=True)
    print(f"rerun of A: exit {rerun.returncode} in {time.perf_counter() - t1:.0f} s")
    print("\n".join(ln for ln in rerun.stdout.splitlines() if ln.startswith("[")))
    if rerun.returncode != 0:
        print(rerun.stderr[-2000:])
        return 1
    after = _mtimes(out_a, finished)
    untouched = all(after.get(k) == v for k, v in before.items())
    print(f"files of the {len(finished)} subjects finished before the kill untouched by the rerun: {untouched}")

    t2 = time.perf_counter()
    full = subprocess.run(_vbmkit() + ["run", str(root / "b.yaml")], capture_output=True, text=True)
    print(f"uninterrupted run B: exit {full.returncode} in {time.perf_counter() - t2:.0f} s")
    if full.returncode != 0:
        print(full.stderr[-2000:])
        return 1

    same = compare(out_a, root / "out_b")
    ok = untouched and same and len(finished) < args.n
    print("MUST-SHOW 2:", "PASS" if ok else "FAIL")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def compare(out_a: Path, out_b: Path) -> bool:
    """Every NIfTI of A's preprocess/ and glm/ equals B's; qc.csv numbers equal. Prints the figures."""
    import nibabel as nib
    import pandas as pd

    worst, n_files, missing = 0.0, 0, []
    for fa in sorted(list((out_a / "preprocess").rglob("*.nii.gz")) + list((out_a / "glm").rglob("*.nii.gz"))):
        fb = out_b / fa.relative_to(out_a)
        if not fb.is_file():
            missing.append(str(fb))
            continue
        a = np.asarray(nib.load(fa).dataobj, dtype=np.float64)
        b = np.asarray(nib.load(fb).dataobj, dtype=np.float64)
        worst = max(worst, float(np.abs(a - b).max()) if a.shape == b.shape else float("inf"))
        n_files += 1
    skip = ["path", "input", "total_s"]  # file locations and run times differ by design
    qa = pd.read_csv(out_a / "qc" / "qc.csv").drop(columns=skip, errors="ignore")
    qb = pd.read_csv(out_b / "qc" / "qc.csv").drop(columns=skip, errors="ignore")
    qc_same = np.allclose(qa.select_dtypes("number"), qb.select_dtypes("number"), equal_nan=True)
    print(f"compared {n_files} NIfTI files (preprocess/ and glm/): max |A - B| = {worst:.3g}; "
          f"missing in B: {missing}; qc.csv numbers equal: {qc_same}")
    return not missing and worst <= 1e-5 and qc_same and n_files > 0


if __name__ == "__main__":
    sys.exit(main())
