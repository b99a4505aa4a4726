"""The `cppnviz bake` and `cppnviz grid-from` commands: frame grid files (cli.py adds them with add_grid_commands)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import grid, runner
from .argtypes import positive_seconds
from .errors import CppnvizError, GraphError, OutputError, Problem
from .madefile import file_hash
from .outputs import check_file_output, check_not_an_input
from .ports import to_host
from .soundpic import write_atomic

log = logging.getLogger("cppnviz")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PERCENTILES = (1.0, 99.0)   # the song's range of a varied feature


def add_grid_commands(subparsers) -> None:
    """Add `bake` and `grid-from` to the CLI's subcommands."""
    text = "render a node's frames over a grid of feature values into a grid file (resumable)"
    p = subparsers.add_parser("bake", help=text, description=text + ". Killed and run again with the same "
                              "arguments, it resumes where it stopped.")
    p.add_argument("graph", help="graph file (YAML)")
    p.add_argument("--node", required=True, metavar="NODE", help="the frame-producing node to bake (cppn, tiler, ...)")
    p.add_argument("--vary", required=True, metavar="I,J[,K]",
                   help="1 to 3 indices of the features arriving at NODE, one per grid axis")
    p.add_argument("--steps", required=True, metavar="K[,K...]", help="steps per axis (one number: every axis)")
    p.add_argument("--range", action="append", metavar="LO:HI", dest="ranges",
                   help="one per axis, in --vary order; a negative LO as --range=-1:1 (default: the song's 1st..99th percentile of the feature)")
    p.add_argument("--fixed", metavar="V,V,...", help="every feature's value where it is not varied "
                   "(default: the song's median of each feature)")
    p.add_argument("--audio", metavar="FILE", help="song for the graph's audio_file node (the ranges and medians)")
    p.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE",
                   help="override a param (validated like the file); repeatable")
    p.add_argument("--seconds", type=positive_seconds, metavar="S", help="analyse only the first S seconds")
    p.add_argument("--out", required=True, metavar="FILE.grid", help="grid file to write")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a picture of the grid's frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bake)

    text = "make a grid file from images made elsewhere, named by their grid position (frame_03_17.png)"
    p = subparsers.add_parser("grid-from", help=text, description=text + ". The position is the last "
                              "1 to 3 integers in the name (one per axis, in axis order, counted from 0).")
    p.add_argument("folder", help="folder of images (png, jpg, webp, bmp, tif), all the same size")
    p.add_argument("--steps", required=True, metavar="K[,K...]", help="steps per axis (one number: every axis)")
    p.add_argument("--vary", default="0,1", metavar="I,J[,K]", help="feature indices the axes answer to (default 0,1)")
    p.add_argument("--range", action="append", metavar="LO:HI", dest="ranges",
                   help="feature values the first and last step stand for, one per axis; a negative LO as --range=-1:1 (default 0:1)")
    p.add_argument("--out", required=True, metavar="FILE.grid", help="grid file to write")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a picture of the grid's frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_grid_from)


# -- arguments ----------------------------------------------------------------------------

def parse_vary(text: str, n_features: int | None = None) -> list[int]:
    """'0,7' -> [0, 7]: 1 to 3 distinct feature indices, each below n_features."""
    try:
        vary = [int(v) for v in text.split(",")]
    except ValueError:
        raise CppnvizError(f"--vary: expected 1 to 3 feature indices such as 0,7, found {text!r}") from None
    if not 1 <= len(vary) <= 3 or len(set(vary)) != len(vary) or min(vary) < 0:
        raise CppnvizError(f"--vary: expected 1 to 3 distinct feature indices >= 0, found {text!r}")
    if n_features is not None and max(vary) >= n_features:
        raise CppnvizError(f"--vary: feature index {max(vary)} is past the {n_features} features arriving, "
                           f"found {text!r}")
    return vary


