"""BIDS-derivatives files of one preprocessed subject: a JSON sidecar per image and the
dataset's ``dataset_description.json`` (written by every subject, always with the same content,
so a run with several workers needs no coordination). Orchestration only: the files come from
:mod:`vbmkit.io.bids_write`; the names from :mod:`vbmkit.workflows.preprocess.naming`.
"""

from __future__ import annotations

from pathlib import Path

from vbmkit import __version__
from vbmkit.io.bids_write import (
    TEMPLATE_SPACE,
    source_uri,
    write_dataset_description,
    write_sidecar,
)

#: key -> (space, units, description) of each map vbmkit writes.
MAP_FIELDS = {
    "p0": ("T1w", "label", "CAT12 p0: partial-volume label 0..3 (1 CSF, 2 GM, 3 WM; 1.5 and 2.5 mixtures), native grid"),
    "p1": ("T1w", "probability", "CAT12 p1: GM probability, native grid"),
    "p2": ("T1w", "probability", "CAT12 p2: WM probability, native grid"),
    "p3": ("T1w", "probability", "CAT12 p3: CSF probability, native grid"),
    "mwp1": (TEMPLATE_SPACE, "mL/mL", "CAT12 mwp1: GM warped to Template_4_GS (1.5 mm) and modulated "
             "(tissue fraction x Jacobian: native mL per template mL)"),
    "mwp2": (TEMPLATE_SPACE, "mL/mL", "CAT12 mwp2: WM warped to Template_4_GS (1.5 mm) and modulated"),
    "y": (TEMPLATE_SPACE, "mm", "CAT12 y_: for every template voxel, the subject position (mm) it maps to"),
}


def map_sidecar(key: str, *, source: str, settings_hash: str, cat12_name: str) -> dict:
    """Sidecar fields of one map (``mwp1``, ``s6mwp1``, ``p0``, ``y``, ...)."""
    smoothed = key.startswith("s") and key[1:2].isdigit()
    base = key.lstrip("s0123456789.") if smoothed else key
    space, units, description = MAP_FIELDS[base]
    fields = {"Sources": [source], "Space": space, "Units": units, "SettingsHash": settings_hash,
              "Description": description, "CAT12Name": cat12_name,
              "GeneratedBy": {"Name": "vbmkit", "Version": __version__}}
    if space == TEMPLATE_SPACE:
        fields["Resolution"] = "1.5 mm isotropic, 113 x 137 x 113 (CAT12 Template_4_GS grid)"
    if smoothed:
        fields["SmoothingFWHM_mm"] = float(key[1:len(key) - len(base)])
    return fields


def write_derivative_files(paths: dict[str, Path], *, out: Path, name: str, t1_path: Path,
                           settings_hash: str) -> list[Path]:
    """Write a sidecar beside every image of ``paths`` and the dataset description.

    Parameters
    ----------
    paths : dict
        :func:`vbmkit.workflows.preprocess.naming.output_paths` of the subject.
    out : Path
        The preprocessing output folder (the derivative dataset's root).
    name : str
        The subject's name (CAT12 names: ``mwp1<name>``).
    t1_path : Path
        The input image (``Sources``; its BIDS root: ``SourceDatasets``).
    settings_hash : str
        :func:`vbmkit.workflows.preprocess.naming.settings_hash`.

    Returns
    -------
    list of Path
        The sidecars and ``dataset_description.json``.
    """
    source = source_uri(t1_path)
    written = []
    for key, path in paths.items():
        if key == "report":
            continue
        cat12 = f"y_{name}" if key == "y" else f"{key}{name}"
        written.append(write_sidecar(path, map_sidecar(key, source=source, settings_hash=settings_hash,
                                                       cat12_name=cat12)))
    written.append(write_dataset_description(out, version=__version__, source=t1_path, settings_hash=settings_hash))
    return written
