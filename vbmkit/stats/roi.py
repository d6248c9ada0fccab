"""Regional volumes: sums of tissue maps over the regions of a label atlas, batched over subjects.

Pure tensor code. A :class:`RegionIndex` is built once per atlas (which voxels belong to which
region); :func:`region_volumes` then turns a batch of maps (B, T, X, Y, Z) into regional and
total volumes (B, T, R) and (B, T) in mL with one scatter-add per voxel chunk, on whatever
device the maps live on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vbmkit.errors import GridMismatchError, ImageError

#: Voxels per chunk: the float64 copy of a chunk of a 64-map batch stays in cache (16 MB),
#: which measured 2-3x faster on CPU than converting the whole batch at once.
DEFAULT_CHUNK = 32768


@dataclass(frozen=True, eq=False)
class RegionIndex:
    """Which voxels of a grid belong to which region.

    Attributes
    ----------
    region_ids : torch.Tensor
        (R,) int64 atlas ids, in the order of the output columns.
    voxels : torch.Tensor
        (M,) int64 flat (C-order) indices of the voxels that carry one of ``region_ids``,
        ascending (so gathers read memory forwards).
    region_of_voxel : torch.Tensor
        (M,) int64 position 0..R-1 of each of those voxels' region.
    n_voxels : torch.Tensor
        (R,) int64 voxel count per region.
    shape : tuple of int
        (X, Y, Z) of the label image.
    """

    region_ids: torch.Tensor
    voxels: torch.Tensor
    region_of_voxel: torch.Tensor
    n_voxels: torch.Tensor
    shape: tuple[int, int, int]

    @property
    def n_regions(self) -> int:
        return int(self.region_ids.numel())

    def to(self, device: torch.device | str) -> RegionIndex:
        """The same index on another device."""
        return RegionIndex(self.region_ids.to(device), self.voxels.to(device),
                           self.region_of_voxel.to(device), self.n_voxels.to(device), self.shape)


@dataclass(frozen=True, eq=False)
class RegionVolumes:
    """Volumes of a batch of maps.

    Attributes
    ----------
    regional : torch.Tensor
        (B, T, R) float64 mL: sum over each region's voxels of the map value times the voxel
        volume.
    total : torch.Tensor
        (B, T) float64 mL over every voxel of the grid (inside the atlas or not).
    region_ml : torch.Tensor
        (R,) float64 mL: volume of each region on the grid (voxel count x voxel volume).
    """

    regional: torch.Tensor
    total: torch.Tensor
    region_ml: torch.Tensor


def region_index(labels: torch.Tensor, region_ids: torch.Tensor | list[int], *,
                 device: torch.device | str | None = None) -> RegionIndex:
    """Index the voxels of a label image by region.

    Parameters
    ----------
    labels : torch.Tensor
        (X, Y, Z) integer region ids (0 = background).
    region_ids : (R,) ints
        Regions to measure, in output order. Ids present in ``labels`` but not listed count
        only towards the total; listed ids absent from ``labels`` get zero volume.
    device : optional
        Where the index lives (default: the device of ``labels``).

    Returns
    -------
    RegionIndex
    """
    if labels.ndim != 3 or labels.is_floating_point():
        raise ImageError(f"labels: expected an (X, Y, Z) integer tensor; got {labels.dtype} "
                         f"of shape {tuple(labels.shape)}")
    device = torch.device(device) if device is not None else labels.device
    ids = torch.as_tensor(region_ids, dtype=torch.int64).reshape(-1).to(device)
    if ids.unique().numel() != ids.numel():
        raise ImageError(f"region_ids: expected unique ids; got {ids.tolist()}")
    flat = labels.reshape(-1).to(device=device, dtype=torch.int64)
    top = int(max(int(flat.max()), int(ids.max()) if ids.numel() else 0)) + 1
    lut = torch.full((top,), -1, dtype=torch.int64, device=device)
    lut[ids] = torch.arange(ids.numel(), device=device)
    pos = lut[flat.clamp(min=0)]
    inside = (pos >= 0).nonzero().squeeze(1)
    region_of_voxel = pos[inside]
    n_voxels = torch.bincount(region_of_voxel, minlength=ids.numel())
    return RegionIndex(ids, inside, region_of_voxel, n_voxels, tuple(int(s) for s in labels.shape))


def region_sums(maps: torch.Tensor, index: RegionIndex, *,
                chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum each map over each region and over the whole grid, accumulating in float64.

    Parameters
    ----------
    maps : torch.Tensor
        (N, X, Y, Z) or (N, V) float maps on the grid of ``index`` (any float dtype).
    index : RegionIndex
        On the device of ``maps``.
    chunk : int, optional
        Voxels per scatter-add step (default :data:`DEFAULT_CHUNK`).

    Returns
    -------
    regional : torch.Tensor
        (N, R) float64 sums over each region's voxels (map units x voxels).
    total : torch.Tensor
        (N,) float64 sums over all voxels.

    Notes
    -----
    ``regional[n, r] = sum_{v : label(v) = id_r} maps[n, v]``, computed as a scatter-add
    (``index_add_``) of the gathered in-atlas voxels, chunk by chunk, each chunk converted to
    float64 before adding, so the sums are exact to float64 rounding (about 1e-16 relative)
    whatever the number of voxels.
    """
    chunk = chunk if chunk is not None else DEFAULT_CHUNK
    n_vox = index.shape[0] * index.shape[1] * index.shape[2]
    flat = maps.reshape(maps.shape[0], -1)
    if flat.shape[1] != n_vox:
        raise GridMismatchError(f"maps: expected {index.shape} = {n_vox} voxels per map like the atlas; "
                         f"got shape {tuple(maps.shape)}")
    if not flat.is_floating_point():
        flat = flat.float()
    n = flat.shape[0]
    # Reused chunk buffers: allocating a fresh float64 chunk each step costs page faults that
    # measured 3x slower on CPU than the arithmetic itself.
    buf = torch.empty(n, chunk, dtype=flat.dtype, device=flat.device)
    buf64 = torch.empty(n, chunk, dtype=torch.float64, device=flat.device)
    regional = torch.zeros(n, index.n_regions, dtype=torch.float64, device=flat.device)
    for start in range(0, index.voxels.numel(), chunk):
        vox = index.voxels[start:start + chunk]
        m = vox.numel()
        if m == chunk:
            torch.index_select(flat, 1, vox, out=buf)
            buf64.copy_(buf)
            regional.index_add_(1, index.region_of_voxel[start:start + chunk], buf64)
        else:
            regional.index_add_(1, index.region_of_voxel[start:start + chunk],
                                flat.index_select(1, vox).to(torch.float64))
    total = torch.zeros(n, dtype=torch.float64, device=flat.device)
    for start in range(0, n_vox, chunk):
        part = flat[:, start:start + chunk]
        m = part.shape[1]
        target = buf64 if m == chunk else buf64[:, :m]
        target.copy_(part)
        total += target.sum(dim=1)
    return regional, total


