"""Label atlases (LPBA40 and others) on a voxel grid, with their region table.

An atlas is a label image (integer region id per voxel, 0 = background) and a table of
regions. vbmkit ships LPBA40 resampled once onto its 1.5 mm output grid in
``atlases/lpba40/`` (see ``atlases/lpba40/README.md`` and ``scripts/make_atlas.py``); the
other atlases of the deepmriprep wheel (neuromorphometrics, hammers, cobra, ...) load with the
same code and are resampled onto a requested grid by :func:`resample_labels`.

Two table layouts are read:

- vbmkit's ``<name>_labels.csv`` (comma-separated): ``region_id, abbr, name, hemisphere``
  and optional ``vgm, vwm, vcsf`` flags;
- CAT12 / deepmriprep ``<name>.csv`` (``;``-separated): ``ROIid;ROIabbr;ROIname;Vgm;Vwm;Vcsf;...``,
  where ``ROIabbr`` or the tissue flags may be missing, a ``Hemisphere`` column may be present
  and a leading unnamed index column may come first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from vbmkit.errors import GridMismatchError, ResourceError
from vbmkit.io.resources import atlas_paths
from vbmkit.space import Grid

TABLE_COLUMNS = ["region_id", "abbr", "name", "hemisphere", "vgm", "vwm", "vcsf"]


@dataclass(frozen=True, eq=False)
class Atlas:
    """A label atlas on a voxel grid.

    Attributes
    ----------
    name : str
        Atlas name (``lpba40``) or the file stem of a user atlas.
    labels : torch.Tensor
        (X, Y, Z) int64 region ids in RAS voxel order of ``grid``; 0 is background.
    grid : Grid
        RAS grid of ``labels``.
    stored_affine : ndarray (4, 4)
        The affine as stored in the file (LAS for CAT12 atlases), for writing label images back.
    table : pandas.DataFrame
        One row per region, sorted by ``region_id``: ``region_id`` (int), ``abbr``, ``name``,
        ``hemisphere`` (``left``/``right``/``both``/``""``), ``vgm``, ``vwm``, ``vcsf`` (bool:
        whether CAT12 reports that tissue for the region; all True when the source has no flags).
    """

    name: str
    labels: torch.Tensor
    grid: Grid
    stored_affine: np.ndarray
    table: pd.DataFrame

    @property
    def region_ids(self) -> np.ndarray:
        """(R,) int64 region ids in table order."""
        return np.array(self.table["region_id"], dtype=np.int64)


def hemisphere_of(abbr: str, name: str) -> str:
    """``left``, ``right``, ``both`` or ``""`` from an abbreviation prefix or the full name.

    CAT12 abbreviations start with ``l``/``r``/``b`` followed by an upper-case letter
    (``lSupFroG``, ``bCBeL``); names say ``Left ...``/``Right ...``/``Bothside ...`` or end in
    `` L``/`` R`` (hammers: ``TL hippocampus R``); Schaefer names hold ``_LH_``/``_RH_``.
    """
    abbr, name = str(abbr).strip(), str(name).strip()
    prefix = {"l": "left", "r": "right", "b": "both"}
    if len(abbr) > 1 and abbr[0] in prefix and abbr[1].isupper():
        return prefix[abbr[0]]
    low = name.lower()
    for word, side in (("left", "left"), ("right", "right"), ("bothside", "both")):
        if re.search(rf"\b{word}\b", low):
            return side
    if re.search(r"(^|[\s_])(l|lh)$|_lh_", low):
        return "left"
    if re.search(r"(^|[\s_])(r|rh)$|_rh_", low):
        return "right"
    return ""


def read_label_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read an atlas region table (vbmkit or CAT12/deepmriprep layout) into the standard columns.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`, one row per region (background id 0 dropped), sorted
        by ``region_id``.

    Raises
    ------
    ResourceError
        When the file cannot be read, has no id column, or repeats an id.
    """
    path = Path(path)
    try:
        head = path.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ResourceError(f"atlas label table {path}: expected a readable CSV; got {exc}") from exc
    sep = ";" if head.count(";") > head.count(",") else ","
    raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.loc[:, [c for c in raw.columns if c and not c.startswith("Unnamed")]]
    lower = {c.lower(): c for c in raw.columns}
    id_col = lower.get("region_id", lower.get("roiid"))
    if id_col is None:
        raise ResourceError(f"atlas label table {path}: expected a 'region_id' or 'ROIid' column; "
                            f"got columns {list(raw.columns)}")
    name_col = lower.get("name", lower.get("roiname"))
    abbr_col = lower.get("abbr", lower.get("roiabbr"))
    try:
        ids = raw[id_col].astype(int)
    except ValueError as exc:
        raise ResourceError(f"atlas label table {path}: column {id_col!r} must hold integers; {exc}") from exc
    names = raw[name_col].str.strip() if name_col else ids.astype(str)
    abbrs = raw[abbr_col].str.strip() if abbr_col else names
    hemi_col = lower.get("hemisphere")
    if hemi_col is not None:
        hemis = raw[hemi_col].str.strip().str.lower()
    else:
        hemis = pd.Series([hemisphere_of(a, n) for a, n in zip(abbrs, names, strict=True)], index=raw.index)
    table = pd.DataFrame({"region_id": ids, "abbr": abbrs, "name": names, "hemisphere": hemis})
    for tissue in ("vgm", "vwm", "vcsf"):
        col = lower.get(tissue)
        table[tissue] = (raw[col].str.strip().isin(["1", "True", "true"]) if col is not None
                         else True)
    table = table[table["region_id"] != 0].sort_values("region_id").reset_index(drop=True)
    dup = table["region_id"][table["region_id"].duplicated()]
    if len(dup):
        raise ResourceError(f"atlas label table {path}: expected unique region ids; "
                            f"{sorted(set(dup.tolist()))} repeat")
    return table[TABLE_COLUMNS]


