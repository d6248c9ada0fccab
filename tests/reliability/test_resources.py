"""Bounded resources (issue 11, item 4): hostile or careless input ends fast with one line.

YAML alias bombs, recursive anchors and Python/custom tags; image headers that claim more
data than their file holds; subsample and permutation counts that cannot fit in memory or
exceed the caps; permutation requests beyond N! (exact test); ``simulate`` runs that would
fill the disk. Four cases of the issue must "end in under 5 s": the tests check what ends
them (the refusal and its message, before any work); their wall time is printed by
``benchmarks/resource_limits.py`` (no timing assertions in tests).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.reliability.harness import AFFINE, SHAPE, check_cli

BOMB = """\
name: s
inputs:
  maps: [maps]
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _study(box, text: str) -> Path:
    path = box.root / "study.yaml"
    path.write_text(text)
    return path


def _valid_study(box, extra: str) -> str:
    return (f"name: s\ninputs:\n  maps: [{box.root / 'maps'}]\n  covariates: {box.covariates}\n"
            f"glm:\n  formula: age\n  contrasts: {{age: age}}\n  subsamples: 3\n{extra}")


def _huge_header(path: Path) -> Path:
    """A NIfTI header claiming 2000^3 float32 voxels (32 GB) over 400 bytes (gzipped for .gz)."""
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.float32)
    header.set_sform(AFFINE, code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * (400 - len(header.binaryblock))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


# --- YAML ---------------------------------------------------------------------------------

def test_alias_bomb_ends_in_under_5s(box):
    study = _study(box, BOMB)
    # the composer stops at the alias that passes the limit
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study\.yaml:\d+: alias \*[a-i]: expected YAML aliases to expand to at most 10000 nodes")


def test_too_many_aliases(box):
    lines = ["name: s", "inputs:", "  maps: [maps]", "x: &x 1", "many:"] + ["  - *x"] * 101
    study = _study(box, "\n".join(lines) + "\n")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study\.yaml:106: expected at most 100 YAML aliases; found more \(alias \*x\)")


@pytest.mark.parametrize("command", ["check", "run", "glm"])
def test_recursive_anchor(box, command):
    study = _study(box, _valid_study(box, "loop: &loop\n  again: [*loop]\n"))
    args = {"check": ["run", str(study), "--check"], "run": ["run", str(study)],
            "glm": ["glm", "--study", str(study), "--device", "cpu", "-q"]}[command]
    check_cli(box, "glm" if command == "glm" else "run", args, exit_code=2, out=box.root / "s_out",
              match=r"study\.yaml:10: alias \*loop: expected an alias of a complete node; it refers to a node "
                    r"that contains it \(a recursive anchor\)")


@pytest.mark.parametrize("command", ["check", "run", "glm"])
def test_python_tag(box, tmp_path, command):
    marker = tmp_path / "marker"
    study = _study(box, _valid_study(box, f"x: !!python/object/apply:os.system ['touch {marker}']\n"))
    args = {"check": ["run", str(study), "--check"], "run": ["run", str(study)],
            "glm": ["glm", "--study", str(study), "--device", "cpu", "-q"]}[command]
    check_cli(box, "glm" if command == "glm" else "run", args, exit_code=2, out=box.root / "s_out",
              match=r"study\.yaml:9: tag !!python/object/apply:os\.system: expected plain YAML values")
    assert not marker.exists()


def test_custom_tag(box):
    study = _study(box, "name: !secret s\ninputs:\n  maps: [maps]\n")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study\.yaml:1: tag !secret: expected plain YAML values .*custom and Python tags are not read")


def test_deep_nesting(box):
    study = _study(box, "name: s\ninputs:\n  maps: [maps]\nx: " + "[" * 150 + "]" * 150 + "\n")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study\.yaml:4: expected sequences and mappings nested at most 100 deep")


def test_deep_nesting_through_aliases(box):
    inner = "[" * 50 + "1" + "]" * 50
    outer = "[" * 50 + "*a" + "]" * 50
    study = _study(box, f"name: s\ninputs:\n  maps: [maps]\na: &a {inner}\nb: {outer}\n")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2,
              match=r"study\.yaml:4: b\[0\]\[0\]\.\.\.: expected values nested at most 100 deep \(aliases expanded\)")


@pytest.mark.parametrize(("value", "problem"), [
    ("!!int abc", r"!!int 'abc': expected a value of this type; invalid literal for int\(\)"),
    ("!!timestamp nope", r"!!timestamp 'nope': expected a value of this type; it cannot be read as !!timestamp"),
])
def test_bad_value_of_a_standard_tag(box, value, problem):
    study = _study(box, f"name: s\ninputs:\n  maps: [maps]\nx: {value}\n")
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=2, match=rf"study\.yaml:4: {problem}")


