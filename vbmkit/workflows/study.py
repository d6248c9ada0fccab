"""``vbmkit run study.yaml``: the whole study, stage by stage, resumable, with provenance.

The YAML is validated completely first (:func:`vbmkit.workflows.study_plan.load_study`); only
then is the output folder created. Stages and their folders:

``preprocess/``  T1 -> tissue maps (per subject resumable: :func:`run_preprocess`)
``qc/``          sample homogeneity of mwp1 (:func:`vbmkit.workflows.qc.run_qc`)
``glm/``         voxel-wise GLM with subsamples (:func:`vbmkit.workflows.glm.run_glm`)
``roi/``         LPBA40 volumes and ROI statistics (:func:`vbmkit.workflows.roi.run_roi`)
``compare/``     agreement with CAT12/SPM (:func:`vbmkit.workflows.compare.run_compare`)
``report.html``  the study report, ``provenance.json`` what was run, with which inputs.

Every stage writes atomically and is skipped on a rerun when its inputs and settings are
unchanged (a fingerprint of settings, input file sizes and modification times); a crash or
Ctrl-C leaves finished subjects and stages in place, so a rerun redoes only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vbmkit.io.atomic import atomic_path, write_json
from vbmkit.io.ownership import OwnedFolder, claim
from vbmkit.report.study_report import FILES as REPORT_FILES
from vbmkit.workflows.study_plan import TIV, StudyPlan, load_study

STAMP = ".vbmkit_stage.json"


def fingerprint(settings: Any, files: Sequence[Path] = ()) -> str:
    """sha256 of JSON settings and of the size and mtime of each file (stand-ins for contents)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for p in files:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _stage_done(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / STAMP).read_text())["fingerprint"] == key
    except (OSError, ValueError, KeyError):
        return False


def _run_atomic_stage(owned: OwnedFolder, name: str, key: str, work: Callable[[Path], Any]) -> str:
    """Run ``work(tmp)`` into a temporary folder that replaces ``OUT/name``; skip when up to date.

    The temporary folder is unique (``.vbmkit-tmp-<name>-<pid>-<random>`` inside the owned
    study folder), so a killed run leaves nothing a rerun does not remove.
    """
    folder = owned.path / name
    done = owned.owns(name + "/") and _stage_done(folder, key)
    owned.register(name + "/")  # written by this run too (kept when the study finishes)
    if done:
        return "up to date"
    parent = owned.tmp_dir(name)
    tmp = parent / name  # not created: ``work`` makes it
    try:
        work(tmp)
        write_json(tmp / STAMP, {"fingerprint": key})
        owned.replace_folder(name, tmp)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    return "ran"


