"""Wall time of the four hostile-input cases that must end in under 5 s (issue 11, item 4).

The cases of ``tests/reliability/test_resources.py`` that the issue bounds in time, run once
each through the CLI in this process after one warm-up command (so the lazy imports of the first
command are not counted): a YAML alias bomb (``vbmkit run --check``), an image header claiming
32 GB over a 400-byte file (``vbmkit glm``, .nii and .nii.gz) and ``--subsamples 1000000000``.
Prints each case's seconds and exit status against the 5 s bound. The tests check what ends each
case (the message); this script measures how long it takes (no timing assertions in tests).

    .venv/bin/python benchmarks/resource_limits.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' sandbox and hostile inputs
from tests.reliability.harness import make_sandbox  # noqa: E402
from tests.reliability.test_resources import BOMB, _huge_header  # noqa: E402
from vbmkit.cli.main import app  # noqa: E402

LIMIT_S = 5.0


def main() -> None:
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        box = make_sandbox(Path(tmp) / "sandbox", lambda command: None)
        warm = runner.invoke(app, box.glm_args(box.root / "warm", "--subsamples", "0"))
        assert warm.exit_code == 0, warm.output
        (box.root / "bomb.yaml").write_text(BOMB)
        cases: list[tuple] = [("YAML alias bomb (run --check)", ["run", str(box.root / "bomb.yaml"), "--check"])]
        cases.append(("--subsamples 1000000000 (glm)",
                      box.glm_args(box.root / "out_sub", "--subsamples", "1000000000")))
        for suffix in (".nii", ".nii.gz"):  # sub-05's image becomes the bad one, as in the tests
            args = box.glm_args(box.root / f"out{suffix}")
            args[1] = str(box.root / "maps" / "s6mwp1sub-*")
            cases.append((f"32 GB header over 400 bytes ({suffix}, glm)", args, suffix))
        good = box.maps[4].read_bytes()
        worst = 0.0
        for label, args, *suffix in cases:
            for old in box.root.glob("maps/s6mwp1sub-05_T1w.nii*"):
                old.unlink()
            if suffix:
                _huge_header(box.root / "maps" / f"s6mwp1sub-05_T1w{suffix[0]}")
            else:
                box.maps[4].write_bytes(good)
            t0 = time.perf_counter()
            res = runner.invoke(app, args)
            seconds = time.perf_counter() - t0
            worst = max(worst, seconds)
            first = next((line for line in res.output.splitlines() if line.startswith("Error: ")), res.output[:80])
            print(f"{label}: {seconds:.2f} s, exit {res.exit_code}: {first[:110]}")
        print(f"SUMMARY slowest case {worst:.2f} s (bound {LIMIT_S:.0f} s): {'within' if worst < LIMIT_S else 'ABOVE'}")


if __name__ == "__main__":
    main()
