"""The whole classic pipeline on a small template-derived phantom (and one real subject).

The phantom is a T1-like image made from Template_4_GS's tissue maps (WM bright, GM mid, CSF
dark), placed on a flipped, anisotropic 2 mm subject grid with a 5 % scaling and a small
rotation, so the known GM volume and the expected outputs are exact up to interpolation.
"""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from vbmkit.config import PreprocessConfig
from vbmkit.io.templates import load_shooting_template, output_grid
from vbmkit.space import Grid, resample
from vbmkit.workflows.preprocess import run_preprocess


def make_phantom(path):
    """Write the phantom (LAS on disk); return its true GM and TIV in mL and its stored affine."""
    t = load_shooting_template()
    gm, wm, rest = t.data[0], t.data[1], t.data[2]
    brain = (gm + wm) > 0.1  # 1,867 mL, close to the 1,852 mL of Template_05mm_bet > 0
    csf = rest * brain
    t1 = 0.3 * csf + 0.65 * gm + 1.0 * wm
    # subject grid: 2 x 2.2 x 1.8 mm, LAS on disk; subject = 1.05 x rotated template
    c, s = np.cos(0.08), np.sin(0.08)
    tmpl_to_subj = np.eye(4)
    tmpl_to_subj[:3, :3] = 1.05 * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    tmpl_to_subj[:3, 3] = [3.0, -5.0, 4.0]
    shape = (96, 100, 112)
    aff = np.diag([2.0, 2.2, 1.8, 1.0])
    aff[:3, 3] = -0.5 * (np.array(shape) - 1) * np.array([2.0, 2.2, 1.8]) + [0, -10, 10]
    grid = Grid(shape, aff)
    data = resample(torch.stack([t1, gm, brain.float()])[None], t.grid, grid,
                    target_to_source_mm=np.linalg.inv(tmpl_to_subj))[0]
    gen = torch.Generator().manual_seed(0)
    image = (data[0] + 0.02 * torch.randn(shape, generator=gen)).clamp_min(0) * 1000
    image[data[0] < 0.02] = 0  # skull-stripped, as ds002748
    stored = aff.copy()
    stored[0, 0] = -2.0
    stored[0, 3] = aff[0, 3] + (shape[0] - 1) * 2.0  # LAS: same world grid, first axis flipped
    nib.save(nib.Nifti1Image(image.numpy()[::-1].astype(np.float32), stored), str(path))
    vox = grid.voxel_volume_ml
    return {"gm": float(data[1].sum()) * vox, "tiv": float(data[2].sum()) * vox}, stored


@pytest.mark.slow
def test_pipeline_on_phantom(tmp_path):
    truth, stored = make_phantom(tmp_path / "phantom.nii.gz")
    out = tmp_path / "out"
    settings = PreprocessConfig(segmentation_resolution_mm=2.0, skull_strip="never", fwhm=[6.0, 4.0],
                                save_deformation=True)
    summary = run_preprocess([tmp_path / "phantom.nii.gz"], out, settings, device="cpu", progress=False)
    assert summary.ok, summary.failed
    rep = json.loads((out / "phantom" / "report" / "phantom.json").read_text())
    # volumes: TIV within 10 % (the mask takes the noisy partial-volume rim, ~6 %); GM within
    # 40 %: on a 2 mm phantom most GM voxels are GM/WM or GM/CSF mixtures (segmentation accuracy
    # itself is tested on 1 mm phantoms in tests/preprocess)
    assert rep["volumes_ml"]["tiv"] == pytest.approx(truth["tiv"], rel=0.10)
    assert rep["volumes_ml"]["gm"] == pytest.approx(truth["gm"], rel=0.40)
    assert rep["volumes_ml"]["tiv"] == pytest.approx(
        rep["volumes_ml"]["gm"] + rep["volumes_ml"]["wm"] + rep["volumes_ml"]["csf"], rel=1e-6)
    q = rep["quality"]
    assert q["folded_voxels"] == 0 and q["jacobian_min"] > 0
    # push modulation (the default) keeps the native GM volume up to what leaves the template's view
    assert q["modulation"] == "push" and abs(q["volume_preservation_gm"] - 1) < 1e-3
    assert q["brain_folded_voxels"] == 0 and 0 < q["brain_jacobian_p0.5_rel"] <= 1 <= q["brain_jacobian_p99.5_rel"]
    assert q["bending_energy"] > 0 and q["elastic_energy"] > 0
    # the phantom's scaling 1.05^3, +7 % because its mask is wider than the template's
    assert q["affine_determinant"] == pytest.approx(1.05 ** 3, rel=0.12)
    for key in ("load", "brain_mask", "affine", "segment", "nonlinear", "total"):
        assert rep["timings_s"][key] >= 0
    # native maps on the input's stored grid; warped maps on Template_4_GS's stored grid
    p1 = nib.load(str(out / "phantom" / "mri" / "p1phantom.nii.gz"))
    np.testing.assert_allclose(p1.affine, stored, atol=1e-4)
    assert p1.shape == (96, 100, 112)
    grid, tmpl_affine = output_grid()
    for key in ("mwp1", "mwp2", "s6mwp1", "s4mwp2"):
        img = nib.load(str(out / "phantom" / "mri" / f"{key}phantom.nii.gz"))
        assert img.shape == (113, 137, 113)
        np.testing.assert_allclose(img.affine, tmpl_affine, atol=1e-4)
    y = nib.load(str(out / "phantom" / "mri" / "y_phantom.nii.gz"))
    assert y.shape == (113, 137, 113, 1, 3)
    # the warped GM looks like the template GM
    mwp1 = np.asarray(nib.load(str(out / "phantom" / "mri" / "mwp1phantom.nii.gz")).dataobj)
    tmpl_gm = load_shooting_template().data[0].numpy()[::-1]  # RAS -> LAS as stored
    assert np.corrcoef(mwp1.ravel(), tmpl_gm.ravel())[0, 1] > 0.8
    rows = (out / "volumes.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("phantom,")
    # a rerun finds everything finished
    again = run_preprocess([tmp_path / "phantom.nii.gz"], out, settings, device="cpu", progress=False)
    assert again.skipped == ["phantom"] and not again.done


@pytest.mark.realdata
@pytest.mark.slow
def test_pipeline_on_one_real_subject(tmp_path, shared_data):
    torch.set_num_threads(2)
    path = shared_data / "ds002748" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    summary = run_preprocess([path], tmp_path, PreprocessConfig(), device="cpu", progress=False)
    assert summary.ok, summary.failed
    rep = summary.reports["sub-01_T1w"]
    assert 1100 < rep["volumes_ml"]["tiv"] < 2000
    assert rep["quality"]["folded_voxels"] == 0
    assert abs(rep["quality"]["volume_preservation_gm"] - 1) < 0.02
    p0 = nib.load(str(tmp_path / "sub-01_T1w" / "mri" / "p0sub-01_T1w.nii.gz"))
    src = nib.load(str(path))
    assert p0.shape == src.shape and nib.aff2axcodes(p0.affine) == nib.aff2axcodes(src.affine)
