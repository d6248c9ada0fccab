"""``vbmkit init FOLDER``: write a commented study YAML that fits the folder's images and table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import handle_errors


@handle_errors
def app_command(
    folder: Annotated[Path, typer.Argument(help="A BIDS dataset or a folder of T1 images.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="YAML to write (default FOLDER/study.yaml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing YAML.")] = False,
) -> None:
    """Detect T1 images and participants.tsv in FOLDER and write a commented study YAML."""
    from vbmkit.workflows.study.init import write_study_yaml

    path = write_study_yaml(folder, path=output, force=force)
    typer.echo(f"wrote {path}; check it with: vbmkit run --check {path}")
