"""Preprocessed maps for the statistics: check their grids, load them masked, put results back on the grid.

Finding map files and matching them to subject IDs lives in :mod:`vbmkit.io.map_files`; its
public names (``find_maps``, ``file_id``, ``match_ids``, ``Matched``) are re-exported here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vbmkit.errors import ConfigError, ImageError
from vbmkit.io.map_files import Matched, file_id, find_maps, match_ids
from vbmkit.io.nifti import load_grid, load_map, load_volume
from vbmkit.space import Grid
from vbmkit.stats.qc import MapSanity, map_sanity, robust_z

__all__ = ["MaskedMaps", "Matched", "check_grids", "check_map_values", "file_id", "find_maps", "load_maps",
           "load_mask", "match_ids", "unmask", "warn_outlying_means"]

#: Full volumes up to this many bytes are kept in memory for the mean-map mask (one pass over
#: the files); larger studies read every file twice instead.
_ONE_PASS_BYTES = 1 << 30


@dataclass(frozen=True, eq=False)
class MaskedMaps:
    """Maps of N subjects under a mask.

    Attributes
    ----------
    data : torch.Tensor
        (N, V) float32, row n = subject n, column v = v-th in-mask voxel (C order of the RAS grid).
    mask : numpy.ndarray
        (X, Y, Z) bool on ``grid`` (RAS voxel order).
    grid : Grid
        RAS grid of all maps.
    stored_affine : numpy.ndarray
        (4, 4) affine as stored in the first file; outputs keep this orientation.
    """

    data: torch.Tensor
    mask: np.ndarray
    grid: Grid
    stored_affine: np.ndarray


def check_grids(paths: Sequence[Path], *, reference: Path | None = None) -> Grid:
    """Read every header and raise unless all images share the grid of the first (or ``reference``).

    Raises
    ------
    ImageError, GridMismatchError
        Unreadable or non-3-D images; two grids that differ (both files, shapes, affines named).
    """
    ref_path = reference if reference is not None else paths[0]
    ref = load_grid(ref_path)
    for p in paths:
        if p != ref_path:
            ref.check_same(load_grid(p), names=(str(ref_path), str(p)))
    return ref


def load_mask(path: Path, grid: Grid, *, reference: Path) -> np.ndarray:
    """Read a mask image (non-zero = in) that must lie on ``grid``; (X, Y, Z) bool, RAS."""
    vol = load_volume(path)
    vol.grid.check_same(grid, names=(f"mask {path}", str(reference)))
    mask = vol.data.numpy() != 0
    if not mask.any():
        raise ImageError(f"mask {path}: expected some non-zero voxels; the mask is empty")
    return mask


#: A subject map with non-zero values in fewer than this fraction of the in-mask voxels is refused
#: as near-empty (a failed segmentation, a wrong file); all-zero and constant maps are refused too.
MIN_NONZERO_FRACTION = 0.01
#: A subject whose in-mask mean has a robust z (median / MAD over subjects) beyond this is warned about.
OUTLIER_Z = 5.0
#: The robust z needs at least this many subjects (with fewer the median and MAD mean little).
MIN_SUBJECTS_FOR_Z = 5


def check_map_values(sanity: MapSanity, paths: Sequence[Path], *, where: str = "the mask") -> None:
    """Refuse all-zero, constant and near-empty subject maps (see :func:`vbmkit.stats.qc.map_sanity`).

    Raises
    ------
    ImageError
        Naming the first file whose in-mask values are all 0, all one value, or non-zero in fewer
        than :data:`MIN_NONZERO_FRACTION` of the ``sanity.n_voxels`` voxels inside ``where``.
    """
    v = sanity.n_voxels
    for k, p in enumerate(paths):
        if bool(sanity.constant[k]):
            value = float(sanity.first_value[k])
            if value == 0:
                raise ImageError(f"{p}: expected a tissue map with non-zero values inside {where}; all {v} "
                                 "voxels there are 0 (an empty map)")
            raise ImageError(f"{p}: expected values that vary inside {where}; all {v} voxels there are "
                             f"{value:.6g} (a constant map)")
        frac = float(sanity.nonzero_fraction[k])
        if frac < MIN_NONZERO_FRACTION:
            raise ImageError(f"{p}: expected non-zero values in at least {100 * MIN_NONZERO_FRACTION:g} % of the "
                             f"{v} voxels inside {where}; only {round(frac * v)} ({100 * frac:.2g} %) are "
                             "non-zero (a near-empty map)")


def warn_outlying_means(means: torch.Tensor, paths: Sequence[Path], *, where: str = "the mask") -> None:
    """Warn about each map whose mean inside ``where`` has a robust |z| > :data:`OUTLIER_Z`.

    Nothing is checked with fewer than :data:`MIN_SUBJECTS_FOR_Z` maps.
    """
    if len(paths) < MIN_SUBJECTS_FOR_Z:
        return
    means = torch.as_tensor(means, dtype=torch.float64)
    z = robust_z(means)
    median = float(means.quantile(0.5))
    for k in torch.nonzero(z.abs() > OUTLIER_Z).flatten().tolist():
        warnings.warn(f"{paths[k]}: mean inside {where} {float(means[k]):.4g} lies far from the other maps' "
                      f"(median {median:.4g}; robust z {float(z[k]):+.1f}, |z| > {OUTLIER_Z:g}); check this "
                      "subject's preprocessing", stacklevel=3)


def load_maps(paths: Sequence[Path], *, mask: np.ndarray | None = None, mask_threshold: float = 0.1,
              mask_rule: str = "mean", drop_constant: bool = False, check_subjects: bool = True,
              progress: Callable[[int, int], None] | None = None) -> MaskedMaps:
    """Load N maps into an (N, V) matrix under a mask.

    Parameters
    ----------
    paths : sequence of Path
        3-D images on one grid (checked from the headers before any data is read). NaN voxels
        mean 'no data' (outside the field of view, as SPM12 writes them; :func:`load_map`).
    mask : (X, Y, Z) bool ndarray, optional
        RAS mask on the images' grid. When omitted the mask is made by ``mask_rule``.
        Either way a voxel that is NaN in any image is left out (it fails the mask rule).
    mask_threshold : float
        Absolute threshold of the mask rule (CAT12-like default 0.1 for GM maps).
    mask_rule : {"mean", "all"}
        ``mean``: the voxels whose mean over the images exceeds ``mask_threshold``; ``all``: the
        voxels where every image exceeds it (SPM/CAT12 "absolute threshold masking"). ``all``
        never holds more voxels than ``mean``, and shrinks as subjects are added.
    drop_constant : bool
        Also leave out voxels whose value is the same in every image (they have no variance,
        hence no t); the returned ``mask`` excludes them.
    check_subjects : bool
        Refuse all-zero, constant and near-empty maps (:func:`check_map_values`) and warn about
        maps whose in-mask mean is an outlier (:func:`warn_outlying_means`).
    progress : callable(done, total), optional
        Called after each file is read.

    Raises
    ------
    ImageError, GridMismatchError
        Non-3-D, truncated or all-NaN images, Inf voxels, differing grids, an empty mask (also
        when the images' fields of view do not overlap), or a subject map that fails the checks.

    Notes
    -----
    Without ``mask``, all full volumes are kept in memory when they fit in 1 GiB (one read per
    file); otherwise each file is read twice (mean map, then the masked values), so memory holds
    only the (N, V) result. The mean map counts NaN as 0; the voxels NaN in some image are then
    removed from the mask. Constant voxels are removed in place, block by block, so dropping
    them never needs a second (N, V) copy.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageError("images: expected at least one image; got none")
    if mask_rule not in ("mean", "all"):
        raise ConfigError(f"mask_rule: expected 'mean' or 'all'; got {mask_rule!r}")
    grid = check_grids(paths)
    stored_affine = load_grid(paths[0], canonical=False).affine
    n, v_full = len(paths), grid.n_voxels
    one_pass = mask is not None or n * v_full * 4 <= _ONE_PASS_BYTES
    total = n if one_pass else 2 * n
    step = 0
    n_nan = np.zeros(n, dtype=np.int64)

    def tick() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total)

    if mask is None:
        full: np.ndarray | None = np.empty((n, v_full), dtype=np.float32) if one_pass else None
        mean = np.zeros(v_full, dtype=np.float64)
        low = np.full(v_full, np.inf)  # the smallest value of each voxel over the images (NaN: no data)
        complete = np.ones(v_full, dtype=bool)  # data (not NaN) in every image
        for k, p in enumerate(paths):
            arr = load_map(p).data.numpy().reshape(-1)
            finite = np.isfinite(arr)
            n_nan[k] = arr.size - int(finite.sum())
            complete &= finite
            mean += np.where(finite, arr, 0.0)
            if mask_rule == "all":
                np.minimum(low, np.where(finite, arr, np.inf), out=low)
            if full is not None:
                full[k] = arr
            tick()
        by_mean = (mean / n > mask_threshold).reshape(grid.shape)
        if mask_rule == "mean" and not by_mean.any():
            raise ImageError(f"mask: expected voxels whose mean over {n} images exceeds the threshold "
                             f"{mask_threshold}; none does (max mean {mean.max() / n:.4g}; lower "
                             "--mask-threshold or give --mask)")
        above = by_mean if mask_rule == "mean" else (low > mask_threshold).reshape(grid.shape)
        # With the 'all' rule one empty map empties the mask: the subject checks then run on the
        # voxels of the mean rule (a superset), so that the broken file is named, not the mask.
        wide = mask_rule == "all" and check_subjects and bool(by_mean.any())
        checked = (by_mean if wide else above) & complete.reshape(grid.shape)
        if full is not None:
            values = torch.from_numpy(np.ascontiguousarray(full[:, checked.reshape(-1)]))
            del full
        else:
            flat = checked.reshape(-1)
            values = torch.empty((n, int(flat.sum())), dtype=torch.float32)
            for k, p in enumerate(paths):  # second pass: the warning was given in the first
                values[k] = torch.from_numpy(load_map(p, warn=False).data.numpy().reshape(-1)[flat])
                tick()
        if wide and values.shape[1] > 0:
            check_map_values(map_sanity(values), paths)
        if not above.any():
            raise ImageError(f"mask: expected voxels where every one of the {n} images exceeds the threshold "
                             f"{mask_threshold}; none does (largest voxel minimum "
                             f"{np.max(low[np.isfinite(low)], initial=-np.inf):.4g}"
                             "; lower --mask-threshold, use --mask-rule mean or give --mask)")
        mask = above & complete.reshape(grid.shape)
        _report_nan_voxels(above, mask, paths, n_nan)
        if wide:  # keep the columns of the final mask
            values = _keep_columns(values, mask[checked])
        return _finish(values, mask, grid, stored_affine, drop_constant=drop_constant,
                       check_subjects=check_subjects, paths=paths)
    given = np.asarray(mask, dtype=bool)
    flat = given.reshape(-1)
    data = torch.empty((n, int(flat.sum())), dtype=torch.float32)
    for k, p in enumerate(paths):
        data[k] = torch.from_numpy(load_map(p).data.numpy().reshape(-1)[flat])
        finite = torch.isfinite(data[k])
        n_nan[k] = int((~finite).sum())
        if not bool(finite.any()):
            raise ImageError(f"{p}: expected data inside the mask; all {data.shape[1]} mask voxels are NaN "
                             "(no data: the field of view misses the mask)")
        tick()
    complete = torch.isfinite(data).all(dim=0).numpy()
    mask = given.copy()
    mask[given] = complete
    _report_nan_voxels(given, mask, paths, n_nan)
    data = _keep_columns(data, complete)
    return _finish(data, mask, grid, stored_affine, drop_constant=drop_constant,
                   check_subjects=check_subjects, paths=paths)


