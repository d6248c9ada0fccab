"""Template-space ROI volumes (``vbmkit roi``): read each modulated map onto the atlas grid, check it, sum it.

Also the value checks of one tissue map (:func:`check_values`), shared with the native-space
measurement (:mod:`vbmkit.workflows.roi.native`). Orchestration only: the sums come from
:func:`vbmkit.stats.roi.region_volumes`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vbmkit.errors import ImageError
from vbmkit.io.atlas import Atlas, same_space
from vbmkit.io.maps import check_map_values, warn_outlying_means
from vbmkit.io.nifti import load_map
from vbmkit.space import resample
from vbmkit.stats.qc import map_sanity
from vbmkit.stats.roi import region_index, region_volumes
from vbmkit.workflows.progress import ProgressStages
from vbmkit.workflows.roi.inputs import SubjectMaps

#: Negative voxels down to this value are interpolation overshoot (clipped with a warning);
#: below it the map is not a tissue map and the run stops.
NEGATIVE_TOLERANCE = 1e-2


def read_map_on_atlas(path: Path, atlas: Atlas, warned: set, means: dict | None = None) -> torch.Tensor:
    """Read one map onto the atlas grid: resample when needed, check its values (:func:`check_values`).

    NaN voxels mean 'no data' (SPM12's outside-the-field-of-view; one warning per file) and
    count as 0 in every sum; trilinear resampling spreads NaN to the target voxels whose
    interpolation touches one, so a voxel at the border of the data is left out rather than
    diluted. ``means`` (path -> in-atlas mean) collects what the outlier check needs.
    """
    vol = load_map(path)  # Inf, or no finite voxel at all -> ImageError naming the file
    data = vol.data
    if not same_space(vol.grid, atlas, source=str(path)):
        key = (vol.grid.shape, vol.grid.affine.round(3).tobytes())
        if key not in warned:
            warned.add(key)
            warnings.warn(f"{path}: grid {vol.grid.shape} ({np.round(vol.grid.voxel_size, 2).tolist()} mm) "
                          f"is not the atlas grid {atlas.grid.shape}; resampling the maps (trilinear) onto "
                          "it (same space, other resolution)", stacklevel=3)
        # mwp values are densities (tissue fraction x Jacobian): they resample as values and
        # volumes follow from the atlas grid's voxel volume.
        data = resample(data, vol.grid, atlas.grid, mode="bilinear")
    return check_values(data, path, inside=atlas.labels > 0, means=means)


def check_values(data: torch.Tensor, path: Path, *, inside: torch.Tensor | None = None,
                 means: dict | None = None) -> torch.Tensor:
    """Check one tissue map and return it with NaN ('no data') set to 0.

    Parameters
    ----------
    data : torch.Tensor
        (X, Y, Z) map; NaN where it has no data.
    inside : torch.Tensor, optional
        (X, Y, Z) bool brain (the atlas's labelled voxels); default the whole grid.
    means : dict, optional
        Receives ``means[path]`` = the map's mean over the finite voxels ``inside``.

    Raises
    ------
    ImageError
        Naming the file: clearly negative voxels (below ``-NEGATIVE_TOLERANCE``; slight
        interpolation overshoot is clipped with a warning), no finite voxel inside the brain,
        or an all-zero, constant or near-empty map there (:func:`vbmkit.io.maps.check_map_values`).
    """
    finite = torch.isfinite(data)
    region = finite if inside is None else finite & inside.to(finite.device)
    where = "the grid" if inside is None else "the atlas"
    if not bool(region.any()):
        raise ImageError(f"{path}: expected data (not NaN) inside {where}; all its voxels there are NaN "
                         "(no data: the field of view misses the brain)")
    data = torch.where(finite, data, torch.zeros_like(data))
    low = float(data.min())
    if low < 0:
        if low < -NEGATIVE_TOLERANCE:
            raise ImageError(f"{path}: expected tissue values >= 0; found a minimum of {low:.4g} "
                             f"({int((data < 0).sum())} negative voxels)")
        warnings.warn(f"{path}: {int((data < 0).sum())} slightly negative voxels (min {low:.2g}, "
                      "interpolation overshoot) clipped to 0", stacklevel=3)
        data = data.clamp(min=0)
    values = data[region] if inside is not None else data[finite]
    sanity = map_sanity(values[None])
    check_map_values(sanity, [path], where=where)
    if means is not None:
        means[path] = float(sanity.mean[0])
    return data


def template_volumes(subjects: Sequence[SubjectMaps], tissues: Sequence[str], atl: Atlas | Sequence[Atlas], *,
                     device: torch.device, batch_size: int = 16, progress: bool = True
                     ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, dict[str, float]]:
    """Regional and total mL of the modulated maps, batch by batch, + timings.

    Parameters
    ----------
    atl : Atlas or sequence of Atlas
        One atlas, or several on one grid (each map is read and checked once for all of them).

    Returns
    -------
    regional : ndarray (N, T, R), or a list of them (one per atlas) when ``atl`` is a sequence
        mL per subject, tissue and region.
    total : ndarray (N, T)
        mL over the whole grid.
    timing : dict
        Seconds spent reading and summing.
    """
    atlases = [atl] if isinstance(atl, Atlas) else list(atl)
    first = atlases[0]
    for other in atlases[1:]:
        if not other.grid.matches(first.grid):
            raise ValueError(f"atlases: expected one grid for all; {other.name} has {other.grid.shape}, "
                             f"{first.name} {first.grid.shape}")
    inside = torch.zeros(first.grid.shape, dtype=torch.bool)
    for a in atlases:
        inside |= a.labels > 0
    # the value checks look at the union of the atlases' labels (one atlas: its labels, as before)
    probe = Atlas(first.name, torch.where(inside, 1, 0), first.grid, first.stored_affine, first.table)
    indices = [region_index(a.labels, a.region_ids, device=device) for a in atlases]
    n, t = len(subjects), len(tissues)
    regional = [np.zeros((n, t, index.n_regions)) for index in indices]
    total = np.zeros((n, t))
    warned: set = set()
    means: dict = {}
    t_read = t_compute = 0.0
    with ProgressStages(enabled=progress) as stages, ThreadPoolExecutor(max_workers=2) as pool:
        tick = stages.callback("ROI volumes", unit="subjects")
        for start in range(0, n, batch_size):
            batch = subjects[start:start + batch_size]
            tr = time.perf_counter()
            files = [s.maps[ti] for s in batch for ti in tissues]
            maps = list(pool.map(lambda p: read_map_on_atlas(p, probe, warned, means), files))
            block = torch.stack(maps).reshape(len(batch), t, *first.grid.shape).to(device)
            tc = time.perf_counter()
            for k, index in enumerate(indices):
                vols = region_volumes(block, index, voxel_volume_ml=first.grid.voxel_volume_ml)
                regional[k][start:start + len(batch)] = vols.regional.cpu().numpy()
            total[start:start + len(batch)] = vols.total.cpu().numpy()
            t_read += tc - tr
            t_compute += time.perf_counter() - tc
            if tick is not None:
                tick(start + len(batch), n)
    for tissue in tissues:  # an outlying in-atlas mean: a warning naming the file and its robust z
        paths = [s.maps[tissue] for s in subjects]
        warn_outlying_means(torch.tensor([means[p] for p in paths]), paths, where="the atlas")
    timing = {"read": round(t_read, 3), "volumes": round(t_compute, 3)}
    return (regional[0] if isinstance(atl, Atlas) else regional), total, timing
