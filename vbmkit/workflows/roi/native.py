"""Native-space ROI volumes (``vbmkit roi --native``): CAT12's way of measuring regions.

For each subject: the native tissue maps ``p1``/``p2``(/``p3``) and the deformation ``y_``
(template voxel -> subject mm) are read from beside its ``mwp1`` map; the atlas is carried into
the native grid through the numerical inverse of ``y_``
(:func:`vbmkit.stats.roi_native.native_labels`) and the native maps are summed per label
(:func:`vbmkit.stats.roi.region_sums`) times the native voxel volume. Orchestration only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vbmkit.errors import GridMismatchError, ImageError
from vbmkit.io.atlas import Atlas, load_deformation, resample_labels
from vbmkit.io.nifti import image_stem, load_volume
from vbmkit.stats.roi import region_index, region_sums
from vbmkit.stats.roi_native import native_labels
from vbmkit.workflows.progress import ProgressStages
from vbmkit.workflows.roi.maps import check_values

NATIVE_KINDS = {"gm": "p1", "wm": "p2", "csf": "p3"}
#: Share of tissue voxels whose inversion may fail before the run warns.
FAILED_WARN_FRACTION = 1e-3


def native_inputs(gm_map: Path, tissues: Sequence[str]) -> tuple[dict[str, Path], Path]:
    """Native maps and ``y_`` field beside a subject's ``mwp1<name>`` map.

    Raises
    ------
    ImageError
        Naming the files looked for when one is missing.
    """
    stem = image_stem(gm_map)
    if not stem.startswith("mwp1"):
        raise ImageError(f"{gm_map}: --native expects CAT12/vbmkit naming mwp1<name> to find p1<name> "
                         "and y_<name> beside it")
    name, folder = stem[len("mwp1"):], gm_map.parent

    def find(prefix: str) -> Path:
        for ext in (".nii.gz", ".nii"):
            cand = folder / f"{prefix}{name}{ext}"
            if cand.is_file():
                return cand
        raise ImageError(f"--native: expected {folder / f'{prefix}{name}.nii[.gz]'} beside {gm_map.name}; it "
                         "is missing (vbmkit preprocess writes y_ with save_deformation: true; CAT12 with "
                         "native tissue maps and the forward deformation saved)")

    return {t: find(NATIVE_KINDS[t]) for t in tissues}, find("y_")


def native_volumes(subjects: Sequence, tissues: Sequence[str], atl: Atlas, *, device: torch.device,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(N, T, R) regional and (N, T) total native volumes in mL, subject by subject, + timings."""
    inputs = [native_inputs(s.maps["gm"], tissues) for s in subjects]  # all checked before any work
    n, t, r = len(subjects), len(tissues), len(atl.table)
    regional, total = np.zeros((n, t, r)), np.zeros((n, t))
    atlases: dict[tuple, torch.Tensor] = {}
    t_read = t_compute = 0.0
    with ProgressStages(enabled=progress) as stages:
        tick = stages.callback("native ROI volumes", unit="subjects")
        for k, (maps, y_path) in enumerate(inputs):
            tr = time.perf_counter()
            field_mm, ygrid = load_deformation(y_path)
            key = (ygrid.shape, ygrid.affine.round(4).tobytes())
            if key not in atlases:  # the y_ grid is the pipeline's template grid: usually the atlas's
                atlases[key] = atl.labels if ygrid.matches(atl.grid) else torch.from_numpy(
                    resample_labels(atl.labels.numpy(), atl.grid, ygrid))
            labels = atlases[key]
            vols = [load_volume(maps[ti]) for ti in tissues]
            grid = vols[0].grid
            for ti, v in zip(tissues[1:], vols[1:], strict=True):
                v.grid.check_same(grid, names=(str(maps[tissues[0]]), str(maps[ti])))
            data = torch.stack([check_values(v.data, maps[ti]) for ti, v in zip(tissues, vols, strict=True)])
            tc = time.perf_counter()
            inv = torch.as_tensor(np.linalg.inv(grid.affine), dtype=torch.float64)
            field_vox = (field_mm.double() @ inv[:3, :3].T + inv[:3, 3]).float().to(device)
            data = data.to(device)
            mask = data.sum(dim=0) > 0
            native, failed = native_labels(labels.to(device), field_vox, grid.shape, mask=mask)
            n_mask = int(mask.sum())
            if failed > FAILED_WARN_FRACTION * max(n_mask, 1):
                warnings.warn(f"{y_path}: the deformation could not be inverted at {failed} of {n_mask} "
                              "tissue voxels (left unlabelled): is it a y_ field of this subject?", stacklevel=3)
            if int((native > 0).sum()) == 0:
                raise GridMismatchError(f"{y_path}: no tissue voxel of {maps[tissues[0]]} maps into the atlas; "
                                        "expected the deformation of this subject (template -> its native mm)")
            index = region_index(native, atl.region_ids, device=device)
            reg, tot = region_sums(data, index)
            regional[k] = (reg * grid.voxel_volume_ml).cpu().numpy()
            total[k] = (tot * grid.voxel_volume_ml).cpu().numpy()
            t_read += tc - tr
            t_compute += time.perf_counter() - tc
            if tick is not None:
                tick(k + 1, n)
    return regional, total, {"read": round(t_read, 3), "volumes": round(t_compute, 3)}
