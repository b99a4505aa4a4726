"""The `cppnviz live` and `cppnviz devices` commands (cli.py adds them with add_live_commands)."""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from .argtypes import positive_seconds
from .errors import GraphError, Problem
from .graph import Graph, build_graph, parse_assignment, parse_destination, read_graph_file

log = logging.getLogger("cppnviz")


def add_live_commands(subparsers) -> None:
    """Add `live` and `devices` to the CLI's subcommands."""
    text = "run a graph live: sound in (a file played, or an input), pictures and OSC out in real time"
    p = subparsers.add_parser("live", help=text, description=text + ". Ctrl-C stops.")
    p.add_argument("graph", help="graph file (YAML)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--input", nargs="?", const="", metavar="DEVICE",
                        help="capture from an input device (index or part of its name, see `cppnviz devices`; "
                             "the default input when DEVICE is left out); replaces the graph's audio_file")
    source.add_argument("--audio", metavar="FILE", help="audio file to play for the graph's audio_file node")
    p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                   help="override a param (validated like the file); repeatable")
    p.add_argument("--preset", metavar="FILE", help="apply a preset (drives and params; see `cppnviz presets`)")
    p.add_argument("--osc-host", default="127.0.0.1", metavar="ADDR",
                   help="address to receive OSC param changes on (default 127.0.0.1; 0.0.0.0 for every network)")
    p.add_argument("--osc-port", type=_port, default=9000, metavar="N",
                   help="UDP port to receive OSC param changes on (default 9000; 0 picks a free one)")
    p.add_argument("--osc-out", action="append", type=_destination, default=[], metavar="HOST:PORT",
                   help="send features here every frame, besides the graph's osc.to; repeatable")
    p.add_argument("--oscquery-port", type=_port, metavar="N", help="serve OSCQuery (discovery) over HTTP on this port")
    p.add_argument("--no-window", action="store_true", help="no preview window")
    add_window_flags(p)
    p.add_argument("--audio-backend", choices=("pyo", "jack", "null"), default="pyo",
                   help="pyo: the sound card through PortAudio (default); jack: a running JACK server; "
                        "null: no sound card, the clock paced by the wall clock (CI, headless machines)")
    p.add_argument("--seconds", type=positive_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_live)

    p = subparsers.add_parser("screens", help="list the displays a window can open on, with their sizes",
                              description="List the displays (for live --screen N) and their desktop sizes.")
    p.set_defaults(func=cmd_screens)

    p = subparsers.add_parser("devices", help="list the audio inputs and outputs pyo can use",
                              description="List the audio inputs and outputs pyo (PortAudio) can use.")
    p.set_defaults(func=cmd_devices)


# -- live -------------------------------------------------------------------------------------

def live_graph(args) -> Graph:
    """Load the graph for a live run: --audio sets the file, --input swaps the audio_file for an audio_in."""
    path = Path(args.graph)
    data = read_graph_file(path)
    if getattr(args, "preset", None) is not None:
        from .presets import apply_preset
        data = apply_preset(data, args.preset)
    overrides = [parse_assignment(text) for text in args.set or ()]
    nodes = data.get("nodes") if isinstance(data, dict) else None
    nodes = nodes if isinstance(nodes, dict) else {}
    files = [n for n, spec in nodes.items() if isinstance(spec, dict) and spec.get("type") == "audio_file"]
    # --input on a graph built around an audio_in needs no swap.
    wants_file = args.audio is not None or (args.input is not None and files)
    if wants_file and len(files) != 1:
        flag = "--audio" if args.audio is not None else "--input"
        raise GraphError([Problem(flag, f"needs exactly one audio_file node in the graph, found {', '.join(files)}"
                                        if files else "needs an audio_file node in the graph, found none")])
    if args.audio is not None:
        # Paths given on the command line are relative to where the user typed them.
        overrides.append((files[0], "path", str(Path(args.audio).expanduser().resolve())))
    elif wants_file:
        name = files[0]
        params = nodes[name].get("params")
        rate = params.get("sample_rate", 44100) if isinstance(params, dict) else 44100
        # Same name and rate, so every link and param elsewhere in the graph still fits.
        data = {**data, "nodes": {**nodes, name: {"type": "audio_in", "params": {"sample_rate": rate}}}}
    # A played file is known in full: the graph runs as `render` runs it (centred windows, whole-track
    # prepass), only paced by the audio clock. Live semantics (no future) are for captured input.
    capturing = wants_file and args.audio is None or any(
        isinstance(spec, dict) and spec.get("type") == "audio_in" for spec in nodes.values())
    return build_graph(data, base_dir=path.resolve().parent, overrides=overrides, live=capturing, path=path)


def cmd_live(args) -> int:
    from . import live

    graph = live_graph(args)
    source = live.audio_source(graph)
    capture = source.type_name == "audio_in"
    if capture:
        live.check_live(graph)      # refuse whole-track nodes before any socket or sound card is opened
    if capture and args.audio_backend == "null":
        log.warning("live: --audio-backend null has no input device: the input is silence")
    # A played file runs the clock at the song's own rate; a captured input at the analysis rate.
    clock = live.AudioClock(source.p.sample_rate if capture else source.program_rate, backend=args.audio_backend,
                            play=None if capture else source.program,
                            capture=source.push if capture else None,
                            input_device=args.input)
    with ExitStack() as stack:
        stack.callback(clock.close)
        clock.open()                # a missing sound card is reported before any socket is opened
        control, sender = open_osc(stack, args, graph, live.sent_features(graph))
        window = None
        if not args.no_window:
            window = live_window(args, graph, source, control)
            stack.callback(window.close)
        run = live.LiveRun(graph, clock, control=control, sender=sender, window=window, seconds=args.seconds)
        what = f"input {args.input or '(default)'}" if capture else f"file {source.p.path}"
        log.info("live: %s at %d Hz (%s backend), %g fps; Ctrl-C stops", what, clock.sample_rate,
                 args.audio_backend, float(graph.ctx.fps))
        if window is not None:
            window.on_lost = lambda: print(run.stats.summary(), file=sys.stderr)
        with live.StopOnSignals(run) as signals:
            stats = run.run()
    print(stats.summary(), file=sys.stderr)
    return 130 if signals.signalled else 0   # Ctrl-C and SIGTERM: as render (and every shell) reports them


