"""The live runner: pyo's audio clock decides which frame to show; frames it missed are dropped, never shown late.

Three parts, one job each (the clock and the window in their own modules):

- `AudioClock` runs pyo's server. It plays a song (or captures an input), and
  a sample counter inside pyo says how many samples it has completed: that is
  the run's clock. No Python runs on pyo's audio thread. With the `null`
  backend no sound card is opened: pyo's manual server is advanced by a pacing
  thread at the pace of the wall clock.
- `LiveRun` is the frame loop on the calling (main) thread: frame k is rendered
  once the clock has passed s_k = sample_at(k, sr, fps); when rendering falls
  behind, it jumps to the newest due frame and counts the ones skipped.
- `PreviewWindow` shows the frames in a pygame window with an overlay.

OSC control and feature output are handed in by the caller (the command line
builds them from host_bridge): the engine does not import hosts. pyo and
pygame are imported only when a live run starts.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple, Protocol

from .errors import GraphError, Problem
from .graph import Graph, Link
from .node import Node
from .audio_clock import AudioClock
from .preview import PreviewWindow  # noqa: F401 (re-exported)
from .runner import Scheduler, prepass, reset_drives
from .timebase import sample_at, tick

log = logging.getLogger(__name__)

# The render loop wakes at least this often (s) to notice Ctrl-C, a closed window or an audio failure.
POLL_S = 0.05


def check_live(graph: Graph) -> None:
    """Refuse, before anything starts, every node that needs the whole track; one line per node."""
    problems = [Problem(f"node '{name}'", why) for name, node in graph.nodes.items()
                if (why := node.live_problem()) is not None]
    if problems:
        raise GraphError(problems)


def audio_source(graph: Graph) -> Node:
    """The graph's one audio source (audio_file or audio_in): its rate sets pyo's."""
    sources = graph.of_type("audio_file") + graph.of_type("audio_in")
    if len(sources) != 1:
        found = ", ".join(f"'{n.name}' ({n.type_name})" for n in sources) or "none"
        raise GraphError([Problem("graph", f"live needs exactly one audio_file or audio_in node, found {found}")])
    return sources[0]


def shown_frame(graph: Graph) -> Link | None:
    """The frame shown: the one an encoder would record, else the last frame output (in the graph's
    run order) that no node reads, else the last frame output. `glsl` and `web` draw it too."""
    for encoder in graph.of_type("encoder"):
        link = graph.links[encoder.name].get("frame")
        if isinstance(link, Link):
            return link
    read = {l.node for links in graph.links.values() for v in links.values() for l in (v if isinstance(v, list) else [v])}
    frames = [Link(name, out.name) for name, node in graph.nodes.items()
              for out in node.outputs if out.kind == "frame"]
    unread = [link for link in frames if link.node not in read]
    return (unread or frames or [None])[-1]


def sent_features(graph: Graph) -> list[Link]:
    """Outputs sent over OSC each frame: the graph's `osc: send`, else what feeds the cppn/tiler."""
    if graph.osc_send:
        return list(graph.osc_send)
    sent: list[Link] = []
    for type_name in ("cppn", "tiler"):
        for node in graph.of_type(type_name):
            for value in graph.links[node.name].values():
                for link in value if isinstance(value, list) else [value]:
                    if graph.specs[(link.node, link.port)].kind == "features" and link not in sent:
                        sent.append(link)
    return sent


def live_nodes(graph: Graph, needed: list[Link]) -> list[str]:
    """The nodes the shown frame and the sent outputs depend on, in topological order.

    Encoders are not among them: a live show drops frames, which would leave gaps in a recording.
    """
    wanted: set[str] = set()
    for link in needed:
        wanted.update(graph.upstream(link.node))
    return [name for name in graph.nodes if name in wanted]


def due_frame(position: int, sample_rate: int, fps: Fraction) -> int:
    """The newest frame k whose time has been reached: the largest k with sample_at(k) <= position."""
    # sample_at(k) <= p  <=>  k*sr/fps + 1/2 < p + 1  <=>  k < (p + 1/2) * fps / sr
    return math.ceil(Fraction(2 * position + 1, 2) * fps / sample_rate) - 1


# -- the audio clock ------------------------------------------------------------------------

class FrameRecord(NamedTuple):
    """One rendered frame, positions in samples on the audio clock."""

    index: int
    picked: int        # clock position from which it was picked as the newest due frame
    newest: int        # the newest sample its window reached (s_k for a song, the capture count live)
    started: float     # clock position when rendering began
    done: float        # clock position when the frame was ready (sent and shown)


