"""Synthetic T1 phantoms with known tissue fractions, built from tissue probability maps.

:func:`tissue_from_template` turns CAT12's ``Template_4_GS`` channels (GM, WM, rest) into
GM/WM/CSF fractions inside an intracranial mask; :func:`make_phantom` deforms such maps with a
random smooth displacement field and renders a T1-like image (partial-volume mixing of class
intensities, a smooth multiplicative bias field, optional blur, Rician or Gaussian noise).
Pure tensor code: callers load the templates (``vbmkit.io.templates``) and pass tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.sampling import grid_sample

#: Mean T1 intensity of each class relative to WM (GM, WM, CSF), before jitter.
DEFAULT_CONTRAST = {"gm": 0.6, "wm": 0.9, "csf": 0.25, "jitter": 0.03}


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic T1 with its truth.

    Attributes
    ----------
    t1 : torch.Tensor
        (X, Y, Z) float32 T1-like intensities (WM ~ 0.9 before bias and noise).
    tissue : torch.Tensor
        (3, X, Y, Z) float32 true GM, WM, CSF fractions after the deformation (sum 1 in the brain).
    labels : torch.Tensor
        (X, Y, Z) int64 hard truth in CAT12 order: 0 background, 1 CSF, 2 GM, 3 WM
        (argmax of ``tissue`` inside ``brain_mask``).
    brain_mask : torch.Tensor
        (X, Y, Z) bool, total tissue fraction > 0.5.
    displacement : torch.Tensor
        (3, X, Y, Z) float32 displacement in voxels: phantom voxel ``x`` shows the input maps
        at ``x + displacement[:, x]``.
    bias : torch.Tensor
        (X, Y, Z) float32 multiplicative bias field that was applied.
    means : torch.Tensor
        (3,) float32 GM, WM, CSF intensities used (after jitter).
    """

    t1: torch.Tensor
    tissue: torch.Tensor
    labels: torch.Tensor
    brain_mask: torch.Tensor
    displacement: torch.Tensor
    bias: torch.Tensor
    means: torch.Tensor


def tissue_from_template(gm_wm_rest: torch.Tensor, *, threshold: float = 0.15, dilate_vox: int = 1) -> torch.Tensor:
    """GM, WM, CSF fractions from a template's GM, WM and "rest" channels.

    Parameters
    ----------
    gm_wm_rest : torch.Tensor
        (3, X, Y, Z) GM, WM and rest probabilities (``Template_4_GS``: rest is 1 outside the
        head and holds CSF, meninges and skull inside it).
    threshold : float
        Voxels with GM + WM above it, dilated by ``dilate_vox`` voxels (26-neighbourhood),
        form the intracranial mask; rest counts as CSF only inside it.

    Returns
    -------
    torch.Tensor
        (3, X, Y, Z) float32 GM, WM, CSF, summing to 1 inside the mask and 0 outside.
    """
    if gm_wm_rest.ndim != 4 or gm_wm_rest.shape[0] != 3:
        raise ImageError(f"tissue_from_template: expected (3, X, Y, Z) GM, WM, rest; got {tuple(gm_wm_rest.shape)}")
    t = gm_wm_rest.float().clamp(0, 1)
    inside = ((t[0] + t[1]) > threshold).float()[None, None]
    if dilate_vox > 0:
        inside = F.max_pool3d(inside, 2 * dilate_vox + 1, stride=1, padding=dilate_vox)
    inside = inside[0, 0] > 0
    out = torch.stack([t[0], t[1], t[2]]) * inside
    total = out.sum(0, keepdim=True)
    return torch.where(total > 0, out / total.clamp_min(1e-6), out)


def smooth_random_field(shape: Sequence[int], spacing_vox: float, *, generator: torch.Generator,
                        channels: int = 1, dtype=torch.float32) -> torch.Tensor:
    """Smooth zero-mean random field: Gaussian noise on a control lattice every ``spacing_vox``
    voxels, smoothed there and interpolated trilinearly.

    Returns
    -------
    torch.Tensor
        (channels, X, Y, Z), each channel scaled to max |value| = 1.
    """
    coarse = [max(2, int(round(s / spacing_vox)) + 3) for s in shape]
    noise = torch.randn((1, channels, *coarse), generator=generator, dtype=torch.float32)
    # smooth on the lattice (FWHM 1.5 lattice cells), then interpolate: smooth and cheap
    noise = smooth_fwhm(noise, 1.5, (1.0, 1.0, 1.0))
    field = F.interpolate(noise, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True)[0]
    field = field - field.mean(dim=(1, 2, 3), keepdim=True)
    scale = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (field / scale).to(dtype)


