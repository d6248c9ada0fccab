"""SPM12 results and segmentations: T-maps with their degrees of freedom, SPM.mat, TFCE maps.

Results folder (one analysis)::

    spmT_0001.nii   header descrip "SPM{T_[38.0]} - contrast 1: age"
    con_0001.nii    contrast image
    SPM.mat         MATLAB v6 (scipy.io.loadmat) or v7.3 / HDF5 (h5py): SPM.xCon(i).name,
                    SPM.xCon(i).STAT, SPM.xX.erdf (error degrees of freedom)
    TFCE_log_pFWE_0001.nii   TFCE toolbox: signed -log10 p (FWE), sign of the effect

Segmentation outputs (``<name>`` the T1's file name without extension): native ``c1/c2/c3<name>.nii``
(GM, WM, CSF probabilities), normalised ``wc1/wc2<name>.nii`` and modulated ``mwc1/mwc2<name>.nii``,
by default on SPM's 2 mm MNI grid of 91 x 109 x 91 voxels. :func:`find_segmentations` finds them
with :func:`vbmkit.io.cat12.find_outputs`; comparisons resample to a common grid.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vbmkit.errors import ImageError, VbmkitError
from vbmkit.io.cat12 import SubjectOutputs, find_outputs
from vbmkit.io.nifti import image_stem, is_image_path, load_volume
from vbmkit.space import Grid, Volume

#: SPM12 segmentation prefixes (native, warped, modulated warped; smoothed ``s<fwhm>`` + warped).
SPM12_KINDS = ("c1", "c2", "c3", "wc1", "wc2", "wc3", "mwc1", "mwc2", "mwc3")
_DESCRIP = re.compile(r"SPM\{(?P<stat>[TF])_\[(?P<df>[^\]]*)\]\}(?:\s*-\s*contrast\s*(?P<index>\d+)\s*:\s*(?P<name>.*))?")
_RESULT_FILE = re.compile(r"^(?P<kind>spmT|spmF|con|ess|TFCE_log_pFWE|TFCE_log_pFDR|TFCE)_(?P<index>\d{4})$")


class SpmError(VbmkitError):
    """An SPM file is unreadable or lacks what vbmkit needs."""


@dataclass(frozen=True)
class StatHeader:
    """What an SPM statistic image says about itself (header ``descrip``).

    Attributes
    ----------
    stat : str
        ``T`` or ``F``.
    df : tuple of float
        (df,) for T; (df1, df2) for F.
    index : int or None
        Contrast number.
    name : str or None
        Contrast name.
    """

    stat: str
    df: tuple[float, ...]
    index: int | None
    name: str | None


def parse_descrip(text: str) -> StatHeader | None:
    """Parse ``SPM{T_[38.0]} - contrast 1: age`` (None when the text is not in SPM's form)."""
    m = _DESCRIP.search(text)
    if m is None:
        return None
    try:
        df = tuple(float(v) for v in m.group("df").split(","))
    except ValueError:
        return None
    index = int(m.group("index")) if m.group("index") else None
    name = m.group("name").strip() if m.group("name") is not None else None
    return StatHeader(m.group("stat"), df, index, name or None)


def _descrip(path: Path) -> str:
    try:
        raw = nib.load(str(path)).header.get("descrip", b"")
    except Exception as exc:  # nibabel raises many types
        raise ImageError(f"{path}: expected a NIfTI image; {type(exc).__name__}: {exc}") from exc
    raw = raw.item() if hasattr(raw, "item") else raw
    return raw.decode("latin-1", "replace") if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, eq=False)
class StatMap:
    """An SPM statistic image with its header information."""

    volume: Volume
    header: StatHeader | None
    path: Path

    @property
    def df(self) -> float | None:
        """Error degrees of freedom (the last df), or None when the header has none."""
        return self.header.df[-1] if self.header is not None else None


def read_stat_map(path: str | os.PathLike) -> StatMap:
    """Read ``spmT_*.nii`` / ``spmF_*.nii`` (or any image) with the df from its header.

    NaN voxels (SPM's 'outside the mask') become 0. A header without SPM's description gives
    ``header=None`` (no df) with a warning.
    """
    p = Path(path)
    vol = load_volume(p, allow_nonfinite=True)
    data = vol.data.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    header = parse_descrip(_descrip(p))
    if header is None:
        warnings.warn(f"{p}: the header description is not 'SPM{{T_[df]}} - ...'; degrees of freedom unknown",
                      stacklevel=2)
    return StatMap(Volume(data, vol.affine), header, p)


