"""Preprocessed maps for the statistics: find them, match them to subject IDs, load them masked.

Layouts recognised when a folder is given (``kind`` is the map kind, e.g. ``s6mwp1``):

==========================  ==============================================================
vbmkit                      ``<out>/<name>/mri/<kind><name>.nii.gz``
CAT12                       ``<dir>/mri/<kind><name>.nii``; BIDS input: ``sub-X/[ses-Y/]anat/<kind>sub-X_..._T1w.nii``
deepmriprep ``sub``/``cat``  ``<dir>/<name>/[mri/]<kind><name>.nii.gz``
deepmriprep ``flat``         ``<dir>/<kind><name>.nii.gz``
deepmriprep ``mod``          ``<dir>/<kind>/<name>.nii.gz``
deepmriprep BIDS             ``derivatives/deepmriprep-v*/sub-X/anat/sub-X_<kind>.nii.gz``
==========================  ==============================================================

Files and globs are taken as given. Each file's subject is the covariate ID that occurs in
its name (:func:`match_ids`).
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vbmkit.errors import CovariateError, ImageError
from vbmkit.io.nifti import image_stem, is_image_path, load_grid, load_map, load_volume
from vbmkit.space import Grid
from vbmkit.stats.qc import MapSanity, map_sanity, robust_z

_GLOB_CHARS = re.compile(r"[*?\[]")
#: Full volumes up to this many bytes are kept in memory for the mean-map mask (one pass over
#: the files); larger studies read every file twice instead.
_ONE_PASS_BYTES = 1 << 30


def _is_map_of_kind(path: Path, kind: str) -> bool:
    stem = image_stem(path)
    if stem.startswith("."):  # temporary files of atomic writes
        return False
    return stem.startswith(kind) or stem.endswith(f"_{kind}") or path.parent.name == kind


def find_maps(inputs: Iterable[str | os.PathLike], *, kind: str = "s6mwp1") -> list[Path]:
    """Expand files, globs and output folders into a sorted list of map files.

    Parameters
    ----------
    inputs : iterable of str or path
        Image files (taken as given), glob patterns (image files among the matches are taken
        as given; folders among them are searched), or folders searched recursively for maps
        of ``kind`` in the layouts listed in the module docstring.
    kind : str
        Map kind to select inside folders: file names starting with it (``s6mwp1sub-01.nii``),
        ending with ``_<kind>`` (deepmriprep BIDS) or files in a folder named ``kind``
        (deepmriprep ``mod`` layout).

    Returns
    -------
    list of Path
        Unique files in sorted order.

    Raises
    ------
    ImageError
        When an input matches nothing (naming the input and, for folders, the kind looked for).
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        if _GLOB_CHARS.search(text) and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ImageError(f"images {text!r}: expected the glob to match image files; it matches nothing")
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(text)]
        for p in paths:
            if p.is_dir():
                hits = sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f)
                              and _is_map_of_kind(f, kind))
                if not hits:
                    raise ImageError(f"images {p}: expected {kind}* maps in this folder (vbmkit, CAT12 "
                                     f"or deepmriprep layout); found none (choose the kind with --map)")
                found += hits
            elif p.is_file():
                if is_image_path(p):
                    found.append(p)
                elif not _GLOB_CHARS.search(text):
                    raise ImageError(f"images {p}: expected a NIfTI image (.nii or .nii.gz) or a folder")
            else:
                raise ImageError(f"images {p}: expected a file, a glob or a folder; it does not exist")
    unique = sorted({f.resolve(): f for f in found}.values(), key=lambda f: str(f))
    if not unique:
        raise ImageError(f"images {list(map(str, inputs))}: expected at least one image; found none")
    return unique


def _occurs(identifier: str, name: str) -> bool:
    """True when ``identifier`` occurs in ``name`` as a whole ID, not as the start of a longer one.

    A trailing digit must not be followed by another digit (``sub-01`` is not in ``sub-010``);
    a leading digit must not follow another digit (``01`` is not in ``101``). Letters before
    the ID are allowed because map kinds are glued to it (``s6mwp1sub-01``).
    """
    start = 0
    while True:
        i = name.find(identifier, start)
        if i < 0:
            return False
        j = i + len(identifier)
        after_ok = j == len(name) or not (identifier[-1].isalnum() and name[j].isalnum()
                                           and (name[j].isdigit() == identifier[-1].isdigit()))
        before_ok = i == 0 or not (identifier[0].isdigit() and name[i - 1].isdigit())
        if after_ok and before_ok:
            return True
        start = i + 1


