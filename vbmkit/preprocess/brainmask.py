"""Brain extraction with deepbet's two networks, and the safeguards around it.

:func:`deepbet_probability` runs a given pair of networks the way deepbet 1.0.2 does (a
bounding-box network on the whole image at 128^3, then the mask network at 256^3 inside the
box); :func:`brain_mask` thresholds it, keeps the largest component, fills holes and, for
images that are already skull-stripped, adds the image's own foreground so that no brain is cut.
The networks are passed in (loading them is I/O: :mod:`vbmkit.io.weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from vbmkit.errors import ImageError

# deepbet's input statistics: after clipping to the robust range and standardising, the
# networks were trained on 0.226 * z + 0.449 (ImageNet's mean/std of grey images).
_NET_MEAN, _NET_STD = 0.449, 0.226
_CONNECT26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class BrainMaskResult:
    """Output of :func:`brain_mask`.

    Attributes
    ----------
    mask : torch.Tensor
        (X, Y, Z) bool on the input grid.
    probability : torch.Tensor
        (X, Y, Z) float32 network brain probability (0 outside the bounding box).
    bbox : tuple of slice
        Bounding box in which the fine network ran.
    skull_stripped : bool
        True when the input looked already skull-stripped and its foreground was added.
    """

    mask: torch.Tensor
    probability: torch.Tensor
    bbox: tuple[slice, slice, slice]
    skull_stripped: bool


def net_normalize(x: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """Map intensities to the input distribution deepbet's networks expect.

    Notes
    -----
    ``u = clip((x - low) / (high - low), 0, 1)``, ``z = (u - mean u) / std u``,
    returned as ``0.226 z + 0.449``.
    """
    u = ((x - low) / max(float(high - low), 1e-12)).clamp(0.0, 1.0)
    z = (u - u.mean()) / u.std().clamp_min(1e-12)
    return _NET_STD * z + _NET_MEAN


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a boolean array (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=_CONNECT26)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def bbox_with_margin(mask_small: torch.Tensor, shape: tuple[int, int, int], *,
                     margin: float = 0.1, threshold: float = 0.02) -> tuple[slice, slice, slice]:
    """Bounding box of a low-resolution mask, scaled to ``shape`` and widened by ``margin``.

    A plane belongs to the box when the mean of the mask over it exceeds ``threshold`` (as in
    deepbet); the box is then enlarged by ``margin`` of its size on each side.
    """
    scale = np.asarray(shape, dtype=np.float64) / np.asarray(mask_small.shape, dtype=np.float64)
    slices = []
    for axis in range(3):
        dims = tuple(d for d in range(3) if d != axis)
        idx = torch.nonzero(mask_small.float().mean(dims) > threshold).flatten()
        if idx.numel() == 0:
            raise ImageError("brain extraction: expected a head or brain in the image; the coarse "
                             "network found too little foreground to place a bounding box")
        lo, hi = float(idx.min()), float(idx.max()) + 1.0
        centre, size = scale[axis] * (lo + hi) / 2, scale[axis] * (hi - lo) * (1 + 2 * margin)
        centre, size = round(centre), round(size)
        start, stop = int(centre - size / 2), int(centre + size / 2)
        slices.append(slice(max(0, start), min(shape[axis], stop)))
    return tuple(slices)  # type: ignore[return-value]


@torch.no_grad()
def deepbet_probability(image: torch.Tensor, model: torch.nn.Module, bbox_model: torch.nn.Module, *,
                        small_shape: tuple[int, int, int] = (128, 128, 128),
                        shape: tuple[int, int, int] = (256, 256, 256),
                        margin: float = 0.1) -> tuple[torch.Tensor, tuple[slice, slice, slice]]:
    """Brain probability of a RAS image from deepbet's two networks.

    Parameters
    ----------
    image : torch.Tensor
        (X, Y, Z) float32 T1 intensities in RAS voxel order (any scale).
    model, bbox_model : torch.nn.Module
        deepbet's fine and coarse networks (input (1, 1, D, H, W), output (1, 2, D, H, W)
        whose channel 1 is the brain probability), on the device that ``image`` is moved to.
    small_shape, shape : 3 ints
        Network input shapes of the coarse and fine passes.
    margin : float
        Fraction of the box size added on each side of the coarse bounding box.

    Returns
    -------
    probability : torch.Tensor
        (X, Y, Z) float32 on the image's device, 0 outside the box.
    bbox : tuple of slice

    Notes
    -----
    Resizing uses nearest-exact interpolation, and the robust range (0.5 and 99.5 percentiles)
    comes from the coarse 128^3 image, as in deepbet, so the networks see what they saw in training.
    """
    device = next(model.parameters()).device
    x = torch.nan_to_num(image.to(device=device, dtype=torch.float32))
    small = F.interpolate(x[None, None], small_shape, mode="nearest-exact")[0, 0]
    low, high = torch.quantile(small.flatten(), torch.tensor([0.005, 0.995], device=device))
    coarse = bbox_model(net_normalize(small, low, high)[None, None])[0, 1]
    coarse_mask = largest_component((coarse > 0.5).cpu().numpy())
    bbox = bbox_with_margin(torch.from_numpy(coarse_mask), tuple(x.shape), margin=margin)
    crop = x[bbox]
    fine_in = F.interpolate(crop[None, None], shape, mode="nearest-exact")[0, 0]
    fine = model(net_normalize(fine_in, low, high)[None, None])[0, 1]
    prob = torch.zeros_like(x)
    prob[bbox] = F.interpolate(fine[None, None], tuple(crop.shape), mode="nearest-exact")[0, 0]
    return prob, bbox


def foreground(image: torch.Tensor, *, fraction: float = 0.01) -> np.ndarray:
    """Largest connected, hole-filled component of voxels above ``fraction`` of the 99th percentile.

    For a skull-stripped image this is the brain the image's author kept.
    """
    x = image.detach().float()
    nonzero = x[x > 0]
    if nonzero.numel() == 0:
        return np.zeros(tuple(x.shape), dtype=bool)
    sample = nonzero[:: max(1, nonzero.numel() // 2_000_000)]  # quantile has a size limit
    level = fraction * float(torch.quantile(sample, 0.99))
    fg = largest_component((x > level).cpu().numpy())
    return ndimage.binary_fill_holes(fg)


def brain_mask(image: torch.Tensor, model: torch.nn.Module | None, bbox_model: torch.nn.Module | None, *,
               threshold: float = 0.5, mode: str = "auto", skull_stripped_ratio: float = 1.4,
               dilate: int = 0, small_shape: tuple[int, int, int] = (128, 128, 128),
               shape: tuple[int, int, int] = (256, 256, 256),
               progress: Callable[[str], None] | None = None) -> BrainMaskResult:
    """Binary brain mask of a RAS T1 image.

    Parameters
    ----------
    image : torch.Tensor
        (X, Y, Z) float32 intensities, RAS voxel order.
    model, bbox_model : torch.nn.Module or None
        deepbet's networks (:func:`vbmkit.io.weights.load_brain_extraction_models`); only
        ``mode="never"`` runs without them.
    threshold : float
        Probability above which a voxel is brain (deepbet's default 0.5).
    mode : {"auto", "always", "never"}
        ``always``: the network mask only. ``never``: the image's foreground (for inputs the
        user guarantees are skull-stripped). ``auto``: the network mask, united with the
        foreground when the foreground is at most ``skull_stripped_ratio`` times the network
        mask (the input is then already skull-stripped, and the union keeps any brain voxel
        the network missed).
    dilate : int
        Extra dilation of the final mask, in voxels (0: none).
    small_shape, shape : 3 ints
        Network input shapes (deepbet's 128^3 and 256^3; smaller only for tests).
    progress : callable, optional
        Called with a short message before each stage.

    Returns
    -------
    BrainMaskResult

    Notes
    -----
    After thresholding, the largest 26-connected component is kept and holes are filled,
    as in deepbet's post-processing. A full-head T1 has a foreground 2-5 times the brain volume,
    a skull-stripped one about 1.0-1.2 times, so the ratio test separates the two.
    """
    if mode not in ("auto", "always", "never"):
        raise ImageError(f"brain_mask mode: expected 'auto', 'always' or 'never'; got {mode!r}")
    if image.ndim != 3:
        raise ImageError(f"brain_mask: expected an (X, Y, Z) image; got shape {tuple(image.shape)}")
    fg = foreground(image) if mode != "always" else None
    if mode == "never":
        full = tuple(slice(0, n) for n in image.shape)
        return _finish(fg, torch.from_numpy(fg.astype(np.float32)), full, True, dilate, image.device)
    if model is None or bbox_model is None:
        raise ImageError(f"brain_mask mode {mode!r}: expected deepbet's two networks; got None")
    if progress is not None:
        progress("brain extraction network")
    prob, bbox = deepbet_probability(image, model, bbox_model, small_shape=small_shape, shape=shape)
    net = (prob > threshold).cpu().numpy()
    net = largest_component(net)
    net = ndimage.binary_fill_holes(net)
    stripped = False
    if fg is not None and net.any() and fg.sum() <= skull_stripped_ratio * net.sum():
        net, stripped = net | fg, True
    return _finish(net, prob.float(), bbox, stripped, dilate, image.device)


def _finish(mask: np.ndarray, prob: torch.Tensor, bbox, stripped: bool, dilate: int,
            device: torch.device) -> BrainMaskResult:
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=int(dilate))
    if not mask.any():
        raise ImageError("brain extraction: expected a brain in the image; the mask is empty "
                         "(is this a T1-weighted head image?)")
    return BrainMaskResult(mask=torch.from_numpy(np.ascontiguousarray(mask)).to(device),
                           probability=prob.to(device), bbox=bbox, skull_stripped=stripped)
