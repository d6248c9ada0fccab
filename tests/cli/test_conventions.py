"""CLI conventions shared by every command: ``-o/--out``, ``-f/--formula``, ``-c/--covariates``,
``--device`` where computation happens, choices as Enums listed in ``--help``, and progress as
plain lines (no carriage returns) when the output is not a terminal."""

from __future__ import annotations

import subprocess
import sys
import typing
from enum import Enum

import pytest
import typer
from typer.testing import CliRunner

from tests.cli.test_roi_cli import _setup
from vbmkit.cli.main import app

COMMANDS = typer.main.get_command(app).commands
#: commands that compute (torch): they take --device
COMPUTING = {"preprocess", "glm", "roi", "compare", "demo", "run"}
#: commands that only write files (a cohort, a YAML, a store of maps): no --device
WRITING = {"simulate", "init", "stack", "atlases"}
#: commands that fit a model from a covariate table
MODELLING = {"glm", "roi", "compare"}
#: option -> its Enum choices, on every command that has the option
CHOICES = {"--device": ["auto", "cpu", "cuda"], "--missing": ["error", "drop"],
           "--engine": ["classic", "deepmriprep"], "--skull-strip": ["auto", "always", "never"]}


def _option(command, name: str):
    """The option of a (typer) click command called ``name``, or None."""
    return next((p for p in command.params if name in getattr(p, "opts", ())), None)


def _enum_of(option) -> type[Enum] | None:
    """The Enum class an option's annotation names (``X`` or ``X | None``), else None."""
    annotation = option.type_descriptor.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def _help(name: str) -> str:
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_classified():
    """A new command must be put in COMPUTING or WRITING, so that its --device is checked."""
    assert set(COMMANDS) <= COMPUTING | WRITING, set(COMMANDS) - COMPUTING - WRITING
    assert COMPUTING <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_option_is_dash_o(name):
    """Every command writes something; ``-o`` names where (``--output`` for init's single YAML)."""
    opt = _option(COMMANDS[name], "-o")
    assert opt is not None, f"{name}: expected -o"
    assert ("--output" if name == "init" else "--out") in opt.opts
    assert "-o" in _help(name)


@pytest.mark.parametrize("name", sorted(MODELLING))
def test_formula_and_covariates_options(name):
    command = COMMANDS[name]
    assert _option(command, "-f") is _option(command, "--formula") is not None
    assert _option(command, "-c") is _option(command, "--covariates") is not None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_device_where_computation_happens(name):
    opt = _option(COMMANDS[name], "--device")
    assert (opt is not None) == (name in COMPUTING), name


def _enum_cases():
    for name in sorted(COMMANDS):
        for option in CHOICES:
            if _option(COMMANDS[name], option) is None:
                continue
            yield pytest.param(name, option, id=f"{name}{option}")


@pytest.mark.parametrize(("name", "option"), list(_enum_cases()))
def test_choices_are_enums_listed_in_help(name, option):
    opt = _option(COMMANDS[name], option)
    enum = _enum_of(opt)
    assert enum is not None, f"{name} {option}: expected an Enum; got {opt.type_descriptor.annotation}"
    assert [m.value for m in enum] == CHOICES[option]
    assert "|".join(CHOICES[option]) in _help(name)


def test_enum_choice_rejects_other_values():
    result = CliRunner().invoke(app, ["roi", "x", "--out", "y", "--missing", "ignore"])
    assert result.exit_code == 2
    assert "ignore" in result.output and "error" in result.output and "drop" in result.output


def test_progress_is_plain_lines_when_redirected_and_reuse_is_one_line(tmp_path):
    """With stdout and stderr going to a file, progress is plain lines (no carriage return from a
    bar); a rerun with nothing changed prints one "up to date" line."""
    _setup(tmp_path)
    cmd = [sys.executable, "-c", "from vbmkit.cli.main import app; app()", "roi", str(tmp_path / "prep"),
           "--atlas", str(tmp_path / "tiny.nii.gz"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    log = tmp_path / "log.txt"
    for _ in range(2):
        with open(log, "ab") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=300, check=False)
        assert proc.returncode == 0, log.read_text()
    text = log.read_bytes()
    assert b"\r" not in text
    assert b"ROI volumes: 8 subjects in " in text  # the stage, with its unit
    last = text.decode().strip().splitlines()[-1]
    assert last == f"up to date: {tmp_path / 'out'} (8 subjects x 2 tiny regions)"
