"""The cppn node against the seed post's numpy method, measured in the same run (ms per frame and ratio).

Both render a CPPN of 8 layers of 32 over (row, col, r) plus 8 features, tanh, stretched
coordinates, as the seed's video scripts do. The seed's method: build the per-pixel input
matrix with the features appended, then one float64 matmul and tanh per layer over all pixels
(its weights are drawn once here, which only flatters it). The methods take turns in rounds,
so a busy machine slows all alike; each figure is the median of its reps after a warm-up.

    .venv/bin/python bench/bench_cppn.py [--sizes 256x256 512x512 1920x1080]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime
from fractions import Fraction

import numpy as np

from cppnviz.node import Context
from cppnviz.nodes import cppn
from cppnviz.ports import Spec
from cppnviz.timebase import Tick
from machine import cpu_model, load  # bench/machine.py, beside this script

LAYERS, HIDDEN, FEATURES, SEED = 8, 32, 8, 1337


def seed_method(width: int, height: int):
    """The seed's per-frame code with features appended to the inputs; returns render(features)."""
    rowmat = (np.tile(np.linspace(0, height - 1, height, dtype=np.float32), width).reshape(width, height).T
              - height / 2.0) / (height / 2.0)
    colmat = (np.tile(np.linspace(0, width - 1, width, dtype=np.float32), height).reshape(height, width)
              - width / 2.0) / (width / 2.0)
    coords = np.stack([rowmat, colmat, np.sqrt(rowmat**2 + colmat**2)]).transpose(1, 2, 0).reshape(-1, 3)
    rng = np.random.RandomState(SEED)
    sizes = [3 + FEATURES] + [HIDDEN] * (LAYERS - 1) + [3]
    weights = [rng.randn(a, b) for a, b in zip(sizes[:-1], sizes[1:])]

    def render(features):
        results = np.concatenate([coords, np.tile(features, (coords.shape[0], 1))], axis=1)
        for W in weights:
            results = np.tanh(np.matmul(results, W))
        results = (1 + results) / 2.0
        return results.reshape(height, width, 3)
    return render


def our_node(width: int, height: int, threads: int | None = None):
    values = {p.name: p.default for p in cppn.CPPN.params}
    values.update(width=width, height=height, layers=LAYERS, hidden=HIDDEN, seed=SEED, aspect="stretch")
    node = cppn.CPPN("cppn", values, Context(fps=Fraction(60)))
    node.input_specs = {"features": Spec("features", size=FEATURES)}
    node.configure(node.input_specs)
    if threads is not None:  # the same network on fewer threads, to show what the threads buy
        node.network = cppn.Network(width, height, layers=LAYERS, hidden=HIDDEN, seed=SEED,
                                    n_features=FEATURES, threads=threads)
    return lambda features: node.process(Tick(0, 0.0), features=features)["frame"]


def measure(renders: dict, reps: dict, rounds: int) -> dict:
    """Median (and min) ms per frame of each render, over `rounds` rounds of `reps[name]` calls each.

    Methods take turns round by round, so a busy machine slows all alike. Each turn starts
    after a pause: the seed's large float64 matmuls leave OpenBLAS's own threads spinning for
    a while after each call, and they took a core from whatever ran next (our 512x512 frame
    measured 60 ms right after a seed frame, 38 ms half a second later).
    """
    rng = np.random.default_rng(0)
    for render in renders.values():
        render(rng.random(FEATURES).astype(np.float32))  # warm-up: caches, pool threads, pages
    times = {name: [] for name in renders}
    for _ in range(rounds):
        for name, render in renders.items():
            time.sleep(0.5)
            for _ in range(reps[name]):
                features = rng.random(FEATURES).astype(np.float32)
                started = time.perf_counter()
                render(features)
                times[name].append(time.perf_counter() - started)
    return {name: (1000 * statistics.median(t), 1000 * min(t), len(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "512x512", "1920x1080"])
    args = parser.parse_args()

    print(f"date      {datetime.now().isoformat(timespec='seconds')}")
    print(f"machine   {platform.platform()}; {cpu_model()}; {os.cpu_count()} cores "
          f"({cppn.THREADS} render threads); Python {platform.python_version()}; numpy {np.__version__}; "
          f"OpenBLAS thread control {'found' if cppn._OPENBLAS else 'not found'}")
    print(f"network   {LAYERS} layers of {HIDDEN}, {FEATURES} features, tanh, float32 (seed: float64)")
    print(f"load avg  {load()} (before)")
    print()
    print(f"{'size':>10} {'seed ms':>9} {'cppn ms':>9} {'1 thread':>9} {'ratio':>7}   (median; min in brackets)")
    for size in args.sizes:
        width, height = map(int, size.lower().split("x"))
        big = width * height > 1_000_000
        renders = {"seed": seed_method(width, height), "ours": our_node(width, height),
                   "one": our_node(width, height, threads=1)}
        reps = {"seed": 1 if big else 3, "ours": 3 if big else 8, "one": 1 if big else 4}
        r = measure(renders, reps, rounds=2 if big else 3)
        ratio = r["seed"][0] / r["ours"][0]
        print(f"{size:>10} {r['seed'][0]:9.1f} {r['ours'][0]:9.1f} {r['one'][0]:9.1f} {ratio:6.1f}x   "
              f"[{r['seed'][1]:.1f} / {r['ours'][1]:.1f} / {r['one'][1]:.1f}]", flush=True)
    print()
    print(f"load avg  {load()} (after; 2 cores: above ~0.5 means "
          "another process shared them)")


if __name__ == "__main__":
    main()