def parse_steps(text: str, axes: int) -> list[int]:
    """'32' -> [32] * axes, or one count per axis; each 2..1024."""
    try:
        steps = [int(v) for v in text.split(",")]
    except ValueError:
        raise CppnvizError(f"--steps: expected a whole number of steps such as 32, found {text!r}") from None
    if len(steps) == 1:
        steps = steps * axes
    if len(steps) != axes or not all(2 <= k <= 1024 for k in steps):
        raise CppnvizError(f"--steps: expected one count or {axes} counts (one per axis), each 2..1024, found {text!r}")
    return steps


def parse_ranges(texts: list[str] | None, axes: int) -> list[list[float]] | None:
    """['0:1', '-2:2'] -> [[0, 1], [-2, 2]], one per axis; None when none were given."""
    if not texts:
        return None
    if len(texts) != axes:
        raise CppnvizError(f"--range: expected one LO:HI per axis ({axes}), found {len(texts)}")
    ranges = []
    for text in texts:
        lo, sep, hi = text.partition(":")
        try:
            pair = [float(lo), float(hi)]
        except ValueError:
            pair = None
        if not sep or pair is None or not all(np.isfinite(pair)) or pair[0] == pair[1]:
            raise CppnvizError(f"--range: expected LO:HI, two different numbers such as 0:1.5, found {text!r}")
        ranges.append(pair)
    return ranges


# -- bake ---------------------------------------------------------------------------------

def cmd_bake(args) -> int:
    from .cli import _overrides
    from .graph import load_graph, read_graph_file
    from .timebase import tick

    out = Path(absolute_path(args.out))
    check_file_output(out, what="a file name such as look.grid")
    flags = SimpleNamespace(set=args.set, audio=args.audio)     # --out names the grid, not an encoder
    graph = load_graph(args.graph, _overrides(flags, read_graph_file(args.graph)))
    node = graph.nodes.get(args.node)
    if node is None:
        raise GraphError([Problem("--node", f"no node named {args.node!r}; nodes: {', '.join(graph.nodes)}")])
    frame_port = next((o.name for o in node.outputs if o.kind == "frame"), None)
    link = graph.links[node.name].get("features")
    if frame_port is None or link is None:
        raise GraphError([Problem("--node", f"node '{node.name}' ({node.type_name}) must make frames from a linked "
                                            f"'features' input to be baked")])
    check_not_an_input([str(out)], graph.files(written=False))
    sheet = _sheet_path(args, out, graph.files(written=False))
    n_features = graph.specs[(link.node, link.port)].size
    vary = parse_vary(args.vary, n_features)
    steps = parse_steps(args.steps, len(vary))
    ranges = parse_ranges(args.ranges, len(vary))
    fixed = _parse_fixed(args.fixed, n_features)
    song = None
    if ranges is None or fixed is None:
        values, song = _song_features(graph, link, args.seconds)
        if ranges is None:
            lo, hi = np.percentile(values[:, vary], PERCENTILES, axis=0)
            ranges = [[float(a), float(b) if b > a else float(a) + 1.0] for a, b in zip(lo, hi)]
            log.info("ranges from the song's %g..%g percentiles: %s", *PERCENTILES,
                     ", ".join(f"feature {i}: {a:.4g}..{b:.4g}" for i, (a, b) in zip(vary, ranges)))
        if fixed is None:
            fixed = [float(v) for v in np.median(values, axis=0)]
    height, width = graph.specs[(node.name, frame_port)].shape[:2]
    params = {p.name: getattr(node.p, p.name) for p in node.params}
    source = {"made_by": "cppnviz bake", "graph": Path(args.graph).name, "graph_sha256": file_hash(args.graph),
              "node": node.name, "node_type": node.type_name, "params": params,
              "params_sha256": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
              "fps": str(graph.ctx.fps), "song": song}
    header = grid.make_header(width=width, height=height, vary=vary, steps=steps, ranges=ranges, fixed=fixed,
                              source=source)
    base = np.asarray(fixed, np.float64)
    values_at = grid.axis_values(header)
    t0 = tick(0, graph.ctx.fps)
    node.reset()
    node.start()

    def frames(todo):
        for pos in todo:
            vector = base.copy()
            vector[vary] = [values_at[a][i] for a, i in enumerate(pos)]
            yield node.process(t0, features=vector.astype(np.float32))[frame_port]
    _write(out, header, frames, args, sheet)
    return 0


