"""``vbmkit demo``: the toy cohort is written, fitted, and the planted peak is found."""

from __future__ import annotations

import json
import re

import nibabel as nib
from typer.testing import CliRunner

from vbmkit.cli.main import app


def test_demo_finds_the_planted_effect(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--subjects", "30", "--subsamples", "10",
                                   "--permutations", "10", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    distance = float(re.search(r"([\d.]+) mm apart", res.output).group(1))
    r = float(re.search(r"r\(median t, planted effect\) = ([\d.-]+)", res.output).group(1))
    # one 3 mm voxel step on every axis allowed (3 sqrt(3) = 5.196, printed as 5.2): 30 noisy
    # subjects can shift the maximum by a voxel
    assert distance <= 5.25
    # the truth is one blob and the rest of the map is smooth noise, so r stays well below 1
    # (0.59 with the default 60 subjects, 0.32 here)
    assert r > 0.2
    assert len(list((out / "maps").glob("s6mwp1sub-*.nii.gz"))) == 30
    assert (out / "participants.tsv").read_text().startswith("participant_id\tage\tsex\tTIV")
    summary = json.loads((out / "glm" / "summary.json").read_text())
    assert summary["n_subjects"] == 30 and (out / "glm" / "age_decline" / "glass_brain.png").is_file()
    # stored like CAT12 outputs: LAS
    assert nib.aff2axcodes(nib.load(str(out / "glm" / "age_decline" / "t_median.nii.gz")).affine) == ("L", "A", "S")


def test_default_demo_preprocesses_and_truth_skips_it(tmp_path, monkeypatch):
    """Plain `vbmkit demo` runs the whole pipeline on 20 simulated T1 images; --truth the true maps."""
    import vbmkit.cli.run as run_cli

    calls = []
    monkeypatch.setattr(run_cli, "demo_study", lambda out, **kw: calls.append(kw))
    for extra in ([], ["--truth"], ["--subjects", "12", "--device", "cpu"]):
        res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), *extra])
        assert res.exit_code == 0, res.output
    assert calls == [{"n": 20, "seed": 0, "full": True, "device": "auto"},
                     {"n": 30, "seed": 0, "full": False, "device": "auto"},
                     {"n": 12, "seed": 0, "full": True, "device": "cpu"}]


def test_demo_preprocess_profile_is_a_valid_study_section():
    import yaml

    from vbmkit.config import PreprocessConfig
    from vbmkit.workflows.demo.study import DEMO_PREPROCESS, demo_yaml_text

    study = yaml.safe_load(demo_yaml_text(full=True))
    assert study["inputs"]["t1"] == ["cohort"] and "maps" not in study["inputs"]
    assert PreprocessConfig(**study["preprocess"]) == PreprocessConfig(**DEMO_PREPROCESS)
    assert study["preprocess"]["jobs"] == 2
