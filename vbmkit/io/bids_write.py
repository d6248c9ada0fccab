"""Writing a BIDS-derivatives dataset: ``dataset_description.json``, JSON sidecars, BIDS names.

vbmkit's preprocessing output folder is a derivative dataset in both layouts
(``docs/outputs.md``): ``dataset_description.json`` with ``DatasetType: derivative``,
``GeneratedBy`` (name, version) and ``SourceDatasets``; a JSON sidecar beside every image
(``Sources``, ``Space``, ``Units``, ``SettingsHash``). With ``preprocess.layout: bids`` the maps
also get BIDS-derivatives names (common derivatives: ``_probseg``, ``_dseg``, ``_xfm``):
``sub-<label>[_ses-<label>][_acq-..][_run-..]_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz``.

:func:`check_derivative_structure` checks a folder against these rules (the tests use it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vbmkit.errors import ConfigError
from vbmkit.io.atomic import write_json, write_text

#: BIDS version the dataset description declares.
BIDS_VERSION = "1.9.0"
#: Entities of a raw T1w name that are kept in the derivative names, in BIDS order.
SOURCE_ENTITIES = ("sub", "ses", "acq", "ce", "rec", "run")
#: Order of every entity vbmkit writes (BIDS entity table; from/to/mode as in BIDS transforms).
ENTITY_ORDER = (*SOURCE_ENTITIES, "from", "to", "mode", "space", "res", "label", "desc")
#: Template space of the warped maps (CAT12's Template_4_GS is in MNI152NLin2009cAsym).
TEMPLATE_SPACE = "MNI152NLin2009cAsym"
#: Top-level entries that are not BIDS (listed in ``.bidsignore``).
BIDSIGNORE = ("volumes.csv", "errors.csv", "**/report/", "**/label/", "**/mri/")
_IMAGE = re.compile(r"\.nii(\.gz)?$")
_REQUIRED = ("Name", "BIDSVersion", "DatasetType", "GeneratedBy")


def bids_entities(name: str) -> dict[str, str]:
    """Entities of an input name (``sub-01_ses-2_run-1_T1w`` -> ``{sub: 01, ses: 2, run: 1}``).

    A name that is not BIDS (``phantom``, ``IXI002_T1``) becomes the subject label, stripped
    of every character that is not a letter or digit (``sub-IXI002T1``).

    Raises
    ------
    ConfigError
        When no letter or digit is left for the subject label.
    """
    parts = dict(p.split("-", 1) for p in name.split("_") if "-" in p)
    if "sub" in parts and re.fullmatch(r"[A-Za-z0-9]+", parts["sub"]):
        return {k: parts[k] for k in SOURCE_ENTITIES if k in parts and re.fullmatch(r"[A-Za-z0-9]+", parts[k])}
    label = re.sub(r"[^A-Za-z0-9]", "", name)
    if not label:
        raise ConfigError(f"input name {name!r}: expected letters or digits to form a BIDS subject label; "
                          "found none")
    return {"sub": label}


_BIDS_MAP = re.compile(r"^(?P<prefix>sub-[A-Za-z0-9]+(?:_(?:ses|acq|ce|rec|run)-[A-Za-z0-9]+)*)"
                       r"(?P<space>_space-[A-Za-z0-9]+)?(?:_label-(?P<label>GM|WM|CSF))?"
                       r"(?:_desc-(?P<desc>[A-Za-z0-9]+))?_(?P<suffix>probseg|dseg)$")
_TISSUE_NUMBER = {"GM": "1", "WM": "2", "CSF": "3"}
_SMOOTHED_DESC = re.compile(r"^s(?P<fwhm>[0-9]+(?:p[0-9]+)?)modulated$")


def bids_map_kind(stem: str) -> tuple[str, str] | None:
    """(entity prefix, CAT12 kind) of a map written in the bids layout, or None for other names.

    ``sub-01_space-MNI152NLin2009cAsym_label-GM_desc-s6modulated_probseg`` ->
    ``("sub-01", "s6mwp1")``; ``sub-01_ses-2_label-WM_probseg`` -> ``("sub-01_ses-2", "p2")``;
    ``sub-01_desc-p0_dseg`` -> ``("sub-01", "p0")``. The inverse of the names vbmkit writes
    (``docs/outputs.md``); the smoothing tag ``4p5`` reads back as ``4.5``.
    """
    m = _BIDS_MAP.match(stem)
    if m is None:
        return None
    label, desc = m.group("label"), m.group("desc")
    if m.group("suffix") == "dseg":
        return (m.group("prefix"), "p0") if desc == "p0" and label is None else None
    if label is None:
        return None
    n = _TISSUE_NUMBER[label]
    if desc is None and m.group("space") is None:
        return m.group("prefix"), f"p{n}"
    if desc == "modulated":
        return m.group("prefix"), f"mwp{n}"
    smoothed = _SMOOTHED_DESC.match(desc or "")
    if smoothed:
        return m.group("prefix"), f"s{smoothed.group('fwhm').replace('p', '.')}mwp{n}"
    return None


def bids_name(entities: Mapping[str, str], suffix: str, extension: str = ".nii.gz") -> str:
    """``key-value`` pairs in :data:`ENTITY_ORDER`, then ``_<suffix><extension>``."""
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ConfigError(f"BIDS entities: expected some of {list(ENTITY_ORDER)}; got {sorted(unknown)}")
    pairs = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities and entities[k] is not None]
    return "_".join([*pairs, suffix]) + extension


def subject_folder(out: str | os.PathLike, entities: Mapping[str, str]) -> Path:
    """``<out>/sub-<label>[/ses-<label>]``."""
    folder = Path(out) / f"sub-{entities['sub']}"
    return folder / f"ses-{entities['ses']}" if "ses" in entities else folder


def sidecar_path(image: str | os.PathLike) -> Path:
    """``x.nii.gz`` -> ``x.json`` beside it."""
    p = Path(image)
    return p.with_name(_IMAGE.sub("", p.name) + ".json")


def find_bids_root(path: str | os.PathLike, *, levels: int = 5) -> Path | None:
    """The nearest folder above ``path`` (up to ``levels``) holding ``dataset_description.json``."""
    for parent in list(Path(path).resolve().parents)[:levels]:
        if (parent / "dataset_description.json").is_file():
            return parent
    return None


def source_uri(path: str | os.PathLike) -> str:
    """A BIDS URI of an input (``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``) or its ``file://`` URI."""
    root = find_bids_root(path)
    p = Path(path).resolve()
    return f"bids:raw:{p.relative_to(root).as_posix()}" if root is not None else p.as_uri()


