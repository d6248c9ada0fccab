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

import ast
import io
import keyword
import math
import re
import tokenize
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from vbmkit.errors import ConfigError

#: Longest formula or contrast accepted, in characters (a long model has a few hundred).
MAX_LENGTH = 4000
#: Largest power in ``(a + b)**k`` (interactions up to order k) and of a number in ``I(x**k)``.
MAX_POWER = 10
#: ``np.<name>`` transforms allowed (one argument each).
NUMPY_FUNCTIONS = frozenset({"log", "log10", "log2", "log1p", "exp", "sqrt", "abs", "square"})
#: formulaic's own transforms allowed, with the keyword arguments each may take.
TRANSFORMS: dict[str, frozenset[str]] = {
    "log": frozenset(), "log10": frozenset(), "log2": frozenset(), "exp": frozenset(),
    "center": frozenset(), "scale": frozenset({"center", "scale", "ddof"}),
    "standardize": frozenset({"center", "rescale", "ddof"}), "poly": frozenset({"degree", "raw"}),
}
#: Codings of ``C(x, <coding>)`` and the keyword arguments each may take.
CODINGS: dict[str, frozenset[str]] = {
    "Treatment": frozenset({"reference"}), "Sum": frozenset(), "Helmert": frozenset({"reverse", "scale"}),
    "Diff": frozenset({"backward"}), "Poly": frozenset({"scores"}),
}
#: Keyword arguments of ``C()``.
C_KEYWORDS = frozenset({"contrasts", "levels", "spans_intercept"})

FORMULA_EXPECTED = ("expected column names, C(name[, Treatment('level') | Sum | Helmert | Diff | Poly]"
                    "[, levels=[...]]), + - : * / **, numbers, and np.log/np.log10/np.exp/np.sqrt/np.abs, "
                    "center/scale/standardize/poly, I(...)")
CONTRAST_EXPECTED = ("expected design columns (age, C(group)[T.depr]), numbers, + - * / : =, "
                     "'F: a, b', or numeric weights such as '0 1 0' or '0 1 0; 0 0 1'")

_OPERATORS = {ast.BitOr: "|", ast.BitXor: "^", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@",
              ast.LShift: "<<", ast.RShift: ">>", ast.Pow: "**", ast.BitAnd: ":"}
