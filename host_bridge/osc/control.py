"""The control plane: OSC messages in, validated param changes queued, applied between ticks.

Addresses are `/<node>/<param>` (a value in the param's own units) and
`/<node>/<param>/norm` (one number 0..1 mapped onto the param's range, for
controllers that send faders as 0..1). A message with no arguments is a query:
`handle()` returns the current value for the server to send back.

`handle()` runs on the network thread and only validates and queues;
`apply_pending()` runs on the render thread at the start of a tick. A
controller's overshoot is clamped and counted, never an error that stops a
show; a wrong type or an unknown address is rejected, counted and logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

from cppnviz.errors import CppnvizError, ParamError
from cppnviz.graph import resolve_path
from cppnviz.params import Param

from .ratelimit import RateLimitedLog

logger = logging.getLogger(__name__)

# received: messages handled; applied: changes made by apply_pending; clamped: values brought into range;
# rejected: wrong type, unknown address, or refused by the node; malformed / oversized: packets not parsed;
# query: queries answered; coalesced: changes replaced by a later one before their tick; unchanged: changes
# to the value a param already had (skipped: no needless reconfigure); dropped: timed changes over the
# bound; errors: socket failures and bugs (logged with a traceback).
STATS = ("received", "applied", "clamped", "rejected", "malformed", "oversized", "query",
         "coalesced", "unchanged", "dropped", "errors")

NORM = "norm"


class ParamControl:
    """Thread-safe control plane: validated param changes queued until the next tick."""

    # Changes timed for the future wait here until due; bounded so a sender
    # scheduling far ahead cannot grow memory without limit (oldest dropped).
    max_timed = 1024

    def __init__(self, graph):
        self.graph = graph
        # address -> (node name, declaration, normalised form?); built once so a message costs one lookup.
        self._targets: dict[str, tuple[str, Param, bool]] = {}
        for node in graph.nodes.values():
            for decl in node.params:
                self._targets[f"/{node.name}/{decl.name}"] = (node.name, decl, False)
                self._targets[f"/{node.name}/{decl.name}/{NORM}"] = (node.name, decl, True)
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self._lock = threading.Lock()
        self._seq = 0
        # Due now: (node, param) -> (arrival number, value); one entry per param, the latest wins.
        self._now: dict[tuple[str, str], tuple[int, Any]] = {}
        # Due later: (due time, node, param) -> (arrival number, value), in arrival order.
        self._timed: OrderedDict[tuple[float, str, str], tuple[int, Any]] = OrderedDict()
        self._next_due = math.inf
        self._log = RateLimitedLog(logger)

    # -- network thread ---------------------------------------------------------
    def handle(self, address: str, args: list, timetag: float | None = None) -> list | None:
        """Validate one message and queue the change; return the reply arguments for a query, else None.

        `timetag` is the time.time() at which the change is due (from a bundle);
        None, or a time already past, means at the next tick. Never raises.
        """
        self.count("received")
        target = self._targets.get(address)
        if target is None:
            self.reject(address, args, "no such param; addresses are /<node>/<param> or /<node>/<param>/norm")
            return None
        node, decl, norm = target
        if not args:
            return self._query(address, node, decl, norm)
        try:
            value, clamped = _from_norm(decl, args) if norm else _from_value(decl, args)
        except ParamError as exc:
            self.reject(address, args, str(exc))
            return None
        if decl.type == "path":
            value = resolve_path(decl, value, self.graph.ctx.base_dir)
        if clamped:
            self.count("clamped")
        self._queue(node, decl.name, value, timetag)
        return None

    def reject(self, address: str, args: Any, reason: str) -> None:
        """Count and log a message that cannot be applied (the log names the address and the value)."""
        self.count("rejected")
        shown = args[0] if isinstance(args, list) and len(args) == 1 else args
        self._log.warning("rejected", "OSC %s %r rejected: %s", address, shown, reason)

    def count(self, key: str, n: int = 1) -> None:
        """Add to one of the `stats` counters (both threads count, so under the lock)."""
        with self._lock:
            self.stats[key] += n

    def _query(self, address: str, node: str, decl: Param, norm: bool) -> list | None:
        value = getattr(self.graph.nodes[node].p, decl.name)
        if norm:
            try:
                value = _to_norm(decl, value)
            except ParamError as exc:
                self.reject(address, [], str(exc))
                return None
        self.count("query")
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def _queue(self, node: str, param: str, value: Any, timetag: float | None) -> None:
        later = timetag is not None and timetag > time.time()
        with self._lock:
            seq = self._seq
            self._seq += 1
            if not later:
                key = (node, param)
                if self._now.pop(key, None) is not None:
                    self.stats["coalesced"] += 1
                self._now[key] = (seq, value)  # re-inserted: ordered by its latest arrival
                return
            tkey = (timetag, node, param)
            if self._timed.pop(tkey, None) is not None:
                self.stats["coalesced"] += 1
            self._timed[tkey] = (seq, value)
            self._next_due = min(self._next_due, timetag)
            if len(self._timed) > self.max_timed:
                self._timed.popitem(last=False)
                self.stats["dropped"] += 1
                dropped = True
            else:
                dropped = False
        if dropped:
            self._log.warning("dropped", "more than %d timed OSC changes waiting; dropped the oldest", self.max_timed)

    # -- render thread ------------------------------------------------------------
    def apply_pending(self, now: float | None = None) -> int:
        """Apply every queued change that is due, in arrival order, the last change of a param winning.

        Call at the start of a tick on the render thread. Never waits for the
        network: the lock is held only to swap the queues out. Returns how many
        changes were applied.
        """
        now = time.time() if now is None else now
        with self._lock:
            batch, self._now = self._now, {}
            due: list[tuple[tuple[float, str, str], tuple[int, Any]]] = []
            if self._timed and now >= self._next_due:
                due = [(k, v) for k, v in self._timed.items() if k[0] <= now]
                for k, _ in due:
                    del self._timed[k]
                self._next_due = min((k[0] for k in self._timed), default=math.inf)
        latest = batch
        for (_, node, param), (seq, value) in due:
            held = latest.get((node, param))
            if held is None or held[0] < seq:
                latest[(node, param)] = (seq, value)
        applied = 0
        for (node, param), (_, value) in sorted(latest.items(), key=lambda kv: kv[1][0]):
            applied += self._apply(node, param, value)
        if applied:
            self.count("applied", applied)
        return applied

    def _apply(self, node: str, param: str, value: Any) -> bool:
        target = self.graph.nodes[node]
        old = getattr(target.p, param)
        if value == old:
            # Controllers resend a held fader's value; reconfiguring a node for it would
            # cost time and may reset its state.
            self.count("unchanged")
            return False
        try:
            target.set_param(param, value, clamp=True)
        except CppnvizError as exc:
            # The value passed its own check but the node refused it (its other params, or a
            # change of output shape mid-run); set_param has already put the old value back.
            self.reject(f"/{node}/{param}", [value], str(exc))
            return False
        return True

    # -- any thread -------------------------------------------------------------------
    def value(self, node: str, param: str) -> Any:
        """The current (applied) value of a param; KeyError if there is no such param."""
        target = self._targets.get(f"/{node}/{param}")
        if target is None:
            raise KeyError(f"{node}.{param}")
        return getattr(self.graph.nodes[node].p, param)

    def addresses(self) -> list[tuple[str, str, Param]]:
        """(node, param name, declaration) for every param of every node, in graph order."""
        return [(node.name, decl.name, decl) for node in self.graph.nodes.values() for decl in node.params]

    def pending(self) -> int:
        """How many changes are waiting (due now or later)."""
        with self._lock:
            return len(self._now) + len(self._timed)


# -- conversions (pure functions of a declaration and the OSC arguments) ----------------

def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _from_value(decl: Param, args: list) -> tuple[Any, bool]:
    """A value in the param's own units: (checked value, clamped?)."""
    if decl.type == "floats":
        # One number sets every band; several set one each.
        return decl.check(list(args) if len(args) > 1 else args[0], clamp=True)
    if len(args) != 1:
        raise ParamError(f"expected one value ({decl.expected()}), found {len(args)}")
    value = args[0]
    # Toggles on most controllers send 0/1 numbers rather than OSC T/F.
    if decl.type == "bool" and _is_number(value) and value in (0, 1):
        value = bool(value)
    return decl.check(value, clamp=True)


