"""The `cppnviz beats` command: a song's tempo, and one CSV row per beat (cli.py adds it with add_beats_command)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from . import runner
from .graph import build_graph

FPS = 100   # ticks per second of the run: the live tracker fires beats on these ticks


def add_beats_command(subparsers) -> None:
    """Add `beats` to the CLI's subcommands."""
    text = "print a song's tempo and write one CSV row per beat (time, bpm, beat in the bar)"
    p = subparsers.add_parser("beats", help=text, description=text + ". The tempo goes to standard error, "
                              "the rows to --out or standard output.")
    p.add_argument("song", help="audio file (wav, flac, mp3, ogg, m4a, ...)")
    p.add_argument("--out", dest="csv", metavar="FILE.csv", help="CSV file to write (default: standard output)")
    p.add_argument("--live", action="store_true",
                   help="track causally, as a live show would (each beat predicted from the past only)")
    p.add_argument("--bpm", type=float, metavar="BPM", help="a tempo to track near instead of estimating it (picks half or double time; "
                   "beats still land on the onsets)")
    p.add_argument("--bpm-min", type=float, metavar="BPM", help="slowest tempo considered (default 50)")
    p.add_argument("--bpm-max", type=float, metavar="BPM", help="fastest tempo considered (default 220)")
    p.add_argument("--beats-per-bar", type=int, metavar="N", help="beats in a bar, for the index column (default 4)")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_beats)


def cmd_beats(args) -> int:
    from .cli import absolute, check_csv_output, write_atomically  # the shared path and output helpers

    params = {"mode": "live" if args.live else "offline"}
    for name in ("bpm", "bpm_min", "bpm_max", "beats_per_bar"):   # each flag sets the beats param of its name
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    song = absolute(args.song)
    data = {"fps": FPS, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": song}},
        "beats": {"type": "beats", "inputs": {"audio": "audio.audio"}, "params": params}}}
    graph = build_graph(data, base_dir=Path.cwd(), live=args.live, path=Path(args.song))
    if args.csv is not None:  # checked before the analysis runs, not after
        check_csv_output(args.csv, [song], "beats.csv")
    runner.run(graph, runner.total_frames(graph))
    beats = graph.nodes["beats"]
    text = beat_table(beats.given, beats.p.beats_per_bar)
    print(summary(beats.given, args.song), file=sys.stderr)
    if args.csv is None:
        sys.stdout.write(text)
    else:
        write_atomically(Path(args.csv), text)
        print(f"wrote {args.csv}: {len(beats.given)} rows", file=sys.stderr)
    return 0


def beat_table(times, beats_per_bar: int) -> str:
    """CSV text: a header, then time (s), bpm (around that beat) and beat (1..beats_per_bar, from the first)."""
    from .nodes.beats import local_bpm  # the node library, loaded when the command runs

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["time", "bpm", "beat"])
    for i, (t, bpm) in enumerate(zip(times, local_bpm(times))):
        writer.writerow([f"{t:.4f}", f"{bpm:.2f}", i % beats_per_bar + 1])
    return buffer.getvalue()


def summary(times, song: str) -> str:
    """One line: the song's tempo (the median of the tempo at each beat), or that it has no beats."""
    from .nodes.beats import local_bpm

    if len(times) < 2:
        return f"{song}: no beats found (silence, or no steady pulse): tempo 0 bpm"
    tempo = np.median(local_bpm(times))
    return f"{song}: tempo {tempo:.1f} bpm, {len(times)} beats from {times[0]:.2f} s to {times[-1]:.2f} s"
