"""``vbmkit glm``: voxel-wise GLM with subsample stability and permutation FWE."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vbmkit.cli.common import DeviceOption, MissingOption, handle_errors


class TailChoice(str, Enum):
    """``--tail`` of the permutation FWE p of t contrasts."""

    positive = "positive"
    negative = "negative"
    both = "both"


class MaskRuleChoice(str, Enum):
    """``--mask-rule``: the mean map exceeds the threshold, or every image does (SPM/CAT12)."""

    mean = "mean"
    all = "all"


class ConnectivityChoice(str, Enum):
    """``--tfce-connectivity``: faces (6), faces and edges (18), or all neighbours (26)."""

    six = "6"
    eighteen = "18"
    twenty_six = "26"


def parse_contrast_options(items: list[str]) -> dict[str, str]:
    """``["age=age", "dep=C(group)[T.depr]"]`` -> ``{"age": "age", "dep": "C(group)[T.depr]"}``.

    Each expression is checked against the contrast grammar
    (:func:`vbmkit.formula.grammar.check_contrast`) before anything else reads it.
    """
    from vbmkit.errors import ConfigError
    from vbmkit.formula.grammar import check_contrast

    spec: dict[str, str] = {}
    for item in items:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip() or not expr.strip():
            raise ConfigError(f"--contrast {item!r}: expected NAME=EXPR, e.g. age=age or dep='C(group)[T.depr]'")
        if name.strip() in spec:
            raise ConfigError(f"--contrast {item!r}: the name {name.strip()!r} is given twice")
        check_contrast(name.strip(), expr.strip())
        spec[name.strip()] = expr.strip()
    return spec


@handle_errors
def app_command(
    images: Annotated[list[str] | None, typer.Argument(
        help="Maps: files, globs, or vbmkit / CAT12 / deepmriprep output folders.", show_default=False)] = None,
    covariates: Annotated[Path | None, typer.Option("--covariates", "-c", help="Covariate table (CSV/TSV, e.g. participants.tsv).")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="Column of subject IDs, found in the image file names (default participant_id).")] = None,
    formula: Annotated[str | None, typer.Option("--formula", "-f", help="Model, e.g. 'age + C(sex) + TIV' (intercept added).")] = None,
    contrast: Annotated[list[str] | None, typer.Option("--contrast", help="NAME=EXPR, repeatable: age=age, neg=-age, dep='C(group)[T.depr]', site='C(site)', both='F: age, TIV', v='0 1 0'.")] = None,
    subsamples: Annotated[int | None, typer.Option("--subsamples", min=0, help="Random subsamples for median t / stability; 0: none (default 100).")] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="Fraction of subjects per subsample (default 0.8).")] = None,
    permutations: Annotated[int | None, typer.Option("--permutations", min=0, help="Freedman-Lane permutations for FWE p; 0: none (default 0).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of subsamples and permutations (default 0).")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Mask image (non-zero = in) on the maps' grid.")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Subject x voxel store (vbmkit stack) to stream the maps from instead of IMAGES; memory stays bounded for any N x V.", show_default=False)] = None,
    mask_threshold: Annotated[float | None, typer.Option("--mask-threshold", help="Threshold on the mean map when no --mask (default 0.1).")] = None,
    mask_rule: Annotated[MaskRuleChoice | None, typer.Option("--mask-rule", help="Mask when no --mask: all (default: every image > threshold, SPM/CAT12's absolute threshold) or mean (mean map > threshold).", show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Statistic threshold for stability and clusters (default: p < 0.001 uncorrected).")] = None,
    stratify: Annotated[str | None, typer.Option("--stratify", help="Categorical column to stratify the subsamples by.")] = None,
    missing: MissingOption = None,
    map_kind: Annotated[str | None, typer.Option("--map", help="Map kind to take from output folders: s6mwp1 (default), mwp1, s6mwp2, ...")] = None,
    standardize: Annotated[bool | None, typer.Option("--standardize/--no-standardize", help="Centre and scale continuous covariates (default on).", show_default=False)] = None,
    cluster_min_voxels: Annotated[int | None, typer.Option("--cluster-min-voxels", min=1, help="Smallest cluster listed (default 10).")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb", help="Memory budget of the voxel chunks in GB.")] = None,
    tfce: Annotated[bool | None, typer.Option("--tfce/--no-tfce", help="TFCE maps with FWE p (needs --permutations >= 2; default off).", show_default=False)] = None,
    tfce_e: Annotated[float | None, typer.Option("--tfce-e", help="TFCE extent exponent E (default 0.5).")] = None,
    tfce_h: Annotated[float | None, typer.Option("--tfce-h", help="TFCE height exponent H (default 2).")] = None,
    tfce_connectivity: Annotated[ConnectivityChoice | None, typer.Option("--tfce-connectivity", help="TFCE neighbourhood: 6 (default, as FSL randomise and nilearn), 18 or 26.", show_default=False)] = None,
    cluster_p: Annotated[float | None, typer.Option("--cluster-p", help="Cluster-forming uncorrected p for cluster extent/mass FWE p (needs --permutations; default 0.001 when the map-level engine runs).")] = None,
    tail: Annotated[TailChoice | None, typer.Option("--tail", help="Tail of the FWE p of t contrasts: positive (default, as SPM), negative or both; F: positive.", show_default=False)] = None,
    blocks: Annotated[str | None, typer.Option("--blocks", help="Covariate column of exchangeability blocks (permute within blocks; flip whole blocks for one-sample designs).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="With --store: fit the store's voxel blocks on the workers of a running Dask scheduler (address tcp://host:8786 or scheduler file); the store and the output folder must be on a file system they share.", show_default=False)] = None,
    device: DeviceOption = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (with --study: default <study out>/glm).")] = None,
    study: Annotated[Path | None, typer.Option("--study", help="Study YAML: inputs.maps, inputs.covariates and the glm section; options given here override it.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fit a voxel-wise GLM to maps and write t/F, p, FDR q, effect, subsample median t, IQR,
    stability, permutation FWE p, clusters and a glass brain per contrast (see docs/glm.md).
    """
    from vbmkit.config import GlmConfig
    from vbmkit.errors import ConfigError
    from vbmkit.workflows.glm import run_glm

    overrides = {k: v for k, v in {
        "maps": map_kind, "formula": formula, "standardize": standardize, "subsamples": subsamples,
        "fraction": fraction, "stratify": stratify, "permutations": permutations, "seed": seed, "mask": mask,
        "store": store,
        "mask_threshold": mask_threshold, "mask_rule": mask_rule.value if mask_rule is not None else None,
        "threshold": threshold, "cluster_min_voxels": cluster_min_voxels,
        "memory_gb": memory_gb, "tfce": tfce, "tfce_e": tfce_e, "tfce_h": tfce_h,
        "tfce_connectivity": int(tfce_connectivity.value) if tfce_connectivity is not None else None,
        "cluster_p": cluster_p, "tail": tail.value if tail is not None else None, "blocks": blocks,
    }.items() if v is not None}
    if contrast:
        overrides["contrasts"] = parse_contrast_options(contrast)
    if study is not None:
        items, table, id_col, base, glm_out, missing_policy, study_device = _from_study(study, images=images)
        settings = GlmConfig.model_validate({**base.model_dump(), **overrides})
        # --device beats glm.device, which beats the study's top-level device
        for candidate in (settings.device, study_device):
            device = device if device != "auto" else candidate
        table = covariates if covariates is not None else table
        id_col = id_column if id_column is not None else id_col
        missing_policy = str(missing) if missing is not None else missing_policy
        out = out if out is not None else glm_out
        items = [] if settings.store is not None and not images else items  # the store replaces the maps
    else:
        glm_out = None
        if not images and store is None:
            raise ConfigError("glm: expected IMAGES (files, globs or folders), --store or --study; got none")
        if covariates is None:
            raise ConfigError("glm: expected --covariates FILE (CSV or TSV)")
        if formula is None:
            raise ConfigError("glm: expected --formula, e.g. 'age + C(sex) + TIV'")
        if not contrast:
            raise ConfigError("glm: expected at least one --contrast NAME=EXPR, e.g. --contrast age=age")
        if out is None:
            raise ConfigError("glm: expected --out DIR")
        settings = GlmConfig.model_validate({**overrides, "device": device})
        items, table = list(images or []), covariates
        id_col = id_column if id_column is not None else "participant_id"
        missing_policy = str(missing) if missing is not None else "error"
    if missing_policy not in ("error", "drop"):
        raise ConfigError(f"--missing: expected 'error' or 'drop'; got {missing_policy!r}")

    if study is not None and out == glm_out:  # <study out>/glm: the study folder lists it as its part
        from vbmkit.io.ownership import owned_entry

        with owned_entry(glm_out.parent, glm_out.name, command="run"):
            summary = run_glm(items, table, id_column=id_col, settings=settings, out=out, missing=missing_policy,
                              device=device, progress=not quiet, scheduler=scheduler)
    else:
        summary = run_glm(items, table, id_column=id_col, settings=settings, out=out, missing=missing_policy,
                          device=device, progress=not quiet, scheduler=scheduler)
    _print_summary(summary, out)


