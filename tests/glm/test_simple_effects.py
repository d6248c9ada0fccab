"""A contrast on a term inside a treatment-coded interaction warns that it tests a simple effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vbmkit.formula.design import build_design, parse_contrasts
from vbmkit.workflows.glm.outputs import simple_effect_messages

TABLE = pd.DataFrame({"age": np.arange(12.0), "group": ["a", "b"] * 6, "sex": ["m", "m", "f", "f"] * 3})


def _messages(formula, contrasts):
    design = build_design(TABLE, formula)
    return simple_effect_messages(design, parse_contrasts(contrasts, design))


def test_main_effects_under_a_treatment_interaction_warn():
    msgs = _messages("age * C(group)", {"g": "C(group)[T.b]", "a": "age", "i": "0 0 0 1"})
    assert len(msgs) == 2  # the interaction itself is fine
    assert msgs[0].startswith("contrast 'g' tests C(group), which also enters the treatment-coded interaction "
                              "age:C(group): it is a simple effect")
    assert "contrast 'a' tests age" in msgs[1] and "C(group, Sum)" in msgs[1]


@pytest.mark.parametrize(("formula", "contrasts"), [
    ("C(group, Sum) * age", {"a": "age"}),  # sum coding: age is the average slope
    ("age + C(group)", {"g": "C(group)[T.b]"}),  # no interaction
    ("age * C(group)", {"i": "0 0 0 1"}),  # the interaction contrast
])
def test_no_warning_without_a_simple_effect(formula, contrasts):
    assert _messages(formula, contrasts) == []


def test_categorical_by_categorical():
    msgs = _messages("C(group) * C(sex)", {"g": "C(group)[T.b]"})
    assert len(msgs) == 1 and "reference level, or value 0, of C(sex)" in msgs[0]
