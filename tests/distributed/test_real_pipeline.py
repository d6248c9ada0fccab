"""The real classic pipeline on a Dask ``LocalCluster`` of 2 worker processes: three small
template-derived phantoms (3 mm voxels, fast settings) give through ``--scheduler`` the same
files as the in-process run (NIfTI data and headers byte for byte; reports equal but for the
timings). Slow: about 40 s of CPU per subject."""

from __future__ import annotations

import gzip
import json
import logging

import nibabel as nib
import numpy as np
import pytest
import torch

from vbmkit.config import PreprocessConfig
from vbmkit.io.templates import load_shooting_template
from vbmkit.space import Grid, resample
from vbmkit.workflows.compute import ComputeTarget
from vbmkit.workflows.preprocess import run_preprocess

#: the fastest settings the pipeline runs with (2 mm segmentation, one coarse registration level)
FAST = PreprocessConfig(segmentation_resolution_mm=2.0, skull_strip="never", deformed_priors=False,
                        registration_iterations=[5, 0, 0])


def make_phantom(path, seed: int) -> None:
    """A skull-stripped T1-like image from Template_4_GS on a 3 mm grid, with noise of ``seed``."""
    t = load_shooting_template()
    gm, wm, rest = t.data[0], t.data[1], t.data[2]
    t1 = 0.3 * rest * ((gm + wm) > 0.1) + 0.65 * gm + 1.0 * wm
    shape, vox = (60, 72, 60), 3.0
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = -0.5 * (np.array(shape) - 1) * vox
    data = resample(t1[None, None], t.grid, Grid(shape, aff), target_to_source_mm=np.eye(4))[0, 0]
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    image = (data + 0.02 * noise).clamp_min(0) * 1000
    image[data < 0.02] = 0
    nib.save(nib.Nifti1Image(image.numpy().astype(np.float32), aff), str(path))


def _snapshot(out):
    files = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name in (".vbmkit.json", ".vbmkit.lock"):
            continue
        rel = str(p.relative_to(out))
        if p.name.endswith(".json"):
            report = json.loads(p.read_text())
            report.pop("timings_s", None)  # sidecars and dataset_description.json have none
            files[rel] = report
        elif p.name == "volumes.csv":  # its last column is the run time
            files[rel] = [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]
        else:
            files[rel] = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
    return files


@pytest.mark.slow
def test_real_pipeline_on_a_local_cluster_equals_the_local_run(tmp_path):
    from distributed import LocalCluster

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        make_phantom(inputs / f"sub-0{i + 1}.nii.gz", seed=i)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Dask worker (one thread): float sums then run in the same order
    try:
        local = run_preprocess([inputs], tmp_path / "local", FAST, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert local.ok and len(local.done) == 3, local.failed
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        remote = run_preprocess([inputs], tmp_path / "dask", FAST, device="cpu", progress=False,
                                compute=ComputeTarget(scheduler=cluster.scheduler_address))
    assert remote.ok and sorted(remote.done) == sorted(local.done)
    ours, theirs = _snapshot(tmp_path / "dask"), _snapshot(tmp_path / "local")
    assert sorted(ours) == sorted(theirs) and len(ours) >= 3 * 9
    different = [rel for rel in ours if ours[rel] != theirs[rel]]
    assert not different
