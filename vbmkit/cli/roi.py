"""``vbmkit roi``: regional GM/WM volumes per subject from modulated maps (LPBA40 by default; several atlases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import DeviceOption, MissingChoice, MissingOption, handle_errors


def _contrasts(items: list[str] | None) -> dict[str, str]:
    from vbmkit.errors import ConfigError
    from vbmkit.formula.grammar import check_contrast

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip() or not expr.strip():
            raise ConfigError(f"--contrast: expected NAME=EXPR (e.g. age=age); got {item!r}")
        check_contrast(name.strip(), expr.strip())  # parsed, never evaluated (vbmkit.formula.grammar)
        out[name.strip()] = expr.strip()
    return out


@handle_errors
def app_command(
    images: Annotated[list[str], typer.Argument(
        help="mwp1/mwp2(/mwp3) maps: files, globs, or vbmkit / CAT12 / deepmriprep output folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the tables.")],
    atlas: Annotated[str, typer.Option("--atlas", help="Atlas name (lpba40, neuromorphometrics, hammers, ...; "
                                                       "`vbmkit atlases` lists them), several separated by "
                                                       "commas, 'all', 'cat12' (neuromorphometrics, lpba40, "
                                                       "cobra, hammers) or a label NIfTI with <stem>_labels.csv "
                                                       "beside it.")] = "lpba40",
    covariates: Annotated[Path | None, typer.Option("--covariates", "-c", help="Covariate CSV/TSV for ROI statistics.")] = None,
    id_column: Annotated[str, typer.Option("--id-column", help="Subject ID column of the covariates.")] = "participant_id",
    formula: Annotated[str | None, typer.Option("--formula", "-f", help="Right-hand side, e.g. 'age + C(sex) + TIV'.")] = None,
    contrast: Annotated[list[str] | None, typer.Option("--contrast", help="NAME=EXPR, repeatable (as vbmkit glm).")] = None,
    missing: MissingOption = MissingChoice.error,
    name: Annotated[str | None, typer.Option("--name", help="Prefix of the CAT12 group exports (default: the --out folder name).")] = None,
    native: Annotated[bool, typer.Option("--native", help="Measure in native space as CAT12 (needs p1/p2 and y_ beside each mwp1; "
                                                         "see docs/roi.md).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Subjects per batch.")] = 16,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure GM/WM(/CSF) volume in mL in every atlas region of every subject; write long, wide and
    CAT12-style tables, and with --covariates/--formula/--contrast the ROI statistics."""
    from vbmkit.formula.grammar import check_formula
    from vbmkit.workflows.roi import run_roi

    if formula is not None:
        check_formula(formula)  # before the maps are read: the formula is parsed, never evaluated
    contrasts = _contrasts(contrast)
    summary = run_roi(images, out=out, atlas=atlas, covariates=covariates, id_column=id_column,
                      formula=formula, contrasts=contrasts, missing=(missing if missing is not None else MissingChoice.error).value, native=native,
                      name=name, device=device.value, batch_size=batch_size, progress=not quiet)
    if summary.get("up_to_date"):  # nothing changed since the last run: the outputs are reused
        typer.echo(f"up to date: {out} ({summary['subjects']} subjects x {summary['regions']} "
                   f"{summary['atlas']} regions)")
        return
    typer.echo(f"{summary['subjects']} subjects x {summary['regions']} {summary['atlas']} regions x "
               f"{'/'.join(summary['tissues'])} -> {out}")
    for name, part in summary.get("atlases", {summary["atlas"]: summary}).items():
        cov = part["gm_fraction_in_atlas"]
        typer.echo(f"GM inside {name}: median {cov['median']:.1%} (min {cov['min']:.1%}, max {cov['max']:.1%})")
    typer.echo("wrote " + ", ".join(summary["files"]))