def _identity(shape, dtype) -> torch.Tensor:
    axes = [torch.arange(n, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, X, Y, Z) voxel indices


def _sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of (C, X, Y, Z) ``maps`` at voxel ``coords`` (3, X, Y, Z); zeros outside."""
    size = torch.tensor(maps.shape[1:], dtype=coords.dtype).reshape(3, 1, 1, 1)
    norm = 2.0 * coords / (size - 1).clamp_min(1) - 1.0
    grid = norm.permute(1, 2, 3, 0).flip(-1)[None]  # grid_sample wants (z, y, x) last
    return grid_sample(maps[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def make_phantom(
    tissue_maps: torch.Tensor,
    *,
    generator: torch.Generator,
    deformation_mm: float = 4.0,
    voxel_size_mm: Sequence[float] = (1.0, 1.0, 1.0),
    contrast: dict | None = None,
    bias_strength: float = 0.2,
    noise_sd: float = 0.03,
    noise: str = "rician",
    blur_fwhm_mm: float = 0.0,
    deformation_spacing_mm: float = 24.0,
    sharpen: float = 3.0,
) -> Phantom:
    """Render a T1-like phantom from GM/WM/CSF fraction maps.

    Parameters
    ----------
    tissue_maps : torch.Tensor
        (3, X, Y, Z) GM, WM, CSF fractions on the phantom grid (e.g. from
        :func:`tissue_from_template` upsampled to 1 mm); 0 outside the head.
    generator : torch.Generator
        Source of all randomness (deformation, contrast jitter, bias, noise).
    deformation_mm : float
        Largest displacement of the random smooth deformation, mm (0: none).
    voxel_size_mm : 3 floats
        Voxel size of the grid, mm.
    contrast : dict, optional
        Keys ``gm``, ``wm``, ``csf`` (mean intensities) and ``jitter`` (relative SD of a random
        per-phantom change of each mean); defaults :data:`DEFAULT_CONTRAST`.
    bias_strength : float
        The log bias field spans [-bias_strength, bias_strength] (0.2: about +-20 %).
    noise_sd : float
        Noise standard deviation in intensity units (WM ~ 0.9).
    noise : {"rician", "gaussian"}
        Rician (magnitude of complex Gaussian noise) or additive Gaussian noise.
    blur_fwhm_mm : float
        Gaussian blur of the noise-free image (point spread), mm FWHM.
    deformation_spacing_mm : float
        Control-point spacing of the random deformation, mm (larger: smoother).
    sharpen : float
        Exponent ``g`` applied to the fractions, ``f_k^g / sum_j f_j^g`` (1: as given). Group
        templates are blurrier than one brain (most of their voxels mix tissues); ``g = 3``
        gives individual-like thin partial-volume boundaries and keeps the argmax (the truth).

    Returns
    -------
    Phantom

    Notes
    -----
    ``t1(x) = b(x) * sum_k f_k(x + u(x)) mu_k`` (then blur and noise), with ``f_k`` the input
    fractions, ``u`` a smooth random displacement and ``b = exp(s g)`` for a smooth random ``g``
    with max |g| = 1. Partial volume arises wherever the fractions mix.
    """
    if tissue_maps.ndim != 4 or tissue_maps.shape[0] != 3:
        raise ImageError(f"make_phantom: tissue_maps must be (3, X, Y, Z) GM, WM, CSF; got {tuple(tissue_maps.shape)}")
    if noise not in ("rician", "gaussian"):
        raise ImageError(f"make_phantom: noise must be 'rician' or 'gaussian'; got {noise!r}")
    if sharpen <= 0:
        raise ImageError(f"make_phantom: sharpen must be > 0; got {sharpen}")
    if deformation_mm < 0 or noise_sd < 0 or bias_strength < 0 or blur_fwhm_mm < 0:
        raise ImageError("make_phantom: deformation_mm, noise_sd, bias_strength and blur_fwhm_mm must be >= 0; "
                         f"got {deformation_mm}, {noise_sd}, {bias_strength}, {blur_fwhm_mm}")
    c = dict(DEFAULT_CONTRAST)
    c.update(contrast if contrast is not None else {})
    vox = torch.tensor([float(v) for v in voxel_size_mm], dtype=torch.float32)
    shape = tuple(int(s) for s in tissue_maps.shape[1:])
    maps = tissue_maps.float().clamp(0, 1)
    if sharpen != 1.0:
        total_in = maps.sum(0, keepdim=True)
        powered = maps ** float(sharpen)
        maps = powered / powered.sum(0, keepdim=True).clamp_min(1e-12) * total_in

    spacing_vox = float(deformation_spacing_mm / vox.mean())
    if deformation_mm > 0:
        u = smooth_random_field(shape, spacing_vox, generator=generator, channels=3)
        mag = u.norm(dim=0).amax().clamp_min(1e-12)
        u = u / mag * (deformation_mm / vox.reshape(3, 1, 1, 1))
    else:
        u = torch.zeros((3, *shape))
    tissue = _sample(maps, _identity(shape, torch.float32) + u).clamp(0, 1)
    total = tissue.sum(0)
    brain = total > 0.5
    tissue = torch.where(brain, tissue / total.clamp_min(1e-6), torch.zeros_like(tissue))
    labels = torch.zeros(shape, dtype=torch.int64)
    cat12 = torch.tensor([2, 3, 1])  # GM, WM, CSF -> CAT12 codes
    labels[brain] = cat12[tissue.argmax(0)[brain]]

    jit = 1.0 + float(c["jitter"]) * torch.randn(3, generator=generator)
    means = (torch.tensor([float(c["gm"]), float(c["wm"]), float(c["csf"])]) * jit).float()
    clean = (tissue * means.reshape(3, 1, 1, 1)).sum(0)
    if bias_strength > 0:
        g = smooth_random_field(shape, 2 * spacing_vox, generator=generator)[0]
        bias = torch.exp(bias_strength * g)
    else:
        bias = torch.ones(shape)
    img = clean * bias
    if blur_fwhm_mm > 0:
        img = smooth_fwhm(img, blur_fwhm_mm, tuple(vox.tolist()))
    if noise_sd > 0:
        n1 = noise_sd * torch.randn(shape, generator=generator)
        if noise == "rician":
            n2 = noise_sd * torch.randn(shape, generator=generator)
            img = torch.sqrt((img + n1) ** 2 + n2 ** 2)
        else:
            img = (img + n1).clamp_min(0)
    return Phantom(t1=img.float(), tissue=tissue.float(), labels=labels, brain_mask=brain,
                   displacement=u.float(), bias=bias.float(), means=means)
