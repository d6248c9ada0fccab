"""ROI volume extraction speed: 4,000 subjects' mwp1 + mwp2 on the 1.5 mm grid -> LPBA40 tables.

Usage::

    .venv/bin/python benchmarks/roi_speed.py [--subjects 4000] [--batch 32] [--disk 24] [--device auto]

Maps are generated in memory batch by batch (4,000 x 2 x 113 x 137 x 113 float32 is ~28 GB, so
no batch is kept), exactly as ``vbmkit roi`` processes file batches: one ``region_volumes``
scatter-add per batch. Timed separately and printed:

1. generation of the synthetic maps (not part of the ROI step);
2. ROI volumes (gather + float64 scatter-add + totals) for all subjects: the figure to compare
   with the 60 s target;
3. building the long / wide / CAT12 tables in memory, and writing them as CSV;
4. reading: ``--disk`` subjects are written as .nii.gz like vbmkit's outputs and read back
   with the workflow's reader; the per-subject time is extrapolated to all subjects;
5. the whole ``run_roi`` on those ``--disk`` subjects.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vbmkit.device import resolve_device  # noqa: E402
from vbmkit.io.atlas import load_atlas  # noqa: E402
from vbmkit.io.nifti import save_volume  # noqa: E402
from vbmkit.io.templates import load_shooting_template  # noqa: E402
from vbmkit.stats.roi import region_index, region_volumes  # noqa: E402
from vbmkit.workflows.roi import SubjectMaps, read_map_on_atlas, run_roi, volume_tables  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--disk", type=int, default=24, help="subjects written to disk to time reading")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's); on a shared, oversubscribed CPU 1 is "
                         "often faster because OpenMP threads spin while waiting for each other")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    print(f"load average at start: {os.getloadavg()}; cpus {os.cpu_count()}; torch threads "
          f"{torch.get_num_threads()}; device {dev}")

    atlas = load_atlas("lpba40")
    tmpl = load_shooting_template()
    base = tmpl.data[:2].to(dev)  # (2, X, Y, Z) GM, WM priors as realistic maps
    gen = torch.Generator(device=dev).manual_seed(0)
    # 16 distinct synthetic subjects (template GM/WM x a gain + noise); each batch is gathered
    # from them afresh, so the ROI step reads new memory every batch as with files.
    n_bank = 16
    gains = 0.8 + 0.4 * torch.rand((n_bank, 2, 1, 1, 1), generator=gen, device=dev)
    bank = base[None] * gains + 0.05 * torch.rand((n_bank, 2, *atlas.grid.shape), generator=gen, device=dev)
    index = region_index(atlas.labels, atlas.region_ids, device=dev)
    n, b = args.subjects, args.batch
    regional = np.zeros((n, 2, index.n_regions))
    total = np.zeros((n, 2))
    t_gen = t_roi = cpu_roi = 0.0
    for start in range(0, n, b):
        m = min(b, n - start)
        t0 = time.perf_counter()
        maps = bank[torch.arange(start, start + m, device=dev) % n_bank]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t1, c1 = time.perf_counter(), time.process_time()
        vols = region_volumes(maps, index, voxel_volume_ml=atlas.grid.voxel_volume_ml)
        regional[start:start + m] = vols.regional.cpu().numpy()
        total[start:start + m] = vols.total.cpu().numpy()
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_roi += t2 - t1
        cpu_roi += time.process_time() - c1
        del maps, vols
    print(f"generated {n} subjects x 2 maps x {atlas.grid.shape}: {t_gen:.1f} s (not part of the ROI step)")
    print(f"ROI volumes, {n} subjects x 2 tissues x {index.n_regions} regions + totals: {t_roi:.1f} s wall "
          f"({1000 * t_roi / n:.2f} ms per subject; target <= 60 s); CPU time of this process "
          f"{cpu_roi:.1f} s (= wall time on an idle core when --threads 1)")

    subjects = [SubjectMaps(f"sub-{i:05d}", {}) for i in range(n)]
    t0 = time.perf_counter()
    tables = volume_tables(subjects, ["gm", "wm"], atlas, regional, total, [None] * n)
    t_tab = time.perf_counter() - t0
    print(f"tables in memory: long {tables['long'].shape}, wide {tables['wide'].shape}: {t_tab:.1f} s")
    print(f"ROI step total (volumes + tables, excluding file reading and generation): {t_roi + t_tab:.1f} s")
    coverage = regional[:, 0].sum(-1) / total[:, 0]
    print(f"check: GM fraction inside LPBA40 median {np.median(coverage):.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tables["long"].to_csv(Path(tmp) / "roi_long.csv", index=False, float_format="%.10g")
        tables["wide"].to_csv(Path(tmp) / "roi_wide.csv", index=False, float_format="%.10g")
        print(f"writing roi_long.csv + roi_wide.csv for {n} subjects: {time.perf_counter() - t0:.1f} s")
        k = min(args.disk, n)
        stored = tmpl.stored_affine
        root = Path(tmp) / "prep"
        for i in range(k):
            name = f"sub-{i:05d}"
            for kind, ch in (("mwp1", 0), ("mwp2", 1)):
                data = bank[i % n_bank, ch].cpu()
                save_volume(root / name / "mri" / f"{kind}{name}.nii.gz", data, atlas.grid.affine,
                            orientation_of=stored)
        files = sorted(root.rglob("mwp*.nii.gz"))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda p: read_map_on_atlas(p, atlas, set()), files))
        t_read = time.perf_counter() - t0
        print(f"reading {k} subjects' mwp1+mwp2 (.nii.gz, 2 threads): {t_read:.1f} s = "
              f"{1000 * t_read / k:.0f} ms per subject -> {n} subjects ~ {t_read / k * n:.0f} s "
              "(extrapolated; file reading, excluded from the target)")
        t0 = time.perf_counter()
        summary = run_roi([root], out=Path(tmp) / "roi", progress=False, device=str(dev))
        print(f"run_roi on the {k} subjects from disk: {time.perf_counter() - t0:.1f} s "
              f"(read {summary['seconds']['read']} s, volumes {summary['seconds']['volumes']} s)")
    print(f"load average at end: {os.getloadavg()} (2 cores shared by all helpers: wall times above "
          "stretch with the load; the CPU time does not)")


if __name__ == "__main__":
    main()
