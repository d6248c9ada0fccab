"""Helpers shared by the CLI commands: clean error exits and the device option."""

from __future__ import annotations

import functools
from collections.abc import Callable
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


def handle_errors(func: F) -> F:
    """Turn VbmkitError and pydantic ValidationError into ``Error: ...`` and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from vbmkit.errors import VbmkitError

        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            typer.echo(f"Error: {format_validation_error(exc)}", err=True)
            raise typer.Exit(code=2) from None
        except VbmkitError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
