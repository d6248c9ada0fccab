"""Wall time per preprocessing step and peak RAM for one real 1 mm T1 (issue 3, "Must show" 5).

Target on the 2-core development CPU: <= 60 s per subject, peak RAM <= 6 GB; on an H100-class
GPU: <= 5 s per subject in a batch. The first subject of a process pays one-off costs (reading
the templates, TorchScript warm-up); ``--repeat 2`` also times a second, warm subject, which is
what every further subject of a batch costs. Before each subject and after the last, a fixed
calibration workload (:func:`calibration_seconds`: thirty ``vbmkit.sampling.grid_sample`` calls
of a field on the 1.5 mm template grid, the registration's main cost) is timed, so runs at
different moments of this shared machine, whose speed drifts by more than a third within an
hour, can be compared. ``--batch N --workers K`` then times the throughput
of N subjects (copies of the input under other names) shared by K processes on the same device,
as ``vbmkit preprocess --jobs K`` runs them: the wall time of the whole batch divided by N,
the processes' cold starts included.

    .venv/bin/python benchmarks/preprocess_speed.py [--input T1.nii.gz] [--device cpu] [--threads 2] [--repeat 2]
    python3 benchmarks/preprocess_speed.py --device cuda --threads 16 --batch 16 --workers 4
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "segref" / "chris_t1_fullhead.nii.gz"


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def calibration_seconds(device: torch.device, calls: int = 30) -> float:
    """Wall time of a fixed workload: ``calls`` trilinear ``grid_sample`` of a (1, 3, 113, 137,
    113) field (Template_4_GS's grid) at a smooth displacement of a few voxels, float32.

    Its inputs are fixed (seeded), so on one machine it varies only with the machine's speed at
    that moment; it is the same kind of work as the variational registration's inner loop.
    """
    import torch.nn.functional as F

    from vbmkit.sampling import grid_sample

    gen = torch.Generator().manual_seed(0)
    shape = (113, 137, 113)
    coarse = torch.randn(1, 3, 8, 9, 8, generator=gen) * 0.05
    field = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True).to(device)
    grid = F.affine_grid(torch.eye(4)[None, :3], [1, 3, *shape], align_corners=True).to(device)
    grid = grid + field.permute(0, 2, 3, 4, 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _batch_worker(path: Path, out: Path, names: list[str], device: str, threads: int) -> list[float]:
    """One process of the batch: preprocess ``names`` (all from ``path``) one after the other."""
    from vbmkit.config import PreprocessConfig
    from vbmkit.device import resolve_device
    from vbmkit.io.bids import T1Input
    from vbmkit.workflows.preprocess.subject import preprocess_subject

    torch.set_num_threads(threads)
    walls = []
    for name in names:
        t0 = time.perf_counter()
        preprocess_subject(T1Input(name=name, path=path), out, PreprocessConfig(), device=resolve_device(device))
        walls.append(time.perf_counter() - t0)
    return walls


def run_batch(path: Path, out: Path, n: int, workers: int, device: str, threads: int) -> None:
    """Throughput of ``n`` subjects over ``workers`` processes sharing ``threads`` CPU threads."""
    per = max(1, threads // workers)
    shares = [[f"batch{i:03d}" for i in range(w, n, workers)] for w in range(workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_batch_worker, path, out, names, device, per) for names in shares if names]
        walls = [w for f in futures for w in f.result()]
    wall = time.perf_counter() - t0
    print(f"\nbatch: {n} subjects in {workers} processes ({per} torch threads each) on {device}: "
          f"{wall:.1f} s wall, {wall / n:.2f} s per subject (throughput, cold starts included); "
          f"per-subject wall inside a process: median {sorted(walls)[len(walls) // 2]:.1f} s, "
          f"max {max(walls):.1f} s")
    target = 5.0 if device.startswith("cuda") else 60.0
    print(f"batch throughput: {wall / n:.2f} s per subject (target <= {target:.0f} s): "
          f"{'PASS' if wall / n <= target else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a 1 mm T1 (default: segref chris_t1_fullhead)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the machine has 2 cores)")
    ap.add_argument("--repeat", type=int, default=2, help="subjects timed in one process (1: cold only)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--batch", type=int, default=0, help="then time N subjects over --workers processes (0: no)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the --batch run")
    args = ap.parse_args(argv)

    from vbmkit.config import PreprocessConfig
    from vbmkit.device import resolve_device
    from vbmkit.io.bids import T1Input
    from vbmkit.workflows.preprocess.subject import preprocess_subject

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = PreprocessConfig()
    out = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="vbmkit_speed_"))
    print(f"input {args.input}\ndevice {device}, torch threads {torch.get_num_threads()}, "
          f"load average before {tuple(round(v, 2) for v in os.getloadavg())}")
    runs, calibration = [], []
    for i in range(args.repeat):
        calibration.append(calibration_seconds(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        report = preprocess_subject(T1Input(name=f"speed{i}", path=args.input), out, settings, device=device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        gpu = torch.cuda.max_memory_allocated() / 1024 ** 3 if device.type == "cuda" else float("nan")
        runs.append((report["timings_s"], wall, gpu))
        # CPU seconds of all threads: on a contended machine, cpu / threads bounds the idle wall time
        print(f"run {i + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads), TIV {report['volumes_ml']['tiv']:.0f} mL, "
              f"warp MSE {report['quality']['warp_mse']:.4f}, load average {tuple(round(v, 2) for v in os.getloadavg())}")

    calibration.append(calibration_seconds(device))
    steps = [k for k in runs[0][0] if k != "total"]
    print("\nstep            " + "".join(f"  run {i + 1:<5}" for i in range(len(runs))))
    for s in steps:
        print(f"{s:<16}" + "".join(f"  {r[0].get(s, float('nan')):8.2f} s" for r in runs))
    print(f"{'total':<16}" + "".join(f"  {r[1]:8.2f} s" for r in runs))
    print(f"{'calibration':<16}" + "".join(f"  {c:8.2f} s" for c in calibration[:-1])
          + f"  (after the last run: {calibration[-1]:.2f} s; a fixed workload, lower = faster machine)")
    print(f"\npeak RAM (process): {peak_rss_gb():.2f} GB  (target <= 6 GB)")
    if device.type == "cuda":
        print("peak GPU memory: " + ", ".join(f"{r[2]:.2f} GB" for r in runs))
    best = min(r[1] for r in runs)
    target = 5.0 if device.type == "cuda" else 60.0
    print(f"fastest subject: {best:.1f} s (target <= {target:.0f} s): {'PASS' if best <= target else 'FAIL'}")
    print(f"load average after: {tuple(round(v, 2) for v in os.getloadavg())}")
    if args.batch > 0:
        run_batch(args.input, out / "batch", args.batch, args.workers, str(device), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
