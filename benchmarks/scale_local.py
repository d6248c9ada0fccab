"""Local scaling of the Dask execution path: subjects per hour and GLM voxel blocks per second
with 1 and 2 workers.

* Preprocessing: simulated small T1 images (template-derived phantoms on a 3 mm grid, the
  fast settings of ``tests/distributed/test_real_pipeline.py``: 2 mm segmentation, one coarse
  registration level), NOT real 1 mm T1s, which take about 48 s each on two cores (README).
  1 worker = in process with one torch thread; 2 workers = a ``LocalCluster`` of 2 processes
  with one thread each (``vbmkit preprocess --jobs 2``).
* GLM: a synthetic store (N x V float32), the ``age + C(sex)`` model with K subsamples; each
  voxel block (``--block`` voxels, all N subjects) is one Dask task
  (:func:`vbmkit.workflows.glm.store.fit_store_range`) on a ``LocalCluster`` of 1 or 2 workers.

    python benchmarks/scale_local.py                       # both parts
    python benchmarks/scale_local.py --skip-preprocess     # the GLM part only
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' phantom maker


def preprocess_rates(n_subjects: int, work: Path) -> dict:
    from tests.distributed.test_real_pipeline import FAST, make_phantom
    from vbmkit.workflows.compute import ComputeTarget
    from vbmkit.workflows.preprocess import run_preprocess

    inputs = work / "t1"
    inputs.mkdir()
    for i in range(n_subjects):
        make_phantom(inputs / f"sub-{i:02d}.nii.gz", seed=i)
    rates = {}
    for workers in (1, 2):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        t = time.perf_counter()
        try:
            summary = run_preprocess([inputs], work / f"prep{workers}", FAST, device="cpu", progress=False,
                                     compute=ComputeTarget(jobs=workers))
        finally:
            torch.set_num_threads(threads)
        seconds = time.perf_counter() - t
        if not summary.ok:
            raise SystemExit(f"preprocessing failed: {summary.failed}")
        rates[workers] = {"seconds": round(seconds, 1), "subjects_per_hour": round(n_subjects / seconds * 3600, 1)}
        print(f"preprocess, {workers} worker(s): {n_subjects} phantoms in {seconds:.1f} s = "
              f"{rates[workers]['subjects_per_hour']:.0f} subjects/hour", flush=True)
    return rates


def glm_rates(n: int, v: int, k: int, block: int, work: Path) -> dict:
    from distributed import Client, LocalCluster

    from vbmkit.config import GlmConfig
    from vbmkit.formula.design import build_design, parse_contrasts
    from vbmkit.io.store import open_store, write_store_rows
    from vbmkit.space import Grid
    from vbmkit.stats.subsample import draw_subsamples
    from vbmkit.workflows.glm.store import fit_store_range

    shape = (100, 100, -(-v // 10000))
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    mask[:v] = True
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 80, n)
    rows = (0.4 + 0.05 * rng.standard_normal((min(256, n - s), v), dtype=np.float32) for s in range(0, n, 256))
    path = write_store_rows(rows, work / "store", subjects=[f"sub-{i:05d}" for i in range(n)],
                            grid=Grid(shape, np.eye(4)), mask=mask.reshape(shape), subject_chunk=256,
                            voxel_chunk=block)
    import pandas as pd

    table = pd.DataFrame({"participant_id": open_store(path).subjects, "age": ages,
                          "sex": np.where(np.arange(n) % 2, "m", "f")})
    settings = GlmConfig(formula="age + C(sex)", contrasts={"age": "age"}, subsamples=k, memory_gb=0.5, mask_threshold=0)
    design = build_design(table, settings.formula, standardize=True, id_column="participant_id")
    contrasts = parse_contrasts(settings.contrasts, design)
    weights = draw_subsamples(n, k=k, fraction=0.8, seed=0, min_subjects=5)
    thresholds = {"age": 3.0}
    ranges = [(s, min(s + block, v)) for s in range(0, v, block)]
    rates = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster, set_as_default=False) as client:
            client.submit(fit_store_range, str(path), *ranges[0], np.arange(n), design, contrasts, settings,
                          weights, thresholds, pure=False).result()  # warm the workers (imports)
            t = time.perf_counter()
            futures = [client.submit(fit_store_range, str(path), a, b, np.arange(n), design, contrasts, settings,
                                     weights, thresholds, pure=False) for a, b in ranges]
            kept = sum(int(f.result()[0].sum()) for f in futures)
            seconds = time.perf_counter() - t
        rates[workers] = {"seconds": round(seconds, 2), "blocks": len(ranges),
                          "blocks_per_s": round(len(ranges) / seconds, 3), "voxels_fitted": kept}
        print(f"glm from store, {workers} worker(s): {len(ranges)} blocks of {n} x {block} in {seconds:.1f} s = "
              f"{rates[workers]['blocks_per_s']:.3f} blocks/s", flush=True)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=4, help="phantoms to preprocess")
    ap.add_argument("--n", type=int, default=2000, help="GLM subjects")
    ap.add_argument("--v", type=int, default=65536, help="GLM voxels")
    ap.add_argument("--subsamples", type=int, default=100)
    ap.add_argument("--block", type=int, default=4096, help="voxels per GLM block (= store chunk width)")
    ap.add_argument("--skip-preprocess", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vbmkit-scale-"))
    result = {"glm": {"n": args.n, "v": args.v, "subsamples": args.subsamples, "block": args.block}}
    try:
        if not args.skip_preprocess:
            result["preprocess"] = {"subjects": args.subjects, "inputs": "simulated 3 mm phantoms, fast settings",
                                    "rates": preprocess_rates(args.subjects, work)}
        result["glm"]["rates"] = glm_rates(args.n, args.v, args.subsamples, args.block, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
