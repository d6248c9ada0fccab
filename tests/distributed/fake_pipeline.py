"""A stand-in for the per-subject pipeline that Dask workers can import (tests/distributed).

:func:`fake_run_one` replaces ``vbmkit.workflows.preprocess.run._run_one`` in the test process;
the task is pickled by reference, so each worker process imports this module and runs the real
``_run_one`` (its error handling, device resolution) around :func:`fake_subject` instead of the
real pipeline. The fake validates the input like the pipeline, writes every output file of the
contract atomically (values derived from the input, so outputs are deterministic), announces
itself in ``<out>/../started/<name>.<pid>`` (so a test can kill the worker mid-subject) and
sleeps ``SECONDS`` between its first and its other outputs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from vbmkit.io.atomic import atomic_path
from vbmkit.io.records import write_report
from vbmkit.workflows.preprocess import run as wf
from vbmkit.workflows.preprocess.naming import output_paths, settings_hash

_real_run_one = wf._run_one
#: seconds a subject takes between its first output and the others
SECONDS = 1.5


def _write(path: Path, data: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([1.5, 1.5, 1.5, 1.0])), str(tmp))


def fake_subject(t1, out, settings, *, device="cpu", progress=None):
    """Validate ``t1`` as the pipeline does, then write its outputs and report (deterministic)."""
    from vbmkit.workflows.preprocess.steps import load_t1

    native = load_t1(t1.path)  # broken inputs fail here, as in the real pipeline
    started = Path(out).parent / "started"
    started.mkdir(exist_ok=True)
    (started / f"{t1.name}.{os.getpid()}").touch()
    data = native.data.numpy()
    paths = output_paths(out, t1.name, settings)
    keys = [k for k in paths if k != "report"]
    _write(paths[keys[0]], data)
    time.sleep(SECONDS)  # a worker killed now is killed mid-subject
    for i, key in enumerate(keys[1:], start=2):
        _write(paths[key], data / i)
    report = {"name": t1.name, "input": str(t1.path), "settings_hash": settings_hash(settings),
              "volumes_ml": {"tiv": float(data.sum()) / 1e3, "gm": 1.0, "wm": 2.0, "csf": 3.0},
              "timings_s": {"total": 1.0}, "device": str(device)}
    write_report(paths["report"], report)
    return report


def fake_run_one(t1, out, settings, device, threads=None, step=None):
    """The real ``_run_one`` around :func:`fake_subject` (in whichever process runs it)."""
    real = wf.preprocess_subject
    wf.preprocess_subject = fake_subject
    try:
        return _real_run_one(t1, out, settings, device, threads, step)
    finally:
        wf.preprocess_subject = real
