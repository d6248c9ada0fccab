"""Each finished subject's map appended to a subject x voxel store (``vbmkit preprocess --store``).

At 40,000 subjects the maps are stacked while they are made, not in a second pass: the
preprocessing hands every finished subject's map (``s6mwp1`` by default) to a
:class:`StoreAppender`, which appends them to the store in batches of ``batch`` subjects (one
chunk row of the store each) and at the end of the run. Subjects finished by an earlier run
are appended too (a no-op when the store holds them with the same checksum), so a run cut
short leaves nothing out once it is run again.

The store's mask is fixed when it is created: Template_4_GS's GM + WM above
:data:`MASK_THRESHOLD`, dilated by :data:`MASK_DILATION_MM` (every voxel a GM or WM map on the
template grid can hold); the GLM applies its own mask rule inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError
from vbmkit.io.store import append_maps, create_store, open_store
from vbmkit.io.templates import load_shooting_template, output_grid
from vbmkit.preprocess.periventricular import dilate_mm
from vbmkit.workflows.preprocess.naming import map_kinds, output_paths

#: Template_4_GS GM + WM probability above which a voxel is in an appended store's mask.
MASK_THRESHOLD = 0.01
#: Dilation of that region (mm): smoothed maps spread beyond the template's tissue.
MASK_DILATION_MM = 6.0


def template_store_mask() -> np.ndarray:
    """(113, 137, 113) bool: the mask of a store grown by the preprocessing (RAS template grid)."""
    template = load_shooting_template()
    tissue = (template.data[0] + template.data[1]) > MASK_THRESHOLD
    return dilate_mm(tissue, MASK_DILATION_MM, tuple(float(v) for v in template.grid.voxel_size)).numpy()


class StoreAppender:
    """Appends finished subjects' maps of kind ``kind`` to the store ``path`` (created if absent).

    Parameters
    ----------
    path : path
        The store folder (``vbmkit stack`` layout).
    kind : str
        Map to store: a key of the preprocessing's outputs (``s6mwp1``, ``mwp1``, ``s6mwp2``...).
    out : path
        The preprocessing output folder.
    settings : PreprocessConfig
    batch : int
        Subjects buffered before they are appended (a store chunk row: 64).

    Raises
    ------
    ConfigError
        ``kind`` is not a map these settings write.
    """

    def __init__(self, path: str | os.PathLike, kind: str, out: str | os.PathLike, settings: PreprocessConfig,
                 *, batch: int = 64) -> None:
        keys = [k for k in map_kinds(settings) if k != "p0"]  # p0 is a label map, not a tissue map
        if kind not in keys:
            raise ConfigError(f"store map: expected one of {keys} (the maps these settings write); got {kind!r}")
        self.path, self.kind, self.out, self.settings = Path(path), kind, Path(out), settings
        self.batch = max(1, batch)
        self.counts = {"appended": 0, "replaced": 0, "unchanged": 0}
        self._pending: list[tuple[str, Path]] = []
        if (self.path / "zarr.json").is_file():
            open_store(self.path)  # a vbmkit store: checked now, not after the first batch
        else:
            grid, stored = output_grid()
            create_store(self.path, grid=grid, mask=template_store_mask(), stored_affine=stored)

    def add(self, name: str) -> None:
        """Queue subject ``name``'s map; append the queue when it holds ``batch`` subjects."""
        self._pending.append((name, output_paths(self.out, name, self.settings)[self.kind]))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Append the queued maps now."""
        if self._pending:
            pending, self._pending = self._pending, []
            for key, n in append_maps(self.path, pending).items():
                self.counts[key] += n
