"""Heavy param changes, built on a worker thread and swapped in between ticks: a slow rebuild never holds a frame.

A node names its slow-to-apply params in `Node.heavy` (the cppn rebuilds its network for most of
them). Live, the control plane hands changes to those params to `Rebuilds`: on a worker thread a
copy of the node is configured for the new values and makes one trial frame from blank inputs
(paying first-use costs, such as compiling a GPU kernel, and timing it), while the node itself
keeps rendering the old version. Between two ticks the render thread adopts the finished copy.
Changes to several params of one node made in the same tick are built together.

A version whose trial frame is too slow is refused, and the old one kept: swapping it in would
freeze the show (`/cppn/hidden 256` with `/cppn/layers 32` takes seconds a frame on a CPU).
"Too slow" is over `limit_s` and also over `SLOWER` times the current version's own trial
(measured the same way on the first change), so a show that chose a large frame at the start
can still change its seed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CppnvizError
from .graph import Graph
from .node import Node
from .ports import AudioWindow, Spec, to_host
from .timebase import tick

log = logging.getLogger(__name__)

# A trial frame, made on one core beside the running show, may take this long: longer, and the
# picture would update fewer than four times a second once swapped in.
LIMIT_S = 0.25
# ... unless the version running now is itself that slow (a large frame chosen at the start):
# then a new version may take up to this many times as long as it.
SLOWER = 2.0

_worker = threading.local()


def off_render_thread() -> bool:
    """True on a rebuild worker: work done here should stay on this thread, leaving shared pools to the frame being rendered."""
    return getattr(_worker, "active", False)


@dataclass
class Outcome:
    """What became of one node's batch of changes."""

    node: str
    changes: dict[str, Any]
    problem: str | None = None       # why it was refused; None when it was adopted
    build_s: float = 0.0             # configure() on the worker
    trial_s: float | None = None     # the trial frame (None: the node made none)


@dataclass
class _Job:
    changes: dict[str, Any]
    twin: Node
    current: Node | None             # a copy of the running version, to time it (first change only)
    current_s: float | None = None   # its trial frame, when it was timed
    outcome: Outcome = field(init=False)


