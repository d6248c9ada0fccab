"""Progress on stderr: stage callbacks for pure code and a per-subject bar.

One place for every command (glm, roi, preprocess) to show progress. On a terminal these are
tqdm bars with units (subjects, voxels, permutations); when stderr is not a terminal (a log
file, a pipe, a batch job) they are plain lines instead, one per finished stage or subject,
without carriage returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm


def interactive() -> bool:
    """Whether stderr is a terminal (then progress is drawn as bars, else written as lines)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class PlainProgress:
    """The part of tqdm's interface the workflows use, writing one plain line per update.

    ``update`` writes ``description: done/total unit`` (with the postfix, e.g. the subject that
    finished); ``set_postfix_str(..., refresh=True)`` writes the postfix as its own line (a step
    of the current subject); ``close`` writes nothing.
    """

    def __init__(self, total: int, *, initial: int = 0, description: str, unit: str) -> None:
        self.total = int(total)
        self.n = int(initial)
        self.description = description
        self.unit = unit
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        suffix = f" ({self.postfix})" if self.postfix else ""
        _say(f"{self.description}: {self.n}/{self.total} {self.unit}{suffix}")

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if refresh:
            _say(f"{self.description}: {text}")

    def close(self) -> None:
        pass


class ProgressStages:
    """Context manager handing out one ``callback(done, total)`` per stage.

    On a terminal each callback opens its own tqdm bar on the first call (when ``total`` is
    known) and closes it when ``done == total``; otherwise it writes one line when the stage
    finishes (``description: total unit in S s``). With ``enabled=False`` the callbacks do
    nothing, so pure code can always be given one.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: list[Any] = []

    def __enter__(self) -> ProgressStages:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars:
            bar.close()
        self._bars.clear()

    def callback(self, description: str, *, unit: str = "it") -> Callable[[int, int], None] | None:
        """A ``callback(done, total)`` for one stage; ``unit`` names what is counted
        (``subjects``, ``voxels``, ``permutations``)."""
        if not self.enabled:
            return None
        state: dict[str, Any] = {}
        if not interactive():
            started = time.perf_counter()

            def line(done: int, total: int) -> None:
                if done >= total and not state.get("finished"):
                    state["finished"] = True
                    _say(f"{description}: {int(total):,} {unit} in {time.perf_counter() - started:.1f} s")

            return line

        def update(done: int, total: int) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = tqdm(total=int(total), desc=description, unit=f" {unit}", unit_scale=unit == "voxels",
                           dynamic_ncols=True, leave=False)
                state["bar"] = bar
                self._bars.append(bar)
            bar.n = int(done)
            bar.refresh()
            if done >= total:
                bar.close()

        return update


def progress_bar(total: int, *, initial: int = 0, description: str, unit: str = "it", enabled: bool = True):
    """A progress bar on stderr (``None`` when not ``enabled``), e.g. subjects of a batch: a tqdm
    bar on a terminal, else a :class:`PlainProgress` writing one line per update."""
    if not enabled:
        return None
    if not interactive():
        return PlainProgress(total, initial=initial, description=description, unit=unit)
    return tqdm(total=total, initial=initial, desc=description, unit=f" {unit}", dynamic_ncols=True)
