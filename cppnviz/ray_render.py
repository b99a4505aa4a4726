"""Render on Ray: the analysis stage once on the driver, frame ranges rendered and encoded as Ray tasks, one exact file.

The driver runs every analysis-stage node as a plain render would and keeps what crosses into the render
stage (a few floats a frame) and the song's sound (encoded as AAC into a temporary file, as the encoder
node would). Each Ray task rebuilds the render-stage nodes and an encoder node from their declarations,
renders one frame range and encodes it with the encoder node itself: a closed-GOP H.264 segment (or PNG
frames) with the final file's exact settings. The driver joins the segments without re-encoding, muxes
the sound once and publishes the file only when complete. Ray is imported only here.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import runner
from .errors import CppnvizError, GraphError, NodeRunError, OutputError, Problem
from .graph import Graph, Link
from .outputs import partial_path, remove_stale_partials
from .timebase import tick

log = logging.getLogger(__name__)

INSTALL = "pip install 'cppnviz[cluster]'"
MAX_RETRIES = 3            # a segment whose worker dies is rendered again, from the same inputs


class RayError(CppnvizError):
    """Ray is missing, or the cluster cannot be reached."""


def connect(address: str, **options: Any):
    """ray.init(address=...) once per process: auto, HOST:PORT, ray://HOST:PORT, or local (a new local instance)."""
    try:
        import ray
    except ImportError:
        raise RayError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    if ray.is_initialized():
        return ray
    if address not in ("local", "auto") and not address.startswith("ray://"):
        # A head that is not there: one attempt (Ray's own 30 s timeout) rather than twenty.
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "1")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RayError(f"--ray {address}: cannot reach a Ray cluster: {str(exc).splitlines()[0]}") from None
    return ray


@dataclass
class Split:
    """A graph cut in two: analysis on the driver, render (and the encoder) on the workers."""

    analysis: list[str]
    render: list[str]
    crossing: list[Link]           # analysis outputs that render nodes read
    drives: list                   # drives of render nodes' params (they follow analysis outputs)
    encoder: Any                   # the graph's encoder node (configured on the driver)
    frame: Link
    audio: Link | None


def split(graph: Graph) -> Split:
    """Where the graph divides; a GraphError when it cannot be rendered in segments, naming the node."""
    encoders = graph.of_type("encoder")
    if len(encoders) != 1:
        raise GraphError([Problem("--ray", f"renders a graph with one encoder node, found {len(encoders)}")])
    encoder = encoders[0]
    links = graph.links[encoder.name]
    frame, audio = links["frame"], links.get("audio")
    render = [n for n in graph.upstream(frame.node) if graph.nodes[n].stage == "render"]
    if not render:
        raise GraphError([Problem("--ray", f"no render-stage node makes the frames of encoder '{encoder.name}'")])
    needed = set(graph.upstream(frame.node)) | (set(graph.upstream(audio.node)) if audio else set())
    analysis = [n for n in graph.nodes if n in needed and n not in render]
    problems = []
    for name in render:
        node = graph.nodes[name]
        if node.keeps_state:
            problems.append(Problem(f"node '{name}'", f"{node.type_name} keeps state between frames, so frame ranges "
                                    "cannot be rendered apart; render without --ray"))
    for name in analysis:
        fed_by = [n for n in graph.upstream(name) if n in render]
        if fed_by:
            problems.append(Problem(f"node '{name}'", f"an analysis node fed by render node '{fed_by[0]}': the render "
                                    "stage must come last to be split into segments; render without --ray"))
    for drive in graph.drives:
        node, source = drive.spec.node, drive.spec.source
        if node in render and source in render:
            problems.append(Problem(f"node '{node}' drive '{drive.spec.param}'", f"follows render node '{source}': "
                                    "a drive keeps state between frames, so it must follow the analysis stage"))
        elif node == encoder.name:
            problems.append(Problem(f"node '{node}' drive '{drive.spec.param}'", "the encoder's params cannot "
                                    "change during a render split into segments"))
    if problems:
        raise GraphError(problems)
    drives = [d for d in graph.drives if d.spec.node in render]
    crossing = sorted({link for name in render for v in graph.links[name].values()
                       for link in (v if isinstance(v, list) else [v]) if link.node not in render},
                      key=str)
    return Split(analysis, render, crossing, drives, encoder, frame, audio)


