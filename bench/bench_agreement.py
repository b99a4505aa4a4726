"""Where float32 CPPN frames agree with the exact picture: the backends' agreement region, as a table.

For each network shape, the numpy node's float32 frame against float64 arithmetic on the same
float32 weights and coordinates (tests/agreement.py), worst pixel over a few seeds, in 8-bit
levels. Below 0.5 a second float32 backend (the GPU) that is as close agrees to within one level
(1/255); far above it float32 rounding alone decides the picture and no two backends can agree.
Not a timing: a measurement of rounding, the same on any machine to within a small factor.

    .venv/bin/python bench/bench_agreement.py [--size 96] [--seeds 1337 1 2]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from agreement import levels_off  # noqa: E402  (tests/agreement.py: the exact picture)

from cppnviz.nodes.cppn import Network  # noqa: E402

LAYERS = (2, 4, 6, 8, 12, 16, 24, 32)
HIDDEN = (4, 8, 16, 32, 64, 128, 256)


def worst(size: int, seeds: list[int], **params) -> float:
    """Largest distance from the exact picture over the seeds, in levels, at t = 0 and 1 s with period 2 s."""
    out = 0.0
    for seed in seeds:
        network = Network(size, size, seed=seed, period=2.0, **params)
        for t in (0.0, 1.0):
            out = max(out, levels_off(network.render(None, t), network))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    args = parser.parse_args()
    print(f"# {date.today()} | {args.size}x{args.size} | seeds {args.seeds} | NumPy {np.__version__} | "
          "levels off the exact picture, worst pixel")
    for activation, scale in (("tanh", 1.0), ("tanh", 10.0), ("sin", 1.0), ("gaussian", 1.0), ("clip", 1.0)):
        print(f"\n{activation}, scale {scale:g}\n\n| layers | " + " | ".join(f"H {h}" for h in HIDDEN) + " |")
        print("|---" * (len(HIDDEN) + 1) + "|")
        for layers in LAYERS:
            cells = [worst(args.size, args.seeds, layers=layers, hidden=h, activation=activation, scale=scale)
                     for h in HIDDEN]
            print(f"| {layers} | " + " | ".join(f"{v:.2g}" for v in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