def test_plain_aliases_still_work(box):
    text = _valid_study(box, "").replace("  contrasts: {age: age}", "  contrasts: &c {age: age}")
    study = _study(box, text)
    check_cli(box, "run", ["run", str(study), "--check"], exit_code=0, match=r"study\.yaml: valid; stages: qc, glm")


# --- image headers ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_huge_header_glm_ends_in_under_5s(box, suffix):
    box.maps[4].unlink()  # sub-05's image is now the bad one
    bad = _huge_header(box.root / "maps" / f"s6mwp1sub-05_T1w{suffix}")
    out = box.root / "glm_out"
    what = r"\(32000000352 bytes with offset 352\), but the file has only 400 bytes" if suffix == ".nii" else \
        r"\(32000000352 bytes uncompressed\), more than a compressed file of \d+ bytes can hold"
    args = box.glm_args(out)
    args[1] = str(box.root / "maps" / "s6mwp1sub-*")
    # the header is refused before any allocation
    check_cli(box, "glm", args, exit_code=2, out=out,
              match=rf"{bad.name}: expected voxel data that fit the file; the header claims shape "
                    rf"\(2000, 2000, 2000\) of float32 {what}")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_huge_header_roi(box, suffix):
    bad = _huge_header(box.root / "roi_in" / f"mwp1sub-01_T1w{suffix}")
    out = box.root / "roi_out"
    check_cli(box, "roi", ["roi", str(bad), "-o", str(out), "--device", "cpu", "-q"], exit_code=2, out=out,
              match=rf"{bad.name}: expected voxel data that fit the file; the header claims shape \(2000, 2000, 2000\)")


def test_huge_header_compare(box):
    bad = _huge_header(box.root / "ours" / "sub-01_T1w" / "mri" / "p0sub-01_T1w.nii")
    ref = box.root / "cat12" / "mri" / "p0sub-01_T1w.nii"
    ref.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), str(ref))
    out = box.root / "cmp_out"
    check_cli(box, "compare", ["compare", "--ours", str(box.root / "ours"), "--cat12", str(box.root / "cat12"),
                               "-o", str(out), "--device", "cpu", "-q"], exit_code=2, out=out,
              match=rf"{bad.name}: expected voxel data that fit the file; the header claims shape \(2000, 2000, 2000\)")


def test_header_beyond_the_voxel_cap(tmp_path):
    from vbmkit.errors import ImageError
    from vbmkit.io.nifti import load_volume

    # 1300^3 uint8 voxels (2.2e9 > 2^31) over 2.2 MB of incompressible gzip: passes the gzip
    # ratio bound, so the absolute cap is what refuses it
    header = nib.Nifti1Header()
    header.set_data_shape((1300, 1300, 1300))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    noise = np.random.default_rng(0).integers(0, 256, 2_200_000, dtype=np.uint8).tobytes()
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + noise, compresslevel=1))
    with pytest.raises(ImageError, match=r"huge\.nii\.gz: expected at most 2147483648 voxels \(2\^31\); the header "
                                         r"claims shape \(1300, 1300, 1300\) of uint8 \(2197000000 voxels\) in a file"):
        load_volume(path)


# --- subsamples and permutations ----------------------------------------------------------

def test_billion_subsamples_end_in_under_5s(box):
    out = box.root / "glm_out"
    # refused from the sizes, nothing allocated
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "1000000000"), exit_code=2, out=out,
              match=r"--subsamples 1000000000: needs about [\d,]+ GB for the subsample draws and medians; "
                    r"[\d.,]+ [GM]B available; lower --subsamples or --memory-gb")


def test_memory_budget_too_small_for_the_draws(box):
    out = box.root / "glm_out"
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "50000", "--memory-gb", "0.001"), exit_code=2, out=out,
              match=r"--memory-gb 0.001: expected at least \d+ MB for one voxel block of --subsamples 50000; "
                    r"raise --memory-gb or lower --subsamples")


def test_default_block_budget_too_small_for_the_draws(box, monkeypatch):
    monkeypatch.setattr("vbmkit.stats.chunking.default_memory_bytes", lambda device: 1_000_000)
    out = box.root / "glm_out"
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "50000"), exit_code=2, out=out,
              match=r"--subsamples 50000: one voxel block needs about 13 MB; the default block budget is 1 MB "
                    r"\(a share of the free memory\); lower --subsamples or raise --memory-gb")