def run_study(config_path: str | os.PathLike, *, out: str | os.PathLike | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Validate a study YAML, then run every configured stage into the output folder.

    Parameters
    ----------
    config_path : path
        The study YAML.
    out : path, optional
        Output folder overriding the YAML's ``out``.
    progress : callable, optional
        Called with one line per stage event (the CLI prints them).

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
    plan = load_study(config_path, out=out)
    with claim(plan.out, command="run") as owned:
        owned.register("preprocess/", "glm/", "roi/", "compare/", "covariates.tsv", "provenance.json",
                       "report.html", "report.png", f"{REPORT_FILES}/")
        provenance = _run_stages(plan, owned, say)
        owned.finish()
    return provenance


def _run_stages(plan: StudyPlan, owned: OwnedFolder, say: Callable[[str], None]) -> dict:
    from vbmkit.workflows.provenance import collect_provenance

    started = time.time()
    stages: dict[str, dict[str, Any]] = {}

    def stage(name: str, fn: Callable[[], str | None]) -> None:
        t = time.perf_counter()
        say(f"[{name}] starting")
        status = fn() or "ran"
        stages[name] = {"status": status, "seconds": round(time.perf_counter() - t, 3)}
        say(f"[{name}] {status} ({stages[name]['seconds']:.1f} s)")

    state: dict[str, Any] = {"owned": owned}
    if plan.preprocess is not None:
        stage("preprocess", lambda: _preprocess(plan, state, say))
    else:
        stages["preprocess"] = {"status": "not configured (inputs.maps given)"}
    stage("qc", lambda: _qc(plan, state))
    state["covariates_path"] = _merged_covariates(plan, state)
    if plan.glm is not None:
        stage("glm", lambda: _glm(plan, state))
    else:
        stages["glm"] = {"status": "not configured"}
    if plan.config.roi is not None:
        stage("roi", lambda: _roi(plan, state))
    else:
        stages["roi"] = {"status": "not configured"}
    if plan.config.compare is not None:
        stage("compare", lambda: _compare(plan, state))
    else:
        stages["compare"] = {"status": "not configured"}
    provenance = collect_provenance(plan, stages=stages, started=started)
    write_json(plan.out / "provenance.json", provenance)
    stage("report", lambda: _report(plan, state))
    provenance["stages"] = stages
    provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(plan.out / "provenance.json", provenance)
    return provenance


# ---------------------------------------------------------------------------- stages


def _preprocess(plan: StudyPlan, state: dict, say: Callable[[str], None]) -> str:
    from vbmkit.workflows.preprocess import run_preprocess

    folder = plan.out / "preprocess"
    summary = run_preprocess([str(t.path) for t in plan.t1], folder, plan.preprocess, device=plan.device,
                             progress=lambda msg: say(f"[preprocess] {msg}"))
    state["preprocess"] = summary
    if summary.failed:
        warnings.warn(f"preprocess: {len(summary.failed)} subjects failed (see {summary.errors_csv}); "
                      "the study goes on without them", stacklevel=2)
    return f"{len(summary.done)} done, {len(summary.skipped)} already done, {len(summary.failed)} failed"


def _map_sources(plan: StudyPlan) -> list[str]:
    return plan.maps if plan.maps else [str(plan.out / "preprocess")]


def _find(plan: StudyPlan, kind: str) -> list[Path]:
    from vbmkit.io.maps import find_maps

    return find_maps(_map_sources(plan), kind=kind)


def _volumes_table(plan: StudyPlan) -> pd.DataFrame | None:
    tables = [plan.out / "preprocess" / "volumes.csv"] if plan.preprocess is not None else plan.tiv_tables
    if not tables and plan.maps:
        from vbmkit.workflows.study_plan import _volume_tables

        tables = _volume_tables(plan.maps)
    frames = [pd.read_csv(t) for t in tables if Path(t).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else None


def _qc(plan: StudyPlan, state: dict) -> str:
    from vbmkit.errors import ImageError
    from vbmkit.workflows.qc import run_qc

    kind = "mwp1"
    try:
        maps = _find(plan, kind)
    except ImageError:
        kind = plan.glm.maps if plan.glm is not None else "s6mwp1"
        maps = _find(plan, kind)
    if len(maps) < 3:
        state["qc"] = None
        return f"skipped: {len(maps)} maps (at least 3 needed)"
    settings = plan.qc
    key = fingerprint({"qc": settings.model_dump(mode="json"), "kind": kind}, maps)
    folder = plan.out / "qc"
    quality = _volumes_table(plan)
    status = _run_atomic_stage(state["owned"], "qc", key, lambda tmp: run_qc(maps, tmp, settings=settings, kind=kind,
                                                               quality=quality, device=plan.device))
    state["qc"] = json.loads((folder / "qc.json").read_text())
    n_flag = len(state["qc"]["flagged"])
    return f"{status}; {n_flag} of {state['qc']['n_subjects']} flagged"


def _merged_covariates(plan: StudyPlan, state: dict) -> Path | None:
    """Covariates with TIV from the preprocessing (when the formula asks for it) -> OUT/covariates.tsv."""
    from vbmkit.io.maps import file_id

    if plan.covariates is None:
        return None
    table = plan.covariates.copy()
    id_col = plan.config.inputs.id_column
    if plan.tiv_from in ("preprocess", "maps"):
        volumes = _volumes_table(plan)
        tiv = {}
        if volumes is not None:
            ids = list(table[id_col])
            for name, value in zip(volumes["name"], volumes["tiv_ml"], strict=True):
                ident = file_id(Path(f"{name}.nii"), ids)
                if ident is not None:
                    tiv[ident] = value
        table[TIV] = table[id_col].map(tiv)
    path = plan.out / "covariates.tsv"
    text = table.to_csv(sep="\t", index=False, na_rep="n/a")
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # keep the mtime of an equal file
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


def _excluded(plan: StudyPlan, state: dict) -> set[str]:
    qc = state.get("qc")
    if qc is None or not plan.qc.exclude_flagged:
        return set()
    return set(qc["flagged"])


def _glm(plan: StudyPlan, state: dict) -> str:
    from vbmkit.io.maps import file_id
    from vbmkit.io.tables import read_covariates
    from vbmkit.workflows.glm import run_glm
    from vbmkit.workflows.qc import map_name

    glm = plan.glm
    settings = glm.model_copy(update={"mask": plan.resolve(glm.mask)}) if glm.mask is not None else glm
    maps = _find(plan, glm.maps)
    excluded = _excluded(plan, state)
    id_col = plan.config.inputs.id_column
    table = read_covariates(state["covariates_path"], id_column=id_col)
    if excluded:
        maps = [m for m in maps if map_name(m, glm.maps) not in excluded]
        ids = list(table[id_col])
        drop = {file_id(Path(f"{n}.nii"), ids) for n in excluded} - {None}
        table = table[~table[id_col].isin(drop)].reset_index(drop=True)
        table.attrs["source"] = str(state["covariates_path"])
    device = plan.device if glm.device == "auto" else glm.device
    previous = plan.out / "glm" / "summary.json"
    before = previous.stat().st_mtime_ns if previous.is_file() else None
    summary = run_glm([str(m) for m in maps], table, id_column=id_col, settings=settings,
                      out=plan.out / "glm", missing=plan.config.inputs.missing, device=device, progress=False)
    state["glm"] = summary
    status = "up to date" if before is not None and previous.stat().st_mtime_ns == before else "ran"
    return f"{status}; {summary.get('n_subjects')} subjects, {len(excluded)} excluded by QC"


def _roi(plan: StudyPlan, state: dict) -> str:
    from vbmkit.workflows.study_roi import run_roi_stage

    return run_roi_stage(plan, state, maps_of=lambda kind: _find(plan, kind))


def _compare(plan: StudyPlan, state: dict) -> str:
    from vbmkit.workflows.study_roi import run_compare_stage

    return run_compare_stage(plan, state)


def _report(plan: StudyPlan, state: dict) -> str:
    from vbmkit.report.study_report import write_study_report

    path = write_study_report(plan.out, title=plan.report.title, study_name=plan.config.name,
                              yaml_text=plan.yaml.text)
    if plan.report.screenshot:
        from vbmkit.workflows.provenance import screenshot

        note = screenshot(path, plan.out / "report.png")
        return f"{path.name}; {note}"
    return path.name
