"""Preprocessed map files: find them in files, globs and output folders, match them to subject IDs.

Layouts recognised when a folder is given (``kind`` is the map kind, e.g. ``s6mwp1``):

==========================  ==============================================================
vbmkit                      ``<out>/<name>/mri/<kind><name>.nii.gz``
CAT12                       ``<dir>/mri/<kind><name>.nii``; BIDS input: ``sub-X/[ses-Y/]anat/<kind>sub-X_..._T1w.nii``
deepmriprep ``sub``/``cat``  ``<dir>/<name>/[mri/]<kind><name>.nii.gz``
deepmriprep ``flat``         ``<dir>/<kind><name>.nii.gz``
deepmriprep ``mod``          ``<dir>/<kind>/<name>.nii.gz``
deepmriprep BIDS             ``derivatives/deepmriprep-v*/sub-X/anat/sub-X_<kind>.nii.gz``
vbmkit ``layout: bids``      ``<out>/sub-X/anat/sub-X_space-..._label-GM_desc-s6modulated_probseg.nii.gz``
==========================  ==============================================================

Files and globs are taken as given. Each file's subject is the covariate ID that occurs in
its name (:func:`match_ids`).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vbmkit.errors import CovariateError, ImageError
from vbmkit.io.bids_write import bids_map_kind
from vbmkit.io.nifti import image_stem, is_image_path

_GLOB_CHARS = re.compile(r"[*?\[]")


def _is_map_of_kind(path: Path, kind: str) -> bool:
    stem = image_stem(path)
    if stem.startswith("."):  # temporary files of atomic writes
        return False
    bids = bids_map_kind(stem)
    return (stem.startswith(kind) or stem.endswith(f"_{kind}") or path.parent.name == kind
            or (bids is not None and bids[1] == kind))


def find_maps(inputs: Iterable[str | os.PathLike], *, kind: str = "s6mwp1") -> list[Path]:
    """Expand files, globs and output folders into a sorted list of map files.

    Parameters
    ----------
    inputs : iterable of str or path
        Image files (taken as given), glob patterns (image files among the matches are taken
        as given; folders among them are searched), or folders searched recursively for maps
        of ``kind`` in the layouts listed in the module docstring.
    kind : str
        Map kind to select inside folders: file names starting with it (``s6mwp1sub-01.nii``),
        ending with ``_<kind>`` (deepmriprep BIDS) or files in a folder named ``kind``
        (deepmriprep ``mod`` layout).

    Returns
    -------
    list of Path
        Unique files in sorted order.

    Raises
    ------
    ImageError
        When an input matches nothing (naming the input and, for folders, the kind looked for).
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        if _GLOB_CHARS.search(text) and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ImageError(f"images {text!r}: expected the glob to match image files; it matches nothing")
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(text)]
        for p in paths:
            if p.is_dir():
                hits = sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f)
                              and _is_map_of_kind(f, kind))
                if not hits:
                    raise ImageError(f"images {p}: expected {kind}* maps in this folder (vbmkit, CAT12 "
                                     f"or deepmriprep layout); found none (choose the kind with --map)")
                found += hits
            elif p.is_file():
                if is_image_path(p):
                    found.append(p)
                elif not _GLOB_CHARS.search(text):
                    raise ImageError(f"images {p}: expected a NIfTI image (.nii or .nii.gz) or a folder")
            else:
                raise ImageError(f"images {p}: expected a file, a glob or a folder; it does not exist")
    unique = sorted({f.resolve(): f for f in found}.values(), key=lambda f: str(f))
    if not unique:
        raise ImageError(f"images {list(map(str, inputs))}: expected at least one image; found none")
    return unique


def _occurs(identifier: str, name: str) -> bool:
    """True when ``identifier`` occurs in ``name`` as a whole ID, not as the start of a longer one.

    A trailing digit must not be followed by another digit (``sub-01`` is not in ``sub-010``);
    a leading digit must not follow another digit (``01`` is not in ``101``). Letters before
    the ID are allowed because map kinds are glued to it (``s6mwp1sub-01``).
    """
    start = 0
    while True:
        i = name.find(identifier, start)
        if i < 0:
            return False
        j = i + len(identifier)
        after_ok = j == len(name) or not (identifier[-1].isalnum() and name[j].isalnum()
                                           and (name[j].isdigit() == identifier[-1].isdigit()))
        before_ok = i == 0 or not (identifier[0].isdigit() and name[i - 1].isdigit())
        if after_ok and before_ok:
            return True
        start = i + 1


def file_id(path: Path, ids: Sequence[str], *, kind: str | None = None) -> str | None:
    """The subject ID of one file: the longest ID occurring in its name, else in its folders.

    Raises
    ------
    CovariateError
        When two different IDs of the same, longest length occur in one name.
    """
    stem = image_stem(path)
    if kind and stem.startswith(kind):
        stem = stem[len(kind):]  # "s6mwp1" must not match the IDs "1" or "6"
    names = [stem] + [part for part in reversed(path.parent.parts)]
    for name in names:
        hits = [i for i in ids if i and i in name and _occurs(i, name)]  # "in" first: fast C check
        if hits:
            longest = max(len(h) for h in hits)
            top = sorted({h for h in hits if len(h) == longest})
            if len(top) > 1:
                raise CovariateError(f"image {path}: expected one covariate ID in its name; found {top}")
            return top[0]
    return None


@dataclass(frozen=True)
class Matched:
    """Images matched to covariate IDs.

    Attributes
    ----------
    paths : list of Path
        One image per matched ID, in the order of ``ids``.
    ids : list of str
        IDs that have both a row and an image (covariate table order).
    images_without_row : list of Path
    rows_without_image : list of str
    """

    paths: list[Path]
    ids: list[str]
    images_without_row: list[Path]
    rows_without_image: list[str]


def match_ids(paths: Sequence[Path], ids: Sequence[str], *, kind: str | None = None) -> Matched:
    """Pair every image with the covariate ID in its name.

    Raises
    ------
    CovariateError
        When two images carry the same ID (both files named).
    """
    by_id: dict[str, Path] = {}
    unmatched: list[Path] = []
    for p in paths:
        ident = file_id(Path(p), ids, kind=kind)
        if ident is None:
            unmatched.append(Path(p))
        elif ident in by_id:
            raise CovariateError(f"subject {ident!r}: expected one image per ID; got two: {by_id[ident]} "
                                 f"and {p} (select one map kind with --map or pass files)")
        else:
            by_id[ident] = Path(p)
    ordered = [i for i in ids if i in by_id]
    return Matched(paths=[by_id[i] for i in ordered], ids=ordered, images_without_row=unmatched,
                   rows_without_image=[i for i in ids if i not in by_id])
