"""Ownership of output folders: vbmkit replaces or deletes only what it wrote.

Every folder a command writes carries a stamp, ``OUT/.vbmkit.json``: the command, the vbmkit
version, the settings fingerprint, the state (``running`` or ``complete``) and the list of
entries it wrote (``age/t.nii.gz``, or ``sub-01/`` for a whole folder). The rules:

* a command writes into a folder that does not exist, is empty, or carries a stamp of the same
  command; a non-empty folder without a stamp (or with another command's) is refused with one
  line naming it, before anything is written;
* an entry is replaced or deleted only when the stamp lists it; a file of the user's in a
  stamped folder is never touched, and writing over one is refused;
* entries listed by an earlier run and not written by this one (stale outputs of earlier
  settings) are removed when the run finishes;
* one command at a time per folder: ``OUT/.vbmkit.lock`` holds the pid; a lock whose process
  is gone (killed) is taken over;
* temporary files and folders are named ``.vbmkit-tmp-*`` inside the owned folder, removed when
  the command ends (SIGTERM and SIGINT included, see :mod:`vbmkit.cli.common`) and, after a
  SIGKILL, by the next command that claims the folder.

Folders are created with the user's umask (never the 0700 of ``mkdtemp``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vbmkit import __version__
from vbmkit.errors import ConfigError
from vbmkit.io.atomic import TMP_PREFIX, write_json

STAMP = ".vbmkit.json"
LOCK = ".vbmkit.lock"
#: Names the stamp and lock themselves: owned by every stamped folder.
_BOOKKEEPING = {STAMP, LOCK}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_stamp(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The stamp of ``folder`` (``None`` when there is none or it is unreadable)."""
    data = _read_json(Path(folder) / STAMP)
    if data is None or not isinstance(data.get("files"), list) or "command" not in data:
        return None
    return data


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in _BOOKKEEPING)


