"""`cppnviz web`: a static folder that plays a song and draws the graph's render stage as a WebGL2 shader.

The folder holds index.html (the player, with the shader and the per-frame features embedded, so
it works from file:// where a page cannot fetch local files), the shader on its own, and the song
(copied when browsers play it, else transcoded to Opus in Ogg with PyAV). The features are the
analysis stage's outputs over the whole song, run by the same scheduler as `render`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from . import __version__, runner
from .errors import CppnvizError, OutputError
from .glsl import Shader, graph_shader
from .graph import Graph
from .madefile import file_hash
from .outputs import check_folder, partial_path, remove_stale_partials

# What every browser with WebGL2 plays (by file name); anything else is transcoded.
PLAYABLE = {".mp3", ".wav", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".webm", ".weba"}
GENERATOR = '<meta name="generator" content="cppnviz web">'
FORMAT = 1   # of the page's embedded config and features (float32, frame after frame)


@dataclass
class Export:
    """What `export` wrote and how long each part took."""

    folder: Path
    n_frames: int
    n_features: int
    song: str
    transcoded: bool
    analysis_s: float
    total_s: float


def song_path(graph: Graph) -> Path:
    """The song the graph analyses: its one audio_file node's path (resolved when the graph was built)."""
    sources = graph.of_type("audio_file")
    if len(sources) != 1:
        found = ", ".join(n.name for n in sources) or "none"
        raise CppnvizError(f"a web page plays one song: the graph needs exactly one audio_file node, found {found}")
    return Path(sources[0].p.path)


def features_over(graph: Graph, shader: Shader, n_frames: int) -> np.ndarray:
    """(n_frames, n_features) float32: the shader's features links, end to end, at every tick."""
    out = np.zeros((n_frames, max(0, shader.n_features)), np.float32)
    if not shader.features:
        return out
    needed = {n for link in shader.features for n in graph.upstream(link.node)}
    names = [n for n in graph.nodes if n in needed]

    def keep(k: int, scheduler: runner.Scheduler) -> None:
        out[k] = np.concatenate([np.asarray(scheduler.outputs[(l.node, l.port)], np.float32).ravel()
                                 for l in shader.features])
    runner.run(graph, n_frames, names=names, on_tick=keep)
    return out


def write_song(source: Path, folder: Path) -> tuple[str, bool]:
    """Copy the song into `folder` if browsers play it, else transcode it to Opus/Ogg; (file name, transcoded)."""
    if source.suffix.lower() in PLAYABLE:
        name = "song" + source.suffix.lower()
        shutil.copyfile(source, folder / name)
        return name, False
    import av  # PyAV: the same decoder the audio nodes use

    name = "song.ogg"
    try:
        with av.open(str(source)) as src, av.open(str(folder / name), "w", format="ogg") as dst:
            stream = dst.add_stream("libopus", rate=48000)
            stream.bit_rate = 160_000
            resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
            for frame in src.decode(audio=0):
                for out in resampler.resample(frame):
                    dst.mux(stream.encode(out))
            for out in resampler.resample(None):
                dst.mux(stream.encode(out))
            dst.mux(stream.encode(None))
    except (av.FFmpegError, OSError) as exc:
        raise CppnvizError(f"cannot transcode '{source}' for the browser: {exc}") from None
    return name, True


def page(shader: Shader, features: np.ndarray, *, fps: float, song: str, title: str, made_from: dict | None = None) -> str:
    """index.html: the template with the config, the features (base64 float32) and the shader filled in."""
    config = {"format": FORMAT, "fps": fps, "n_frames": int(features.shape[0]), "n_features": int(features.shape[1]),
              "width": shader.width, "height": shader.height, "duration": features.shape[0] / fps,
              "song": song, "generator": f"cppnviz {__version__}", "made_from": made_from or {}}
    data = base64.b64encode(np.ascontiguousarray(features, "<f4").tobytes()).decode("ascii")
    text = files("cppnviz").joinpath("web_player.html").read_text(encoding="utf-8")
    fills = {"TITLE": _html(title), "SONG": _html(song),
             # "</" would end the script element early.
             "CONFIG": json.dumps(config).replace("</", "<\\/"), "FEATURES": data,
             "SHADER": shader.source.replace("</", "< /")}
    for key, value in fills.items():
        text = text.replace(f"/*CPPNVIZ:{key}*/", value)
    return text


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def check_destination(folder: Path) -> None:
    """The folder is new, empty, or an earlier `cppnviz web` page: never overwrite someone's other files."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write '{folder}': it is a file, not a folder; give a folder name such as site/")
    check_folder(folder)
    if folder.is_dir() and any(folder.iterdir()):
        index = folder / "index.html"
        try:
            ours = index.is_file() and GENERATOR in index.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            ours = False
        if not ours:
            raise OutputError(f"cannot write '{folder}': the folder holds files that `cppnviz web` did not write; "
                              "give a new or empty folder")


def export(graph: Graph, folder: Path, *, seconds: float | None = None) -> Export:
    """Write the web player for `graph` into `folder`: built under a partial name, renamed when complete."""
    started = time.perf_counter()
    shader = graph_shader(graph, target="webgl2")  # a node without a shader form stops here, before any file
    source = song_path(graph)
    folder = folder.expanduser().absolute()
    check_destination(folder)
    n_frames = runner.total_frames(graph, seconds)
    began = time.perf_counter()
    features = features_over(graph, shader, n_frames)
    analysis = time.perf_counter() - began
    remove_stale_partials(folder)
    partial = partial_path(folder)
    partial.mkdir()
    try:
        song, transcoded = write_song(source, partial)
        fps = float(graph.ctx.fps)
        title = f"{graph.path.stem if graph.path else 'cppnviz'} - {source.name}"
        made_from = {"graph": graph.path.name if graph.path else None, "song": source.name,
                     "song_sha256": file_hash(source), "features": [str(link) for link in shader.features]}
        text = page(shader, features, fps=fps, song=song, title=title, made_from=made_from)
        (partial / "index.html").write_text(text, encoding="utf-8")
        (partial / "shader.frag").write_text(shader.source, encoding="utf-8")
        _replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Export(folder, n_frames, shader.n_features, song, transcoded, analysis, time.perf_counter() - started)


def _replace(partial: Path, folder: Path) -> None:
    """Put the finished folder in place; an earlier export there is set aside first and removed after."""
    old = None
    if folder.exists():
        old = partial_path(folder, kind="old")
        os.replace(folder, old)
    try:
        os.replace(partial, folder)
    except OSError:
        if old is not None:
            os.replace(old, folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