def _from_norm(decl: Param, args: list) -> tuple[Any, bool]:
    """One number 0..1 mapped onto the param's range: (checked value, clamped?)."""
    if len(args) != 1 or not _is_number(args[0]) or not math.isfinite(args[0]):
        found = args[0] if len(args) == 1 else args
        raise ParamError(f"expected one number 0..1, found {found!r}")
    x = float(args[0])
    clamped = not 0.0 <= x <= 1.0
    x = min(max(x, 0.0), 1.0)
    if decl.type == "bool":
        return x >= 0.5, clamped
    if decl.type == "choice":
        n = len(decl.choices)
        return decl.choices[min(int(math.floor(x * n)), n - 1)], clamped
    if decl.type in ("str", "path"):
        raise ParamError(f"a {decl.type} param has no 0..1 form; send the text to /<node>/{decl.name}")
    value, _ = decl.check(decl.normalized(x), clamp=True)
    return value, clamped


def _to_norm(decl: Param, value: Any) -> Any:
    """The inverse of _from_norm, for queries on /norm addresses."""
    if decl.type == "bool":
        return 1.0 if value else 0.0
    if decl.type == "choice":
        n = len(decl.choices)
        # i/(n-1) lands inside choice i's slice of floor(x*n) and spans 0..1.
        return decl.choices.index(value) / (n - 1) if n > 1 else 0.0
    if decl.type in ("str", "path") or decl.min is None or decl.max is None:
        raise ParamError(f"param '{decl.name}' has no range to map onto 0..1")
    span = (decl.max - decl.min) or 1.0
    if isinstance(value, (list, tuple)):
        return [(float(v) - decl.min) / span for v in value]
    return (float(value) - decl.min) / span
