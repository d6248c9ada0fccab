"""``vbmkit compare`` command line: a run without a design, and clean errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.workflows.compare_fixtures import make_study
from vbmkit.cli.main import app

runner = CliRunner()


def test_compare_cli_writes_report_and_metrics(tmp_path):
    study = make_study(tmp_path, n=3)
    out = tmp_path / "out"
    res = runner.invoke(app, ["compare", "--ours", str(study["ours"]), "--cat12", str(study["cat12"]),
                              "--out", str(out), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "compared 3 subjects with cat12; unmatched: 1 vbmkit only, 0 cat12 only" in res.output
    assert "median dice_gm" in res.output and "ROI GM volumes: median r" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["subjects"]) == {"sub-01_T1w", "sub-02_T1w", "sub-03_T1w"}
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html


def test_compare_cli_errors(tmp_path):
    study = make_study(tmp_path, n=2)
    res = runner.invoke(app, ["compare", "--ours", str(study["ours"]), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "expected exactly one of --cat12 DIR and --spm DIR" in res.output
    res = runner.invoke(app, ["compare", "--ours", str(study["ours"]), "--cat12", str(study["cat12"]),
                              "--out", str(tmp_path / "o"), "--formula", "age"])
    assert res.exit_code == 2
    assert "expected --covariates, --formula and --contrast together" in res.output
    res = runner.invoke(app, ["compare", "--ours", str(study["ours"]), "--cat12", str(study["cat12"]),
                              "--out", str(tmp_path / "o"), "--covariates", str(study["covariates"]),
                              "--formula", "age", "--contrast", "age"])
    assert res.exit_code == 2
    assert "expected NAME=EXPR" in res.output
    res = runner.invoke(app, ["compare", "--ours", str(tmp_path / "nope"), "--cat12", str(study["cat12"]),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "expected an output folder" in res.output
