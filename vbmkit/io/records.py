"""Small preprocessing records on disk: per-subject JSON reports, study CSV tables and the
optional deformation field, all written atomically."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from vbmkit.io.atomic import atomic_path, write_json, write_text
from vbmkit.io.nifti import reorient


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing or unreadable."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_report(path: str | os.PathLike, report: Mapping[str, Any]) -> Path:
    """Write a report dict as JSON atomically (NaN/Inf become null)."""
    return write_json(path, dict(report))


def write_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
               columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as a CSV table atomically; columns default to first-seen key order."""
    rows = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return write_text(path, buf.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if np.isfinite(value) else ""
    return "" if value is None else value


def save_deformation(path: str | os.PathLike, field_mm: torch.Tensor | np.ndarray, affine: np.ndarray, *,
                     orientation_of: np.ndarray | None = None) -> Path:
    """Write a deformation field as a 5-D NIfTI (X, Y, Z, 1, 3) of mm, as SPM/CAT12 ``y_`` files.

    Parameters
    ----------
    field_mm : (X, Y, Z, 3)
        For every voxel of the grid ``affine`` (RAS order), the mm position it maps to.
    orientation_of : (4, 4), optional
        Store the voxels in this affine's axis order (e.g. Template_4_GS's stored affine).
    """
    arr = field_mm.detach().cpu().numpy() if isinstance(field_mm, torch.Tensor) else np.asarray(field_mm)
    new_affine = np.asarray(affine, dtype=np.float64)
    if orientation_of is not None:
        comps = [reorient(arr[..., k], new_affine, orientation_of) for k in range(3)]
        arr = np.stack([c[0] for c in comps], axis=-1)
        new_affine = comps[0][1]
    img = nib.Nifti1Image(arr[:, :, :, None, :].astype(np.float32), new_affine)
    img.header.set_intent("vector")
    img.header.set_xyzt_units("mm")
    img.set_qform(new_affine, code=1)
    img.set_sform(new_affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
