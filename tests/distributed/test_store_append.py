"""A store that grows as subjects finish: ``append_maps``, ``vbmkit preprocess --store`` and a study
with ``glm.store`` (the per-subject pipeline is the stand-in of :mod:`tests.distributed.fake_pipeline`)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.distributed.fake_pipeline import fake_run_one
from vbmkit.cli.main import app
from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError, ImageError
from vbmkit.io.nifti import load_map
from vbmkit.io.store import append_maps, create_store, open_store, write_store
from vbmkit.space import Grid
from vbmkit.workflows.preprocess import run as wf
from vbmkit.workflows.preprocess import store_append
from vbmkit.workflows.preprocess.naming import output_paths
from vbmkit.workflows.study import run_study

runner = CliRunner()
SHAPE = (16, 17, 18)
AFFINE = np.diag([1.5, 1.5, 1.5, 1.0])


def _map(path, seed: int, shape=SHAPE) -> None:
    data = np.random.default_rng(seed).uniform(0.2, 0.9, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))


def _values(path, mask):
    return load_map(path, warn=False).data.numpy()[mask]


def test_append_maps_appends_skips_replaces_and_checks(tmp_path):
    paths = [tmp_path / f"m{i}.nii.gz" for i in range(3)]
    for i, p in enumerate(paths):
        _map(p, i)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:12, 3:14, 4:15] = True
    create_store(tmp_path / "store", grid=Grid(SHAPE, AFFINE), mask=mask, subject_chunk=2, voxel_chunk=100)
    assert open_store(tmp_path / "store").shape == (0, int(mask.sum()))

    assert append_maps(tmp_path / "store", [("a", paths[0]), ("b", paths[1])]) == \
        {"appended": 2, "replaced": 0, "unchanged": 0}
    assert append_maps(tmp_path / "store", [("a", paths[0]), ("b", paths[1]), ("c", paths[2])]) == \
        {"appended": 1, "replaced": 0, "unchanged": 2}
    _map(paths[1], 99)  # subject b made again: its row is replaced, not added
    assert append_maps(tmp_path / "store", [("b", paths[1])]) == {"appended": 0, "replaced": 1, "unchanged": 0}
    store = open_store(tmp_path / "store")
    assert store.subjects == ["a", "b", "c"] and store.shape == (3, int(mask.sum()))
    block = store.block(0, store.shape[1])
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(block[k], _values(p, mask))

    # an append cut short after its rows, before the subject list: the extra row is not part of the store
    import zarr

    zarr.open_group(str(tmp_path / "store"), mode="r+")["data"].append(np.ones((1, int(mask.sum())), "f4"), axis=0)
    assert open_store(tmp_path / "store").shape == (3, int(mask.sum()))
    _map(tmp_path / "d.nii.gz", 7)
    append_maps(tmp_path / "store", [("d", tmp_path / "d.nii.gz")])
    store = open_store(tmp_path / "store")
    np.testing.assert_array_equal(store.block(0, store.shape[1])[3], _values(tmp_path / "d.nii.gz", mask))

    # the same values as a store written in one pass with the same mask
    write_store([*paths, tmp_path / "d.nii.gz"], tmp_path / "whole", mask=mask, subjects=["a", "b", "c", "d"])
    whole = open_store(tmp_path / "whole")
    np.testing.assert_array_equal(whole.block(0, whole.shape[1]), store.block(0, store.shape[1]))

    _map(tmp_path / "small.nii.gz", 1, shape=(8, 8, 8))
    with pytest.raises(ImageError, match=r"small.nii.gz: expected the grid of store .* \(16, 17, 18\); got \(8, 8, 8\)"):
        append_maps(tmp_path / "store", [("e", tmp_path / "small.nii.gz")])
    bad = np.random.default_rng(0).uniform(0.2, 0.9, SHAPE).astype(np.float32)
    bad[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(bad, AFFINE), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(ImageError, match="nan.nii.gz: expected finite values inside the store's mask; 1 NaN"):
        append_maps(tmp_path / "store", [("e", tmp_path / "nan.nii.gz")])
    with pytest.raises(ConfigError, match="expected distinct subject IDs to append"):
        append_maps(tmp_path / "store", [("e", paths[0]), ("e", paths[1])])
    assert open_store(tmp_path / "store").subjects == ["a", "b", "c", "d"]


def test_template_store_mask_holds_the_template_tissue():
    from vbmkit.io.templates import load_shooting_template

    mask = store_append.template_store_mask()
    template = load_shooting_template()
    tissue = (template.data[0] + template.data[1]).numpy()
    assert mask.shape == tuple(template.grid.shape)
    assert mask[tissue > 0.05].all() and mask.sum() < mask.size * 0.6


@pytest.fixture
def small_grid(monkeypatch):
    """The stand-in pipeline writes maps on the input's grid: the store is made on that grid."""
    monkeypatch.setattr(wf, "_run_one", fake_run_one)
    monkeypatch.setattr(store_append, "output_grid", lambda: (Grid(SHAPE, AFFINE), AFFINE))
    monkeypatch.setattr(store_append, "template_store_mask", lambda: np.ones(SHAPE, dtype=bool))


