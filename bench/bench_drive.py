"""What drives cost per frame against rendering a 256x256 frame, measured in the same run.

The graph is examples/driven.yaml at 256x256 (8 layers of 16, numpy): per tick,
- the drives' evaluation: Drive.update for each drive (trailing blur, running range, avg, step, rate:
  the live path, which does the most work per tick) plus the runner's compare with the node's value;
- applying a changed value to the node (set_param: the param's check, then the node's reaction: the
  cppn re-places its pixels for a new `scale`, the coordinate cache and vignette, keeping its weights;
  feature_gain is read each frame and costs nothing more);
- the reference: the cppn rendering one 256x256 frame (its process(), features in).
Medians over repeated runs, so another process sharing the 2 cores moves them little.

    python bench/bench_drive.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from machine import cpu_model, load  # bench/machine.py, beside this script

from cppnviz.graph import load_graph
from cppnviz.timebase import tick

GRAPH = Path(__file__).resolve().parents[1] / "examples" / "driven.yaml"


def median_s(fn, repeat: int, number: int) -> float:
    """Median over `repeat` timings of `number` calls, per call."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - started) / number)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="source values each drive evaluates per timing")
    args = parser.parse_args()
    graph = load_graph(GRAPH, [("cppn", "backend", "numpy")], live=True)   # live: the trailing (per-tick) path
    cppn = graph.nodes["cppn"]
    drives = [d for d in graph.drives if d.spec.node == "cppn"]
    fps = graph.ctx.fps
    xs = np.random.default_rng(0).uniform(0, 1, args.frames)

    def evaluate():
        for d in drives:
            d.reset()
        for k, x in enumerate(xs):
            for d in drives:
                value = d.update(k, float(x))
                value != getattr(cppn.p, d.spec.param)   # the runner's compare before set_param
    per_tick = median_s(evaluate, repeat=15, number=1) / args.frames

    features = np.full(8, 0.5, np.float32)
    cppn.set_param("scale", 1.0)
    render = median_s(lambda: cppn.process(tick(30, fps), features=features), repeat=15, number=10)
    scales = iter(np.linspace(1.0, 1.6, 10**6))
    apply_scale = median_s(lambda: cppn.set_param("scale", float(next(scales)), clamp=True), repeat=15, number=10)
    gains = iter(np.linspace(0.5, 2.0, 10**6))
    apply_gain = median_s(lambda: cppn.set_param("feature_gain", float(next(gains)), clamp=True), repeat=15, number=100)

    print(f"bench_drive: {datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}, {len(os.sched_getaffinity(0))} "
          f"cores, Python {platform.python_version()}, NumPy {np.__version__}, load {load()}")
    print(f"graph {GRAPH.name}: cppn {cppn.p.width}x{cppn.p.height}, {cppn.p.layers} layers of {cppn.p.hidden}, "
          f"{len(drives)} drives ({', '.join(d.spec.param for d in drives)}), live path (trailing)")
    print(f"render one 256x256 frame (reference):        {1000 * render:8.3f} ms")
    print(f"drive evaluation, all {len(drives)} drives, per tick:  {1e6 * per_tick:8.1f} us = "
          f"{100 * per_tick / render:.3f} % of the frame (target < 2 %)")
    print(f"apply a new feature_gain (set_param):        {1e6 * apply_gain:8.1f} us = {100 * apply_gain / render:.3f} %")
    print(f"apply a new scale (set_param, pixels re-placed): {1000 * apply_scale:6.3f} ms = "
          f"{100 * apply_scale / render:.1f} % (paid only on ticks where the value changes)")


if __name__ == "__main__":
    main()
