"""The formula and contrast language: a whitelist grammar checked before formulaic sees the text.

formulaic evaluates parts of a formula as Python (``{...}`` blocks and every call such as
``np.log(age)``), with the builtins within reach, so a formula or a contrast written by someone
else (a shared study YAML, a script) could run code on the machine of whoever only validates it.
Every formula and contrast is therefore parsed here first, as text, and refused unless each part
is on the list below; nothing is evaluated.

Formulas (right-hand side only):

* column names: identifiers (``age``, ``TIV``) or backtick-quoted names (```my col```);
* ``C(name)`` with an optional coding, ``Treatment``, ``Treatment('m')``,
  ``Treatment(reference='m')``, ``Sum``, ``Helmert``, ``Diff``, ``Poly`` (as the second argument
  or ``contrasts=``), ``levels=['a', 'b']`` (a list of strings or numbers) and
  ``spans_intercept=True|False``;
* the operators ``+ - : * / **`` and parentheses; numbers (``0 +`` or ``- 1`` drop the
  intercept; ``(a + b)**2`` takes an integer power from 1 to :data:`MAX_POWER`);
* the transforms ``np.log``, ``np.log10``, ``np.log2``, ``np.log1p``, ``np.exp``, ``np.sqrt``,
  ``np.abs``, ``np.square``, ``log``, ``log10``, ``log2``, ``exp``, ``center``,
  ``scale`` (``center=``, ``scale=``, ``ddof=``), ``standardize`` (``center=``, ``rescale=``,
  ``ddof=``), ``poly(x, degree)`` (``raw=``) and ``I(...)`` holding arithmetic
  (``+ - * / **``) of these, column names and numbers.

Contrast expressions: the same column terms, optionally with a level in brackets
(``C(group)[T.depr]``, ``group[T.depr]``, ``C(site, Sum)[S.a]``, ``age:C(sex)[T.m]``; a level is
data text, never run: anything but brackets, braces, quotes, backticks and backslashes, with
balanced parentheses, so that formulaic splits the text where Python does), numbers,
``+ - * / :``, parentheses, ``=`` (``a = b``), commas (one row each) and an ``F:`` prefix; or
numeric weights ``[0, 1, 0]``, ``"0 1 0"``, ``"0 1 0; 0 0 1"``, ``[[0, 1, 0], [0, 0, 1]]``.

Anything else (braces, attribute access other than ``np.<transform>``, subscripts other than a
level, dunder names, keywords such as ``lambda``, string literals outside ``C()`` options,
unknown keyword arguments or functions, comments, backslashes, non-finite numbers) is one
:class:`~vbmkit.errors.ConfigError` naming the term. Pure Python: formulaic is not imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vbmkit.errors import ConfigError
from vbmkit.formula.tokens import (
    C_KEYWORDS,
    CODINGS,
    CONTRAST_EXPECTED,
    FLOAT,
    FORMULA_EXPECTED,
    MAX_LENGTH,
    MAX_POWER,
    NUMBERS,
    NUMPY_FUNCTIONS,
    TRANSFORMS,
    short,
)
from vbmkit.formula.whitelist import walk

__all__ = ["C_KEYWORDS", "CODINGS", "CONTRAST_EXPECTED", "FORMULA_EXPECTED", "MAX_LENGTH", "MAX_POWER",
           "NUMPY_FUNCTIONS", "TRANSFORMS", "FormulaTerms", "check_contrast", "check_formula",
           "is_numeric_contrast"]


@dataclass(frozen=True)
class FormulaTerms:
    """What a formula that passed the grammar uses.

    Attributes
    ----------
    variables : frozenset of str
        Every column name in the formula (backtick names without the backticks).
    categorical : frozenset of str
        The columns wrapped in ``C()``.
    """

    variables: frozenset[str]
    categorical: frozenset[str]



def check_formula(formula: str) -> FormulaTerms:
    """Check ``formula`` against the grammar (module docstring) without evaluating anything.

    Parameters
    ----------
    formula : str
        Right-hand side of a Wilkinson formula, e.g. ``age + C(sex) + TIV``.

    Returns
    -------
    FormulaTerms
        The column names the formula uses and those wrapped in ``C()``.

    Raises
    ------
    ConfigError
        ``formula '...': term '...' is not allowed (why); expected ...`` for the first part
        outside the grammar; also for a formula that is not text, has a ``~`` or does not parse.
    """
    if not isinstance(formula, str):
        raise ConfigError(f"formula: expected text such as 'age + C(sex) + TIV'; got {formula!r}")
    what = f"formula {short(formula)!r}"
    if "~" in formula:
        raise ConfigError(f"{what}: expected only the right-hand side (e.g. 'age + C(sex) + TIV'); "
                          "the maps are the left-hand side")
    if not formula.strip():
        raise ConfigError(f"formula: expected a formula such as 'age + C(sex) + TIV'; got {formula!r}")
    walker = walk(formula, what=what, expected=FORMULA_EXPECTED, contrast=False)
    return FormulaTerms(variables=frozenset(walker.variables), categorical=frozenset(walker.categorical))


def is_numeric_contrast(text: str) -> bool:
    """True for weights written as numbers (``"0 1 0"``, ``"[0, 1, 0]"``, ``"0 1 0; 0 0 1"``)."""
    return bool(NUMBERS.match(text) and re.search(r"\d", text))


def _check_weights(name: str, values: object, depth: int = 0) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        if isinstance(values, bool) or not isinstance(values, (int, float)):
            raise ConfigError(f"contrast {name!r}: expected numeric weights; got {values!r}")
        try:
            finite = math.isfinite(float(values))
        except OverflowError:
            finite = False
        if not finite:
            raise ConfigError(f"contrast {name!r}: weight {short(repr(values), 30)} is not a finite number; "
                              "expected finite weights such as [0, 1, 0]")
        return
    if depth >= 2:
        raise ConfigError(f"contrast {name!r}: expected a vector or a matrix of weights; got deeper nesting")
    for v in values:
        _check_weights(name, v, depth + 1)


def check_contrast(name: str, expr: str | Sequence[float] | Sequence[Sequence[float]]) -> None:
    """Check one contrast specification against the grammar (module docstring).

    Parameters
    ----------
    name : str
        The contrast's name (named in messages).
    expr : str or sequence of float or sequence of sequences of float
        A contrast expression, numeric weights as text, or a vector / matrix of weights.

    Raises
    ------
    ConfigError
        ``contrast 'NAME': term '...' is not allowed (why); expected ...``; or a weight that is
        not a finite number, or text that is neither weights nor an expression.
    """
    if not isinstance(expr, str):
        _check_weights(name, expr)
        return
    text = expr.strip()
    what = f"contrast {name!r} ({short(expr, 60)!r})"
    if not text:
        raise ConfigError(f"contrast {name!r}: expected an expression or weights; got {expr!r}")
    if is_numeric_contrast(text):
        depth, deepest = 0, 0
        for ch in text:
            depth += (ch == "[") - (ch == "]")
            deepest = max(deepest, depth)
            if depth < 0:
                break
        if depth != 0 or deepest > 2:
            raise ConfigError(f"contrast {name!r}: expected numbers such as '0 1 0' or '0 1 0; 0 0 1' or "
                              f"[[0, 1, 0], [0, 0, 1]]; got {short(expr)!r}")
        for token in re.split(r"[\s,;\[\]]+", text):
            if not token:
                continue
            if not FLOAT.match(token):
                raise ConfigError(f"contrast {name!r}: expected numbers such as '0 1 0' or '0 1 0; 0 0 1'; "
                                  f"got {short(expr)!r}")
            if not math.isfinite(float(token)):
                raise ConfigError(f"contrast {name!r}: weight {token!r} is not a finite number; expected "
                                  "finite weights such as '0 1 0'")
        return
    body = text[2:] if text[:2].lower() == "f:" else text
    walk(body, what=what, expected=CONTRAST_EXPECTED, contrast=True)
