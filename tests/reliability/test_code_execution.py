"""Formulas and contrasts are parsed, never run: every entry point refuses code before formulaic.

formulaic evaluates ``{...}`` blocks and calls in a formula as Python, so each case writes a
payload that would create a marker file (outside the sandbox) if anything evaluated it, and
asserts a clean exit 2 (or a ConfigError) naming the term, with no marker and nothing changed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from tests.reliability.harness import check_api, check_cli
from vbmkit.errors import ConfigError


def formula_payloads(marker: Path) -> list[tuple[str, str]]:
    """(formula, regular expression for the start of the term the message names)."""
    m = str(marker)
    return [
        (f"age + {{__import__('os').system('touch {m}')}}", r"term .\{__import__\('os'\)"),
        (f"age + {{np.__builtins__['__import__']('os').system('touch {m}')}}", r"term .\{np\.__builtins__"),
        (f"age + __import__('os').system('touch {m}')", r"term .__import__\('os'\)\.system"),
        (f"age + eval(\"open('{m}', 'w')\")", r"term .eval\("),
        (f"age + open('{m}', 'w')", r"term .open\("),
        ("age + age.__class__.__base__.__subclasses__()", r"term .age\.__class__\.__base__"),
        (f"age + (lambda: open('{m}', 'w'))()", r"term .lambda: open"),
        (f"age + C(sex, __import__('os').system('touch {m}'))", r"term .__import__\('os'\)\.system"),
        (f"age + I(__import__('os').system('touch {m}'))", r"term .__import__\('os'\)\.system"),
        # a quote inside C(...), where formulaic counts brackets without seeing quotes
        (f"C(sex, Treatment(')) + open(\"{m}\", \"w\") + C(sex, Treatment('))", r"term .\\?'\)\) \+ open\("),
    ]


def contrast_payloads(marker: Path) -> list[tuple[str, str]]:
    """(contrast expression, regular expression for the term the message names)."""
    m = str(marker)
    return [
        (f"age + {{__import__('os').system('touch {m}')}}", r"term .\{__import__\('os'\)"),
        (f"{{np.__builtins__['__import__']('os').system('touch {m}')}}", r"term .\{np\.__builtins__"),
        (f"age - eval(\"open('{m}', 'w')\")", r"term .eval\("),
        (f"C(sex)[__import__('os').system('touch {m}')]", r"term .C\(sex\)\[__import__"),
        ("age.__class__", r"term .age\.__class__"),
    ]


def _ids(payloads: list[tuple[str, str]]) -> list[str]:
    return [f"p{i}" for i in range(len(payloads))]


FORMULAS = formula_payloads(Path("M"))
CONTRASTS = contrast_payloads(Path("M"))


def _study(box, glm: dict) -> tuple[Path, Path]:
    """A study YAML inside the sandbox with ``glm`` as its glm section; returns (yaml, its out folder)."""
    path = box.root / "study.yaml"
    data = {"name": "s", "inputs": {"maps": [str(box.root / "maps")], "covariates": str(box.covariates)},
            "glm": {"contrasts": {"age": "age"}, "subsamples": 3, **glm}}
    path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
    return path, box.root / "s_out"


@pytest.mark.parametrize("index", range(len(FORMULAS)), ids=_ids(FORMULAS))
def test_cli_glm_formula(box, tmp_path, index):
    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[index]
    out = box.root / "glm_out"
    args = box.glm_args(out)
    args[args.index("-f") + 1] = formula
    check_cli(box, "glm", args, exit_code=2, match=rf"formula: formula .*{term}.* is not allowed", out=out)
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(CONTRASTS)), ids=_ids(CONTRASTS))
def test_cli_glm_contrast(box, tmp_path, index):
    marker = tmp_path / "marker"
    expr, term = contrast_payloads(marker)[index]
    out = box.root / "glm_out"
    args = box.glm_args(out)
    args[args.index("--contrast") + 1] = f"bad={expr}"
    check_cli(box, "glm", args, exit_code=2, match=rf"contrast 'bad' .*{term}.* is not allowed", out=out)
    assert not marker.exists()


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
@pytest.mark.parametrize("index", range(len(FORMULAS)), ids=_ids(FORMULAS))
def test_study_yaml_formula(box, tmp_path, index, check):
    """``vbmkit run`` and ``vbmkit run --check`` refuse the formula while loading the YAML."""
    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[index]
    path, out = _study(box, {"formula": formula})
    args = ["run", str(path), *(["--check"] if check else [])]
    check_cli(box, "run", args, exit_code=2, match=rf"study\.yaml:\d+: glm\.formula: formula .*{term}.* is not allowed",
              out=[out])
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("index", range(len(CONTRASTS)), ids=_ids(CONTRASTS))
def test_study_yaml_contrast(box, tmp_path, index):
    marker = tmp_path / "marker"
    expr, term = contrast_payloads(marker)[index]
    path, out = _study(box, {"formula": "age + C(sex)", "contrasts": {"age": "age", "bad": expr}})
    check_cli(box, "run", ["run", str(path), "--check"], exit_code=2,
              match=rf"study\.yaml:\d+: glm\.contrasts: contrast 'bad' .*{term}.* is not allowed", out=[out])
    assert not marker.exists()


def test_glm_study_option_formula_override(box, tmp_path):
    """``vbmkit glm --study`` with a formula given on the command line."""
    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[0]
    path, out = _study(box, {"formula": "age + C(sex)"})
    check_cli(box, "glm", ["glm", "--study", str(path), "-f", formula, "-q", "--device", "cpu"], exit_code=2,
              match=rf"formula .*{term}.* is not allowed", out=[out])
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(FORMULAS)), ids=_ids(FORMULAS))
def test_api_build_design_and_glm_config(box, tmp_path, index):
    from vbmkit.config import GlmConfig
    from vbmkit.formula.design import build_design, check_formula_columns, formula_variables

    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[index]
    table = pd.read_csv(box.covariates, sep="\t")
    pattern = rf"formula .*{term}.* is not allowed"
    check_api(box, "design", lambda: build_design(table, formula), error=ConfigError, match=pattern)
    check_api(box, "design", lambda: formula_variables(formula), error=ConfigError, match=pattern)
    check_api(box, "design", lambda: check_formula_columns(table, formula), error=ConfigError, match=pattern)
    check_api(box, "glm", lambda: GlmConfig(formula=formula, contrasts={"age": "age"}), error=ValidationError,
              match=pattern)
    assert not marker.exists()


@pytest.mark.parametrize("index", [0, 1, 2, 8])
def test_api_run_glm(box, tmp_path, index):
    """run_glm refuses the formula even when the settings skipped validation (model_construct)."""
    from vbmkit.config import GlmConfig
    from vbmkit.workflows.glm import run_glm

    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[index]
    settings = GlmConfig.model_construct(**{**GlmConfig(formula="age", contrasts={"age": "age"}).model_dump(),
                                            "formula": formula, "subsamples": 3})
    out = box.root / "glm_out"
    check_api(box, "glm", lambda: run_glm(box.maps, box.covariates, id_column="participant_id", settings=settings, out=out,
                                          device="cpu", progress=False),
              error=ConfigError, match=rf"formula .*{term}.* is not allowed", out=out)
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(CONTRASTS)), ids=_ids(CONTRASTS))
def test_api_parse_contrast(box, tmp_path, index):
    from vbmkit.formula.design import build_design, parse_contrast, parse_contrasts

    marker = tmp_path / "marker"
    expr, term = contrast_payloads(marker)[index]
    design = build_design(pd.read_csv(box.covariates, sep="\t"), "age + C(sex)")
    pattern = rf"contrast 'bad' .*{term}.* is not allowed"
    check_api(box, "design", lambda: parse_contrast("bad", expr, design), error=ConfigError, match=pattern)
    check_api(box, "design", lambda: parse_contrasts({"age": "age", "bad": expr}, design), error=ConfigError,
              match=pattern)
    assert not marker.exists()


@pytest.mark.parametrize("index", [0, 1, 2, 5, 7])
def test_cli_roi_formula(box, tmp_path, index):
    marker = tmp_path / "marker"
    formula, term = formula_payloads(marker)[index]
    out = box.root / "roi_out"
    args = ["roi", str(box.root / "maps"), "-o", str(out), "-c", str(box.covariates), "--formula", formula,
            "--contrast", "age=age", "--device", "cpu", "-q"]
    check_cli(box, "roi", args, exit_code=2, match=rf"formula .*{term}.* is not allowed", out=out)
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("index", [0, 3])
def test_cli_roi_contrast(box, tmp_path, index):
    marker = tmp_path / "marker"
    expr, term = contrast_payloads(marker)[index]
    out = box.root / "roi_out"
    args = ["roi", str(box.root / "maps"), "-o", str(out), "-c", str(box.covariates), "--formula", "age + C(sex)",
            "--contrast", f"bad={expr}", "--device", "cpu", "-q"]
    check_cli(box, "roi", args, exit_code=2, match=rf"contrast 'bad' .*{term}.* is not allowed", out=out)
    assert not marker.exists()
