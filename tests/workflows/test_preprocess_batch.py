"""Batch logic of vbmkit.workflows.preprocess with the per-subject pipeline replaced by a fake:
resume, settings hash, errors.csv, volumes.csv. The real pipeline is in test_preprocess_e2e.py."""

import csv

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError
from vbmkit.io.records import write_report
from vbmkit.workflows.preprocess import run as wf
from vbmkit.workflows.preprocess.naming import output_paths, settings_hash
from vbmkit.workflows.preprocess.steps import (
    PRIOR_REGISTRATION,
    REGISTRATION_LAMBDAS,
    prior_registration_levels,
    registration_levels,
)


def write_t1(path, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(1, 100, size=(17, 18, 19)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.2, 0.9, 1.0])), path)
    return path


class FakeSubject:
    """Writes every output file and a report like the real pipeline, after the real input checks."""

    def __init__(self):
        self.calls = []

    def __call__(self, t1, out, settings, *, device="cpu", progress=None):
        from vbmkit.workflows.preprocess.steps import load_t1

        self.calls.append(t1.name)
        native = load_t1(t1.path)  # the real validation: broken inputs fail here
        paths = output_paths(out, t1.name, settings)
        for key, p in paths.items():
            if key != "report":
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b"x")
        report = {"name": t1.name, "input": str(t1.path), "settings_hash": settings_hash(settings),
                  "volumes_ml": {"tiv": 1500.0, "gm": 700.0, "wm": 500.0, "csf": 300.0},
                  "volumes_fraction": {"gm": 0.47, "wm": 0.33, "csf": 0.2},
                  "quality": {"warp_mse": 0.01, "folded_voxels": 0, "volume_preservation_gm": 1.0},
                  "timings_s": {"total": float(native.data.shape[0])}}
        write_report(paths["report"], report)
        return report


@pytest.fixture
def fake(monkeypatch):
    f = FakeSubject()
    monkeypatch.setattr(wf, "preprocess_subject", f)
    return f


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_batch_errors_volumes_and_resume(tmp_path, fake):
    inp = tmp_path / "in"
    inp.mkdir()
    write_t1(inp / "s1.nii.gz", 1)
    write_t1(inp / "s2.nii", 2)
    (inp / "broken.nii.gz").write_bytes(b"abc")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), inp / "four_d.nii.gz")
    out = tmp_path / "out"
    settings = PreprocessConfig()

    summary = wf.run_preprocess([inp], out, settings, device="cpu", progress=False)
    assert sorted(summary.done) == ["s1", "s2"] and not summary.ok
    errors = read_csv(out / "errors.csv")
    assert [e["name"] for e in errors] == ["broken", "four_d"]
    assert "only 3 bytes" in errors[0]["reason"] and errors[0]["path"].endswith("broken.nii.gz")
    assert "expected a 3-D image" in errors[1]["reason"]
    rows = read_csv(out / "volumes.csv")
    assert [r["name"] for r in rows] == ["s1", "s2"]
    assert float(rows[0]["tiv_ml"]) == 1500.0 and rows[0]["folded_voxels"] == "0"

    fake.calls.clear()
    again = wf.run_preprocess([inp], out, settings, device="cpu", progress=False)
    assert sorted(again.skipped) == ["s1", "s2"] and sorted(fake.calls) == ["broken", "four_d"]
    assert len(read_csv(out / "volumes.csv")) == 2  # skipped subjects keep their rows

    # a missing output or other settings: the subject is redone
    (out / "s1" / "mri" / "mwp1s1.nii.gz").unlink()
    fake.calls.clear()
    wf.run_preprocess([inp / "s1.nii.gz", inp / "s2.nii"], out, settings, device="cpu", progress=False)
    assert fake.calls == ["s1"]
    fake.calls.clear()
    other = PreprocessConfig(fwhm=[4.0, 8.0])
    res = wf.run_preprocess([inp / "s1.nii.gz"], out, other, device="cpu", progress=False)
    assert fake.calls == ["s1"] and res.ok
    assert (out / "s1" / "mri" / "s4mwp1s1.nii.gz").is_file()
    assert read_csv(out / "errors.csv") == []  # rewritten for this run: no stale errors