def segment_bounds(n_frames: int, fps: Fraction, seconds: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of about `seconds` each, covering the run."""
    size = max(1, math.ceil(Fraction(str(seconds)) * fps))
    return [(a, min(a + size, n_frames)) for a in range(0, n_frames, size)]


# -- the driver's half: analysis and sound ---------------------------------------------------

def analyse(graph: Graph, cut: Split, n_frames: int, audio_path: Path | None) -> tuple[dict, list]:
    """Run the analysis stage over the whole run; return what crosses into the render stage.

    That is one array per link (frames first) and, per drive of a render node, its value at every tick
    (drives keep state, so they run here, exactly as the single-process scheduler runs them). With
    `audio_path`, the song's program is encoded there (AAC, the encoder node's settings and blocks).
    """
    stacked: dict[Link, np.ndarray] = {}
    driven: list[list] = [[] for _ in cut.drives]
    sound = _SoundOnly(audio_path, cut.encoder) if audio_path is not None else None
    if any(d.needs_prepass for d in cut.drives):
        # Centred blur or the run's range: their inputs are prepared over the run (after the fits they may
        # read), and stay prepared through run()'s own prepass of the analysis stage, which repeats the fits.
        runner.prepass(graph, n_frames, cut.analysis + cut.render)

    def keep(k: int, scheduler: runner.Scheduler) -> None:
        for drive, values in zip(cut.drives, driven):
            if drive.ready:
                drive.update(k, drive.spec.pick(scheduler.outputs[(drive.spec.source, drive.spec.port)]))
            values.append(drive.value)
        for link in cut.crossing:
            value = scheduler.outputs[(link.node, link.port)]
            if link not in stacked:
                value = np.asarray(value)
                stacked[link] = np.empty((n_frames, *value.shape), value.dtype)
            stacked[link][k] = value
        if sound is not None:
            sound.write_tick(k, scheduler.outputs[(cut.audio.node, cut.audio.port)])
    try:
        runner.run(graph, n_frames, names=cut.analysis, on_tick=keep)
        if sound is not None:
            sound.close()
    except BaseException:
        if sound is not None:
            sound.discard()
        raise
    return stacked, [np.array(values) for values in driven]


def _sound_class():
    from .nodes.output import _Mp4  # the encoder node's own AAC code: same settings, same blocks

    class SoundOnly(_Mp4):
        """An _Mp4 with no video stream: the song's AAC track alone, joined with the segments later."""

        def __init__(self, path: Path, encoder):
            self.container = _open(path, "w", format=encoder._container)
            self.video = None
            self.sample_rate, self.bitrate = encoder._sample_rate, encoder.p.audio_bitrate * 1000
            self.audio, self.audio_pts = None, 0
            self.encoder = encoder

        def write_tick(self, k: int, audio) -> None:
            self._write_audio(self.encoder._samples(k, audio))

        def close(self) -> None:
            if self.audio is not None and self.filled:
                self._encode_pcm()
            if self.audio is not None:
                self.container.mux(self.audio.encode(None))
            self.container.close()
    return SoundOnly


def _SoundOnly(path: Path, encoder):
    return _sound_class()(path, encoder)


def _open(path, mode="r", **kwargs):
    import av
    return av.open(str(path), mode, **kwargs)


# -- the workers' half: one frame range ----------------------------------------------------------

class SegmentBug(Exception):
    """A NodeRunError inside a segment, as the node's name and the cause's text (it pickles; the driver re-raises)."""

    def __init__(self, node: str, text: str):
        super().__init__(node, text)
        self.node, self.text = node, text


@dataclass
class Job:
    """Everything a worker needs to rebuild the render stage: declarations, never configured objects."""

    ctx: Any
    nodes: list[tuple[str, type, dict, dict]]       # name, class, param values, input specs (topological order)
    links: dict[str, dict]
    encoder: tuple[str, type, dict, Any]             # name, class, param values, frame spec
    frame: Link
    suffix: str
    drives: list[tuple[str, str]]                     # (node, param) of each drive, in Split.drives order


def make_job(graph: Graph, cut: Split) -> Job:
    nodes = [(n, type(graph.nodes[n]), dict(vars(graph.nodes[n].p)), graph.nodes[n].input_specs) for n in cut.render]
    enc = cut.encoder
    return Job(ctx=graph.ctx, nodes=nodes, links={n: graph.links[n] for n in cut.render},
               encoder=(enc.name, type(enc), dict(vars(enc.p)), enc.input_specs["frame"]), frame=cut.frame,
               suffix=Path(enc.p.path.rstrip(os.sep)).suffix if enc.p.format == "mp4" else "",
               drives=[(d.spec.node, d.spec.param) for d in cut.drives])