def write_dataset_description(out: str | os.PathLike, *, version: str, source: str | os.PathLike | None = None,
                              settings_hash: str | None = None) -> Path:
    """Write ``<out>/dataset_description.json`` and ``<out>/.bidsignore`` (atomically).

    Parameters
    ----------
    out : path
        The derivative dataset's root.
    version : str
        vbmkit's version (``GeneratedBy[0].Version``).
    source : path, optional
        One input image: its BIDS root (if any) becomes ``SourceDatasets`` and the ``raw``
        dataset link of the sidecars' ``Sources``.
    settings_hash : str, optional
        Recorded in ``GeneratedBy[0].Description``.
    """
    root = find_bids_root(source) if source is not None else None
    desc: dict[str, Any] = {
        "Name": "vbmkit preprocessing",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "vbmkit", "Version": version,
                         "Description": "voxel-based morphometry preprocessing (classic engine)"
                         + (f"; settings hash {settings_hash}" if settings_hash else ""),
                         "CodeURL": "https://pypi.org/project/vbmkit/"}],
        "SourceDatasets": [],
    }
    if root is not None:
        raw = _read_json(root / "dataset_description.json")
        entry = {"URL": root.as_uri()}
        if raw.get("DatasetDOI"):
            entry["DOI"] = str(raw["DatasetDOI"])
        if raw.get("Name"):
            entry["Name"] = str(raw["Name"])
        desc["SourceDatasets"] = [entry]
        desc["DatasetLinks"] = {"raw": root.as_uri()}
    elif source is not None:
        desc["SourceDatasets"] = [{"URL": Path(source).resolve().parent.as_uri()}]
    path = write_json(Path(out) / "dataset_description.json", desc)
    write_text(Path(out) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_sidecar(image: str | os.PathLike, fields: Mapping[str, Any]) -> Path:
    """Write the JSON sidecar of an image (``x.nii.gz`` -> ``x.json``) atomically."""
    return write_json(sidecar_path(image), dict(fields))


def check_derivative_structure(root: str | os.PathLike) -> list[str]:
    """Problems of a BIDS-derivatives folder as vbmkit writes it (empty list: none).

    Checks: ``dataset_description.json`` with the required keys (``Name``, ``BIDSVersion``,
    ``DatasetType`` = ``derivative``, ``GeneratedBy`` with ``Name`` and ``Version``,
    ``SourceDatasets``); a JSON sidecar beside every image; and, for images under
    ``sub-*/[ses-*/]anat/``, a name of ``key-value`` entities in :data:`ENTITY_ORDER` order
    starting with the folder's ``sub`` (and ``ses``), then a suffix.
    """
    root = Path(root)
    problems: list[str] = []
    desc = _read_json(root / "dataset_description.json")
    if not desc:
        return [f"{root}: dataset_description.json missing or not a JSON object"]
    problems += [f"dataset_description.json: key {k!r} missing" for k in (*_REQUIRED, "SourceDatasets")
                 if k not in desc]
    if desc.get("DatasetType") != "derivative":
        problems.append(f"dataset_description.json: DatasetType expected 'derivative'; got {desc.get('DatasetType')!r}")
    gen = desc.get("GeneratedBy")
    if not (isinstance(gen, list) and gen and all(isinstance(g, dict) and g.get("Name") and g.get("Version")
                                                  for g in gen)):
        problems.append("dataset_description.json: GeneratedBy expected a list of {Name, Version}")
    for image in sorted(p for p in root.rglob("*") if _IMAGE.search(p.name) and p.is_file()):
        rel = image.relative_to(root)
        if not sidecar_path(image).is_file():
            problems.append(f"{rel}: no JSON sidecar")
        if "anat" in rel.parts:
            problems += [f"{rel}: {p}" for p in _name_problems(image.name, rel.parts)]
    return problems


def _name_problems(name: str, parts: tuple[str, ...]) -> list[str]:
    stem = _IMAGE.sub("", name)
    *pairs, suffix = stem.split("_")
    if not re.fullmatch(r"[A-Za-z0-9]+", suffix):
        return [f"suffix {suffix!r} is not alphanumeric"]
    keys = []
    for pair in pairs:
        key, sep, value = pair.partition("-")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", value):
            return [f"entity {pair!r} is not key-<alphanumeric label>"]
        keys.append(key)
    out = []
    unknown = [k for k in keys if k not in ENTITY_ORDER]
    if unknown:
        out.append(f"entities {unknown} unknown")
    known = [ENTITY_ORDER.index(k) for k in keys if k in ENTITY_ORDER]
    if known != sorted(known) or len(set(keys)) != len(keys):
        out.append(f"entities {keys} not in BIDS order {list(ENTITY_ORDER)}")
    folder = {p.split("-", 1)[0]: p.split("-", 1)[1] for p in parts[:-2] if "-" in p}
    for key in ("sub", "ses"):
        if key in folder and f"{key}-{folder[key]}" not in pairs:
            out.append(f"{key}-{folder[key]} of its folder missing from the name")
    return out