def test_jobs_does_not_change_the_hash_and_engine_check():
    assert settings_hash(PreprocessConfig(jobs=1)) == settings_hash(PreprocessConfig(jobs=4))
    assert settings_hash(PreprocessConfig()) != settings_hash(PreprocessConfig(fwhm=[8.0]))
    # a setting added later (hashed only when it leaves its default) still redoes subjects when changed
    assert settings_hash(PreprocessConfig()) != settings_hash(PreprocessConfig(registration_iterations=[40, 30, 0]))
    assert settings_hash(PreprocessConfig()) != settings_hash(PreprocessConfig(registration="demons"))
    assert settings_hash(PreprocessConfig()) != settings_hash(PreprocessConfig(modulation="pull"))
    with pytest.raises(ConfigError, match="engine 'deepmriprep'.*use engine 'classic'"):
        wf.run_preprocess(["x.nii"], "out", PreprocessConfig(engine="deepmriprep"), progress=False)


def test_output_paths_follow_cat12_names(tmp_path):
    p = output_paths(tmp_path, "sub-01_T1w", PreprocessConfig(fwhm=[6.0, 4.5], save_deformation=True))
    names = {k: v.relative_to(tmp_path).as_posix() for k, v in p.items()}
    assert names["p0"] == "sub-01_T1w/mri/p0sub-01_T1w.nii.gz"
    assert names["mwp2"] == "sub-01_T1w/mri/mwp2sub-01_T1w.nii.gz"
    assert names["s6mwp1"] == "sub-01_T1w/mri/s6mwp1sub-01_T1w.nii.gz"
    assert names["s4.5mwp2"] == "sub-01_T1w/mri/s4.5mwp2sub-01_T1w.nii.gz"
    assert names["y"] == "sub-01_T1w/mri/y_sub-01_T1w.nii.gz"
    assert names["report"] == "sub-01_T1w/report/sub-01_T1w.json"


def test_parallel_jobs_list_broken_inputs(tmp_path):
    # real worker processes (spawn): inputs that fail the checks fail fast, in the children
    (tmp_path / "a.nii").write_bytes(b"not an image at all, but more than a hundred bytes " * 3)
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)), tmp_path / "empty.nii.gz")
    out = tmp_path / "out"
    summary = wf.run_preprocess([tmp_path / "a.nii", tmp_path / "empty.nii.gz"], out,
                                PreprocessConfig(jobs=2), device="cpu", progress=False)
    assert sorted(summary.failed) == ["a", "empty"]
    assert "a.nii: expected a NIfTI image; the file has only 153 bytes" in summary.failed["a"]
    assert "every voxel is 0 (empty image)" in summary.failed["empty"]
    assert [r["name"] for r in read_csv(out / "errors.csv")] == ["a", "empty"]


def test_registration_levels_follow_the_method_and_skip_empty_levels():
    lam = REGISTRATION_LAMBDAS
    # variational: the 1.5 mm level compares images at 1.5 mm with a velocity on the 3 mm grid
    assert registration_levels(PreprocessConfig()) == [(4, 4, 40, lam[0]), (2, 2, 30, lam[1]), (1, 2, 25, lam[2])]
    assert registration_levels(PreprocessConfig(registration="demons")) == [
        (4, 4, 40, lam[0]), (2, 2, 30, lam[1]), (1, 1, 10, lam[2])]
    fast = PreprocessConfig(registration_iterations=[40, 30, 0])  # the demo's profile: no 1.5 mm level
    assert registration_levels(fast) == [(4, 4, 40, lam[0]), (2, 2, 30, lam[1])]
    with pytest.raises(ValidationError, match="expected 3 non-negative counts"):
        PreprocessConfig(registration_iterations=[0, 0, 0])


def test_prior_registration_skips_the_levels_the_final_registration_skips():
    assert prior_registration_levels(PreprocessConfig()) == PRIOR_REGISTRATION
    assert [f for f, _ in PRIOR_REGISTRATION] == [4, 2, 1]  # 6, 3 and 1.5 mm
    fast = PreprocessConfig(registration_iterations=[40, 30, 0])  # the demo's profile
    assert prior_registration_levels(fast) == PRIOR_REGISTRATION[:2]
    assert prior_registration_levels(PreprocessConfig(registration_iterations=[0, 30, 25])) == PRIOR_REGISTRATION[1:]


def test_gpu_jobs_share_a_gpu_as_far_as_its_memory_holds():
    assert wf.gpu_jobs(4, None) == 4  # free memory unknown: as asked
    assert wf.gpu_jobs(4, 100 * wf.GPU_BYTES_PER_JOB) == 4
    assert wf.gpu_jobs(4, 2 * wf.GPU_BYTES_PER_JOB + 1) == 2
    assert wf.gpu_jobs(4, 10) == 1  # never fewer than one
