"""Progress on stderr: tqdm bars on a terminal, plain lines (no carriage returns) otherwise."""

from __future__ import annotations

import vbmkit.workflows.progress as progress


def test_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    bar = progress.progress_bar(3, initial=1, description="preprocess", unit="subjects")
    bar.set_postfix_str("sub-02: segmentation", refresh=True)
    bar.set_postfix_str("sub-02: done", refresh=False)
    bar.update(1)
    bar.close()
    with progress.ProgressStages() as stages:
        tick = stages.callback("full-sample fit", unit="voxels")
        for done in (5000, 12000, 12000):
            tick(done, 12000)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[:2] == ["preprocess: sub-02: segmentation", "preprocess: 2/3 subjects (sub-02: done)"]
    assert len(lines) == 3 and lines[2].startswith("full-sample fit: 12,000 voxels in ")


def test_disabled_progress_does_nothing(capsys):
    assert progress.progress_bar(3, description="x", enabled=False) is None
    with progress.ProgressStages(enabled=False) as stages:
        assert stages.callback("x") is None
    assert capsys.readouterr().err == ""
