"""Nothing lost: every command writes only into folders it owns and replaces only what it wrote.

Each case runs a command (or the API) in a sandbox that holds user files, and asserts the exit
status, the one-line message naming the folder or file, that nothing outside the output folder
changed, and that no user file was lost (:mod:`tests.reliability.harness`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.reliability.harness import check_api, check_cli
from vbmkit.errors import ConfigError
from vbmkit.io.ownership import LOCK, STAMP, read_stamp

REFUSED = r"expected a new or empty folder, or one written by vbmkit {cmd}; it holds"


def _study(box, *, out: str = "study_out", name: str = "study", extra: str = "") -> os.PathLike:
    path = box.root / "study.yaml"
    path.write_text(
        f"schema_version: 1\nname: {name}\nout: {out}\ndevice: cpu\n"
        "inputs:\n  maps: [maps]\n  covariates: participants.tsv\n"
        "glm:\n  formula: age + C(sex)\n  contrasts: {age: age}\n  subsamples: 3\n" + extra)
    return path


# ----------------------------------------------------------------------------- glm
def test_glm_refuses_a_folder_with_a_summary_json_it_did_not_write(box):
    """The issue's data-loss case: any summary.json used to make OUT replaceable."""
    out = box.root / "o"
    box.user_file("o/summary.json", "{}\n")
    thesis = box.user_file("o/precious.txt", "thesis\n")
    check_cli(box, "glm", box.glm_args(out), exit_code=2, match=r"o: " + REFUSED.format(cmd="glm"),
              out=out, survivors=[thesis, out / "summary.json"])
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt", "summary.json"]


def test_glm_out_is_a_file(box):
    target = box.user_file("result.txt")
    check_cli(box, "glm", box.glm_args(target), exit_code=2, match=r"result.txt: expected a folder path")


def test_glm_out_below_a_file(box):
    box.user_file("file.txt")
    check_cli(box, "glm", box.glm_args(box.root / "file.txt" / "sub"), exit_code=2,
              match=r"file.txt/sub: expected a folder path; .*file.txt is a file")


def test_glm_out_is_the_root_folder(box):
    check_cli(box, "glm", box.glm_args("/"), exit_code=2, match=r"out /: expected a folder of its own.*root")


def test_glm_writes_a_stamp_listing_its_files_and_mode_follows_umask(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    stamp = read_stamp(out)
    assert stamp["command"] == "glm" and stamp["state"] == "complete"
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != STAMP)
    assert stamp["files"] == on_disk
    assert not (out / LOCK).exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's 0700
    assert (out / "age").stat().st_mode & 0o777 == 0o777 & ~umask


def test_glm_rerun_keeps_a_user_file_put_into_its_folder(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    note = box.user_file("g/my_notes.txt", "figure 2 from here\n")
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "4"), exit_code=0, out=out, survivors=[note])


def test_glm_rerun_removes_stale_contrast_of_earlier_settings(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out, "--contrast", "sex=C(sex)"), exit_code=0, out=out)
    assert (out / "sex" / "F.nii.gz").is_file()
    note = box.user_file("g/sex/keep.txt", "mine\n")
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out, survivors=[note])
    assert not (out / "sex" / "F.nii.gz").exists() and (out / "age" / "t.nii.gz").is_file()
    assert not any("sex/" in f for f in read_stamp(out)["files"])


def test_glm_refuses_to_replace_a_user_file_named_like_an_output(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    stamp = json.loads((out / STAMP).read_text())
    stamp["files"].remove("design.csv")
    (out / STAMP).write_text(json.dumps(stamp))  # as if the user had put design.csv there
    mine = out / "design.csv"
    mine.write_text("my design\n")
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "4"), exit_code=2,
              match=r"design.csv: expected a file vbmkit wrote .* not written by vbmkit glm", out=out,
              survivors=[mine])


