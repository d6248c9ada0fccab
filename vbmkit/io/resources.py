"""Packaged resources: CAT12 templates and atlases (deepmriprep wheel), deepbet weights,
the atlases shipped with vbmkit (``vbmkit._atlases``: the repository's ``atlases/`` folder) and
the example study YAMLs (``vbmkit._examples``: the repository's ``examples/`` folder).

Nothing is downloaded: a missing file raises :class:`ResourceError` saying which package to
install. Locations are found without importing the heavy packages (deepmriprep, deepbet);
:func:`describe_resource` names a file by package and version for provenance records, never by
the absolute path of an installation or checkout.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from importlib import metadata
from pathlib import Path

from vbmkit.errors import ResourceError

#: The repository's top folder, used only when ``vbmkit._atlases`` / ``vbmkit._examples`` cannot
#: be imported (an editable install made before they were mapped; reinstall with ``pip install -e .``).
_CHECKOUT = Path(__file__).resolve().parents[2]
#: package -> (folder of a checkout it maps, name of the folder in the wheel)
_SHIPPED = {"vbmkit._atlases": "atlases", "vbmkit._examples": "examples"}


def _shipped_dir(package: str) -> Path:
    """Folder of a data package shipped in the vbmkit wheel (``vbmkit._atlases``, ``vbmkit._examples``)."""
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        root = None
    if isinstance(root, Path) and root.is_dir():
        return root
    fallback = _CHECKOUT / _SHIPPED[package]
    if fallback.is_dir():
        return fallback
    raise ResourceError(f"package {package!r}: expected it inside the vbmkit installation; it is missing "
                        "(reinstall vbmkit: pip install .)")


def atlas_dir() -> Path:
    """Folder of the atlases shipped with vbmkit (one sub-folder per atlas)."""
    return _shipped_dir("vbmkit._atlases")


def example_yaml(name: str) -> Path:
    """An example study YAML shipped with vbmkit (``demo``, ``glm_example``, ``ds002748``)."""
    path = _shipped_dir("vbmkit._examples") / f"{name}.yaml"
    if not path.is_file():
        raise ResourceError(f"example {name!r}: expected {path} (shipped with vbmkit); it is missing "
                            "(reinstall vbmkit)")
    return path


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def describe_resource(path: str | Path) -> str:
    """Name a resource file by the package that ships it and its version.

    ``vbmkit 0.1.0 (vbmkit/_atlases/lpba40/lpba40.nii.gz)`` or
    ``deepmriprep 0.3.0 (deepmriprep/data/templates/Template_4_GS.nii.gz)``; a file that no
    package ships (a user's own atlas) is named by its path.
    """
    p = Path(path).resolve()
    owners: list[tuple[str, str, Path]] = []
    for package in _SHIPPED:
        try:
            owners.append(("vbmkit", package.replace(".", "/"), _shipped_dir(package).resolve()))
        except ResourceError:
            pass
    for dist in ("deepmriprep", "deepbet"):
        try:
            owners.append((dist, dist, _package_dir(dist).resolve()))
        except ResourceError:
            pass
    for dist, name, root in owners:
        if p.is_relative_to(root):
            return f"{dist} {_version(dist)} ({name}/{p.relative_to(root).as_posix()})"
    return str(path)


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

    Looks in the atlases shipped with vbmkit first (``vbmkit/_atlases/<name>/<name>.nii.gz`` and
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
        try:
            base = atlas_dir() / name
            candidates.append((base / f"{name}.nii.gz", base / f"{name}_labels.csv"))
        except ResourceError:
            pass
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
