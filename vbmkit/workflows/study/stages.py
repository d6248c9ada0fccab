"""The qc, glm, roi and compare stages of a study: thin adapters over their workflows.

Each takes the validated :class:`~vbmkit.workflows.study.plan.StudyPlan` and the
:class:`~vbmkit.workflows.study.state.StudyState` of the run, writes one folder of ``OUT`` and
returns a one-line status. Skipping what is up to date is the workflows' own (``glm``, ``roi``)
or :func:`vbmkit.workflows.stage.run_stage` (``qc``, ``compare``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vbmkit.errors import ImageError
from vbmkit.workflows.compare.run import run_compare
from vbmkit.workflows.glm.run import run_glm
from vbmkit.workflows.roi.run import run_roi
from vbmkit.workflows.stage import fingerprint, run_stage
from vbmkit.workflows.study.plan import StudyPlan, roi_atlases
from vbmkit.workflows.study.qc import map_name, run_qc
from vbmkit.workflows.study.state import StudyState


def qc_stage(plan: StudyPlan, state: StudyState) -> str:
    """Sample homogeneity of the mwp1 maps (or of the analysed maps) into ``OUT/qc``."""
    kind = "mwp1"
    try:
        maps = plan.find_maps(kind)
    except ImageError:
        kind = plan.glm.maps if plan.glm is not None else "s6mwp1"
        maps = plan.find_maps(kind)
    if len(maps) < 3:
        state.qc = None
        return f"skipped: {len(maps)} maps (at least 3 needed)"
    settings = plan.qc
    key = fingerprint({"qc": settings.model_dump(mode="json"), "kind": kind, "links_from": "qc"}, maps)
    quality = plan.volumes_table()
    status = run_stage(state.owned, "qc", key, lambda tmp: run_qc(maps, tmp, settings=settings, kind=kind,
                                                                  quality=quality, device=plan.device,
                                                                  links_from=plan.out / "qc"))
    state.qc = json.loads((plan.out / "qc" / "qc.json").read_text())
    return f"{status}; {len(state.qc['flagged'])} of {state.qc['n_subjects']} flagged"


def glm_stage(plan: StudyPlan, state: StudyState) -> str:
    """The voxel-wise GLM of the study's maps (QC-excluded subjects left out) into ``OUT/glm``."""
    glm = plan.glm
    settings = glm.model_copy(update={"mask": plan.resolve(glm.mask)}) if glm.mask is not None else glm
    excluded = state.excluded(plan)
    table = state.covariates(plan, excluded=excluded)
    device = plan.device if glm.device == "auto" else glm.device
    missing = plan.config.inputs.missing
    if plan.store is not None:  # glm.store: the maps are streamed from the store
        settings = settings.model_copy(update={"store": plan.store})
        maps = []
        # the store holds the QC-excluded subjects too; their covariate rows are gone, so they are dropped
        missing = "drop" if excluded else missing
    else:
        maps = [str(m) for m in plan.find_maps(glm.maps) if map_name(m, glm.maps) not in excluded]
    summary = run_glm(maps, table, id_column=plan.config.inputs.id_column, settings=settings,
                      out=plan.out / "glm", missing=missing, device=device, progress=False)
    state.glm_settings, state.glm = settings, summary
    status = "up to date" if summary.get("up_to_date") else "ran"
    source = f" (from the store {plan.store})" if plan.store is not None else ""
    return f"{status}; {summary.get('n_subjects')} subjects{source}, {len(excluded)} excluded by QC"


def roi_stage(plan: StudyPlan, state: StudyState) -> str:
    """LPBA40 (or another atlas) volumes of mwp1/mwp2 into ``OUT/roi`` (``vbmkit roi --out`` layout).

    QC-excluded subjects are left out; with ``roi.statistics`` and a ``glm`` section the
    study's formula and contrasts are fitted to every region (``roi_stats.csv``).
    """
    roi, glm = plan.config.roi, plan.glm
    excluded = state.excluded(plan)
    mwp1 = [p for p in plan.find_maps("mwp1") if map_name(p, "mwp1") not in excluded]
    atlas = roi_atlases(roi.atlas, plan.resolve)
    with_stats = roi.statistics and glm is not None and state.covariates_path is not None
    summary = run_roi([str(p) for p in mwp1], out=plan.out / "roi", atlas=atlas,
                      covariates=state.covariates(plan, excluded=excluded) if with_stats else None,
                      id_column=plan.config.inputs.id_column,
                      formula=glm.formula if with_stats else None,
                      contrasts=dict(glm.contrasts) if with_stats else None,
                      standardize=glm.standardize if glm is not None else True,
                      missing=plan.config.inputs.missing, native=roi.native, device=plan.device,
                      progress=False)
    state.roi = summary
    return f"{len(mwp1)} subjects{', with statistics' if with_stats else ''}"


def compare_stage(plan: StudyPlan, state: StudyState) -> str:
    """Agreement with a CAT12/SPM folder into ``OUT/compare`` (``vbmkit compare --out`` layout).

    The per-contrast comparison takes the glm stage's settings whole; when the compared vbmkit
    maps are the study's own, the vbmkit side is the study's ``OUT/glm`` (already fitted, not
    fitted again) and only the reference side is fitted.
    """
    cmp = plan.config.compare
    ours = plan.resolve(cmp.ours) if cmp.ours is not None else plan.out / "preprocess"
    cat12 = plan.resolve(cmp.cat12) if cmp.cat12 is not None else None
    spm = plan.resolve(cmp.spm) if cmp.spm is not None else None
    design: dict[str, Any] = {}
    settings: dict[str, Any] = {"compare": cmp.model_dump(mode="json")}
    files = sorted(p for root in (ours, cat12, spm) if root is not None for p in Path(root).rglob("*")
                   if p.is_file())
    if state.glm_settings is not None and state.covariates_path is not None:
        own_maps = {Path(s).resolve() for s in plan.map_sources()}
        reuse = state.glm is not None and Path(ours).resolve() in own_maps
        design = {"covariates": state.covariates(plan), "id_column": plan.config.inputs.id_column,
                  "glm": state.glm_settings, "glm_ours": plan.out / "glm" if reuse else None}
        settings.update({"glm": state.glm_settings.model_dump(mode="json"), "id_column": design["id_column"],
                         "glm_ours": state.glm["fingerprint"] if reuse else None})
        files.append(state.covariates_path)
    key = fingerprint(settings, files)
    return run_stage(state.owned, "compare", key, lambda tmp: run_compare(
        ours, cat12=cat12, spm=spm, out=tmp, device=plan.device, report=True, progress=False, **design))