def _report_nan_voxels(before: np.ndarray, after: np.ndarray, paths: Sequence[Path], n_nan: np.ndarray) -> None:
    """Warn how many mask voxels NaN removed; raise when none is left (naming the emptiest file)."""
    lost = int(before.sum() - after.sum())
    if not after.any():
        worst = int(np.argmax(n_nan))
        raise ImageError(f"mask: expected voxels with data (not NaN) in all {len(paths)} images; none of the "
                         f"{int(before.sum())} mask voxels has: {paths[worst]} is NaN (no data) at "
                         f"{int(n_nan[worst])} voxels (do the fields of view overlap?)")
    if lost:
        warnings.warn(f"mask: {lost} of {int(before.sum())} voxels are NaN (no data) in at least one image; "
                      "left out of the analysis (as SPM's implicit mask)", stacklevel=3)


def _keep_columns(data: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """``data[:, keep]`` for a (V,) bool ``keep``, moving columns left in place (no second copy)."""
    idx = np.flatnonzero(keep)
    if idx.size == data.shape[1]:
        return data
    # keep[j] >= j, so a block never overwrites columns a later block still reads.
    block = 4096
    for start in range(0, idx.size, block):
        cols = torch.from_numpy(idx[start:start + block])
        data[:, start:start + cols.numel()] = data[:, cols]
    return data[:, :idx.size]


def _finish(data: torch.Tensor, mask: np.ndarray, grid: Grid, stored_affine: np.ndarray, *,
            drop_constant: bool, check_subjects: bool = False, paths: Sequence[Path] = ()) -> MaskedMaps:
    if check_subjects:
        sanity = map_sanity(data)
        check_map_values(sanity, paths)
        warn_outlying_means(sanity.mean, paths)
    if not drop_constant:
        return MaskedMaps(data, mask, grid, stored_affine)
    varying = (data.amax(dim=0) > data.amin(dim=0)).numpy()
    if not varying.any():
        raise ImageError(f"images: expected voxels that vary across the {data.shape[0]} images inside the "
                         "mask; every voxel is constant")
    if not varying.all():
        data = _keep_columns(data, varying)
        new_mask = np.zeros(mask.shape, dtype=bool)
        new_mask[mask] = varying
        mask = new_mask
    return MaskedMaps(data, mask, grid, stored_affine)


def unmask(values: np.ndarray | torch.Tensor, mask: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Put (V,) in-mask values back on the (X, Y, Z) grid, ``fill`` outside; float32."""
    vals = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    out = np.full(mask.shape, fill, dtype=np.float32)
    out[mask] = vals
    return out
