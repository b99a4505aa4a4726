"""One bridge per Script operator, dropped (its worker thread stopped) once the operator is deleted.

Keyed by the operator's id (stable when the operator is renamed), so several operators may share
one callbacks module. TouchDesigner calls nothing when a Script operator is deleted, so every
callback into the module first drops the bridges whose operator is no longer `valid`; a worker
thread whose operator went without another callback following ends on its own when idle
(pipeline.IDLE_SECONDS).
"""

from __future__ import annotations

from typing import Any, Callable


class Bridges:
    """Operator -> its bridge, made on first use by `make()`."""

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._entries: dict[int, tuple[Any, Any]] = {}  # operator id -> (operator, bridge)

    def get(self, op) -> Any:
        self.sweep()
        entry = self._entries.get(op.id)
        if entry is None:
            entry = self._entries[op.id] = (op, self._make())
        return entry[1]

    def sweep(self) -> None:
        """Close and forget the bridges of deleted operators."""
        for key, (op, bridge) in list(self._entries.items()):
            if not op.valid:
                del self._entries[key]
                bridge.close()

    def values(self) -> list[Any]:
        return [bridge for _, bridge in self._entries.values()]