def open_osc(stack: ExitStack, args, graph: Graph, sent: list):
    """Start the OSC receiver (and OSCQuery), make the feature sender; all closed by `stack`. -> (control, sender)."""
    from .host_bridge.osc.control import ParamControl
    from .host_bridge.osc.sender import FeatureSender
    from .host_bridge.osc.server import OscServer

    control = ParamControl(graph)
    server = OscServer(control, host=args.osc_host, port=args.osc_port)
    stack.callback(server.close)
    server.start()
    args.osc_port = server.port   # the port bound (0 asks for a free one): the window's overlay shows it
    log.info("live: OSC params in on %s:%d (/<node>/<param>)", args.osc_host, server.port)
    destinations = list(dict.fromkeys([*graph.osc_to, *args.osc_out]))
    sender = None
    if destinations:  # with nothing to send, /cppnviz/frame still tells receivers the time
        sender = FeatureSender(graph, [(link.node, link.port) for link in sent], destinations)
        stack.callback(sender.close)
        log.info("live: features %s -> %s", ", ".join(map(str, sent)) or "none",
                 ", ".join(f"{host}:{port}" for host, port in destinations))
    if args.oscquery_port is not None:
        from .host_bridge.osc.oscquery import OscQueryServer

        query = OscQueryServer(control, args.osc_host, args.oscquery_port, server.port,
                               f"cppnviz {Path(args.graph).stem}")
        stack.callback(query.close)
        query.start()
        log.info("live: OSCQuery on http://%s:%d/", args.osc_host, query.port)
    return control, sender


# -- the window -------------------------------------------------------------------------------

def add_window_flags(p) -> None:
    """The performer's window: size, fit, fullscreen on a chosen screen, overlay."""
    from .preview import FITS

    p.add_argument("--window-size", type=_size, metavar="WxH",
                   help="window size in pixels, independent of the render size (default: the frame's, "
                        "fitted to the screen)")
    p.add_argument("--fit", choices=FITS, default="letterbox",
                   help="letterbox: the whole frame, black bars (default); fill: the window covered, edges "
                        "cropped; stretch: the whole frame, distorted")
    p.add_argument("--fullscreen", action="store_true", help="start fullscreen, borderless, no cursor (f toggles)")
    p.add_argument("--screen", type=int, default=0, metavar="N",
                   help="display to open on (0 = the first; `cppnviz screens` lists them)")
    p.add_argument("--overlay", action="store_true",
                   help="show the stats overlay and meters (o toggles; h or ? lists the keys)")


def live_window(args, graph: Graph, source, control):
    """The preview window as the flags ask, knowing the frame's size, the song and the OSC port."""
    from .live import shown_frame
    from .preview import PreviewWindow, check_screen

    if args.screen != 0:
        check_screen(args.screen)   # now, not after a whole-song analysis: the window opens only then
    link = shown_frame(graph)
    shape = graph.specs[(link.node, link.port)].shape if link is not None else None
    song = Path(source.p.path).name if source.type_name == "audio_file" else None
    return PreviewWindow(title=f"cppnviz live - {Path(args.graph).name}", overlay=args.overlay, fit=args.fit,
                         window_size=args.window_size, fullscreen=args.fullscreen, screen=args.screen,
                         frame_size=(shape[1], shape[0]) if shape else None, song=song,
                         osc_port=args.osc_port, control=control)


def cmd_screens(args) -> int:
    from .preview import screens

    driver, sizes = screens()
    print(f"SDL video driver: {driver}" + (" (no screen: windows are drawn in memory)"
                                           if driver in ("dummy", "offscreen") else ""))
    for index, (width, height) in enumerate(sizes):
        print(f"display {index}: {width}x{height}")
    if not sizes:
        print("no displays found")
    return 0


# -- devices ----------------------------------------------------------------------------------

def cmd_devices(args) -> int:
    from .audio_clock import import_pyo, quiet_native_stderr

    pyo = import_pyo()
    with quiet_native_stderr():
        found = [("inputs", pyo.pa_get_input_devices(), pyo.pa_get_default_input()),
                 ("outputs", pyo.pa_get_output_devices(), pyo.pa_get_default_output())]
        count = pyo.pa_count_devices()
    for kind, (names, indexes), default in found:
        print(f"audio {kind}:")
        if not indexes:
            print("  none found")
        for name, index in zip(names, indexes):
            print(f"  {index}: {name}{'  (default)' if index == default else ''}")
    if not count:
        print("pyo (PortAudio) sees no sound card on this machine; `cppnviz live --audio-backend null` runs "
              "without one")
    return 0


# -- argument types ---------------------------------------------------------------------------

def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, found {text!r}")
    return int(text)


def _size(text: str) -> tuple[int, int]:
    from .preview import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _destination(text: str) -> tuple[str, int]:
    dest = parse_destination(text)
    if dest is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return dest


