"""Progress bars (tqdm, on stderr): stage callbacks for pure code and a per-subject bar.

One place for every command (glm, roi, preprocess) to show progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm


class ProgressStages:
    """Context manager handing out one ``callback(done, total)`` per stage.

    Each callback opens its own tqdm bar on the first call (when ``total`` is known) and
    closes it when ``done == total``; with ``enabled=False`` the callbacks do nothing, so
    pure code can always be given one.
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

    def callback(self, description: str) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        state: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = tqdm(total=int(total), desc=description, dynamic_ncols=True, leave=False)
                state["bar"] = bar
                self._bars.append(bar)
            bar.n = int(done)
            bar.refresh()
            if done >= total:
                bar.close()

        return update


def progress_bar(total: int, *, initial: int = 0, description: str, unit: str = "it", enabled: bool = True):
    """A tqdm bar on stderr (``None`` when not ``enabled``), e.g. subjects of a batch."""
    if not enabled:
        return None
    return tqdm(total=total, initial=initial, desc=description, unit=unit, dynamic_ncols=True)