_NUMBERS = re.compile(r"^[\s\[\]\d.,;eE+-]+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_LEVEL = re.compile(r"^[^\[\]{}'\"`\\]*$")
_BAD_IN_QUOTES = re.compile(r"[{}`\\]")
_PLAIN_STRING = re.compile(r"""^(['"])[^()\[\]{}'"`\\%#]*\1$""")


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


class _Refused(Exception):
    """A node (or a token) outside the grammar; turned into a ConfigError by the caller."""

    def __init__(self, node: ast.AST | None, reason: str, text: str | None = None) -> None:
        super().__init__(reason)
        self.node, self.reason, self.text = node, reason, text


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Source:
    """The text as parsed: backtick names and levels replaced by placeholder identifiers.

    ``:`` becomes ``&`` and (contrasts) a top-level ``=`` becomes ``<``, both one character, so
    the positions of ``shown`` (before these two swaps) and of ``parsed`` are the same.
    """

    def __init__(self, text: str, *, levels: bool) -> None:
        prefix = "_vbq"
        while prefix in text:
            prefix += "q"
        self.names: dict[str, str] = {}  # placeholder -> column name (backticks removed)
        self.levels: dict[str, str] = {}  # placeholder -> level text
        self.originals: dict[str, str] = {}  # placeholder -> text as written
        text = self._backticks(text, prefix)
        if levels:
            text = self._levels(text, prefix)
        self.shown = text
        self.parsed = text

    def _backticks(self, text: str, prefix: str) -> str:
        out, i = [], 0
        while i < len(text):
            if text[i] != "`":
                out.append(text[i])
                i += 1
                continue
            end = text.find("`", i + 1)
            if end < 0:
                raise _Refused(None, "an unclosed backtick", text[i:])
            name = text[i + 1:end]
            if not name.strip() or _BAD_IN_QUOTES.search(name):
                raise _Refused(None, "a backtick name must be non-empty, without braces, backticks or "
                                     "backslashes", text[i:end + 1])
            key = f"{prefix}b{len(self.names)}_"
            self.names[key] = name
            self.originals[key] = text[i:end + 1]
            out.append(key)
            i = end + 1
        return "".join(out)

    def _levels(self, text: str, prefix: str) -> str:
        out, i = [], 0
        while i < len(text):
            ch = text[i]
            before = text[:i].rstrip()  # a subscript follows a name or a closing parenthesis
            if ch == "[" and before and (before[-1].isalnum() or before[-1] in "_)`"):
                end = text.find("]", i + 1)
                if end >= 0 and _LEVEL.match(text[i + 1:end]) and _balanced(text[i + 1:end]):
                    key = f"{prefix}l{len(self.levels)}_"
                    self.levels[key] = text[i + 1:end]
                    self.originals[key] = text[i + 1:end]
                    out.append(f"[{key}]")
                    i = end + 1
                    continue
            out.append(ch)
            i += 1
        return "".join(out)

    def show(self, text: str) -> str:
        """``text`` (a part of ``shown``) as the user wrote it."""
        for key, original in self.originals.items():
            text = text.replace(key, original)
        return text

    def segment(self, node: ast.AST) -> str:
        seg = ast.get_source_segment(self.shown, node)
        return self.show(seg if seg is not None else self.shown)


def _balanced(text: str) -> bool:
    """Parentheses that close in order: formulaic counts them inside a level (data text, never run)."""
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def _tokens(src: _Source, *, contrast: bool) -> None:
    """Token-level checks, then the ``:`` -> ``&`` (and contrast ``=`` -> ``<``) swaps."""
    chars = list(src.parsed)
    depth = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(src.parsed).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise _Refused(None, f"could not parse it ({exc.args[0] if exc.args else exc})", src.show(src.parsed)) from None
    for tok in tokens:
        start = tok.start[1]
        if tok.type == tokenize.COMMENT:
            raise _Refused(None, "'#' starts a Python comment", src.show(tok.string))
        if tok.type == tokenize.ERRORTOKEN and tok.string.strip():
            raise _Refused(None, f"the character {tok.string.strip()!r}", src.show(tok.string.strip()))
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) and tok.string not in ("True", "False", "None"):
                raise _Refused(None, f"the Python keyword {tok.string!r}", src.show(_rest(src.parsed, start)))
            if not tok.string.isascii() or unicodedata.normalize("NFKC", tok.string) != tok.string:
                raise _Refused(None, "a name with non-ASCII characters (quote it in backticks)", tok.string)
        if tok.type != tokenize.OP:
            continue
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
        elif tok.string in ("&", "<", ":=") or (tok.string == "=" and not contrast and depth == 0):
            raise _Refused(None, f"the operator {tok.string!r}", src.show(_rest(src.parsed, start)))
        elif tok.string == ":":
            chars[start] = "&"
        elif tok.string == "=" and depth == 0:
            chars[start] = "<"
    src.parsed = "".join(chars)


def _rest(text: str, start: int, limit: int = 40) -> str:
    return _short(text[start:].strip(), limit)


def _number(node: ast.AST) -> float | None:
    """The value of a (signed) numeric literal, else None; non-finite numbers are refused."""
    sign = 1.0
    inner = node
    while isinstance(inner, ast.UnaryOp) and isinstance(inner.op, (ast.USub, ast.UAdd)):
        sign = -sign if isinstance(inner.op, ast.USub) else sign
        inner = inner.operand
    if not isinstance(inner, ast.Constant) or isinstance(inner.value, bool) \
            or not isinstance(inner.value, (int, float)):
        return None
    try:
        value = float(inner.value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise _Refused(node, "a number that is not finite")
    return sign * value


class _Walker:
    """Checks an expression tree against the whitelist and collects the columns it names."""

    def __init__(self, src: _Source) -> None:
        self.src = src
        self.variables: set[str] = set()
        self.categorical: set[str] = set()

    # --- formulas -------------------------------------------------------------------------
    def formula(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.BitAnd)):
            self.formula(node.left)
            self.formula(node.right)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            self.formula(node.left)
            power = _number(node.right)
            if power is None or power != int(power) or not 1 <= power <= MAX_POWER:
                raise _Refused(node.right, f"a power other than a whole number from 1 to {MAX_POWER}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.formula(node.operand)
        elif _number(node) is not None:
            pass
        else:
            self.term(node)

    def term(self, node: ast.AST) -> None:
        """A column name or an allowed call (``C(...)``, a transform, ``I(...)``)."""
        if isinstance(node, ast.Name):
            self.name(node)
        elif isinstance(node, ast.Call):
            self.call(node)
        else:
            raise _Refused(node, _describe(node))

    def name(self, node: ast.Name) -> str:
        ident = node.id
        if ident in self.src.names:
            self.variables.add(self.src.names[ident])
            return self.src.names[ident]
        if ident in self.src.levels:
            raise _Refused(node, "a level in brackets outside a contrast")
        if ident.startswith("__") or ident in ("np", "numpy"):
            raise _Refused(node, f"the name {ident!r}")
        self.variables.add(ident)
        return ident

    # --- calls ----------------------------------------------------------------------------
    def call(self, node: ast.Call) -> None:
        func = node.func
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise _Refused(node, "a starred argument")
        for kw in node.keywords:
            if kw.arg is None:
                raise _Refused(node, "a '**' argument")
        if isinstance(func, ast.Attribute):
            if not (isinstance(func.value, ast.Name) and func.value.id == "np" and func.attr in NUMPY_FUNCTIONS):
                raise _Refused(node, f"the function {self.src.segment(func)!r} (allowed: "
                                     f"{', '.join('np.' + f for f in sorted(NUMPY_FUNCTIONS))})")
            self._arguments(node, positional=1, keywords=frozenset())
            self.arithmetic(node.args[0])
            return
        if not isinstance(func, ast.Name):
            raise _Refused(node, f"a call of {self.src.segment(func)!r}")
        if func.id == "C":
            self.categorical_call(node)
        elif func.id == "I":
            self._arguments(node, positional=1, keywords=frozenset())
            self.arithmetic(node.args[0])
        elif func.id in TRANSFORMS:
            allowed = TRANSFORMS[func.id]
            self._arguments(node, positional=2 if func.id == "poly" else 1, keywords=allowed)
            self.arithmetic(node.args[0])
            for extra in node.args[1:]:
                self._degree(extra)
            for kw in node.keywords:
                if kw.arg == "degree":
                    self._degree(kw.value)
                else:
                    self._option(kw.value, numbers=True, strings=False)
        else:
            raise _Refused(node, f"the function {func.id!r} (allowed: C, I, {', '.join(sorted(TRANSFORMS))} "
                                 "and np.<name>)")

    def _arguments(self, node: ast.Call, *, positional: int, keywords: frozenset[str]) -> None:
        name = self.src.segment(node.func)
        if not node.args or len(node.args) > positional:
            raise _Refused(node, f"{name}() takes {'1' if positional == 1 else f'1 to {positional}'} "
                                 f"positional arguments; got {len(node.args)}")
        for kw in node.keywords:
            if kw.arg not in keywords:
                raise _Refused(node, f"the keyword {kw.arg!r} of {name}() (allowed: "
                                     f"{', '.join(sorted(keywords)) or 'none'})")

    def _degree(self, node: ast.AST) -> None:
        value = _number(node)
        if value is None or value != int(value) or not 1 <= value <= MAX_POWER:
            raise _Refused(node, f"a degree other than a whole number from 1 to {MAX_POWER}")

    def categorical_call(self, node: ast.Call) -> None:
        self._arguments(node, positional=2, keywords=C_KEYWORDS)
        column = node.args[0]
        if not isinstance(column, ast.Name):
            raise _Refused(node, "C() takes a column name first")
        self.categorical.add(self.name(column))
        codings = node.args[1:] + [kw.value for kw in node.keywords if kw.arg == "contrasts"]
        if len(codings) > 1:
            raise _Refused(node, "C() takes one coding")
        for coding in codings:
            self.coding(coding)
        for kw in node.keywords:
            if kw.arg == "levels":
                if not isinstance(kw.value, (ast.List, ast.Tuple)) or not kw.value.elts:
                    raise _Refused(kw.value, "levels= must be a list of strings or numbers")
                for elt in kw.value.elts:
                    self._option(elt, numbers=True, strings=True)
            elif kw.arg == "spans_intercept":
                if not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool)):
                    raise _Refused(kw.value, "spans_intercept= must be True or False")

    def coding(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name) and node.id in CODINGS:
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CODINGS:
            if len(node.args) > 1:
                raise _Refused(node, f"{node.func.id}() takes at most one positional argument")
            for kw in node.keywords:
                if kw.arg not in CODINGS[node.func.id]:
                    raise _Refused(node, f"the keyword {kw.arg!r} of {node.func.id}() (allowed: "
                                         f"{', '.join(sorted(CODINGS[node.func.id])) or 'none'})")
            for value in [*node.args, *(kw.value for kw in node.keywords)]:
                if isinstance(value, (ast.List, ast.Tuple)):
                    for elt in value.elts:
                        self._option(elt, numbers=True, strings=False)
                else:
                    self._option(value, numbers=True, strings=True)
            return
        raise _Refused(node, f"a coding other than {', '.join(sorted(CODINGS))}")

    def _option(self, node: ast.AST, *, numbers: bool, strings: bool) -> None:
        """A literal option value: a string (no braces, backticks or backslashes), number or bool."""
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                return
            if strings and isinstance(value, str):
                # formulaic counts brackets inside C(...) without seeing quotes, so a bracket or a
                # quote in a string would split the text differently from Python: plain strings only.
                written = ast.get_source_segment(self.src.shown, node) or ""
                if not _PLAIN_STRING.match(written) or any(k in written for k in self.src.originals):
                    raise _Refused(node, "a string other than plain text in '...' or \"...\" without brackets, "
                                         "braces, quotes, backticks, backslashes, % or #")
                return
        if numbers and _number(node) is not None:
            return
        raise _Refused(node, f"an option value other than a {'string, ' if strings else ''}number or True/False")

    # --- arithmetic inside I() and transforms -----------------------------------------------
    def arithmetic(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            self.arithmetic(node.left)
            self.arithmetic(node.right)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            self.arithmetic(node.left)
            power = _number(node.right)
            if power is None or abs(power) > MAX_POWER:
                raise _Refused(node.right, f"a power other than a number from -{MAX_POWER} to {MAX_POWER}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.arithmetic(node.operand)
        elif _number(node) is not None:
            pass
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C":
            raise _Refused(node, "C() inside a transform")
        else:
            self.term(node)

    # --- contrasts --------------------------------------------------------------------------
    def contrast(self, node: ast.AST) -> None:
        rows = node.elts if isinstance(node, ast.Tuple) else [node]
        for row in rows:
            if isinstance(row, ast.Compare):
                if len(row.ops) != 1:
                    raise _Refused(row, "more than one '='")
                if not isinstance(row.ops[0], ast.Lt):
                    raise _Refused(row, "a comparison (only 'a = b' is allowed)")
                self.linear(row.left)
                self.linear(row.comparators[0])
            else:
                self.linear(row)

    def linear(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.BitAnd)):
            self.linear(node.left)
            self.linear(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.linear(node.operand)
        elif _number(node) is not None:
            pass
        elif isinstance(node, ast.Subscript):
            level = node.slice
            if not (isinstance(level, ast.Name) and level.id in self.src.levels):
                raise _Refused(node, "a subscript other than a level such as [T.depr]")
            self.term(node.value)
        else:
            self.term(node)


def _describe(node: ast.AST) -> str:
    """Why a node that is not a term is refused."""
    if isinstance(node, (ast.Set, ast.Dict, ast.SetComp, ast.DictComp)):
        return "braces run Python code in formulaic"
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, ast.Subscript):
        return "a subscript"
    if isinstance(node, ast.Lambda):
        return "a lambda"
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return "a string outside C() options"
    if isinstance(node, (ast.List, ast.Tuple)):
        return "a list outside C() options (weights are written alone: [0, 1, 0])"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.BinOp):
        return f"the operator {_OPERATORS.get(type(node.op), type(node.op).__name__)!r}"
    if isinstance(node, ast.Compare):
        return "a comparison"
    return f"a {type(node).__name__} expression"


