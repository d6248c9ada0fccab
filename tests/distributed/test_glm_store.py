"""``vbmkit glm --store``: the GLM streamed from a subject x voxel store equals the in-memory GLM.

Tolerance 1e-6 (relative on t, F and effects, absolute on p and stability): the store path fits
voxel blocks of another width, so float32 products are summed in another order (7e-7 relative
at most here).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError, CovariateError
from vbmkit.io.store import open_store, write_store
from vbmkit.workflows.glm import run_glm

runner = CliRunner()
SHAPE = (7, 8, 9)


def _maps(root, n: int = 24):
    """N maps with an age effect in one corner, zeros (constant) in another, on a flipped grid."""
    rng = np.random.default_rng(3)
    folder = root / "maps"
    folder.mkdir()
    ages = np.linspace(20, 80, n)
    rows = ["participant_id,age,sex"]
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    for i, age in enumerate(ages):
        data = 0.5 + 0.05 * rng.standard_normal(SHAPE)
        data[:3, :3, :3] += 0.004 * age
        data[5:, 6:, 7:] = 0.0  # outside the mask rule and constant
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), folder / f"s6mwp1sub-{i:02d}.nii.gz")
        rows.append(f"sub-{i:02d},{age},{'fm'[i % 2]}")
    (root / "cov.csv").write_text("\n".join(rows) + "\n")
    # shuffled subject order in the store: covariates must be matched by ID, not position
    order = rng.permutation(n)
    paths = [folder / f"s6mwp1sub-{i:02d}.nii.gz" for i in order]
    write_store(paths, root / "store", voxel_chunk=100, subject_chunk=5, mask_threshold=0.05)
    return folder


def _img(path):
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def test_store_path_equals_the_in_memory_path(tmp_path):
    folder = _maps(tmp_path)
    settings = GlmConfig(formula="age + C(sex)", contrasts={"age": "age", "sex": "F: C(sex)[T.m]"}, subsamples=20,
                         seed=1, memory_gb=2e-5)  # 20 kB: several store blocks
    mem = run_glm([folder], tmp_path / "cov.csv", id_column="participant_id", settings=settings,
                  out=tmp_path / "mem", progress=False)
    sto = run_glm([], tmp_path / "cov.csv", id_column="participant_id", settings=settings,
                  out=tmp_path / "sto", progress=False, store=tmp_path / "store")
    assert sto["store_blocks"] > 1 and sto["n_voxels"] == mem["n_voxels"]
    assert sto["subjects"] == mem["subjects"]
    assert np.array_equal(_img(tmp_path / "sto" / "mask.nii.gz"), _img(tmp_path / "mem" / "mask.nii.gz"))
    for name in ("age/t.nii.gz", "age/t_median.nii.gz", "sex/F.nii.gz", "sex/F_median.nii.gz", "age/effect.nii.gz"):
        np.testing.assert_allclose(_img(tmp_path / "sto" / name), _img(tmp_path / "mem" / name), rtol=1e-6, atol=1e-6)
    for name in ("age/p.nii.gz", "age/stability.nii.gz"):
        np.testing.assert_allclose(_img(tmp_path / "sto" / name), _img(tmp_path / "mem" / name), atol=1e-6, rtol=0)
    assert _img(tmp_path / "sto" / "age/t.nii.gz").max() > 5  # the planted effect is found
    assert (tmp_path / "sto" / "age" / "clusters.csv").is_file()


def test_glm_cli_store_and_yaml_store(tmp_path):
    _maps(tmp_path)
    res = runner.invoke(app, ["glm", "--store", str(tmp_path / "store"), "--covariates", str(tmp_path / "cov.csv"),
                              "--formula", "age", "--contrast", "age=age", "--subsamples", "0",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["store"].endswith("store") and summary["n_subjects"] == 24
    assert GlmConfig(formula="age", contrasts={"age": "age"}, store=tmp_path / "store").store == tmp_path / "store"


def test_store_refuses_permutations_and_maps_together(tmp_path):
    folder = _maps(tmp_path)
    settings = GlmConfig(formula="age", contrasts={"age": "age"}, subsamples=0, permutations=10)
    with pytest.raises(ConfigError, match="permutations need whole maps in memory"):
        run_glm([], tmp_path / "cov.csv", id_column="participant_id", settings=settings, out=tmp_path / "o",
                progress=False, store=tmp_path / "store")
    with pytest.raises(ConfigError, match="expected either maps or a store; got 1 map inputs"):
        run_glm([folder], tmp_path / "cov.csv", id_column="participant_id", settings=settings, out=tmp_path / "o2",
                progress=False, store=tmp_path / "store")
    assert open_store(tmp_path / "store").shape == (24, int(open_store(tmp_path / "store").mask.sum()))


def test_api_fit_store(tmp_path):
    import pandas as pd

    from vbmkit.api import GLM

    _maps(tmp_path)
    cov = pd.read_csv(tmp_path / "cov.csv").set_index("participant_id")
    subjects = open_store(tmp_path / "store").subjects  # s6mwp1sub-07, ... in the store's order
    rows = cov.loc[[s.removeprefix("s6mwp1") for s in subjects]].reset_index(drop=True)
    res = GLM("age", subsamples=0, device="cpu").fit_store(tmp_path / "store", rows).compute_contrast("age")
    stat = np.asarray(res.t.dataobj)
    assert stat.shape == SHAPE and stat.max() > 5 and res.summary["store"].endswith("store")
    with pytest.raises(CovariateError, match=r"one row per stored subject \(24\)"):
        GLM("age").fit_store(tmp_path / "store", rows.iloc[:3])


def test_store_blocks_fitted_on_dask_workers_through_the_cli(tmp_path):
    import logging

    from distributed import LocalCluster

    _maps(tmp_path)
    settings = GlmConfig(formula="age", contrasts={"age": "age"}, subsamples=10, seed=2, memory_gb=2e-5)
    here = run_glm([], tmp_path / "cov.csv", id_column="participant_id", settings=settings, out=tmp_path / "here",
                   progress=False, store=tmp_path / "store")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        res = runner.invoke(app, ["glm", "--store", str(tmp_path / "store"), "--covariates", str(tmp_path / "cov.csv"),
                                  "--formula", "age", "--contrast", "age=age", "--subsamples", "10", "--seed", "2",
                                  "--memory-gb", "2e-5", "--scheduler", cluster.scheduler_address,
                                  "--out", str(tmp_path / "there"), "-q"])
    assert res.exit_code == 0, res.output
    there = json.loads((tmp_path / "there" / "summary.json").read_text())
    assert there["store_blocks"] == here["store_blocks"] > 1
    for name in ("age/t.nii.gz", "age/t_median.nii.gz", "mask.nii.gz"):  # as the in-memory comparison
        np.testing.assert_allclose(_img(tmp_path / "there" / name), _img(tmp_path / "here" / name), rtol=1e-6,
                                   atol=1e-6)
    with pytest.raises(ConfigError, match="expected a store to fit on the workers"):
        run_glm([tmp_path / "maps"], tmp_path / "cov.csv", id_column="participant_id", settings=settings,
                out=tmp_path / "o", progress=False, scheduler="tcp://127.0.0.1:1")
