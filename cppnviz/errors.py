"""The exception hierarchy: user mistakes (exit 2) versus bugs (exit 1)."""

from __future__ import annotations

from dataclasses import dataclass


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