def resample_labels(labels: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Nearest-neighbour resampling of a label image through world coordinates.

    Parameters
    ----------
    labels : ndarray (X, Y, Z) integer
        Region ids on ``source``.
    source, target : Grid

    Returns
    -------
    ndarray
        Region ids on ``target`` (same dtype); 0 outside the source field of view.

    Notes
    -----
    Target voxel centres are mapped to source voxel coordinates in float64 and rounded half
    up, ``floor(u + 0.5)``. Going from CAT12's 1 mm atlases to the 1.5 mm grid, every other
    target voxel falls exactly half-way between two source voxels; half-up makes the choice
    deterministic (towards the higher source index) instead of depending on float rounding.
    """
    m = np.linalg.inv(source.affine) @ target.affine
    axes = [np.arange(n, dtype=np.float64) for n in target.shape]
    ii, jj, kk = np.meshgrid(*axes, indexing="ij")
    ijk = np.stack([ii, jj, kk], axis=-1) @ m[:3, :3].T + m[:3, 3]
    idx = np.floor(ijk + 0.5).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(source.shape)), axis=-1)
    out = np.zeros(target.shape, dtype=labels.dtype)
    sel = idx[inside]
    out[inside] = labels[sel[:, 0], sel[:, 1], sel[:, 2]]
    return out


@lru_cache(maxsize=8)
def _load_cached(image: str, table: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    img = nib.load(image)
    stored = img.affine.copy()
    canon = nib.as_closest_canonical(img)
    data = np.asanyarray(canon.dataobj)
    if data.ndim > 3:
        data = data.reshape(data.shape[:3])
    rounded = np.rint(data)
    if not np.allclose(rounded, data):
        raise ResourceError(f"atlas image {image}: expected integer region ids; found fractional values")
    return rounded.astype(np.int64), canon.affine.copy(), stored, read_label_table(table)


@lru_cache(maxsize=32)
def _resampled_cached(image: str, table: str, shape: tuple[int, int, int], affine_bytes: bytes) -> np.ndarray:
    labels, affine, _, _ = _load_cached(image, table)
    target = Grid(shape, np.frombuffer(affine_bytes, dtype=np.float64).reshape(4, 4))
    out = resample_labels(labels, Grid(labels.shape, affine), target)
    out.setflags(write=False)
    return out


def load_atlas(name: str = "lpba40", *, grid: Grid | None = None) -> Atlas:
    """Load an atlas by name (``atlases/<name>/`` or the deepmriprep wheel) or NIfTI path.

    Parameters
    ----------
    name : str
        A name of :data:`vbmkit.io.atlas_catalog.CATALOG` (``lpba40``: vbmkit's copy on the
        1.5 mm output grid; ``neuromorphometrics``, ``cobra``, ``hammers``, ``aal3``, ...,
        ``schaefer100``..``schaefer600``: the deepmriprep wheel's label images, any case, also by
        their file stem), or a path to a label NIfTI with its table beside it
        (``<stem>_labels.csv`` or ``<stem>.csv``).
    grid : Grid, optional
        Resample the labels onto this grid by nearest neighbour (:func:`resample_labels`) when
        the atlas is on another one. Default: a named atlas comes on vbmkit's output grid
        (``Template_4_GS``, 113 x 137 x 113, 1.5 mm); a user's NIfTI stays on its own grid.

    Returns
    -------
    Atlas
        ``name`` is the catalog name (``schaefer100``) or the file stem of a user atlas.

    Raises
    ------
    ResourceError
        When the image or its label table is missing, or the table is malformed.
    """
    from vbmkit.io.atlas_catalog import catalog_entry

    entry = catalog_entry(name) if not str(name).lower().endswith((".nii", ".gz")) else None
    stored_out = None
    if entry is not None and grid is None:
        from vbmkit.io.templates import output_grid

        grid, stored_out = output_grid()
    image, table_path = atlas_paths(entry.file if entry is not None else name)
    labels, affine, stored, table = _load_cached(str(image), str(table_path))
    atlas_grid = Grid(labels.shape, affine)
    if grid is not None and not atlas_grid.matches(grid):
        key = tuple(int(s) for s in grid.shape), np.ascontiguousarray(grid.affine, dtype=np.float64).tobytes()
        labels = _resampled_cached(str(image), str(table_path), *key)
        stored = stored_out if stored_out is not None else grid.affine.copy()
        atlas_grid = grid
    if entry is not None:
        stem = entry.name
    else:
        stem = Path(name).name.split(".")[0] if Path(name).suffix in (".nii", ".gz") else name
    return Atlas(name=stem, labels=torch.from_numpy(np.array(labels, copy=True)), grid=atlas_grid,
                 stored_affine=stored, table=table.copy())


def describe_atlases(names: list[str] | None = None) -> list[dict]:
    """One row per named atlas: regions, how much of the template's GM it covers, source, licence.

    Parameters
    ----------
    names : list of str, optional
        Catalog names (default all of :data:`vbmkit.io.atlas_catalog.CATALOG`).

    Returns
    -------
    list of dict
        ``name``, ``regions`` (rows of its table), ``on_grid`` (regions with at least one voxel
        on the 1.5 mm output grid), ``template_gm_fraction`` (share of Template_4_GS's GM, the
        sum of its GM probabilities, inside the atlas's labels), ``cat12_default``, ``file``,
        ``source``, ``licence``.
    """
    from vbmkit.io.atlas_catalog import CAT12_DEFAULT, CATALOG
    from vbmkit.io.templates import load_shooting_template

    gm = load_shooting_template().data[0].numpy().astype(np.float64)
    rows = []
    for name in names if names is not None else list(CATALOG):
        entry = CATALOG[name]
        atlas = load_atlas(name)
        labels = atlas.labels.numpy()
        present = np.isin(atlas.region_ids, np.unique(labels))
        inside = np.isin(labels, atlas.region_ids)
        rows.append({"name": name, "regions": len(atlas.table), "on_grid": int(present.sum()),
                     "template_gm_fraction": round(float(gm[inside].sum() / gm.sum()), 4),
                     "cat12_default": name in CAT12_DEFAULT, "file": entry.file,
                     "source": entry.source, "licence": entry.licence})
    return rows


def region_at_mm(atlas: Atlas, xyz_mm) -> str:
    """Abbreviation of the region at a world position (mm), or ``""`` outside any region.

    Parameters
    ----------
    atlas : Atlas
    xyz_mm : sequence of 3 floats
        World coordinates in mm (RAS+, MNI for the shipped atlases).
    """
    ijk = np.floor(atlas.grid.world_to_voxel(np.asarray(xyz_mm, dtype=np.float64)) + 0.5).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.asarray(atlas.grid.shape)):
        return ""
    rid = int(atlas.labels[tuple(int(v) for v in ijk)])
    hit = atlas.table.loc[atlas.table["region_id"] == rid, "abbr"]
    return str(hit.iloc[0]) if len(hit) else ""


def same_space(grid: Grid, atlas: Atlas, *, source: str = "image", max_fov_difference_mm: float = 40.0) -> bool:
    """Decide whether an image on ``grid`` can be measured with ``atlas``.

    Returns
    -------
    bool
        True when ``grid`` is the atlas grid (no resampling needed); False when it is the same
        (template) space at another resolution or field of view, so resampling onto the atlas
        grid is meaningful.

    Raises
    ------
    GridMismatchError
        When the grids disagree beyond resampling: a rotated or sheared affine, a field of view
        that does not hold the atlas's labelled voxels, or one whose extent differs from the
        atlas grid's by more than ``max_fov_difference_mm`` on an axis (a native-space image).
        The message names ``source`` and both affines.
    """
    if grid.matches(atlas.grid):
        return True
    lin = grid.affine[:3, :3]
    off_diagonal = np.abs(lin - np.diag(np.diag(lin))).max()
    corners = np.array([[0, 0, 0], np.asarray(grid.shape) - 1], dtype=np.float64)
    lo_g, hi_g = np.sort(grid.voxel_to_world(corners), axis=0)
    a_corners = np.array([[0, 0, 0], np.asarray(atlas.grid.shape) - 1], dtype=np.float64)
    lo_a, hi_a = np.sort(atlas.grid.voxel_to_world(a_corners), axis=0)
    labelled = np.argwhere(atlas.labels.numpy() > 0)
    box = np.sort(atlas.grid.voxel_to_world(np.stack([labelled.min(0), labelled.max(0)]).astype(float)), axis=0)
    tol = float(grid.voxel_size.max())
    problems = []
    if off_diagonal > 1e-3 * float(np.abs(lin).max()):
        problems.append("its affine is rotated or sheared relative to the atlas")
    if np.any(box[0] < lo_g - tol) or np.any(box[1] > hi_g + tol):
        problems.append("its field of view does not hold the atlas regions")
    if np.any(np.abs((hi_g - lo_g) - (hi_a - lo_a)) > max_fov_difference_mm):
        problems.append(f"its field of view {np.round(hi_g - lo_g, 1).tolist()} mm differs from the "
                        f"atlas grid's {np.round(hi_a - lo_a, 1).tolist()} mm by more than "
                        f"{max_fov_difference_mm:g} mm (a native-space image?)")
    if problems:
        raise GridMismatchError(
            f"{source}: expected a map in the atlas's template space ({atlas.name}, shape "
            f"{atlas.grid.shape}, affine\n{np.array2string(atlas.grid.affine, precision=3)}); got shape "
            f"{grid.shape}, affine\n{np.array2string(grid.affine, precision=3)}\n" + "; ".join(problems))
    return False


def load_deformation(path: str | os.PathLike) -> tuple[torch.Tensor, Grid]:
    """Read an SPM/CAT12/vbmkit ``y_`` deformation (template voxel -> subject mm), RAS order.

    Used to carry an atlas into a subject's native space (``vbmkit roi --native``).

    Returns
    -------
    field_mm : torch.Tensor
        (X, Y, Z, 3) float32: for every voxel of the template grid, the subject mm it maps to.
    grid : Grid
        RAS template grid of the field.

    Raises
    ------
    ResourceError
        When the file is missing, unreadable or not a (X, Y, Z, [1,] 3) field.
    """
    p = Path(path)
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for foreign files
        raise ResourceError(f"deformation {p}: expected a y_ NIfTI field; could not read it ({exc})") from exc
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim != 4 or data.shape[3] != 3:
        raise ResourceError(f"deformation {p}: expected shape (X, Y, Z, 1, 3) or (X, Y, Z, 3) of mm; "
                            f"got {data.shape}")
    ornt = nib.orientations.io_orientation(img.affine)
    ras = nib.orientations.apply_orientation(data, ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, data.shape[:3])
    return torch.from_numpy(np.ascontiguousarray(ras)), Grid(ras.shape[:3], affine)