@dataclass
class SpmContrast:
    """The files and facts of one contrast of an SPM results folder."""

    index: int
    name: str | None = None
    stat: str | None = None
    df: tuple[float, ...] | None = None
    stat_map: Path | None = None
    con: Path | None = None
    tfce_log_pfwe: Path | None = None


def _mat_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            return "".join(value.ravel().tolist())
        if value.dtype.kind in "ui":  # v7.3 stores chars as uint16 codes
            return "".join(chr(int(c)) for c in value.ravel(order="F"))
    return str(value)


def read_spm_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Contrast names, statistics and error df from ``SPM.mat`` (MAT v6/v7 or v7.3/HDF5).

    Returns
    -------
    dict
        ``contrasts``: list of {``index``, ``name``, ``stat``} (1-based index as in the file
        names); ``erdf``: error degrees of freedom (float or None); ``format``: ``v6`` or ``v7.3``.

    Raises
    ------
    SpmError
        When the file is neither a MATLAB v5-v7 MAT file nor an HDF5 (v7.3) one, or has no ``SPM``.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise SpmError(f"{p}: expected an SPM.mat file; {exc}") from exc
    if b"\x89HDF" in head or head.startswith(b"MATLAB 7.3"):
        return _read_spm_mat_hdf5(p)
    import scipy.io  # only for SPM.mat files (v6/v7); scipy.io is slow to import

    try:
        mat = scipy.io.loadmat(str(p), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises ValueError/TypeError/... for foreign files
        raise SpmError(f"{p}: expected a MATLAB MAT file (v6/v7 or v7.3); {type(exc).__name__}: {exc}") from exc
    if "SPM" not in mat:
        raise SpmError(f"{p}: expected a variable 'SPM'; found {sorted(k for k in mat if not k.startswith('__'))}")
    spm = mat["SPM"]
    xcon = getattr(spm, "xCon", None)
    items = [] if xcon is None else list(np.atleast_1d(xcon))
    contrasts = [{"index": i + 1, "name": _mat_str(getattr(c, "name", "")) or None,
                  "stat": _mat_str(getattr(c, "STAT", "")) or None} for i, c in enumerate(items)]
    erdf = getattr(getattr(spm, "xX", None), "erdf", None)
    return {"contrasts": contrasts, "erdf": float(erdf) if erdf is not None else None, "format": "v6"}


def _read_spm_mat_hdf5(path: Path) -> dict[str, Any]:
    import h5py  # only for v7.3 (HDF5) SPM.mat files, rare

    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise SpmError(f"{path}: expected a MATLAB v7.3 (HDF5) MAT file; {exc}") from exc
    with f:
        if "SPM" not in f:
            raise SpmError(f"{path}: expected a variable 'SPM'; found {sorted(f.keys())}")
        spm = f["SPM"]
        contrasts = []
        if "xCon" in spm and "name" in spm["xCon"]:
            names = spm["xCon"]["name"]
            stats = spm["xCon"]["STAT"] if "STAT" in spm["xCon"] else None
            refs = np.asarray(names).ravel()
            srefs = np.asarray(stats).ravel() if stats is not None else [None] * len(refs)
            for i, (ref, sref) in enumerate(zip(refs, srefs, strict=True)):
                name = _mat_str(np.asarray(f[ref])) if isinstance(ref, h5py.Reference) else _mat_str(ref)
                stat = _mat_str(np.asarray(f[sref])) if isinstance(sref, h5py.Reference) else None
                contrasts.append({"index": i + 1, "name": name or None, "stat": stat or None})
        erdf = None
        if "xX" in spm and "erdf" in spm["xX"]:
            erdf = float(np.asarray(spm["xX"]["erdf"]).ravel()[0])
    return {"contrasts": contrasts, "erdf": erdf, "format": "v7.3"}


def find_results(folder: str | os.PathLike) -> dict[int, SpmContrast]:
    """Every contrast of an SPM results folder: statistic, con and TFCE images, name and df.

    Names and df come from the statistic images' headers, completed by ``SPM.mat`` when present
    (a damaged SPM.mat is reported with a warning, not fatal).

    Raises
    ------
    ImageError
        When ``folder`` is not a folder.
    """
    base = Path(folder)
    if not base.is_dir():
        raise ImageError(f"{base}: expected an SPM results folder; it is not a folder")
    out: dict[int, SpmContrast] = {}
    for path in sorted(p for p in base.iterdir() if p.is_file() and is_image_path(p)):
        m = _RESULT_FILE.match(image_stem(path))
        if m is None:
            continue
        c = out.setdefault(int(m.group("index")), SpmContrast(index=int(m.group("index"))))
        kind = m.group("kind")
        if kind in ("spmT", "spmF"):
            c.stat_map = path
            header = parse_descrip(_descrip(path))
            c.stat = kind[-1]
            if header is not None:
                c.df = header.df
                c.name = header.name or c.name
        elif kind == "con":
            c.con = path
        elif kind == "TFCE_log_pFWE":
            c.tfce_log_pfwe = path
    mat = base / "SPM.mat"
    if mat.is_file():
        try:
            info = read_spm_mat(mat)
        except SpmError as exc:
            warnings.warn(f"{exc}; contrast names are taken from the image headers only", stacklevel=2)
        else:
            for item in info["contrasts"]:
                c = out.setdefault(item["index"], SpmContrast(index=item["index"]))
                c.name = c.name or item["name"]
                c.stat = c.stat or item["stat"]
                if c.df is None and info["erdf"] is not None and math.isfinite(info["erdf"]):
                    c.df = (info["erdf"],)
    return dict(sorted(out.items()))


def find_segmentations(folder: str | os.PathLike) -> dict[str, SubjectOutputs]:
    """SPM12 segmentation outputs under ``folder`` by subject name (``c1``, ``mwc1``, ``s8mwc1`` ...)."""
    found = find_outputs(folder, kinds=SPM12_KINDS)
    return {k: v for k, v in found.items() if v.maps}


#: Normalised grids SPM12 writes: (name, shape, voxel size mm, bounding box [[min], [max]] mm).
SPM12_GRIDS = (
    ("SPM12 OldSeg / spm_write_sn (2 mm, priors' bounding box)", (91, 109, 91), 2.0,
     ((-90.0, -126.0, -72.0), (90.0, 90.0, 108.0))),
    ("SPM12 Normalise default (2 mm, bounding box [-78 -112 -70; 78 76 85])", (79, 95, 78), 2.0,
     ((-78.0, -112.0, -70.0), (78.0, 76.0, 84.0))),
    ("CAT12 / vbmkit 1.5 mm template grid", (113, 137, 113), 1.5,
     ((-84.0, -120.0, -72.0), (84.0, 84.0, 96.0))),
)


def describe_grid(grid: Grid) -> dict[str, Any]:
    """Which known normalised grid ``grid`` is (SPM12 OldSeg, SPM12 Normalise, CAT12), from its
    shape and voxel size; the bounding box (world mm of the outer voxel centres) is reported
    with whether it matches the one that grid is written with.

    Returns
    -------
    dict
        ``name`` (``"other"`` when unknown), ``shape``, ``voxel_mm``, ``bounding_box_mm``
        ([[x, y, z] min, [x, y, z] max]) and ``expected_bounding_box`` (bool, None when unknown).
    """
    corners = np.array([[i, j, k] for i in (0, grid.shape[0] - 1) for j in (0, grid.shape[1] - 1)
                        for k in (0, grid.shape[2] - 1)], dtype=np.float64)
    world = grid.voxel_to_world(corners)
    box = [world.min(axis=0).round(3).tolist(), world.max(axis=0).round(3).tolist()]
    voxel = grid.voxel_size.round(4).tolist()
    out: dict[str, Any] = {"name": "other", "shape": list(grid.shape), "voxel_mm": voxel, "bounding_box_mm": box,
                           "expected_bounding_box": None}
    for name, shape, size, expected in SPM12_GRIDS:
        if tuple(grid.shape) == shape and np.allclose(grid.voxel_size, size, atol=1e-3):
            out["name"] = name
            out["expected_bounding_box"] = bool(np.allclose(box, expected, atol=size / 2))
    return out
