"""``vbmkit demo``: a simulated cohort with planted effects, run through the whole study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import DeviceOption, handle_errors


@handle_errors
def app_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("vbmkit_demo"),
    subjects: Annotated[int | None, typer.Option("--subjects", min=10, help="Subjects (default 20; --truth: 30; --quick: 60).")] = None,
    subsamples: Annotated[int | None, typer.Option("--subsamples", min=0, help="--quick only (implies it): random 80 % subsamples [100].")] = None,
    permutations: Annotated[int | None, typer.Option("--permutations", min=0, help="--quick only (implies it): Freedman-Lane permutations [100].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the cohort, subsamples and permutations.")] = 0,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Toy path: smooth GM-like maps on a 3 mm grid straight "
                                        "into the GLM (seconds) instead of the whole study.")] = False,
    truth: Annotated[bool, typer.Option("--truth", help="Analyse the simulated ground-truth tissue maps "
                                        "(what a perfect preprocessing would give; under a minute) instead "
                                        "of preprocessing the simulated T1 images.")] = False,
) -> None:
    """Simulate a cohort of T1 images from the CAT12 template with planted age and group effects
    and run the whole study on it: preprocessing, then examples/demo.yaml (QC, GLM with 100 x 80 %
    subsamples, LPBA40 ROIs, report.html); print where the peaks are and how well they match the
    truth (docs/study.md). --truth: skip preprocessing (analyse the true tissue maps);
    --quick: the toy path (smooth maps on a 3 mm grid, GLM only).
    """
    if not (quick or subsamples is not None or permutations is not None):
        from vbmkit.cli.run import demo_study

        demo_study(out, n=subjects if subjects is not None else (30 if truth else 20), seed=seed, full=not truth,
                   device=device.value)
        return
    from vbmkit.workflows.demo.toy import run_demo

    res = run_demo(out, n_subjects=subjects if subjects is not None else 60,
                   subsamples=subsamples if subsamples is not None else 100,
                   permutations=permutations if permutations is not None else 100, seed=seed,
                   device=device.value, progress=not quiet)
    fmt = ", ".join(f"{v:.1f}" for v in res.peak_found_mm)
    true = ", ".join(f"{v:.1f}" for v in res.peak_true_mm)
    typer.echo(f"toy cohort: {res.n_subjects} subjects -> {res.out / 'maps'}, {res.out / 'participants.tsv'}")
    typer.echo(f"GLM: {res.out / 'glm'} (summary.json, design.png, age_decline/*.nii.gz, glass_brain.png)")
    typer.echo(f"peak of the median t-map at ({fmt}) mm, planted at ({true}) mm: {res.distance_mm:.1f} mm apart")
    typer.echo(f"max median t = {res.max_median_t:.2f}; r(median t, planted effect) = {res.r_median_t:.3f}"
               + (f"; {res.n_fwe} voxels with p_FWE < 0.05" if res.n_fwe is not None else ""))
    typer.echo(f"done in {res.seconds:.1f} s")
