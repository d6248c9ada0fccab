"""The reliability harness: run a command or API call in a sandbox and check that nothing
outside its output folder changed and no user file was lost.

Each case states the exit status, a message pattern (naming the file, column or key at
fault) and the output folder the command may touch; :func:`check_cli` and :func:`check_api`
assert all four. Every call records the command name as a test property, so the suite can
print how many cases each command has (``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from typer.testing import CliRunner

N_SUBJECTS = 12
SHAPE = (7, 8, 9)
AFFINE = np.diag([-2.0, 2.0, 2.5, 1.0])
USER_FILES = {"precious.txt": "thesis chapter 3\n", "notes/lab.md": "do not delete\n"}


def digest(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256 of the content, mode) of every file and folder under ``root``."""
    out: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root)) + "/"] = ("dir", p.stat().st_mode & 0o777)
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", 0)
                continue
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o777)
    return out


@dataclass
class Sandbox:
    """A folder holding tiny valid inputs and user files that must survive every command.

    Attributes
    ----------
    root : Path
        Everything lives here; a case may only change what is under its ``out``.
    maps : list of Path
        ``N_SUBJECTS`` smoothed GM maps ``s6mwp1sub-XX_T1w.nii.gz`` on a 7 x 8 x 9 grid.
    covariates : Path
        ``participants.tsv`` with participant_id, age, sex, group.
    record : callable
        ``record(command)``: notes the command of a case (test property ``command``).
    """

    root: Path
    maps: list[Path]
    covariates: Path
    record: Callable[[str], None]
    extra: dict[str, Path] = field(default_factory=dict)

    def user_file(self, rel: str, text: str = "user data\n") -> Path:
        """Create a user file (inside an output folder, say) that must survive."""
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def glm_args(self, out: Path | str, *extra: str) -> list[str]:
        return ["glm", str(self.root / "maps" / "s6mwp1sub-*.nii.gz"), "-c", str(self.covariates),
                "-f", "age + C(sex)", "--contrast", "age=age", "--subsamples", "3", "-o", str(out),
                "--device", "cpu", "-q", *extra]


def make_sandbox(root: Path, record: Callable[[str], None]) -> Sandbox:
    rng = np.random.default_rng(7)
    (root / "maps").mkdir(parents=True)
    age = rng.uniform(20, 80, N_SUBJECTS).round(1)
    maps = []
    for i in range(N_SUBJECTS):
        data = 0.5 + 0.004 * (age[i] - 50) + 0.05 * rng.standard_normal(SHAPE)
        p = root / "maps" / f"s6mwp1sub-{i + 1:02d}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), str(p))
        maps.append(p)
    cov = root / "participants.tsv"
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N_SUBJECTS)], "age": age,
                  "sex": np.tile(["f", "m"], N_SUBJECTS // 2),
                  "group": np.repeat(["ctrl", "pat"], N_SUBJECTS // 2)}).to_csv(cov, sep="\t", index=False)
    for rel, text in USER_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Sandbox(root=root, maps=maps, covariates=cov, record=record)


@dataclass
class Outcome:
    exit_code: int
    output: str
    changed: list[str]


def _changes(before: dict, after: dict, allowed: list[Path], root: Path) -> list[str]:
    allowed_rel = [str(a.resolve().relative_to(root.resolve())) for a in allowed if _inside(a, root)]

    def ok(rel: str) -> bool:
        rel = rel.rstrip("/")
        return any(rel == a or rel.startswith(a + "/") for a in allowed_rel)

    changed = [k for k in before if (k not in after or after[k] != before[k]) and not ok(k)]
    changed += [k for k in after if k not in before and not ok(k)]
    return sorted(changed)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _check_user_files(box: Sandbox) -> None:
    for rel, text in USER_FILES.items():
        p = box.root / rel
        assert p.is_file() and p.read_text() == text, f"user file {rel} was lost or changed"


def check_cli(box: Sandbox, command: str, args: list[str], *, exit_code: int, match: str | None = None,
              out: Path | list[Path] | None = None, survivors: list[Path] = (), env: dict | None = None) -> Outcome:
    """Run ``vbmkit ARGS`` in-process and assert status, message, untouched files.

    Parameters
    ----------
    command : str
        The command the case exercises (for the count by command).
    exit_code : int
        Expected exit status (0 success, 2 a clean error).
    match : str, optional
        Regular expression the output must contain (searched, case-sensitive).
    out : Path or list of Path
        Folders (or files) the command may create or change; nothing else may change.
    survivors : list of Path
        User files inside ``out`` that must still exist with the same content afterwards.
    """
    from vbmkit.cli.main import app

    box.record(command)
    allowed = [] if out is None else ([out] if isinstance(out, Path) else list(out))
    kept = {p: p.read_bytes() for p in survivors}
    before = digest(box.root)
    res = CliRunner().invoke(app, args, env=env)
    after = digest(box.root)
    output = res.output
    assert res.exit_code == exit_code, f"exit {res.exit_code} (expected {exit_code}):\n{output}\n{res.exception!r}"
    if exit_code != 0:
        assert "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, f"expected one 'Error: ' line:\n{output}"
    if match is not None:
        assert re.search(match, output), f"pattern {match!r} not in:\n{output}"
    changed = _changes(before, after, allowed, box.root)
    assert not changed, f"changed outside OUT: {changed}"
    _check_user_files(box)
    for p, content in kept.items():
        assert p.is_file() and p.read_bytes() == content, f"user file {p} inside OUT was lost or changed"
    return Outcome(res.exit_code, output, changed)


def check_api(box: Sandbox, command: str, call: Callable[[], object], *, error: type[BaseException] | None,
              match: str | None = None, out: Path | list[Path] | None = None,
              survivors: list[Path] = ()) -> object:
    """Call an API function and assert the raised error (or success) and untouched files."""
    import pytest

    box.record(f"api:{command}")
    allowed = [] if out is None else ([out] if isinstance(out, Path) else list(out))
    kept = {p: p.read_bytes() for p in survivors}
    before = digest(box.root)
    result = None
    if error is None:
        result = call()
    else:
        with pytest.raises(error, match=match):
            call()
    after = digest(box.root)
    changed = _changes(before, after, allowed, box.root)
    assert not changed, f"changed outside OUT: {changed}"
    _check_user_files(box)
    for p, content in kept.items():
        assert p.is_file() and p.read_bytes() == content, f"user file {p} inside OUT was lost or changed"
    return result
