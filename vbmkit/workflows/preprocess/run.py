"""Batch preprocessing: many T1 images -> per-subject outputs, ``volumes.csv`` and ``errors.csv``.

- Resumable: a subject whose report exists with the same settings hash and whose outputs all
  exist is skipped (its report is reused for ``volumes.csv``).
- Robust: an input that fails (not an image, 4-D, NaN, ...) is listed in ``errors.csv`` with
  the reason and the batch goes on; :attr:`PreprocessSummary.ok` is False then.
- Parallel: one task per subject on Dask (:mod:`vbmkit.workflows.compute`): ``settings.jobs``
  local worker processes (CPU), each with an equal share of the CPU threads, or a running
  scheduler / a batch cluster; ``jobs 1`` runs in this process without Dask. Workers write the
  subject's outputs themselves (atomically); a subject whose worker died is rerun elsewhere.
"""

from __future__ import annotations

import os
import re
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vbmkit.config import PreprocessConfig
from vbmkit.device import available_memory_bytes, resolve_device
from vbmkit.errors import ConfigError, VbmkitError
from vbmkit.io.bids import T1Input, find_t1_inputs
from vbmkit.io.ownership import claim
from vbmkit.io.records import read_json, write_rows
from vbmkit.workflows.compute import ComputeTarget, run_tasks, threads_per_task, worker_device
from vbmkit.workflows.preprocess.naming import claimed_entries, output_paths, settings_hash
from vbmkit.workflows.preprocess.store_append import StoreAppender
from vbmkit.workflows.preprocess.subject import check_engine, preprocess_subject
from vbmkit.workflows.progress import progress_bar

VOLUME_COLUMNS = (
    "name", "input", "tiv_ml", "gm_ml", "wm_ml", "csf_ml", "gm_frac", "wm_frac", "csf_frac",
    "affine_loss", "warp_mse", "linear_elasticity", "jacobian_min", "jacobian_max", "folded_voxels",
    "brain_jacobian_median", "brain_jacobian_p0.5_rel", "brain_jacobian_p99.5_rel", "brain_jacobian_min", "brain_jacobian_max",
    "brain_folded_voxels", "bending_energy", "elastic_energy", "volume_preservation_gm", "periventricular_gm_ml", "total_s",
)
ERROR_COLUMNS = ("name", "path", "reason")


@dataclass
class PreprocessSummary:
    """What a batch did. ``reports`` maps subject name to its report dict."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: With a store: its path and how many maps were ``appended``, ``replaced`` or ``unchanged``.
    store: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed

    @property
    def volumes_csv(self) -> Path:
        return self.out / "volumes.csv"

    @property
    def errors_csv(self) -> Path:
        return self.out / "errors.csv"


def is_finished(t1: T1Input, out: Path, settings: PreprocessConfig) -> dict[str, Any] | None:
    """The subject's report when its outputs exist for these settings, else None."""
    paths = output_paths(out, t1.name, settings)
    report = read_json(paths["report"])
    if report is None or report.get("settings_hash") != settings_hash(settings):
        return None
    if any(not p.is_file() for p in paths.values()):
        return None
    return report


def volume_row(report: dict[str, Any]) -> dict[str, Any]:
    """One row of ``volumes.csv`` from a subject report."""
    vol, frac, q = report.get("volumes_ml", {}), report.get("volumes_fraction", {}), report.get("quality", {})
    row: dict[str, Any] = {"name": report.get("name"), "input": report.get("input")}
    for t in ("tiv", "gm", "wm", "csf"):
        row[f"{t}_ml"] = vol.get(t)
    for t in ("gm", "wm", "csf"):
        row[f"{t}_frac"] = frac.get(t)
    for k in VOLUME_COLUMNS[VOLUME_COLUMNS.index("affine_loss"):VOLUME_COLUMNS.index("total_s")]:
        row[k] = q.get(k)
    row["total_s"] = report.get("timings_s", {}).get("total")
    return row


