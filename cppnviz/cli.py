"""The `cppnviz` command line: render, features, check, nodes, manifest."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path

from . import __version__, manifest, runner
from .launch import EXIT_INTERRUPTED, interrupt
from .argtypes import positive_seconds
from .errors import CppnvizError, GraphError, NodeRunError, OutputError, Problem
from .graph import Graph, load_graph, parse_assignment, read_graph_file
from .stems import audio_overrides
from .outputs import (absolute, check_file_output, check_folder, check_not_an_input, names_a_folder, partial_path,
                      remove_stale_partials)

log = logging.getLogger("cppnviz")

EXIT_USER = 2
EXIT_BUG = 1


def _overrides(args, data: dict) -> list[tuple[str, str, object]]:
    """--set assignments plus --audio/--out, which name the single audio_file/encoder node."""
    pairs = [parse_assignment(text) for text in args.set or ()]
    nodes = data.get("nodes") if isinstance(data, dict) else None
    nodes = nodes if isinstance(nodes, dict) else {}
    for flag, type_name in (("audio", "audio_file"), ("out", "encoder")):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "audio":   # --audio FILE, or --audio NAME=FILE per stem (repeatable)
            pairs += audio_overrides(value, nodes)
            continue
        matches = [n for n, spec in nodes.items() if isinstance(spec, dict) and spec.get("type") == type_name]
        if len(matches) != 1:
            found = ", ".join(matches) if matches else "none"
            raise GraphError([Problem(f"--{flag}", f"needs exactly one {type_name} node in the graph, found {found}; "
                                                   f"use --set NODE.path=... instead")])
        pairs.append((matches[0], "path", absolute(value)))
    return pairs


def _load(args) -> Graph:
    data = read_graph_file(args.graph)
    return load_graph(args.graph, _overrides(args, data), preset=getattr(args, "preset", None))


def cmd_check(args) -> int:
    graph = _load(args)
    n = runner.total_frames(graph, args.seconds) if any(x.frame_count() is not None for x in graph.nodes.values()) else None
    length = f", {n} frames at {float(graph.ctx.fps):g} fps" if n is not None else ""
    print(f"ok: {args.graph}: {len(graph.nodes)} nodes{length}")
    return 0


def cmd_render(args) -> int:
    graph = _load(args)
    encoders = graph.of_type("encoder")
    if not encoders:
        raise GraphError([Problem(str(args.graph), "nothing to render into: the graph has no encoder node")])
    check_not_an_input(graph.files(written=True), graph.files(written=False))
    n = runner.total_frames(graph, args.seconds)
    from .cli_batch import connect, disconnect, render_graph  # Ray is imported only with --ray

    ray = None
    if getattr(args, "ray", None):
        from .ray_render import split as segments_split
        segments_split(graph)  # a graph that cannot be rendered in segments is refused before Ray starts (seconds)
        ray = connect(args)
    started = time.perf_counter()
    split = render_graph(graph, n, args, ray)
    wall = time.perf_counter() - started
    if ray is not None:
        disconnect(ray)
    video_seconds = float(Fraction(n) / graph.ctx.fps)
    for enc in encoders:
        print(f"wrote {enc.p.path}", file=sys.stderr)
    print(f"{n} frames ({video_seconds:.2f} s of video) in {wall:.2f} s: {n / wall if wall else 0:.1f} fps, "
          f"{video_seconds / wall if wall else 0:.2f}x real time ({split})", file=sys.stderr)
    return 0


def _features_node(args, graph: Graph) -> str:
    if args.node:
        if args.node not in graph.nodes:
            raise GraphError([Problem("--node", f"no node named {args.node!r}; nodes: {', '.join(graph.nodes)}")])
        return args.node
    for consumer in ("cppn", "tiler"):
        feeding = graph.feeding(consumer)
        if feeding:
            return feeding[0]
    raise GraphError([Problem("--node", "no node feeds a cppn or tiler; name the node with --node")])


def cmd_features(args) -> int:
    graph = _load(args)
    name = _features_node(args, graph)
    node = graph.nodes[name]
    if not node.outputs:
        raise GraphError([Problem("--node", f"node '{name}' ({node.type_name}) has no outputs")])
    # Every features output of the node, in declaration order (onsets: strength, hit, envelope).
    ports = [o.name for o in node.outputs if graph.specs[(name, o.name)].kind == "features"]
    if not ports:
        port = node.outputs[0].name
        kind = graph.specs[(name, port)].kind
        raise GraphError([Problem("--node", f"node '{name}' first output '{port}' carries {kind}, expected features")])
    if args.csv is not None:  # checked before the analysis runs, not after
        check_csv_output(args.csv, graph.files(written=False), "features.csv")
    n = runner.total_frames(graph, args.seconds)
    columns = [column for port in ports for column in _columns(graph, name, port, several=len(ports) > 1)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time", *columns])
    for k, t, values in runner.collect(graph, name, ports, n):
        writer.writerow([k, f"{t:.6f}", *(f"{float(v):.6g}" for v in values)])
    if args.csv is None:
        sys.stdout.write(buffer.getvalue())
    else:
        write_atomically(Path(args.csv), buffer.getvalue())
        print(f"wrote {args.csv}: {n} rows, {len(columns)} columns of {name}.{'/'.join(ports)}", file=sys.stderr)
    return 0


def _columns(graph: Graph, name: str, port: str, *, several: bool) -> list[str]:
    """Column names of one output: its labels (prefixed with the port where a node has several outputs
    and the labels do not already name it), else node_port_i."""
    spec = graph.specs[(name, port)]
    if len(spec.labels) != spec.size:
        return [f"{name}_{port}_{i}" if several else f"{name}_{i}" for i in range(spec.size)]
    return [label if not several or label.startswith(port) else f"{port}_{label}" for label in spec.labels]


def check_csv_output(text: str, inputs: list[str], example: str) -> None:
    """Refuse a CSV path given on the command line that names a folder, a device or one of the run's inputs."""
    path = Path(absolute(text))
    if names_a_folder(text):
        raise OutputError(f"cannot write '{text}': it names a folder; give a file name such as {example}")
    check_file_output(path, what=f"a file name such as {example}")
    check_not_an_input([str(path)], inputs)


