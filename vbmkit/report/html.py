"""Small helpers for self-contained HTML reports: one file, figures embedded as base64 PNG.

A page is a title and a list of sections; a section is a heading and a list of blocks (HTML
strings made by :func:`html_table`, :func:`html_figure`, :func:`html_paragraph`, ...). No
external CSS, scripts or fonts, so a report opens offline and can be mailed as one file.

Example
-------
>>> page = render_page("Study", [Section("Numbers", [html_table(df), html_figure(fig)])])
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px;
color:#1d2330;line-height:1.4;padding:0 16px}
h1{font-size:26px;border-bottom:2px solid #335;padding-bottom:6px}
h2{font-size:20px;margin-top:34px;border-bottom:1px solid #ccd}
h3{font-size:16px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccd;padding:3px 8px;text-align:right}
th{background:#eef0f6}
td.txt,th.txt{text-align:left}
tr:nth-child(even) td{background:#f8f9fc}
figure{display:inline-block;margin:6px 10px 14px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #dde}
figcaption{font-size:12px;color:#555;max-width:640px}
p.note{color:#555;font-size:13px}
.warn{color:#a33}
nav a{margin-right:14px;font-size:14px}
"""


@dataclass
class Section:
    """A heading and its blocks (HTML strings) in page order."""

    title: str
    blocks: list[str] = field(default_factory=list)
    anchor: str | None = None


def escape(text: Any) -> str:
    """HTML-escape any value's ``str``."""
    return html.escape(str(text), quote=True)


def figure_to_data_uri(fig, *, dpi: int = 90) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,...`` URI and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_to_data_uri(data: bytes) -> str:
    """PNG bytes -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def html_figure(fig_or_uri, *, caption: str | None = None, width: int | None = None) -> str:
    """An ``<figure>`` with an embedded PNG (a matplotlib figure or a data URI) and a caption."""
    uri = fig_or_uri if isinstance(fig_or_uri, str) else figure_to_data_uri(fig_or_uri)
    w = f' width="{int(width)}"' if width else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    alt = escape(caption or "figure")
    return f'<figure><img src="{uri}" alt="{alt}"{w}>{cap}</figure>'


def _cell(value: Any, digits: int) -> tuple[str, bool]:
    """(text, is_number) of one table cell; None/NaN print as an en dash."""
    if value is None:
        return "&ndash;", True
    if isinstance(value, bool):
        return escape(value), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float) or hasattr(value, "dtype"):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return escape(value), False
        if math.isnan(v):
            return "&ndash;", True
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.4g}", True
    return escape(value), False


def html_table(df, *, digits: int = 3, index: bool = False, caption: str | None = None,
               max_rows: int | None = None, links: dict[str, str] | None = None) -> str:
    """A pandas DataFrame as a plain HTML table (numbers right-aligned, ``digits`` decimals).

    Parameters
    ----------
    df : pandas.DataFrame
    digits : int
        Decimals of float cells.
    index : bool
        Also print the index as the first column.
    max_rows : int, optional
        Show only the first rows and say how many were left out.
    links : dict, optional
        Columns whose cells are relative paths, shown as links: column -> prefix of the href
        (the path of the folder the cells are relative to, seen from the page). Empty cells
        stay empty.
    """
    frame = df.reset_index() if index else df
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f'<th class="txt">{escape(c)}</th>' for c in shown.columns)
    linked = {list(shown.columns).index(c): prefix for c, prefix in (links or {}).items() if c in shown.columns}
    rows = []
    for rec in shown.itertuples(index=False):
        cells = []
        for k, v in enumerate(rec):
            if k in linked and isinstance(v, str) and v:
                cells.append(f'<td class="txt"><a href="{escape(linked[k] + v)}">{escape(Path(v).name)}</a></td>')
                continue
            text, num = _cell(v, digits)
            cells.append(f"<td>{text}</td>" if num else f'<td class="txt">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f'<p class="note">{len(frame) - max_rows} more rows in the CSV.</p>'
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def html_paragraph(text: str, *, note: bool = False) -> str:
    """A paragraph of escaped text (``note`` prints it small and grey)."""
    cls = ' class="note"' if note else ""
    return f"<p{cls}>{escape(text)}</p>"


def html_list(items: Iterable[Any]) -> str:
    """A bulleted list of escaped items."""
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _anchor(section: Section, k: int) -> str:
    return section.anchor or f"s{k}"


def render_page(title: str, sections: Sequence[Section], *, subtitle: str | None = None) -> str:
    """A complete, self-contained HTML document: title, a link bar to the sections, the sections."""
    nav = " ".join(f'<a href="#{_anchor(s, k)}">{escape(s.title)}</a>' for k, s in enumerate(sections))
    body = []
    for k, s in enumerate(sections):
        body.append(f'<section id="{_anchor(s, k)}"><h2>{escape(s.title)}</h2>{"".join(s.blocks)}</section>')
    sub = f'<p class="note">{escape(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{sub}<nav>{nav}</nav>{''.join(body)}</body></html>\n")
