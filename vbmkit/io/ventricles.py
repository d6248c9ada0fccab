"""The lateral ventricles of the neuromorphometrics atlas (deepmriprep wheel) on vbmkit's 1.5 mm
template grid: the anatomy behind the CSF/WM class region and the periventricular GM figure
(:mod:`vbmkit.preprocess.periventricular`)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from vbmkit.errors import ResourceError
from vbmkit.io.nifti import load_volume
from vbmkit.io.resources import deepmriprep_template_dir
from vbmkit.io.templates import load_shooting_template
from vbmkit.space import resample

#: neuromorphometrics labels of the lateral ventricles (with their inferior horns).
LATERAL_VENTRICLE_NAMES = ("Right Lateral Ventricle", "Left Lateral Ventricle", "Right Inf Lat Vent",
                           "Left Inf Lat Vent")


@lru_cache(maxsize=1)
def _ventricles() -> np.ndarray:
    folder = deepmriprep_template_dir()
    table = pd.read_csv(folder / "neuromorphometrics.csv", sep=";")
    ids = table.loc[table["ROIname"].isin(LATERAL_VENTRICLE_NAMES), "ROIid"].astype(int).tolist()
    if len(ids) != len(LATERAL_VENTRICLE_NAMES):
        raise ResourceError(f"{folder / 'neuromorphometrics.csv'}: expected the labels {LATERAL_VENTRICLE_NAMES}; "
                            f"found ids {ids}")
    atlas = load_volume(folder / "neuromorphometrics.nii.gz")
    shooting = load_shooting_template()
    labels = resample(atlas.data[None, None], atlas.grid, shooting.grid, mode="nearest")[0, 0]
    return np.isin(labels.round().long().numpy(), ids)


def lateral_ventricles() -> torch.Tensor:
    """(113, 137, 113) bool: the lateral ventricles on the Template_4_GS grid (RAS, 1.5 mm)."""
    return torch.from_numpy(_ventricles().copy())
