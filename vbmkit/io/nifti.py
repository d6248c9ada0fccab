"""NIfTI reading and writing with nibabel; every image is checked and brought to RAS."""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
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
#: Largest ratio of uncompressed to compressed size deflate (gzip) reaches: about 1032:1.
GZIP_MAX_RATIO = 1032
#: Bytes allowed beyond ``GZIP_MAX_RATIO`` x the compressed size (gzip header and trailer).
GZIP_SLACK_BYTES = 1 << 16
#: Most voxels an image may claim (2^31: 8 GB as float32, far beyond any T1 or tissue map).
MAX_VOXELS = 1 << 31
COMPRESSED_SUFFIXES = (".gz", ".mgz", ".bz2", ".zst")


def _check_data_size(img: nib.spatialimages.SpatialImage, path: Path) -> None:
    """Refuse a header that claims more voxel data than its file can hold, before any allocation.

    Uncompressed: ``vox_offset + prod(shape) * bytes_per_voxel`` must not exceed the file size.
    Compressed: that size must not exceed ``GZIP_MAX_RATIO`` times the file size (plus
    ``GZIP_SLACK_BYTES``); and no image may claim more than ``MAX_VOXELS`` voxels.

    Raises
    ------
    ImageError
        Naming the file, the claimed shape and data type, the bytes they need and the file size.
    """
    proxy = img.dataobj
    shape, dtype, offset = (getattr(proxy, a, None) for a in ("shape", "dtype", "offset"))
    if shape is None or dtype is None or offset is None:  # not a file-backed array proxy
        return
    holder = img.file_map.get("image")
    data_path = Path(holder.filename) if holder is not None and holder.filename else path
    if not data_path.is_file():
        return  # a missing .img beside its .hdr: nibabel's own error comes when the data are read
    size = data_path.stat().st_size
    n_voxels = 1
    for s in shape:
        n_voxels *= int(s)
    need = int(offset) + n_voxels * np.dtype(dtype).itemsize
    claim = f"the header claims shape {tuple(int(s) for s in shape)} of {np.dtype(dtype).name}"
    if data_path.name.lower().endswith(COMPRESSED_SUFFIXES):
        if need > GZIP_MAX_RATIO * size + GZIP_SLACK_BYTES:
            raise ImageError(f"{path}: expected voxel data that fit the file; {claim} ({need} bytes "
                             f"uncompressed), more than a compressed file of {size} bytes can hold "
                             f"(gzip shrinks at most {GZIP_MAX_RATIO}:1; corrupt header or truncated file?)")
    elif need > size:
        raise ImageError(f"{path}: expected voxel data that fit the file; {claim} ({need} bytes with "
                         f"offset {int(offset)}), but the file has only {size} bytes "
                         f"(corrupt header or truncated file?)")
    if n_voxels > MAX_VOXELS:
        raise ImageError(f"{path}: expected at most {MAX_VOXELS} voxels (2^31); {claim} ({n_voxels} voxels) "
                         f"in a file of {size} bytes (corrupt header?)")


def _open(path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    """Load an image header (data stay on disk), checking that the data fit the file.

    Raises
    ------
    ImageError
        Missing file, a file nibabel cannot read, or a header claiming more data than the file
        holds (see :func:`_check_data_size`).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: expected an image file; the path does not exist or is not a file")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for foreign files
        size = p.stat().st_size
        if size < NIFTI1_HEADER_BYTES:  # empty or truncated: say so rather than nibabel's parser error
            raise ImageError(f"{p}: expected a NIfTI image; the file has only {size} bytes (an uncompressed "
                             f"NIfTI header alone has {NIFTI1_HEADER_BYTES})") from exc
        raise ImageError(f"{p}: expected a NIfTI/MGH image nibabel can read; got {type(exc).__name__}: {exc}") from exc
    _check_data_size(img, p)
    return img


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


#: What nibabel raises while reading the data of a truncated or corrupt file (gzip.BadGzipFile
#: is an OSError; an uncompressed file that is too short raises OSError too).
_DATA_READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def _read_data(img: nib.spatialimages.SpatialImage, path: str | os.PathLike, *, canonical: bool,
               dtype) -> tuple[np.ndarray, np.ndarray]:
    """(voxel values, affine), reoriented to RAS when ``canonical`` (which reads the data too); a
    truncated or corrupt file raises ImageError naming it."""
    try:
        if canonical:
            img = nib.as_closest_canonical(img)
        return np.asanyarray(img.dataobj, dtype=dtype), img.affine
    except _DATA_READ_ERRORS as exc:
        what = ("a complete gzip-compressed NIfTI" if str(path).lower().endswith(".gz")
                else "a complete image file")
        detail = " ".join(str(exc).split())  # nibabel's messages span lines; errors are one line
        raise ImageError(f"{path}: expected {what}; the data are truncated or corrupt "
                         f"({type(exc).__name__}: {detail})") from exc


def load_volume(path: str | os.PathLike, *, canonical: bool = True, dtype=torch.float32,
                allow_nonfinite: bool = False) -> Volume:
    """Read a 3-D image as a float32 :class:`Volume` (RAS voxel order when ``canonical``).

    Raises
    ------
    ImageError
        When the file is missing, not an image, not 3-D (trailing singleton axes are dropped),
        truncated or corrupt (the data, not only the header, are read), or holds NaN/Inf values
        (unless ``allow_nonfinite``; see :func:`load_map` for maps where NaN means 'no data').
    """
    img = _open(path)
    shape = _squeeze_3d(img.shape, path)
    data, affine = _read_data(img, path, canonical=canonical, dtype=np.float32 if dtype == torch.float32 else None)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
    if data.ndim != 3:
        raise ImageError(f"{path}: expected a 3-D image; got shape {shape}")
    if not allow_nonfinite and not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise ImageError(f"{path}: expected finite voxel values; found {n_bad} NaN/Inf voxels")
    return Volume(torch.from_numpy(np.ascontiguousarray(data)).to(dtype), affine)


def load_map(path: str | os.PathLike, *, warn: bool = True) -> Volume:
    """Read an input map (tissue, smoothed or statistic map) in which NaN means 'no data'.

    SPM12 writes NaN into normalised images wherever the template grid lies outside the
    subject's field of view (``spm_write_sn``), and SPM and CAT12 read NaN in float images as
    'outside' (implicit masking). vbmkit does the same: the NaN voxels are kept as NaN in the
    returned volume, and every reader leaves them out of its masks and sums.

    Parameters
    ----------
    path : str or path
        A 3-D image.
    warn : bool
        Warn (once per call) naming the file and its number of NaN voxels.

    Returns
    -------
    Volume
        (X, Y, Z) float32 in RAS voxel order; NaN where the file has no data.

    Raises
    ------
    ImageError
        As :func:`load_volume`, and when the image holds +/-Inf values or has no finite voxel.
    """
    vol = load_volume(path, allow_nonfinite=True)
    data = vol.data
    finite = torch.isfinite(data)
    if bool(finite.all()):
        return vol
    n_inf = int(torch.isinf(data).sum())
    if n_inf:
        raise ImageError(f"{path}: expected finite voxel values or NaN (no data); found {n_inf} Inf voxels")
    n_nan, total = int((~finite).sum()), data.numel()
    if n_nan == total:
        raise ImageError(f"{path}: expected some finite voxel values; all {total} voxels are NaN (no data)")
    if warn:
        warnings.warn(f"{path}: {n_nan} NaN voxels of {total} read as 'no data' (outside the field of view, as "
                      "SPM writes them); they are left out of masks and sums", stacklevel=2)
    return vol


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
