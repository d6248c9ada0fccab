"""roi_volumes and Study through the API equal what the CLI commands write."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import vbmkit


def _maps(root, n=6):
    rng = np.random.default_rng(2)
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])
    gm, wm = [], []
    for i in range(n):
        for kind, store in (("mwp1", gm), ("mwp2", wm)):
            p = root / f"{kind}sub-{i + 1:02d}.nii.gz"
            nib.save(nib.Nifti1Image(rng.uniform(0.2, 0.8, (7, 8, 9)).astype(np.float32), affine), str(p))
            store.append(p)
    labels = np.zeros((7, 8, 9), np.int16)
    labels[:3], labels[3:] = 1, 2
    nib.save(nib.Nifti1Image(labels, affine), str(root / "atlas.nii.gz"))
    (root / "atlas_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lA,left A,L\n2,rA,right A,R\n")
    return gm, wm


def test_roi_volumes_are_sums_of_the_maps(tmp_path):
    gm, wm = _maps(tmp_path)
    table = vbmkit.roi_volumes(gm, wm, atlas=str(tmp_path / "atlas.nii.gz"), subjects=[f"s{i}" for i in range(6)],
                               device="cpu")
    labels = nib.load(str(tmp_path / "atlas.nii.gz")).get_fdata()
    voxel_ml = 2.0 * 2.0 * 2.5 / 1000
    for i, (g, w) in enumerate(zip(gm, wm, strict=True)):
        for tissue, path in (("gm", g), ("wm", w)):
            data = nib.load(str(path)).get_fdata()
            row = table[(table["subject"] == f"s{i}") & (table["tissue"] == tissue) & (table["region_id"] == 2)]
            assert float(row["volume_ml"].iloc[0]) == pytest.approx(data[labels == 2].sum() * voxel_ml,
                                                                                  rel=1e-5)


def test_study_from_yaml_runs_like_vbmkit_run(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    rng = np.random.default_rng(4)
    ids = [f"sub-{i + 1:02d}" for i in range(10)]
    for ident in ids:
        data = 0.5 + 0.05 * rng.standard_normal((7, 8, 9))
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
                 str(maps / f"s6mwp1{ident}.nii.gz"))
    pd.DataFrame({"participant_id": ids, "age": rng.uniform(20, 60, 10).round(1)}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    (tmp_path / "study.yaml").write_text(
        "schema_version: 1\nname: api\nout: out\ndevice: cpu\ninputs:\n  maps: [maps]\n"
        "  covariates: participants.tsv\nglm:\n  formula: age\n  contrasts: {age: age}\n  subsamples: 0\n")
    study = vbmkit.Study.from_yaml(tmp_path / "study.yaml")
    assert study.out == tmp_path / "out" and not study.out.exists()  # validated, nothing written
    provenance = study.run()
    assert provenance["stages"]["glm"]["status"].startswith("ran")
    assert (tmp_path / "out" / "glm" / "age" / "t.nii.gz").is_file() and (tmp_path / "out" / "report.html").is_file()