def _from_study(path: Path, *, images: list[str] | None):
    """Inputs, covariates, settings and output folder of ``vbmkit glm --study``."""
    from vbmkit.errors import ConfigError
    from vbmkit.workflows.study.plan import load_study

    plan = load_study(path)
    cfg = plan.config
    if cfg.glm is None:
        raise ConfigError(f"{path}: expected a 'glm' section for vbmkit glm --study; there is none")
    if plan.covariates is None:
        raise ConfigError(f"{path}: expected inputs.covariates for the GLM; it is not set")
    items = list(images) if images else list(plan.maps)
    if not items:
        items = [str(plan.out / "preprocess")]  # maps written by `vbmkit run` / `vbmkit preprocess`
    settings = cfg.glm
    if settings.mask is not None:
        settings = settings.model_copy(update={"mask": plan.resolve(settings.mask)})
    if settings.store is not None:  # glm.store: relative to the YAML, as glm.mask
        settings = settings.model_copy(update={"store": plan.resolve(settings.store)})
    glm_out = plan.out / "glm"
    return items, plan.covariates, cfg.inputs.id_column, settings, glm_out, cfg.inputs.missing, cfg.device


def _print_summary(summary: dict, out: Path) -> None:
    if summary.get("up_to_date"):
        typer.echo(f"up to date: {out} ({summary['n_subjects']} subjects, settings and inputs unchanged)")
        return
    typer.echo(f"{summary['n_subjects']} subjects, {summary['n_voxels']} voxels, design columns "
               f"{summary['design_columns']} -> {out}")
    for name, c in summary["contrasts"].items():
        stat = "t" if c["type"] == "t" else "F"
        fwe = c["n_voxels_p_fwe_below_0.05"]
        df = f"{c['df'][1]:g}" if c["type"] == "t" else f"{c['df'][0]:g}, {c['df'][1]:g}"
        typer.echo(f"  {name}: max {stat} = {c['max_statistic']:.2f} (df {df}), "
                   f"{c['n_voxels_q_fdr_below_0.05']} voxels q_FDR < 0.05"
                   + (f", {fwe} voxels p_FWE < 0.05" if fwe is not None else "")
                   + (f", {c['n_voxels_p_fwe_tfce_below_0.05']} voxels p_FWE(TFCE) < 0.05"
                      if c.get("n_voxels_p_fwe_tfce_below_0.05") is not None else "")
                   + f", {c['n_clusters']} clusters at {stat} > {c.get('cluster_threshold', c['threshold']):.2f}")
