"""The ``roi`` and ``compare`` stages of a study (thin adapters over their workflows)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _table(state: dict, plan: Any):
    from vbmkit.io.tables import read_covariates

    path = state.get("covariates_path")
    if path is None:
        return None
    return read_covariates(path, id_column=plan.config.inputs.id_column)


def run_roi_stage(plan: Any, state: dict, *, maps_of: Callable[[str], list[Path]]) -> str:
    """LPBA40 (or another atlas) volumes of mwp1/mwp2 into ``OUT/roi`` (``vbmkit roi --out`` layout).

    QC-excluded subjects are left out; with ``roi.statistics`` and a ``glm`` section the
    study's formula and contrasts are fitted to every region (``roi_stats.csv``).
    """
    from vbmkit.workflows.qc import map_name
    from vbmkit.workflows.roi import run_roi

    roi = plan.config.roi
    excluded = set(state["qc"]["flagged"]) if state.get("qc") and plan.qc.exclude_flagged else set()
    mwp1 = [p for p in maps_of("mwp1") if map_name(p, "mwp1") not in excluded]
    atlas = str(plan.resolve(roi.atlas)) if roi.atlas.endswith((".nii", ".nii.gz")) else roi.atlas
    glm = plan.glm
    with_stats = roi.statistics and glm is not None and state.get("covariates_path") is not None
    table = _table(state, plan) if with_stats else None
    if table is not None and excluded:
        from vbmkit.io.maps import file_id

        ids = list(table[plan.config.inputs.id_column])
        drop = {file_id(Path(f"{n}.nii"), ids) for n in excluded} - {None}
        table = table[~table[plan.config.inputs.id_column].isin(drop)].reset_index(drop=True)
    summary = run_roi([str(p) for p in mwp1], out=plan.out / "roi", atlas=atlas, covariates=table,
                      id_column=plan.config.inputs.id_column,
                      formula=glm.formula if with_stats else None,
                      contrasts=dict(glm.contrasts) if with_stats else None,
                      standardize=glm.standardize if glm is not None else True,
                      missing=plan.config.inputs.missing, native=roi.native, device=plan.device,
                      progress=False)
    state["roi"] = summary
    return f"{len(mwp1)} subjects{', with statistics' if with_stats else ''}"


def run_compare_stage(plan: Any, state: dict) -> str:
    """Agreement with a CAT12/SPM folder into ``OUT/compare`` (``vbmkit compare --out`` layout)."""
    from vbmkit.workflows.compare import run_compare
    from vbmkit.workflows.study import _run_atomic_stage, fingerprint

    cmp = plan.config.compare
    ours = plan.resolve(cmp.ours) if cmp.ours is not None else plan.out / "preprocess"
    cat12 = plan.resolve(cmp.cat12) if cmp.cat12 is not None else None
    spm = plan.resolve(cmp.spm) if cmp.spm is not None else None
    glm = plan.glm
    design: dict[str, Any] = {}
    if glm is not None and state.get("covariates_path") is not None:
        design = {"covariates": _table(state, plan), "id_column": plan.config.inputs.id_column,
                  "formula": glm.formula, "contrasts": dict(glm.contrasts), "maps": glm.maps,
                  "subsamples": glm.subsamples, "fraction": glm.fraction, "seed": glm.seed}
    files = sorted(p for root in (ours, cat12, spm) if root is not None for p in Path(root).rglob("*")
                   if p.is_file())
    settings = {"compare": cmp.model_dump(mode="json"),
                **{k: v for k, v in design.items() if k != "covariates"}}
    if state.get("covariates_path") is not None:
        files.append(Path(state["covariates_path"]))
    key = fingerprint(settings, files)
    status = _run_atomic_stage(state["owned"], "compare", key, lambda tmp: run_compare(
        ours, cat12=cat12, spm=spm, out=tmp, device=plan.device, report=True, progress=False, **design))
    return status