def _sheet_path(args, out: Path, inputs: list[str]) -> Path | None:
    """--contact-sheet, checked before any frame is made: a new file that is neither --out nor an input."""
    if not args.contact_sheet:
        return None
    sheet = Path(absolute_path(args.contact_sheet))
    check_file_output(sheet, what="a file name such as sheet.png")
    if os.path.realpath(sheet) == os.path.realpath(out):
        raise OutputError(f"cannot write '{sheet}': it is also --out; give the contact sheet another name")
    check_not_an_input([str(sheet)], inputs)
    return sheet


def _parse_fixed(text: str | None, n_features: int) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n_features or not all(np.isfinite(values)):
        raise CppnvizError(f"--fixed: expected {n_features} numbers (one per feature), found {text!r}")
    return values


def _song_features(graph, link, seconds) -> tuple[np.ndarray, dict | None]:
    """Every frame's features arriving at the baked node, over the song, after the graph's conditioning."""
    n = runner.total_frames(graph, seconds)
    if n == 0:
        raise CppnvizError("the song has no frames to take ranges or medians from; give --range and --fixed")
    log.info("analysing %d frames for the ranges and medians", n)
    values = np.stack([v for _, _, v in runner.collect(graph, link.node, [link.port], n)])
    files = [node.p.path for node in graph.of_type("audio_file")]
    song = {"file": Path(files[0]).name, "sha256": file_hash(files[0]), "frames": n} if len(files) == 1 else None
    return values, song


def _write(out: Path, header: dict, frames, args, sheet: Path | None) -> None:
    """Render the frames the work file lacks, deflating on a second thread, publish, draw the sheet."""
    from tqdm import tqdm

    writer = grid.GridWriter(out, header)
    total = header["frames"]
    if writer.started_over:
        print(f"starting over: {writer.work} was baked with other settings ({writer.started_over})", file=sys.stderr)
    if writer.resumed_from:
        print(f"resuming: {writer.resumed_from} already baked in {writer.work}", file=sys.stderr)
    bar = tqdm(total=total, initial=writer.done, unit="frame", disable=True if args.quiet else None,
               file=sys.stderr, dynamic_ncols=True, desc="bake")
    started, fresh = time.perf_counter(), total - writer.done
    try:
        # Deflating frame k while frame k+1 renders keeps both cores busy (zlib lets go of the GIL).
        with ThreadPoolExecutor(1, thread_name_prefix="deflate") as pool:
            pending: deque = deque()
            for frame in frames(grid.positions(header["steps"])[writer.done:]):
                pending.append(pool.submit(grid.encode, grid.to_uint8(to_host(frame))))
                while len(pending) > 2 or (pending and pending[0].done()):
                    writer.add(pending.popleft().result())
                    bar.update(1)
            while pending:
                writer.add(pending.popleft().result())
                bar.update(1)
        writer.publish()
    except BaseException:
        writer.close()
        if writer.done:
            print(f"stopped: {writer.done} of {total} frames kept in {writer.work}; run the same command to resume",
                  file=sys.stderr)
        raise
    finally:
        bar.close()
    wall = time.perf_counter() - started
    size = out.stat().st_size
    print(f"wrote {out}: {total} frames {header['width']}x{header['height']} over features {header['vary']} "
          f"({size / 2**20:.1f} MiB, {size / (total * header['width'] * header['height'] * 3):.1%} of raw); "
          f"{fresh} frames in {wall:.2f} s: {fresh / wall if wall else 0:.1f} fps", file=sys.stderr)
    if sheet is not None:
        write_contact_sheet(out, sheet)


def absolute_path(text: str) -> str:
    """A command-line path made absolute as every command does (cli.absolute)."""
    from .cli import absolute
    return absolute(text)


# -- grid-from ------------------------------------------------------------------------------

