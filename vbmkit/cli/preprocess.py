"""``vbmkit preprocess``: T1 images -> tissue maps, modulated warped maps, volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import (
    ClusterOption,
    DeviceOption,
    EngineOption,
    SchedulerOption,
    SkullStripOption,
    _Choice,
    handle_errors,
)


class LayoutChoice(_Choice):
    """``--layout`` of preprocess: CAT12's folder names or BIDS-derivatives names."""

    cat12 = "cat12"
    bids = "bids"


@handle_errors
def app_command(
    inputs: Annotated[list[str] | None, typer.Argument(
        help="T1 images: files, globs, plain folders or BIDS folders (sub-*/anat or sub-*/ses-*/anat, *_T1w.nii[.gz]).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (required unless --study sets out).")] = None,
    fwhm: Annotated[list[float] | None, typer.Option("--fwhm", help="Smoothing FWHM in mm; repeat for several (default 6).")] = None,
    device: DeviceOption = "auto",
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Subjects in parallel (local Dask worker processes; default 1: in this process).")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    engine: EngineOption = None,
    skull_strip: SkullStripOption = None,
    save_deformation: Annotated[bool | None, typer.Option("--save-deformation/--no-save-deformation",
                                                          help="Also write y_<name>.nii.gz.", show_default=False)] = None,
    layout: Annotated[LayoutChoice | None, typer.Option(
        "--layout", help="Output names: cat12 (OUT/<name>/mri/mwp1<name>.nii.gz) or bids (OUT/sub-X/[ses-Y/]anat/"
                         "sub-X_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz; docs/outputs.md). "
                         "Default: the study's preprocess.layout, else cat12.", show_default=False)] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Append each finished subject's map to this subject x voxel store (created when absent; vbmkit glm --store reads it). Default with --study: glm.store.", show_default=False)] = None,
    store_map: Annotated[str | None, typer.Option("--store-map", help="Map kind appended to --store (default: the study's glm.maps, else s6mwp1).", show_default=False)] = None,
    study: Annotated[Path | None, typer.Option("--study", help="Study YAML: its preprocess section and inputs.t1 are the defaults.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Preprocess T1 images: brain mask, affine, segmentation (p0-p3), nonlinear registration to
    CAT12's 1.5 mm template, modulated warped maps mwp1/mwp2, smoothed s<FWHM>mwp1/2, volumes.

    Writes OUT/<name>/mri/*.nii.gz, OUT/<name>/report/<name>.json, OUT/volumes.csv and
    OUT/errors.csv. Finished subjects are skipped on a rerun; the exit status is 1 when any input failed.
    Each subject is one Dask task: --jobs N local workers, --scheduler ADDRESS or --cluster slurm|pbs|sge.
    """
    from vbmkit.config import PreprocessConfig
    from vbmkit.errors import ConfigError
    from vbmkit.workflows.compute import ComputeTarget
    from vbmkit.workflows.preprocess import run_preprocess

    base = PreprocessConfig()
    compute_cfg = None
    device_name = device.value
    study_inputs: list[str] = []
    study_out = None
    if study is not None:
        cfg, study_out = _read_study(study)
        base = cfg.preprocess if cfg.preprocess is not None else base
        study_inputs = list(cfg.inputs.t1)
        out = out if out is not None else study_out
        device_name = device_name if device != "auto" else cfg.device
        compute_cfg = cfg.compute
        if cfg.glm is not None:
            store = store if store is not None else cfg.glm.store
            store_map = store_map if store_map is not None else cfg.glm.maps
    overrides = {k: v for k, v in {"fwhm": fwhm or None, "jobs": jobs,
                                   "engine": engine.value if engine is not None else None,
                                   "skull_strip": skull_strip.value if skull_strip is not None else None, "save_deformation": save_deformation,
                                   "layout": layout.value if layout is not None else None}.items()
                 if v is not None}
    settings = PreprocessConfig.model_validate({**base.model_dump(), **overrides})
    items = list(inputs) if inputs else study_inputs
    if not items:
        raise ConfigError("preprocess: expected T1 inputs (files, globs or folders); got none")
    if out is None:
        raise ConfigError("preprocess: expected --out DIR (or a --study YAML that sets out); got neither")
    target = ComputeTarget(jobs=settings.jobs, scheduler=scheduler,
                           cluster=cluster.value if cluster is not None else None, config=compute_cfg)
    # local work (settings.jobs workers) is run_preprocess's default; a cluster is passed on
    extra: dict = {"compute": target} if target.remote else {}
    if store is not None:
        extra.update(store=store, store_map=store_map or "s6mwp1")
    if study is not None and out == study_out:  # <study out>/preprocess: the study folder lists it
        from vbmkit.io.ownership import owned_entry

        with owned_entry(study_out.parent, study_out.name, command="run"):
            summary = run_preprocess(items, out, settings, device=device_name, progress=not quiet, **extra)
    else:
        summary = run_preprocess(items, out, settings, device=device_name, progress=not quiet, **extra)
    if summary.store is not None:
        typer.echo(f"store {summary.store['path']}: {summary.store['appended']} maps appended, "
                   f"{summary.store['replaced']} replaced, {summary.store['unchanged']} already there")
    if summary.skipped and not summary.done and not summary.failed:  # every subject reused
        typer.echo(f"up to date: {out} ({len(summary.skipped)} subjects already preprocessed)")
        return
    typer.echo(f"{len(summary.done)} done, {len(summary.skipped)} skipped (already finished), "
               f"{len(summary.failed)} failed; volumes: {summary.volumes_csv}")
    if summary.failed:
        for name, reason in summary.failed.items():
            typer.echo(f"failed: {name}: {reason}", err=True)
        typer.echo(f"errors: {summary.errors_csv}", err=True)
        raise typer.Exit(code=1)


def _read_study(path: Path):
    """The study config and its preprocess output folder (``<out>/preprocess``)."""
    from pydantic import ValidationError

    from vbmkit.cli.common import format_validation_error
    from vbmkit.config import StudyConfig
    from vbmkit.errors import ConfigError
    from vbmkit.io.study_yaml import read_study_yaml

    raw = read_study_yaml(path).data  # bounded: aliases, anchors and tags checked
    try:
        cfg = StudyConfig.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(path))) from None
    root = Path(path).resolve().parent
    out = cfg.out if cfg.out is not None else Path(f"{cfg.name}_out")
    out = out if out.is_absolute() else root / out
    inputs = [t if Path(t).is_absolute() else str(root / t) for t in cfg.inputs.t1]
    cfg = cfg.model_copy(update={"inputs": cfg.inputs.model_copy(update={"t1": inputs})})
    if cfg.glm is not None and cfg.glm.store is not None and not cfg.glm.store.is_absolute():  # YAML-relative
        cfg = cfg.model_copy(update={"glm": cfg.glm.model_copy(update={"store": root / cfg.glm.store})})
    return cfg, out / "preprocess"