def _t1s(folder, n: int):
    folder.mkdir(parents=True)
    for i in range(n):
        data = np.random.default_rng(i).uniform(1, 100, size=SHAPE).astype(np.float32)
        nib.save(nib.Nifti1Image(data, AFFINE), folder / f"sub-{i + 1:02d}.nii.gz")
    return folder


def test_preprocess_appends_each_finished_subject(tmp_path, small_grid):
    inputs = _t1s(tmp_path / "t1", 3)
    settings = PreprocessConfig()
    summary = wf.run_preprocess([inputs], tmp_path / "out", settings, device="cpu", progress=False,
                                store=tmp_path / "store", store_map="s6mwp1")
    assert summary.store == {"appended": 3, "replaced": 0, "unchanged": 0, "path": str(tmp_path / "store")}
    store = open_store(tmp_path / "store")
    assert store.subjects == ["sub-01", "sub-02", "sub-03"]
    block = store.block(0, store.shape[1])
    for k, name in enumerate(store.subjects):
        np.testing.assert_array_equal(block[k], _values(output_paths(tmp_path / "out", name, settings)["s6mwp1"],
                                                        store.mask))
    # a rerun skips the subjects and finds them in the store; a new subject is appended
    _t1s(tmp_path / "more", 4)
    (tmp_path / "more" / "sub-04.nii.gz").rename(inputs / "sub-04.nii.gz")
    res = runner.invoke(app, ["preprocess", str(inputs), "--out", str(tmp_path / "out"), "--store",
                              str(tmp_path / "store"), "-q"])
    assert res.exit_code == 0, res.output
    assert "1 maps appended, 0 replaced, 3 already there" in res.output
    assert open_store(tmp_path / "store").subjects == ["sub-01", "sub-02", "sub-03", "sub-04"]
    with pytest.raises(ConfigError, match=r"store map: expected one of .*; got 's8mwp1'"):
        wf.run_preprocess([inputs], tmp_path / "out", settings, device="cpu", progress=False,
                          store=tmp_path / "store", store_map="s8mwp1")


def test_study_with_glm_store_grows_the_store_and_fits_from_it(tmp_path, small_grid):
    _t1s(tmp_path / "t1", 8)
    rows = ["participant_id,age"] + [f"sub-{i + 1:02d},{20 + 5 * i}" for i in range(8)]
    (tmp_path / "participants.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "study.yaml").write_text(
        "name: grown\ninputs:\n  t1: [t1]\n  covariates: participants.csv\npreprocess:\n  fwhm: [6]\n"
        "glm:\n  maps: s6mwp1\n  store: store\n  formula: age\n  contrasts:\n    age: age\n  subsamples: 0\n")
    run_study(tmp_path / "study.yaml")
    store = open_store(tmp_path / "store")
    assert store.shape[0] == 8
    summary = json.loads((tmp_path / "grown_out" / "glm" / "summary.json").read_text())
    assert summary["store"] == str(tmp_path / "store") and summary["n_subjects"] == 8
    assert (tmp_path / "grown_out" / "glm" / "age" / "t.nii.gz").is_file()
