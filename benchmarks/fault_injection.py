"""Issue 11, must-show 3: ``vbmkit run`` killed at random moments, then rerun, equals an
uninterrupted run, and no temporary file or folder remains.

A small synthetic study (maps only, no preprocessing, so that one run takes seconds): 24
subjects of smooth GM-like ``mwp1`` maps and their ``s6mwp1`` on a 3 mm grid, a two-region atlas,
QC, a GLM with 100 subsamples and 50 permutations, ROI volumes with statistics, and the report.

1. A reference run, uninterrupted, into ``ref/``; its wall time T.
2. For each trial: a fresh ``trial_k/``; ``vbmkit run`` started and killed (SIGKILL, or SIGTERM)
   after a uniform random delay in (0.5 s, T); then ``vbmkit run`` again to the end.
3. Every NIfTI image under the trial folder equals the reference's voxel by voxel (max |diff|
   printed), every CSV/TSV equals it cell by cell (timing columns excluded), the same files
   exist, and no ``.vbmkit-tmp-*`` entry, lock or ``*.partial`` remains anywhere under the
   sandbox (outside the study folder included).

Usage: ``python benchmarks/fault_injection.py [--kills 10] [--terms 5] [--seed 0] [--keep DIR]``.
Prints one line per trial and a summary; exit status 1 when any trial differs.
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

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (30, 36, 30)
N = 24
#: Columns that hold times or absolute paths and so differ between any two runs.
VOLATILE = {"seconds", "started", "finished"}

YAML = """\
schema_version: 1
name: faults
out: {out}
device: cpu
inputs:
  maps: [../maps]
  covariates: ../participants.tsv
qc:
  sd_threshold: 2.0
glm:
  maps: s6mwp1
  formula: age + C(sex)
  contrasts: {{age: age, sex: C(sex)}}
  subsamples: 100
  permutations: 50
  seed: 3
roi:
  atlas: ../atlas.nii.gz
  tissues: [gm]
"""


def make_inputs(root: Path, seed: int) -> None:
    """Maps, covariates and a two-region atlas for the study (written once)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [45.0, -63.0, -36.0]
    (root / "maps").mkdir(parents=True)
    age = rng.uniform(20, 80, N).round(1)
    brain = np.zeros(SHAPE, bool)
    brain[4:-4, 4:-4, 4:-4] = True
    for i in range(N):
        noise = gaussian_filter(rng.standard_normal(SHAPE), 2.0)
        gm = np.clip(0.5 + 0.2 * noise / noise.std() - 0.002 * (age[i] - 50) * brain, 0, 1) * brain
        name = f"sub-{i + 1:02d}"
        nib.save(nib.Nifti1Image(gm.astype(np.float32), affine), str(root / "maps" / f"mwp1{name}.nii.gz"))
        smooth = gaussian_filter(gm, 6.0 / 2.3548 / 3.0)
        nib.save(nib.Nifti1Image(smooth.astype(np.float32), affine), str(root / "maps" / f"s6mwp1{name}.nii.gz"))
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age,
                  "sex": np.tile(["f", "m"], N // 2)}).to_csv(root / "participants.tsv", sep="\t", index=False)
    labels = np.zeros(SHAPE, np.int16)
    labels[: SHAPE[0] // 2][brain[: SHAPE[0] // 2]] = 1
    labels[SHAPE[0] // 2:][brain[SHAPE[0] // 2:]] = 2
    nib.save(nib.Nifti1Image(labels, affine), str(root / "atlas.nii.gz"))
    (root / "atlas_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lH,left half,L\n2,rH,right half,R\n")


def _vbmkit() -> list[str]:
    exe = Path(sys.executable).parent / "vbmkit"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from vbmkit.cli.main import app; app()"]


def run_study(folder: Path, *, kill_after: float | None = None, sig: int = signal.SIGKILL) -> tuple[int, float]:
    """``vbmkit run`` in ``folder``; killed with ``sig`` after ``kill_after`` s when given."""
    folder.mkdir(exist_ok=True)
    yaml = folder / "study.yaml"
    if not yaml.is_file():
        yaml.write_text(YAML.format(out="out"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([*_vbmkit(), "run", str(yaml)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if kill_after is None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"vbmkit run failed in {folder}:\n{err}")
        return proc.returncode, time.perf_counter() - t0
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    proc.communicate()
    return proc.returncode, time.perf_counter() - t0


def _files(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}


def compare(ref: Path, trial: Path) -> tuple[float, list[str]]:
    """Max |difference| over every image, and the files that differ or exist on one side only."""
    a, b = _files(ref), _files(trial)
    problems = sorted(set(a) ^ set(b))
    worst = 0.0
    for rel in sorted(set(a) & set(b)):
        if rel.endswith((".nii", ".nii.gz")):
            x, y = np.asanyarray(nib.load(str(a[rel])).dataobj), np.asanyarray(nib.load(str(b[rel])).dataobj)
            if x.shape != y.shape:
                problems.append(rel)
                continue
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0)))
        elif rel.endswith((".csv", ".tsv")):
            sep = "\t" if rel.endswith(".tsv") else ","
            x, y = pd.read_csv(a[rel], sep=sep), pd.read_csv(b[rel], sep=sep)
            keep = [c for c in x.columns if c not in VOLATILE]
            if list(x.columns) != list(y.columns) or not x[keep].equals(y[keep]):
                problems.append(rel)
    return worst, problems


def leftovers(root: Path) -> list[str]:
    """Temporary entries, locks and old-style ``.partial`` folders anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".vbmkit-tmp-") or p.name == ".vbmkit.lock" or p.name.endswith(".partial"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="trials killed with SIGKILL")
    parser.add_argument("--terms", type=int, default=5, help="trials stopped with SIGTERM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    root = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="vbmkit-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    print(f"synthetic study: {N} subjects on {SHAPE} (3 mm), QC + GLM (100 subsamples, 50 permutations, 2 "
          f"contrasts) + ROI + report; work folder {'kept' if args.keep else 'temporary'}")
    make_inputs(root, args.seed)
    _, reference_s = run_study(root / "ref")
    print(f"reference run: {reference_s:.1f} s")
    failures = 0
    signals = [signal.SIGKILL] * args.kills + [signal.SIGTERM] * args.terms
    for k, sig in enumerate(signals, 1):
        folder = root / f"trial_{k:02d}"
        delay = float(rng.uniform(0.5, reference_s))
        code, _ = run_study(folder, kill_after=delay, sig=sig)
        stopped = "finished before the signal" if code == 0 else f"exit {code}"
        left_after_kill = leftovers(folder)
        run_study(folder)
        worst, problems = compare(root / "ref" / "out", folder / "out")
        left = leftovers(root)
        ok = worst == 0.0 and not problems and not left
        failures += not ok
        note = "" if sig == signal.SIGKILL else f", temporaries right after SIGTERM: {len(left_after_kill)}"
        print(f"trial {k:2d} {signal.Signals(sig).name:7s} at {delay:5.1f} s ({stopped}{note}): max |diff| {worst:g}, "
              f"differing files {len(problems)}{' ' + str(problems[:3]) if problems else ''}, "
              f"leftovers after rerun {len(left)}{' ' + str(left[:3]) if left else ''} -> {'OK' if ok else 'FAIL'}")
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(signals) - failures} of {len(signals)} trials equal the uninterrupted run with no leftovers")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
