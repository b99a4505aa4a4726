"""One graph run at TouchDesigner's pace: audio pushed from a CHOP (or a file paced by the clock), each due frame stepped.

Plain Python: no TouchDesigner object is touched here, so a worker thread may run it.

The clock. With an audio CHOP the graph's `audio_file` node is replaced by an `audio_in` node of
the same name and sample rate, and frame k is due once the samples received reach
s_k = sample_at(k, sr, fps). A block is pushed in pieces cut at those positions, so each frame's
analysis sees exactly the samples up to s_k, whatever the block size: the same windows as the
offline renderer with `align: end` (the window ends at the frame's sample). Without an audio
CHOP the graph's own `audio_file` runs (live windows, ending at "now") and frame k is due once
k / fps seconds have passed on TouchDesigner's clock since the first cook.

Several frames can fall due in one cook (usually 0 or 1, sometimes 2; more after a stall). The
analysis nodes (stage "analysis": spectra, normalisers, smoothers, which carry state from frame
to frame) step once for every due frame, so smoothing is the same at any cook rate; the other
nodes (the renderers) run once, for the newest due frame only. A renderer must therefore not
carry state between frames: it sees only the frames that are shown. After a stall of more than
CATCH_UP_SECONDS the older due frames are skipped, not stepped, so one long hiccup cannot freeze
TouchDesigner while the analysis catches up.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cppnviz import registry
from cppnviz.errors import AudioError, GraphError, Problem
from cppnviz.graph import Link, build_graph, read_graph_file
from cppnviz.presets import apply_preset
from cppnviz.runner import Scheduler
from cppnviz.timebase import sample_at

PUSHED = "audio_in"
FILE = "audio_file"
CATCH_UP_SECONDS = 2.0
AUTO = "auto"


def last_due(received: int, sample_rate: int, fps: Fraction) -> int:
    """The newest frame k with sample_at(k) <= received (-1 if none)."""
    return math.ceil((Fraction(received) + Fraction(1, 2)) * fps / sample_rate) - 1


def with_pushed_audio(data: Any) -> Any:
    """The graph data with its one audio_file node replaced by an audio_in node of the same name and sample_rate."""
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        return data  # malformed: build_graph reports it
    typed = {name: spec.get("type") for name, spec in nodes.items() if isinstance(spec, dict)}
    files = [n for n, t in typed.items() if t == FILE]
    pushed = [n for n, t in typed.items() if t == PUSHED]
    if len(files) + len(pushed) != 1:
        found = ", ".join(files + pushed) or "none"
        raise GraphError([Problem("Audiochop", f"audio from a CHOP needs exactly one {FILE} (or {PUSHED}) node in "
                                               f"the graph, found {found}")])
    if pushed:
        return data
    name = files[0]
    params = nodes[name].get("params")
    keep = {"sample_rate": params["sample_rate"]} if isinstance(params, dict) and "sample_rate" in params else {}
    swapped = dict(nodes)
    swapped[name] = {"type": PUSHED, "params": keep}
    return {**data, "nodes": swapped}


def _sources(graph, name: str) -> list[Link]:
    out: list[Link] = []
    for value in graph.links[name].values():
        out.extend(value if isinstance(value, list) else [value])
    return out


def _declared(data: Any, overrides) -> list[tuple[str, str, Any]]:
    """The overrides whose node and param still exist in `data` (a reload or an audio swap may drop some)."""
    nodes = data.get("nodes") if isinstance(data, dict) else {}
    kept = []
    for node, param, value in overrides:
        spec = nodes.get(node) if isinstance(nodes, dict) else None
        cls = registry.lookup(spec.get("type")) if isinstance(spec, dict) and isinstance(spec.get("type"), str) else None
        if cls is not None and any(p.name == param for p in cls.params):
            kept.append((node, param, value))
    return kept


class Session:
    """A loaded graph, the output it shows, and its clock. Used by one thread at a time."""

    def __init__(self, path: str, *, pushed: bool, kind: str, target: str = AUTO, overrides=(), preset: str = ""):
        if not str(path).strip():
            raise GraphError([Problem("Graph", "no graph file set; choose a .yaml graph file")])
        self.path = Path(path).expanduser()
        self.kind = kind  # 'frame' (Script TOP) or 'features' (Script CHOP)
        data = read_graph_file(self.path)
        if preset:
            data = apply_preset(data, preset)
        if pushed:
            data = with_pushed_audio(data)
        graph = build_graph(data, base_dir=self.path.resolve().parent, overrides=_declared(data, overrides),
                            live=True, path=self.path)
        self.graph = graph
        self.base_dir = self.path.resolve().parent
        file_order = [n for n in data["nodes"] if n in graph.nodes]
        self.source = None
        if pushed:
            self.source = next(n for n in graph.nodes.values() if n.type_name == PUSHED)
        elif graph.of_type(PUSHED):
            raise GraphError([Problem("Audiochop", f"the graph's {PUSHED} node takes audio from a CHOP; set Audiochop")])
        self.targets = tuple(f"{n}.{p}" for (n, p), spec in graph.specs.items() if spec.kind == kind)
        if not self.targets:
            raise GraphError([Problem(str(self.path), f"the graph has no {kind} output to show")])
        producers = {t.partition(".")[0] for t in self.targets}
        if kind == "frame":
            wanted = {n for p in producers for n in graph.upstream(p)}
        else:
            wanted = None  # features: the target's upstream, set by set_target
        self._file_order = file_order
        self._picture_nodes = [n for n in file_order if wanted is not None and n in wanted]
        self.warnings: list[str] = []
        if pushed and graph.ctx.offset_ms:
            self.warnings.append(f"offset_ms {graph.ctx.offset_ms:g} is not applied to audio from a CHOP")
        self.started: list = []
        self.analysis: Scheduler | None = None
        self.target = ""
        self.set_target(target if target in self.targets else AUTO)
        self.reset()

    # -- what runs --------------------------------------------------------------------------
    def default_target(self) -> str:
        if self.kind == "frame":
            return self.targets[-1]  # the most downstream picture (a composite over its parts)
        for name, node in self.graph.nodes.items():  # the features feeding the first picture, as `cppnviz features`
            if any(o.kind == "frame" for o in node.outputs):
                for link in _sources(self.graph, name):
                    if self.graph.specs[(link.node, link.port)].kind == "features":
                        return str(link)
        return self.targets[-1]

    def set_target(self, target: str) -> None:
        """Show another output; the nodes it needs start running (their state is fresh)."""
        target = self.default_target() if target in ("", AUTO) else target
        if target not in self.targets:
            raise GraphError([Problem("Output", f"no {self.kind} output {target!r}; expected one of "
                                                f"{', '.join(self.targets)}")])
        node = target.partition(".")[0]
        needed = self.graph.upstream(node)
        problems = [Problem(f"node '{n}'", why) for n in needed if (why := self.graph.nodes[n].live_problem())]
        if problems:
            raise GraphError(problems)
        per_frame: list[str] = []
        for name in needed:
            if self.graph.nodes[name].stage == "analysis" and all(l.node in per_frame for l in _sources(self.graph, name)):
                per_frame.append(name)
        for name in needed:
            if self.graph.nodes[name] not in self.started:
                self.graph.nodes[name].start()
                self.started.append(self.graph.nodes[name])
        outputs = self.analysis.outputs if self.analysis is not None else {}
        self.analysis = Scheduler(self.graph, per_frame)
        self.render_nodes = Scheduler(self.graph, [n for n in needed if n not in per_frame])
        self.analysis.outputs = self.render_nodes.outputs = outputs
        self.target, self.needed = target, needed
        self.stepped = self.rendered = None  # render the next due frame in full

    def page_nodes(self) -> list[str]:
        """Nodes that get a parameter page, in file order: every node that can feed an output of this kind."""
        if self.kind == "frame":
            return self._picture_nodes
        return [n for n in self._file_order if n in self.needed]

    def is_source(self, node: str) -> bool:
        return self.graph.nodes[node].type_name in (PUSHED, FILE)

    # -- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear every node's state and restart the clock at frame 0."""
        for name in self._file_order:
            if name in self.needed or name in self._picture_nodes:
                self.graph.nodes[name].reset()
        for drive in self.graph.drives:
            drive.reset()
        self.next_frame = 0
        self.stepped = self.rendered = None
        self.origin: float | None = None
        self.analysis.outputs.clear()

    def close(self, failed: bool = False) -> None:
        """End the run: finish (or abort, after a failure) every node that was started."""
        for node in reversed(self.started):
            if failed:
                node.abort()
            else:
                node.finish()
        self.started = []

    def set_param(self, node_name: str, param: str, value: Any) -> bool:
        """Apply a change through the node's set_param (validated, clamped); return whether it was clamped.

        set_param refuses a change that would reshape what the node sends (a band count, a frame
        size) and leaves the node as it was; the Pipeline then tries a graph built with it.
        """
        return self.graph.nodes[node_name].set_param(param, value, clamp=True)

    # -- the clock ------------------------------------------------------------------------------
    def _catch_up_limit(self, newest: int) -> None:
        limit = math.ceil(CATCH_UP_SECONDS * self.graph.ctx.fps)
        if newest - self.next_frame + 1 > limit:
            self.next_frame = newest - limit + 1

    def _step(self, k: int) -> None:
        self.analysis.step(k)
        self.stepped = k

    def push(self, block: np.ndarray, rate: float) -> None:
        """Feed one cook's new samples (channels, n) at `rate`; step every frame that falls due."""
        source = self.source
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[None, :]
        if block.ndim != 2:
            raise AudioError(f"audio CHOP: expected samples shaped (channels, n), found {block.shape}")
        if not rate or rate <= 0:
            raise AudioError(f"audio CHOP: sample rate must be positive, found {rate!r}")
        rate = int(rate) if float(rate).is_integer() else float(rate)
        sr, fps = source.p.sample_rate, self.graph.ctx.fps
        n = block.shape[1]
        self._catch_up_limit(last_due(source.received + (n if rate == sr else round(n * sr / rate)), sr, fps))
        pos = 0
        while True:
            while sample_at(self.next_frame, sr, fps) <= source.received:
                self._step(self.next_frame)
                self.next_frame += 1
            if pos >= n:
                return
            # Push only up to the next frame's sample, so its analysis window ends exactly there.
            need = sample_at(self.next_frame, sr, fps) - source.received
            take = need if rate == sr else math.ceil(need * rate / sr)
            take = max(1, min(take, n - pos))
            source.push(block[:, pos:pos + take], rate)
            pos += take

    def advance(self, seconds: float) -> None:
        """Without pushed audio: step the frames due by `seconds` of TouchDesigner's clock since the first cook."""
        if self.origin is None:
            self.origin = seconds
        newest = math.floor((seconds - self.origin) * float(self.graph.ctx.fps) + 1e-9)
        self._catch_up_limit(newest)
        while self.next_frame <= newest:
            self._step(self.next_frame)
            self.next_frame += 1

    def render(self) -> Any:
        """The target's value for the newest due frame, or None when no new frame fell due."""
        if self.stepped is None or self.stepped == self.rendered:
            return None
        self.render_nodes.step(self.stepped)
        self.rendered = self.stepped
        return self.analysis.outputs[tuple(self.target.split(".", 1))]
