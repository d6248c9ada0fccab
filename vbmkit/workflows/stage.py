"""The cached, atomic stage: fingerprint of settings and files, "up to date" check, atomic publish.

One copy for every command that skips work whose inputs and settings are unchanged:

* :func:`fingerprint`: sha256 of JSON settings, of covariate tables (contents) and of the
  path, size and modification time of each input file (stand-ins for their contents);
* :func:`cached_run`: a whole command folder (``vbmkit glm``, ``vbmkit roi``): claimed through
  :func:`vbmkit.io.ownership.claim`, returned as is when its stamp is complete with the same
  fingerprint, else computed into a temporary folder whose files are adopted at the end;
* :func:`run_stage`: one sub-folder of a folder already claimed (a study stage ``OUT/qc``,
  ``OUT/compare``): skipped when its own stamp holds the same fingerprint, else computed into a
  temporary folder that replaces it in one rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from vbmkit.io.atomic import write_json
from vbmkit.io.ownership import OwnedFolder, claim
from vbmkit.io.records import read_json

#: Stamp of a study stage folder (``OUT/<stage>/.vbmkit_stage.json``).
STAMP = ".vbmkit_stage.json"


def table_hash(table: pd.DataFrame) -> bytes:
    """Content hash of a table's rows (as strings): a changed covariate file means recomputing."""
    return pd.util.hash_pandas_object(table.astype(str), index=False).values.tobytes()


def fingerprint(settings: Any, files: Iterable[str | os.PathLike] = (), *,
                tables: Iterable[pd.DataFrame] = ()) -> str:
    """sha256 of JSON ``settings``, of the ``tables``' contents and of each file's path, size and mtime."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for table in tables:
        h.update(table_hash(table))
    for p in files:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cached_run(out: str | os.PathLike, *, command: str, key: str, summary_name: str,
               work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Claim ``out`` for ``command``; return its summary when up to date, else run ``work`` atomically.

    Parameters
    ----------
    out : path
        The command's output folder.
    command : str
        ``glm``, ``roi``, ... (:func:`vbmkit.io.ownership.claim`).
    key : str
        The :func:`fingerprint` of everything the outputs depend on.
    summary_name : str
        The summary JSON (``summary.json``); ``work`` returns its content.
    work : callable
        ``work(tmp)`` writes every output file into the empty folder ``tmp`` and returns the
        summary (written to ``tmp/summary_name`` here, then every file moves into ``out``).

    Returns
    -------
    dict
        The summary; with ``up_to_date: True`` when nothing was recomputed.
    """
    with claim(out, command=command) as owned:
        previous = owned.path / summary_name
        if owned.is_complete(key) and owned.owns(summary_name):
            summary = read_json(previous)
            if summary is not None:
                summary["up_to_date"] = True
                return summary
        owned.start()
        tmp = owned.tmp_dir(command)
        try:
            summary = work(tmp)
            write_json(tmp / summary_name, summary)
            owned.adopt(tmp)
            owned.finish(key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _stage_done(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / STAMP).read_text())["fingerprint"] == key
    except (OSError, ValueError, KeyError):
        return False


def run_stage(owned: OwnedFolder, name: str, key: str, work: Callable[[Path], Any]) -> str:
    """Run ``work(tmp)`` into a temporary folder that replaces ``OUT/name``; skip when up to date.

    The temporary folder is unique (``.vbmkit-tmp-<name>-<pid>-<random>`` inside the owned
    folder), so a killed run leaves nothing a rerun does not remove. Returns ``"up to date"``
    or ``"ran"``.
    """
    folder = owned.path / name
    done = owned.owns(name + "/") and _stage_done(folder, key)
    owned.register(name + "/")  # written by this run too (kept when the study finishes)
    if done:
        return "up to date"
    parent = owned.tmp_dir(name)
    tmp = parent / name  # not created: ``work`` makes it
    try:
        work(tmp)
        write_json(tmp / STAMP, {"fingerprint": key})
        owned.replace_folder(name, tmp)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    return "ran"
