"""``vbmkit``: the typer application. Each command lives in its own module of this package
and is registered below; heavy imports happen inside the commands."""

from __future__ import annotations

from typing import Annotated

import typer

from vbmkit import __version__

app = typer.Typer(
    name="vbmkit",
    help="Voxel-based morphometry in PyTorch: preprocess T1 images, fit voxel-wise GLMs with "
    "subsample stability, extract ROI volumes and compare with CAT12.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click messages: a usage error is one `Error: ...` line like every other error
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vbmkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error instead of one line.")] = False,
) -> None:
    """vbmkit command line."""
    from vbmkit.allocator import tune_cpu_allocator
    from vbmkit.cli.common import DEBUG

    DEBUG["on"] = debug
    tune_cpu_allocator()


# Command registration: one line per command module.
from vbmkit.cli.preprocess import app_command as _preprocess  # noqa: E402

app.command("preprocess")(_preprocess)
from vbmkit.cli.glm import app_command as _glm  # noqa: E402

app.command("glm")(_glm)
from vbmkit.cli.demo import app_command as _demo  # noqa: E402

app.command("demo")(_demo)
from vbmkit.cli.run import app_command as _run  # noqa: E402

app.command("run")(_run)
from vbmkit.cli.simulate import app_command as _simulate  # noqa: E402

app.command("simulate")(_simulate)
from vbmkit.cli.init import app_command as _init  # noqa: E402

app.command("init")(_init)
from vbmkit.cli.roi import app_command as _roi  # noqa: E402

app.command("roi")(_roi)
from vbmkit.cli.compare import app_command as _compare  # noqa: E402

app.command("compare")(_compare)
from vbmkit.cli.stack import app_command as _stack  # noqa: E402

app.command("stack")(_stack)
from vbmkit.cli.atlases import app_command as _atlases  # noqa: E402

app.command("atlases")(_atlases)
