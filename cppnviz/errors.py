"""The exception hierarchy: user mistakes (exit 2) versus bugs (exit 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def describe_found(value: Any) -> str:
    """A found value in the user's words: 'nothing', 'the text 'abc'', 'a list of 3', 'true', '0.5'."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value!r}" if value else "an empty text"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}" if value else "an empty list"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} {'key' if len(value) == 1 else 'keys'}" if value else "an empty mapping"
    return repr(value)


class CppnvizError(Exception):
    """A mistake the user can fix (bad graph, bad value, unreadable audio, unwritable output)."""

    def problems(self) -> list[str]:
        """One line per problem, for the command line's `error:` lines."""
        return [str(self)]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph: where it is, what was found and what was expected."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class GraphError(CppnvizError):
    """Every problem found while loading or configuring a graph, reported at once."""

    def __init__(self, problems: list[Problem]):
        self.items = list(problems)
        super().__init__("; ".join(str(p) for p in self.items))

    def problems(self) -> list[str]:
        return [str(p) for p in self.items]


class ParamError(CppnvizError):
    """A param value that has the wrong type or lies outside its range."""


class AudioError(CppnvizError):
    """Audio that is missing, empty, corrupt or in a format that cannot be decoded."""


class OutputError(CppnvizError):
    """An output that cannot be written."""


class NodeRunError(Exception):
    """A failure inside a node while running, re-raised with the node's name attached (a bug)."""

    def __init__(self, node: str, cause: BaseException):
        self.node = node
        self.cause = cause
        super().__init__(f"node '{node}': {type(cause).__name__}: {cause}")
