"""Segmentation accuracy: Dice on synthetic phantoms (truth known) and on real anatomy against
FSL FAST and FreeSurfer (``../shared/data/segref``). Prints the figures.

Real anatomy variants: ``no priors`` and ``priors`` segment the native image directly (affine
priors); ``pipeline affine`` and ``pipeline`` run what ``vbmkit preprocess`` runs (deepbet mask,
affine, segmentation in subject space, native p1-p3) with one pass of affine priors, or with the
second pass under priors deformed by a coarse nonlinear registration (the default).

Usage: ``python benchmarks/segment_accuracy.py [--seeds 5] [--skip-real] [--skip-phantoms]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from vbmkit.io.templates import load_shooting_template
from vbmkit.preprocess.segment import segment
from vbmkit.simulate.phantom import make_phantom, tissue_from_template
from vbmkit.space import Grid, resample

CAT12 = {"CSF": 1, "GM": 2, "WM": 3}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / s) if s else float("nan")


def hard_labels(probs: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """CAT12 codes from (3, X, Y, Z) GM, WM, CSF fractions: argmax, 0 outside ``mask``."""
    codes = torch.tensor([2, 3, 1], device=probs.device)[probs.argmax(0)]
    return (codes * mask.to(probs.device)).cpu().numpy()


def template_at_1mm() -> tuple[torch.Tensor, Grid]:
    """Template_4_GS (GM, WM, rest) resampled from 1.5 mm to 1 mm over the same field of view."""
    t = load_shooting_template()
    g = t.grid
    shape = tuple(int((n - 1) * 1.5) + 1 for n in g.shape)
    aff = g.affine.copy()
    aff[:3, :3] = aff[:3, :3] / 1.5
    fine = Grid(shape, aff)
    return resample(t.data[None], g, fine)[0], fine


def run_phantoms(seeds: list[int], device: str, variants: list[str]) -> None:
    gwr, _ = template_at_1mm()
    tissue = tissue_from_template(gwr)
    priors = tissue  # the undeformed template: priors misaligned by the phantom's deformation
    rows = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        ph = make_phantom(tissue, generator=gen, deformation_mm=4.0, bias_strength=0.2, noise_sd=0.03)
        for name, pri in (("priors", priors), ("no priors", None)):
            if name not in variants:
                continue
            t0 = time.perf_counter()
            seg = segment(ph.t1, ph.brain_mask, priors=pri, device=device)
            dt = time.perf_counter() - t0
            lab = hard_labels(seg.probs, ph.brain_mask)
            truth = ph.labels.numpy()
            d = [dice(lab == c, truth == c) for c in (2, 3, 1)]
            rows.append((name, d))
            print(f"phantom seed {seed} {name:9s}: Dice GM {d[0]:.4f} WM {d[1]:.4f} CSF {d[2]:.4f}  "
                  f"({dt:.1f} s, {seg.info['iterations']} it, load {os.getloadavg()[0]:.1f})", flush=True)
    for name in variants:
        arr = np.array([d for n, d in rows if n == name])
        med = np.median(arr, axis=0)
        print(f"PHANTOM median Dice ({name}, {len(arr)} seeds): GM {med[0]:.4f} WM {med[1]:.4f} CSF {med[2]:.4f} "
              "(targets 0.92 / 0.94 / 0.85)")


SEGREF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "segref"

#: FreeSurfer aseg / aparc.a2009s+aseg labels -> CAT12 tissue code (1 CSF, 2 GM, 3 WM).
FS_GM = [3, 42, 8, 47, 11, 50, 12, 51, 17, 53, 18, 54, 26, 58]  # cortex, cerebellar cortex, caudate,
# putamen, hippocampus, amygdala, accumbens (+ aparc cortical labels 11100..12175)
FS_WM = [2, 41, 7, 46, 16, 77, 85, 251, 252, 253, 254, 255]  # cerebral/cerebellar WM, brainstem,
# WM hypointensities, optic chiasm, corpus callosum
FS_CSF = [4, 43, 5, 44, 14, 15, 24]  # lateral/inferior lateral/3rd/4th ventricles, CSF
#: deep grey structures with WM-like T1 intensity (a GM/WM mix); excluded from the main
#: comparison, counted as GM in the "all deep GM" variant
FS_AMBIGUOUS = [10, 49, 13, 52, 28, 60]  # thalamus, pallidum, ventral DC


def fs_tissue(aseg: np.ndarray, *, ambiguous_as_gm: bool) -> np.ndarray:
    """CAT12 tissue codes from a FreeSurfer label map; 0 = not compared."""
    out = np.zeros(aseg.shape, np.int64)
    out[np.isin(aseg, FS_GM) | ((aseg >= 11100) & (aseg <= 12175)) | ((aseg >= 1000) & (aseg < 3000))] = 2
    out[np.isin(aseg, FS_WM)] = 3
    out[np.isin(aseg, FS_CSF)] = 1
    if ambiguous_as_gm:
        out[np.isin(aseg, FS_AMBIGUOUS)] = 2
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def template_priors(vol, mask: np.ndarray, device: str) -> tuple[torch.Tensor, float]:
    """Template_4_GS GM, WM, rest on the native grid of ``vol`` through an affine registration
    (vbmkit.preprocess.affine.register_affine to Template_05mm_bet). Returns priors, seconds."""
    from vbmkit.io.templates import load_t1_template
    from vbmkit.preprocess.affine import register_affine

    t0 = time.perf_counter()
    t1 = load_t1_template()
    m = torch.from_numpy(mask.astype(np.float32))
    res = register_affine(vol.data * m, vol.grid, t1.data[0], t1.grid, moving_mask=m, device=device)
    shoot = load_shooting_template()
    pri = resample(shoot.data[None], shoot.grid, vol.grid, target_to_source_mm=np.linalg.inv(res.matrix))[0]
    return pri, time.perf_counter() - t0


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> list[float]:
    sel = ref > 0
    d = [dice((ours == c) & sel, (ref == c) & sel) for c in (2, 3, 1)]
    print(f"{name}: Dice GM {d[0]:.4f} WM {d[1]:.4f} CSF {d[2]:.4f}  (over {int(sel.sum())} reference voxels)",
          flush=True)
    return d


def pipeline_labels(path: Path, device: str, *, deformed: bool) -> tuple[np.ndarray, float]:
    """The native p1/p2/p3 that ``vbmkit preprocess`` writes for ``path`` (its own brain mask,
    affine, segmentation in subject space), as CAT12 codes
    (argmax; 0 where all three are 0). ``deformed``: the second segmentation with deformed priors."""
    from vbmkit.config import PreprocessConfig
    from vbmkit.workflows.preprocess import steps as steps

    settings = PreprocessConfig(deformed_priors=deformed)
    dev = torch.device(device)
    t0 = time.perf_counter()
    native = steps.load_t1(path)
    bm = steps.extract_brain(native.data, settings, device=dev)
    aff = steps.affine_to_template(native, bm.mask, device=dev)
    inp = steps.segmentation_input(native, bm.mask, settings)
    seg = steps.segment_native(inp, aff.matrix, device=dev)
    if deformed:
        seg = steps.segment_with_deformed_priors(inp, seg, aff.matrix, device=dev)
    probs = steps.to_native(seg, native.grid)[1:]
    return hard_labels(probs, probs.sum(0) > 0), time.perf_counter() - t0


def run_real(device: str, variants: list[str]) -> None:
    from vbmkit.io.nifti import load_volume

    # FSL FAST on nii2mesh_bet_T1
    t1 = load_volume(SEGREF / "nii2mesh_bet_T1.nii.gz")
    gm = load_volume(SEGREF / "nii2mesh_fast_pve1_GM.nii.gz").data.numpy()
    wm = load_volume(SEGREF / "nii2mesh_fast_pve2_WM.nii.gz").data.numpy()
    mask = largest_component(t1.data.numpy() > 0)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    ref = (np.array([2, 3, 1])[np.argmax(np.stack([gm, wm, csf]), 0)]) * mask
    fs = load_volume(SEGREF / "niivue_fs_norm.mgz")
    aseg = load_volume(SEGREF / "niivue_fs_aparc.a2009s+aseg.mgz").data.numpy().round().astype(np.int64)
    fs_mask = largest_component(fs.data.numpy() > 0)
    paths = {"FAST": SEGREF / "nii2mesh_bet_T1.nii.gz", "FreeSurfer": SEGREF / "niivue_fs_norm.mgz"}
    for variant in variants:
        for label, vol, bmask in (("FAST", t1, mask), ("FreeSurfer", fs, fs_mask)):
            if variant.startswith("pipeline"):
                ours, dt = pipeline_labels(paths[label], device, deformed=variant == "pipeline")
                dt_aff = 0.0
            else:
                pri, dt_aff = (None, 0.0) if variant == "no priors" else template_priors(vol, bmask, device)
                t0 = time.perf_counter()
                seg = segment(vol.data, torch.from_numpy(bmask), priors=pri,
                              voxel_size_mm=tuple(vol.grid.voxel_size.tolist()), device=device)
                dt = time.perf_counter() - t0
                ours = hard_labels(seg.probs, torch.from_numpy(bmask))
            tag = f"vs {label:10s} ({variant}; segment {dt:.1f} s, affine {dt_aff:.1f} s, load {os.getloadavg()[0]:.1f})"
            if label == "FAST":
                d = compare(f"REAL {tag}", ours, ref)
                print(f"  targets GM >= 0.90 ({d[0] - 0.90:+.4f}), WM >= 0.93 ({d[1] - 0.93:+.4f})")
            else:
                d = compare(f"REAL {tag} thalamus/pallidum/ventral DC excluded", ours, fs_tissue(aseg, ambiguous_as_gm=False))
                print(f"  targets GM >= 0.85 ({d[0] - 0.85:+.4f}), WM >= 0.88 ({d[1] - 0.88:+.4f})")
                compare(f"REAL {tag} all deep GM as GM", ours, fs_tissue(aseg, ambiguous_as_gm=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--skip-phantoms", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--phantom-variants", default="priors", help="comma list of 'priors', 'no priors'")
    ap.add_argument("--real-variants", default="no priors,priors,pipeline affine,pipeline",
                    help="comma list of 'no priors', 'priors' (native-space segmentation, affine priors), "
                         "'pipeline affine' (vbmkit preprocess's segmentation with deformed_priors: false), "
                         "'pipeline' (vbmkit preprocess: second segmentation with deformed priors)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()}")
    if not args.skip_phantoms:
        run_phantoms(list(range(args.seeds)), args.device, args.phantom_variants.split(","))
    if not args.skip_real:
        if SEGREF.is_dir():
            run_real(args.device, args.real_variants.split(","))
        else:
            print(f"real data: {SEGREF} is absent; skipped")


if __name__ == "__main__":
    main()
