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
from .stems import source_counts
from .timebase import tick

log = logging.getLogger(__name__)


def total_frames(graph: Graph, seconds: float | None = None) -> int:
    """Frames in an offline run: the shortest source, cut to `seconds` if given."""
    limit = math.ceil(Fraction(str(seconds)) * graph.ctx.fps) if seconds is not None else None
    counts = source_counts(graph, limit)   # several audio files (stems): one sets the length, the rest are padded
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
        # Drives by the node they set (applied when it runs here) and by the node they follow (fed when
        # it runs here, whether or not the node they set does: a split run, analysis apart from render).
        running = set(self.names)
        self.drives_into: dict[str, list] = defaultdict(list)
        self.drives_from: dict[str, list] = defaultdict(list)
        for drive in graph.drives:
            if drive.spec.node in running:
                self.drives_into[drive.spec.node].append(drive)
            if drive.spec.source in running:
                self.drives_from[drive.spec.source].append(drive)

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
            for drive in self.drives_into.get(name, ()):
                # The drive's value for this tick, through the param's own check (clamped, as a controller).
                if drive.value is not None and drive.ready and drive.value != getattr(node.p, drive.spec.param):
                    node.set_param(drive.spec.param, drive.value, clamp=True)
            try:
                out = node.process(t, **self.inputs(name))
            except (CppnvizError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise NodeRunError(name, exc) from exc
            for port, value in (out or {}).items():
                self.outputs[(name, port)] = value
            for drive in self.drives_from.get(name, ()):
                if drive.ready:
                    drive.update(k, drive.spec.pick(self.outputs[(name, drive.spec.port)]))
            self.seconds[node.stage] += time.perf_counter() - started

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
    _prepare_drives(graph, n_frames, names)
    return time.perf_counter() - started


def _prepare_drives(graph: Graph, n_frames: int, names: list[str]) -> None:
    """Offline drives with a centred blur or the run's range see their source over the whole run first."""
    waiting = [d for d in graph.drives if d.spec.node in names and d.needs_prepass]
    for source in [n for n in graph.nodes if any(d.spec.source == n for d in waiting)]:
        these = [d for d in waiting if d.spec.source == source]
        upstream = graph.upstream(source)
        for n in upstream:
            graph.nodes[n].reset()
        scheduler = Scheduler(graph, upstream)
        xs = np.empty((len(these), n_frames))
        for k in range(n_frames):
            scheduler.step(k)
            for i, d in enumerate(these):
                xs[i, k] = d.spec.pick(scheduler.outputs[(source, d.spec.port)])
        for d, series in zip(these, xs):
            d.prepare(series)
        for n in upstream:
            graph.nodes[n].reset()
    reset_drives(graph)


def reset_drives(graph: Graph) -> None:
    """Forget every drive's past (blur window, running range, rate history) before a run."""
    for drive in graph.drives:
        drive.reset()


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
    reset_drives(graph)
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
