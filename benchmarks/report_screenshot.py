"""One section of a vbmkit HTML report, rendered by headless Chromium into a PNG (for docs/).

Chromium's ``--screenshot`` renders the top of a page only, so a copy of the report (in a
temporary folder; the report itself is not touched) gets one extra style rule that hides the
navigation and every other section; the section keeps the report's own styles, tables, figures
and links.

    .venv/bin/python benchmarks/report_screenshot.py out/ds002748/report.html --section "Quality control" \\
        --png docs/ds002748_qc_section.png [--width 1280] [--height 1600]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def section_id(html: str, title: str) -> str:
    """The ``id`` of the ``<section>`` whose ``<h2>`` is ``title``."""
    m = re.search(r'<section id="([^"]+)"><h2>' + re.escape(title) + r"</h2>", html)
    if m is None:
        titles = re.findall(r'<section id="[^"]+"><h2>([^<]+)</h2>', html)
        sys.exit(f"no section titled {title!r}; the report has {titles}")
    return m.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--section", required=True, help="the section's title (its <h2>)")
    ap.add_argument("--png", type=Path, required=True)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1600)
    args = ap.parse_args()
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        sys.exit("needs chromium on PATH (apt-get install chromium)")
    html = args.report.read_text(encoding="utf-8")
    sid = section_id(html, args.section)
    style = f"<style>nav, section {{display: none}} section#{sid}, section#{sid} section {{display: block}}</style>"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "section.html"
        page.write_text(html.replace("</head>", style + "</head>", 1), encoding="utf-8")
        png = Path(tmp) / "section.png"
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=5000", f"--window-size={args.width},{args.height}",
                        f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, args.png)
    print(f"section {args.section!r} ({sid}) of {args.report} -> {args.png}")


if __name__ == "__main__":
    main()
