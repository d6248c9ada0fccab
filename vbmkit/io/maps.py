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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vbmkit.errors import CovariateError, ImageError
from vbmkit.io.nifti import image_stem, is_image_path, load_grid, load_volume
from vbmkit.space import Grid

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


def load_maps(paths: Sequence[Path], *, mask: np.ndarray | None = None, mask_threshold: float = 0.1,
              drop_constant: bool = False, progress: Callable[[int, int], None] | None = None) -> MaskedMaps:
    """Load N maps into an (N, V) matrix under a mask.

    Parameters
    ----------
    paths : sequence of Path
        3-D images on one grid (checked from the headers before any data is read).
    mask : (X, Y, Z) bool ndarray, optional
        RAS mask on the images' grid. When omitted the mask is ``mean map > mask_threshold``.
    mask_threshold : float
        Absolute threshold on the mean map (CAT12-like default 0.1 for GM maps).
    drop_constant : bool
        Also leave out voxels whose value is the same in every image (they have no variance,
        hence no t); the returned ``mask`` excludes them.
    progress : callable(done, total), optional
        Called after each file is read.

    Raises
    ------
    ImageError, GridMismatchError
        Non-3-D images, NaN/Inf voxels, differing grids, or an empty mask.

    Notes
    -----
    Without ``mask``, all full volumes are kept in memory when they fit in 1 GiB (one read per
    file); otherwise each file is read twice (mean map, then the masked values), so memory holds
    only the (N, V) result. Constant voxels are removed in place, block by block, so dropping
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

    def tick() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total)

    if mask is None:
        full: np.ndarray | None = np.empty((n, v_full), dtype=np.float32) if one_pass else None
        mean = np.zeros(v_full, dtype=np.float64)
        for k, p in enumerate(paths):
            arr = load_volume(p).data.numpy().reshape(-1)
            mean += arr
            if full is not None:
                full[k] = arr
            tick()
        mask = (mean / n > mask_threshold).reshape(grid.shape)
        if not mask.any():
            raise ImageError(f"mask: expected voxels whose mean over {n} images exceeds the threshold "
                             f"{mask_threshold}; none does (max mean {mean.max() / n:.4g}; lower "
                             "--mask-threshold or give --mask)")
        if full is not None:
            data = torch.from_numpy(np.ascontiguousarray(full[:, mask.reshape(-1)]))
            del full
            return _finish(data, mask, grid, stored_affine, drop_constant=drop_constant)
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    data = torch.empty((n, int(flat.sum())), dtype=torch.float32)
    for k, p in enumerate(paths):
        data[k] = torch.from_numpy(load_volume(p).data.numpy().reshape(-1)[flat])
        tick()
    return _finish(data, np.asarray(mask, dtype=bool), grid, stored_affine, drop_constant=drop_constant)


def _finish(data: torch.Tensor, mask: np.ndarray, grid: Grid, stored_affine: np.ndarray, *,
            drop_constant: bool) -> MaskedMaps:
    if not drop_constant:
        return MaskedMaps(data, mask, grid, stored_affine)
    varying = (data.amax(dim=0) > data.amin(dim=0)).numpy()
    if not varying.any():
        raise ImageError(f"images: expected voxels that vary across the {data.shape[0]} images inside the "
                         "mask; every voxel is constant")
    keep = np.flatnonzero(varying)
    if keep.size < data.shape[1]:
        # Move the kept columns left in place: keep[j] >= j, so a block never overwrites columns a
        # later block still reads.
        block = 4096
        for start in range(0, keep.size, block):
            cols = torch.from_numpy(keep[start:start + block])
            data[:, start:start + cols.numel()] = data[:, cols]
        data = data[:, :keep.size]
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
