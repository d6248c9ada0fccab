"""SPM12 results (spmT with df, con, SPM.mat v6 and v7.3, TFCE) and segmentation outputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from tests.fixtures.foreign_writers import write_stat_map
from vbmkit.errors import ImageError
from vbmkit.io.spm import (
    SpmError,
    find_results,
    find_segmentations,
    parse_descrip,
    read_spm_mat,
    read_stat_map,
)

AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])  # SPM's 2 mm MNI grid


def test_parse_descrip_t_and_f():
    h = parse_descrip("SPM{T_[38.0]} - contrast 1: age")
    assert (h.stat, h.df, h.index, h.name) == ("T", (38.0,), 1, "age")
    h = parse_descrip("SPM{F_[2.0,36.0]} - contrast 12: group effect")
    assert (h.stat, h.df, h.index, h.name) == ("F", (2.0, 36.0), 12, "group effect")
    assert parse_descrip("SPM{T_[12.5]}").df == (12.5,)
    assert parse_descrip("spm - algebra") is None


def test_stat_map_round_trip_nan_outside(tmp_path):
    data = np.zeros((7, 8, 9), dtype=np.float32)
    data[2:4, 3:5, 4:6] = 3.5
    data[0, 0, 0] = np.nan  # SPM writes NaN outside the analysis mask
    write_stat_map(tmp_path / "spmT_0002.nii", data, AFFINE, df=38, index=2, name="-age")
    m = read_stat_map(tmp_path / "spmT_0002.nii")
    assert m.df == 38.0 and m.header.name == "-age" and m.header.index == 2
    assert float(m.volume.data.max()) == 3.5
    assert float(m.volume.data[6, 0, 0]) == 0.0  # the NaN voxel (x is flipped to RAS on reading)
    assert np.isfinite(m.volume.data.numpy()).all()


def test_stat_map_without_spm_header_warns(tmp_path):
    from vbmkit.io.nifti import save_volume

    save_volume(tmp_path / "t.nii.gz", np.ones((7, 8, 9)), AFFINE)
    with pytest.warns(UserWarning, match="degrees of freedom unknown"):
        m = read_stat_map(tmp_path / "t.nii.gz")
    assert m.df is None


def _xcon(names, stats):
    arr = np.zeros((1, len(names)), dtype=[("name", "O"), ("STAT", "O")])
    for i, (n, s) in enumerate(zip(names, stats, strict=True)):
        arr[0, i] = (n, s)
    return arr


def test_spm_mat_v6(tmp_path):
    path = tmp_path / "SPM.mat"
    scipy.io.savemat(path, {"SPM": {"xCon": _xcon(["age", "-age", "group"], ["T", "T", "F"]),
                                    "xX": {"erdf": 37.0}}}, format="5")
    info = read_spm_mat(path)
    assert info["format"] == "v6" and info["erdf"] == 37.0
    assert [(c["index"], c["name"], c["stat"]) for c in info["contrasts"]] == [
        (1, "age", "T"), (2, "-age", "T"), (3, "group", "F")]


def write_mat73(path, names, stats, erdf):
    """An SPM.mat as MATLAB -v7.3 writes it: HDF5 with a 512-byte 'MATLAB 7.3' user block,
    struct fields as groups, strings as uint16 arrays behind object references."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        spm = f.create_group("SPM")
        xcon = spm.create_group("xCon")
        for field, values in (("name", names), ("STAT", stats)):
            ds = xcon.create_dataset(field, (len(values), 1), dtype=h5py.ref_dtype)
            for i, v in enumerate(values):
                chars = refs.create_dataset(f"{field}{i}", data=np.array([[ord(c)] for c in v], dtype=np.uint16))
                chars.attrs["MATLAB_class"] = np.bytes_("char")
                ds[i, 0] = chars.ref
        spm.create_group("xX").create_dataset("erdf", data=np.array([[erdf]]))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Nov 24 08:00:00 2026 HDF5 schema 1.00 .")


def test_spm_mat_v73(tmp_path):
    path = tmp_path / "SPM.mat"
    write_mat73(path, ["age", "sex M>F"], ["T", "T"], 36.0)
    info = read_spm_mat(path)
    assert info["format"] == "v7.3" and info["erdf"] == 36.0
    assert [(c["name"], c["stat"]) for c in info["contrasts"]] == [("age", "T"), ("sex M>F", "T")]


def test_spm_mat_errors(tmp_path):
    bad = tmp_path / "SPM.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(SpmError, match="expected a MATLAB MAT file"):
        read_spm_mat(bad)
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"x": 1})
    with pytest.raises(SpmError, match=r"expected a variable 'SPM'; found \['x'\]"):
        read_spm_mat(other)


def test_find_results_merges_headers_and_spm_mat(tmp_path):
    data = np.random.default_rng(0).normal(size=(7, 8, 9)).astype(np.float32)
    write_stat_map(tmp_path / "spmT_0001.nii", data, AFFINE, df=36, index=1, name="age")
    from vbmkit.io.nifti import save_volume

    save_volume(tmp_path / "spmT_0002.nii", -data, AFFINE)  # header without SPM's description
    save_volume(tmp_path / "con_0001.nii", data, AFFINE)
    save_volume(tmp_path / "TFCE_log_pFWE_0001.nii", np.sign(data) * 0.5, AFFINE)
    write_mat73(tmp_path / "SPM.mat", ["age", "-age"], ["T", "T"], 36.0)
    res = find_results(tmp_path)
    assert list(res) == [1, 2]
    assert (res[1].name, res[1].df, res[1].stat) == ("age", (36.0,), "T")
    assert res[1].con.name == "con_0001.nii" and res[1].tfce_log_pfwe.name == "TFCE_log_pFWE_0001.nii"
    assert (res[2].name, res[2].df) == ("-age", (36.0,))  # from SPM.mat
    with pytest.raises(ImageError, match="expected an SPM results folder"):
        find_results(tmp_path / "nope")


def test_find_segmentations(tmp_path):
    from vbmkit.io.nifti import save_volume

    for kind in ("c1", "c2", "c3", "wc1", "mwc1", "mwc2", "s8mwc1"):
        save_volume(tmp_path / f"{kind}sub-01_T1w.nii", np.zeros((7, 8, 9)), AFFINE)
    save_volume(tmp_path / "sub-01_T1w.nii", np.zeros((7, 8, 9)), AFFINE)  # the input T1
    found = find_segmentations(tmp_path)
    assert list(found) == ["sub-01_T1w"]
    assert set(found["sub-01_T1w"].maps) == {"c1", "c2", "c3", "wc1", "mwc1", "mwc2", "s8mwc1"}


@pytest.mark.realdata
def test_real_spm_t_map_loads_with_df(shared_data):
    m = read_stat_map(shared_data / "spm_example" / "spmMotor.nii.gz")
    assert m.header.stat == "T" and m.df == 262.0
    assert (m.header.index, m.header.name) == (3, "rightTap>leftTap")
    assert m.volume.data.shape == (79, 95, 79)
    assert np.allclose(m.volume.grid.voxel_size, 2.0)
    assert float(m.volume.data.max()) > 5  # a motor task activation, not an empty image
