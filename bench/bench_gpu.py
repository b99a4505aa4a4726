"""GPU figures for the CuPy backend: kernel frame rate (CUDA events), FP32 fraction, and a full 1080p60 render."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np

from cppnviz import runner
from cppnviz.graph import load_graph
from cppnviz.nodes.cppn import Network, gpu_unavailable

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}


def flop_per_pixel(layers: int, hidden: int, features: int) -> int:
    """2 x multiply-adds of every layer (performance.md's count): about 13.2 kFLOP for 8 layers of 32 with 8 features."""
    return 2 * ((3 + features) * hidden + (layers - 2) * hidden * hidden + 3 * hidden)


def kernel_rate(width: int, height: int, layers: int, hidden: int, reps: int) -> float:
    """Milliseconds per frame of the fused kernel alone, timed with CUDA events after warm-up."""
    import cupy
    net = Network(width, height, layers=layers, hidden=hidden, n_features=8, backend="cupy")
    features = np.random.default_rng(0).random(8)
    for _ in range(5):  # compile and warm up
        net.render(features)
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for k in range(reps):
        net.render(features, k / 60)
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / reps


def fp32_peak_tflops() -> float:
    """FP32 peak: SMs x 128 FP32 lanes x 2 FLOP x clock (Hopper and Ampere GA10x have 128 lanes per SM)."""
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return props["multiProcessorCount"] * 128 * 2 * props["clockRate"] * 1e3 / 1e12


def full_render(seconds: float) -> tuple[int, float]:
    """examples/mixed.yaml at 1920x1080 on the GPU with audio: (frames, wall seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [("cppn", "width", 1920), ("cppn", "height", 1080), ("cppn", "backend", "cupy"),
                     ("video", "path", str(Path(tmp) / "gpu.mp4"))]
        started = time.perf_counter()
        graph = load_graph(ROOT / "examples" / "mixed.yaml", overrides)
        n = runner.total_frames(graph, seconds)
        runner.run(graph, n)
        return n, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=16.0, help="seconds of the demo for the full render")
    args = parser.parse_args()
    reason = gpu_unavailable()
    if reason:
        raise SystemExit(f"no GPU figures: {reason}")
    import cupy
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    peak = fp32_peak_tflops()
    print(f"# {date.today()} | {name} | FP32 peak {peak:.1f} TFLOP/s | {os.cpu_count()} CPU cores | "
          f"CuPy {cupy.__version__} | Python {platform.python_version()}")
    print("| size | network | ms/frame | frames/s | TFLOP/s | of FP32 peak |")
    print("|---|---|---|---|---|---|")
    for label, (w, h) in SIZES.items():
        for layers, hidden in ((8, 32), (8, 16)):
            ms = kernel_rate(w, h, layers, hidden, args.reps)
            tflops = flop_per_pixel(layers, hidden, 8) * w * h / (ms / 1e3) / 1e12
            print(f"| {label} | {layers} x {hidden} | {ms:.3f} | {1e3 / ms:.0f} | {tflops:.1f} | {tflops / peak:.0%} |",
                  flush=True)
    n, wall = full_render(args.seconds)
    video = float(Fraction(n) / 60)
    print(f"\nfull render, examples/mixed.yaml at 1920x1080, 60 fps, with audio: {n} frames in {wall:.2f} s = "
          f"{n / wall:.1f} fps, {video / wall:.2f}x real time")


if __name__ == "__main__":
    main()