def _reason(exc: BaseException) -> str:
    if isinstance(exc, VbmkitError):
        return str(exc)
    # An unexpected failure: keep the type and the innermost frame so it can be reported.
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"internal error {type(exc).__name__}: {exc}{where}"


def _run_one(t1: T1Input, out: Path, settings: PreprocessConfig, device: str,
             threads: int | None = None, step: Callable[[str], None] | None = None) -> tuple[str, Any]:
    """One subject's task: ("done", report) or ("failed", reason), in this process or a Dask worker.

    ``device`` is resolved here, on the machine that computes (``auto`` on a GPU node is CUDA;
    each worker of a multi-GPU job takes its own GPU, :func:`worker_device`).
    """
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    try:
        dev = resolve_device(worker_device(device))
        return "done", preprocess_subject(t1, out, settings, device=dev, progress=step)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one broken input must not stop the batch
        return "failed", _reason(exc)


def run_preprocess(inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
                   settings: PreprocessConfig | None = None, *, device: str | torch.device = "auto",
                   progress: bool | Callable[[str], None] = True,
                   compute: ComputeTarget | None = None, store: str | os.PathLike | None = None,
                   store_map: str = "s6mwp1") -> PreprocessSummary:
    """Preprocess T1 images into ``out`` (the ``vbmkit preprocess`` command and the study workflow).

    Parameters
    ----------
    inputs : sequence of str or path
        Files, globs, plain folders or BIDS folders (:func:`vbmkit.io.bids.find_t1_inputs`).
    out : path
        Output folder: ``out/<name>/mri/...``, ``out/<name>/report/<name>.json``,
        ``out/volumes.csv`` and ``out/errors.csv``.
    settings : PreprocessConfig, optional
        The ``preprocess`` section of the study YAML (defaults when None).
    device : str or torch.device
        ``auto``, ``cpu`` or ``cuda``.
    progress : bool or callable
        True: a progress bar on stderr; a callable gets one message per finished subject.
    compute : ComputeTarget, optional
        Where the subjects run: default ``settings.jobs`` local workers (1: in this process);
        a running scheduler or a batch cluster (:mod:`vbmkit.workflows.compute`). ``out`` must
        then be on a file system the workers share.

    store : path, optional
        A subject x voxel store (``vbmkit stack`` layout) that each finished subject's
        ``store_map`` is appended to, created on the template grid when absent
        (:mod:`vbmkit.workflows.preprocess.store_append`); subjects finished earlier are added too.
    store_map : str
        The map kind appended to ``store`` (``s6mwp1``: the first smoothed GM map).

    Returns
    -------
    PreprocessSummary

    Raises
    ------
    ConfigError
        Before any work, for inputs that match nothing, duplicate names or an unusable engine.
    """
    settings = settings if settings is not None else PreprocessConfig()
    check_engine(settings)
    target = compute if compute is not None else ComputeTarget(jobs=settings.jobs)
    if target.remote:  # resolved by each worker on its own machine (the client may have no GPU)
        dev = str(device)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
            raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]'; got {dev!r}")
    else:
        dev = resolve_device(device)
        if dev.type != "cpu" and not target.in_process:  # local processes share the GPU(s)
            fit = gpu_jobs(target.jobs, available_memory_bytes(dev))
            if fit < target.jobs:
                warnings.warn(f"jobs: {target.jobs} processes would need about {target.jobs * GPU_BYTES_PER_JOB / 2**30:.0f} "
                              f"GiB of free memory on {dev}; running {fit} at once", stacklevel=2)
                target = ComputeTarget(jobs=fit)
    out = Path(out)
    subjects = find_t1_inputs(inputs)
    with claim(out, command="preprocess") as owned:
        # subject folders and tables are claimed up front: a user's folder named like a subject
        # is refused before any work; subjects of earlier runs that are not inputs now are kept
        owned.register(*claimed_entries([t1.name for t1 in subjects], settings), "volumes.csv", "errors.csv")
        appender = StoreAppender(store, store_map, out, settings) if store is not None else None
        summary = _preprocess_all(subjects, out, settings, dev, progress, target, appender)
        owned.finish(keep=owned.previous["files"] if owned.previous else ())
    return summary


