"""Registration quality and speed: affine, diffeomorphic (to Template_4_GS) and modulation.

Prints, for each case: warp_mse (deepmriprep's definition: mean over the 113 x 137 x 113 grid
and GM/WM of (unmodulated warped map - template)^2), torchreg's linear elasticity of the
displacement, min/max Jacobian determinant, folded voxels, volume preservation and wall times.

Cases
-----
phantom   Template_4_GS GM/WM deformed by a random smooth field (up to ``--amplitude`` voxels);
          also prints the floor: the MSE after warping back with the TRUE inverse (what
          interpolation blur alone leaves).
fast      real anatomy with trustworthy tissue maps: ``segref/nii2mesh`` brain-extracted T1
          (affine to Template_05mm_bet) and its FSL FAST GM/WM partial-volume maps.
ds002748  ``--subjects N``: the first N subjects, segmented with vbmkit's classic segmentation
          (vbmkit.workflows.preprocess.steps, slow on 2 cores); ``--affine-only`` prints just the
          affine brain-mask Dice of each T1 against the template.

Usage: ``.venv/bin/python benchmarks/registration_check.py [--phantoms 2] [--subjects 0]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vbmkit.io.nifti import load_volume
from vbmkit.io.templates import load_shooting_template
from vbmkit.preprocess.jacobian import affine_jacobian_determinant, jacobian_determinant
from vbmkit.preprocess.metrics import folding, linear_elasticity, warp_mse
from vbmkit.preprocess.modulate import modulate_native
from vbmkit.preprocess.nonlinear import register_nonlinear
from vbmkit.preprocess.warp import (
    deformation_to_displacement,
    displacement_to_deformation,
    integrate_velocity,
    warp,
)
from vbmkit.space import resample

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _row(name: str, moving: torch.Tensor, template: torch.Tensor, *, seconds_affine: float | None = None,
         extra: str = "") -> torch.Tensor:
    t0, c0 = time.perf_counter(), time.process_time()
    res = register_nonlinear(moving, template, compute_inverse=False)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    warped = warp(moving[None], res.deformation)[0]
    fold = folding(jacobian_determinant(res.deformation))
    le = linear_elasticity(deformation_to_displacement(res.deformation)[0])
    aff = f"affine {seconds_affine:5.1f} s  " if seconds_affine is not None else ""
    print(f"{name:10s} warp_mse before {warp_mse(moving, template):.5f} after {warp_mse(warped, template):.5f}  "
          f"LE {le:7.1f}  jac [{fold['min']:.3f}, {fold['max']:.3f}]  folded {fold['n_folded']}  "
          f"{aff}nonlinear {dt:5.1f} s wall ({cpu:5.1f} s CPU)  {extra}", flush=True)
    return res.deformation


def phantoms(n: int, amplitude: float) -> None:
    template = load_shooting_template().data[:2]
    for seed in range(n):
        g = torch.Generator().manual_seed(seed)
        w = F.interpolate(torch.randn(1, 3, 6, 7, 6, generator=g), size=template.shape[1:], mode="trilinear",
                          align_corners=True)
        w = w / w.abs().max() * amplitude
        moving = warp(template[None], displacement_to_deformation(integrate_velocity(w)))[0]
        floor = warp(moving[None], displacement_to_deformation(integrate_velocity(-w)))[0]
        _row(f"phantom{seed}", moving, template, extra=f"(floor with the true inverse {warp_mse(floor, template):.5f})")


def fast_case() -> None:
    from scipy import ndimage

    from vbmkit.preprocess.affine import register_affine
    from vbmkit.preprocess.grids import downsample, factors_for
    from vbmkit.workflows.preprocess import steps as st

    seg = DATA / "segref"
    t1 = load_volume(seg / "nii2mesh_bet_T1.nii.gz")
    gm, wm = load_volume(seg / "nii2mesh_fast_pve1_GM.nii.gz"), load_volume(seg / "nii2mesh_fast_pve2_WM.nii.gz")
    lab, _ = ndimage.label(t1.data.numpy() > 0)  # the source added two spheres: keep the brain
    mask = torch.from_numpy(lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    moving2, mgrid = downsample(torch.stack([t1.data * mask, mask.float()]), t1.grid, factors_for(t1.grid, 2.0))
    fixed2, fgrid = st._t1_template()
    t0 = time.perf_counter()
    aff = register_affine(moving2[0], mgrid, fixed2[0], fgrid, moving_mask=moving2[1], fixed_mask=fixed2[1])
    ta = time.perf_counter() - t0
    shoot = load_shooting_template()
    native = torch.stack([gm.data, wm.data]) * mask
    moving = resample(native[None], t1.grid, shoot.grid, target_to_source_mm=aff.matrix)[0]
    phi = _row("fast", moving, shoot.data[:2], seconds_affine=ta, extra=f"affine loss {aff.loss:.4f}")
    for method in ("pull",):
        out = modulate_native(native, t1.grid, shoot.grid, aff.matrix, phi, method=method)
        ml = out.modulated.double().sum((1, 2, 3)) * shoot.grid.voxel_volume_ml
        nat = native.double().sum((1, 2, 3)) * t1.grid.voxel_volume_ml
        print(f"{'':10s} modulation ({method}): GM {float(ml[0]):.1f} vs native {float(nat[0]):.1f} mL "
              f"({100 * float(ml[0] / nat[0] - 1):+.2f} %), WM {float(ml[1]):.1f} vs {float(nat[1]):.1f} mL "
              f"({100 * float(ml[1] / nat[1] - 1):+.2f} %); affine det {affine_jacobian_determinant(aff.matrix):.3f}")


def ds002748(n: int, affine_only: bool) -> None:
    from vbmkit.config import PreprocessConfig
    from vbmkit.workflows.preprocess import steps as st

    subjects = sorted(p.name for p in (DATA / "ds002748").glob("sub-*"))[:n]
    shoot = load_shooting_template()
    fixed2, fgrid = st._t1_template()
    for sub in subjects:
        nat = st.load_t1(DATA / "ds002748" / sub / "anat" / f"{sub}_T1w.nii.gz")
        mask = nat.data > 0  # ds002748 is skull-stripped
        t0 = time.perf_counter()
        aff = st.affine_to_template(nat, mask, device=torch.device("cpu"))
        ta = time.perf_counter() - t0
        moved = resample(mask.float()[None, None], nat.grid, fgrid, target_to_source_mm=aff.matrix)[0, 0]
        a, b = moved > 0.5, fixed2[1] > 0.5
        dice = 2 * float((a & b).sum()) / float(a.sum() + b.sum())
        if affine_only:
            print(f"{sub:10s} affine {ta:5.1f} s  loss {aff.loss:.4f}  brain-mask Dice vs template {dice:.3f}", flush=True)
            continue
        seg = st.segment_native(st.segmentation_input(nat, mask, PreprocessConfig()), aff.matrix,
                                device=torch.device("cpu"))
        moving = st.tissue_on_output_grid(seg, aff.matrix)
        _row(sub, moving, shoot.data[:2], seconds_affine=ta, extra=f"mask Dice {dice:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantoms", type=int, default=2)
    ap.add_argument("--amplitude", type=float, default=3.0, help="largest phantom displacement, voxels (1.5 mm)")
    ap.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--subjects", type=int, default=0)
    ap.add_argument("--affine-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    phantoms(args.phantoms, args.amplitude)
    if args.fast and (DATA / "segref").is_dir():
        fast_case()
    if args.subjects and (DATA / "ds002748").is_dir():
        ds002748(args.subjects, args.affine_only)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