def _parse(text: str, *, what: str, expected: str, contrast: bool) -> tuple[_Source, _Walker, ast.AST]:
    """Placeholders, token checks and the Python AST of ``text`` (ConfigError on failure)."""
    if any(ord(ch) < 32 and ch not in "\t\n\r" or ord(ch) == 127 for ch in text):
        raise ConfigError(f"{what}: control characters are not allowed; {expected}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{what}: expected at most {MAX_LENGTH} characters; got {len(text)}")
    body = re.sub(r"[\t\n\r]", " ", text).strip()
    try:
        src = _Source(body, levels=contrast)
        _tokens(src, contrast=contrast)
    except _Refused as exc:
        raise ConfigError(f"{what}: term {_short(exc.text or body)!r} is not allowed ({exc.reason}); {expected}") from None
    try:
        tree = ast.parse(src.parsed, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        raise ConfigError(f"{what}: could not parse it ({reason}); {expected}") from None
    return src, _Walker(src), tree


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
    what = f"formula {_short(formula)!r}"
    if "~" in formula:
        raise ConfigError(f"{what}: expected only the right-hand side (e.g. 'age + C(sex) + TIV'); "
                          "the maps are the left-hand side")
    if not formula.strip():
        raise ConfigError(f"formula: expected a formula such as 'age + C(sex) + TIV'; got {formula!r}")
    src, walker, tree = _parse(formula, what=what, expected=FORMULA_EXPECTED, contrast=False)
    try:
        walker.formula(tree)
    except _Refused as exc:
        term = exc.text if exc.text is not None else src.segment(exc.node) if exc.node is not None else formula
        raise ConfigError(f"{what}: term {_short(term)!r} is not allowed ({exc.reason}); "
                          f"{FORMULA_EXPECTED}") from None
    return FormulaTerms(variables=frozenset(walker.variables), categorical=frozenset(walker.categorical))


def is_numeric_contrast(text: str) -> bool:
    """True for weights written as numbers (``"0 1 0"``, ``"[0, 1, 0]"``, ``"0 1 0; 0 0 1"``)."""
    return bool(_NUMBERS.match(text) and re.search(r"\d", text))


def _check_weights(name: str, values: object, depth: int = 0) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        if isinstance(values, bool) or not isinstance(values, (int, float)):
            raise ConfigError(f"contrast {name!r}: expected numeric weights; got {values!r}")
        try:
            finite = math.isfinite(float(values))
        except OverflowError:
            finite = False
        if not finite:
            raise ConfigError(f"contrast {name!r}: weight {_short(repr(values), 30)} is not a finite number; "
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
    what = f"contrast {name!r} ({_short(expr, 60)!r})"
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
                              f"[[0, 1, 0], [0, 0, 1]]; got {_short(expr)!r}")
        for token in re.split(r"[\s,;\[\]]+", text):
            if not token:
                continue
            if not _FLOAT.match(token):
                raise ConfigError(f"contrast {name!r}: expected numbers such as '0 1 0' or '0 1 0; 0 0 1'; "
                                  f"got {_short(expr)!r}")
            if not math.isfinite(float(token)):
                raise ConfigError(f"contrast {name!r}: weight {token!r} is not a finite number; expected "
                                  "finite weights such as '0 1 0'")
        return
    body = text[2:] if text[:2].lower() == "f:" else text
    src, walker, tree = _parse(body, what=what, expected=CONTRAST_EXPECTED, contrast=True)
    try:
        walker.contrast(tree)
    except _Refused as exc:
        term = exc.text if exc.text is not None else src.segment(exc.node) if exc.node is not None else body
        raise ConfigError(f"{what}: term {_short(term)!r} is not allowed ({exc.reason}); "
                          f"{CONTRAST_EXPECTED}") from None
