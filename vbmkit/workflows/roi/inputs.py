"""Inputs of ``vbmkit roi``: map files, globs and output folders -> subjects with mwp1/mwp2/mwp3.

Folders are searched with :func:`vbmkit.io.maps.find_maps` (vbmkit, CAT12 and deepmriprep
layouts); maps of one subject are paired by name (``mwp1<name>`` / ``mwp2<name>``, deepmriprep
``<name>_mwp1``, or ``mwp1/<name>`` folders).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vbmkit.errors import ImageError
from vbmkit.io.bids_write import bids_map_kind
from vbmkit.io.maps import find_maps
from vbmkit.io.nifti import image_stem

TISSUE_KINDS = {"gm": "mwp1", "wm": "mwp2", "csf": "mwp3"}


@dataclass(frozen=True)
class SubjectMaps:
    """One subject's modulated maps: ``name`` (file stem without the kind) and tissue -> path."""

    name: str
    maps: dict[str, Path]


def split_kind(path: Path) -> tuple[str, str] | None:
    """(tissue, subject name) of a map file, or None when it is no mwp1/mwp2/mwp3 map."""
    stem = image_stem(path)
    bids = bids_map_kind(stem)  # sub-01_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg
    if bids is not None:
        tissues = {kind: tissue for tissue, kind in TISSUE_KINDS.items()}
        return (tissues[bids[1]], bids[0]) if bids[1] in tissues else None
    for tissue, kind in TISSUE_KINDS.items():
        if stem.startswith(kind):
            return tissue, stem[len(kind):]
        if stem.endswith(f"_{kind}"):  # deepmriprep BIDS: sub-X_mwp1
            return tissue, stem[: -len(kind) - 1]
        if path.parent.name == kind:  # deepmriprep "mod" layout: mwp1/<name>.nii.gz
            return tissue, stem
    return None


def _sibling(path: Path, tissue: str, other: str) -> Path | None:
    """The map of tissue ``other`` beside ``path`` (a map of ``tissue``), if it exists."""
    a, b = TISSUE_KINDS[tissue], TISSUE_KINDS[other]
    name = path.name
    candidates = []
    if name.startswith(a):
        candidates.append(path.with_name(b + name[len(a):]))
    candidates.append(path.with_name(re.sub(rf"_{a}(\.nii(\.gz)?)$", rf"_{b}\1", name)))
    if path.parent.name == a:
        candidates.append(path.parent.parent / b / name)
    if bids_map_kind(image_stem(path)) is not None:  # label-GM -> label-WM
        candidates.append(path.with_name(name.replace(f"_label-{tissue.upper()}_", f"_label-{other.upper()}_")))
    for c in candidates:
        for cand in (c, c.with_name(c.name[:-3]) if c.name.endswith(".gz") else c.with_name(c.name + ".gz")):
            if cand != path and cand.is_file():
                return cand
    return None


def find_subject_maps(images: Sequence[str | os.PathLike]) -> list[SubjectMaps]:
    """Expand files, globs and output folders into subjects with their mwp1/mwp2/(mwp3) maps.

    Folders are searched for ``mwp1`` maps (vbmkit, CAT12 and deepmriprep layouts, see
    :func:`vbmkit.io.maps.find_maps`); the ``mwp2``/``mwp3`` map of the same subject is the file
    of the same name with the other kind beside it. Files given directly may be of any kind.

    Raises
    ------
    ImageError
        A file that is no mwp1/mwp2/mwp3 map, a subject without mwp1, or a subject given twice
        (both files named).
    """
    subjects: dict[str, dict[str, Path]] = {}
    for path in find_maps(images, kind="mwp1"):
        split = split_kind(path)
        if split is None:
            raise ImageError(f"images {path}: expected a modulated tissue map named mwp1<name>, mwp2<name> "
                             "or mwp3<name> (CAT12/vbmkit/deepmriprep naming); got another name")
        tissue, name = split
        entry = subjects.setdefault(name, {})
        if tissue in entry and entry[tissue].resolve() != path.resolve():
            raise ImageError(f"subject {name!r}: expected one {TISSUE_KINDS[tissue]} map; given twice: "
                             f"{entry[tissue]} and {path}")
        entry[tissue] = path
    out = []
    for name, maps in subjects.items():
        if "gm" not in maps:
            first = next(iter(maps.values()))
            tissue = next(iter(maps))
            gm = _sibling(first, tissue, "gm")
            if gm is None:
                raise ImageError(f"subject {name!r}: expected an mwp1 (GM) map beside {first}; found none")
            maps["gm"] = gm
        for other in ("wm", "csf"):
            if other not in maps:
                sib = _sibling(maps["gm"], "gm", other)
                if sib is not None:
                    maps[other] = sib
        out.append(SubjectMaps(name, dict(sorted(maps.items(), key=lambda kv: list(TISSUE_KINDS).index(kv[0])))))
    return sorted(out, key=lambda s: s.name)


def common_tissues(subjects: Sequence[SubjectMaps]) -> list[str]:
    """Tissues every subject has (gm always); a tissue some subjects lack is an error."""
    tissues = ["gm"]
    for t in ("wm", "csf"):
        have = [s.name for s in subjects if t in s.maps]
        if len(have) == len(subjects):
            tissues.append(t)
        elif have:
            lacking = [s.name for s in subjects if t not in s.maps]
            raise ImageError(f"{TISSUE_KINDS[t]} maps: expected one for every subject or none; "
                             f"{len(lacking)} subjects have none: {lacking[:10]}")
    return tissues
