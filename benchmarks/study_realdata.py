"""Must-show 3: the real study ``vbmkit run examples/ds002748.yaml`` (20 subjects), timed, with a
headless-Chromium screenshot of its report committed as ``docs/study_report.png``.

Prints the wall time, the load average, the stage statuses and seconds from provenance.json,
the QC flags, and per contrast the maximum full-sample t, the maximum median t, the number of
clusters and the LPBA40 region of the largest cluster. Needs ``../shared/data/ds002748``.

Usage: ``python benchmarks/study_realdata.py [--out DIR] [--no-screenshot]``

On a shared 2-core machine preprocessing the 20 subjects takes ~2-3 CPU minutes each. Options
to finish in time, all through vbmkit's own resumability (a subject whose outputs and report
exist for the same settings is skipped by ``vbmkit run``):

- ``--reuse DIR``: hard-link subjects that another ``vbmkit preprocess`` run with the same
  settings has finished (e.g. ``benchmarks/preprocess_realdata.py --out DIR``) into the study's
  ``preprocess/`` before running, and keep doing so while preprocessing;
- ``--reverse``: preprocess the subjects one by one from the last, so that a concurrent forward
  run in ``--reuse DIR`` and this one meet in the middle;
- ``--deadline HH:MM`` (UTC): stop preprocessing at that time and run the study on the subjects
  finished by then (said plainly in the output: "N of 20 subjects").
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
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "vbmkit"]


def pd_read(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.is_file() else None


def _out_dir(args) -> Path:
    if args.out is not None:
        return args.out.resolve()
    import yaml

    return (YAML.parent / yaml.safe_load(YAML.read_text())["out"]).resolve()


def _finished(folder: Path) -> set[str]:
    return {p.parent.parent.name for p in folder.glob("*/report/*.json")}


def _link_from(reuse: Path | None, prep: Path) -> list[str]:
    """Hard-link subjects finished in ``reuse`` (same settings: checked by vbmkit) into ``prep``."""
    import shutil

    if reuse is None or not reuse.is_dir():
        return []
    linked = []
    for name in sorted(_finished(reuse) - _finished(prep)):
        src, dst = reuse / name, prep / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, copy_function=os.link)
        linked.append(name)
    return linked


def _prefetch(args) -> Path:
    """Preprocess (or link) subjects before the study; return the YAML to run."""
    import datetime as dt

    from vbmkit.io.bids import find_t1_inputs

    out = _out_dir(args)
    prep = out / "preprocess"
    prep.mkdir(parents=True, exist_ok=True)
    subjects = find_t1_inputs([str(DATA)])
    order = list(reversed(subjects)) if args.reverse else subjects
    deadline = None
    if args.deadline:
        h, m = (int(v) for v in args.deadline.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=h, minute=m, second=0, microsecond=0)
    for t1 in order:
        linked = _link_from(args.reuse, prep)
        if linked:
            print(f"linked from {args.reuse}: {linked}", flush=True)
        if t1.name in _finished(prep):
            continue
        if deadline is not None and dt.datetime.now(dt.timezone.utc) >= deadline:
            print(f"deadline {args.deadline} UTC reached", flush=True)
            break
        t = time.perf_counter()
        subprocess.run(_vbmkit() + ["preprocess", str(t1.path), "--out", str(prep), "--device", "cpu"],
                       capture_output=True, text=True)
        print(f"preprocessed {t1.name} in {time.perf_counter() - t:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    _link_from(args.reuse, prep)
    done = _finished(prep)
    print(f"{len(done)} of {len(subjects)} subjects preprocessed before the study", flush=True)
    if len(done) == len(subjects):
        return YAML
    # Run the same study on the finished subjects only: a copy of the YAML listing their files.
    import yaml

    data = yaml.safe_load(YAML.read_text())
    data["inputs"]["t1"] = [str(t.path) for t in subjects if t.name in done]
    data["inputs"]["covariates"] = str((YAML.parent / data["inputs"]["covariates"]).resolve())
    data["out"] = str(out)
    partial = out.parent / f"{out.name}_available.yaml"
    partial.write_text(f"# {YAML.name} restricted to the {len(done)} of {len(subjects)} subjects preprocessed "
                       "in time\n" + yaml.safe_dump(data, sort_keys=False))
    print(f"NOTE: running the study on {len(done)} of {len(subjects)} subjects ({partial})", flush=True)
    return partial


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Output folder (default: the YAML's out).")
    ap.add_argument("--no-screenshot", action="store_true")
    ap.add_argument("--reuse", type=Path, default=None, help="Finished preprocess outputs to link in.")
    ap.add_argument("--reverse", action="store_true", help="Preprocess one by one from the last subject.")
    ap.add_argument("--deadline", default=None, help="UTC HH:MM: then run the study on the finished subjects.")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"SKIP: {DATA} is absent (realdata)")
        return 0
    t_start = time.perf_counter()
    yaml_path = YAML
    if args.reuse is not None or args.reverse or args.deadline:
        yaml_path = _prefetch(args)
    cmd = _vbmkit() + ["run", str(yaml_path)] + (["--out", str(args.out)] if args.out else [])
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    lines = proc.stdout.splitlines()
    print("\n".join(ln for ln in lines if ln.startswith(("[", "report", "Error")))[-6000:])
    print(f"load average after: {os.getloadavg()}")
    print(f"wall time of `vbmkit run {yaml_path.name}`: {wall:.0f} s ({wall / 60:.1f} min); exit {proc.returncode}; "
          f"with the preprocessing before it: {(time.perf_counter() - t_start) / 60:.1f} min")
    if proc.returncode != 0:
        print(proc.stdout[-3000:])
        return 1
    report = next(ln.split("report: ", 1)[1] for ln in lines if ln.startswith("report: "))
    out = Path(report).parent
    prov = json.loads((out / "provenance.json").read_text())
    vols = pd_read(out / "preprocess" / "volumes.csv")
    if vols is not None:
        print(f"preprocessing: {len(vols)} of 20 subjects; per-subject total_s median "
              f"{vols['total_s'].median():.0f} s (as measured when each was preprocessed, any run)")
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
                 f"{top['lpba40_region'].fillna('no LPBA40 region').iloc[0]}") if len(top) else "no cluster"
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
