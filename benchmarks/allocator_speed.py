"""What :func:`vbmkit.allocator.tune_cpu_allocator` gains: interleaved A/B, whole subjects.

glibc's malloc maps every large tensor afresh and unmaps it on free; in a virtual machine the page
faults of that can cost more than the arithmetic. ``vbmkit.allocator`` makes malloc keep freed
memory for reuse. This script preprocesses the same T1 in fresh processes, alternating
``VBMKIT_MALLOC=default`` (malloc as it is) and the tuned allocator (the default), so that a
shared machine's drift hits both alike, and prints per process: wall time of a cold and a warm
subject (the second one in the process is what every further subject of a batch costs), peak RAM,
and whether the maps are bit-identical to those of the first process (the allocator must not
change a number). A micro-benchmark of the registration quality figures (torchreg's linear
elasticity and the bending energy of one 1.5 mm template field, float64) comes first.

    .venv/bin/python benchmarks/allocator_speed.py [--input T1.nii.gz] [--pairs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "segref" / "chris_t1_fullhead.nii.gz"
MAPS = ("mri/p1{n}.nii.gz", "mri/mwp1{n}.nii.gz", "mri/mwp2{n}.nii.gz", "mri/s6mwp1{n}.nii.gz")

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[3]))
from vbmkit.allocator import tune_cpu_allocator
tuned = tune_cpu_allocator()
mode, out = sys.argv[1], Path(sys.argv[2])
result = {"tuned": tuned}
if mode == "metrics":
    from vbmkit.preprocess import metrics
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.avg_pool3d(torch.randn(1, 3, 113, 137, 113, generator=g), 5, 1, 2)[0] * 3
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        value = (metrics.linear_elasticity(u), metrics.bending_energy(u, (1.5, 1.5, 1.5)))
        walls.append(time.perf_counter() - t0)
    result.update(walls=walls, value=value)
else:
    from vbmkit.config import PreprocessConfig
    from vbmkit.io.bids import T1Input
    from vbmkit.workflows.preprocess.subject import preprocess_subject
    walls = []
    for i in range(2):
        t0 = time.perf_counter()
        preprocess_subject(T1Input(name=f"ab{i}", path=Path(sys.argv[4])), out, PreprocessConfig())
        walls.append(time.perf_counter() - t0)
    result.update(walls=walls)
result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print("RESULT " + json.dumps(result))
"""


def child(mode: str, tuned: bool, out: Path, threads: int, t1: Path) -> dict:
    env = dict(os.environ)
    if tuned:
        env.pop("VBMKIT_MALLOC", None)
    else:
        env["VBMKIT_MALLOC"] = "default"
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, str(out), str(threads), str(t1)], env=env,
                          cwd=REPO, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def same_maps(a: Path, b: Path, name_a: str, name_b: str) -> bool:
    from vbmkit.io.nifti import load_volume

    return all(load_volume(a / name_a / p.format(n=name_a)).data.equal(load_volume(b / name_b / p.format(n=name_b)).data)
               for p in MAPS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a 1 mm T1 (default: segref chris_t1_fullhead)")
    ap.add_argument("--pairs", type=int, default=2, help="A/B pairs of whole-subject processes (0: metrics only)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads per process")
    args = ap.parse_args()
    print(f"load average before {tuple(round(v, 2) for v in os.getloadavg())}, {args.threads} torch threads")
    with tempfile.TemporaryDirectory(prefix="vbmkit_alloc_") as tmp:
        for tuned in (False, True):
            r = child("metrics", tuned, Path(tmp), 1, args.input)
            label = "tuned  " if r["tuned"] else "default"
            print(f"metrics, malloc {label}: {', '.join(f'{w:.2f}' for w in r['walls'])} s per call "
                  f"(linear elasticity {r['value'][0]:.6f}, bending {r['value'][1]:.6g}), peak {r['peak_gb']:.2f} GB",
                  flush=True)
        if args.pairs == 0:
            return 0
        if not args.input.is_file():
            print(f"no input {args.input}: whole-subject A/B skipped")
            return 0
        rows, first = [], None
        for k in range(args.pairs):
            for tuned in (False, True):
                out = Path(tmp) / f"p{k}_{int(tuned)}"
                r = child("subject", tuned, out, args.threads, args.input)
                if first is None:
                    first = out
                identical = same_maps(first, out, "ab1", "ab1")
                rows.append((tuned, r))
                print(f"pair {k + 1}, malloc {'tuned  ' if r['tuned'] else 'default'}: cold {r['walls'][0]:.1f} s, "
                      f"warm {r['walls'][1]:.1f} s, peak RAM {r['peak_gb']:.2f} GB, maps identical to the first "
                      f"process: {identical}, load {tuple(round(v, 2) for v in os.getloadavg())}", flush=True)
        for tuned in (False, True):
            warm = sorted(r["walls"][1] for t, r in rows if t == tuned)
            peak = max(r["peak_gb"] for t, r in rows if t == tuned)
            print(f"SUMMARY malloc {'tuned' if tuned else 'default'}: warm subject {', '.join(f'{w:.1f}' for w in warm)} s "
                  f"(best {warm[0]:.1f} s), peak RAM {peak:.2f} GB")
        ratio = [rd[1]["walls"][1] / rt[1]["walls"][1] for rd, rt in zip(rows[::2], rows[1::2], strict=True)]
        print(f"SUMMARY speed-up per pair (default / tuned, warm subject): {', '.join(f'{x:.2f}x' for x in ratio)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
