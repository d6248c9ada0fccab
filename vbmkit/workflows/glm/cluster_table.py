"""``clusters.csv``: one row per peak, up to three sub-peaks per cluster (SPM / nilearn style).

The peaks come from :func:`vbmkit.stats.peaks.cluster_peaks`; the p, q and FWE p of each peak are
read from the maps the GLM wrote, the regions from LPBA40 and neuromorphometrics
(:mod:`vbmkit.io.atlas`). Cluster-level columns (size, ``p_fwe_cluster``, ``p_fwe_mass``) repeat
on every peak row of their cluster, so that each row stands alone in a spreadsheet.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vbmkit.io.atlas import load_atlas, region_at_mm
from vbmkit.stats.peaks import cluster_peaks, equivalent_z

#: Columns of clusters.csv (one row per peak). ``p_fwe`` / ``p_fwe_tfce`` are empty without
#: permutations / TFCE; ``p_fwe_cluster`` / ``p_fwe_mass`` only with the map-level engine.
CLUSTER_COLUMNS = ["cluster", "peak", "size_voxels", "size_ml", "peak_value", "z", "p", "q_fdr", "p_fwe",
                   "p_fwe_tfce", "peak_x_mm", "peak_y_mm", "peak_z_mm", "lpba40_region",
                   "neuromorphometrics_region", "p_fwe_cluster", "p_fwe_mass"]
#: Atlases whose region at each peak is listed (column ``<name>_region``).
ATLASES = ("lpba40", "neuromorphometrics")


@dataclass(frozen=True)
class ClusterRow:
    """Cluster-level facts of one listed cluster.

    Attributes
    ----------
    label : int
        Its value in the label image (negative for the negative tail).
    size_voxels : int
    p_fwe_cluster, p_fwe_mass : float
        Extent and mass FWE p (NaN without the map-level engine).
    """

    label: int
    size_voxels: int
    p_fwe_cluster: float = float("nan")
    p_fwe_mass: float = float("nan")


def atlas_lookups(names: Sequence[str] = ATLASES) -> dict[str, Callable[[Sequence[float]], str] | None]:
    """name -> function (x, y, z) mm -> region name, or None (with a warning) when an atlas is unavailable."""
    out: dict[str, Callable[[Sequence[float]], str] | None] = {}
    for name in names:
        try:
            atlas = load_atlas(name)
        except Exception as exc:  # an atlas is optional for the GLM: the column stays empty
            warnings.warn(f"{name} atlas unavailable ({exc}); clusters.csv leaves {name}_region empty",
                          stacklevel=2)
            out[name] = None
            continue
        out[name] = lambda xyz, atlas=atlas: region_at_mm(atlas, xyz)
    return out


def _at(grid: np.ndarray | None, ijk: tuple[int, int, int]) -> float:
    return float(grid[ijk]) if grid is not None else float("nan")


def cluster_table(stat: np.ndarray, labels: np.ndarray, clusters: Sequence[ClusterRow], *, affine: np.ndarray,
                  kind: str, df: tuple[float, float], maps: dict[str, np.ndarray | None],
                  lookups: dict[str, Callable | None]) -> pd.DataFrame:
    """Assemble clusters.csv: up to three peaks > 8 mm apart per cluster, clusters in the given order.

    Parameters
    ----------
    stat : numpy.ndarray, shape (X, Y, Z)
        Observed t or F map (0 outside the mask).
    labels : numpy.ndarray, shape (X, Y, Z), int
        Cluster labels (``ClusterRow.label`` values; negative for the negative tail).
    clusters : sequence of ClusterRow
        The clusters to list, in table order (largest first); their rows are numbered 1, 2, ...
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> MNI mm.
    kind : {"t", "F"}
    df : (float, float)
        ``(df1, df2)`` of the contrast (Z uses them).
    maps : dict
        ``p``, ``q_fdr`` (uncorrected p and BH q of the tested tail), ``p_fwe`` (voxel maxT) and
        ``p_fwe_tfce`` grids of shape (X, Y, Z); a None entry leaves its column empty.
    lookups : dict
        Atlas name -> mm-to-region function (or None), as :func:`atlas_lookups`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CLUSTER_COLUMNS`; ``peak`` is 1 for the cluster maximum, 2 and 3 for
        sub-peaks; ``peak_value`` is t or F, ``z`` its equivalent normal Z (signed like t).
    """
    stat = np.asarray(stat, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    wanted = {c.label for c in clusters}
    peaks = cluster_peaks(stat, np.where(np.isin(labels, list(wanted)), labels, 0), affine=affine)
    by_label: dict[int, list] = {}
    for p in peaks:
        by_label.setdefault(p.cluster, []).append(p)
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    rows = []
    for number, c in enumerate(clusters, start=1):
        for p in by_label.get(c.label, []):
            xyz = [float(v) for v in p.mm]
            # rounded for a readable table: mL to 1 mm^3, statistics to 1e-4, mm to 1e-3; p values as computed
            row = {"cluster": number, "peak": p.rank, "size_voxels": int(c.size_voxels),
                   "size_ml": round(c.size_voxels * voxel_ml, 6), "peak_value": round(p.value, 4),
                   "z": round(float(equivalent_z(p.value, kind=kind, df=df)), 4),
                   "p": _at(maps.get("p"), p.ijk), "q_fdr": _at(maps.get("q_fdr"), p.ijk),
                   "p_fwe": _at(maps.get("p_fwe"), p.ijk), "p_fwe_tfce": _at(maps.get("p_fwe_tfce"), p.ijk),
                   "peak_x_mm": round(xyz[0], 3), "peak_y_mm": round(xyz[1], 3), "peak_z_mm": round(xyz[2], 3),
                   "p_fwe_cluster": float(c.p_fwe_cluster), "p_fwe_mass": float(c.p_fwe_mass)}
            for name, lookup in lookups.items():
                row[f"{name}_region"] = lookup(xyz) if lookup is not None else ""
            rows.append(row)
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
