import csv

from typer.testing import CliRunner

from vbmkit.cli.main import app

runner = CliRunner()


def test_help_lists_options():
    result = runner.invoke(app, ["preprocess", "--help"])
    assert result.exit_code == 0
    for opt in ("--out", "--fwhm", "--device", "--jobs", "--study"):
        assert opt in result.output


def test_missing_input_and_out_are_clean_errors(tmp_path):
    result = runner.invoke(app, ["preprocess", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Error: input" in result.output and "does not exist" in result.output
    (tmp_path / "x.nii").write_bytes(b"0" * 200)
    result = runner.invoke(app, ["preprocess", str(tmp_path / "x.nii")])
    assert result.exit_code == 2 and "expected --out DIR" in result.output
    result = runner.invoke(app, ["preprocess", str(tmp_path / "x.nii"), "--out", str(tmp_path / "o"),
                                 "--engine", "deepmriprep"])
    assert result.exit_code == 2 and "use engine 'classic'" in result.output
    result = runner.invoke(app, ["preprocess", str(tmp_path / "x.nii"), "--out", str(tmp_path / "o"),
                                 "--fwhm", "-3"])
    assert result.exit_code == 2 and "fwhm" in result.output


def test_broken_input_listed_and_exit_status_one(tmp_path):
    (tmp_path / "tiny.nii.gz").write_bytes(b"abc")
    out = tmp_path / "o"
    result = runner.invoke(app, ["preprocess", str(tmp_path / "tiny.nii.gz"), "--out", str(out), "-q",
                                 "--device", "cpu"])
    assert result.exit_code == 1
    assert "0 done, 0 skipped (already finished), 1 failed" in result.output
    rows = list(csv.DictReader(open(out / "errors.csv")))
    assert rows[0]["name"] == "tiny" and "only 3 bytes" in rows[0]["reason"]
    assert (out / "volumes.csv").read_text().startswith("name,input,tiv_ml")


def test_study_yaml_supplies_inputs_and_output_folder(tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "bad.nii").write_bytes(b"x" * 150)
    (tmp_path / "study.yaml").write_text(
        "schema_version: 1\nname: demo\nout: results\ndevice: cpu\n"
        "inputs:\n  t1: [t1/bad.nii]\npreprocess:\n  fwhm: [8]\n")
    result = runner.invoke(app, ["preprocess", "--study", str(tmp_path / "study.yaml"), "-q"])
    assert result.exit_code == 1
    rows = list(csv.DictReader(open(tmp_path / "results" / "preprocess" / "errors.csv")))
    assert rows[0]["name"] == "bad"
    (tmp_path / "broken.yaml").write_text("schema_version: 1\ninputs: {t1: []}\npreprocess: {fwhm: [8], colour: red}\n")
    result = runner.invoke(app, ["preprocess", "--study", str(tmp_path / "broken.yaml")])
    assert result.exit_code == 2 and "preprocess.colour: unknown key" in result.output


def test_all_subjects_reused_prints_one_up_to_date_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import vbmkit.workflows.preprocess as wp

    seen = {}

    def fake(items, out, settings, *, device, progress):
        seen.update(device=device, engine=settings.engine, skull_strip=settings.skull_strip)
        return SimpleNamespace(done=[], skipped=["a", "b"], failed={}, volumes_csv=out / "volumes.csv",
                               store=None)

    monkeypatch.setattr(wp, "run_preprocess", fake)
    t1 = tmp_path / "a.nii.gz"
    t1.write_bytes(b"")
    res = CliRunner().invoke(app, ["preprocess", str(t1), "-o", str(tmp_path / "o"), "--device", "cpu",
                                   "--engine", "deepmriprep", "--skull-strip", "never"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"up to date: {tmp_path / 'o'} (2 subjects already preprocessed)"
    assert seen == {"device": "cpu", "engine": "deepmriprep", "skull_strip": "never"}
