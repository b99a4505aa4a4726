"""The offline scheduler: prepass for whole-track nodes, then tick by tick in topological order."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import CppnvizError, NodeRunError
from .graph import Graph, Link
from .timebase import tick

log = logging.getLogger(__name__)


def total_frames(graph: Graph, seconds: float | None = None) -> int:
    """Frames in an offline run: the shortest source, cut to `seconds` if given."""
    limit = math.ceil(Fraction(str(seconds)) * graph.ctx.fps) if seconds is not None else None
    counts = [c for n in graph.nodes.values() if (c := n.frame_count(limit)) is not None]
    if limit is not None:
        counts.append(limit)
    if not counts:
        raise CppnvizError("the graph has no audio source to set its length; give --seconds")
    return max(0, min(counts))


class Scheduler:
    """Runs a subset of a graph's nodes tick by tick and times each stage."""

    def __init__(self, graph: Graph, names: list[str] | None = None):
        self.graph = graph
        self.names = names if names is not None else list(graph.nodes)
        self.outputs: dict[tuple[str, str], Any] = {}
        self.seconds: dict[str, float] = defaultdict(float)

    def inputs(self, name: str) -> dict[str, Any]:
        """What arrives at `name`'s input ports from this tick's outputs."""
        def value(link: Link):
            return self.outputs[(link.node, link.port)]
        return {port: ([value(l) for l in v] if isinstance(v, list) else value(v))
                for port, v in self.graph.links[name].items()}

    def step(self, k: int, names: list[str] | None = None) -> None:
        """Run every node (or those of `names`, in the same order) once for tick k."""
        t = tick(k, self.graph.ctx.fps)
        for name in self.names if names is None else names:
            node = self.graph.nodes[name]
            started = time.perf_counter()
            try:
                out = node.process(t, **self.inputs(name))
            except (CppnvizError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise NodeRunError(name, exc) from exc
            self.seconds[node.stage] += time.perf_counter() - started
            for port, value in (out or {}).items():
                self.outputs[(name, port)] = value

    def inputs_over(self, name: str, n_frames: int) -> dict[str, np.ndarray]:
        """Run the upstream of `name` over every tick and stack what arrives at its inputs.

        Into one array per port, allocated at the first tick: a list of a million small arrays
        (three hours at 60 fps) would cost ten times their data in object overhead.
        """
        stacked: dict[str, np.ndarray] = {}
        for k in range(n_frames):
            self.step(k)
            for port, value in self.inputs(name).items():
                if port not in stacked:
                    value = np.asarray(value)
                    stacked[port] = np.empty((n_frames, *value.shape), value.dtype)
                stacked[port][k] = value
        return stacked


def prepass(graph: Graph, n_frames: int, names: list[str]) -> float:
    """Fit every whole-track node among `names` on its inputs over the whole run; return seconds."""
    started = time.perf_counter()
    for name in names:
        node = graph.nodes[name]
        if not node.whole_track():
            continue
        upstream = graph.upstream(name)[:-1]
        for n in upstream:
            graph.nodes[n].reset()
        scheduler = Scheduler(graph, upstream)
        if node.observes:
            for k in range(n_frames):
                scheduler.step(k)
                node.observe(tick(k, graph.ctx.fps), **scheduler.inputs(name))
            node.fit({})
        else:
            node.fit(scheduler.inputs_over(name, n_frames))
        for n in upstream:
            graph.nodes[n].reset()
    return time.perf_counter() - started


def run(graph: Graph, n_frames: int, *, names: list[str] | None = None,
        on_tick: Callable[[int, Scheduler], None] | None = None) -> Scheduler:
    """Run `names` (default all) for n_frames ticks; on any failure every node is aborted."""
    names = names if names is not None else list(graph.nodes)
    nodes = [graph.nodes[n] for n in names]
    analysis = prepass(graph, n_frames, names)
    scheduler = Scheduler(graph, names)
    scheduler.seconds["analysis"] += analysis
    for node in nodes:
        node.reset()
    started: list = []
    try:
        for node in nodes:
            node.start()
            started.append(node)
        for k in range(n_frames):
            scheduler.step(k)
            if on_tick:
                on_tick(k, scheduler)
        while started:
            began = time.perf_counter()
            started[0].finish()
            scheduler.seconds[started.pop(0).stage] += time.perf_counter() - began
    except BaseException:
        # Only nodes not yet finished are aborted: a published output stays published.
        for node in reversed(started):
            try:
                node.abort()
            except Exception:  # log it, but the original failure is what the user must see
                log.exception("while aborting node '%s'", node.name)
        raise
    return scheduler


def collect(graph: Graph, name: str, ports: list[str], n_frames: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame, time, the values of `ports` end to end) of one node over the run (`cppnviz features`)."""
    rows: list = []

    def keep(k: int, scheduler: Scheduler) -> None:
        values = np.concatenate([np.asarray(scheduler.outputs[(name, port)]).ravel() for port in ports])
        rows.append((k, float(Fraction(k) / graph.ctx.fps), values))
    run(graph, n_frames, names=graph.upstream(name), on_tick=keep)
    yield from rows
