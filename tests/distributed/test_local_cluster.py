"""``vbmkit preprocess`` on a real Dask ``LocalCluster`` of 2 worker processes (``--scheduler``).

The per-subject pipeline is the deterministic stand-in of :mod:`tests.distributed.fake_pipeline`
(the batch logic, the workers, the atomic writes and the error handling are real; the real
pipeline on phantoms is in test_real_pipeline.py, marked slow). Checked: the files equal those
of the in-process run; a broken T1 goes to errors.csv while the others finish; a rerun skips
finished subjects; a worker killed (SIGKILL) mid-subject has its subject rerun on a worker
and the outputs still equal the in-process run, with no temporaries left.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from distributed import Client
from typer.testing import CliRunner

from tests.distributed.fake_pipeline import fake_run_one
from vbmkit.cli.main import app
from vbmkit.config import PreprocessConfig
from vbmkit.workflows.compute import ComputeTarget
from vbmkit.workflows.preprocess import run as wf

NAMES = ["sub-01", "sub-02", "sub-03"]
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as local:
        yield local


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(wf, "_run_one", fake_run_one)


def _inputs(folder: Path, *, broken: bool = False) -> Path:
    """Three small T1-like images on unequal, anisotropic, flipped grids (16 voxels per axis: the smallest the checks accept) (and optionally a broken file)."""
    folder.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        data = np.random.default_rng(i).uniform(1, 100, size=(16 + i, 17, 18)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.2, 0.9, 1.0])), folder / f"{name}.nii.gz")
    if broken:
        (folder / "broken.nii.gz").write_bytes(b"not an image " * 20)
    return folder


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file by relative path (NIfTI decompressed: the gzip header holds a time)."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in (".vbmkit.json", ".vbmkit.lock"):
            raw = p.read_bytes()
            files[str(p.relative_to(out))] = gzip.decompress(raw) if p.name.endswith(".gz") else raw
    return files


def _local_reference(tmp_path: Path, inputs: Path) -> dict[str, bytes]:
    summary = wf.run_preprocess([inputs], tmp_path / "local" / "out", PreprocessConfig(), device="cpu",
                                progress=False)
    assert sorted(summary.done) == NAMES, summary.failed
    return snapshot(tmp_path / "local" / "out")


def test_scheduler_gives_the_files_of_the_local_run(tmp_path, cluster, fake):
    inputs = _inputs(tmp_path / "in", broken=True)
    reference = _local_reference(tmp_path, inputs)
    out = tmp_path / "dask" / "out"
    res = runner.invoke(app, ["preprocess", str(inputs), "--out", str(out), "--scheduler",
                              cluster.scheduler_address, "--quiet"])
    assert res.exit_code == 1, res.output  # the broken input fails, the others are done
    assert "3 done, 0 skipped (already finished), 1 failed" in res.output
    assert snapshot(out) == reference  # errors.csv and volumes.csv included
    errors = (out / "errors.csv").read_text().splitlines()
    assert len(errors) == 2 and errors[1].startswith("broken,") and "expected a NIfTI image" in errors[1]
    # the subjects ran in the worker processes, not in this one
    pids = {int(p.suffix[1:]) for p in (tmp_path / "dask" / "started").iterdir()}
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        workers = set(client.run(os.getpid).values())
    assert len(pids) >= 1 and pids <= workers and os.getpid() not in pids
    assert not [p for p in out.rglob(".vbmkit-tmp-*")]

    again = wf.run_preprocess([inputs], out, PreprocessConfig(), device="cpu", progress=False,
                              compute=ComputeTarget(scheduler=cluster.scheduler_address))
    assert sorted(again.skipped) == NAMES and not again.done and list(again.failed) == ["broken"]
    assert len(list((tmp_path / "dask" / "started").iterdir())) == 3  # nothing was redone


def test_a_worker_killed_mid_subject_has_its_subject_rerun(tmp_path, cluster, fake):
    inputs = _inputs(tmp_path / "in")
    reference = _local_reference(tmp_path, inputs)
    out = tmp_path / "dask" / "out"
    started = tmp_path / "dask" / "started"
    killed: list[tuple[str, int]] = []
    stop = threading.Event()

    def kill_first_worker() -> None:  # SIGKILL the process of the first subject to start
        while not stop.is_set() and not killed:
            marks = sorted(started.iterdir()) if started.is_dir() else []
            if marks:
                name, pid = marks[0].stem, int(marks[0].suffix[1:])
                os.kill(pid, signal.SIGKILL)
                killed.append((name, pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_first_worker, daemon=True)
    watcher.start()
    try:
        summary = wf.run_preprocess([inputs], out, PreprocessConfig(), device="cpu", progress=False,
                                    compute=ComputeTarget(scheduler=cluster.scheduler_address))
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was killed"
    name, pid = killed[0]
    assert sorted(summary.done) == NAMES and summary.ok
    # the killed subject started again in another (or the restarted) worker process
    reruns = [p for p in started.iterdir() if p.stem == name]
    assert len(reruns) == 2 and {int(p.suffix[1:]) for p in reruns} - {pid}
    assert snapshot(out) == reference
    assert not [p for p in out.rglob(".vbmkit-tmp-*")]
    report = json.loads((out / name / "report" / f"{name}.json").read_text())
    assert report["name"] == name
