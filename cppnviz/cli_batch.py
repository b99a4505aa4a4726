"""`render --ray` and `cppnviz batch`: one video per song, on Ray or in this process (cli.py adds them)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from . import runner
from .argtypes import positive_seconds
from .errors import CppnvizError, GraphError, NodeRunError, OutputError, Problem

SEGMENT_SECONDS = 10.0


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray and --segment-seconds, shared by render and batch."""
    p.add_argument("--ray", metavar="ADDRESS",
                   help="render on Ray: auto (a running cluster), HOST:PORT, ray://HOST:PORT, or local "
                        "(start one here); needs pip install 'cppnviz[cluster]'")
    p.add_argument("--segment-seconds", type=positive_seconds, default=SEGMENT_SECONDS, metavar="S",
                   help=f"with --ray: seconds of video per Ray task (default {SEGMENT_SECONDS:g})")


def add_batch_command(subparsers) -> None:
    """Add `batch` to the CLI's subcommands."""
    text = "render one video per song into a folder (skipping songs whose video is up to date)"
    p = subparsers.add_parser("batch", help=text, description=text + ". A song that fails is reported and the "
                              "others complete; the exit status is then 2.")
    p.add_argument("graph", help="graph file (YAML) with one audio_file and one encoder node")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the videos, named after the songs")
    p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                   help="override a param (validated like the file); repeatable")
    p.add_argument("--seconds", type=positive_seconds, metavar="S", help="only the first S seconds of each song")
    p.add_argument("--preset", metavar="FILE", help="apply a preset (drives and params; a file or a shipped "
                                                    "preset's name, see `cppnviz presets`)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_options(p)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_batch)


def connect(args):
    """Ray, connected to the cluster --ray names (imported only now)."""
    from .ray_render import connect as ray_connect
    return ray_connect(args.ray)


def disconnect(ray) -> None:
    """Leave the cluster once the work is published: a Ctrl-C now has nothing left to stop, and one that
    landed inside Ray's own shutdown (atexit, at the interpreter's end) could crash it."""
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.shutdown()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def render_graph(graph, n: int, args, ray=None) -> str:
    """Render one loaded graph, on Ray when `ray` is given; return how the time was spent."""
    from tqdm import tqdm

    if ray is not None:
        from . import ray_render
        result = ray_render.render(graph, n, ray, segment_seconds=args.segment_seconds, quiet=args.quiet)
        return (f"analysis {result.seconds['analysis']:.2f} s, render on Ray {result.seconds['render']:.2f} s "
                f"in {result.segments} segments, join {result.seconds['join']:.2f} s")
    bar = tqdm(total=n, unit="frame", disable=True if args.quiet else None, file=sys.stderr, dynamic_ncols=True,
               desc="render")
    try:
        scheduler = runner.run(graph, n, on_tick=lambda k, s: bar.update(1))
    finally:
        bar.close()
    return ", ".join(f"{stage} {scheduler.seconds.get(stage, 0.0):.2f} s" for stage in ("analysis", "render", "encode"))


def _destination(args, data: dict) -> tuple[str, str]:
    """(the encoder node's name, the extension of its output: '.mp4', '.mkv', ... or '/' for PNG frames)."""
    from .graph import parse_assignment

    nodes = data.get("nodes") if isinstance(data, dict) else None
    nodes = nodes if isinstance(nodes, dict) else {}
    found = {kind: [n for n, spec in nodes.items() if isinstance(spec, dict) and spec.get("type") == kind]
             for kind in ("audio_file", "encoder")}
    problems = [Problem(str(args.graph), f"batch needs exactly one {kind} node (each song replaces its path), found "
                                         f"{', '.join(names) or 'none'}")
                for kind, names in found.items() if len(names) != 1]
    if problems:
        raise GraphError(problems)
    name = found["encoder"][0]
    params = nodes[name].get("params")
    params = dict(params) if isinstance(params, dict) else {}   # a malformed one is load_graph's error, per song
    for node, param, value in (parse_assignment(t) for t in args.set or ()):
        if node == name:
            params[param] = value
    if params.get("format", "mp4") == "png":
        return name, os.sep
    return name, Path(str(params.get("path") or "video.mp4")).suffix or ".mp4"


def _outputs(args, data: dict) -> list[tuple[str, str]]:
    """(song, video path) for every song; two songs that would write one video are refused before any render."""
    from .cli import absolute

    _, ext = _destination(args, data)
    folder = Path(absolute(args.out_dir))
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write videos to '{args.out_dir}': it is not a folder")
    pairs, seen = [], {}
    for song in args.songs:
        stem = Path(song).stem
        out = str(folder / stem) + ext
        if out in seen:
            raise OutputError(f"songs '{seen[out]}' and '{song}' would both write '{out}'; rename one")
        seen[out] = song
        pairs.append((song, out))
    return pairs


def up_to_date(out: str, song: str, graph: str) -> bool:
    """The video exists (published only when complete) and is newer than the song and the graph file."""
    try:
        made = os.stat(out.rstrip(os.sep)).st_mtime
        return made >= max(os.stat(song).st_mtime, os.stat(graph).st_mtime)
    except OSError:
        return False


def cmd_batch(args) -> int:
    from .cli import _overrides
    from .graph import load_graph, read_graph_file
    from .outputs import check_not_an_input

    data = read_graph_file(args.graph)
    pairs = _outputs(args, data)
    folder = Path(pairs[0][1].rstrip(os.sep)).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write videos to '{args.out_dir}': {exc.strerror or exc}") from None
    ray = connect(args) if args.ray else None
    rows: dict[int, tuple] = {}
    inflight: list = []          # on Ray: the song whose segments render while the next one is analysed

    def failed(i: int, song: str, exc: BaseException) -> None:
        lines = exc.problems() if isinstance(exc, CppnvizError) else [f"internal error in {exc} (a bug)"]
        for line in lines:
            print(f"error: {song}: {line}", file=sys.stderr)
        rows[i] = (song, "", "", "failed")

    def collect() -> None:
        i, song, out, job, started = inflight[0]       # stays listed until done: Ctrl-C cancels it below
        try:
            job.collect(args.quiet)
        except (CppnvizError, NodeRunError) as exc:
            inflight.pop(0)
            job.cancel()
            failed(i, song, exc)
            return
        inflight.pop(0)
        rows[i] = (song, str(job.n_frames), f"{time.perf_counter() - started:.2f}", f"wrote {out}")

    try:
        for i, (song, out) in enumerate(pairs):
            started, job = time.perf_counter(), None
            try:
                # Loaded (a few ms) even when the video is up to date: a mistake in --set or --preset is
                # reported, never passed over in silence.
                graph = load_graph(args.graph, _overrides(SimpleNamespace(set=args.set, audio=song, out=out), data),
                                   preset=args.preset)
                check_not_an_input(graph.files(written=True), graph.files(written=False))
                if up_to_date(out, song, args.graph):
                    rows[i] = (song, "", "", f"up to date: {out}")
                    continue
                n = runner.total_frames(graph, args.seconds)
                if ray is None:
                    render_graph(graph, n, args)
                    rows[i] = (song, str(n), f"{time.perf_counter() - started:.2f}", f"wrote {out}")
                    continue
                from .ray_render import Render
                job = Render(graph, n, ray, segment_seconds=args.segment_seconds)
                job.submit()
            except BaseException as exc:
                if job is not None:
                    job.cancel()
                if not isinstance(exc, (CppnvizError, NodeRunError)):
                    raise
                failed(i, song, exc)
                continue
            if inflight:
                collect()
            inflight.append((i, song, out, job, started))
        if inflight:
            collect()
    except BaseException:
        for *_, job, _ in inflight:
            job.cancel()
        raise
    if ray is not None:
        disconnect(ray)
    print(table(("song", "frames", "seconds", "status"), [rows[i] for i in sorted(rows)]))
    return 2 if any(row[3] == "failed" for row in rows.values()) else 0   # each failure had its error line


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [str(c).rjust(w) if i in (1, 2) else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
