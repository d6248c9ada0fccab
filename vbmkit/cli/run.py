"""``vbmkit run STUDY.yaml``: the whole study from one YAML (validate, then every stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import ClusterOption, DeviceChoice, SchedulerOption, handle_errors


@handle_errors
def app_command(
    study: Annotated[Path, typer.Argument(help="Study YAML (see docs/study.md; `vbmkit init` writes one).",
                                          show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the YAML's "
                                             "`out`, else <yaml folder>/<name>_out).")] = None,
    device: Annotated[DeviceChoice | None, typer.Option(
        "--device", help="Where to compute: auto (CUDA when present), cpu or cuda; overrides the YAML's "
        "device and glm.device.", show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Only validate the YAML; run nothing.")] = False,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Run a whole VBM study: preprocess, QC, GLM, ROI, compare and report.html.

    Everything in the YAML is validated before any work starts; a rerun redoes only what is
    missing or stale. Preprocessing runs one Dask task per subject: preprocess.jobs local workers,
    --scheduler ADDRESS or --cluster slurm|pbs|sge (sized by the YAML's compute: section).
    """
    if check:
        from vbmkit.workflows.study.plan import load_study

        plan = load_study(study, out=out, device=device.value if device is not None else None)
        stages = ["preprocess" if plan.preprocess is not None else None, "qc",
                  "glm" if plan.glm is not None else None, "roi" if plan.config.roi is not None else None,
                  "compare" if plan.config.compare is not None else None, "report"]
        typer.echo(f"{plan.yaml.path.name}: valid; stages: {', '.join(s for s in stages if s)}; "
                   f"out: {plan.out}")
        return
    from vbmkit.workflows.study import run_study

    provenance = run_study(study, out=out, device=device.value if device is not None else None,
                           progress=typer.echo, scheduler=scheduler,
                           cluster=cluster.value if cluster is not None else None)
    typer.echo(f"report: {Path(provenance['out']) / 'report.html'}")


def demo_study(out: Path, *, n: int = 30, seed: int = 0, full: bool = False, device: str | None = None) -> None:
    """The whole-study ``vbmkit demo``: simulate, run examples/demo.yaml, print what was found.

    Called by :mod:`vbmkit.cli.demo` (which keeps the toy maps path as ``--quick``).
    """
    from vbmkit.workflows.demo.study import run_study_demo

    res = run_study_demo(out, n=n, seed=seed, full=full, device=device, progress=typer.echo)
    source = "preprocessed simulated T1 images" if res.full else \
        "the simulated tissue maps (cohort/truth; no preprocessing)"
    typer.echo(f"cohort: {res.n_subjects} subjects in {res.out / 'cohort'}; the study analysed {source}")
    for name, c in res.contrasts.items():
        where = "inside" if c["in_planted_region"] else "OUTSIDE"
        typer.echo(f"{name}: peak of the median t-map ({c['max_median_t']:.1f}) at "
                   f"({', '.join(f'{v:.1f}' for v in c['peak_mm'])}) mm in {c['peak_region'] or 'no region'}, "
                   f"{where} the planted {', '.join(c['planted_regions'])}; "
                   f"r(median t, true effect) = {c['r_truth']:.2f}")
    typer.echo(f"report: {res.study / 'report.html'}  (figures: {res.study / 'demo_check.json'})")
    typer.echo(f"done in {res.seconds:.0f} s")
