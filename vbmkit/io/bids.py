"""Discovery of T1 inputs: files, globs, plain folders and BIDS folders.

Each input gets a name, the file name without its image extension (``sub-01_T1w`` for
``sub-01_T1w.nii.gz``), which names its output folder and files (CAT12 style). Two inputs with
one name would overwrite each other's outputs, so that is an error.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vbmkit.errors import ConfigError
from vbmkit.io.nifti import image_stem, is_image_path

BIDS_PATTERNS = ("sub-*/anat/*_T1w.nii.gz", "sub-*/anat/*_T1w.nii",
                 "sub-*/ses-*/anat/*_T1w.nii.gz", "sub-*/ses-*/anat/*_T1w.nii")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class T1Input:
    """One T1 image to preprocess: ``name`` (output stem) and ``path``."""

    name: str
    path: Path


def is_bids_folder(folder: Path) -> bool:
    """True when ``folder`` holds ``sub-*`` folders or a ``dataset_description.json``."""
    return (folder / "dataset_description.json").is_file() or any(
        p.is_dir() for p in folder.glob("sub-*"))


def bids_t1_files(folder: str | os.PathLike) -> list[Path]:
    """``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` below a BIDS folder, sorted (no derivatives)."""
    root = Path(folder)
    found = {p for pattern in BIDS_PATTERNS for p in root.glob(pattern) if p.is_file()}
    return sorted(p for p in found if "derivatives" not in p.relative_to(root).parts)


def _expand(item: str | os.PathLike) -> list[Path]:
    text = str(item)
    path = Path(text).expanduser()
    if path.is_dir():
        if is_bids_folder(path):
            files = bids_t1_files(path)
            where = "BIDS T1 images (sub-*/[ses-*/]anat/*_T1w.nii[.gz])"
        else:
            files = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
            where = "NIfTI images (*.nii, *.nii.gz)"
        if not files:
            raise ConfigError(f"input folder {path}: expected {where}; found none")
        return files
    if path.exists():
        return [path]  # any file, even a broken one: it fails on its own, listed in errors.csv
    if _GLOB_CHARS & set(text):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file())
        if not files:
            raise ConfigError(f"input glob {text!r}: expected it to match image files; it matches none")
        return files
    raise ConfigError(f"input {text!r}: expected an existing file, folder or glob pattern; "
                      "the path does not exist")


def find_t1_inputs(inputs: Sequence[str | os.PathLike]) -> list[T1Input]:
    """Expand files, globs and folders into named T1 inputs, in the order given.

    Parameters
    ----------
    inputs : sequence of str or path
        Files (taken as they are, even if they turn out not to be images), glob patterns
        (``data/*.nii.gz``, ``**`` allowed), BIDS folders (``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``,
        ``derivatives/`` ignored) or plain folders (their ``.nii``/``.nii.gz`` files).

    Returns
    -------
    list of T1Input
        One per distinct file; a file named twice is kept once.

    Raises
    ------
    ConfigError
        No inputs, a path that does not exist, a glob or folder without images, or two files
        with the same name (their outputs would collide).
    """
    if not inputs:
        raise ConfigError("inputs: expected at least one T1 file, glob or folder; got none")
    seen: dict[Path, None] = {}
    for item in inputs:
        for p in _expand(item):
            seen.setdefault(p.resolve(), None)
    by_name: dict[str, Path] = {}
    out: list[T1Input] = []
    for path in seen:
        name = image_stem(path)
        if name in by_name:
            raise ConfigError(f"inputs: expected distinct file names (they name the outputs); "
                              f"{by_name[name]} and {path} are both called {name!r}")
        by_name[name] = path
        out.append(T1Input(name=name, path=path))
    return out