def test_glm_refuses_a_folder_of_another_command(box):
    out = box.root / "r"
    check_cli(box, "roi", ["roi", str(box.root / "maps"), "-o", str(out), "--device", "cpu", "-q"],
              exit_code=2, match=r"expected mwp1")  # s6mwp1 only: roi refuses, leaves nothing
    out.mkdir()
    (out / STAMP).write_text(json.dumps({"command": "roi", "files": ["roi_long.csv"], "state": "complete"}))
    box.user_file("r/roi_long.csv", "subject,region\n")
    check_cli(box, "glm", box.glm_args(out), exit_code=2, match=r"expected a folder of vbmkit glm; it holds "
              r"the outputs of vbmkit roi", out=out, survivors=[out / "roi_long.csv"])


def test_glm_takes_over_the_lock_of_a_killed_process(box):
    out = box.root / "g"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (out / LOCK).write_text(json.dumps({"pid": int(dead), "command": "glm"}))
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    assert not (out / LOCK).exists()


def test_glm_refuses_a_folder_locked_by_a_live_process(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (out / LOCK).write_text(json.dumps({"pid": sleeper.pid, "command": "run", "host": socket.gethostname(),
                                            "since": "now"}))
        check_cli(box, "glm", box.glm_args(out, "--subsamples", "4"), exit_code=2,
                  match=rf"expected no other vbmkit command writing there; vbmkit run \(pid {sleeper.pid}\)",
                  out=out)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_glm_rerun_removes_temporaries_left_by_a_kill(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    (out / ".vbmkit-tmp-glm-99999-abc").mkdir()
    (out / ".vbmkit-tmp-glm-99999-abc" / "t.nii.gz").write_bytes(b"partial")
    (out / "age" / ".vbmkit-tmp-t.x1y2.nii.gz").write_bytes(b"partial")
    box.user_file(".vbmkit-tmp-not-ours.txt", "beside OUT: never touched\n")
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "4"), exit_code=0, out=out)
    assert not list(out.rglob(".vbmkit-tmp-*"))
    assert (box.root / ".vbmkit-tmp-not-ours.txt").is_file()


def test_glm_up_to_date_rerun_changes_nothing(box):
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != STAMP}
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != STAMP} == before


def test_glm_unwritable_output_is_one_line(box, monkeypatch):
    from pathlib import Path

    def deny(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", deny)
    out = box.root / "locked" / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=2, match=r"locked/g: expected a folder vbmkit can create; "
              r"Permission denied")


def test_api_run_glm_refuses_a_foreign_folder(box):
    from vbmkit.config import GlmConfig
    from vbmkit.workflows.glm import run_glm

    out = box.root / "o"
    box.user_file("o/summary.json", "{}\n")
    settings = GlmConfig(formula="age", contrasts={"age": "age"}, subsamples=0)
    check_api(box, "glm", lambda: run_glm([box.root / "maps"], box.covariates, id_column="participant_id",
                                          settings=settings, out=out, progress=False),
              error=ConfigError, match="holds 1 entries vbmkit did not write", out=out)


# ----------------------------------------------------------------------------- roi
def _mwp_maps(box):
    """Rename the sandbox maps to mwp1 so that vbmkit roi measures them (own atlas on the grid)."""
    import nibabel as nib
    import numpy as np

    maps = box.root / "mwp"
    maps.mkdir()
    for p in box.maps:
        img = nib.load(str(p))
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), str(maps / p.name.replace("s6mwp1", "mwp1")))
    atlas = box.root / "atlas.nii.gz"
    labels = np.zeros((7, 8, 9), np.int16)
    labels[:3], labels[3:] = 1, 2
    nib.save(nib.Nifti1Image(labels, img.affine), str(atlas))
    (box.root / "atlas_labels.csv").write_text("region_id,abbr,name,hemisphere\n1,lA,left A,L\n2,rA,right A,R\n")
    return maps, atlas


