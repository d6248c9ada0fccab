"""``vbmkit atlases``: the atlases ``--atlas`` accepts, with region counts, coverage and licences."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import handle_errors


@handle_errors
def app_command(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the list as a CSV file.")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="One line per atlas (no source and licence).")] = False,
) -> None:
    """List the atlases of `vbmkit roi --atlas` (also 'all' and 'cat12' = neuromorphometrics,
    lpba40, cobra, hammers): regions, share of the template's GM they cover, source and licence."""
    from vbmkit.io.atlas import describe_atlases

    rows = describe_atlases()
    typer.echo(f"{'atlas':<20} {'regions':>7} {'GM cover':>8}  cat12")
    for r in rows:
        lost = f" ({r['regions'] - r['on_grid']} not on the grid)" if r["on_grid"] < r["regions"] else ""
        typer.echo(f"{r['name']:<20} {r['regions']:>7} {r['template_gm_fraction']:>8.1%}  "
                   f"{'yes' if r['cat12_default'] else '':<5}{lost}")
        if not brief:
            typer.echo(f"    source: {r['source']}\n    licence: {r['licence']}")
    typer.echo("GM cover: share of Template_4_GS's GM inside the atlas's labels (1.5 mm output grid). "
               "The licences apply to the label files, not to vbmkit.")
    if out is not None:
        import pandas as pd

        from vbmkit.io.atomic import atomic_path

        with atomic_path(out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        typer.echo(f"wrote {out}")
