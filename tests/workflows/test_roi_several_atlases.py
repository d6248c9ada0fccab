"""``run_roi`` with two atlases on one 7 x 8 x 9 grid: one long table with an ``atlas`` column,
atlas-named wide columns, CAT12 exports per atlas, and FDR within each atlas."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.io.catroi import read_cat12_group_csv
from vbmkit.io.nifti import save_volume
from vbmkit.stats.inference import fdr_q
from vbmkit.workflows.roi import run_roi

SHAPE = (7, 8, 9)
AFFINE = np.diag([2.0, 1.5, 1.0, 1.0])
DV = 2.0 * 1.5 * 1.0 / 1000.0


def _setup(root, n=10):
    halves = np.zeros(SHAPE)
    halves[:3], halves[4:] = 1, 2
    slabs = np.zeros(SHAPE)
    slabs[:, :, :4], slabs[:, :, 5:] = 7, 9
    save_volume(root / "halves.nii.gz", halves, AFFINE, dtype=np.uint8)
    save_volume(root / "slabs.nii.gz", slabs, AFFINE, dtype=np.uint8)
    (root / "halves_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lX,Left X,left\n2,rX,Right X,right\n")
    (root / "slabs_labels.csv").write_text("region_id,abbr,name,hemisphere\n7,bLow,Low,both\n9,bTop,Top,both\n")
    rng = np.random.default_rng(1)
    maps = {}
    for i in range(n):
        name = f"sub-{i:02d}"
        gm, wm = rng.uniform(0, 1, SHAPE), rng.uniform(0, 0.5, SHAPE)
        maps[name] = gm
        save_volume(root / "prep" / name / "mri" / f"mwp1{name}.nii.gz", gm, AFFINE)
        save_volume(root / "prep" / name / "mri" / f"mwp2{name}.nii.gz", wm, AFFINE)
    pd.DataFrame({"participant_id": list(maps), "age": np.linspace(20, 70, n)}).to_csv(root / "cov.csv", index=False)
    return halves, slabs, maps


def test_two_atlases_tables_exports_and_fdr(tmp_path):
    halves, slabs, maps = _setup(tmp_path)
    spec = f"{tmp_path / 'halves.nii.gz'},{tmp_path / 'slabs.nii.gz'}"
    summary = run_roi([tmp_path / "prep"], out=tmp_path / "roi", atlas=spec, covariates=tmp_path / "cov.csv",
                      formula="age", contrasts={"age": "age"}, progress=False, device="cpu")
    assert summary["atlas"] == "halves,slabs" and summary["regions"] == 4
    assert set(summary["atlases"]) == {"halves", "slabs"}
    long = pd.read_csv(tmp_path / "roi" / "roi_long.csv")
    assert set(long["atlas"]) == {"halves", "slabs"}
    got = long.set_index(["subject", "atlas", "region_id", "tissue"])["volume_ml"]
    for name, gm in maps.items():  # hand count in mL
        assert got[(name, "halves", 2, "gm")] == pytest.approx(gm[halves == 2].sum() * DV, rel=1e-6)
        assert got[(name, "slabs", 7, "gm")] == pytest.approx(gm[slabs == 7].sum() * DV, rel=1e-6)
    wide = pd.read_csv(tmp_path / "roi" / "roi_wide.csv").set_index("subject")
    assert {"halves.lX_gm", "slabs.bTop_wm", "halves.atlas_gm", "total_gm", "TIV"} <= set(wide.columns)
    assert wide.loc["sub-03", "total_gm"] == pytest.approx(maps["sub-03"].sum() * DV, rel=1e-6)
    for atlas, region in (("halves", "rX"), ("slabs", "bLow")):
        export = read_cat12_group_csv(tmp_path / "roi" / f"roi_catROI_{atlas}_Vgm.csv")
        assert set(export["region"]) == set(long.loc[long["atlas"] == atlas, "region"])
        assert region in set(export["region"])
    stats = pd.read_csv(tmp_path / "roi" / "roi_stats.csv")
    assert stats.columns[0] == "atlas" and len(stats) == 2 * 2 * 2  # atlases x tissues x regions
    for _, part in stats.groupby(["atlas", "tissue"]):
        np.testing.assert_allclose(part["q_fdr"], fdr_q(part["p"].to_numpy()), rtol=1e-6)
    stamp = json.loads((tmp_path / "roi" / "roi_summary.json").read_text())
    assert stamp["settings"]["atlas"] == f"{tmp_path / 'halves.nii.gz'},{tmp_path / 'slabs.nii.gz'}"


def test_cli_takes_several_atlases_and_lists_them(tmp_path):
    _setup(tmp_path, n=4)
    spec = f"{tmp_path / 'halves.nii.gz'},{tmp_path / 'slabs.nii.gz'}"
    result = CliRunner().invoke(app, ["roi", str(tmp_path / "prep"), "--atlas", spec, "-o", str(tmp_path / "o"),
                                      "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "GM inside halves: median" in result.output and "GM inside slabs: median" in result.output
    bad = CliRunner().invoke(app, ["roi", str(tmp_path / "prep"), "--atlas", "lpba40,nope", "-o", str(tmp_path / "p")])
    assert bad.exit_code == 2 and "got 'nope'" in bad.output


def test_atlases_command_lists_the_catalog(tmp_path):
    result = CliRunner().invoke(app, ["atlases", "--brief", "-o", str(tmp_path / "atlases.csv")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "atlases.csv").set_index("name")
    assert table.loc["lpba40", "regions"] == 56 and table.loc["neuromorphometrics", "regions"] == 134
    assert table.loc["lpba40", "template_gm_fraction"] == pytest.approx(0.892, abs=1e-3)
    assert table.loc["neuromorphometrics", "template_gm_fraction"] == pytest.approx(0.992, abs=1e-3)
    assert table["cat12_default"].sum() == 4 and "licence" in table.columns
    assert "schaefer600" in result.output


def test_bids_layout_maps_pair_by_name(tmp_path):
    """vbmkit's --layout bids names: GM and WM of one subject pair; the subject is sub-X[_ses-Y]."""
    from vbmkit.workflows.roi import find_subject_maps

    for sub in ("sub-01", "sub-02_ses-1"):
        folder = tmp_path / sub.split("_")[0] / "anat"
        for label in ("GM", "WM"):
            save_volume(folder / f"{sub}_space-MNI152NLin2009cAsym_label-{label}_desc-modulated_probseg.nii.gz",
                        np.ones(SHAPE), AFFINE)
    subjects = find_subject_maps([str(tmp_path / "sub-*" / "anat" / "*label-GM_desc-modulated_probseg.nii.gz")])
    assert [s.name for s in subjects] == ["sub-01", "sub-02_ses-1"]
    assert set(subjects[1].maps) == {"gm", "wm"} and "label-WM" in subjects[1].maps["wm"].name
