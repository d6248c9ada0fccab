"""Subject maps checked before fitting (issue 11): all-zero, constant and near-empty maps are one
``Error:`` line naming the file; an outlying in-mask mean is a warning naming the file and its
robust z; a truncated .nii.gz names the file instead of printing ``Aborted.`` (glm, roi, compare)."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np

from tests.reliability.harness import Sandbox, check_cli
from tests.reliability.test_inputs_nan import _roi_args, _roi_inputs, _set, _spm_study


def _fill(value):
    def edit(data):
        data[...] = value
    return edit


def _truncate(path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])  # the header survives; the data end early


def test_glm_all_zero_map(box: Sandbox):
    _set(box.maps[2], _fill(0.0))
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-03_T1w.nii.gz: expected a tissue map with non-zero values inside the "
                    r"mask; all 504 voxels there are 0 \(an empty map\)")


def test_glm_constant_map(box: Sandbox):
    _set(box.maps[5], _fill(0.5))
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-06_T1w.nii.gz: expected values that vary inside the mask; all 504 "
                    r"voxels there are 0.5 \(a constant map\)")


def test_glm_near_empty_map(box: Sandbox):
    def edit(data):
        data[...] = 0.0
        data[1, 1, 1:5] = 0.6  # 4 of 504 voxels (0.79 %) non-zero
    _set(box.maps[7], edit)
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-08_T1w.nii.gz: expected non-zero values in at least 1 % of the 504 "
                    r"voxels inside the mask; only 4 \(0.79 %\) are non-zero \(a near-empty map\)")


def test_glm_outlying_mean_is_a_warning(box: Sandbox):
    data = _set(box.maps[3], lambda d: d.__imul__(3.0))
    out = box.root / "out"
    res = check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    lines = [line for line in res.output.splitlines() if line.startswith("Warning: ")
             and "s6mwp1sub-04_T1w.nii.gz: mean inside the mask" in line]
    assert len(lines) == 1, res.output
    assert f"mean inside the mask {data.astype(np.float64).mean():.4g}" in lines[0]
    z = float(re.search(r"robust z ([+-][\d.]+)", lines[0]).group(1))
    assert z > 5
    assert "robust z" not in res.output.replace(lines[0], "")  # no other subject flagged


def test_glm_truncated_gz(box: Sandbox):
    _truncate(box.maps[2])
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-03_T1w.nii.gz: expected a complete gzip-compressed NIfTI; the data are "
                    r"truncated or corrupt \(EOFError: ")


def test_roi_all_zero_map(box: Sandbox):
    maps, atlas, _ = _roi_inputs(box)
    _set(maps[1], _fill(0.0))
    out = box.root / "out"
    check_cli(box, "roi", _roi_args(box, atlas, out), exit_code=2, out=out,
              match=r"Error: .*mwp1sub-02_T1w.nii.gz: expected a tissue map with non-zero values inside the atlas; "
                    r"all 432 voxels there are 0")


def test_roi_truncated_gz(box: Sandbox):
    maps, atlas, _ = _roi_inputs(box)
    _truncate(maps[4])
    out = box.root / "out"
    check_cli(box, "roi", _roi_args(box, atlas, out), exit_code=2, out=out,
              match=r"Error: .*mwp1sub-05_T1w.nii.gz: expected a complete gzip-compressed NIfTI; the data are "
                    r"truncated or corrupt")


def test_compare_truncated_gz(box: Sandbox):
    study = _spm_study(box)
    path = study["ours"] / "sub-02_T1w" / "mri" / "mwp1sub-02_T1w.nii.gz"
    _truncate(path)
    out = box.root / "cmp"
    check_cli(box, "compare", ["compare", "--ours", str(study["ours"]), "--spm", str(study["spm"]), "-o", str(out),
                               "--device", "cpu", "-q"], exit_code=2, out=out,
              match=r"Error: .*mwp1sub-02_T1w.nii.gz: expected a complete gzip-compressed NIfTI; the data are "
                    r"truncated or corrupt")
    assert nib.load(str(study["ours"] / "sub-01_T1w" / "mri" / "mwp1sub-01_T1w.nii.gz")).shape  # others intact
