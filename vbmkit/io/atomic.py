"""Atomic file writing: write to a temporary file beside the target, then rename.

A crash or Ctrl-C never leaves a half-written output under the final name, so a rerun can
trust that every file it finds is complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Prefix of every temporary file or folder vbmkit creates; a rerun removes leftovers with it
#: inside folders vbmkit owns (:mod:`vbmkit.io.ownership`).
TMP_PREFIX = ".vbmkit-tmp-"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.csv``, ``.png``) so that
    libraries that choose a format from the file name do the right thing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    tmp_path: Path | None = None
    try:  # mkstemp inside the try: an interrupt right after it still removes the file
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name.split('.')[0]}.", suffix=suffix,
                                   dir=target.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600: give the file the mode a plain open() would
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/Inf become null)."""
    return write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _finite(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj
