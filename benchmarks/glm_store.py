"""The GLM from an on-disk subject x voxel store: write time, GLM wall time and peak memory.

Simulates N subjects x V voxels (float32; default N = 12,000 x V = 500,000 = 24 GB, more than
the development machine's 23 GB of RAM) on CAT12's 1.5 mm grid (the V voxels nearest the grid
centre), with an age effect planted in 1 % of the voxels, writes them as a store
(:func:`vbmkit.io.store.write_store_rows`), then runs ``vbmkit glm --store`` with ``age + C(sex)``
and K subsamples. Each phase runs in its own process so that its peak RSS is its own.

    python benchmarks/glm_store.py                          # the full size (long on 2 cores)
    python benchmarks/glm_store.py --n 2000 --v 100000      # a quick check

Prints one line per phase and a JSON summary (``--json`` writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def _ages(n: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(20, 80, n)


def write_phase(args: argparse.Namespace) -> dict:
    from vbmkit.io.store import write_store_rows
    from vbmkit.io.templates import output_grid

    grid, stored = output_grid()
    centre = (np.array(grid.shape) - 1) / 2
    idx = np.indices(grid.shape).reshape(3, -1).T
    dist = (((idx - centre) / np.array(grid.shape)) ** 2).sum(1)
    if args.v > dist.size:
        raise SystemExit(f"--v: expected at most {dist.size} voxels (the grid); got {args.v}")
    flat = np.zeros(dist.size, dtype=bool)
    flat[np.argsort(dist, kind="stable")[:args.v]] = True
    ages = _ages(args.n)
    effect = np.zeros(args.v, dtype=np.float32)
    effect[: max(1, args.v // 100)] = 0.002  # per year
    rng = np.random.default_rng(0)

    def rows():
        for start in range(0, args.n, args.subject_chunk):
            a = ages[start:start + args.subject_chunk].astype(np.float32)
            block = rng.standard_normal((len(a), args.v), dtype=np.float32)
            block *= 0.05
            block += 0.4
            block += (a[:, None] - 50) * effect[None]
            yield block

    t = time.perf_counter()
    write_store_rows(rows(), args.store, subjects=[f"sub-{i:05d}" for i in range(args.n)], grid=grid,
                     mask=flat.reshape(grid.shape), stored_affine=stored, subject_chunk=args.subject_chunk, voxel_chunk=args.voxel_chunk)
    seconds = time.perf_counter() - t
    size = sum(p.stat().st_size for p in Path(args.store).rglob("*") if p.is_file())
    return {"write_s": round(seconds, 1), "store_gb": round(size / 1e9, 2), "write_peak_rss_gb": round(_peak_rss_gb(), 2)}


def glm_phase(args: argparse.Namespace) -> dict:
    import pandas as pd
    import torch

    from vbmkit.config import GlmConfig
    from vbmkit.workflows.glm import run_glm

    torch.set_num_threads(args.threads)
    table = pd.DataFrame({"participant_id": [f"sub-{i:05d}" for i in range(args.n)], "age": _ages(args.n),
                          "sex": np.where(np.arange(args.n) % 2, "m", "f")})
    settings = GlmConfig(formula="age + C(sex)", contrasts={"age": "age"}, subsamples=args.subsamples,
                         memory_gb=args.memory_gb, mask_threshold=0.1, device="cpu")
    t = time.perf_counter()
    summary = run_glm([], table, id_column="participant_id", settings=settings, out=args.glm_out, progress=False,
                      store=args.store)
    seconds = time.perf_counter() - t
    stages = summary["stage_seconds"]
    return {"glm_s": round(seconds, 1), "glm_read_and_fit_s": stages["read_and_fit"],
            "glm_write_s": stages["write"], "store_blocks": summary["store_blocks"],
            "voxel_blocks_per_s": round(summary["store_blocks"] / stages["read_and_fit"], 3),
            "n_voxels_fitted": summary["n_voxels"], "max_t": round(summary["contrasts"]["age"]["max_statistic"], 2),
            "glm_peak_rss_gb": round(_peak_rss_gb(), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=12000, help="subjects")
    ap.add_argument("--v", type=int, default=500000, help="voxels")
    ap.add_argument("--subsamples", type=int, default=100)
    ap.add_argument("--memory-gb", type=float, default=1.0, help="block budget of the GLM (glm.memory_gb)")
    ap.add_argument("--subject-chunk", type=int, default=256)
    ap.add_argument("--voxel-chunk", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the store and the GLM outputs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--phase", choices=["write", "glm"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--glm-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase is not None:  # a child process: one phase, its figures as JSON on stdout
        print(json.dumps(write_phase(args) if args.phase == "write" else glm_phase(args)))
        return
    work = Path(tempfile.mkdtemp(prefix="vbmkit-glm-store-", dir=args.workdir))
    store, out = work / "store", work / "glm"
    common = [sys.executable, __file__, "--n", str(args.n), "--v", str(args.v), "--store", str(store),
              "--subject-chunk", str(args.subject_chunk), "--voxel-chunk", str(args.voxel_chunk)]
    result = {"n": args.n, "v": args.v, "subsamples": args.subsamples, "data_gb": round(args.n * args.v * 4 / 1e9, 2),
              "memory_gb": args.memory_gb, "threads": args.threads}
    try:
        for phase, extra in (("write", []), ("glm", ["--subsamples", str(args.subsamples), "--memory-gb",
                                                     str(args.memory_gb), "--threads", str(args.threads),
                                                     "--glm-out", str(out)])):
            proc = subprocess.run([*common, "--phase", phase, *extra], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{phase} phase failed:\n{proc.stderr[-3000:]}")
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{phase}: {figures}", flush=True)
            result.update(figures)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
