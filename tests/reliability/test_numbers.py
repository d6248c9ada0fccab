"""Every float option and contrast weight is finite and in range: NaN, infinities and 1e400 are
refused with a one-line error naming the option or key (and the range), before any map is written."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from tests.reliability.harness import check_api, check_cli
from vbmkit.errors import ConfigError

# (extra glm options, the message expected)
CLI_CASES = [
    (["--threshold", "nan"], r"threshold: expected a finite number in \(0, inf\); got nan"),
    (["--threshold", "inf"], r"threshold: expected a finite number in \(0, inf\); got inf"),
    (["--threshold", "-2"], r"threshold: Input should be greater than 0"),
    (["--fraction", "nan"], r"fraction: expected a finite number in \(0, 1\]; got nan"),
    (["--mask-threshold", "inf"], r"mask_threshold: expected a finite number in \[0, inf\); got inf"),
    (["--memory-gb", "nan"], r"memory_gb: expected a finite number in \(0, 100000\]; got nan"),
    (["--contrast", "v=0 1e400 0"], r"contrast 'v': weight '1e400' is not a finite number"),
    (["--contrast", "x=1e400*age"], r"contrast 'x' \('1e400\*age'\): term '1e400' is not allowed \(a number that is "
                                    r"not finite\)"),
]


@pytest.mark.parametrize(("extra", "match"), CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_glm_options(box, extra, match):
    out = box.root / "glm_out"
    check_cli(box, "glm", box.glm_args(out, *extra), exit_code=2, match=match, out=out)
    assert not out.exists()


def _yaml(box, **sections) -> tuple:
    data = {"name": "s", "inputs": {"maps": [str(box.root / "maps")], "covariates": str(box.covariates)},
            "glm": {"formula": "age + C(sex)", "contrasts": {"age": "age"}, "subsamples": 3}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = box.root / "study.yaml"
    path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
    return path, box.root / "s_out"


# (sections to merge into the study YAML, the message expected)
YAML_CASES = [
    ({"glm": {"fraction": math.nan}}, r"study\.yaml:\d+: glm\.fraction: expected a finite number in \(0, 1\]; got nan"),
    ({"glm": {"threshold": math.inf}}, r"study\.yaml:\d+: glm\.threshold: expected a finite number in \(0, inf\); "
                                       r"got inf"),
    ({"qc": {"sd_threshold": math.inf}}, r"study\.yaml:\d+: qc\.sd_threshold: expected a finite number in "
                                         r"\(0, inf\); got inf"),
    ({"preprocess": {"fwhm": [math.nan]}}, r"study\.yaml:\d+: preprocess\.fwhm: expected one or more finite FWHM "
                                           r"values in \(0, 30\] mm; got \[nan\]"),
    ({"preprocess": {"segmentation_resolution_mm": math.nan}},
     r"preprocess\.segmentation_resolution_mm: expected a finite number in \(0\.3, 2\]; got nan"),
    ({"glm": {"contrasts": {"v": [0, math.inf, 0]}}}, r"glm\.contrasts: contrast 'v': weight inf is not a finite number"),
]


@pytest.mark.parametrize(("sections", "match"), YAML_CASES, ids=[str(c[0]) for c in YAML_CASES])
def test_study_yaml(box, sections, match):
    path, out = _yaml(box, **sections)
    assert ".nan" in path.read_text() or ".inf" in path.read_text()  # YAML's spelling, as a user writes it
    check_cli(box, "run", ["run", str(path), "--check"], exit_code=2, match=match, out=[out])
    assert not out.exists()


def test_api_weights(box):
    """Vectors and matrices given from Python are checked too, naming the contrast."""
    from vbmkit.formula.design import build_design, parse_contrast

    design = build_design(pd.read_csv(box.covariates, sep="\t"), "age + C(sex)")
    check_api(box, "design", lambda: parse_contrast("v", [0, math.nan, 0], design), error=ConfigError,
              match=r"contrast 'v': weight nan is not a finite number")
    check_api(box, "design", lambda: parse_contrast("m", [[0, 1, 0], [0, 0, -math.inf]], design), error=ConfigError,
              match=r"contrast 'm': weight -inf is not a finite number")
    check_api(box, "design", lambda: parse_contrast("s", "0 1 0; 0 0 -1e999", design), error=ConfigError,
              match=r"contrast 's': weight '-1e999' is not a finite number")
