"""The `cppnviz web` and `cppnviz glsl` commands (cli.py adds them with add_web_commands)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .argtypes import positive_seconds
from .glsl import TARGETS


def add_web_commands(subparsers) -> None:
    """Add `web` and `glsl` to the CLI's subcommands."""
    text = "write a static web page that plays a song and draws the graph as a WebGL2 shader"
    p = subparsers.add_parser("web", help=text, description=text + ". Open DIR/index.html and press play; "
                              "index.html?t=SECONDS&still=1 shows one frame, canvas only.")
    _graph_arguments(p)
    p.add_argument("--audio", metavar="FILE", help="audio file for the graph's audio_file node")
    p.add_argument("--out", dest="folder", required=True, metavar="DIR", help="folder to write (new, empty, or an earlier page)")
    p.add_argument("--seconds", type=positive_seconds, metavar="S", help="only the first S seconds of features")
    p.set_defaults(func=cmd_web)

    text = "print a render node as a fragment shader with its weights baked in"
    p = subparsers.add_parser("glsl", help=text, description=text + " (features as a uniform float array, "
                              "the time as a uniform float).")
    _graph_arguments(p)
    p.add_argument("--audio", metavar="FILE", help="audio file for the graph's audio_file node")
    p.add_argument("--node", metavar="NODE", help="the render node (default: the frame the graph shows)")
    p.add_argument("--target", choices=TARGETS, default="webgl2",
                   help="webgl2 (GLSL ES 3.00), glsl330, or touchdesigner (a GLSL TOP pixel shader)")
    p.add_argument("--out", dest="glsl", metavar="FILE", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_glsl)


def _graph_arguments(p) -> None:
    p.add_argument("graph", help="graph file (YAML)")
    p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                   help="override a param (validated like the file); repeatable")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def cmd_web(args) -> int:
    from .cli import _load  # the shared graph loading (--set, --audio)
    from .web import export

    graph = _load(args)
    made = export(graph, Path(args.folder), seconds=args.seconds)
    how = "transcoded" if made.transcoded else "copied"
    print(f"wrote {made.folder}/index.html: {made.n_frames} frames of {made.n_features} features, "
          f"song {how} to {made.song}, in {made.total_s:.2f} s (analysis {made.analysis_s:.2f} s)", file=sys.stderr)
    return 0


def cmd_glsl(args) -> int:
    from .cli import _load, check_csv_output, write_atomically
    from .glsl import graph_shader

    graph = _load(args)
    shader = graph_shader(graph, node=args.node, target=args.target)
    if args.glsl is None:
        sys.stdout.write(shader.source)
        return 0
    check_csv_output(args.glsl, graph.files(written=False), "cppn.glsl")
    write_atomically(Path(args.glsl), shader.source)
    layout = ", ".join(f"{link} ({size})" for link, size in zip(shader.features, shader.sizes)) or "none"
    print(f"wrote {args.glsl}: {shader.width}x{shader.height}, features {layout}", file=sys.stderr)
    return 0
