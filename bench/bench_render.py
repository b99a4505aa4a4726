"""End-to-end render speed of examples/mixed.yaml: real-time factor and where the time goes."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

from cppnviz import runner
from cppnviz.graph import load_graph
from machine import cpu_model  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"256x256": (256, 256), "512x512": (512, 512), "1080p": (1920, 1080)}


def render(graph_path: Path, width: int, height: int, seconds: float, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"
        overrides = [("cppn", "width", width), ("cppn", "height", height),
                     ("video", "path", str(out)), ("video", "preset", preset)]
        started = time.perf_counter()
        graph = load_graph(graph_path, overrides)
        n = runner.total_frames(graph, seconds)
        scheduler = runner.run(graph, n)
        wall = time.perf_counter() - started
        assert out.stat().st_size > 0
    video = float(Fraction(n) / graph.ctx.fps)
    return {"frames": n, "wall": wall, "fps": n / wall, "rtf": video / wall, **dict(scheduler.seconds)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--graph", default=str(ROOT / "examples" / "mixed.yaml"))
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of the demo to render per size")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()
    print(f"# {date.today()} | {cpu_model()} | {os.cpu_count()} cores | Python {platform.python_version()}")
    print(f"# graph {Path(args.graph).name}, {args.seconds:g} s of audio per size, x264 preset {args.preset}")
    print("| size | frames | wall s | fps | x real time | analysis s | render s | encode s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sizes:
        r = render(Path(args.graph), *SIZES[name], args.seconds, args.preset)
        print(f"| {name} | {r['frames']} | {r['wall']:.2f} | {r['fps']:.1f} | {r['rtf']:.2f} | "
              f"{r.get('analysis', 0):.2f} | {r.get('render', 0):.2f} | {r.get('encode', 0):.2f} |", flush=True)


if __name__ == "__main__":
    main()