def region_volumes(maps: torch.Tensor, index: RegionIndex, *, voxel_volume_ml: float,
                   chunk: int | None = None) -> RegionVolumes:
    """Regional and total volumes in mL of a batch of (modulated) tissue maps.

    Parameters
    ----------
    maps : torch.Tensor
        (B, T, X, Y, Z) float: B subjects, T tissues (e.g. mwp1, mwp2[, mwp3]); values are
        tissue fractions (modulated: times the Jacobian), non-negative.
    index : RegionIndex
        From :func:`region_index` of the atlas on the same grid, on the maps' device.
    voxel_volume_ml : float
        Volume of one voxel of the grid in mL (1.5 mm isotropic: 0.003375 mL).
    chunk : int, optional
        See :func:`region_sums`.

    Returns
    -------
    RegionVolumes

    Notes
    -----
    ``V[b, t, r] = dv * sum_{v in region r} m[b, t, v]`` with ``dv`` the voxel volume; for
    Jacobian-modulated maps this is the native-space volume of the tissue that warps into the
    region. ``region_ml[r] = dv * |{v in region r}|``.
    """
    if maps.ndim != 5:
        raise ImageError(f"maps: expected (B, T, X, Y, Z); got shape {tuple(maps.shape)}")
    b, t = maps.shape[:2]
    regional, total = region_sums(maps.reshape(b * t, *maps.shape[2:]), index, chunk=chunk)
    dv = float(voxel_volume_ml)
    return RegionVolumes(regional=(regional * dv).reshape(b, t, -1), total=(total * dv).reshape(b, t),
                         region_ml=index.n_voxels.to(torch.float64) * dv)
