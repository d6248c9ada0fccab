"""``vbmkit compare``: agreement of vbmkit's outputs with CAT12's or SPM12's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import DeviceOption, handle_errors


@handle_errors
def app_command(
    ours: Annotated[Path, typer.Option("--ours", help="vbmkit preprocess output folder (<name>/mri/p0<name>.nii.gz ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: report.html, metrics.json, CSVs.")],
    cat12: Annotated[Path | None, typer.Option("--cat12", help="CAT12 output folder (mri/report/label or BIDS sub-*/anat).")] = None,
    spm: Annotated[Path | None, typer.Option("--spm", help="SPM12 folder: c1/c2/c3, mwc1/mwc2 and/or spmT_*.nii results.")] = None,
    covariates: Annotated[Path | None, typer.Option("--covariates", "-c", help="Covariate table (CSV/TSV) for the per-contrast comparison.")] = None,
    id_column: Annotated[str, typer.Option("--id-column", help="Column of subject IDs found in the file names.")] = "participant_id",
    formula: Annotated[str | None, typer.Option("--formula", "-f", help="Model, e.g. 'age + C(sex) + TIV'.")] = None,
    contrast: Annotated[list[str] | None, typer.Option("--contrast", help="NAME=EXPR, repeatable (as vbmkit glm).")] = None,
    map_kind: Annotated[str, typer.Option("--map", help="Map kind analysed on both sides.")] = "s6mwp1",
    subsamples: Annotated[int, typer.Option("--subsamples", min=0, help="Random subsamples (same draws on both sides).")] = 100,
    fraction: Annotated[float, typer.Option("--fraction", min=0.0, max=1.0, help="Fraction of subjects per subsample.")] = 0.8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subsample draws.")] = 0,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Compare vbmkit's tissue maps, volumes, ROI volumes and (median) t-maps with CAT12's or SPM12's
    and write report.html, metrics.json and CSVs (see docs/compare.md)."""
    from vbmkit.cli.glm import parse_contrast_options
    from vbmkit.config import GlmConfig
    from vbmkit.errors import ConfigError
    from vbmkit.workflows.compare import run_compare

    if (cat12 is None) == (spm is None):
        raise ConfigError("compare: expected exactly one of --cat12 DIR and --spm DIR")
    contrasts = parse_contrast_options(contrast) if contrast else None
    design = [covariates is not None, formula is not None, bool(contrasts)]
    if any(design) and not all(design):
        raise ConfigError("compare: expected --covariates, --formula and --contrast together (or none of them)")

    glm = (GlmConfig(maps=map_kind, formula=formula, contrasts=contrasts, subsamples=subsamples, fraction=fraction,
                     seed=seed, device=device.value) if all(design) else None)
    metrics = run_compare(ours, cat12=cat12, spm=spm, out=out, covariates=covariates, id_column=id_column,
                          glm=glm, maps=map_kind, device=device.value, progress=not quiet)
    _print_summary(metrics, out)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_summary(metrics: dict, out: Path) -> None:
    import statistics

    ref = metrics["reference"]["kind"]
    subjects = metrics["subjects"]
    typer.echo(f"compared {len(metrics['matched'])} subjects with {ref}; unmatched: "
               f"{len(metrics['unmatched']['ours_only'])} vbmkit only, "
               f"{len(metrics['unmatched']['reference_only'])} {ref} only")
    for key in ("dice_gm", "dice_wm", "dice_csf", "r_mwp1", "r_mwp2"):
        vals = [s[key] for s in subjects.values() if s.get(key) is not None]
        if vals:
            typer.echo(f"  median {key}: {statistics.median(vals):.3f} (n = {len(vals)})")
    if metrics["roi"]:
        r = [d["gm"]["r"] for d in metrics["roi"].values() if d.get("gm", {}).get("r") is not None]
        if r:
            typer.echo(f"  ROI GM volumes: median r {statistics.median(r):.3f} over {len(r)} regions")
    for name, c in metrics["contrasts"].items():
        typer.echo(f"  contrast {name}: r(median t) {_fmt(c.get('r_median_t'))}, max|t| {_fmt(c.get('max_abs_t_ours'))} "
                   f"vs {_fmt(c.get(f'max_abs_t_{ref}'))}, Dice(t > thr) {_fmt(c.get('dice_suprathreshold'))}")
    typer.echo(f"wrote {out / 'report.html'} and {out / 'metrics.json'}")
