"""``run_roi(native=True)``: atlas carried into native space through a y_ field (phantoms)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import ImageError
from vbmkit.io.atlas import load_deformation
from vbmkit.io.nifti import save_volume
from vbmkit.io.records import save_deformation
from vbmkit.space import Grid
from vbmkit.workflows.roi import run_roi

T_SHAPE = (7, 8, 9)
T_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])                     # template grid, RAS, 2 mm
N_SHAPE = (12, 11, 10)
N_AFFINE = np.array([[-1.1, 0, 0, 14.0], [0, 1.3, 0, -1.0], [0, 0, 1.2, 0.5], [0, 0, 0, 1]])  # LAS native
# template mm -> native mm (what y_ holds): a scaling and shift, the "subject" is 10 % larger
M = np.array([[1.1, 0, 0, 0.3], [0, 1.05, 0.02, -0.4], [0, 0, 0.95, 0.2], [0, 0, 0, 1]])
DV_NATIVE = 1.1 * 1.3 * 1.2 / 1000.0


def _setup(tmp_path):
    labels = np.zeros(T_SHAPE)
    labels[:3] = 1
    labels[4:, :4] = 2
    save_volume(tmp_path / "atl.nii.gz", labels, T_AFFINE, dtype=np.uint8)
    (tmp_path / "atl_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lA,Left A,left\n2,rB,Right B,right\n")
    rng = np.random.default_rng(1)
    mri = tmp_path / "prep" / "s1" / "mri"
    p1, p2 = rng.uniform(0, 1, N_SHAPE).astype(np.float32), rng.uniform(0, 1, N_SHAPE).astype(np.float32)
    save_volume(mri / "p1s1.nii.gz", p1, N_AFFINE)
    save_volume(mri / "p2s1.nii.gz", p2, N_AFFINE)
    save_volume(mri / "mwp1s1.nii.gz", np.ones(T_SHAPE), T_AFFINE)
    save_volume(mri / "mwp2s1.nii.gz", np.ones(T_SHAPE), T_AFFINE)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in T_SHAPE], indexing="ij"), -1).astype(float)
    mm = ijk @ (M @ T_AFFINE)[:3, :3].T + (M @ T_AFFINE)[:3, 3]
    save_deformation(mri / "y_s1.nii.gz", mm, T_AFFINE, orientation_of=np.diag([-2.0, 2, 2, 1]))
    # expected: every native voxel -> template voxel (exact affine inverse) -> label
    nijk = np.stack(np.meshgrid(*[np.arange(n) for n in N_SHAPE], indexing="ij"), -1).astype(float)
    to_t = np.linalg.inv(M @ T_AFFINE) @ N_AFFINE
    t = nijk @ to_t[:3, :3].T + to_t[:3, 3]
    v = np.floor(t + 0.5).astype(int)
    inside = np.all((t > -0.5) & (t < np.array(T_SHAPE) - 0.5), axis=-1)
    lab = np.zeros(N_SHAPE, dtype=int)
    lab[inside] = labels[v[inside][:, 0], v[inside][:, 1], v[inside][:, 2]]
    # labels and maps are both in stored (LAS) voxel order here; the workflow works in RAS: the
    # sums do not depend on the voxel order
    expected = {(rid, t): float(m[lab == rid].astype(np.float64).sum()) * DV_NATIVE
                for rid in (1, 2) for t, m in (("gm", p1), ("wm", p2))}
    return expected


def test_deformation_reads_back_in_ras(tmp_path):
    _setup(tmp_path)
    field, grid = load_deformation(tmp_path / "prep" / "s1" / "mri" / "y_s1.nii.gz")
    assert grid.matches(Grid(T_SHAPE, T_AFFINE))
    np.testing.assert_allclose(field[2, 3, 4].numpy(), (M @ T_AFFINE @ [2, 3, 4, 1])[:3], atol=1e-5)


def test_native_volumes_equal_hand_count(tmp_path):
    expected = _setup(tmp_path)
    summary = run_roi([tmp_path / "prep"], out=tmp_path / "roi", atlas=str(tmp_path / "atl.nii.gz"),
                      native=True, progress=False)
    assert summary["space"] == "native"
    long = pd.read_csv(tmp_path / "roi" / "roi_long.csv").set_index(["region_id", "tissue"])["volume_ml"]
    for key, value in expected.items():
        assert value > 0
        assert abs(long[key] - value) < 1e-6


def test_native_needs_p_maps_and_deformation(tmp_path):
    _setup(tmp_path)
    (tmp_path / "prep" / "s1" / "mri" / "y_s1.nii.gz").unlink()
    with pytest.raises(ImageError, match=r"--native: expected .*y_s1.nii\[.gz\] beside mwp1s1.nii.gz"):
        run_roi([tmp_path / "prep"], out=tmp_path / "roi", atlas=str(tmp_path / "atl.nii.gz"),
                native=True, progress=False)
