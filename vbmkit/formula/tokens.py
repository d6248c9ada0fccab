"""Text level of the formula whitelist: constants, placeholders for names and levels, token checks.

Text is turned into placeholders (backtick names, levels), checked token by token, parsed with
:func:`ast.parse` (never evaluated) and walked node by node (:mod:`vbmkit.formula.whitelist`);
any part outside the grammar raises :class:`Refused`, turned into one
:class:`~vbmkit.errors.ConfigError` naming the term. The grammar is documented in
:mod:`vbmkit.formula.grammar`.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
import unicodedata

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

OPERATORS = {ast.BitOr: "|", ast.BitXor: "^", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@",
              ast.LShift: "<<", ast.RShift: ">>", ast.Pow: "**", ast.BitAnd: ":"}
NUMBERS = re.compile(r"^[\s\[\]\d.,;eE+-]+$")
FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_LEVEL = re.compile(r"^[^\[\]{}'\"`\\]*$")
_BAD_IN_QUOTES = re.compile(r"[{}`\\]")
PLAIN_STRING = re.compile(r"""^(['"])[^()\[\]{}'"`\\%#]*\1$""")


class Refused(Exception):
    """A node (or a token) outside the grammar; turned into a ConfigError by the caller."""

    def __init__(self, node: ast.AST | None, reason: str, text: str | None = None) -> None:
        super().__init__(reason)
        self.node, self.reason, self.text = node, reason, text


def short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Source:
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
                raise Refused(None, "an unclosed backtick", text[i:])
            name = text[i + 1:end]
            if not name.strip() or _BAD_IN_QUOTES.search(name):
                raise Refused(None, "a backtick name must be non-empty, without braces, backticks or "
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


def check_tokens(src: Source, *, contrast: bool) -> None:
    """Token-level checks, then the ``:`` -> ``&`` (and contrast ``=`` -> ``<``) swaps."""
    chars = list(src.parsed)
    depth = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(src.parsed).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise Refused(None, f"could not parse it ({exc.args[0] if exc.args else exc})", src.show(src.parsed)) from None
    for tok in tokens:
        start = tok.start[1]
        if tok.type == tokenize.COMMENT:
            raise Refused(None, "'#' starts a Python comment", src.show(tok.string))
        if tok.type == tokenize.ERRORTOKEN and tok.string.strip():
            raise Refused(None, f"the character {tok.string.strip()!r}", src.show(tok.string.strip()))
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) and tok.string not in ("True", "False", "None"):
                raise Refused(None, f"the Python keyword {tok.string!r}", src.show(_rest(src.parsed, start)))
            if not tok.string.isascii() or unicodedata.normalize("NFKC", tok.string) != tok.string:
                raise Refused(None, "a name with non-ASCII characters (quote it in backticks)", tok.string)
        if tok.type != tokenize.OP:
            continue
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
        elif tok.string in ("&", "<", ":=") or (tok.string == "=" and not contrast and depth == 0):
            raise Refused(None, f"the operator {tok.string!r}", src.show(_rest(src.parsed, start)))
        elif tok.string == ":":
            chars[start] = "&"
        elif tok.string == "=" and depth == 0:
            chars[start] = "<"
    src.parsed = "".join(chars)


def _rest(text: str, start: int, limit: int = 40) -> str:
    return short(text[start:].strip(), limit)

