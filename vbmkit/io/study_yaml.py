"""Reading a study YAML: duplicate keys rejected, and the line of every key kept for messages.

PyYAML silently keeps the last of two equal keys (two contrasts named ``age`` would lose one);
here that is an error. :func:`read_study_yaml` returns the parsed data with a map from each
key path (``("glm", "contrasts", "age")``) to its 1-based line, so that later validation can
say ``study.yaml:14: glm.fraction: ...``.

The loader is bounded (:class:`BoundedLoader`): aliases that would expand to more than
:data:`MAX_ALIAS_NODES` nodes (a "billion laughs" bomb), more than :data:`MAX_ALIASES`
aliases, an alias inside the node it names (a recursive anchor), nesting deeper than
:data:`MAX_DEPTH` and any tag outside YAML's standard types (``!!python/object``, ``!custom``)
are refused with the line, before anything is built from the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vbmkit.errors import ConfigError

KeyPath = tuple[Any, ...]

#: Most aliases (``*name``) a study YAML may hold.
MAX_ALIASES = 100
#: Most nodes all aliases together may add when expanded (a study needs a handful).
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of sequences and mappings (PyYAML's composer recurses once per level).
MAX_DEPTH = 100
#: Tags the safe constructor knows (str, int, float, bool, null, map, seq, timestamp, ...).
STANDARD_TAGS = frozenset(t for t in yaml.SafeLoader.yaml_constructors if t is not None)


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/object`` -> ``!!python/object`` (as written in the file)."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix):] if tag.startswith(prefix) else tag


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds on aliases, nesting and tags (see the module docstring).

    Parameters
    ----------
    stream : str
        The YAML text.
    name : str
        File name used in messages (``study.yaml``).

    Raises
    ------
    ConfigError
        While composing (``get_single_node``): ``NAME:LINE: ...`` for too many aliases, too
        large an alias expansion, a recursive anchor, too deep a nesting or a non-standard tag.

    Notes
    -----
    Composition keeps aliases as shared nodes, so a bomb costs nothing until something walks
    the tree; the bound is checked as each alias is met, with the expanded size of the named
    (complete) node memoised by identity, so the check itself is linear in the file.
    """

    def __init__(self, stream: str, *, name: str = "study.yaml") -> None:
        super().__init__(stream)
        self._name = name
        self._open: list[str] = []  # anchors of the nodes being composed (ancestors)
        self._depth = 0
        self._n_aliases = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}

    def _refuse(self, mark: yaml.Mark, message: str) -> ConfigError:
        return ConfigError(f"{self._name}:{mark.line + 1}: {message}")

    def _size(self, node: yaml.Node) -> int:
        """Nodes of ``node`` with every alias expanded (memoised; ``node`` is complete)."""
        stack, order = [node], []
        while stack:  # iterative post-order: no recursion limit on deep documents
            n = stack.pop()
            if id(n) in self._sizes:
                continue
            order.append(n)
            if isinstance(n, yaml.SequenceNode):
                stack.extend(n.value)
            elif isinstance(n, yaml.MappingNode):
                stack.extend(x for pair in n.value for x in pair)
        for n in reversed(order):
            if isinstance(n, yaml.SequenceNode):
                children = n.value
            elif isinstance(n, yaml.MappingNode):
                children = [x for pair in n.value for x in pair]
            else:
                children = []
            self._sizes[id(n)] = 1 + sum(self._sizes[id(c)] for c in children)
        return self._sizes[id(node)]

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML hook)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise self._refuse(event.start_mark, f"alias *{event.anchor}: expected an alias of a complete "
                                   f"node; it refers to a node that contains it (a recursive anchor)")
            self._n_aliases += 1
            if self._n_aliases > MAX_ALIASES:
                raise self._refuse(event.start_mark, f"expected at most {MAX_ALIASES} YAML aliases; "
                                   f"found more (alias *{event.anchor})")
            node = super().compose_node(parent, index)
            self._alias_nodes += self._size(node)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise self._refuse(event.start_mark, f"alias *{event.anchor}: expected YAML aliases to expand to "
                                   f"at most {MAX_ALIAS_NODES} nodes in all; they reach {self._alias_nodes} "
                                   f"here (an alias bomb?)")
            return node
        event = self.peek_event()
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if self._depth >= MAX_DEPTH:
                raise self._refuse(event.start_mark, f"expected sequences and mappings nested at most "
                                   f"{MAX_DEPTH} deep; found deeper nesting")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.append(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.pop()
        if node.tag not in STANDARD_TAGS:
            raise self._refuse(node.start_mark, f"tag {_short_tag(node.tag)}: expected plain YAML values "
                               f"(strings, numbers, booleans, lists, mappings); custom and Python tags are not read")
        if isinstance(node, yaml.ScalarNode):  # e.g. `!!int abc` fails here, with its line
            try:
                self.yaml_constructors[node.tag](self, node)
            except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as exc:
                problem = (getattr(exc, "problem", None) or str(exc)) if isinstance(exc, (yaml.YAMLError, ValueError)) \
                    else f"it cannot be read as {_short_tag(node.tag)}"
                raise self._refuse(node.start_mark, f"{_short_tag(node.tag)} {node.value!r}: expected a value "
                                   f"of this type; {problem}") from None
        return node


@dataclass(frozen=True, eq=False)
class StudyYaml:
    """A parsed study YAML.

    Attributes
    ----------
    path : Path
        The file, resolved to an absolute path.
    text : str
        The file's text as read (recorded in provenance).
    data : dict
        The parsed mapping.
    lines : dict
        Key path (tuple of keys and list indices) -> 1-based line number.
    """

    path: Path
    text: str
    data: dict
    lines: dict[KeyPath, int]

    def line_of(self, loc: KeyPath) -> int | None:
        """Line of the longest prefix of ``loc`` present in the file (None for the top level)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def where(self, loc: KeyPath) -> str:
        """``file:line`` (or just ``file``) for a key path, for messages."""
        line = self.line_of(loc)
        return f"{self.path.name}:{line}" if line is not None else self.path.name


def key_name(loc: KeyPath) -> str:
    """``glm.contrasts.age`` / ``inputs.t1[1]`` from a key path."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _walk(node: yaml.Node, loc: KeyPath, lines: dict[KeyPath, int], path: Path) -> None:
    if len(loc) > MAX_DEPTH:  # reachable through aliases of nested nodes; keeps the recursion bounded
        raise ConfigError(f"{path.name}:{node.start_mark.line + 1}: {key_name(loc[:3])}...: expected values "
                          f"nested at most {MAX_DEPTH} deep (aliases expanded); found deeper nesting")
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(f"{path.name}:{line}: {key_name((*loc, key))}: duplicate key "
                                  f"(first on line {first[key]}); expected each key once")
            first[key] = line
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _walk(item, (*loc, i), lines, path)


def read_study_yaml(path: str | os.PathLike) -> StudyYaml:
    """Read and parse a study YAML.

    Raises
    ------
    ConfigError
        Missing or unreadable file, YAML syntax error (with its line), a duplicate key (with
        both lines), a top level that is not a mapping, or what :class:`BoundedLoader`
        refuses (alias bombs, recursive anchors, deep nesting, Python or custom tags).
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(f"{path}: expected a study YAML file; it does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p.name}: expected a UTF-8 text file; could not read it ({exc})") from exc
    loader = BoundedLoader(text, name=p.name)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p.name}:{mark.line + 1}" if mark is not None else p.name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: expected valid YAML; {problem}") from None
    if node is None or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{p.name}: expected a mapping of sections (inputs:, glm:, ...); "
                          f"got {'an empty file' if node is None else 'a ' + node.tag.rsplit(':', 1)[-1]}")
    lines: dict[KeyPath, int] = {}
    _walk(node, (), lines, p)
    try:
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:  # e.g. a malformed !!timestamp or !!binary value
        mark = getattr(exc, "problem_mark", None)
        where = f"{p.name}:{mark.line + 1}" if mark is not None else p.name
        raise ConfigError(f"{where}: expected valid YAML values; {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    return StudyYaml(path=p, text=text, data=data, lines=lines)
