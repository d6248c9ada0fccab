"""Issue 18, must-show 1: GM at the walls of the lateral ventricles, before and after the CSF/WM class.

On FreeSurfer's reference (``../shared/data/segref/niivue_fs_*``) the pipeline's native
segmentation (what ``vbmkit preprocess`` runs: deepbet mask, affine, first segmentation, priors
deformed by a coarse registration, second segmentation) is run twice from the same first pass:
with five classes (before) and with the CSF/WM class around the deformed lateral ventricles
(after). Printed for each: the GM that vbmkit labels inside 3 mm of FreeSurfer's lateral
ventricles (labels 4, 43, 5, 44) where FreeSurfer says WM or CSF, in mL (hard: argmax voxels;
soft: sum of p1), and Dice against FreeSurfer and FSL FAST (as ``segment_accuracy.py``).
Target: the GM there reduced by at least 50 %, neither Dice lower.

Usage: ``python benchmarks/periventricular_segref.py [--device cpu] [--threads 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segment_accuracy import (  # noqa: E402  (a sibling benchmark script, not a package)
    FS_CSF,
    FS_WM,
    SEGREF,
    compare,
    fs_tissue,
    hard_labels,
    largest_component,
)

from vbmkit.config import PreprocessConfig  # noqa: E402
from vbmkit.io.nifti import load_volume  # noqa: E402
from vbmkit.preprocess.periventricular import periventricular_band  # noqa: E402
from vbmkit.workflows.preprocess import steps  # noqa: E402

FS_LATERAL = [4, 43, 5, 44]


def two_segmentations(path: Path, device: str) -> dict[str, torch.Tensor]:
    """Native p1..p3 of the pipeline's second segmentation without and with the CSF/WM class."""
    settings = PreprocessConfig()
    dev = torch.device(device)
    native = steps.load_t1(path)
    bm = steps.extract_brain(native.data, settings, device=dev)
    aff = steps.affine_to_template(native, bm.mask, device=dev)
    inp = steps.segmentation_input(native, bm.mask, settings)
    first = steps.segment_native(inp, aff.matrix, device=dev)
    out = {}
    for name, csf_wm in (("before (5 classes)", False), ("after (CSF/WM class)", True)):
        t0 = time.perf_counter()
        seg = steps.segment_with_deformed_priors(inp, first, aff.matrix, device=dev, csf_wm=csf_wm)
        out[name] = steps.to_native(seg, native.grid)[1:]
        print(f"  {name}: second segmentation {time.perf_counter() - t0:.1f} s; CSF/WM class "
              f"{seg.info.get('csf_wm_ml', 0.0):.2f} mL", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not SEGREF.is_dir():
        sys.exit(f"needs {SEGREF} (../shared/data/segref beside the repository)")

    fs = load_volume(SEGREF / "niivue_fs_norm.mgz")
    aseg = load_volume(SEGREF / "niivue_fs_aparc.a2009s+aseg.mgz").data.numpy().round().astype(np.int64)
    vox = tuple(float(v) for v in fs.grid.voxel_size)
    band = periventricular_band(torch.from_numpy(np.isin(aseg, FS_LATERAL)), vox, width_mm=3.0).numpy()
    not_gm = band & np.isin(aseg, FS_WM + FS_CSF)
    ml = fs.grid.voxel_volume_ml
    print(f"FreeSurfer: 3 mm band around the lateral ventricles {band.sum() * ml:.2f} mL, of which WM or CSF "
          f"{not_gm.sum() * ml:.2f} mL", flush=True)
    t1 = load_volume(SEGREF / "nii2mesh_bet_T1.nii.gz")
    gm = load_volume(SEGREF / "nii2mesh_fast_pve1_GM.nii.gz").data.numpy()
    wm = load_volume(SEGREF / "nii2mesh_fast_pve2_WM.nii.gz").data.numpy()
    fast_ref = (np.array([2, 3, 1])[np.argmax(np.stack([gm, wm, np.clip(1 - gm - wm, 0, 1)]), 0)]
                * largest_component(t1.data.numpy() > 0))

    figures = {}
    print("FreeSurfer norm.mgz:", flush=True)
    for name, probs in two_segmentations(SEGREF / "niivue_fs_norm.mgz", args.device).items():
        labels = hard_labels(probs, probs.sum(0) > 0)
        hard = float(((labels == 2) & not_gm).sum() * ml)
        soft = float((probs[0].numpy() * not_gm).sum() * ml)
        d_fs = compare(f"  {name} vs FreeSurfer (thalamus/pallidum/ventral DC excluded)", labels,
                       fs_tissue(aseg, ambiguous_as_gm=False))
        print(f"  {name}: GM where FreeSurfer says WM/CSF within 3 mm of its lateral ventricles: "
              f"{hard:.2f} mL (argmax), {soft:.2f} mL (sum of p1)", flush=True)
        figures[name] = {"hard": hard, "soft": soft, "dice_fs": d_fs}
    print("FSL FAST nii2mesh_bet_T1:", flush=True)
    for name, probs in two_segmentations(SEGREF / "nii2mesh_bet_T1.nii.gz", args.device).items():
        figures[name]["dice_fast"] = compare(f"  {name} vs FAST", hard_labels(probs, probs.sum(0) > 0), fast_ref)

    before, after = figures["before (5 classes)"], figures["after (CSF/WM class)"]
    for kind in ("hard", "soft"):
        change = 100.0 * (after[kind] - before[kind]) / max(before[kind], 1e-9)
        print(f"SUMMARY periventricular GM ({kind}): before {before[kind]:.2f} mL, after {after[kind]:.2f} mL, "
              f"change {change:+.1f} % (target <= -50 %)")
    for ref in ("dice_fs", "dice_fast"):
        b, a = before[ref], after[ref]
        print(f"SUMMARY Dice {ref[5:]}: GM {b[0]:.4f} -> {a[0]:.4f}, WM {b[1]:.4f} -> {a[1]:.4f}, "
              f"CSF {b[2]:.4f} -> {a[2]:.4f}")


if __name__ == "__main__":
    main()
