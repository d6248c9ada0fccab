"""``vbmkit simulate``: a synthetic cohort with planted effects and its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import handle_errors


@handle_errors
def app_command(
    n: Annotated[int, typer.Option("--n", min=4, help="Number of subjects (sex and group balanced).")] = 20,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (BIDS-like, with truth/).")] = Path(
        "simulated"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    voxel_size: Annotated[float, typer.Option("--voxel-size", min=0.5, max=3.0,
                                              help="Working resolution of the T1 images in mm (before head "
                                                   "scaling; the template is 1.5 mm).")] = 1.5,
    age_effect: Annotated[float, typer.Option("--age-effect", min=0.0, max=0.015,
                                              help="Fraction of GM lost per year in the age regions.")] = 0.005,
    group_effect: Annotated[float, typer.Option("--group-effect", min=0.0, max=0.5,
                                                help="Fraction of GM lost by patients in the group regions.")] = 0.15,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="SD of the image noise (T1 scale ~1).")] = 0.03,
    ventricle_widening: Annotated[float, typer.Option(
        "--ventricle-widening", min=0.0, max=0.2,
        help="Outward move of the lateral ventricles' wall in mm per year of age (WM recedes, CSF fills, GM "
             "unchanged; e.g. 0.05: 3 mm over 60 years). Writes truth/periventricular_band.nii.gz.")] = 0.0,
    images: Annotated[bool, typer.Option("--images/--no-images", help="Make the T1 images (else only truth/ "
                                         "maps and participants.tsv, for statistics-only runs).")] = True,
    yes: Annotated[bool, typer.Option("--yes", help="Go ahead when the cohort needs more than 5 GB of disk.")] = False,
) -> None:
    """Simulate T1 images from the CAT12 template with atrophy (tissue shrinkage, CSF filling the
    space) growing with age in named LPBA40 regions, a patient-control difference in another,
    head size by sex, random deformations, bias and noise; writes participants.tsv and truth/
    (tissue and effect maps). Prints the disk it will take first; more than 5 GB needs --yes.
    """
    from vbmkit.simulate.cohort import CohortParameters
    from vbmkit.stats.memory import format_bytes
    from vbmkit.workflows.simulate import (
        AGE_REGIONS,
        GROUP_REGIONS,
        check_disk,
        estimate_disk,
        simulate_cohort,
    )

    params = CohortParameters(voxel_size_mm=voxel_size, age_effect_per_year=age_effect,
                              group_effect=group_effect, noise_sd=noise,
                              ventricle_widening_mm_per_year=ventricle_widening)
    estimate = estimate_disk(n, parameters=params, images=images)
    check_disk(estimate, out, n=n, confirmed=yes)
    typer.echo(f"simulate: {n} subjects -> {out}: about {estimate.files:,} files, {format_bytes(estimate.bytes)}")
    summary = simulate_cohort(out, n=n, seed=seed, parameters=params, images=images,
                              progress=lambda sid: typer.echo(f"  {sid}"))
    typer.echo(f"{summary['n']} subjects in {out} ({len(summary['written'])} written, "
               f"{len(summary['skipped'])} already there); participants.tsv, truth/")
    typer.echo(f"planted: atrophy with age in {', '.join(AGE_REGIONS)}; "
               f"patients < controls in {', '.join(GROUP_REGIONS)}; head size by sex"
               + (f"; lateral ventricles widening {ventricle_widening:g} mm/year" if ventricle_widening > 0 else ""))