class Rebuilds:
    """Builds heavy changes on worker threads, one node at a time each; collect() swaps finished ones in."""

    def __init__(self, graph: Graph, *, limit_s: float = LIMIT_S):
        self.graph = graph
        self.limit_s = limit_s
        # Render thread only: node -> changes waiting for that node's running build to finish.
        self._waiting: dict[str, dict[str, Any]] = {}
        self._building: dict[str, _Job] = {}
        self._trial_s: dict[str, float] = {}   # node -> the running version's trial frame
        self._finished: list[_Job] = []         # filled by workers
        self._cond = threading.Condition()

    # -- render thread, between ticks ----------------------------------------------------
    def handles(self, node: str, param: str) -> bool:
        """Whether a change goes through a worker: a heavy param, or any param of a node being rebuilt."""
        return param in self.graph.nodes[node].heavy or node in self._building

    def target(self, node: str, param: str) -> Any:
        """The value a param is heading for: the latest change handed in, else its current value."""
        for changes in (self._waiting.get(node), getattr(self._building.get(node), "changes", None)):
            if changes and param in changes:
                return changes[param]
        return getattr(self.graph.nodes[node].p, param)

    def submit(self, node: str, changes: dict[str, Any]) -> None:
        """Hand in checked changes for `node`; they are built with any others of its not yet started."""
        self._waiting.setdefault(node, {}).update(changes)
        if node not in self._building:
            self._start(node)

    def collect(self) -> list[Outcome]:
        """Adopt every build that finished (call between ticks), start what waited for it; return their outcomes."""
        with self._cond:
            finished, self._finished = self._finished, []
        for job in finished:
            node = job.outcome.node
            del self._building[node]
            if job.outcome.problem is None:
                self.graph.nodes[node].adopt(job.twin)
            running_s = job.current_s if job.outcome.problem else job.outcome.trial_s
            if running_s is not None:
                self._trial_s[node] = running_s
            if node in self._waiting:
                self._start(node)
        return [job.outcome for job in finished]

    def busy(self) -> bool:
        return bool(self._building)

    def wait(self, timeout: float) -> bool:
        """Wait until every running build has finished (not yet collected); return whether they did."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._finished) >= len(self._building), timeout)

    def _start(self, node: str) -> None:
        changes = self._waiting.pop(node)
        target = self.graph.nodes[node]
        try:
            # Copies are made here, between ticks, so they see the node as no frame is changing it.
            job = _Job(changes, target.twin(changes, clamp=True),
                       target.twin({}) if node not in self._trial_s else None)
        except CppnvizError as exc:   # the control plane checked the values: this is only a safety net
            job = _Job(changes, target, None)
            job.outcome = Outcome(node, changes, str(exc))
            self._building[node] = job
            with self._cond:
                self._finished.append(job)
            return
        job.outcome = Outcome(node, changes)
        self._building[node] = job
        threading.Thread(target=self._build, args=(job,), name=f"rebuild:{node}", daemon=True).start()

    # -- worker thread -------------------------------------------------------------------
    def _build(self, job: _Job) -> None:
        _worker.active = True
        outcome = job.outcome
        try:
            started = time.perf_counter()
            job.twin.rebuild(job.changes)
            outcome.build_s = time.perf_counter() - started
            outcome.trial_s = trial_frame(job.twin, self.graph, self.limit_s)
            outcome.problem = self._too_slow(job)
        except CppnvizError as exc:
            outcome.problem = str(exc)
        except Exception as exc:
            # A bug in a node, not a bad value: said loudly, and the show goes on with the old version.
            log.exception("rebuilding node '%s' for %s failed", outcome.node, job.changes)
            outcome.problem = f"rebuilding failed ({type(exc).__name__}: {exc})"
        with self._cond:
            self._finished.append(job)
            self._cond.notify_all()

    def _too_slow(self, job: _Job) -> str | None:
        trial = job.outcome.trial_s
        if trial is None or trial <= self.limit_s:
            return None
        current = self._trial_s.get(job.outcome.node)
        if current is None and job.current is not None:
            job.current.rebuild({})
            current = job.current_s = trial_frame(job.current, self.graph, self.limit_s)
            job.current = None
        if current is not None and trial <= SLOWER * current:
            return None
        now = f", the running version {current:.2f} s" if current is not None else ""
        return (f"a frame would take {trial:.2f} s (a trial on one core{now}; the live limit is "
                f"{self.limit_s:.2f} s): the running version stays")


# -- the trial frame -------------------------------------------------------------------------

def trial_frame(node: Node, graph: Graph, limit_s: float) -> float | None:
    """Seconds `node` takes for one frame from blank inputs, None if it makes no frame; its state is reset after.

    A first frame over the limit may have paid one-time costs (a kernel compiled, memory first
    touched): then a second one is timed instead.
    """
    if not any(out.kind == "frame" for out in node.outputs):
        return None
    inputs = {port: [_blank(s) for s in spec] if isinstance(spec, list) else _blank(spec)
              for port, spec in node.input_specs.items()}
    took = 0.0
    for _ in range(2):
        started = time.perf_counter()
        for value in (node.process(tick(0, graph.ctx.fps), **inputs) or {}).values():
            to_host(value)  # a GPU frame is done only when its copy back is
        took = time.perf_counter() - started
        if took <= limit_s:
            break
    node.reset()
    return took


def _blank(spec: Spec):
    """Stand-in for what a link carries: features of ones (a node may skip work on zeros), a black frame,
    or a second of silence (live-style)."""
    if spec.kind == "features":
        return np.ones(spec.size or 0, np.float32)
    if spec.kind == "frame":
        return np.zeros(spec.shape, np.float32)
    rate = spec.sample_rate or 44100
    return AudioWindow(np.zeros(rate, np.float32), now=rate - 1, sample_rate=rate, final=False)
