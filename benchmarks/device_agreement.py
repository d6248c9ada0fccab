"""CPU vs CUDA: the same T1 preprocessed on both devices gives the same maps and figures.

Compares two outputs of one subject, e.g. ``benchmarks/preprocess_speed.py --repeat 1 --out A``
on the CPU and the files that ``benchmarks/gpu_check.sh`` copies back from a CUDA machine:
native GM (``p1``) and modulated warped GM (``mwp1``) voxel by voxel (Pearson r, largest
absolute difference, share of voxels differing by more than 0.05), and the report's volumes
and quality figures (relative difference). Float32 on both devices; cuDNN convolutions may use
TF32 on the GPU, and atomics in ``index_add_`` (push modulation) sum in another order, so the
maps agree closely but not bit for bit.

    .venv/bin/python benchmarks/device_agreement.py --cpu out/speed_cpu/speed0 --cuda DIR [--name speed0]

``--cpu`` is a subject folder (``mri/`` and ``report/`` below it); ``--cuda`` may be such a folder
or a flat folder holding ``p1<name>.nii.gz``, ``mwp1<name>.nii.gz`` and ``<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _find(folder: Path, sub: str, filename: str) -> Path:
    for cand in (folder / sub / filename, folder / filename):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{filename}: expected it in {folder / sub} or {folder}; it is in neither")


def _map(folder: Path, key: str, name: str) -> np.ndarray:
    return np.asarray(nib.load(_find(folder, "mri", f"{key}{name}.nii.gz")).dataobj, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=Path, required=True, help="subject folder written on the CPU")
    ap.add_argument("--cuda", type=Path, required=True, help="subject folder (or flat copy) written on CUDA")
    ap.add_argument("--name", default="speed0", help="subject name in the file names")
    args = ap.parse_args(argv)

    print(f"{'map':<6} {'voxels':>9} {'r':>9} {'max |diff|':>11} {'|diff|>0.05':>12}")
    worst_r = 1.0
    for key in ("p1", "mwp1"):
        a, b = _map(args.cpu, key, args.name), _map(args.cuda, key, args.name)
        if a.shape != b.shape:
            raise ValueError(f"{key}: CPU map has shape {a.shape}, CUDA map {b.shape}")
        inside = (a > 0.01) | (b > 0.01)
        r = float(np.corrcoef(a[inside], b[inside])[0, 1])
        diff = np.abs(a - b)
        worst_r = min(worst_r, r)
        print(f"{key:<6} {int(inside.sum()):>9} {r:>9.5f} {diff.max():>11.4f} {100 * (diff > 0.05)[inside].mean():>11.3f}%")

    ra = json.loads(_find(args.cpu, "report", f"{args.name}.json").read_text())
    rb = json.loads(_find(args.cuda, "report", f"{args.name}.json").read_text())
    print(f"\n{'figure':<28} {'CPU':>12} {'CUDA':>12} {'rel. diff':>10}")
    rows = [(f"volume {k} (mL)", ra["volumes_ml"][k], rb["volumes_ml"].get(k)) for k in ra["volumes_ml"]]
    rows += [(f"quality {k}", v, rb["quality"].get(k)) for k, v in ra["quality"].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    worst_vol = 0.0
    for label, x, y in rows:
        if y is None:
            print(f"{label:<28} {x:>12.5g} {'missing':>12}")
            continue
        rel = abs(x - y) / max(abs(x), 1e-12)
        if label.startswith("volume"):
            worst_vol = max(worst_vol, rel)
        print(f"{label:<28} {x:>12.5g} {y:>12.5g} {100 * rel:>9.3f}%")
    print(f"\nlowest map r {worst_r:.5f}; largest volume difference {100 * worst_vol:.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