def _roi_args(maps, atlas, out, *extra):
    return ["roi", str(maps), "--atlas", str(atlas), "-o", str(out), "--device", "cpu", "-q", *extra]


def test_roi_refuses_a_folder_with_a_users_roi_long_csv(box):
    maps, atlas = _mwp_maps(box)
    out = box.root / "tables"
    mine = box.user_file("tables/roi_long.csv", "my own table\n")
    check_cli(box, "roi", _roi_args(maps, atlas, out), exit_code=2, match=r"tables: " + REFUSED.format(cmd="roi"),
              out=out, survivors=[mine])


def test_roi_rerun_without_formula_removes_its_old_roi_stats(box):
    maps, atlas = _mwp_maps(box)
    out = box.root / "r"
    stats = ["-c", str(box.covariates), "-f", "age", "--contrast", "age=age"]
    check_cli(box, "roi", _roi_args(maps, atlas, out, *stats), exit_code=0, out=out)
    assert (out / "roi_stats.csv").is_file()
    check_cli(box, "roi", _roi_args(maps, atlas, out), exit_code=0, out=out)
    assert not (out / "roi_stats.csv").exists() and (out / "roi_long.csv").is_file()
    assert "roi_stats.csv" not in read_stamp(out)["files"]


def test_roi_refuses_a_glm_folder(box):
    maps, atlas = _mwp_maps(box)
    out = box.root / "g"
    check_cli(box, "glm", box.glm_args(out), exit_code=0, out=out)
    check_cli(box, "roi", _roi_args(maps, atlas, out), exit_code=2,
              match=r"expected a folder of vbmkit roi; it holds the outputs of vbmkit glm", out=out)


# ----------------------------------------------------------------------------- compare
def test_compare_refuses_a_folder_with_a_users_metrics_json(box):
    ours, ref = box.root / "ours", box.root / "cat"
    ours.mkdir()
    ref.mkdir()
    out = box.root / "cmp"
    mine = box.user_file("cmp/metrics.json", '{"mine": 1}\n')
    check_cli(box, "compare", ["compare", "--ours", str(ours), "--cat12", str(ref), "-o", str(out)],
              exit_code=2, match=r"cmp: " + REFUSED.format(cmd="compare"), out=out, survivors=[mine])


# ----------------------------------------------------------------------------- run
def test_run_refuses_an_existing_folder_with_qc_and_report(box):
    """The issue's case: run --out EXISTING deleted qc/ and overwrote covariates.tsv and report.html."""
    study = _study(box)
    out = box.root / "existing"
    kept = [box.user_file("existing/qc/notes.txt", "qc by hand\n"),
            box.user_file("existing/covariates.tsv", "mine\n"), box.user_file("existing/report.html", "<p>mine")]
    check_cli(box, "run", ["run", str(study), "--out", str(out)], exit_code=2,
              match=r"study.yaml:\d+: out: .*existing: " + REFUSED.format(cmd="run"), out=out, survivors=kept)


def test_run_check_refuses_an_existing_folder(box):
    study = _study(box)
    out = box.root / "existing"
    mine = box.user_file("existing/report.html", "<p>mine")
    check_cli(box, "run", ["run", str(study), "--out", str(out), "--check"], exit_code=2,
              match=REFUSED.format(cmd="run"), out=out, survivors=[mine])


def test_run_check_refuses_root_as_out(box):
    study = _study(box, out="/")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study.yaml:\d+: out: out /: expected a folder of its own")


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "x y"])
def test_run_check_refuses_a_name_that_leaves_the_folder(box, name):
    study = _study(box, name=json.dumps(name), out="null")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"name: .*expected a plain name")


