"""``vbmkit run STUDY.yaml``: the whole study from one YAML (validate, then every stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import handle_errors


@handle_errors
def app_command(
    study: Annotated[Path, typer.Argument(help="Study YAML (see docs/study.md; `vbmkit init` writes one).",
                                          show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the YAML's "
                                             "`out`, else <yaml folder>/<name>_out).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only validate the YAML; run nothing.")] = False,
) -> None:
    """Run a whole VBM study: preprocess, QC, GLM, ROI, compare and report.html.

    Everything in the YAML is validated before any work starts; a rerun redoes only what is
    missing or stale.
    """
    if check:
        from vbmkit.workflows.study_plan import load_study

        plan = load_study(study, out=out)
        stages = ["preprocess" if plan.preprocess is not None else None, "qc",
                  "glm" if plan.glm is not None else None, "roi" if plan.config.roi is not None else None,
                  "compare" if plan.config.compare is not None else None, "report"]
        typer.echo(f"{plan.yaml.path.name}: valid; stages: {', '.join(s for s in stages if s)}; "
                   f"out: {plan.out}")
        return
    from vbmkit.workflows.study import run_study

    provenance = run_study(study, out=out, progress=typer.echo)
    typer.echo(f"report: {Path(provenance['out']) / 'report.html'}")
