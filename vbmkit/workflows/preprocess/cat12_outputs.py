"""CAT12's per-subject files from the preprocessing: ``report/cat_<name>.xml`` and
``label/catROI_<name>.xml`` (native-space ROI volumes of several atlases, as CAT12 measures them).

Orchestration only: the atlases come from :mod:`vbmkit.io.atlas`, their transport into the
subject from :func:`vbmkit.stats.roi_native.native_labels_many` (one inversion of the
template -> subject map for all atlases), the sums from :mod:`vbmkit.stats.roi` and the files
from :mod:`vbmkit.io.cat12_write`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.io.atlas import load_atlas
from vbmkit.io.atlas_catalog import catalog_entry, resolve_atlas_names
from vbmkit.io.cat12_write import write_cat12_report, write_catroi_xml
from vbmkit.io.catroi import LONG_COLUMNS
from vbmkit.preprocess.grids import deformation_to_mm
from vbmkit.space import Grid
from vbmkit.stats.roi import region_index, region_sums
from vbmkit.stats.roi_native import native_labels_many

TISSUES = ("gm", "wm", "csf")


def native_roi_volumes(name: str, native_maps: torch.Tensor, native_grid: Grid, deformation: torch.Tensor,
                       template_grid: Grid, matrix: np.ndarray, atlases: str | Sequence[str]) -> pd.DataFrame:
    """Native-space GM/WM/CSF volume of every region of every atlas, as CAT12's catROI.

    Parameters
    ----------
    name : str
        Subject name (the ``subject`` column).
    native_maps : torch.Tensor
        (4, Xn, Yn, Zn) p0, p1 (GM), p2 (WM), p3 (CSF) on ``native_grid``.
    native_grid : Grid
        RAS grid of the native maps.
    deformation : torch.Tensor
        (X, Y, Z, 3) the nonlinear registration's voxel deformation on ``template_grid``.
    template_grid : Grid
        The 1.5 mm output grid (Template_4_GS), on which the atlases lie.
    matrix : ndarray (4, 4)
        The affine registration, template mm -> subject mm.
    atlases : str or sequence of str
        An ``--atlas`` specification (:func:`vbmkit.io.atlas_catalog.resolve_atlas_names`).

    Returns
    -------
    pandas.DataFrame
        :data:`vbmkit.io.catroi.LONG_COLUMNS`; tissues ``gm``, ``wm``, ``csf``; mL.

    Notes
    -----
    The atlases are carried into the subject through the inverse of the full map (affine x
    nonlinear; :func:`vbmkit.stats.roi_native.native_labels`, nearest neighbour) at the voxels
    that hold tissue, and the native p1/p2/p3 are summed per label times the native voxel
    volume: CAT12's native-space ROI volumes.
    """
    loaded = [load_atlas(a, grid=template_grid) for a in resolve_atlas_names(atlases)]
    field_mm = deformation_to_mm(deformation.detach().cpu(), template_grid, matrix).double()
    inv = torch.as_tensor(np.linalg.inv(native_grid.affine), dtype=torch.float64)
    field_vox = (field_mm @ inv[:3, :3].T + inv[:3, 3]).float()
    tissue = native_maps[1:4].float().cpu()
    mask = tissue.sum(dim=0) > 0
    natives, _ = native_labels_many([a.labels for a in loaded], field_vox, native_grid.shape, mask=mask)
    frames = []
    for atl, lab in zip(loaded, natives, strict=True):
        index = region_index(lab, atl.region_ids)
        regional, _ = region_sums(tissue, index)
        ml = (regional * native_grid.voxel_volume_ml).numpy()  # (3, R)
        r = len(atl.table)
        frames.append(pd.DataFrame({
            "subject": name, "atlas": atl.name,
            "region_id": np.tile(atl.table["region_id"].to_numpy(), 3),
            "region": np.tile(atl.table["abbr"].to_numpy(), 3),
            "hemisphere": np.tile(atl.table["hemisphere"].to_numpy(), 3),
            "tissue": np.repeat(TISSUES, r), "volume_ml": ml.reshape(-1)}))
    return pd.concat(frames, ignore_index=True)[LONG_COLUMNS]


def write_cat12_files(report_xml: Path, roi_xml: Path | None, *, name: str, source: str,
                      volumes_ml: Mapping[str, float], roi: pd.DataFrame | None,
                      ratings: Mapping[str, float] | None = None,
                      measures: Mapping[str, object] | None = None) -> list[Path]:
    """Write ``cat_<name>.xml`` (TIV, [CSF GM WM WMH] mL, fractions, ratings) and ``catROI_<name>.xml``.

    Parameters
    ----------
    report_xml, roi_xml : Path
        Targets (``roi_xml`` None or ``roi`` None: no catROI file).
    volumes_ml : mapping
        ``gm``, ``wm``, ``csf``, ``tiv`` in mL (the preprocessing report's ``volumes_ml``).
    roi : pandas.DataFrame, optional
        :func:`native_roi_volumes` of this subject.
    ratings : mapping, optional
        CAT12 marks (``NCR``, ``ICR``, ``res_RMS``, ``IQR``) of the image-quality rating.
    measures : mapping, optional
        The rating's raw measures (``qualitymeasures``).

    Returns
    -------
    list of Path
        The files written.
    """
    cgw = [volumes_ml["csf"], volumes_ml["gm"], volumes_ml["wm"], 0.0]  # no WMH class: 0 mL
    written = [write_cat12_report(report_xml, name=name, tiv_ml=volumes_ml["tiv"], vol_abs_cgw=cgw,
                                  ratings=ratings, source=source, measures=measures,
                                  software={"name": "vbmkit", "version_vbmkit": __version__})]
    if roi_xml is not None and roi is not None:
        tags = {}
        for atlas in roi["atlas"].unique():
            entry = catalog_entry(atlas)
            tags[atlas] = entry.file if entry is not None else atlas
        written.append(write_catroi_xml(roi_xml, roi, element_names=tags))
    return written
