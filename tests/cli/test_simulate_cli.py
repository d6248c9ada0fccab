"""``vbmkit simulate``: options reach the workflow; bad values are refused."""

from __future__ import annotations

from typer.testing import CliRunner

from vbmkit.cli.main import app

runner = CliRunner()


def test_options_reach_the_workflow(tmp_path, monkeypatch):
    seen = {}

    def fake(out, **kwargs):
        seen.update(kwargs, out=out)
        return {"n": kwargs["n"], "written": ["sub-01"], "skipped": []}

    monkeypatch.setattr("vbmkit.workflows.simulate.simulate_cohort", fake)
    res = runner.invoke(app, ["simulate", "--n", "8", "--out", str(tmp_path / "c"), "--seed", "5",
                              "--no-images", "--age-effect", "0.004"])
    assert res.exit_code == 0, res.output
    assert seen["n"] == 8 and seen["seed"] == 5 and seen["images"] is False
    assert seen["parameters"].age_effect_per_year == 0.004
    assert "8 subjects in" in res.output and "lHip" in res.output


def test_too_few_subjects_is_refused(tmp_path):
    res = runner.invoke(app, ["simulate", "--n", "3", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert not (tmp_path / "c").exists()