def test_run_locked_by_another_run_is_one_line(box):
    study = _study(box)
    out = box.root / "study_out"
    out.mkdir()
    (out / STAMP).write_text(json.dumps({"command": "run", "files": [], "state": "running"}))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (out / LOCK).write_text(json.dumps({"pid": sleeper.pid, "command": "run", "host": socket.gethostname()}))
        check_cli(box, "run", ["run", str(study)], exit_code=2,
                  match=rf"vbmkit run \(pid {sleeper.pid}\) has held it", out=out)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_writes_stages_with_unique_temporaries_and_reruns_up_to_date(box):
    study = _study(box)
    out = box.root / "study_out"
    res = check_cli(box, "run", ["run", str(study)], exit_code=0, out=out)
    assert "report:" in res.output
    stamp = read_stamp(out)
    assert stamp["command"] == "run" and {"glm/", "report.html", "covariates.tsv"} <= set(stamp["files"])
    assert not list(out.rglob(".vbmkit-tmp-*")) and not list(box.root.glob(".*partial*"))
    res = check_cli(box, "run", ["run", str(study)], exit_code=0, out=out)
    assert "[glm] up to date" in res.output


def test_glm_study_writes_into_the_study_folder_it_shares_with_run(box):
    study = _study(box)
    out = box.root / "study_out"
    check_cli(box, "glm", ["glm", "--study", str(study), "-q"], exit_code=0, out=out)
    assert read_stamp(out)["command"] == "run" and read_stamp(out / "glm")["command"] == "glm"
    check_cli(box, "run", ["run", str(study)], exit_code=0, out=out)


# ----------------------------------------------------------------------------- others
def test_preprocess_refuses_a_users_folder(box):
    out = box.root / "notes"  # holds lab.md
    check_cli(box, "preprocess", ["preprocess", str(box.maps[0]), "-o", str(out), "-q", "--device", "cpu"],
              exit_code=2, match=r"notes: " + REFUSED.format(cmd="preprocess"), out=out)


def test_preprocess_refuses_a_users_folder_named_like_a_subject(box):
    out = box.root / "prep"
    out.mkdir()
    (out / STAMP).write_text(json.dumps({"command": "preprocess", "files": [], "state": "complete"}))
    mine = box.user_file("prep/s6mwp1sub-01_T1w/mine.txt", "not vbmkit's\n")
    check_cli(box, "preprocess", ["preprocess", str(box.maps[0]), "-o", str(out), "-q", "--device", "cpu"],
              exit_code=2, match=r"s6mwp1sub-01_T1w: expected a file vbmkit wrote", out=out, survivors=[mine])


def test_simulate_refuses_a_users_folder(box):
    out = box.root / "notes"
    check_cli(box, "simulate", ["simulate", "--n", "4", "-o", str(out)], exit_code=2,
              match=r"notes: " + REFUSED.format(cmd="simulate"), out=out)


def test_demo_quick_refuses_a_users_folder(box):
    out = box.root / "maps"  # the user's maps: the toy demo used to delete s6mwp1sub-*.nii.gz there
    check_cli(box, "demo", ["demo", "--quick", "-o", str(out), "--device", "cpu", "-q"], exit_code=2,
              match=r"maps: " + REFUSED.format(cmd="demo"), out=out)


def test_init_writes_valid_yaml_for_an_odd_folder_name(box):
    import yaml

    folder = box.root / 'weird "name": #x'
    folder.mkdir()
    (folder / "t1.nii.gz").write_bytes(box.maps[0].read_bytes())
    target = folder / "study.yaml"
    check_cli(box, "init", ["init", str(folder)], exit_code=0, out=target)
    data = yaml.safe_load(target.read_text())
    assert data["name"] == "weird_name_x" and data["report"]["title"] == 'weird "name": #x VBM study'
    check_cli(box, "run", ["run", str(target), "--check"], exit_code=0)


def test_init_does_not_overwrite_a_users_yaml(box):
    mine = box.user_file("study.yaml", "# my study\n")
    check_cli(box, "init", ["init", str(box.root / "maps"), "--output", str(mine)], exit_code=2,
              match=r"study.yaml: expected a new file; it exists", survivors=[mine])