def render_segment(job: Job, inputs: dict[Link, np.ndarray], driven: list[np.ndarray], start: int,
                   stop: int) -> bytes | list[bytes]:
    """Render frames [start, stop) and encode them with an encoder node: the segment's file (mp4) or PNGs."""
    graph = Graph(ctx=job.ctx, nodes={}, links=job.links, specs={})
    for name, cls, values, specs in job.nodes:
        node = cls(name, values, job.ctx)
        node.input_specs = specs
        node.output_specs = node.configure(specs)
        graph.nodes[name] = node
    scheduler = runner.Scheduler(graph)
    name, cls, values, frame_spec = job.encoder
    with tempfile.TemporaryDirectory(prefix="cppnviz-segment-") as folder:
        out = Path(folder) / f"segment{job.suffix}"
        encoder = cls(name, {**values, "path": str(out)}, job.ctx)
        encoder.configure({"frame": frame_spec})          # no audio input: the driver muxes the song once
        nodes = [*graph.nodes.values(), encoder]
        for node in nodes:
            node.reset()
        started = []
        try:
            for node in nodes:
                node.start()
                started.append(node)
            for k in range(start, stop):
                for link, values_ in inputs.items():
                    scheduler.outputs[(link.node, link.port)] = values_[k - start]
                for (name_, param), values_ in zip(job.drives, driven):
                    # As the scheduler does: the drive's value for this tick, through the param's own check.
                    value = values_[k - start]
                    node = graph.nodes[name_]
                    if value is not None and value != getattr(node.p, param):
                        node.set_param(param, value.item() if hasattr(value, "item") else value, clamp=True)
                scheduler.step(k)
                encoder.process(tick(k, job.ctx.fps), frame=scheduler.outputs[(job.frame.node, job.frame.port)])
            for node in started:
                node.finish()
        except BaseException as exc:
            for node in reversed(started):
                node.abort()
            if isinstance(exc, NodeRunError):      # its cause travels as text: NodeRunError itself does not pickle
                raise SegmentBug(exc.node, f"{type(exc.cause).__name__}: {exc.cause}") from None
            raise
        if out.is_dir():
            return [p.read_bytes() for p in sorted(out.iterdir())]
        return out.read_bytes()


# -- joining ----------------------------------------------------------------------------------------

def join_mp4(segments: list[Path], starts: list[int], fps: Fraction, sound: Path | None, out: Path,
             container: str) -> None:
    """Concatenate H.264 segments (no re-encoding) and the AAC track into `out`, interleaved by time."""
    with _open(segments[0]) as first, _open(out, "w", format=container) as dest:
        template = first.streams.video[0]
        video = dest.add_stream_from_template(template)
        extradata = template.codec_context.extradata
        streams = [_video_packets(segments, starts, fps, extradata, video)]
        if sound is not None:
            with _open(sound) as s:
                audio = dest.add_stream_from_template(s.streams.audio[0])
            streams.append(_packets(sound, "audio", audio))
        for _, _, packet in heapq.merge(*streams):
            dest.mux(packet)


def _video_packets(segments, starts, fps, extradata, stream):
    for path, start in zip(segments, starts):
        with _open(path) as src:
            if src.streams.video[0].codec_context.extradata != extradata:
                raise RuntimeError(f"segment at frame {start} was encoded with other parameter sets")
        yield from _packets(path, "video", stream, start, fps)


def _packets(path: Path, kind: str, stream, start: int = 0, fps: Fraction | None = None):
    """(time, order, packet) for each packet of the file's first `kind` stream; video moved to frame `start`.

    A segment's timestamps count from its own first frame, rounded to the container's clock (1 ms in
    Matroska). They are taken back to frame numbers and rounded again from the whole file's frame
    numbers, as the muxer rounds a single-process render's.
    """
    with _open(path) as src:
        source = getattr(src.streams, kind)[0]
        tb = source.time_base
        for i, packet in enumerate(src.demux(source)):
            if packet.dts is None:                            # the demuxer's final empty packet
                continue
            if fps is not None:
                packet.pts, packet.dts = (_near(Fraction(start + round(t * tb * fps)) / fps / tb)
                                          for t in (packet.pts, packet.dts))
            packet.stream = stream
            yield packet.dts * tb, (kind, start, i), packet


def _near(x: Fraction) -> int:
    """x rounded to the nearest integer, halves away from zero (FFmpeg's av_rescale rounding)."""
    n = math.floor(abs(x) + Fraction(1, 2))
    return n if x >= 0 else -n


def publish(temp: Path, path: Path) -> None:
    """Rename the complete output onto `path`; a folder of frames replaces an old one (moved aside first)."""
    try:
        if temp.is_dir() and path.exists():
            old = partial_path(path, kind="old")
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old)
        else:
            os.replace(temp, path)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc}") from exc


