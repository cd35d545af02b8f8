"""Reading validated values out of a composed YAML node tree, with positions.

PyYAML's ``compose`` keeps every node's start mark, so each problem can name
the file, line and column it is about. A :class:`Reader` collects problems
instead of stopping at the first, so one ``validate`` run shows them all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policy.model import PolicyError

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_constructor = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, and where."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PolicyLoadError(PolicyError):
    """A bundle or cases file is not valid; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in problems))


class Reader:
    """Typed access to YAML nodes that records a :class:`Problem` for each mismatch.

    Every accessor returns None after recording a problem, so callers skip the
    broken item and carry on looking for more.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, node: Node | None, message: str) -> None:
        """Record a problem at ``node`` (or at the top of the file)."""
        line = node.start_mark.line + 1 if node is not None else 1
        column = node.start_mark.column + 1 if node is not None else 1
        self.problems.append(Problem(self.source, line, column, message))

    def compose(self, data: bytes) -> Node | None:
        """Parse ``data`` into a node tree; None (with a problem) when it is not YAML."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.fail(None, f"not UTF-8 (byte {exc.start})")
            return None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            column = mark.column + 1 if mark else 1
            what = exc.problem or exc.context or "invalid YAML"
            self.problems.append(Problem(self.source, line, column, f"YAML syntax: {what}"))
            return None
        except yaml.YAMLError as exc:
            self.fail(None, f"YAML syntax: {type(exc).__name__}")
            return None
        if node is None:
            self.fail(None, "the file is empty")
        return node

    def mapping(
        self,
        node: Node,
        what: str,
        required: Collection[str] = (),
        optional: Collection[str] | None = None,
        *,
        extensions: bool = False,
    ) -> dict[str, Node] | None:
        """A mapping with string keys. With ``optional`` given, other keys are errors.

        With ``extensions``, keys starting with ``x-`` are skipped: they hold
        YAML anchors (shared lists) and notes that are not part of the schema.
        """
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping")
            return None
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, f"a key of {what}")
            if key is None:
                continue
            if key in out:
                self.fail(key_node, f"duplicate key {key!r} in {what}")
                continue
            if extensions and key.startswith("x-"):
                continue
            if optional is not None and key not in required and key not in optional:
                known = ", ".join(sorted({*required, *optional}))
                self.fail(key_node, f"unknown key {key!r} in {what}; known keys: {known}")
                continue
            out[key] = value_node
        missing = [k for k in required if k not in out]
        for key in missing:
            self.fail(node, f"{what} is missing the required key {key!r}")
        return out

    def keyed(self, node: Node, what: str) -> list[tuple[str, Node, Node]] | None:
        """A mapping with free string keys, as (key, key node, value node) in file order."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping")
            return None
        out: list[tuple[str, Node, Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = self.string(key_node, f"a key of {what}")
            if key is None:
                continue
            if key in seen:
                self.fail(key_node, f"duplicate key {key!r} in {what}")
                continue
            seen.add(key)
            out.append((key, key_node, value_node))
        return out

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        """A YAML list."""
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{what} must be a list")
            return None
        return list(node.value)

    def string(self, node: Node, what: str, *, empty: bool = False) -> str | None:
        """A string scalar (quoted or plain, but not a number, bool or null)."""
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            self.fail(node, f"{what} must be a string{_hint(node)}")
            return None
        value = str(node.value)
        if not empty and not value.strip():
            self.fail(node, f"{what} must not be empty")
            return None
        return value

    def integer(self, node: Node, what: str, *, minimum: int | None = None) -> int | None:
        """An integer scalar, at least ``minimum``."""
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.fail(node, f"{what} must be an integer{_hint(node)}")
            return None
        value = _constructor.construct_object(node)
        assert isinstance(value, int)
        if minimum is not None and value < minimum:
            self.fail(node, f"{what} must be at least {minimum}, not {value}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        """A true/false scalar."""
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.fail(node, f"{what} must be true or false{_hint(node)}")
            return None
        value = _constructor.construct_object(node)
        assert isinstance(value, bool)
        return value

    def strings(self, node: Node, what: str, *, scalar_ok: bool = True) -> list[tuple[str, Node]]:
        """A list of strings (or one string when ``scalar_ok``), each with its node."""
        if scalar_ok and isinstance(node, ScalarNode):
            value = self.string(node, what)
            return [] if value is None else [(value, node)]
        items = self.sequence(node, what)
        if items is None:
            return []
        out: list[tuple[str, Node]] = []
        seen: set[str] = set()
        for item in items:
            value = self.string(item, f"an item of {what}")
            if value is None:
                continue
            if value in seen:
                self.fail(item, f"{value!r} is listed twice in {what}")
                continue
            seen.add(value)
            out.append((value, item))
        return out

    def check(self) -> None:
        """Raise :class:`PolicyLoadError` when any problem was recorded."""
        if self.problems:
            raise PolicyLoadError(sorted(self.problems, key=lambda p: (p.line, p.column)))


def _hint(node: Node) -> str:
    if isinstance(node, ScalarNode):
        kind = node.tag.rsplit(":", 1)[-1]
        return f", not a {kind} (quote it if it is meant as text)"
    if isinstance(node, MappingNode):
        return ", not a mapping"
    if isinstance(node, SequenceNode):
        return ", not a list"
    return ""