def cmd_grid_from(args) -> int:
    from PIL import Image

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CppnvizError(f"cannot read images from '{folder}': " + ("it does not exist" if not folder.exists()
                                                                      else "it is not a folder"))
    vary = parse_vary(args.vary)
    steps = parse_steps(args.steps, len(vary))
    ranges = parse_ranges(args.ranges, len(vary)) or [[0.0, 1.0] for _ in vary]
    out = Path(absolute_path(args.out))
    check_file_output(out, what="a file name such as look.grid")
    files = find_images(folder, steps)
    sheet = _sheet_path(args, out, [str(f) for f in files.values()])
    digest = hashlib.sha256()
    for pos in grid.positions(steps):
        digest.update(f"{pos}:{file_hash(files[pos])}\n".encode())
    with Image.open(files[(0,) * len(steps)]) as first:
        width, height = first.size
    for pos, path in files.items():   # before any work: opening reads only the image's header
        with Image.open(path) as image:
            if image.size != (width, height):
                raise CppnvizError(f"'{path}' is {image.size[0]}x{image.size[1]}; '{files[(0,) * len(steps)].name}' "
                                   f"is {width}x{height}: every image must be the same size")
    source = {"made_by": "cppnviz grid-from", "folder": folder.resolve().name, "images_sha256": digest.hexdigest()}
    header = grid.make_header(width=width, height=height, vary=vary, steps=steps, ranges=ranges, fixed=None,
                              source=source)

    def frames(todo):
        for pos in todo:
            with Image.open(files[pos]) as image:
                yield np.asarray(image.convert("RGB"), np.float32) / np.float32(255)
    _write(out, header, frames, args, sheet)
    return 0


def find_images(folder: Path, steps: list[int]) -> dict[tuple[int, ...], Path]:
    """Each grid position's image in `folder`: every position exactly once, every image in the grid."""
    found: dict[tuple[int, ...], Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        # The position is the name's last len(steps) integers: shot2_03_17.png is (3, 17) of a 2-D grid.
        pos = tuple(int(n) for n in re.findall(r"\d+", path.stem)[-len(steps):])
        if len(pos) != len(steps) or not all(0 <= i < k for i, k in zip(pos, steps)):
            raise CppnvizError(f"'{path}': expected a name ending in {len(steps)} grid position numbers below "
                               f"{steps} such as frame_{'_'.join(['03'] * len(steps))}{path.suffix}, found {path.name!r}")
        if pos in found:
            raise CppnvizError(f"'{path}' and '{found[pos]}' both hold grid position {pos}")
        found[pos] = path
    missing = [pos for pos in grid.positions(steps) if pos not in found]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CppnvizError(f"'{folder}': no image for grid position {shown} ({len(found)} of "
                           f"{int(np.prod(steps))} found)")
    return found


# -- contact sheet ----------------------------------------------------------------------------

def write_contact_sheet(path: Path, out: Path, *, max_side: int = 2048) -> None:
    """A picture of every frame: the first axis down, the others across (C order), each frame shrunk."""
    from PIL import Image

    check_file_output(out, what="a file name such as sheet.png")
    header = grid.read_header(path)
    steps = header["steps"]
    rows, cols = (1, steps[0]) if len(steps) == 1 else (steps[0], int(np.prod(steps[1:])))
    scale = min(1.0, max_side / (cols * header["width"]), max_side / (rows * header["height"]))
    cell = (max(1, round(header["width"] * scale)), max(1, round(header["height"] * scale)))
    sheet = Image.new("RGB", (cols * cell[0], rows * cell[1]))
    for _, pos, frame in grid.iter_frames(path):
        row, col = (0, pos[0]) if len(steps) == 1 else (pos[0], int(np.ravel_multi_index(pos[1:], steps[1:])))
        sheet.paste(Image.fromarray(frame).resize(cell, Image.BILINEAR), (col * cell[0], row * cell[1]))
    write_atomic(out, lambda partial: sheet.save(partial, format="PNG"))
    print(f"wrote {out}: {rows}x{cols} frames of {cell[0]}x{cell[1]}", file=sys.stderr)
