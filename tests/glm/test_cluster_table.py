"""clusters.csv: three sub-peaks per cluster > 8 mm apart, each with t, Z, p, q, FWE p, MNI mm and regions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage
import scipy.stats

from vbmkit.config import GlmConfig
from vbmkit.io.atlas import load_atlas, region_at_mm
from vbmkit.stats.inference import fdr_q
from vbmkit.workflows.glm import CLUSTER_COLUMNS, run_glm
from vbmkit.workflows.glm.cluster_table import ClusterRow, atlas_lookups, cluster_table

# 2 mm voxels, x flipped; voxel (10, 20, 15) is MNI (-30, -20, -15): the left hippocampus
AFFINE = np.array([[-2.0, 0, 0, -10.0], [0, 2.0, 0, -60.0], [0, 0, 2.0, -45.0], [0, 0, 0, 1.0]])


def _blob(shape, centre, height, sigma=1.0):
    d2 = sum((np.indices(shape)[a] - centre[a]) ** 2 for a in range(3))
    return height * np.exp(-d2 / (2 * sigma ** 2))


def test_table_rows_peaks_and_columns():
    shape = (24, 30, 26)
    # cluster 1: blobs at (10, 20, 15) and 5 voxels = 10 mm away; cluster 2 (negative) far away
    stat = _blob(shape, (10, 20, 15), 6.0) + _blob(shape, (15, 20, 15), 5.0) - _blob(shape, (10, 8, 6), 4.0)
    labels = np.zeros(shape, np.int32)
    labels[stat > 0.05] = 1
    labels[stat < -0.05] = -1
    df = (1.0, 18.0)
    p = scipy.stats.t.sf(stat, df[1])
    q = fdr_q(p.ravel()).reshape(shape)
    p_fwe = np.linspace(0.01, 1, stat.size).reshape(shape)
    rows = [ClusterRow(label=1, size_voxels=int((labels == 1).sum()), p_fwe_cluster=0.02, p_fwe_mass=0.01),
            ClusterRow(label=-1, size_voxels=int((labels == -1).sum()), p_fwe_cluster=0.3, p_fwe_mass=0.4)]
    table = cluster_table(stat, labels, rows, affine=AFFINE, kind="t", df=df,
                          maps={"p": p, "q_fdr": q, "p_fwe": p_fwe, "p_fwe_tfce": None}, lookups=atlas_lookups())
    assert list(table.columns) == CLUSTER_COLUMNS
    assert list(zip(table["cluster"], table["peak"], strict=True)) == [(1, 1), (1, 2), (2, 1)]
    first, second, neg = (table.iloc[k] for k in range(3))
    assert (first["peak_x_mm"], first["peak_y_mm"], first["peak_z_mm"]) == (-30.0, -20.0, -15.0)
    assert second["peak_x_mm"] == -40.0  # 5 voxels of -2 mm
    assert first["peak_value"] == pytest.approx(stat[10, 20, 15], abs=1e-4)
    assert neg["peak_value"] == pytest.approx(-4.0, abs=1e-3)
    # Z: the normal quantile of the one-sided t p (1e-4: rounding of the table)
    assert first["z"] == pytest.approx(scipy.stats.norm.isf(scipy.stats.t.sf(first["peak_value"], 18)), abs=1e-4)
    assert neg["z"] < 0
    assert first["p"] == p[10, 20, 15] and first["q_fdr"] == q[10, 20, 15] and second["p_fwe"] == p_fwe[15, 20, 15]
    assert np.isnan(first["p_fwe_tfce"])
    assert (table.loc[table["cluster"] == 1, "p_fwe_cluster"] == 0.02).all()  # repeated on each peak row
    assert first["size_voxels"] == second["size_voxels"] == rows[0].size_voxels
    assert first["size_ml"] == pytest.approx(rows[0].size_voxels * 8 / 1000)
    # regions: the atlases' own lookup at the peak; the hippocampus in both atlases
    for name in ("lpba40", "neuromorphometrics"):
        assert first[f"{name}_region"] == region_at_mm(load_atlas(name), (-30.0, -20.0, -15.0))
    assert "Hippocampus" in first["neuromorphometrics_region"]
    assert first["lpba40_region"] != ""


def test_close_blobs_give_one_peak():
    shape = (24, 30, 26)
    stat = _blob(shape, (10, 20, 15), 6.0) + _blob(shape, (13, 20, 15), 5.0)  # 6 mm apart
    labels = (stat > 0.05).astype(np.int32)
    table = cluster_table(stat, labels, [ClusterRow(label=1, size_voxels=int(labels.sum()))], affine=AFFINE,
                          kind="t", df=(1, 18), maps={}, lookups={})
    assert len(table) == 1 and table["peak"].tolist() == [1]
    assert table[["p", "q_fdr", "p_fwe", "p_fwe_cluster"]].isna().all().all()  # no maps given: empty


SHAPE = (16, 9, 8)
WORLD = np.array([[2.0, 0, 0, -16.0], [0, 2.0, 0, -8.0], [0, 0, 2.0, -8.0], [0, 0, 0, 1.0]])
N = 14


@pytest.fixture(scope="module")
def two_blob_run(tmp_path_factory):
    """A negative age effect made of two blobs 10 mm apart in one cluster; tail both, TFCE."""
    root = tmp_path_factory.mktemp("peaks")
    rng = np.random.default_rng(5)
    age = np.linspace(20, 80, N)
    effect = -(_blob(SHAPE, (4, 4, 4), 1.0) + _blob(SHAPE, (9, 4, 4), 0.8)) * 0.004
    for i in range(N):
        noise = scipy.ndimage.gaussian_filter(rng.standard_normal(SHAPE), 0.7) * 0.01
        data = 0.5 + effect * (age[i] - 50) + noise
        nib.save(nib.Nifti1Image(data.astype(np.float32), WORLD), str(root / f"s6mwp1sub-{i + 1:02d}.nii.gz"))
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    settings = GlmConfig(formula="age", contrasts={"age": "age"}, subsamples=0, permutations=10, tfce=True,
                         tail="both", cluster_p=0.01, mask_threshold=0.0, device="cpu")
    out = root / "glm"
    summary = run_glm([str(root / "s6mwp1sub-*.nii.gz")], root / "participants.tsv", id_column="participant_id",
                      settings=settings, out=out, progress=False)
    return out, summary


def test_workflow_table_has_sub_peaks_and_tail_values(two_blob_run):
    out, summary = two_blob_run
    table = pd.read_csv(out / "age" / "clusters.csv")
    assert list(table.columns) == CLUSTER_COLUMNS
    top = table[table["cluster"] == 1]
    assert top["peak"].tolist() == [1, 2] and (top["peak_value"] < 0).all()
    xyz = top[["peak_x_mm", "peak_y_mm", "peak_z_mm"]].to_numpy()
    assert np.linalg.norm(xyz[0] - xyz[1]) >= 8.0
    assert xyz[0].tolist() == [-8.0, 0.0, 0.0]  # voxel (4, 4, 4)
    df2 = summary["contrasts"]["age"]["df"][1]
    t = top["peak_value"].to_numpy()
    # tail both: two-sided p of t (rtol 1e-3: t rounded to 1e-4 in the table)
    np.testing.assert_allclose(top["p"], 2 * scipy.stats.t.sf(np.abs(t), df2), rtol=1e-3)
    mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj) > 0
    t_map = np.asarray(nib.load(str(out / "age" / "t.nii.gz")).dataobj).astype(np.float64)
    q = fdr_q(2 * scipy.stats.t.sf(np.abs(t_map[mask]), df2))
    q_grid = np.ones(SHAPE)
    q_grid[mask] = q
    ijk = [tuple(int(v) for v in np.rint(np.linalg.solve(WORLD, [*x, 1.0])[:3])) for x in xyz]
    # 1e-5: t read back from float32
    np.testing.assert_allclose(top["q_fdr"], [q_grid[i] for i in ijk], rtol=1e-5)
    p_fwe = np.asarray(nib.load(str(out / "age" / "p_fwe.nii.gz")).dataobj)
    p_tfce = np.asarray(nib.load(str(out / "age" / "p_fwe_tfce.nii.gz")).dataobj)
    np.testing.assert_allclose(top["p_fwe"], [p_fwe[i] for i in ijk], rtol=1e-6)
    np.testing.assert_allclose(top["p_fwe_tfce"], [p_tfce[i] for i in ijk], rtol=1e-6)
    assert top["p_fwe_cluster"].nunique() == 1 and 0 < top["p_fwe_cluster"].iloc[0] <= 1
