"""Helpers shared by the CLI commands: clean error exits and warnings, and the device option."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]


def format_validation_error(exc: Exception, *, source: str | None = None) -> str:
    """One line per problem of a pydantic ValidationError: ``key.path: message``."""
    try:
        errors = exc.errors()  # type: ignore[attr-defined]
    except AttributeError:
        return str(exc)
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        where = f"{source}: " if source else ""
        lines.append(f"{where}{loc}: {msg}")
    return "\n".join(lines)


@contextlib.contextmanager
def clean_warnings() -> Iterator[None]:
    """Print each distinct warning once, as one ``Warning: ...`` line on stderr.

    No source location (the message names the file or column at fault), every vbmkit
    ``UserWarning`` shown (not only the first from each line of code, so a second command in
    the same process warns too), and a message repeated by later steps or subsamples shown once.
    """
    seen: set[str] = set()

    def _show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            typer.echo(f"Warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _show
        yield


def handle_errors(func: F) -> F:
    """Turn VbmkitError and pydantic ValidationError into ``Error: ...`` and exit status 2.

    Warnings raised while the command runs are printed by :func:`clean_warnings`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from vbmkit.errors import VbmkitError

        try:
            with clean_warnings():
                return func(*args, **kwargs)
        except ValidationError as exc:
            typer.echo(f"Error: {format_validation_error(exc)}", err=True)
            raise typer.Exit(code=2) from None
        except VbmkitError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
