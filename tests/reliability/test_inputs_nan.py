"""NaN means 'no data' (issue 17): maps with NaN outside a cropped field of view, as SPM12's
spm_write_sn writes them, go through ``glm``, ``roi`` and ``compare --spm``; each file is warned
about once with its NaN count, the NaN voxels are left out of masks and sums; Inf, all-NaN maps
and truncated files stay one ``Error:`` line naming the file."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd

from tests.reliability.harness import AFFINE, SHAPE, Sandbox, check_api, check_cli

#: Stored voxels set to NaN in sub-02 (a slab: the top of the field of view) and sub-05 (a corner).
NAN_SLAB = (slice(None), slice(None), slice(7, 9))
NAN_CORNER = (slice(0, 2), slice(0, 2), slice(0, 3))


def _set(path, edit) -> np.ndarray:
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32).copy()
    edit(data)
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    return data


def _nan(region):
    def edit(data):
        data[region] = np.nan
    return edit


def _warnings(output: str, pattern: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Warning: ") and re.search(pattern, line)]


def test_glm_leaves_nan_voxels_out_of_the_mask(box: Sandbox):
    _set(box.maps[1], _nan(NAN_SLAB))
    _set(box.maps[4], _nan(NAN_CORNER))
    out = box.root / "out"
    res = check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    n_slab, n_corner = 7 * 8 * 2, 2 * 2 * 3
    assert len(_warnings(res.output, rf"s6mwp1sub-02_T1w.nii.gz: {n_slab} NaN voxels of 504 read as 'no data'")) == 1
    assert len(_warnings(res.output, rf"s6mwp1sub-05_T1w.nii.gz: {n_corner} NaN voxels of 504")) == 1
    union = n_slab + n_corner  # the corner lies in z 0..2, the slab in z 7..8: disjoint
    assert len(_warnings(res.output, rf"mask: {union} of 504 voxels are NaN \(no data\) in at least one image")) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_voxels"] == 504 - union  # every other voxel's mean is ~0.5 > 0.1
    mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj) > 0
    assert not mask[NAN_SLAB].any() and not mask[NAN_CORNER].any()


def test_glm_explicit_mask_loses_the_nan_voxels(box: Sandbox):
    _set(box.maps[2], _nan(NAN_CORNER))
    mask = box.root / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), AFFINE), str(mask))
    out = box.root / "out"
    res = check_cli(box, "glm", box.glm_args(out, "--mask", str(mask)), exit_code=0, out=out)
    assert len(_warnings(res.output, r"mask: 12 of 504 voxels are NaN")) == 1
    assert json.loads((out / "summary.json").read_text())["n_voxels"] == 504 - 12


def test_glm_all_nan_map_is_one_error(box: Sandbox):
    _set(box.maps[2], _nan((slice(None),) * 3))
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-03_T1w.nii.gz: expected some finite voxel values; all 504 voxels are NaN")


def test_glm_inf_is_one_error(box: Sandbox):
    def edit(data):
        data[1, 2, 3] = np.inf
        data[2, 2, 2] = -np.inf
    _set(box.maps[2], edit)
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: .*s6mwp1sub-03_T1w.nii.gz: expected finite voxel values or NaN \(no data\); "
                    r"found 2 Inf voxels")


def test_glm_fields_of_view_that_do_not_overlap(box: Sandbox):
    """Two maps each with data in one half only: no voxel has data in every image."""
    _set(box.maps[0], _nan((slice(None), slice(None), slice(0, 5))))
    _set(box.maps[1], _nan((slice(None), slice(None), slice(4, 9))))
    out = box.root / "out"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, out=out,
              match=r"Error: mask: expected voxels with data \(not NaN\) in all 12 images; none of the 504 mask "
                    r"voxels has: .*s6mwp1sub-01_T1w.nii.gz is NaN \(no data\) at 280 voxels")


def _roi_inputs(box: Sandbox) -> tuple:
    """mwp1 maps on the sandbox grid and a 2-region atlas on it (label table beside it)."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:3] = 1
    labels[4:] = 2
    atlas = box.root / "atlas" / "tiny.nii.gz"
    atlas.parent.mkdir()
    nib.save(nib.Nifti1Image(labels, AFFINE), str(atlas))
    (box.root / "atlas" / "tiny_labels.csv").write_text(
        "region_id,abbr,name,hemisphere\n1,rA,Right A,right\n2,lA,Left A,left\n")
    maps = []
    for p in box.maps[:6]:
        q = box.root / "roi_maps" / p.name.replace("s6mwp1", "mwp1")
        q.parent.mkdir(exist_ok=True)
        q.write_bytes(p.read_bytes())
        maps.append(q)
    return maps, atlas, labels


