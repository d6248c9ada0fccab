"""Take a screenshot of an HTML file with headless Chromium (checks that a report renders in a browser).

Usage::

    python scripts/screenshot.py REPORT.html OUT.png [--width 1400 --height 3000] [--chromium PATH]

Needs Debian's ``chromium`` package (``apt-get install -y chromium``; /usr/bin/chromium). A fresh,
empty profile folder is used and deleted afterwards; networking features are off so that the
page shows only what is embedded in it. Prints the PNG's path, size in pixels and bytes.
Exit status 3 when no Chromium is found.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium executable, or None."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: expected a PNG file")
    return struct.unpack(">II", head[16:24])


def screenshot(html: Path, png: Path, *, width: int = 1400, height: int = 3000, chromium: str | None = None,
               timeout: float = 120.0) -> Path:
    """Render ``html`` with headless Chromium into ``png``; raise RuntimeError when it fails."""
    exe = find_chromium(chromium)
    if exe is None:
        raise FileNotFoundError("chromium: not found on PATH (apt-get install -y chromium)")
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such HTML file")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vbmkit-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", html.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--chromium", default=None)
    args = ap.parse_args(argv)
    try:
        out = screenshot(args.html, args.png, width=args.width, height=args.height, chromium=args.chromium)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    w, h = png_size(out)
    print(f"{out}: {w} x {h} px, {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
