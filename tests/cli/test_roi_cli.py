"""``vbmkit roi`` through typer's CliRunner on a phantom study with a 7 x 8 x 9 atlas."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.io.nifti import save_volume

SHAPE = (7, 8, 9)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _setup(tmp_path):
    labels = np.zeros(SHAPE)
    labels[:3] = 1
    labels[4:] = 2
    save_volume(tmp_path / "tiny.nii.gz", labels, AFFINE, dtype=np.uint8)
    (tmp_path / "tiny_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lX,Left X,left\n2,rX,Right X,right\n")
    rng = np.random.default_rng(0)
    for i in range(8):
        d = tmp_path / "prep" / f"sub-{i:02d}" / "mri"
        save_volume(d / f"mwp1sub-{i:02d}.nii.gz", rng.uniform(0, 1, SHAPE), AFFINE)
        save_volume(d / f"mwp2sub-{i:02d}.nii.gz", rng.uniform(0, 1, SHAPE), AFFINE)
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(8)], "age": np.arange(8) * 3.0 + 20}
                 ).to_csv(tmp_path / "cov.csv", index=False)


def test_roi_command_writes_tables_and_stats(tmp_path):
    _setup(tmp_path)
    result = CliRunner().invoke(app, ["roi", str(tmp_path / "prep"), "--atlas", str(tmp_path / "tiny.nii.gz"),
                                      "--out", str(tmp_path / "out"), "--covariates", str(tmp_path / "cov.csv"),
                                      "--formula", "age", "--contrast", "age=age", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert "8 subjects x 2 tiny regions x gm/wm" in result.output
    stats = pd.read_csv(tmp_path / "out" / "roi_stats.csv")
    assert set(stats["region"]) == {"lX", "rX"} and len(stats) == 4
    assert (tmp_path / "out" / "out_catROI_tiny_Vwm.csv").is_file()


def test_roi_command_errors_exit_2(tmp_path):
    _setup(tmp_path)
    base = ["roi", str(tmp_path / "prep"), "--atlas", str(tmp_path / "tiny.nii.gz"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*base, "--contrast", "age"])
    assert result.exit_code == 2 and "--contrast: expected NAME=EXPR" in result.output
    result = CliRunner().invoke(app, ["roi", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(app, [*base, "--native"])
    assert result.exit_code == 2 and "--native: expected" in result.output


def test_a_warning_is_one_clean_line_once(tmp_path):
    # maps on a 4 mm grid in the atlas's space are resampled with a warning (one per map kind
    # and resolution); it must read "Warning: <file>: ..." without a source location, once
    _setup(tmp_path)
    coarse = tmp_path / "coarse"
    rng = np.random.default_rng(1)
    for i in range(3):
        save_volume(coarse / f"mwp1sub-{i:02d}.nii.gz", rng.uniform(0, 1, (4, 4, 5)), np.diag([4.0, 4.0, 4.0, 1.0]))
    result = CliRunner().invoke(app, ["roi", str(coarse), "--atlas", str(tmp_path / "tiny.nii.gz"),
                                      "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "resampling the maps" in ln]
    assert len(lines) >= 1 and all(ln.startswith("Warning: ") for ln in lines), result.output
    assert len(lines) == len(set(lines))
    assert "UserWarning" not in result.output and ".py:" not in result.output