@dataclass
class LiveStats:
    """What a live run achieved: frames shown and dropped, and the audio-to-picture latency."""

    sample_rate: int
    fps: Fraction
    frames: int = 0
    dropped: int = 0
    latency_sum: float = 0.0     # seconds, summed over frames
    latency_max: float = 0.0
    wall_start: float | None = None
    wall_end: float | None = None
    starved: int = 0             # samples played before they were written (the render thread stalled for seconds)
    lost: int = 0                # captured samples overwritten before they were read (likewise)
    window_lag_s: float = 0.0    # half the longest analysis window: how far its centre trails `newest`
    lookahead_s: float = 0.0     # a node's look-ahead (hpss live: its output trails its input): added to each latency
    records: deque = field(default_factory=lambda: deque(maxlen=100_000))
    control: Control | None = None   # its counters end the summary (read then: the final figures)

    def add(self, record: FrameRecord) -> None:
        latency = (record.done - record.newest) / self.sample_rate + self.lookahead_s
        self.frames += 1
        self.latency_sum += latency
        self.latency_max = max(self.latency_max, latency)
        self.records.append(record)

    @property
    def seconds(self) -> float:
        """From the first frame's start to the last frame ready."""
        if self.wall_start is None or self.wall_end is None:
            return 0.0
        return self.wall_end - self.wall_start

    @property
    def fps_achieved(self) -> float:
        """Frames shown per second: intervals between the first and the last frame over their span."""
        return (self.frames - 1) / self.seconds if self.seconds > 0 else 0.0

    @property
    def latency_mean(self) -> float:
        return self.latency_sum / self.frames if self.frames else 0.0

    def summary(self) -> str:
        """One line for the end of a run."""
        lag = f"; analysis window centre {1000 * self.window_lag_s:.0f} ms further back" if self.window_lag_s else ""
        return (f"live: {self.frames} frames in {self.seconds:.2f} s ({self.fps_achieved:.1f} fps of "
                f"{float(self.fps):g}), {self.dropped} dropped; latency newest sample -> frame ready "
                f"mean {1000 * self.latency_mean:.1f} ms, max {1000 * self.latency_max:.1f} ms"
                + (f" (including {1000 * self.lookahead_s:.0f} ms look-ahead)" if self.lookahead_s else "")
                + f"{lag}; "
                f"audio samples starved {self.starved}, lost {self.lost}"
                + (f"; {self.control.summary()}" if self.control is not None else ""))


class Control(Protocol):
    def apply_pending(self, now: float | None = None) -> int: ...

    def summary(self) -> str: ...


class Sender(Protocol):
    def send(self, tick, values: dict) -> Any: ...


