"""The steps of :func:`vbmkit.workflows.preprocess.subject.preprocess_subject`, one function each.

Each step wires data between grids and calls pure functions of :mod:`vbmkit.preprocess`
(brain mask, intensity, affine, segment, nonlinear, warp, Jacobian, modulate, smooth) and
:mod:`vbmkit.io`. Grids (see ``docs/preprocess.md``):

- native: the input's voxel grid in RAS order (p0..p3 are written on it);
- affine grid: Template_05mm_bet area-averaged to ~2 mm, and the subject likewise;
- segmentation grid: subject space, the native grid itself when its voxels are
  ``segmentation_resolution_mm`` cubes (1 mm by default), else the native field of view on
  native axes at that resolution; the template priors are pulled in through the affine (and,
  for the second pass, through the inverse of a coarse nonlinear registration);
- output grid: Template_4_GS, 113 x 137 x 113 at 1.5 mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vbmkit.config import PreprocessConfig
from vbmkit.io.nifti import load_grid, load_volume, save_volume
from vbmkit.io.records import save_deformation
from vbmkit.io.templates import load_shooting_template, load_t1_template, output_grid
from vbmkit.io.ventricles import lateral_ventricles
from vbmkit.io.weights import load_brain_extraction_models
from vbmkit.preprocess import metrics
from vbmkit.preprocess.affine import register_affine
from vbmkit.preprocess.brainmask import brain_mask
from vbmkit.preprocess.grids import deformation_to_mm, downsample, factors_for, grid_at_resolution
from vbmkit.preprocess.intensity import normalize_intensity, validate_t1
from vbmkit.preprocess.jacobian import affine_jacobian_determinant
from vbmkit.preprocess.modulate import modulate_native
from vbmkit.preprocess.nonlinear import register_nonlinear
from vbmkit.preprocess.periventricular import (
    BAND_MM,
    band_volume_ml,
    csf_wm_region,
    periventricular_band,
)
from vbmkit.preprocess.segment import segment
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.preprocess.variational import register_variational
from vbmkit.preprocess.volumes import tissue_volumes
from vbmkit.preprocess.warp import deformation_to_displacement, warp
from vbmkit.space import Grid, resample
from vbmkit.workflows.preprocess.naming import fwhm_tag


@dataclass(frozen=True, eq=False)
class NativeT1:
    """The input image: RAS ``data`` (X, Y, Z) float32, its RAS ``grid`` and stored affine."""

    data: torch.Tensor
    grid: Grid
    stored_affine: np.ndarray


@dataclass(frozen=True, eq=False)
class AffineStep:
    """``matrix`` (4, 4) template mm -> subject mm; ``loss`` the final registration loss."""

    matrix: np.ndarray
    loss: float


@dataclass(frozen=True, eq=False)
class SegmentationStep:
    """Segmentation on ``grid`` (subject space: the native grid or native axes at the
    segmentation resolution).

    ``p0`` (X, Y, Z) 0..3 label, ``probs`` (3, X, Y, Z) GM, WM, CSF, ``info`` a JSON-able dict.
    """

    p0: torch.Tensor
    probs: torch.Tensor
    grid: Grid
    info: dict[str, Any]


@dataclass(frozen=True, eq=False)
class RegistrationStep:
    """Nonlinear registration on the output grid: the affine-aligned ``moving`` (2, X, Y, Z)
    GM/WM, ``template`` (2, X, Y, Z) and the deep result object of the registration."""

    moving: torch.Tensor
    template: torch.Tensor
    grid: Grid
    result: Any


@dataclass(frozen=True, eq=False)
class WarpedStep:
    """``mwp`` (2, X, Y, Z) modulated warped GM/WM, quality figures and mwp volumes in mL."""

    mwp: torch.Tensor
    quality: dict[str, float]
    mwp_volumes_ml: dict[str, float]


def load_t1(path: Path) -> NativeT1:
    """Read and check a T1 image (RAS), raising ImageError naming the file when unusable."""
    vol = load_volume(path)
    grid = vol.grid
    validate_t1(vol.data, grid.voxel_size, source=str(path))
    stored = load_grid(path, canonical=False).affine
    return NativeT1(data=vol.data, grid=grid, stored_affine=stored)


def extract_brain(image: torch.Tensor, settings: PreprocessConfig, *, device: torch.device):
    """deepbet brain mask (:func:`vbmkit.preprocess.brainmask.brain_mask`) on ``device``."""
    if settings.skull_strip == "never":
        return brain_mask(image, None, None, mode="never")
    nets = load_brain_extraction_models(device)
    mode = "always" if settings.skull_strip == "always" else "auto"
    result = brain_mask(image.to(device), nets.model, nets.bbox_model, mode=mode)
    return result


def affine_to_template(native: NativeT1, mask: torch.Tensor, *, device: torch.device) -> AffineStep:
    """Affine registration of the brain to Template_05mm_bet, both area-averaged to ~2 mm.

    Both images go in with their brain masks (the template's: template > 0); the registration
    normalises them (brain 95th percentile = 1, clipped) as deepmriprep's affine step does.
    """
    m = mask.to(native.data.device)
    moving_pair, moving_grid = downsample(torch.stack([native.data * m, m.float()]), native.grid,
                                          factors_for(native.grid, AFFINE_MM))
    fixed_pair, fixed_grid = _t1_template()
    res = register_affine(moving_pair[0].to(device), moving_grid, fixed_pair[0].to(device), fixed_grid,
                          moving_mask=moving_pair[1].to(device), fixed_mask=fixed_pair[1].to(device),
                          device=device)
    return AffineStep(matrix=np.asarray(_numpy(res.matrix), dtype=np.float64), loss=float(res.loss))


AFFINE_MM = 2.0
#: Downsampling factors of the nonlinear registration levels on the 1.5 mm grid (6, 3, 1.5 mm),
#: one per entry of ``PreprocessConfig.registration_iterations``.
REGISTRATION_LEVELS = (4, 2, 1)
#: Downsampling factors of the variational registration's velocity grid per level (6, 3, 3 mm):
#: at the finest level the images are compared at 1.5 mm and the velocity lives on the 3 mm
#: grid (pipeline version 6): on ds002748 sub-01..05 the same warp MSE and linear elasticity
#: as a 1.5 mm velocity (with lambda 0.8 instead of 1 there) in 2.3x less time
#: (``benchmarks/registration_energy.py --velocity-levels``; docs/algorithms_registration.md).
REGISTRATION_VELOCITY_LEVELS = (4, 2, 2)
#: Steps per level of each registration method when ``registration_iterations`` is not set.
REGISTRATION_ITERATIONS = {"variational": (40, 30, 25), "demons": (40, 30, 10)}
#: Regularisation weight ``lambda`` of the variational registration per level (6, 3, 1.5 mm) and
#: its regulariser weights (absolute, membrane, bending, mu, lambda): SPM12 Shooting's ``rparam``
#: with bending 0.3 instead of 0.2. Both tuned on ds002748 sub-01 and sub-02, the last lambda
#: (0.8, with the 3 mm velocity of the finest level) on sub-01..05
#: (``benchmarks/registration_energy.py``; docs/algorithms_registration.md).
REGISTRATION_LAMBDAS = (2.0, 1.0, 0.8)
REGISTRATION_WEIGHTS = (1e-4, 1e-3, 0.3, 0.05, 0.2)
#: (factor, updates) of the demons registration that deforms the priors for the second
#: segmentation (6, 3 and 1.5 mm). The 1.5 mm level (pipeline version 7) lets the priors follow
#: the subject's sulci and ventricles more closely: Dice against FAST GM 0.9133 -> 0.9199, WM
#: 0.9333 -> 0.9390, against FreeSurfer GM 0.9483 -> 0.9504, WM 0.9414 -> 0.9451
#: (``benchmarks/segment_accuracy.py``). It runs only when the final registration has its 1.5 mm
#: level (:func:`prior_registration_levels`: the demo's fast profile skips both).
PRIOR_REGISTRATION = ((4, 40), (2, 30), (1, 10))
#: Exponent of the deformed priors: aligned to the subject, they can be trusted fully (the
#: affine-only priors are tempered by the default 0.5 of :func:`vbmkit.preprocess.segment.segment`).
DEFORMED_PRIOR_WEIGHT = 1.0
_T1_TEMPLATE: list[tuple[torch.Tensor, Grid]] = []


def _t1_template() -> tuple[torch.Tensor, Grid]:
    """(template and mask (> 0) area-averaged to ~2 mm, their grid), once per process.

    The 0.5 mm template takes seconds to read and 190 MB; only its 2 mm version is kept.
    """
    if not _T1_TEMPLATE:
        tmpl = load_t1_template()
        t = tmpl.data[0]
        pair, grid = downsample(torch.stack([t, (t > 0).float()]), tmpl.grid, factors_for(tmpl.grid, AFFINE_MM))
        _T1_TEMPLATE.append((pair, grid))
    return _T1_TEMPLATE[0]


def segmentation_grid(native: Grid, settings: PreprocessConfig) -> Grid:
    """The grid the segmentation runs on: the native grid when its voxels are already
    ``segmentation_resolution_mm`` cubes, else the native field of view (native axes) at that
    resolution."""
    r = settings.segmentation_resolution_mm
    if np.allclose(native.voxel_size, r, atol=1e-3):
        return native
    return grid_at_resolution(native, r)


def affine_priors(grid: Grid, matrix: np.ndarray) -> torch.Tensor:
    """(3, X, Y, Z) Template_4_GS GM, WM, rest on ``grid`` (subject mm) through the affine."""
    shooting = load_shooting_template()
    return resample(shooting.data[None], shooting.grid, grid, target_to_source_mm=np.linalg.inv(matrix))[0]


@dataclass(frozen=True, eq=False)
class SegmentationInput:
    """The normalised T1 ``image`` (X, Y, Z) and bool brain ``mask`` on the segmentation ``grid``."""

    image: torch.Tensor
    mask: torch.Tensor
    grid: Grid


def segmentation_input(native: NativeT1, mask: torch.Tensor, settings: PreprocessConfig) -> SegmentationInput:
    """The T1 (brain 95th percentile = 1) and its mask on :func:`segmentation_grid`: as they are,
    or interpolated once when the native voxels are not of the segmentation resolution."""
    grid = segmentation_grid(native.grid, settings)
    dev_mask = mask.to(native.data.device)
    image, _ = normalize_intensity(native.data * dev_mask, dev_mask, clip_max=None)
    if grid is native.grid:
        return SegmentationInput(image=image, mask=dev_mask.bool(), grid=grid)
    moved = resample(torch.stack([image, dev_mask.float()])[None], native.grid, grid)[0]
    return SegmentationInput(image=moved[0], mask=moved[1] > 0.5, grid=grid)


def segment_native(inp: SegmentationInput, matrix: np.ndarray, *, device: torch.device,
                   priors: torch.Tensor | None = None, prior_weight: float | None = None) -> SegmentationStep:
    """Segment the T1 in subject space (:func:`segmentation_input`) with spatial priors: by
    default Template_4_GS (GM, WM, and CSF = the template's third class inside the brain) through
    the affine alone (:func:`affine_priors`); ``priors`` (3, X, Y, Z) on the segmentation grid
    replace them (:func:`deformed_priors`), with ``prior_weight`` as the exponent when given; a
    fourth channel of ``priors`` is the region of the CSF/WM class (six-class segmentation).
    Segmenting where the image lies (as SPM and CAT12 do) interpolates it at most once."""
    grid = inp.grid
    if priors is None:
        priors = affine_priors(grid, matrix)
    elif tuple(priors.shape) not in ((3, *grid.shape), (4, *grid.shape)):
        raise ValueError(f"priors: expected (3 or 4, {', '.join(map(str, grid.shape))}) on the segmentation grid; "
                         f"got {tuple(priors.shape)}")
    extra = {} if prior_weight is None else {"prior_weight": prior_weight}
    if priors.shape[0] == 4:
        extra["csf_wm_region"] = priors[3].to(device)
    seg = segment(inp.image.to(device), inp.mask.to(device), priors=priors[:3].to(device),
                  voxel_size_mm=tuple(float(v) for v in grid.voxel_size), device=device, **extra)
    info = dict(seg.info) if isinstance(getattr(seg, "info", None), dict) else {}
    return SegmentationStep(p0=seg.p0.float().cpu(), probs=seg.probs.float().cpu(), grid=grid,
                            info=_jsonable(info))


def prior_registration_levels(settings: PreprocessConfig) -> tuple[tuple[int, int], ...]:
    """(factor, updates) of the prior registration's levels for ``settings``: those of
    :data:`PRIOR_REGISTRATION` whose level the final registration runs (the demo's fast profile,
    ``[40, 30, 0]``, skips the 1.5 mm level in both)."""
    return tuple(level for level, n in zip(PRIOR_REGISTRATION, registration_iterations(settings), strict=True)
                 if n > 0)


def segment_with_deformed_priors(inp: SegmentationInput, first: SegmentationStep, matrix: np.ndarray, *,
                                 device: torch.device, csf_wm: bool = True,
                                 levels: tuple[tuple[int, int], ...] = PRIOR_REGISTRATION) -> SegmentationStep:
    """The second segmentation: under :func:`deformed_priors` of the ``first`` one, at full weight;
    ``csf_wm``: with the CSF/WM class around the deformed lateral ventricles; ``levels``: those of
    the prior registration (:func:`prior_registration_levels`)."""
    priors = deformed_priors(first, matrix, device=device, csf_wm=csf_wm, levels=levels)
    return segment_native(inp, matrix, device=device, priors=priors, prior_weight=DEFORMED_PRIOR_WEIGHT)


def tissue_on_output_grid(seg: SegmentationStep, matrix: np.ndarray) -> torch.Tensor:
    """(2, X, Y, Z) GM, WM of ``seg`` pulled onto the 1.5 mm output grid through the affine."""
    shooting = load_shooting_template()
    return resample(seg.probs[None, :2].float(), seg.grid, shooting.grid, target_to_source_mm=matrix)[0]


def deformed_priors(seg: SegmentationStep, matrix: np.ndarray, *, device: torch.device,
                    csf_wm: bool = False, levels: tuple[tuple[int, int], ...] = PRIOR_REGISTRATION) -> torch.Tensor:
    """Template_4_GS priors deformed onto the subject, on the segmentation grid.

    A first segmentation's GM/WM are registered to the template's (the demons at 6, 3 and 1.5 mm,
    ``levels``, by default :data:`PRIOR_REGISTRATION`); the template's GM, WM and rest are pulled through the inverse
    map (template -> subject) and then through the affine onto the segmentation grid. As in SPM's
    unified segmentation, the priors then follow the subject's own folding instead of the
    affinely aligned group average, which is blurred over every brain's sulci.

    ``csf_wm``: a fourth channel, the region of the CSF/WM class (the template's lateral
    ventricles and a margin, :func:`vbmkit.preprocess.periventricular.csf_wm_region`), pulled the
    same way, so that it follows the subject's own ventricles.

    Returns
    -------
    torch.Tensor
        (3, X, Y, Z) GM, WM, rest on ``seg.grid`` (float32, CPU); (4, X, Y, Z) with ``csf_wm``.
    """
    shooting = load_shooting_template()
    moving = tissue_on_output_grid(seg, matrix)
    scales, iterations = zip(*levels, strict=True)
    result = register_nonlinear(moving.to(device), shooting.data[:2].to(device), scales=scales,
                                iterations=iterations, compute_inverse=True, compute_forward=False,
                                device=device)
    data = shooting.data.float()
    if csf_wm:
        data = torch.cat([data, _template_csf_wm_region()[None]])
    pulled = warp(data[None].to(device), result.inverse.detach())[0]
    rest = (1.0 - pulled[0] - pulled[1]).clamp(0.0, 1.0)  # outside the field of view, too
    pulled = torch.stack([pulled[0], pulled[1], rest, *pulled[3:]])
    return resample(pulled[None].cpu(), shooting.grid, seg.grid, target_to_source_mm=np.linalg.inv(matrix))[0]


@lru_cache(maxsize=1)
def _template_csf_wm_region() -> torch.Tensor:
    """The CSF/WM class region on the template grid: the same for every subject, made once."""
    return csf_wm_region(lateral_ventricles(), tuple(load_shooting_template().grid.voxel_size))


@lru_cache(maxsize=1)
def template_band() -> torch.Tensor:
    """The 3 mm periventricular band on the template grid: the same for every subject, made once."""
    return periventricular_band(lateral_ventricles(), tuple(load_shooting_template().grid.voxel_size),
                                width_mm=BAND_MM)


def periventricular_gm_ml(mwp1: torch.Tensor) -> float:
    """GM in mL within :data:`~vbmkit.preprocess.periventricular.BAND_MM` (3 mm) of the lateral
    ventricles: the modulated GM (template grid) summed over the band around neuromorphometrics'
    lateral ventricles, i.e. the subject's GM in that band pulled back through the deformation."""
    return band_volume_ml(mwp1.cpu(), template_band(), load_shooting_template().grid.voxel_volume_ml)


def to_native(seg: SegmentationStep, native: Grid) -> torch.Tensor:
    """(4, X, Y, Z) p0, p1 (GM), p2 (WM), p3 (CSF) on the native grid (trilinear when the
    segmentation grid differs)."""
    maps = torch.cat([seg.p0[None], seg.probs])
    if seg.grid is not native:
        maps = resample(maps[None], seg.grid, native)[0]
    maps[0].clamp_(0.0, 3.0)
    maps[1:].clamp_(0.0, 1.0)
    return maps


def native_volumes(native_maps: torch.Tensor, grid: Grid) -> dict[str, float]:
    """GM, WM, CSF, TIV in mL (and fractions) from the native p1..p3."""
    return tissue_volumes(native_maps[1:], grid.voxel_volume_ml)


def write_native(paths: dict[str, Path], native_maps: torch.Tensor, grid: Grid, stored_affine: np.ndarray) -> None:
    """p0..p3 on the native grid, stored in the input's own orientation."""
    descr = {"p0": "vbmkit p0 label 0..3 (1 CSF, 2 GM, 3 WM)", "p1": "vbmkit p1 GM probability",
             "p2": "vbmkit p2 WM probability", "p3": "vbmkit p3 CSF probability"}
    for i, key in enumerate(("p0", "p1", "p2", "p3")):
        save_volume(paths[key], native_maps[i], grid.affine, orientation_of=stored_affine, description=descr[key])


def registration_iterations(settings: PreprocessConfig) -> tuple[int, ...]:
    """Steps of the final registration at 6, 3 and 1.5 mm: ``registration_iterations`` or the
    method's default (:data:`REGISTRATION_ITERATIONS`); 0 skips a level."""
    return tuple(settings.registration_iterations or REGISTRATION_ITERATIONS[settings.registration])


def registration_levels(settings: PreprocessConfig) -> list[tuple[int, int, int, float]]:
    """(image downsampling factor, velocity downsampling factor, steps, lambda) of each level that
    runs (6, 3, 1.5 mm; 0 steps skip a level). The demons keep the velocity on the image grid."""
    iterations = registration_iterations(settings)
    vlevels = REGISTRATION_VELOCITY_LEVELS if settings.registration == "variational" else REGISTRATION_LEVELS
    return [(f, vf, int(n), lam) for f, vf, n, lam in zip(REGISTRATION_LEVELS, vlevels, iterations,
                                                          REGISTRATION_LAMBDAS, strict=True) if n > 0]


def register_to_shooting_template(seg: SegmentationStep, matrix: np.ndarray, settings: PreprocessConfig, *,
                                  device: torch.device) -> RegistrationStep:
    """GM/WM from the segmentation grid to the 1.5 mm output grid through the affine, then
    nonlinear registration to Template_4_GS's GM/WM (``settings.registration``, levels of
    :func:`registration_levels`); the inverse map is kept for push modulation."""
    shooting = load_shooting_template()
    moving = tissue_on_output_grid(seg, matrix)
    template = shooting.data[:2]
    factors, velocity_factors, iterations, lambdas = zip(*registration_levels(settings), strict=True)
    push = settings.modulation == "push"
    if settings.registration == "variational":
        result = register_variational(moving.to(device), template.to(device),
                                      voxel_size_mm=tuple(float(v) for v in shooting.grid.voxel_size),
                                      levels=factors, velocity_levels=velocity_factors, lambdas=lambdas,
                                      iterations=iterations, weights=REGISTRATION_WEIGHTS, compute_inverse=push,
                                      device=device)
    else:
        result = register_nonlinear(moving.to(device), template.to(device), scales=factors,
                                    iterations=iterations, compute_inverse=push, device=device)
    return RegistrationStep(moving=moving, template=template, grid=shooting.grid, result=result)


def warp_and_modulate(reg: RegistrationStep, matrix: np.ndarray, native_tissue: torch.Tensor,
                      native_grid: Grid, *, method: str = "push") -> WarpedStep:
    """mwp1/mwp2 from the native p1/p2 through the full (affine x nonlinear) map, modulated by
    ``method`` (:func:`~vbmkit.preprocess.modulate.modulate_native`: push preserves the native
    volume exactly), and the registration's quality figures: warp MSE of the unmodulated maps and
    torchreg's linear elasticity (the paper's two), the nonlinear Jacobian determinant over the
    grid (min, max, folded voxels) and inside the template brain (GM + WM > 0.5: 0.5 / 99.5
    percentiles divided by the median, min, max, folds), and the bending (mm^-2) and
    linear-elastic energies of the non-affine displacement in mm."""
    phi = reg.result.deformation.detach()
    inverse = reg.result.inverse.detach() if reg.result.inverse is not None else None
    tissue = modulate_native(native_tissue.to(phi.device), native_grid, reg.grid, matrix, phi,
                             inverse=inverse, method=method)
    affine_det = affine_jacobian_determinant(matrix)
    nonlinear_det = tissue.jacobian / affine_det
    fold = metrics.folding(nonlinear_det)
    template = reg.template.to(phi.device)
    brain = metrics.jacobian_summary(nonlinear_det, template.sum(0) > 0.5)
    disp = deformation_to_displacement(phi)[0]
    vox = tuple(float(v) for v in reg.grid.voxel_size)
    quality = {
        "warp_mse": float(metrics.warp_mse(tissue.warped, template)),
        "linear_elasticity": float(metrics.linear_elasticity(disp)),
        "jacobian_min": float(fold["min"]),
        "jacobian_max": float(fold["max"]),
        "folded_voxels": int(fold["n_folded"]),
        "brain_jacobian_median": float(brain["median"]),
        "brain_jacobian_p0.5_rel": float(brain["p0.5_rel"]),
        "brain_jacobian_p99.5_rel": float(brain["p99.5_rel"]),
        "brain_jacobian_min": float(brain["min"]),
        "brain_jacobian_max": float(brain["max"]),
        "brain_folded_voxels": int(brain["n_folded"]),
        "bending_energy": float(metrics.bending_energy(disp, vox)),
        "elastic_energy": float(metrics.elastic_energy(disp, vox)),
        "affine_determinant": affine_det,
        "modulation": method,
    }
    mwp = tissue.modulated.detach().float().cpu()
    sums = mwp.double().sum(dim=(1, 2, 3)) * reg.grid.voxel_volume_ml
    return WarpedStep(mwp=mwp, quality=quality, mwp_volumes_ml={"gm": float(sums[0]), "wm": float(sums[1])})


def smooth_maps(mwp: torch.Tensor, fwhms: list[float]) -> dict[float, torch.Tensor]:
    """``{fwhm: (2, X, Y, Z)}`` smoothed mwp1/mwp2 on the 1.5 mm grid."""
    grid, _ = output_grid()
    vox = tuple(float(v) for v in grid.voxel_size)
    return {f: smooth_fwhm(mwp[None], f, vox)[0] for f in fwhms}


def write_warped(paths: dict[str, Path], mwp: torch.Tensor, smoothed: dict[float, torch.Tensor],
                 fwhms: list[float]) -> None:
    """mwp1/mwp2 and every s<fwhm>mwp1/2 with Template_4_GS's stored affine and axis order."""
    grid, stored = output_grid()
    for i, key in enumerate(("mwp1", "mwp2")):
        save_volume(paths[key], mwp[i], grid.affine, orientation_of=stored,
                    description=f"vbmkit {key} modulated warped {'GM' if i == 0 else 'WM'}")
        for f in fwhms:
            tag = f"s{fwhm_tag(f)}{key}"
            save_volume(paths[tag], smoothed[f][i], grid.affine, orientation_of=stored,
                        description=f"vbmkit {tag} FWHM {f:g} mm")


def write_deformation(path: Path, reg: RegistrationStep, matrix: np.ndarray) -> None:
    """y_<name>: for each output-grid voxel, the subject mm it maps to (CAT12's y_ convention)."""
    grid, stored = output_grid()
    field = deformation_to_mm(reg.result.deformation.detach().cpu(), reg.grid, matrix)
    save_deformation(path, field, grid.affine, orientation_of=stored)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