def file_id(path: Path, ids: Sequence[str], *, kind: str | None = None) -> str | None:
    """The subject ID of one file: the longest ID occurring in its name, else in its folders.

    Raises
    ------
    CovariateError
        When two different IDs of the same, longest length occur in one name.
    """
    stem = image_stem(path)
    if kind and stem.startswith(kind):
        stem = stem[len(kind):]  # "s6mwp1" must not match the IDs "1" or "6"
    names = [stem] + [part for part in reversed(path.parent.parts)]
    for name in names:
        hits = [i for i in ids if i and i in name and _occurs(i, name)]  # "in" first: fast C check
        if hits:
            longest = max(len(h) for h in hits)
            top = sorted({h for h in hits if len(h) == longest})
            if len(top) > 1:
                raise CovariateError(f"image {path}: expected one covariate ID in its name; found {top}")
            return top[0]
    return None


@dataclass(frozen=True)
class Matched:
    """Images matched to covariate IDs.

    Attributes
    ----------
    paths : list of Path
        One image per matched ID, in the order of ``ids``.
    ids : list of str
        IDs that have both a row and an image (covariate table order).
    images_without_row : list of Path
    rows_without_image : list of str
    """

    paths: list[Path]
    ids: list[str]
    images_without_row: list[Path]
    rows_without_image: list[str]


def match_ids(paths: Sequence[Path], ids: Sequence[str], *, kind: str | None = None) -> Matched:
    """Pair every image with the covariate ID in its name.

    Raises
    ------
    CovariateError
        When two images carry the same ID (both files named).
    """
    by_id: dict[str, Path] = {}
    unmatched: list[Path] = []
    for p in paths:
        ident = file_id(Path(p), ids, kind=kind)
        if ident is None:
            unmatched.append(Path(p))
        elif ident in by_id:
            raise CovariateError(f"subject {ident!r}: expected one image per ID; got two: {by_id[ident]} "
                                 f"and {p} (select one map kind with --map or pass files)")
        else:
            by_id[ident] = Path(p)
    ordered = [i for i in ids if i in by_id]
    return Matched(paths=[by_id[i] for i in ordered], ids=ordered, images_without_row=unmatched,
                   rows_without_image=[i for i in ids if i not in by_id])


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
              drop_constant: bool = False, check_subjects: bool = True,
              progress: Callable[[int, int], None] | None = None) -> MaskedMaps:
    """Load N maps into an (N, V) matrix under a mask.

    Parameters
    ----------
    paths : sequence of Path
        3-D images on one grid (checked from the headers before any data is read). NaN voxels
        mean 'no data' (outside the field of view, as SPM12 writes them; :func:`load_map`).
    mask : (X, Y, Z) bool ndarray, optional
        RAS mask on the images' grid. When omitted the mask is ``mean map > mask_threshold``.
        Either way a voxel that is NaN in any image is left out (it fails the mask rule).
    mask_threshold : float
        Absolute threshold on the mean map (CAT12-like default 0.1 for GM maps).
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
        complete = np.ones(v_full, dtype=bool)  # data (not NaN) in every image
        for k, p in enumerate(paths):
            arr = load_map(p).data.numpy().reshape(-1)
            finite = np.isfinite(arr)
            n_nan[k] = arr.size - int(finite.sum())
            complete &= finite
            mean += np.where(finite, arr, 0.0)
            if full is not None:
                full[k] = arr
            tick()
        above = (mean / n > mask_threshold).reshape(grid.shape)
        if not above.any():
            raise ImageError(f"mask: expected voxels whose mean over {n} images exceeds the threshold "
                             f"{mask_threshold}; none does (max mean {mean.max() / n:.4g}; lower "
                             "--mask-threshold or give --mask)")
        mask = above & complete.reshape(grid.shape)
        _report_nan_voxels(above, mask, paths, n_nan)
        if full is not None:
            data = torch.from_numpy(np.ascontiguousarray(full[:, mask.reshape(-1)]))
            del full
            return _finish(data, mask, grid, stored_affine, drop_constant=drop_constant,
                           check_subjects=check_subjects, paths=paths)
        flat = mask.reshape(-1)
        data = torch.empty((n, int(flat.sum())), dtype=torch.float32)
        for k, p in enumerate(paths):  # second pass: the warning was given in the first
            data[k] = torch.from_numpy(load_map(p, warn=False).data.numpy().reshape(-1)[flat])
            tick()
        return _finish(data, mask, grid, stored_affine, drop_constant=drop_constant,
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
