"""``vbmkit stack`` writes a store that equals the maps; a user's folder is refused."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.io.store import open_store


def test_stack_writes_a_store(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        nib.save(nib.Nifti1Image((0.5 + 0.1 * rng.random((7, 8, 9))).astype(np.float32), np.eye(4)),
                 str(tmp_path / f"s6mwp1sub-{i}.nii.gz"))
    res = CliRunner().invoke(app, ["stack", str(tmp_path / "s6mwp1sub-*.nii.gz"), "-o", str(tmp_path / "st")])
    assert res.exit_code == 0, res.output
    assert "5 subjects x 504 voxels" in res.output
    store = open_store(tmp_path / "st")
    first = nib.load(str(tmp_path / "s6mwp1sub-0.nii.gz")).get_fdata().reshape(-1)
    np.testing.assert_array_equal(store.block(0, 504)[0], first.astype(np.float32))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    res = CliRunner().invoke(app, ["stack", str(tmp_path / "s6mwp1sub-*.nii.gz"), "-o", str(tmp_path / "mine")])
    assert res.exit_code == 2 and "mine: expected a new or empty folder" in res.output
