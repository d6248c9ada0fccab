"""NIfTI reading and writing with nibabel; every image is checked and brought to RAS."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from vbmkit.errors import ImageError
from vbmkit.io.atomic import atomic_path
from vbmkit.space import Grid, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz", ".mgh")


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name ends like an image nibabel reads (.nii, .nii.gz, .mgz, ...)."""
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


def image_stem(path: str | os.PathLike) -> str:
    """File name without the image extension: ``mwp1sub-01_T1w.nii.gz`` -> ``mwp1sub-01_T1w``."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


NIFTI1_HEADER_BYTES = 348


def _open(path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: expected an image file; the path does not exist or is not a file")
    try:
        return nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for foreign files
        size = p.stat().st_size
        if size < NIFTI1_HEADER_BYTES:  # empty or truncated: say so rather than nibabel's parser error
            raise ImageError(f"{p}: expected a NIfTI image; the file has only {size} bytes (an uncompressed "
                             f"NIfTI header alone has {NIFTI1_HEADER_BYTES})") from exc
        raise ImageError(f"{p}: expected a NIfTI/MGH image nibabel can read; got {type(exc).__name__}: {exc}") from exc


def _squeeze_3d(shape: tuple[int, ...], path: str | os.PathLike) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) != 3:
        raise ImageError(f"{path}: expected a 3-D image; got shape {tuple(shape)}")
    return tuple(dims)


def load_grid(path: str | os.PathLike, *, canonical: bool = True) -> Grid:
    """The voxel grid of an image without reading its data (RAS-reoriented when ``canonical``)."""
    img = _open(path)
    shape = _squeeze_3d(img.shape, path)
    affine = img.affine
    if canonical:
        ornt = nib.orientations.io_orientation(affine)
        tr = nib.orientations.inv_ornt_aff(ornt, shape)
        affine = affine @ tr
        shape = tuple(int(shape[int(a)]) for a in ornt[:, 0])
    return Grid(shape, affine)


def load_volume(path: str | os.PathLike, *, canonical: bool = True, dtype=torch.float32,
                allow_nonfinite: bool = False) -> Volume:
    """Read a 3-D image as a float32 :class:`Volume` (RAS voxel order when ``canonical``).

    Raises
    ------
    ImageError
        When the file is missing, not an image, not 3-D (trailing singleton axes are dropped),
        or holds NaN/Inf values (unless ``allow_nonfinite``).
    """
    img = _open(path)
    shape = _squeeze_3d(img.shape, path)
    if canonical:
        img = nib.as_closest_canonical(img)
    data = np.asanyarray(img.dataobj, dtype=np.float32 if dtype == torch.float32 else None)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
    if data.ndim != 3:
        raise ImageError(f"{path}: expected a 3-D image; got shape {shape}")
    if not allow_nonfinite and not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise ImageError(f"{path}: expected finite voxel values; found {n_bad} NaN/Inf voxels")
    return Volume(torch.from_numpy(np.ascontiguousarray(data)).to(dtype), img.affine)


def reorient(data: np.ndarray, affine: np.ndarray, target_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Store the same grid in the axis order and directions of ``target_affine``.

    Used to write RAS-ordered results with the affine of a reference file (Template_4_GS is
    stored LAS, so vbmkit's mwp1 has exactly its affine). Returns (data, affine).
    """
    src = nib.orientations.io_orientation(affine)
    dst = nib.orientations.io_orientation(np.asarray(target_affine, dtype=np.float64))
    transform = nib.orientations.ornt_transform(src, dst)
    out = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(out), new_affine


def save_volume(path: str | os.PathLike, data: torch.Tensor | np.ndarray, affine: np.ndarray, *,
                dtype=np.float32, description: str | None = None,
                orientation_of: np.ndarray | None = None) -> Path:
    """Write a 3-D array as NIfTI atomically (temporary file, then rename).

    Parameters
    ----------
    data : (X, Y, Z) tensor or array
    affine : (4, 4) voxel -> mm
    dtype : numpy dtype of the stored values (float32 by default, uint8 for masks/labels)
    description : str, optional
        Stored in the header ``descrip`` field (80 characters at most).
    orientation_of : (4, 4) affine, optional
        Store the voxels in this affine's axis order (see :func:`reorient`), e.g. the affine of
        Template_4_GS or of the native input image.
    """
    arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if arr.ndim != 3:
        raise ImageError(f"save_volume {path}: expected a 3-D array; got shape {arr.shape}")
    if orientation_of is not None:
        arr, affine = reorient(arr, np.asarray(affine, dtype=np.float64), orientation_of)
    img = nib.Nifti1Image(arr.astype(dtype, copy=False), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    if description:
        img.header["descrip"] = description[:79].encode("ascii", "replace")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
