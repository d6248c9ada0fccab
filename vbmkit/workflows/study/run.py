"""``vbmkit run study.yaml``: the whole study, stage by stage, resumable, with provenance.

The YAML is validated completely first (:func:`vbmkit.workflows.study.plan.load_study`); only
then is the output folder created. Stages (:mod:`vbmkit.workflows.study.stages`) and their folders:

``preprocess/``  T1 -> tissue maps (per subject resumable: :func:`run_preprocess`)
``qc/``          sample homogeneity of mwp1 (:func:`vbmkit.workflows.study.qc.run_qc`)
``glm/``         voxel-wise GLM with subsamples (:func:`vbmkit.workflows.glm.run_glm`)
``roi/``         LPBA40 volumes and ROI statistics (:func:`vbmkit.workflows.roi.run_roi`)
``compare/``     agreement with CAT12/SPM (:func:`vbmkit.workflows.compare.run_compare`)
``report.html``  the study report, ``provenance.json`` what was run, with which inputs.

Every stage writes atomically and is skipped on a rerun when its inputs and settings are
unchanged (a fingerprint of settings, input file sizes and modification times:
:mod:`vbmkit.workflows.stage`); a crash or
Ctrl-C leaves finished subjects and stages in place, so a rerun redoes only what is missing.
What one stage hands to the next is a :class:`~vbmkit.workflows.study.state.StudyState`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vbmkit.io.atomic import atomic_path, write_json
from vbmkit.io.ownership import OwnedFolder, claim
from vbmkit.report.study_report import FILES as REPORT_FILES
from vbmkit.report.study_report import write_study_report
from vbmkit.workflows.compute import ComputeTarget
from vbmkit.workflows.preprocess.run import run_preprocess
from vbmkit.workflows.study.plan import StudyPlan, load_study
from vbmkit.workflows.study.provenance import collect_provenance, screenshot
from vbmkit.workflows.study.stages import compare_stage, glm_stage, qc_stage, roi_stage
from vbmkit.workflows.study.state import StudyState
from vbmkit.workflows.subjects import merge_tiv


def run_study(config_path: str | os.PathLike, *, out: str | os.PathLike | None = None,
              device: str | None = None, progress: Callable[[str], None] | None = None,
              scheduler: str | None = None, cluster: str | None = None) -> dict:
    """Validate a study YAML, then run every configured stage into the output folder.

    Parameters
    ----------
    config_path : path
        The study YAML.
    out : path, optional
        Output folder overriding the YAML's ``out``.
    device : str, optional
        Device overriding the YAML's ``device`` and ``glm.device``.
    progress : callable, optional
        Called with one line per stage event (the CLI prints them).
    scheduler, cluster : str, optional
        Run the preprocessing subjects on a running Dask scheduler (address or scheduler file)
        or on a batch cluster (``slurm``, ``pbs``, ``sge``) sized by the YAML's ``compute:``
        section (:mod:`vbmkit.workflows.compute`); default: ``preprocess.jobs`` local workers.

    Returns
    -------
    dict
        The content of ``OUT/provenance.json``.

    Raises
    ------
    ConfigError
        From validation, before the output folder exists.
    """
    say = progress if progress is not None else (lambda _msg: None)
    plan = load_study(config_path, out=out, device=device)
    target = ComputeTarget(jobs=plan.preprocess.jobs if plan.preprocess is not None else 1, scheduler=scheduler,
                           cluster=cluster, config=plan.config.compute)
    with claim(plan.out, command="run") as owned:
        owned.register("preprocess/", "glm/", "roi/", "compare/", "covariates.tsv", "provenance.json",
                       "report.html", "report.png", f"{REPORT_FILES}/")
        provenance = _run_stages(plan, owned, say, target)
        owned.finish()
    return provenance


def _run_stages(plan: StudyPlan, owned: OwnedFolder, say: Callable[[str], None], target: ComputeTarget) -> dict:
    started = time.time()
    stages: dict[str, dict[str, Any]] = {}

    def stage(name: str, fn: Callable[[], str | None]) -> None:
        t = time.perf_counter()
        say(f"[{name}] starting")
        status = fn() or "ran"
        stages[name] = {"status": status, "seconds": round(time.perf_counter() - t, 3)}
        say(f"[{name}] {status} ({stages[name]['seconds']:.1f} s)")

    state = StudyState(owned=owned)
    if plan.preprocess is not None:
        stage("preprocess", lambda: _preprocess(plan, state, say, target))
    else:
        stages["preprocess"] = {"status": "not configured (inputs.maps given)"}
    stage("qc", lambda: qc_stage(plan, state))
    state.covariates_path = _merged_covariates(plan)
    if plan.glm is not None:
        stage("glm", lambda: glm_stage(plan, state))
    else:
        stages["glm"] = {"status": "not configured"}
    if plan.config.roi is not None:
        stage("roi", lambda: roi_stage(plan, state))
    else:
        stages["roi"] = {"status": "not configured"}
    if plan.config.compare is not None:
        stage("compare", lambda: compare_stage(plan, state))
    else:
        stages["compare"] = {"status": "not configured"}
    provenance = collect_provenance(plan, stages=stages, started=started)
    write_json(plan.out / "provenance.json", provenance)
    stage("report", lambda: _report(plan))
    provenance["stages"] = stages
    provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(plan.out / "provenance.json", provenance)
    return provenance


def _preprocess(plan: StudyPlan, state: StudyState, say: Callable[[str], None], target: ComputeTarget) -> str:
    # on a cluster the workers resolve the YAML's device on their own machines
    # with glm.store, each finished subject's glm.maps map is appended to the store as it finishes
    store = {"store": plan.store, "store_map": plan.glm.maps} if plan.store is not None else {}
    summary = run_preprocess([str(t.path) for t in plan.t1], plan.out / "preprocess", plan.preprocess,
                             device=plan.config.device if target.remote else plan.device,
                             progress=lambda msg: say(f"[preprocess] {msg}"), compute=target, **store)
    state.preprocess = summary
    if summary.failed:
        warnings.warn(f"preprocess: {len(summary.failed)} subjects failed (see {summary.errors_csv}); "
                      "the study goes on without them", stacklevel=2)
    stored = (f"; store: {summary.store['appended']} appended, {summary.store['replaced']} replaced"
              if summary.store is not None else "")
    return f"{len(summary.done)} done, {len(summary.skipped)} already done, {len(summary.failed)} failed{stored}"


def _merged_covariates(plan: StudyPlan) -> Path | None:
    """Covariates with TIV from the preprocessing (when the formula asks for it) -> OUT/covariates.tsv."""
    if plan.covariates is None:
        return None
    table = plan.covariates.copy()
    id_col = plan.config.inputs.id_column
    if plan.tiv_from in ("preprocess", "maps"):
        tables = [plan.out / "preprocess" / "volumes.csv"] if plan.preprocess is not None else plan.tiv_tables
        table, _ = merge_tiv(table, [t for t in tables if Path(t).is_file()], id_column=id_col)
    path = plan.out / "covariates.tsv"
    text = table.to_csv(sep="\t", index=False, na_rep="n/a")
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # keep the mtime of an equal file
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


def _report(plan: StudyPlan) -> str:
    path = write_study_report(plan.out, title=plan.report.title, study_name=plan.config.name,
                              yaml_text=plan.yaml.text)
    if plan.report.screenshot:
        note = screenshot(path, plan.out / "report.png")
        return f"{path.name}; {note}"
    return path.name
