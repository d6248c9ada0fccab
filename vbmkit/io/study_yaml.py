"""Reading a study YAML: duplicate keys rejected, and the line of every key kept for messages.

PyYAML silently keeps the last of two equal keys (two contrasts named ``age`` would lose one);
here that is an error. :func:`read_study_yaml` returns the parsed data with a map from each
key path (``("glm", "contrasts", "age")``) to its 1-based line, so that later validation can
say ``study.yaml:14: glm.fraction: ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vbmkit.errors import ConfigError

KeyPath = tuple[Any, ...]


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
        both lines), or a top level that is not a mapping.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(f"{path}: expected a study YAML file; it does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p.name}: expected a UTF-8 text file; could not read it ({exc})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    data = yaml.safe_load(text)
    return StudyYaml(path=p, text=text, data=data, lines=lines)
