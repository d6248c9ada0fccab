"""The whitelist grammar of formulas and contrasts (vbmkit.formula.grammar)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError
from vbmkit.formula.design import build_design, parse_contrast
from vbmkit.formula.grammar import MAX_LENGTH, check_contrast, check_formula


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 30
    return pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)],
        "age": rng.uniform(20, 80, n).round(1),
        "sex": rng.choice(["f", "m"], n),
        "site": np.tile(["a", "b", "c"], n // 3),
        "TIV": rng.normal(1500, 100, n),
        "my col": rng.normal(0, 1, n),
        "group": np.repeat(["ctrl", "depr"], n // 2),
    })


ACCEPTED = [
    "age + C(sex) + TIV",
    "age + `my col`",
    "age + C(sex, Treatment('m'))",
    "age + C(sex, contrasts=Treatment(reference='m'))",
    "C(site, Sum) + age",
    "C(site, Helmert)",
    "C(site, levels=['c', 'b', 'a'])",
    "age * C(sex)",
    "age + age:C(sex)",
    "(age + TIV)**2",
    "poly(age, 2)",
    "I(age**2) + np.log(age)",
    "np.sqrt(age) + np.abs(TIV - 1500)",
    "center(age) + scale(TIV)",
    "standardize(age)",
    "log10(age) + exp(I(age / 100))",
    "age + C(group) - 1",
    "0 + age + C(sex)",
    "age\n  + TIV",  # a YAML block scalar keeps the line breaks
]


@pytest.mark.parametrize("formula", ACCEPTED)
def test_accepted_formulas_give_formulaics_design(table, formula):
    """The grammar only refuses: an accepted formula builds the design formulaic builds alone."""
    d = build_design(table, formula, standardize=False)
    reference = model_matrix(formula, table, ensure_full_rank=True, na_action="raise")
    assert d.columns == [str(c) for c in reference.columns]
    np.testing.assert_array_equal(d.X, np.asarray(reference, dtype=np.float64))


def test_terms_report_columns_and_factors():
    terms = check_formula("age + C(sex, Treatment('m')) + `my col` + np.log(TIV) + group:C(site)")
    assert terms.variables == {"age", "sex", "my col", "TIV", "group", "site"}
    assert terms.categorical == {"sex", "site"}


# (formula, the term the message names, a fragment of why)
REFUSED = [
    ("age + {np.__builtins__['__import__']('os').system('x')}",
     "{np.__builtins__['__import__']('os').system('x')}", "braces run Python code"),
    ("age + {age ** 2}", "{age ** 2}", "braces"),
    ("age + __import__('os')", "__import__('os')", "the function '__import__'"),
    ("age + np.__builtins__", "np.__builtins__", "attribute access ('.__builtins__')"),
    ("age + eval('1')", "eval('1')", "the function 'eval'"),
    ("age + open('f', 'w')", "open('f', 'w')", "the function 'open'"),
    ("age.__class__", "age.__class__", "attribute access"),
    ("age + __dict__", "__dict__", "the name '__dict__'"),
    ("age + np", "np", "the name 'np'"),
    ("age + (lambda: 1)()", "lambda: 1)()", "the Python keyword 'lambda'"),
    ("age + C(sex, __import__('os').system('x'))", "__import__('os').system('x')", "a coding other than"),
    ("age + C(sex, Treatment(open('f')))", "open('f')", "an option value"),
    ("age + C(sex, foo=1)", "C(sex, foo=1)", "the keyword 'foo' of C()"),
    ("C(sex, levels=[open('f')])", "open('f')", "an option value"),
    ("C(sex, levels=['{x}'])", "'{x}'", "a string other than plain text"),
    # formulaic counts brackets inside C(...) without seeing quotes: this would split differently
    ("C(sex, Treatment(')) + open(\"f\", \"w\") + C(sex, Treatment('))", "')) + open(\"f\", \"w\") + C(sex, Treatment('",
     "a string other than plain text"),
    ("C(sex, Treatment(f'm'))", "f'm'", "an option value other than a string, number or True/False"),
    ("C(np.log(age))", "C(np.log(age))", "C() takes a column name first"),
    ("I(__import__('os').system('x'))", "__import__('os').system('x')", "the function"),
    ("I(C(sex))", "C(sex)", "C() inside a transform"),
    ("np.log(age, out=age)", "np.log(age, out=age)", "the keyword 'out'"),
    ("np.load('x')", "np.load('x')", "the function 'np.load'"),
    ("age + 'text'", "'text'", "a string outside C() options"),
    ("age + C(sex)[T.m]", "C(sex)[T.m]", "a subscript"),
    ("age + [1, 2]", "[1, 2]", "a list outside C() options"),
    ("age # {x}", "# {x}", "'#' starts a Python comment"),
    ("age & sex", "& sex", "the operator '&'"),
    ("age + $x", "$", "the character '$'"),
    ("age + 1e400", "1e400", "a number that is not finite"),
    ("(age + TIV)**100", "100", "a power other than a whole number from 1 to 10"),
    ("poly(age, 1000)", "1000", "a degree"),
    ("age + `a{b}`", "`a{b}`", "a backtick name must be non-empty"),
    ("age + `unclosed", "`unclosed", "an unclosed backtick"),
    ("\uff45val(1)", "\uff45val", "a name with non-ASCII characters"),
    ("age + x if y else z", "if y else z", "the Python keyword 'if'"),
]


@pytest.mark.parametrize(("formula", "term", "why"), REFUSED, ids=[r[0][:30] for r in REFUSED])
def test_refused_formulas_name_the_term(formula, term, why):
    with pytest.raises(ConfigError, match=r"^formula .*: term ") as info:
        check_formula(formula)
    message = str(info.value)
    assert f"term {term!r} is not allowed ({why}" in message
    assert "expected column names, C(name" in message and "\n" not in message


def test_other_formula_errors():
    with pytest.raises(ConfigError, match=r"expected only the right-hand side"):
        check_formula("y ~ age")
    with pytest.raises(ConfigError, match=r"formula: expected text such as 'age \+ C\(sex\) \+ TIV'; got 3"):
        check_formula(3)
    with pytest.raises(ConfigError, match=r"formula: expected a formula such as .*; got ' '"):
        check_formula(" ")
    with pytest.raises(ConfigError, match=rf"expected at most {MAX_LENGTH} characters; got {MAX_LENGTH + 4}"):
        check_formula("age+" * (MAX_LENGTH // 4 + 1))
    with pytest.raises(ConfigError, match=r"control characters are not allowed"):
        check_formula("age\x00")
    with pytest.raises(ConfigError, match=r"formula 'age \+\+\* TIV': could not parse it \(invalid syntax\)"):
        check_formula("age ++* TIV")
    with pytest.raises(ConfigError, match=r"could not parse it \(EOF in multi-line statement\)"):
        check_formula("age + (TIV")
    with pytest.raises(ConfigError, match=r"term '= 1' is not allowed \(the operator '='\)"):
        check_formula("age = 1")


CONTRASTS_OK = ["age", "-age", "C(group)[T.depr]", "a - b", "2*a - b", "a/2", "[0, 1, 0]", "0 1 0",
                "0 1 0; 0 0 1", "[[0, 1, 0], [0, 0, 1]]", "F: age, C(sex)[T.m]", "C(site)", "age = 1",
                "age, C(sex)[T.m]", "C(sex, Treatment('m'))[T.f]", "age:C(sex)[m]", "poly(age, 2)[1]",
                "I(age ** 2)", "`my col`", "C(site, levels=['c', 'b', 'a'])[T.b]", [0, 1.5, 0], [[0, 1], [1, 0]]]


@pytest.mark.parametrize("expr", CONTRASTS_OK, ids=[str(e) for e in CONTRASTS_OK])
def test_accepted_contrasts(expr):
    assert check_contrast("c", expr) is None


def test_contrasts_parse_as_before(table):
    d = build_design(table, "age + C(sex) + C(site) + TIV + C(group)")
    assert parse_contrast("a", "2*age - TIV", d).matrix.tolist() == [[0, 2, 0, 0, 0, -1, 0]]
    assert parse_contrast("g", "-C(group)[T.depr]", d).matrix.tolist() == [[0, 0, 0, 0, 0, 0, -1]]
    assert parse_contrast("s", "F: age, C(site)", d).matrix.shape == (3, 7)
    assert parse_contrast("v", "[0, 1, 0, 0, 0, 0, 0]", d).kind == "t"
    coded = build_design(table, "age + C(sex, Treatment('m'))")
    assert parse_contrast("f", "C(sex, Treatment('m'))[T.f]", coded).matrix.tolist() == [[0, 0, 1]]


# (contrast, a fragment of the message)
CONTRASTS_REFUSED = [
    ("age + {__import__('os').system('x')}",
     "term \"{__import__('os').system('x')}\" is not allowed (braces run Python code"),
    ("age.__class__", "term 'age.__class__' is not allowed (attribute access"),
    ("age[__import__('os')]", "term \"age[__import__('os')]\" is not allowed (a subscript other than a level"),
    ("x['a']", "term \"x['a']\" is not allowed (a subscript other than a level"),
    ("eval('x')", "term \"eval('x')\" is not allowed (the function 'eval'"),
    ("age = 1 = 2", "term 'age = 1 = 2' is not allowed (more than one '=')"),
    ("age < 1", "term '< 1' is not allowed (the operator '<')"),
    ("1e400*age", "term '1e400' is not allowed (a number that is not finite)"),
    ("age + [0, 1]", "term '[0, 1]' is not allowed (a list outside C() options"),
    ("0 1e400 0", "weight '1e400' is not a finite number"),
    ("[[[0, 1]]]", "expected numbers such as '0 1 0' or '0 1 0; 0 0 1' or [[0, 1, 0], [0, 0, 1]]; got '[[[0, 1]]]'"),
    ("1e", "expected numbers such as '0 1 0' or '0 1 0; 0 0 1'; got '1e'"),
    ([0, float("inf")], "weight inf is not a finite number"),
    ([0, 10**400], "weight 100000000000000000000000000... is not a finite number"),
    ([[[1.0]]], "expected a vector or a matrix of weights; got deeper nesting"),
    (["a"], "expected numeric weights; got 'a'"),
    ("  ", "expected an expression or weights; got '  '"),
]


@pytest.mark.parametrize(("expr", "fragment"), CONTRASTS_REFUSED, ids=[str(c[0])[:30] for c in CONTRASTS_REFUSED])
def test_refused_contrasts(expr, fragment):
    with pytest.raises(ConfigError, match=r"^contrast 'c'") as info:
        check_contrast("c", expr)
    assert fragment in str(info.value)


def test_glm_config_checks_formula_and_contrasts():
    """The study YAML is checked at load time: GlmConfig runs the same grammar."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"formula 'age \+ \{x\}': term '\{x\}' is not allowed \(braces"):
        GlmConfig(formula="age + {x}", contrasts={"a": "age"})
    with pytest.raises(ValidationError, match=r"contrast 'b' \('\{x\}'\): term '\{x\}' is not allowed"):
        GlmConfig(formula="age", contrasts={"a": "age", "b": "{x}"})
    with pytest.raises(ValidationError, match=r"contrast 'v': weight nan is not a finite number"):
        GlmConfig(formula="age", contrasts={"v": [0.0, float("nan")]})
    ok = GlmConfig(formula="age + C(sex, Treatment('m'))", contrasts={"f": "C(sex, Treatment('m'))[T.f]"})
    assert ok.formula == "age + C(sex, Treatment('m'))"


def test_levels_hold_any_data_text():
    """A level in brackets is data (never run): spaces and balanced parentheses are kept."""
    t = pd.DataFrame({"age": np.arange(12.0), "grp": ["A ctrl"] * 6 + ["MDD (severe)"] * 3 + ["O-B 2"] * 3})
    d = build_design(t, "age + C(grp)")
    c = parse_contrast("b", "C(grp)[T.O-B 2] - C(grp)[T.MDD (severe)]", d)
    assert c.matrix.tolist() == [[0, 0, -1, 1]]
    with pytest.raises(ConfigError, match=r"contrast 'c' \('x\[T\.a\)\(b\]'\): could not parse it"):
        check_contrast("c", "x[T.a)(b]")  # unbalanced: formulaic would read the brackets differently
