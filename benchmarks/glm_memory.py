"""Peak memory of the 100-subsample fit on a UK-Biobank-sized matrix (CPU).

N = 4,000 subjects x V = 500,000 voxels float32 (8 GB), 6 design columns, 100 draws of 80 %.
The data are generated in row blocks (no float64 copy); then the peak resident set size is
reset (``/proc/self/clear_refs``, Linux) and measured over ``fit_subsamples`` alone
(``VmHWM``; ``resource.getrusage`` as a cross-check). Target: peak <= data + 2 GB.

    .venv/bin/python benchmarks/glm_memory.py                       # full size (minutes on 2 cores)
    .venv/bin/python benchmarks/glm_memory.py --subjects 400 --voxels 50000   # smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from vbmkit.stats.design import Contrast
from vbmkit.stats.subsample import draw_subsamples, fit_subsamples

STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    if not STATUS.exists():
        return None
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4000)
    parser.add_argument("--voxels", type=int, default=500_000)
    parser.add_argument("--subsamples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, v, k = args.subjects, args.voxels, args.subsamples
    print(f"glm_memory: N={n} V={v} K={k}, load avg {os.getloadavg()}")
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    site = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), age, sex, rng.normal(1500, 120, n) + 80 * sex, site == 1, site == 2]).astype(float)
    gen = torch.Generator().manual_seed(0)
    Y = torch.empty((n, v), dtype=torch.float32)
    for start in range(0, n, 100):
        rows = Y[start:start + 100]
        rows.normal_(0.45, 0.06, generator=gen)
    Y[:, : v // 10] -= torch.from_numpy(0.002 * (age - 50)).float()[:, None]
    data_gb = Y.numel() * 4 / 1e9
    weights = draw_subsamples(n, k=k, fraction=0.8, seed=0)
    before = _status_kb("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    done = []
    out = fit_subsamples(Y, X, [Contrast("age", np.array([0, 1, 0, 0, 0, 0.0]))], weights,
                         thresholds={"age": 3.1}, progress=lambda d, t: done.append(d))
    elapsed = time.perf_counter() - t0
    hwm = _status_kb("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, lifetime
    peak_gb = (hwm if reset and hwm is not None else maxrss) * 1024 / 1e9
    print(f"data {data_gb:.2f} GB; RSS before the fit {before * 1024 / 1e9 if before else float('nan'):.2f} GB")
    print(f"fit: {elapsed:.1f} s in {len(done)} blocks; median t range "
          f"[{out['age'].median.min():.2f}, {out['age'].median.max():.2f}]")
    print(f"peak RSS during the fit {peak_gb:.2f} GB ({'VmHWM after reset' if reset else 'ru_maxrss, lifetime'}); "
          f"lifetime ru_maxrss {maxrss * 1024 / 1e9:.2f} GB")
    print(f"peak - data = {peak_gb - data_gb:.2f} GB (target <= 2 GB: {'PASS' if peak_gb - data_gb <= 2 else 'FAIL'}); "
          f"load avg {os.getloadavg()}")


if __name__ == "__main__":
    main()
