"""Installed versions of vbmkit's dependencies: one lookup for provenance, subject reports and the
methods paragraph."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def package_versions(names: Iterable[str], *, missing: str = "absent") -> dict[str, str]:
    """``{"python": ..., name: version, ...}``; ``missing`` for a package that is not installed."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = missing
    return out
