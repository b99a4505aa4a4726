"""Peak memory of `cppnviz render` against song length up to hours, and the time to the first frame of a cut.

The render streams the song: peak RSS should not grow with its length. Songs are silence with a
short tone every 30 s (FLAC, made on the spot: tests/long_audio.py), so hours cost megabytes on disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

from machine import cpu_model  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from long_audio import sparse_song  # noqa: E402

# Runs one render in a fresh interpreter and prints its own peak RSS in KiB and when its first frame
# was done. VmHWM, not getrusage's ru_maxrss: on Linux that carries the parent's high-water mark
# across fork and exec.
CHILD = """
import os, sys, time
from cppnviz import runner
from cppnviz.launch import main
first = []
run = runner.run
def timed(graph, n, on_tick=None, **kw):
    def first_tick(k, s):
        if not first:
            first.append(time.time() - float(os.environ["BENCH_T0"]))
        if on_tick:
            on_tick(k, s)
    return run(graph, n, on_tick=first_tick, **kw)
runner.run = timed
code = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("peak_kib", peak, file=sys.stderr)
print("first_frame_s", first[0] if first else -1, file=sys.stderr)
sys.exit(code)
"""


def render(song: Path, tmp: Path, size: int, fps: int, rate: int, *args) -> tuple[float, float, float]:
    """(peak RSS MiB, seconds from start to the first frame, wall seconds) of one render of examples/mixed.yaml."""
    graph = yaml.safe_load((ROOT / "examples" / "mixed.yaml").read_text())
    graph["fps"] = fps
    graph["nodes"]["audio"]["params"].update(path=str(song), sample_rate=rate)
    graph["nodes"]["cppn"]["params"].update(width=size, height=size)
    graph["nodes"]["video"]["params"]["path"] = str(tmp / "out.mp4")
    path = tmp / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    started = time.time()
    result = subprocess.run([sys.executable, "-c", CHILD, "render", str(path), "--quiet", *args],
                            capture_output=True, text=True, env={**os.environ, "BENCH_T0": repr(started)})
    wall = time.time() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    values = dict(line.split() for line in result.stderr.splitlines() if line.startswith(("peak_kib", "first_frame_s")))
    return int(values["peak_kib"]) / 1024, float(values["first_frame_s"]), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, nargs="*", default=[0.05, 0.5, 1, 3])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=int, default=2, help="frames per second (the RSS does not depend on it; "
                                                            "a low rate keeps hours of render short)")
    parser.add_argument("--rate", type=int, default=44100, help="the song's and the analysis sample rate")
    args = parser.parse_args()
    print(f"# {date.today()} | {cpu_model()} | examples/mixed.yaml at {args.size}x{args.size}, {args.fps} fps, "
          f"mono {args.rate} Hz FLAC songs")
    print("| song | peak RSS MiB | render wall s | the decoded song as float32 (program + analysis), MiB |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for hours in args.hours:
            song = sparse_song(tmp / f"song_{hours:g}.flac", hours * 3600, rate=args.rate)
            rss, _, wall = render(song, tmp, args.size, args.fps, args.rate)
            whole = hours * 3600 * args.rate * 2 * 4 / 2**20
            print(f"| {hours:g} h | {rss:.0f} | {wall:.1f} | {whole:.0f} |", flush=True)
        hour = sparse_song(tmp / "hour.flac", 3600, rate=args.rate)
        _, first, wall = render(hour, tmp, args.size, 60, args.rate, "--seconds", "30")
        print(f"\n`--seconds 30` of a 1-hour song at 60 fps: first frame {first:.2f} s after the command started, "
              f"whole render {wall:.1f} s")


if __name__ == "__main__":
    main()