def _roi_args(box: Sandbox, atlas, out) -> list[str]:
    return ["roi", str(box.root / "roi_maps"), "--atlas", str(atlas), "-o", str(out), "--device", "cpu", "-q"]


def test_roi_sums_leave_nan_out(box: Sandbox):
    maps, atlas, labels = _roi_inputs(box)
    data = _set(maps[1], _nan(NAN_SLAB))
    out = box.root / "out"
    res = check_cli(box, "roi", _roi_args(box, atlas, out), exit_code=0, out=out)
    assert len(_warnings(res.output, r"mwp1sub-02_T1w.nii.gz: 112 NaN voxels of 504 read as 'no data'")) == 1
    long = pd.read_csv(out / "roi_long.csv")
    row = long[(long.subject == "sub-02_T1w") & (long.region_id == 1) & (long.tissue == "gm")]
    dv = 2.0 * 2.0 * 2.5 / 1000
    # NaN counts as 0 (nansum); roi_long.csv stores 10 significant digits
    assert abs(row.volume_ml.iloc[0] - np.nansum(data[labels == 1].astype(np.float64)) * dv) < 1e-9


def test_roi_map_without_data_inside_the_atlas(box: Sandbox):
    maps, atlas, labels = _roi_inputs(box)

    def edit(data):
        data[labels > 0] = np.nan  # finite only in the unlabelled slab x = 3
    _set(maps[2], edit)
    out = box.root / "out"
    check_cli(box, "roi", _roi_args(box, atlas, out), exit_code=2, out=out,
              match=r"Error: .*mwp1sub-03_T1w.nii.gz: expected data \(not NaN\) inside the atlas; all its voxels "
                    r"there are NaN")


def test_roi_api_all_nan_map(box: Sandbox):
    from vbmkit.errors import ImageError
    from vbmkit.workflows.roi import run_roi

    maps, atlas, _ = _roi_inputs(box)
    _set(maps[0], _nan((slice(None),) * 3))
    out = box.root / "out"
    check_api(box, "roi", lambda: run_roi([box.root / "roi_maps"], out=out, atlas=str(atlas), progress=False),
              error=ImageError, match=r"mwp1sub-01_T1w.nii.gz: expected some finite voxel values; all 504", out=out)


def _spm_study(box: Sandbox, **kw) -> dict:
    from tests.workflows.compare_fixtures import make_spm_study

    return make_spm_study(box.root / "study", n=2, nan_outside=True, **kw)


def test_compare_spm_with_nan_outside_the_field_of_view(box: Sandbox):
    study = _spm_study(box)
    out = box.root / "cmp"
    res = check_cli(box, "compare", ["compare", "--ours", str(study["ours"]), "--spm", str(study["spm"]), "-o", str(out),
                                     "--device", "cpu", "-q"], exit_code=0, out=out)
    for name in ("sub-01_T1w", "sub-02_T1w"):
        for k in ("mwc1", "mwc2"):
            assert len(_warnings(res.output, rf"{k}{name}.nii: {study['n_nan']} NaN voxels")) == 1, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subjects"]["sub-01_T1w"]["r_s6mwp1"] > metrics["subjects"]["sub-01_T1w"]["r_mwp1"] > 0.5
    assert "OldSeg" in metrics["reference_grid"]["name"]


def test_compare_all_nan_spm_map_is_one_error(box: Sandbox):
    study = _spm_study(box, grid="normalise")
    path = study["spm"] / "mwc2sub-02_T1w.nii"
    nib.save(nib.Nifti1Image(np.full(study["shape"], np.nan, dtype=np.float32), study["affine"]), str(path))
    out = box.root / "cmp"
    check_cli(box, "compare", ["compare", "--ours", str(study["ours"]), "--spm", str(study["spm"]), "-o", str(out),
                               "--device", "cpu", "-q"], exit_code=2, out=out,
              match=r"Error: .*mwc2sub-02_T1w.nii: expected some finite voxel values; all 585390 voxels are NaN")