def write_atomically(path: Path, text: str) -> None:
    """Write under a hidden partial name in the same folder, then rename: never a half-written file."""
    path = path.expanduser().resolve()
    check_folder(path)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}") from None


def cmd_nodes(args) -> int:
    data = manifest.describe_nodes()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for type_name, info in data.items():
        print(f"{type_name}: {info['doc']}")
        for direction in ("inputs", "outputs"):
            for port, p in info[direction].items():
                print(f"  {direction[:-1]:6} {port} ({p['kind']}): {p['doc']}")
        for pname, p in info["params"].items():
            rng = f" [{p.get('min', '')}..{p.get('max', '')}]" if "min" in p or "max" in p else ""
            choices = f" {{{', '.join(p['choices'])}}}" if "choices" in p else ""
            unit = f" {p['unit']}" if p.get("unit") else ""
            value = "required" if p.get("required") else f"{p['default']!r}{unit}"
            print(f"  param  {pname} = {value} ({p['type']}{rng}{choices}): {p['doc']}")
        print()
    return 0


def cmd_manifest(args) -> int:
    sys.stdout.write(manifest.manifest_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cppnviz", description="Audio-reactive CPPN visuals from YAML graphs.")
    parser.add_argument("--version", action="version", version=f"cppnviz {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def graph_command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("graph", help="graph file (YAML)")
        p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                       help="override a param (validated like the file); repeatable")
        p.add_argument("--seconds", type=positive_seconds, metavar="S", help="only the first S seconds")
        p.add_argument("--preset", metavar="FILE", help="apply a preset (drives and params; a file or a shipped "
                                                        "preset's name, see `cppnviz presets`)")
        p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    p = graph_command("render", cmd_render, "render a graph to a video file")
    p.add_argument("--audio", action="append", metavar="[NAME=]FILE",
                   help="audio file for the graph's audio_file node; NAME=FILE for the node NAME (stems; repeatable)")
    p.add_argument("--out", metavar="FILE", help="output path for the graph's encoder node")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .cli_batch import add_batch_command, add_ray_options; add_ray_options(p)  # --ray, --segment-seconds
    p = graph_command("features", cmd_features, "write one CSV row of features per frame")
    p.add_argument("--audio", action="append", metavar="[NAME=]FILE",
                   help="audio file for the graph's audio_file node; NAME=FILE for the node NAME (stems; repeatable)")
    p.add_argument("--node", metavar="NODE", help="node whose features outputs to write, all of them (default: the node feeding the CPPN)")
    p.add_argument("--out", dest="csv", metavar="FILE.csv", help="CSV file to write (default: standard output)")
    graph_command("check", cmd_check, "validate a graph without rendering")
    from .cli_live import add_live_commands  # live and devices: pyo loads only when they run
    add_live_commands(sub)
    from .cli_beats import add_beats_command
    add_beats_command(sub)
    from .cli_fit import add_fit_command; add_fit_command(sub)  # fit: a CPPN look fitted to a picture
    from .cli_presets import add_presets_command; add_presets_command(sub)  # noqa: E702
    from .cli_separate import add_separate_command; add_separate_command(sub)  # harmonic.wav, percussive.wav
    from .cli_soundpic import add_soundpic_commands; add_soundpic_commands(sub)  # to-image, to-video, to-audio
    from .cli_web import add_web_commands  # web and glsl: the shader exports
    add_web_commands(sub)
    add_batch_command(sub)
    from .cli_grid import add_grid_commands; add_grid_commands(sub)  # bake, grid-from
    from .cli_learn import add_learn_command; add_learn_command(sub)  # learned features from your songs
    p = sub.add_parser("nodes", help="list node types, ports and params")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_nodes)
    p = sub.add_parser("manifest", help="print plugin.yaml, generated from the node classes")
    p.set_defaults(func=cmd_manifest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, interrupt)  # a killed render cleans up like Ctrl-C (launch sets it first)
    try:
        return args.func(args)
    except CppnvizError as exc:
        graph = str(getattr(args, "graph", "") or "")
        for line in exc.problems():
            # Name the graph file once, unless the problem already starts with it.
            where = f"{graph}: " if isinstance(exc, GraphError) and graph and not line.startswith(graph) else ""
            print(f"error: {where}{line}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:
        # `cppnviz nodes | head`: the reader left; stop quietly like other command-line tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NodeRunError as exc:
        if args.debug:
            raise
        print(f"error: internal error in {exc} (a bug: please report it; --debug shows the traceback)", file=sys.stderr)
        return EXIT_BUG
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (a bug: please report it; --debug shows the "
              f"traceback)", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    from .launch import main as launch
    sys.exit(launch())