#: GPU memory one preprocessing process is given room for: a 1 mm T1 peaked at 1.34 GB on an H200
#: (``benchmarks/preprocess_speed.py --device cuda``), doubled for larger images and the CUDA context.
GPU_BYTES_PER_JOB = 3 * 2**30


def gpu_jobs(jobs: int, free_bytes: int | None) -> int:
    """How many of ``jobs`` local processes may share a GPU with ``free_bytes`` of free memory.

    Several processes per GPU pay: half of a subject's time is CPU work (NIfTI reading and
    writing, quality figures) while the GPU waits. On an H200, 4 processes gave 4.4 s per
    subject against 10.0 s for one (``docs/preprocess.md``).

    Parameters
    ----------
    jobs : int
        Processes asked for (``--jobs``).
    free_bytes : int or None
        Free memory of the GPU (None: unknown, ``jobs`` is kept).

    Returns
    -------
    int
        ``jobs``, or as many as ``GPU_BYTES_PER_JOB`` each fit, at least 1.
    """
    if free_bytes is None:
        return jobs
    return max(1, min(jobs, free_bytes // GPU_BYTES_PER_JOB))


def _preprocess_all(subjects: list[T1Input], out: Path, settings: PreprocessConfig, dev: torch.device | str,
                    progress: bool | Callable[[str], None], target: ComputeTarget,
                    store: StoreAppender | None = None) -> PreprocessSummary:
    summary = PreprocessSummary(out=out)

    todo: list[T1Input] = []
    for t1 in subjects:
        report = is_finished(t1, out, settings)
        if report is not None:
            summary.skipped.append(t1.name)
            summary.reports[t1.name] = report
            if store is not None:
                store.add(t1.name)
        else:
            todo.append(t1)

    bar = progress_bar(len(subjects), initial=len(summary.skipped), description="preprocess", unit="subjects",
                       enabled=progress is True)
    notify = progress if callable(progress) else None

    def record(t1: T1Input, status: str, payload: Any) -> None:
        if status == "done":
            summary.done.append(t1.name)
            summary.reports[t1.name] = payload
            if store is not None:
                store.add(t1.name)
        else:
            summary.failed[t1.name] = payload
        if bar is not None:
            bar.set_postfix_str(f"{t1.name}: {status}", refresh=False)  # shown by the update
            bar.update(1)
        if notify is not None:
            notify(f"{t1.name}: {status}")

    try:
        if target.in_process or (len(todo) <= 1 and not target.remote):
            for t1 in todo:
                step = None
                if bar is not None:
                    def step(name: str, _n: str = t1.name) -> None:
                        bar.set_postfix_str(f"{_n}: {name}", refresh=True)
                record(t1, *_run_one(t1, out, settings, str(dev), step=step))
        else:
            run_tasks(_run_one, todo, target=target, args=(out, settings, str(dev), threads_per_task(target)),
                      key=lambda t1: t1.name, record=record, reason=_reason)
    finally:
        if bar is not None:
            bar.close()
        order = [t1.name for t1 in subjects]
        rows = [volume_row(summary.reports[n]) for n in order if n in summary.reports]
        write_rows(summary.volumes_csv, rows, VOLUME_COLUMNS)
        paths = {t1.name: str(t1.path) for t1 in subjects}
        errors = [{"name": n, "path": paths[n], "reason": summary.failed[n]} for n in order if n in summary.failed]
        write_rows(summary.errors_csv, errors, ERROR_COLUMNS)
        if store is not None:
            store.flush()
            summary.store = dict(store.counts, path=str(store.path))
    return summary

