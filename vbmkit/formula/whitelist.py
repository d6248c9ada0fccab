"""AST level of the formula whitelist: walk the parsed text node by node, refuse what is not allowed.

The text level (placeholders, tokens, constants) is :mod:`vbmkit.formula.tokens`; the grammar is
documented in :mod:`vbmkit.formula.grammar`. Nothing is evaluated.
"""

from __future__ import annotations

import ast
import math
import re

from vbmkit.errors import ConfigError
from vbmkit.formula.tokens import (
    C_KEYWORDS,
    CODINGS,
    MAX_LENGTH,
    MAX_POWER,
    NUMPY_FUNCTIONS,
    OPERATORS,
    PLAIN_STRING,
    TRANSFORMS,
    Refused,
    Source,
    check_tokens,
    short,
)


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
        raise Refused(node, "a number that is not finite")
    return sign * value


class _Walker:
    """Checks an expression tree against the whitelist and collects the columns it names."""

    def __init__(self, src: Source) -> None:
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
                raise Refused(node.right, f"a power other than a whole number from 1 to {MAX_POWER}")
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
            raise Refused(node, _describe(node))

    def name(self, node: ast.Name) -> str:
        ident = node.id
        if ident in self.src.names:
            self.variables.add(self.src.names[ident])
            return self.src.names[ident]
        if ident in self.src.levels:
            raise Refused(node, "a level in brackets outside a contrast")
        if ident.startswith("__") or ident in ("np", "numpy"):
            raise Refused(node, f"the name {ident!r}")
        self.variables.add(ident)
        return ident

    # --- calls ----------------------------------------------------------------------------
    def call(self, node: ast.Call) -> None:
        func = node.func
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise Refused(node, "a starred argument")
        for kw in node.keywords:
            if kw.arg is None:
                raise Refused(node, "a '**' argument")
        if isinstance(func, ast.Attribute):
            if not (isinstance(func.value, ast.Name) and func.value.id == "np" and func.attr in NUMPY_FUNCTIONS):
                raise Refused(node, f"the function {self.src.segment(func)!r} (allowed: "
                                     f"{', '.join('np.' + f for f in sorted(NUMPY_FUNCTIONS))})")
            self._arguments(node, positional=1, keywords=frozenset())
            self.arithmetic(node.args[0])
            return
        if not isinstance(func, ast.Name):
            raise Refused(node, f"a call of {self.src.segment(func)!r}")
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
            raise Refused(node, f"the function {func.id!r} (allowed: C, I, {', '.join(sorted(TRANSFORMS))} "
                                 "and np.<name>)")

    def _arguments(self, node: ast.Call, *, positional: int, keywords: frozenset[str]) -> None:
        name = self.src.segment(node.func)
        if not node.args or len(node.args) > positional:
            raise Refused(node, f"{name}() takes {'1' if positional == 1 else f'1 to {positional}'} "
                                 f"positional arguments; got {len(node.args)}")
        for kw in node.keywords:
            if kw.arg not in keywords:
                raise Refused(node, f"the keyword {kw.arg!r} of {name}() (allowed: "
                                     f"{', '.join(sorted(keywords)) or 'none'})")

    def _degree(self, node: ast.AST) -> None:
        value = _number(node)
        if value is None or value != int(value) or not 1 <= value <= MAX_POWER:
            raise Refused(node, f"a degree other than a whole number from 1 to {MAX_POWER}")

    def categorical_call(self, node: ast.Call) -> None:
        self._arguments(node, positional=2, keywords=C_KEYWORDS)
        column = node.args[0]
        if not isinstance(column, ast.Name):
            raise Refused(node, "C() takes a column name first")
        self.categorical.add(self.name(column))
        codings = node.args[1:] + [kw.value for kw in node.keywords if kw.arg == "contrasts"]
        if len(codings) > 1:
            raise Refused(node, "C() takes one coding")
        for coding in codings:
            self.coding(coding)
        for kw in node.keywords:
            if kw.arg == "levels":
                if not isinstance(kw.value, (ast.List, ast.Tuple)) or not kw.value.elts:
                    raise Refused(kw.value, "levels= must be a list of strings or numbers")
                for elt in kw.value.elts:
                    self._option(elt, numbers=True, strings=True)
            elif kw.arg == "spans_intercept":
                if not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool)):
                    raise Refused(kw.value, "spans_intercept= must be True or False")

    def coding(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name) and node.id in CODINGS:
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CODINGS:
            if len(node.args) > 1:
                raise Refused(node, f"{node.func.id}() takes at most one positional argument")
            for kw in node.keywords:
                if kw.arg not in CODINGS[node.func.id]:
                    raise Refused(node, f"the keyword {kw.arg!r} of {node.func.id}() (allowed: "
                                         f"{', '.join(sorted(CODINGS[node.func.id])) or 'none'})")
            for value in [*node.args, *(kw.value for kw in node.keywords)]:
                if isinstance(value, (ast.List, ast.Tuple)):
                    for elt in value.elts:
                        self._option(elt, numbers=True, strings=False)
                else:
                    self._option(value, numbers=True, strings=True)
            return
        raise Refused(node, f"a coding other than {', '.join(sorted(CODINGS))}")

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
                if not PLAIN_STRING.match(written) or any(k in written for k in self.src.originals):
                    raise Refused(node, "a string other than plain text in '...' or \"...\" without brackets, "
                                         "braces, quotes, backticks, backslashes, % or #")
                return
        if numbers and _number(node) is not None:
            return
        raise Refused(node, f"an option value other than a {'string, ' if strings else ''}number or True/False")

    # --- arithmetic inside I() and transforms -----------------------------------------------
    def arithmetic(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            self.arithmetic(node.left)
            self.arithmetic(node.right)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            self.arithmetic(node.left)
            power = _number(node.right)
            if power is None or abs(power) > MAX_POWER:
                raise Refused(node.right, f"a power other than a number from -{MAX_POWER} to {MAX_POWER}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.arithmetic(node.operand)
        elif _number(node) is not None:
            pass
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C":
            raise Refused(node, "C() inside a transform")
        else:
            self.term(node)

    # --- contrasts --------------------------------------------------------------------------
    def contrast(self, node: ast.AST) -> None:
        rows = node.elts if isinstance(node, ast.Tuple) else [node]
        for row in rows:
            if isinstance(row, ast.Compare):
                if len(row.ops) != 1:
                    raise Refused(row, "more than one '='")
                if not isinstance(row.ops[0], ast.Lt):
                    raise Refused(row, "a comparison (only 'a = b' is allowed)")
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
                raise Refused(node, "a subscript other than a level such as [T.depr]")
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
        return f"the operator {OPERATORS.get(type(node.op), type(node.op).__name__)!r}"
    if isinstance(node, ast.Compare):
        return "a comparison"
    return f"a {type(node).__name__} expression"


def _parse(text: str, *, what: str, expected: str, contrast: bool) -> tuple[Source, _Walker, ast.AST]:
    """Placeholders, token checks and the Python AST of ``text`` (ConfigError on failure)."""
    if any(ord(ch) < 32 and ch not in "\t\n\r" or ord(ch) == 127 for ch in text):
        raise ConfigError(f"{what}: control characters are not allowed; {expected}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{what}: expected at most {MAX_LENGTH} characters; got {len(text)}")
    body = re.sub(r"[\t\n\r]", " ", text).strip()
    try:
        src = Source(body, levels=contrast)
        check_tokens(src, contrast=contrast)
    except Refused as exc:
        raise ConfigError(f"{what}: term {short(exc.text or body)!r} is not allowed ({exc.reason}); {expected}") from None
    try:
        tree = ast.parse(src.parsed, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        raise ConfigError(f"{what}: could not parse it ({reason}); {expected}") from None
    return src, _Walker(src), tree

def walk(text: str, *, what: str, expected: str, contrast: bool) -> _Walker:
    """Parse ``text`` and walk it as a formula or a contrast; the walker holds the names it saw.

    Raises
    ------
    ConfigError
        ``WHAT: term '...' is not allowed (why); EXPECTED`` for the first part outside the grammar.
    """
    src, walker, tree = _parse(text, what=what, expected=expected, contrast=contrast)
    try:
        walker.contrast(tree) if contrast else walker.formula(tree)
    except Refused as exc:
        term = exc.text if exc.text is not None else src.segment(exc.node) if exc.node is not None else text
        raise ConfigError(f"{what}: term {short(term)!r} is not allowed ({exc.reason}); {expected}") from None
    return walker