def _check_path(out: Path, *, what: str) -> None:
    """Refuse a path whose existing ancestor is a file, or the file-system root / home."""
    resolved = out.expanduser().resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise ConfigError(f"{what} {out}: expected a folder of its own for the outputs; got "
                          f"{'the file-system root' if resolved == Path(resolved.anchor) else 'your home folder'}")
    for parent in [resolved, *resolved.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {out}: expected a folder path; {parent} is a file")
            break


def check_claimable(out: str | os.PathLike, *, command: str, what: str = "out") -> None:
    """Raise unless ``command`` may write into ``out`` (nothing is created or changed).

    Raises
    ------
    ConfigError
        ``out`` or an ancestor is a file, ``out`` is the root or home folder, or ``out`` is a
        non-empty folder without a stamp of ``command``.
    """
    out = Path(out)
    _check_path(out, what=what)
    if not out.is_dir():
        return
    stamp = read_stamp(out)
    entries = _visible(out)
    if stamp is None:
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ConfigError(f"{what} {out}: expected a new or empty folder, or one written by vbmkit {command}; "
                              f"it holds {len(entries)} entries vbmkit did not write ({shown}); choose another "
                              f"--out (vbmkit never overwrites files it did not write)")
        return
    if stamp["command"] != command:
        raise ConfigError(f"{what} {out}: expected a folder of vbmkit {command}; it holds the outputs of "
                          f"vbmkit {stamp['command']} (choose another --out)")


def _pid_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot, Linux) to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(info: dict[str, Any]) -> bool:
    try:
        pid = int(info["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if info.get("host") not in (None, socket.gethostname()):
        return True  # another machine's process: we cannot tell, so respect the lock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = info.get("started")
    return started is None or _pid_start(pid) in (None, started)


def _take_lock(out: Path, command: str) -> bool:
    """Create ``OUT/.vbmkit.lock``; False when this process holds it already (nested claim)."""
    lock = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": _pid_start(os.getpid()), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            info = _read_json(lock) or {}
            if info.get("pid") == os.getpid() and info.get("host") == me["host"]:
                return False
            if _alive(info):
                raise ConfigError(f"out {out}: expected no other vbmkit command writing there; vbmkit "
                                  f"{info.get('command', '?')} (pid {info.get('pid')}) has held it since "
                                  f"{info.get('since', '?')}; wait for it or choose another --out") from None
            try:  # the holder is gone (killed): take the lock over
                lock.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        return True
    raise ConfigError(f"out {out}: could not take the lock {lock} (another process keeps creating it)")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_temporaries(folder: Path) -> list[str]:
    """Remove ``.vbmkit-tmp-*`` entries under ``folder`` (left by a killed command).

    Sub-folders locked by a live process are skipped (another command is writing there).
    Returns the removed paths relative to ``folder``.
    """
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here != folder and (here / LOCK).exists() and _alive(_read_json(here / LOCK) or {}):
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            if name.startswith(TMP_PREFIX):
                _remove(here / name)
                removed.append(str((here / name).relative_to(folder)))
        dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
    return removed


class OwnedFolder:
    """A folder a command has claimed: it may write, replace and delete the entries it lists.

    Use :func:`claim` to get one. Entries are paths relative to the folder, POSIX separators;
    a trailing ``/`` marks a whole folder.
    """

    def __init__(self, path: Path, command: str, previous: dict[str, Any] | None) -> None:
        self.path = path
        self.command = command
        self.previous = previous
        self._old = set(previous["files"]) if previous else set()
        self._files: set[str] = set(self._old)
        self._written: set[str] = set()

    # -------------------------------------------------------------- queries
    def is_complete(self, fingerprint: str) -> bool:
        """True when the last run finished with the same settings fingerprint."""
        p = self.previous
        return bool(p) and p.get("state") == "complete" and p.get("fingerprint") == fingerprint

    def owns(self, rel: str) -> bool:
        """True when ``rel`` (or a folder above it) is listed in the stamp."""
        rel = rel.strip("/")
        parts = rel.split("/")
        return rel in self._files or any("/".join(parts[:i]) + "/" in self._files for i in range(1, len(parts) + 1))

    # -------------------------------------------------------------- writing
    def _save(self, state: str, fingerprint: str | None = None, extra: dict[str, Any] | None = None) -> None:
        stamp = {"command": self.command, "vbmkit_version": __version__, "state": state,
                 "fingerprint": fingerprint if fingerprint is not None else (self.previous or {}).get("fingerprint"),
                 "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": sorted(self._files), **(extra or {})}
        write_json(self.path / STAMP, stamp)

    def register(self, *rels: str) -> list[Path]:
        """Claim entries before writing them; return their paths.

        Raises
        ------
        ConfigError
            An entry exists and the stamp does not list it (a user's file).
        """
        paths = []
        new = []
        for rel in rels:
            rel = rel.replace(os.sep, "/")
            key = rel.rstrip("/")
            target = self.path / key
            if not self.owns(rel) and (target.exists() or target.is_symlink()):
                raise ConfigError(f"{target}: expected a file vbmkit wrote (it would be replaced); it was not "
                                  f"written by vbmkit {self.command}: move it away or choose another --out")
            if not self.owns(rel):
                new.append(rel)
            self._written.add(rel if rel.endswith("/") else key)
            paths.append(target)
        if new:
            self._files.update(new)
            self._save("running")
        return paths

    def start(self) -> None:
        """Mark the folder as being rewritten (a crash now leaves state ``running``)."""
        self._save("running")

    def tmp_dir(self, label: str = "work") -> Path:
        """A fresh temporary folder inside the owned folder (removed by :meth:`cleanup`)."""
        path = self.path / f"{TMP_PREFIX}{label}-{os.getpid()}-{secrets.token_hex(3)}"
        path.mkdir()
        return path

    def adopt(self, tmp: Path) -> list[str]:
        """Move every file of a finished temporary folder to the same place in the owned folder.

        Each move is a rename (atomic per file). Returns the entries written.
        """
        rels = sorted(str(p.relative_to(tmp)).replace(os.sep, "/") for p in tmp.rglob("*")
                      if p.is_file() or p.is_symlink())
        self.register(*rels)
        for rel in rels:
            dest = self.path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(tmp / rel, dest)
        return rels

    def replace_folder(self, rel: str, tmp: Path) -> Path:
        """Put the finished folder ``tmp`` in place of the owned sub-folder ``rel/``."""
        key = rel.strip("/") + "/"
        (target,) = self.register(key)
        if target.exists():
            _remove(target)
        os.replace(tmp, target)
        return target

    def finish(self, fingerprint: str | None = None, *, keep: Iterable[str] = (),
               extra: dict[str, Any] | None = None) -> list[str]:
        """Remove stale entries (listed before, not written now) and mark the folder complete.

        ``keep``: entries written by an earlier run that stay valid (e.g. finished subjects).
        Returns the stale entries removed.
        """
        keep_set = {k.replace(os.sep, "/") for k in keep}
        stale = sorted(self._old - self._written - keep_set)
        for rel in stale:
            target = self.path / rel.rstrip("/")
            _remove(target)
            parent = target.parent
            while parent != self.path and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        self._files = (self._files - set(stale))
        self._save("complete", fingerprint, extra)
        return stale


@contextmanager
def claim(out: str | os.PathLike, *, command: str, what: str = "out") -> Iterator[OwnedFolder]:
    """Claim ``out`` for ``command``: check, create, lock; clean temporaries on the way out.

    Parameters
    ----------
    out : path
        The output folder the user named.
    command : str
        ``glm``, ``roi``, ``compare``, ``preprocess``, ``run``, ``simulate``, ``demo``, ...
    what : str
        How the folder is named in messages (``out``, ``--out``).

    Yields
    ------
    OwnedFolder

    Raises
    ------
    ConfigError
        See :func:`check_claimable`; also when another live vbmkit process holds the folder or
        the folder cannot be created (permissions, read-only file system).
    """
    out = Path(out)
    check_claimable(out, command=command, what=what)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {out}: expected a folder vbmkit can create; {exc.strerror or exc} "
                          f"({type(exc).__name__})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {out}: expected a writable folder; permission denied")
    owner = _take_lock(out, command)
    folder = OwnedFolder(out, command, read_stamp(out))
    try:
        if owner:
            remove_temporaries(out)
        if created or folder.previous is None:
            folder.start()
        yield folder
    except BaseException:
        if created and owner:  # bad input found late: leave nothing behind, as if never started
            leftovers = [p for p in out.iterdir() if p.name not in _BOOKKEEPING
                         and not (p.name.startswith(TMP_PREFIX) and f"-{os.getpid()}-" in p.name)]
            if not leftovers:
                for p in list(out.iterdir()):
                    _remove(p)
                out.rmdir()
        raise
    finally:
        if owner and out.is_dir():
            # this process holds the lock, so every temporary entry is ours (an atomic write cut
            # short by Ctrl-C or SIGTERM included)
            remove_temporaries(out)
            try:
                (out / LOCK).unlink()
            except FileNotFoundError:
                pass


@contextmanager
def owned_entry(parent: str | os.PathLike, name: str, *, command: str) -> Iterator[Path]:
    """Claim ``parent`` for ``command`` and its entry ``name/``; yield the entry's path.

    For a command that writes one part of a larger folder, e.g. ``vbmkit glm --study`` writing
    ``<study out>/glm``: the study folder stays owned by ``vbmkit run`` and lists the part.
    """
    with claim(parent, command=command) as owned:
        (path,) = owned.register(name.rstrip("/") + "/")
        yield path
