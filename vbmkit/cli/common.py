"""Helpers shared by the CLI commands: clean error exits and warnings, and the shared options
(``--device``, ``--missing``, ``--engine``, ``--skull-strip``) with their choices as Enums."""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])



class _Choice(str, Enum):
    """A choice of the command line: a ``str`` (compares equal to its value) whose ``str()`` and
    f-string are the value, so it can be passed on wherever the workflows expect a plain string."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class DeviceChoice(_Choice):
    """``--device``: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class MissingChoice(_Choice):
    """``--missing``: stop with an error on unmatched subjects, or drop them (with a warning)."""

    error = "error"
    drop = "drop"


class EngineChoice(_Choice):
    """``--engine`` of preprocess: vbmkit's own pipeline or deepmriprep's networks."""

    classic = "classic"
    deepmriprep = "deepmriprep"


class SkullStripChoice(_Choice):
    """``--skull-strip`` of preprocess."""

    auto = "auto"
    always = "always"
    never = "never"


class ClusterChoice(_Choice):
    """``--cluster`` of preprocess and run: the batch system dask-jobqueue submits workers to."""

    slurm = "slurm"
    pbs = "pbs"
    sge = "sge"


DeviceOption = Annotated[DeviceChoice, typer.Option(
    "--device", help="Where to compute: auto (CUDA when present), cpu or cuda (pick a GPU with "
    "CUDA_VISIBLE_DEVICES).")]
MissingOption = Annotated[MissingChoice | None, typer.Option(
    "--missing", help="Subjects with an image but no covariate row, or a row but no image or with "
    "missing values: error (default) or drop.", show_default=False)]
EngineOption = Annotated[EngineChoice | None, typer.Option(
    "--engine", help="Preprocessing engine: classic (default) or deepmriprep.", show_default=False)]
SkullStripOption = Annotated[SkullStripChoice | None, typer.Option(
    "--skull-strip", help="Brain extraction: auto (default), always or never.", show_default=False)]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", help="Run the subjects on a running Dask scheduler: its address (tcp://host:8786) or "
    "scheduler file; the output folder must be shared with the workers.", show_default=False)]
ClusterOption = Annotated[ClusterChoice | None, typer.Option(
    "--cluster", help="Start Dask workers as batch jobs (slurm, pbs or sge) sized by the study YAML's "
    "compute: section.", show_default=False)]


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


#: Set by ``vbmkit --debug``: errors then show their traceback instead of one line.
DEBUG = {"on": False}


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so ``finally`` blocks remove temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


#: The signal whose exception a finaliser swallowed, waiting to be raised again (None: none).
_PENDING: dict[str, int | None] = {"signum": None}
#: Delay before a swallowed signal is raised again, in seconds.
_RETRY_S = 0.001


def _in_finaliser(frame: Any) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` or an unraisable hook, where Python ignores
    an exception (prints "Exception ignored ...") instead of letting it propagate."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code is _swallowed.__code__:
            return True
        frame = frame.f_back
    return False


def _swallowed(unraisable: Any, previous_hook: Callable[[Any], None]) -> None:
    """``sys.unraisablehook`` while a command runs: a SIGTERM or Ctrl-C whose exception was raised
    inside a finaliser (e.g. nibabel's ``OrderedSet.__del__``) and ignored is raised again
    shortly (:func:`_raise_pending`), so the command stops instead of running on and exiting 0.
    Other unraisable exceptions go to ``previous_hook``."""
    exc = unraisable.exc_value
    if isinstance(exc, Terminated):
        _PENDING["signum"] = exc.signum
    elif isinstance(exc, KeyboardInterrupt):
        _PENDING["signum"] = int(signal.SIGINT)
    else:
        previous_hook(unraisable)
        return
    signal.setitimer(signal.ITIMER_REAL, _RETRY_S)


def _raise_pending(_signum: int, frame: Any) -> None:
    """SIGALRM: raise the pending signal's exception, unless still inside a finaliser (then later)."""
    signum = _PENDING["signum"]
    if signum is None:
        return
    if _in_finaliser(frame):
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
        return
    _PENDING["signum"] = None
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration of a command (main thread only), and
    raise SIGTERM or Ctrl-C again when a finaliser swallowed its exception."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (e.g. a command called from a worker thread)
        yield
        return
    retry = hasattr(signal, "setitimer")  # Windows: no SIGALRM; a swallowed signal stays lost
    if retry:
        previous_alarm = signal.signal(signal.SIGALRM, _raise_pending)
        previous_hook = sys.unraisablehook
        sys.unraisablehook = functools.partial(_swallowed, previous_hook=previous_hook)
    try:
        yield
    finally:
        if retry:
            _PENDING["signum"] = None
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.unraisablehook = previous_hook
            signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    """The message of an unexpected error as one line that names the file when there is one."""
    if isinstance(exc, OSError):
        name = exc.filename if exc.filename is not None else ""
        what = exc.strerror or str(exc)
        if exc.errno == errno.EROFS:
            return f"{name}: expected a writable place for the outputs; the file system is read-only"
        if isinstance(exc, PermissionError):
            return f"{name}: permission denied (expected a file or folder this user may read or write)"
        if exc.errno == errno.ENOSPC:
            return f"{name}: no space left on the device (free some space, then rerun: finished work is kept)"
        return f"{name}: {what} ({type(exc).__name__})" if name else f"{what} ({type(exc).__name__})"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process (RecursionError); check the YAML or table for self-references"
    if isinstance(exc, MemoryError):
        return "out of memory; lower --memory-gb, --subsamples or --permutations, or use a machine with more memory"
    return f"internal error ({type(exc).__name__}: {exc}); rerun with `vbmkit --debug ...` for the traceback"


@functools.lru_cache(maxsize=1)
def _click_exceptions() -> tuple[type[BaseException], ...]:
    """Exit, Abort and ClickException of the click that typer uses, which handles them itself.

    typer >= 0.2x vendors click as ``typer._click`` and no longer installs ``click``; older
    typer uses ``click``: take whichever is importable (a fresh install may lack ``click``).
    """
    import importlib

    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            exc = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(exc, name) for name in ("Exit", "Abort", "ClickException") if hasattr(exc, name)]
    return tuple(found)


def handle_errors(func: F) -> F:
    """Every failure as one ``Error: ...`` line on stderr and exit status 2.

    VbmkitError and pydantic ValidationError carry their own messages; file-system errors
    (permissions, read-only file systems, a full disk), RecursionError and MemoryError are
    named; any other exception is an internal error whose traceback ``vbmkit --debug`` shows.
    Ctrl-C (exit 130) and SIGTERM (exit 143) end the command after its temporary files are
    removed. Warnings raised while the command runs are printed by :func:`clean_warnings`.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from vbmkit.errors import VbmkitError

        try:
            with _terminate_cleanly(), clean_warnings():
                return func(*args, **kwargs)
        except _click_exceptions():
            raise
        except ValidationError as exc:
            typer.echo(f"Error: {format_validation_error(exc)}", err=True)
            raise typer.Exit(code=2) from None
        except VbmkitError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("Error: interrupted; finished outputs are kept and temporary files removed "
                       "(rerun to continue)", err=True)
            raise typer.Exit(code=130) from None
        except Terminated:
            typer.echo("Error: terminated (SIGTERM); finished outputs are kept and temporary files removed "
                       "(rerun to continue)", err=True)
            raise typer.Exit(code=143) from None
        except Exception as exc:
            if DEBUG["on"]:
                raise
            typer.echo(f"Error: {_one_line(exc)}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