class LiveRun:
    """The frame loop: render the newest frame the audio clock has reached; drop, and count, the ones missed.

    Each frame: control.apply_pending(), scheduler.step(k), sender.send(tick,
    outputs), window.show(...). Runs on the calling thread (pygame needs the
    main thread); `stop()` may be called from any thread or a signal handler.
    """

    def __init__(self, graph: Graph, clock: AudioClock, *, control: Control | None = None,
                 sender: Sender | None = None, window: "PreviewWindow | None" = None,
                 seconds: float | None = None):
        if graph.ctx.live:
            check_live(graph)   # captured input: no future, so nothing that needs the whole track
        self.graph = graph
        self.clock = clock
        self.control = control
        self.sender = sender
        self.window = window
        self.frame = shown_frame(graph)
        self.sent = sent_features(graph)
        self.names = live_nodes(graph, ([self.frame] if self.frame else []) + self.sent)
        self.source = audio_source(graph)
        if self.source.name not in self.names:
            self.names.insert(0, self.source.name)  # the clock's samples still reach the source
        self.scheduler = Scheduler(graph, self.names)
        # Analysis runs at every tick the clock passes, drawn or not, so smoothing and running
        # statistics keep the song's time; render nodes run only for frames that are shown.
        self.analysis = [n for n in self.names if graph.nodes[n].stage == "analysis"]
        self.sample_rate = clock.sample_rate
        self.end, self.end_sample = self._ends(seconds)
        # Analysis nodes declare their window as n_fft: half the longest is how far its centre trails.
        n_fft = max((getattr(graph.nodes[n].p, "n_fft", 0) or 0 for n in self.names), default=0)
        self.stats = LiveStats(clock.sample_rate, graph.ctx.fps, window_lag_s=n_fft / 2 / self.source.p.sample_rate,
                               control=control,
                               lookahead_s=max((getattr(graph.nodes[n], "latency_s", 0.0) for n in self.names),
                                               default=0.0))
        self._stop = threading.Event()

    def _ends(self, seconds: float | None) -> tuple[int | None, int | None]:
        """(one past the last frame, the sample where the sound ends): the song's end or --seconds, the sooner.

        The run lasts until the last frame is shown and its sound has been played.
        """
        ends = []
        if self.clock.play is not None and (n := self.source.frame_count()) is not None:
            ends.append((n, len(self.clock.play)))
        if seconds is not None:
            length = Fraction(str(seconds))
            ends.append((math.ceil(length * self.graph.ctx.fps), round(length * self.sample_rate)))
        return min(ends) if ends else (None, None)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> LiveStats:
        """Run until the song ends, --seconds pass, the window closes, or stop(); return the stats."""
        nodes = [self.graph.nodes[n] for n in self.names]
        for node in nodes:
            node.reset()
        reset_drives(self.graph)
        started: list[Node] = []
        try:
            self._prepass()
            for node in nodes:
                node.start()
                started.append(node)
            self.clock.open()
            if self.window is not None:
                self.window.open()   # before the clock starts: opening a window takes longer than a frame
            with settled_heap():
                self.clock.start()
                self._loop()
            for node in nodes:
                node.finish()
        except BaseException:
            for node in reversed(started):
                try:
                    node.abort()
                except Exception:  # logged; the failure that stopped the run is the one to raise
                    log.exception("while aborting node '%s'", node.name)
            raise
        finally:
            self.clock.close()
            self.stats.starved, self.stats.lost = self.clock.starved, self.clock.lost
        return self.stats

    def _prepass(self) -> None:
        """A played file: fit whole-track nodes over the song before playback, as `render` does."""
        song = self.source.frame_count()
        if self.graph.ctx.live or song is None or not (
                any(self.graph.nodes[n].whole_track() for n in self.names)
                or any(d.needs_prepass and d.spec.node in self.names for d in self.graph.drives)):
            return
        # The whole song, even with --seconds: the statistics are the song's, as in a full render.
        log.info("live: analysing the whole song first (%d frames), as render does", song)
        log.info("live: analysed in %.1f s", prepass(self.graph, song, self.names))

    def _loop(self) -> None:
        fps, sr = self.graph.ctx.fps, self.sample_rate
        next_k = 0
        while not self._stop.is_set():
            if self.window is not None and not self.window.poll():
                break
            if self.end is not None and next_k >= self.end:
                # The last frame is shown; let its sound finish playing.
                if self.clock.wait_for(self.end_sample, POLL_S):
                    break
                continue
            position = self.clock.poll()
            k = due_frame(position, sr, fps)
            if self.end is not None:
                k = min(k, self.end - 1)
            if k < next_k:
                self.clock.wait_for(sample_at(next_k, sr, fps), POLL_S)
                continue
            self.stats.dropped += k - next_k
            for skipped in range(next_k, k):
                self.scheduler.step(skipped, self.analysis)
            self._render(k, position)
            next_k = k + 1

    def _render(self, k: int, picked: int) -> None:
        started = self.clock.position_now()
        # Capture: the window ends at the newest sample pushed; playback: at s_k.
        newest = self.clock.position if self.clock.play is None else sample_at(k, self.sample_rate, self.graph.ctx.fps)
        if self.stats.wall_start is None:
            self.stats.wall_start = time.perf_counter()
        if self.control is not None:
            self.control.apply_pending()
        t = tick(k, self.graph.ctx.fps)
        self.scheduler.step(k)
        outputs = self.scheduler.outputs
        if self.sender is not None:
            self.sender.send(t, outputs)
        if self.window is not None:
            frame = outputs.get((self.frame.node, self.frame.port)) if self.frame else None
            meters = outputs.get((self.sent[0].node, self.sent[0].port)) if self.sent else None
            self.window.show(frame, meters, self.stats, index=k, end=self.end,
                             audio=outputs.get((self.source.name, "audio")))
        self.stats.add(FrameRecord(k, picked, newest, started, self.clock.position_now()))
        self.stats.wall_end = time.perf_counter()


@contextmanager
def settled_heap():
    """While active, what was made before is out of the garbage collector's sight, so its full passes stay short.

    A full collection holds the interpreter, and so every thread: over a large heap it took 70-120 ms
    (a burst of OSC messages allocates enough to trigger one). What the show allocates is still
    collected; what was there before lives for the whole show anyway.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class StopOnSignals:
    """While active, SIGINT and SIGTERM stop a live run cleanly instead of interrupting it mid-frame."""

    def __init__(self, run: LiveRun):
        self.run = run
        self.signalled: int | None = None   # the signal that stopped the run: the command then exits 130
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.info("live: %s, stopping", signal.Signals(signum).name)
        self.signalled = signum
        self.run.stop()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# -- the preview window -------------------------------------------------------------------------
