"""Per-subject quality control in the preprocessing: the image-quality rating and the QC figure.

Orchestration only: the rating is :func:`vbmkit.preprocess.quality.rate_quality` (pure tensor
code), the figure :func:`vbmkit.report.qc_figures.subject_qc_figure`. Neither can fail a
subject: a rating that cannot be computed is recorded with its reason, a figure that cannot
be drawn is left out with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from vbmkit.errors import ImageError
from vbmkit.io.templates import load_shooting_template
from vbmkit.preprocess.quality import mark_to_grade, rate_quality


def quality_rating(native, p0: torch.Tensor) -> dict[str, Any]:
    """The report's ``quality_rating``: measures, CAT12 marks, IQR percent and grade.

    Parameters
    ----------
    native : NativeT1
        The input image (RAS data and grid).
    p0 : torch.Tensor
        (X, Y, Z) label map 0..3 on ``native.grid``.

    Returns
    -------
    dict
        ``measures`` (NCR, ICR, res_RMS, res_ECR, contrast, tissue_means), ``marks`` (CAT12
        marks of NCR, ICR, res_RMS, res_ECR, RES, IQR), ``IQR_percent``, ``grade``, and
        ``cat12_measures`` (for ``cat_<name>.xml``); or ``{"error": reason}``.
    """
    try:
        r = rate_quality(native.data, p0, native.grid.voxel_size)
    except ImageError as exc:
        return {"error": str(exc)}
    cat12 = {k: r.measures[k] for k in ("NCR", "ICR", "res_RMS", "res_ECR")}
    cat12["res_vx_vol"] = [float(v) for v in native.grid.voxel_size]
    return {"measures": r.measures, "marks": r.marks, "IQR_percent": r.percent, "grade": r.grade,
            "cat12_measures": cat12}


def rating_title(rating: dict[str, Any]) -> str:
    """``IQR 84.3 % (B)  NCR 1.2  ICR 1.4  RES 1.9`` or the reason there is no rating."""
    if "marks" not in rating:
        return f"no quality rating ({rating.get('error', 'unknown reason')})"
    m = rating["marks"]
    return (f"IQR {rating['IQR_percent']:.1f} % ({mark_to_grade(m['IQR'])}); marks NCR {m['NCR']:.2f}, "
            f"ICR {m['ICR']:.2f}, RES {m['RES']:.2f} (1 = A best, 6 = F)")


def write_qc_figure(path: Path, native, p0: torch.Tensor, mask: torch.Tensor, mwp1: torch.Tensor, *,
                    title: str) -> Path | None:
    """Draw ``<name>_qc.png`` (:func:`vbmkit.report.qc_figures.subject_qc_figure`); None on failure."""
    from vbmkit.report.qc_figures import subject_qc_figure

    template = load_shooting_template()
    try:
        subject_qc_figure(native.data.cpu().numpy(), p0.cpu().numpy(), mask.cpu().numpy().astype(bool),
                          native.grid.voxel_size, mwp1.cpu().numpy(), template.data[0].numpy(),
                          template.grid.voxel_size, path, title=title)
    except (ValueError, RuntimeError, OSError) as exc:  # a figure must never fail the subject
        warnings.warn(f"{path}: QC figure not written ({type(exc).__name__}: {exc})", stacklevel=2)
        return None
    return path
