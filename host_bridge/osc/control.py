"""The control plane: OSC messages in, validated param changes queued, applied between ticks.

Addresses are `/<node>/<param>` (a value in the param's own units) and
`/<node>/<param>/norm` (one number 0..1 placed on the param's fader, linear or
log as the param declares, for controllers that send faders as 0..1). A message
with no arguments is a query: `handle()` returns the current value for the
server to send back. A param the graph drives (`drive:`) refuses values (the drive
sets it every tick); its mapping is steered at `/<node>/<param>/drive/min`, `.../max`
and `.../amount` (0..1: from the static value to the driven one).

`handle()` runs on the network thread and only validates and queues;
`apply_pending()` runs on the render thread at the start of a tick. A
controller's overshoot is clamped and counted, never an error that stops a
show; a wrong type, an unknown address or a file param (which cannot change
while the show runs) is rejected, counted and logged. Changes to a node's heavy
params (`Node.heavy`) are built on a worker thread and swapped in when ready
(cppnviz.rebuild), the old version on screen meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

from cppnviz.errors import CppnvizError, ParamError
from cppnviz.params import Param
from cppnviz.rebuild import Rebuilds

from .convert import from_norm, from_value, to_norm
from .ratelimit import RateLimitedLog

logger = logging.getLogger(__name__)

# received: messages taken in; applied: changes made; clamped: values brought into range; rejected: wrong
# type, unknown address, a file param while running, refused by the node; malformed / oversized: packets
# not parsed; query: queries answered; coalesced: changes replaced by a newer one to the same param before
# their tick; unchanged: changes to the value a param already had (skipped: no needless reconfigure);
# dropped: timed changes over the bound; overflow: packets the kernel dropped, the socket's receive buffer
# full; errors: socket failures and bugs (logged with a traceback).
STATS = ("received", "applied", "clamped", "rejected", "malformed", "oversized", "query",
         "coalesced", "unchanged", "dropped", "overflow", "errors")

NORM = "norm"
DRIVE = "drive"
DRIVE_FIELDS = ("min", "max", "amount")
FILE_WHILE_RUNNING = ("a file cannot change while the show runs (it was read before the first frame); "
                      "restart with the new file")


class ParamControl:
    """Thread-safe control plane: validated param changes queued until the next tick."""

    # Changes timed for the future wait here until due; bounded so a sender
    # scheduling far ahead cannot grow memory without limit (oldest dropped).
    max_timed = 1024

    def __init__(self, graph, *, rebuilds: Rebuilds | None = None):
        self.graph = graph
        self.rebuilds = rebuilds if rebuilds is not None else Rebuilds(graph)
        # address -> (node name, declaration, normalised form?); built once so a message costs one lookup.
        self._targets: dict[str, tuple[str, Param, bool]] = {}
        for node in graph.nodes.values():
            for decl in node.params:
                self._targets[f"/{node.name}/{decl.name}"] = (node.name, decl, False)
                self._targets[f"/{node.name}/{decl.name}/{NORM}"] = (node.name, decl, True)
        # Driven params, and their mapping fields: address -> (drive, field, the field's declaration).
        self._drives = {(d.spec.node, d.spec.param): d for d in graph.drives}
        self._drive_targets = {f"/{d.spec.node}/{d.spec.param}/{DRIVE}/{name}": (d, name, decl)
                               for d in graph.drives for name, decl in d.fields()}
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
        None, or a time already past, means at the next tick. Never raises. The message is counted as
        received once it is fully handled (queued, or rejected and logged), so whoever sees the count
        may apply what it counted.
        """
        try:
            return self._handle(address, args, timetag)
        finally:
            self.count("received")

    def _handle(self, address: str, args: list, timetag: float | None) -> list | None:
        target = self._targets.get(address)
        if target is None and address in self._drive_targets:
            return self._steer(address, args, timetag)
        if target is None:
            self.reject(address, args, "no such param; addresses are /<node>/<param> or /<node>/<param>/norm",
                        kind="address")
            return None
        node, decl, norm = target
        if not args:
            return self._query(address, node, decl, norm)
        drive = self._drives.get((node, decl.name))
        if drive is not None:
            self.reject(address, args, f"the param is driven by {drive.spec.label} (drive:); steer the mapping at "
                                       f"/{node}/{decl.name}/{DRIVE}/min, /max or /amount", kind="driven")
            return None
        if decl.type == "path":
            # Every param naming a file: the show read (or opened) it before its first frame.
            self.reject(address, args, FILE_WHILE_RUNNING, kind="file")
            return None
        try:
            value, clamped = from_norm(decl, args) if norm else from_value(decl, args)
        except ParamError as exc:
            self.reject(address, args, str(exc), kind="value")
            return None
        if clamped:
            self.count("clamped")
        self._queue(node, decl.name, value, timetag)
        return None

    def _steer(self, address: str, args: list, timetag: float | None) -> list | None:
        """A mapping field of a drive: a query, or a number checked against the field's range and queued."""
        drive, name, decl = self._drive_targets[address]
        if not args:
            self.count("query")
            return [getattr(drive.mapping, name)]
        try:
            value, clamped = from_value(decl, args)
        except ParamError as exc:
            self.reject(address, args, str(exc), kind="value")
            return None
        if clamped:
            self.count("clamped")
        self._queue(drive.spec.node, f"{drive.spec.param}/{DRIVE}/{name}", value, timetag)
        return None

    def reject(self, address: str, args: Any, reason: str, *, kind: str = "value") -> None:
        """Count and log a message that cannot be applied (the log names the address and the value).

        The log is rate-limited per `kind` (address, value, file, refused, heavy), so a flood of
        one kind never hides the first of another.
        """
        shown = args[0] if isinstance(args, list) and len(args) == 1 else args
        what = f"{address} {shown!r}" if shown != [] else address
        self._log.warning(f"rejected:{kind}", "OSC %s rejected: %s", what, reason)
        self.count("rejected")  # last: whoever sees the count (a test, a monitor) also finds the log line

    def superseded(self, n: int) -> None:
        """Count `n` messages the server took in but never read: a newer one to the same address came in the same read."""
        with self._lock:
            self.stats["received"] += n
            self.stats["coalesced"] += n

    def count(self, key: str, n: int = 1) -> None:
        """Add to one of the `stats` counters (both threads count, so under the lock)."""
        with self._lock:
            self.stats[key] += n

    def summary(self) -> str:
        """The counters in one line, for the end of a run."""
        with self._lock:
            s = dict(self.stats)
        parts = [f"{s[k]} {k}" for k in ("received", "applied", "coalesced", "rejected")]
        lost = {"receive buffer full": s["overflow"], "timed queue full": s["dropped"]}
        detail = ", ".join(f"{n} {why}" for why, n in lost.items() if n)
        parts.append(f"{sum(lost.values())} dropped" + (f" ({detail})" if detail else ""))
        parts += [f"{s[k]} {k}" for k in ("unchanged", "clamped", "malformed", "oversized", "query", "errors") if s[k]]
        return "OSC in: " + ", ".join(parts)

    def _query(self, address: str, node: str, decl: Param, norm: bool) -> list | None:
        value = getattr(self.graph.nodes[node].p, decl.name)
        if norm:
            try:
                value = to_norm(decl, value)
            except ParamError as exc:
                self.reject(address, [], str(exc), kind="value")
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
    def apply_pending(self, now: float | None = None, *, wait: float = 0.0) -> int:
        """Apply every queued change that is due, in arrival order, the last change of a param winning.

        Call at the start of a tick on the render thread. Never waits for the
        network: the lock is held only to swap the queues out. Changes to heavy
        params go to a worker; the ones it finished are swapped in here. With
        `wait` (seconds), waits for the worker to finish too (tests, scripts).
        Returns how many changes were applied.
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
        applied = self._adopt()
        heavy: dict[str, dict[str, Any]] = {}
        for (node, param), (_, value) in sorted(latest.items(), key=lambda kv: kv[1][0]):
            if f"/{DRIVE}/" in param:
                applied += self._steer_now(node, param, value)
            elif self.rebuilds.handles(node, param):
                # Several params of one node changed in one tick are built together.
                if value == self.rebuilds.target(node, param):
                    self.count("unchanged")
                else:
                    heavy.setdefault(node, {})[param] = value
            else:
                applied += self._apply(node, param, value)
        for node, changes in heavy.items():
            self.rebuilds.submit(node, changes)
        if wait and self.rebuilds.busy():
            self.rebuilds.wait(wait)
            applied += self._adopt()
        if applied:
            self.count("applied", applied)
        return applied

    def _steer_now(self, node: str, key: str, value: float) -> bool:
        """Set a drive's mapping field (key 'param/drive/field'); the drive uses it from this tick on."""
        param, _, name = key.split("/")
        drive = self._drives[(node, param)]
        if getattr(drive.mapping, name) == value:
            self.count("unchanged")
            return False
        drive.steer(name, value)
        return True

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
            self.reject(f"/{node}/{param}", [value], str(exc), kind="refused")
            return False
        return True

    def _adopt(self) -> int:
        """Swap in the heavy changes built since the last tick; count and log the ones refused."""
        applied = 0
        for outcome in self.rebuilds.collect():
            if outcome.problem is None:
                applied += len(outcome.changes)
                logger.debug("node '%s': %s built off the render thread in %.3f s (trial frame %s)", outcome.node,
                             outcome.changes, outcome.build_s,
                             "none" if outcome.trial_s is None else f"{outcome.trial_s:.3f} s")
                continue
            # One line for the batch, naming every address in it; each change counts as rejected.
            self.count("rejected", len(outcome.changes) - 1)
            addresses = " ".join(f"/{outcome.node}/{name} {value!r}" for name, value in outcome.changes.items())
            self.reject(addresses, [], outcome.problem, kind="heavy")
        return applied

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

    def drive(self, node: str, param: str):
        """The drive that sets this param, or None."""
        return self._drives.get((node, param))

    def pending(self) -> int:
        """How many changes are waiting (due now or later)."""
        with self._lock:
            return len(self._now) + len(self._timed)

