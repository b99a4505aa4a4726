"""The live runner: pyo's audio clock decides which frame to show; frames it missed are dropped, never shown late.

Three parts, one job each:

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

import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple, Protocol

import numpy as np

from .errors import AudioError, CppnvizError, GraphError, Problem
from .graph import Graph, Link
from .node import Node
from .ports import to_host
from .runner import Scheduler
from .timebase import sample_at, tick

log = logging.getLogger(__name__)

BACKENDS = ("pyo", "jack", "null")
# pyo's default buffer: 256 samples is 5.8 ms at 44.1 kHz, the clock's resolution.
BUFFER_SIZE = 256
# Samples in each ring table between numpy and pyo: 5.9 s at 44.1 kHz. The render thread keeps the song
# half a ring ahead of playback, so a frame may take up to ~3 s before the sound runs dry.
RING = 1 << 18
# The render loop wakes at least this often (s) to notice Ctrl-C, a closed window or an audio failure.
POLL_S = 0.05


def import_pyo():
    """Import pyo in double precision on first use (sample counts stay exact past 2**24, 6 min at 44.1 kHz).

    pyo64 is pyo built with doubles; it must come before any plain `import pyo` in the process.
    """
    os.environ.setdefault("PYO_GUI_WX", "0")   # no wxPython banner: pyo's GUI is never used here
    if "pyo" in sys.modules and "pyo64" not in sys.modules:
        raise CppnvizError("pyo was already imported in single precision in this process; the live runner needs "
                           "pyo64 (import cppnviz.live.import_pyo() before anything imports pyo)")
    try:
        import pyo64
    except ImportError as exc:
        raise CppnvizError(f"live audio needs pyo: pip install 'cppnviz[live]' ({exc})") from None
    return pyo64


# -- the graph, as the live runner sees it ------------------------------------------------

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
    """The frame shown: the one an encoder would record, else the last frame output in the graph."""
    for encoder in graph.of_type("encoder"):
        link = graph.links[encoder.name].get("frame")
        if isinstance(link, Link):
            return link
    frames = [Link(name, out.name) for name, node in graph.nodes.items()
              for out in node.outputs if out.kind == "frame"]
    return frames[-1] if frames else None


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

class AudioClock:
    """pyo's server as the run's clock: `poll()` returns the samples pyo has completed, from its own counter.

    Give `play` (the program, [shape=(n, channels)]) to play a song from sample 0,
    or `capture` (called with each captured block, [shape=(channels, n)]) to
    record an input. No Python runs on pyo's audio thread, so the render thread
    (and the GIL) can never make the sound stutter: the song is written into, and
    the input read from, ring tables that `poll()` tops up or drains on the
    render thread, half a ring ahead of pyo. What is heard (or captured) is
    exactly the samples the graph analyses, with no drift however long the run.
    """

    def __init__(self, sample_rate: int, *, backend: str = "pyo", play: np.ndarray | None = None,
                 capture=None, input_device: str | int | None = None, signal: np.ndarray | None = None,
                 buffer_size: int = BUFFER_SIZE):
        if backend not in BACKENDS:
            raise CppnvizError(f"audio backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if (play is None) == (capture is None):
            raise ValueError("AudioClock plays a program or captures an input: give exactly one of play, capture")
        self.sample_rate = int(sample_rate)
        self.backend = backend
        self.buffer_size = buffer_size
        self.play = None if play is None else _stereo(play)
        self.capture = capture
        self.input_device = input_device
        # Null backend only: a signal standing in for the input device (tests, benchmarks); silence if None.
        self.signal = None if signal is None else _stereo(signal)
        self.position = 0        # samples completed: played, or captured and pushed
        self.starved = 0         # samples pyo played before the render thread had written them
        self.lost = 0            # captured samples overwritten before the render thread read them
        self.max_late_s = 0.0    # null backend: how late its pacing thread computed a buffer, at worst
        self._feed: np.ndarray | None = None
        self._written = 0        # samples of the feed written into the output ring
        self._stamp = (0, time.perf_counter())   # (completed, when) for position_now()
        self._stop = threading.Event()
        self._pacer: threading.Thread | None = None
        self._server = None
        self._objects: list = []

    # -- life cycle ---------------------------------------------------------------
    def open(self) -> None:
        """Boot pyo and build the play or capture chain: device problems show here, before anything runs."""
        if self._server is not None:
            return
        pyo = import_pyo()
        duplex = 1 if self.capture is not None and self.backend != "null" else 0
        device = self._check_devices(pyo) if self.backend == "pyo" else None
        audio = {"pyo": "portaudio", "jack": "jack", "null": "manual"}[self.backend]
        server = pyo.Server(sr=self.sample_rate, nchnls=2, buffersize=self.buffer_size, duplex=duplex,
                            audio=audio, jackname="cppnviz", verbosity=5)  # 5: errors and warnings
        server.deactivateMidi()   # no MIDI here: skips PortMidi's probing and its warnings
        if device is not None:
            server.setInputDevice(device)
        server.boot()
        if not server.getIsBooted():
            hint = ("is the JACK server running at this rate?" if self.backend == "jack" else
                    "does the device take this rate? the audio node's sample_rate param sets it; "
                    "`cppnviz devices` lists the devices")
            raise AudioError(f"pyo could not open the audio device ({audio}) at {self.sample_rate} Hz ({hint}); "
                             "--audio-backend null runs without one")
        self._server = server
        self._build(pyo, device)

    def start(self) -> None:
        """Start the audio (opening it first if needed): from now on the clock moves."""
        self.open()
        self._stamp = (0, time.perf_counter())
        self._server.start()
        if self.backend == "null":
            self._pacer = threading.Thread(target=self._pace, name="cppnviz null audio", daemon=True)
            self._pacer.start()

    def close(self) -> None:
        """Stop the audio and release the device (safe to call twice, and after a failed start)."""
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join()
            self._pacer = None
        if self._server is not None:
            self._server.stop()
            # Freed in this order or Python crashes: numpy views of a table (pyo's buffers don't keep the
            # table alive), then the pyo objects, then the server.
            self._out_views, self._in_views = [], []
            self._objects.clear()
            self._counter = self._out_ring = self._in_ring = None
            self._server.shutdown()
            self._server = None

    def _check_devices(self, pyo) -> int | None:
        """Fail with a plain message where PortAudio sees no device (booting pyo then would crash)."""
        if self.capture is None:
            if pyo.pa_get_default_output() < 0:
                raise AudioError("no audio output device found; `cppnviz devices` lists what pyo sees, "
                                 "--audio-backend null runs without a sound card")
            return None
        names, indexes = pyo.pa_get_input_devices()
        if not indexes:
            raise AudioError("no audio input device found; `cppnviz devices` lists what pyo sees")
        if self.input_device in (None, ""):
            default = pyo.pa_get_default_input()
            if default < 0:
                raise AudioError("no default audio input device; name one with --input DEVICE (`cppnviz devices`)")
            return default
        return _pick_device(str(self.input_device), names, indexes)

    def _build(self, pyo, device: int | None) -> None:
        """The pyo chain: a sample counter (the clock); ring -> player -> output; input -> ring."""
        trigger = pyo.Trig()
        # Count from 1: after each buffer its value is the number of samples completed (exact in doubles).
        self._counter = pyo.Count(trigger, min=1)
        self._objects += [trigger, self._counter]
        if self.play is not None or self.backend == "null":
            self._feed = next(x for x in (self.play, self.signal, np.zeros((0, 2), np.float32)) if x is not None)
            self._out_ring = pyo.DataTable(size=RING, chnls=2)
            self._out_views = [np.asarray(self._out_ring.getBuffer(c)) for c in range(2)]
            # Wrapping after max=RING-1, the player reads ring[n mod RING] at sample n: exact, never interpolated.
            index = pyo.Count(trigger, min=0, max=RING - 1)
            player = pyo.TableIndex(self._out_ring, index)
            self._objects += [self._out_ring, index, player]
            self._top_up(0)
            if self.play is not None:
                self._objects.append(player.out())
        if self.capture is not None:
            if self.backend == "null":
                source, channels = player, 2     # the stand-in signal (or silence) is the "input"
            else:
                channels = 2 if device is None or pyo.pa_get_input_max_channels(device) >= 2 else 1
                source = pyo.Input(chnl=list(range(channels)))
            self._in_ring = pyo.DataTable(size=RING, chnls=channels)
            self._in_views = [np.asarray(self._in_ring.getBuffer(c)) for c in range(channels)]
            self._objects += [source, self._in_ring, pyo.TableFill(source, self._in_ring)]

    def _pace(self) -> None:
        """Null backend: compute buffer i when the wall clock reaches its end, so the clock is the wall clock."""
        period = self.buffer_size / self.sample_rate
        start = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            late = time.perf_counter() - (start + (i + 1) * period)
            if late < 0:
                self._stop.wait(-late)
                continue
            self.max_late_s = max(self.max_late_s, late)
            self._server.process()
            i += 1
            self._stamp = (i * self.buffer_size, time.perf_counter())

    # -- the render thread's side ---------------------------------------------------
    def poll(self) -> int:
        """Top up the song, drain the input, and return the clock: samples completed (and pushed)."""
        completed = int(self._counter.get())
        if self._feed is not None:
            self.starved += max(0, completed - self._written)
            self._top_up(completed)
        if self.capture is not None:
            completed = self._drain(completed)
        self.position = completed
        return completed

    def _top_up(self, completed: int) -> None:
        """Write the feed up to half a ring ahead of what pyo has completed (silence past its end)."""
        start = max(self._written, completed)
        end = completed + RING // 2
        if end <= start:
            return
        block = self._feed[start:end]
        for c, view in enumerate(self._out_views):
            _ring_write(view, start, block[:, c], end - start)
        self._written = end

    def _drain(self, completed: int) -> int:
        """Push every captured sample not pushed yet; return how many have been pushed in all."""
        start = self.position
        if completed - start > RING - self.buffer_size:   # the render thread stalled for seconds
            self.lost += completed - start - (RING - self.buffer_size)
            start = completed - (RING - self.buffer_size)
        if completed > start:
            self.capture(np.stack([_ring_read(v, start, completed - start) for v in self._in_views]))
        return completed

    def wait_for(self, sample: int, timeout: float) -> bool:
        """Poll until the clock reaches `sample` or `timeout` passes; return whether it did."""
        deadline = time.perf_counter() + timeout
        while self.poll() < sample:
            left = deadline - time.perf_counter()
            if left <= 0 or self._stop.is_set():
                return False
            # Sleep until the sample is due, then re-check every half millisecond (the clock moves by buffers).
            time.sleep(min(left, max(0.0005, (sample - self.position) / self.sample_rate)))
        return True

    def position_now(self) -> float:
        """The clock between buffers (null backend: interpolated from its pacing; a device: by whole buffers)."""
        completed = float(self._counter.get())
        if self.backend != "null":
            return completed
        position, when = self._stamp
        return max(completed, position + min((time.perf_counter() - when) * self.sample_rate, self.buffer_size))


def _ring_write(view: np.ndarray, start: int, values: np.ndarray, length: int) -> None:
    """view[start : start+length] modulo the ring = values, zero-padded to length."""
    size = len(view)
    padded = np.zeros(length, view.dtype)
    padded[:len(values)] = values
    at = start % size
    first = min(length, size - at)
    view[at:at + first] = padded[:first]
    view[:length - first] = padded[first:]


def _ring_read(view: np.ndarray, start: int, length: int) -> np.ndarray:
    """A float32 copy of view[start : start+length] modulo the ring."""
    at = start % len(view)
    first = min(length, len(view) - at)
    return np.concatenate([view[at:at + first], view[:length - first]]).astype(np.float32)


def _stereo(samples: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) float -> (n, 2) float32: mono doubled, wider than stereo cut to its first two."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    return np.ascontiguousarray(data[:, :2])


def _pick_device(wanted: str, names: list[str], indexes: list[int]) -> int:
    """An input device by index, or by a unique part of its name."""
    if wanted.isdigit():
        if int(wanted) in indexes:
            return int(wanted)
        raise AudioError(f"no audio input device {wanted}; inputs: {_device_list(names, indexes)}")
    matches = [i for n, i in zip(names, indexes) if wanted.lower() in n.lower()]
    if len(matches) != 1:
        how = "no" if not matches else "more than one"
        raise AudioError(f"{how} audio input device matches {wanted!r}; inputs: {_device_list(names, indexes)}")
    return matches[0]


def _device_list(names, indexes) -> str:
    return ", ".join(f"{i}: {n}" for n, i in zip(names, indexes)) or "none"


# -- the frame loop ---------------------------------------------------------------------------

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
    records: deque = field(default_factory=lambda: deque(maxlen=100_000))

    def add(self, record: FrameRecord) -> None:
        latency = (record.done - record.newest) / self.sample_rate
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
                f"mean {1000 * self.latency_mean:.1f} ms, max {1000 * self.latency_max:.1f} ms{lag}; "
                f"audio samples starved {self.starved}, lost {self.lost}")


class Control(Protocol):
    def apply_pending(self, now: float | None = None) -> int: ...


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
        check_live(graph)
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
        self.sample_rate = clock.sample_rate
        self.end, self.end_sample = self._ends(seconds)
        # Analysis nodes declare their window as n_fft: half the longest is how far its centre trails.
        n_fft = max((getattr(graph.nodes[n].p, "n_fft", 0) or 0 for n in self.names), default=0)
        self.stats = LiveStats(clock.sample_rate, graph.ctx.fps, window_lag_s=n_fft / 2 / clock.sample_rate)
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
        started: list[Node] = []
        try:
            for node in nodes:
                node.start()
                started.append(node)
            self.clock.open()
            if self.window is not None:
                self.window.open()   # before the clock starts: opening a window takes longer than a frame
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
            self.window.show(frame, meters, self.stats)
        self.stats.add(FrameRecord(k, picked, newest, started, self.clock.position_now()))
        self.stats.wall_end = time.perf_counter()


class StopOnSignals:
    """While active, SIGINT and SIGTERM stop a live run cleanly instead of interrupting it mid-frame."""

    def __init__(self, run: LiveRun):
        self.run = run
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.info("live: %s, stopping", signal.Signals(signum).name)
        self.run.stop()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# -- the preview window -------------------------------------------------------------------------

class PreviewWindow:
    """A pygame window showing each frame, with fps, latency and band meters drawn on top ('o' toggles them).

    Esc, q or closing the window ends the run. Set SDL_VIDEODRIVER=dummy to run it without a screen.
    """

    MIN_SIDE = 512     # small frames are scaled up to at least this many pixels on their longer side

    def __init__(self, title: str = "cppnviz live", overlay: bool = True):
        self.title = title
        self.overlay = overlay
        self._screen = None
        self._shown_title = 0.0

    def open(self) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as exc:
            raise CppnvizError(f"the preview window needs pygame: pip install 'cppnviz[live]', "
                               f"or run with --no-window ({exc})") from None
        self._pg = pygame
        pygame.display.init()
        pygame.font.init()
        self._font = pygame.font.Font(None, 20)
        self._set_size((self.MIN_SIDE, self.MIN_SIDE))
        pygame.display.set_caption(self.title)

    def _set_size(self, size: tuple[int, int]) -> None:
        self._screen = self._pg.display.set_mode(size)
        self._size = size

    def poll(self) -> bool:
        """Handle window events; False once the user asked to stop."""
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT:
                return False
            if event.type == pg.KEYDOWN:
                if event.key in (pg.K_ESCAPE, pg.K_q):
                    return False
                if event.key == pg.K_o:
                    self.overlay = not self.overlay
        return True

    def show(self, frame: np.ndarray | None, meters: np.ndarray | None, stats: LiveStats) -> None:
        pg = self._pg
        if frame is not None:
            image = to_host(frame)  # the GPU backend's frames are cupy arrays
            height, width = image.shape[:2]
            scale = max(1, self.MIN_SIDE // max(height, width))
            if self._size != (width * scale, height * scale):
                self._set_size((width * scale, height * scale))
            rgb = np.ascontiguousarray((np.clip(image[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
            surface = pg.image.frombuffer(rgb, (width, height), "RGB")   # a view of rgb, no copy
            self._screen.blit(pg.transform.scale(surface, self._size), (0, 0))
        else:
            self._screen.fill((0, 0, 0))
        text = (f"{stats.fps_achieved:5.1f} fps  latency {1000 * stats.latency_mean:4.1f} ms  "
                f"dropped {stats.dropped}")
        if self.overlay:
            self._draw_overlay(text, meters)
        pg.display.flip()
        now = time.perf_counter()
        if now - self._shown_title > 1.0:   # the title is cheap but some window managers redraw on every change
            pg.display.set_caption(f"{self.title} - {text}")
            self._shown_title = now

    def _draw_overlay(self, text: str, meters: np.ndarray | None) -> None:
        pg = self._pg
        self._screen.blit(self._font.render(text, True, (255, 255, 255), (0, 0, 0)), (6, 6))
        if meters is None:
            return
        values = np.asarray(meters, dtype=np.float32).ravel()
        width, height = self._size
        bar = max(2, (width - 12) // max(1, len(values)))
        top = max(1.0, float(values.max(initial=0.0)))   # values above 1 rescale the meters, never clip
        for i, v in enumerate(values):
            h = int((height // 4) * max(0.0, float(v)) / top)
            pg.draw.rect(self._screen, (80, 220, 120), (6 + i * bar, height - 6 - h, bar - 2, h))

    def close(self) -> None:
        if self._screen is not None:
            self._pg.display.quit()
            self._screen = None