def test_memory_budget_beyond_the_available_memory(box, monkeypatch):
    monkeypatch.setattr("vbmkit.workflows.glm.resources.available_memory_bytes", lambda device: 1_000_000_000)
    out = box.root / "glm_out"
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "100000", "--memory-gb", "1000"), exit_code=2, out=out,
              match=r"--memory-gb 1000: the voxel blocks would take about [\d.]+ GB; 1\.0 GB available; "
                    r"lower --memory-gb")


def test_subsample_cap(box):
    out = box.root / "glm_out"
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "100001"), exit_code=2, out=out,
              match=r"--subsamples 100001: expected at most 100,000 draws")


def test_permutation_cap(box):
    out = box.root / "glm_out"  # 12 subjects: 12! = 479,001,600 distinct permutations
    check_cli(box, "glm", box.glm_args(out, "--subsamples", "0", "--permutations", "10000000"), exit_code=2,
              out=out, match=r"--permutations 10000000: expected at most 1,000,000")


def test_permutations_beyond_n_factorial_run_each_once(box):
    """10 million permutations of 8 subjects: the 8! = 40,320 distinct ones, each once (an exact test)."""
    table = pd.read_csv(box.covariates, sep="\t").iloc[:8]
    eight = box.root / "eight.tsv"
    table.to_csv(eight, sep="\t", index=False)
    out = box.root / "glm_out"
    args = ["glm", *map(str, box.maps[:8]), "-c", str(eight), "-f", "age", "--contrast", "age=age",
            "--subsamples", "0", "--permutations", "10000000", "-o", str(out), "--device", "cpu", "-q"]
    res = check_cli(box, "glm", args, exit_code=0, out=out,
                    match=r"Warning: --permutations 10000000: only 40320 distinct permutations of 8 subjects; "
                          r"using all of them \(exact test\)")
    assert len([line for line in res.output.splitlines() if line.startswith("Warning: ")]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert any("only 40320 distinct permutations" in w for w in summary["warnings"])
    p_fwe = nib.load(out / "age" / "p_fwe.nii.gz").get_fdata()
    assert p_fwe.min() >= 1 / 40320 and p_fwe.max() <= 1.0
    # an exact test: every p is a count of the 40,320 permutations divided by 40,320
    counts = p_fwe[p_fwe < 1.0] * 40320
    np.testing.assert_allclose(counts, np.round(counts), atol=0.02)


# --- simulate -----------------------------------------------------------------------------

def test_simulate_large_cohort_needs_yes(box):
    out = box.root / "cohort"
    check_cli(box, "simulate", ["simulate", "--n", "100000", "-o", str(out)], exit_code=2, out=out,
              match=r"simulate --n 100000: writes about [\d,]+ GB \([\d,]+ files\); expected --yes for more than "
                    r"5\.0 GB; pass --yes to go ahead")
    assert not out.exists()


def test_simulate_beyond_free_disk_is_refused_even_with_yes(box):
    out = box.root / "cohort"
    check_cli(box, "simulate", ["simulate", "--n", "100000000", "-o", str(out), "--yes"], exit_code=2, out=out,
              match=r"simulate --n 100000000: writes about [\d,]+ GB; only [\d.,]+ [kMG]B free on the disk of ")
    assert not out.exists()


def test_simulate_prints_its_estimate_first(box, monkeypatch):
    monkeypatch.setattr("vbmkit.workflows.simulate.simulate_cohort",
                        lambda out, **kwargs: {"n": kwargs["n"], "written": [], "skipped": []})
    out = box.root / "cohort"
    res = check_cli(box, "simulate", ["simulate", "--n", "8", "-o", str(out)], exit_code=0, out=out,
                    match=r"simulate: 8 subjects -> .*cohort: about 56 files, 143 MB")
    assert res.output.index("simulate: 8 subjects") < res.output.index("8 subjects in")


def test_simulate_estimate_matches_a_measured_cohort():
    from vbmkit.workflows.simulate import estimate_disk

    # measured: `vbmkit simulate --n 4 --seed 0` wrote 32 files, 72,483,556 bytes; the
    # estimate rounds the gzip shares up, so it may exceed the measured size by a few percent
    est = estimate_disk(4, template_shape=(113, 137, 113))
    assert est.files == 32
    assert 72_483_556 <= est.bytes <= 1.05 * 72_483_556
    assert estimate_disk(4, images=False, template_shape=(113, 137, 113)).files == 24
