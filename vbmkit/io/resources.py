"""Packaged resources: CAT12 templates and atlases (deepmriprep wheel), deepbet weights,
and the atlases shipped in this repository's ``atlases/`` folder.

Nothing is downloaded: a missing file raises :class:`ResourceError` saying which package to
install. Locations are found without importing the packages (their imports are heavy).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vbmkit.errors import ResourceError

REPO_ATLAS_DIR = Path(__file__).resolve().parents[2] / "atlases"
PACKAGE_ATLAS_DIR = Path(__file__).resolve().parents[1] / "data" / "atlases"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceError(f"package {name!r}: expected it installed (pip install {name}); it is not")
    return Path(next(iter(spec.submodule_search_locations)))


def deepmriprep_template_dir() -> Path:
    """``deepmriprep/data/templates`` of the installed deepmriprep wheel."""
    path = _package_dir("deepmriprep") / "data" / "templates"
    if not path.is_dir():
        raise ResourceError(f"deepmriprep templates: expected folder {path}; it is missing "
                            "(reinstall deepmriprep==0.3.0)")
    return path


def template_path(name: str = "Template_4_GS") -> Path:
    """Path of a CAT12 template shipped by deepmriprep (``Template_4_GS``, ``Template_05mm_bet``)."""
    path = deepmriprep_template_dir() / f"{name}.nii.gz"
    if not path.is_file():
        raise ResourceError(f"template {name!r}: expected {path}; it is missing")
    return path


def deepbet_weights() -> tuple[Path, Path]:
    """(model.pt, bbox_model.pt) TorchScript weights that ship in the deepbet wheel."""
    root = _package_dir("deepbet").parent / "data" / "models"
    paths = (root / "model.pt", root / "bbox_model.pt")
    for p in paths:
        if not p.is_file():
            raise ResourceError(f"deepbet weights: expected {p}; it is missing (reinstall deepbet==1.0.2)")
    return paths


def atlas_paths(name: str) -> tuple[Path, Path]:
    """(image, label table) of an atlas by name.

    Looks in this repository's ``atlases/<name>/`` first (``<name>.nii.gz`` and
    ``<name>_labels.csv``), then in the deepmriprep wheel (``<name>.nii.gz``, ``<name>.csv``).
    An existing path to a NIfTI file is also accepted, with its table beside it
    (``<stem>.csv`` or ``<stem>_labels.csv``).
    """
    candidates: list[tuple[Path, Path]] = []
    p = Path(name)
    if p.suffix in (".nii", ".gz") and p.is_file():
        stem = p.name.split(".")[0]
        candidates += [(p, p.with_name(f"{stem}_labels.csv")), (p, p.with_name(f"{stem}.csv"))]
    else:
        for base in (REPO_ATLAS_DIR / name, PACKAGE_ATLAS_DIR / name):
            candidates.append((base / f"{name}.nii.gz", base / f"{name}_labels.csv"))
        try:
            tdir = deepmriprep_template_dir()
            candidates.append((tdir / f"{name}.nii.gz", tdir / f"{name}.csv"))
        except ResourceError:
            pass
    for image, table in candidates:
        if image.is_file():
            if not table.is_file():
                raise ResourceError(f"atlas {name!r}: found image {image} but no label table {table}")
            return image, table
    raise ResourceError(f"atlas {name!r}: expected one of {[str(c[0]) for c in candidates]}; none exists")