def _discard(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- the whole render --------------------------------------------------------------------------------

@dataclass
class Result:
    frames: int
    segments: int
    seconds: dict[str, float]


class Render:
    """One video rendered on Ray, in two steps: submit() (analysis here, then the tasks) and collect().

    Between the two the driver is free: `batch` analyses the next song while this one renders.
    On any failure, or Ctrl-C, call cancel(): every task is cancelled and nothing is left behind.
    """

    def __init__(self, graph: Graph, n_frames: int, ray, *, segment_seconds: float):
        self.cut = split(graph)
        if n_frames == 0:
            raise CppnvizError("nothing to render on Ray: the run has 0 frames")
        self.graph, self.n_frames, self.ray = graph, n_frames, ray
        self.path = Path(self.cut.encoder.p.path.rstrip(os.sep))
        self.mp4 = self.cut.encoder.p.format == "mp4"
        self.bounds = segment_bounds(n_frames, graph.ctx.fps, segment_seconds)
        self.seconds: dict[str, float] = {}
        self.refs: dict = {}
        self.pending: list = []
        self.temp: Path | None = None
        self.work: Path | None = None

    def submit(self) -> None:
        """Run the analysis stage (and encode the song) here, then hand every segment to Ray."""
        for stale in remove_stale_partials(self.path):
            log.info("removed %s, left by an interrupted render", stale)
        self.temp = partial_path(self.path)
        self.work = Path(tempfile.mkdtemp(prefix="cppnviz-ray-"))
        began = time.perf_counter()
        self.sound = self.work / f"sound{self.path.suffix}" if self.mp4 and self.cut.audio is not None else None
        stacked, driven = analyse(self.graph, self.cut, self.n_frames, self.sound)
        self.seconds["analysis"] = time.perf_counter() - began
        self.began = time.perf_counter()
        task = self.ray.remote(max_retries=MAX_RETRIES, num_cpus=1, retry_exceptions=False)(render_segment)
        job = self.ray.put(make_job(self.graph, self.cut))
        for i, (lo, hi) in enumerate(self.bounds):
            ref = task.remote(job, {link: a[lo:hi] for link, a in stacked.items()}, [d[lo:hi] for d in driven], lo, hi)
            self.refs[ref] = i
            self.pending.append(ref)

    def collect(self, quiet: bool = False) -> Result:
        """Take each segment as it is done (a progress bar over all of them), join them and publish the file."""
        from tqdm import tqdm

        files: list[Path | None] = [None] * len(self.bounds)
        if not self.mp4:
            self.temp.mkdir()
        bar = tqdm(total=self.n_frames, unit="frame", disable=True if quiet else None, file=sys.stderr,
                   dynamic_ncols=True, desc=f"render ({len(self.bounds)} segments on Ray)")
        try:
            while self.pending:
                done, self.pending = self.ray.wait(self.pending, num_returns=1)
                i = self.refs[done[0]]
                lo, hi = self.bounds[i]
                data = _get(self.ray, done[0], (lo, hi))
                if self.mp4:
                    files[i] = self.work / f"segment-{i:05d}{self.path.suffix}"
                    files[i].write_bytes(data)
                else:
                    for k, png in enumerate(data, start=lo):
                        (self.temp / f"{k:06d}.png").write_bytes(png)
                bar.update(hi - lo)
        finally:
            bar.close()
        self.seconds["render"] = time.perf_counter() - self.began
        began = time.perf_counter()
        if self.mp4:
            join_mp4(files, [lo for lo, _ in self.bounds], self.graph.ctx.fps, self.sound, self.temp,
                     self.cut.encoder._container)
        self.seconds["join"] = time.perf_counter() - began
        publish(self.temp, self.path)
        self.temp = None
        shutil.rmtree(self.work, ignore_errors=True)
        return Result(self.n_frames, len(self.bounds), self.seconds)

    def cancel(self) -> None:
        """Cancel every segment still pending and delete what this render wrote (Ctrl-C, a failure)."""
        for ref in self.pending:            # nothing keeps rendering for nobody
            self.ray.cancel(ref, force=True)
        self.pending = []
        _discard(self.temp)
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


def render(graph: Graph, n_frames: int, ray, *, segment_seconds: float, quiet: bool = False) -> Result:
    """Render the graph's video with Ray tasks and publish it at the encoder's path."""
    job = Render(graph, n_frames, ray, segment_seconds=segment_seconds)
    try:
        job.submit()
        return job.collect(quiet)
    except BaseException:
        job.cancel()
        raise


def _get(ray, ref, bounds: tuple[int, int]):
    """A segment's result; a failure inside it becomes the node's error, as a plain render would report it."""
    from ray.exceptions import RayTaskError
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, CppnvizError):
            raise exc.cause from None
        if isinstance(exc.cause, SegmentBug):
            raise NodeRunError(exc.cause.node, RuntimeError(exc.cause.text)) from None
        raise RuntimeError(f"frames {bounds[0]}..{bounds[1] - 1}: {exc}") from None
