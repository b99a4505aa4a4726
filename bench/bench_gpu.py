"""GPU figures for the CuPy backend: what each kernel build costs and how far its pictures are from numpy's.

- The fused kernel's frame time (CUDA events after warm-up) at 1080p and 4K, for each math build
  (accurate: tanhf, the kernels' own sin, expf; fast: tanh.approx, __sinf, __expf) and each place
  for the weights (shared, private, global; nodes/_cuda.py says what each is), with its fraction
  of the FP32 peak and its ratio to the default build (accurate, shared) in the same run.
- Networks of one shape rendered back to back, as the tiler's bands are: the case where the
  shared build copies weights before every launch.
- Levels off the numpy node, per math build: whether the approximations keep the 1/255 promise.
- A full 1080p60 render of examples/mixed.yaml with audio.

    python bench/bench_gpu.py [--reps 200] [--seconds 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np

from cppnviz import runner
from cppnviz.graph import load_graph
from cppnviz.nodes import _cuda
from cppnviz.nodes.cppn import Network, gpu_unavailable

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}
MATH = {"accurate": False, "fast": True}


def flop_per_pixel(layers: int, hidden: int, features: int) -> int:
    """2 x multiply-adds of every layer (performance.md's count): about 13.2 kFLOP for 8 layers of 32 with 8 features."""
    return 2 * ((3 + features) * hidden + (layers - 2) * hidden * hidden + 3 * hidden)


@contextmanager
def build(memory: str, math: str):
    """Networks made inside the block use this weight memory and math build."""
    saved = _cuda.WEIGHT_MEMORY, _cuda.FAST_MATH
    _cuda.WEIGHT_MEMORY, _cuda.FAST_MATH = memory, MATH[math]
    try:
        yield
    finally:
        _cuda.WEIGHT_MEMORY, _cuda.FAST_MATH = saved


def gpu_ms(frame, reps: int) -> float:
    """Milliseconds per call of frame(k), timed with CUDA events after five warm-up calls (the first compiles)."""
    import cupy
    for k in range(5):
        frame(k)
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for k in range(reps):
        frame(k)
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / reps


def kernel_ms(width: int, height: int, layers: int, hidden: int, reps: int) -> float:
    net = Network(width, height, layers=layers, hidden=hidden, n_features=8, backend="cupy")
    features = np.random.default_rng(0).random(8)
    return gpu_ms(lambda k: net.render(features, k / 60), reps)


def bands_ms(n: int, side: int, layers: int, hidden: int, reps: int) -> float:
    """n networks of one shape (seeds differ), each rendered once per frame, as the tiler's bands."""
    nets = [Network(side, side, layers=layers, hidden=hidden, seed=1337 + b, n_features=1, period=4.0,
                    activation="clip", backend="cupy") for b in range(n)]
    return gpu_ms(lambda k: [net.render(np.array([0.5]), k / 60) for net in nets], reps)


def levels_off_numpy(params: dict, size: int = 256) -> float:
    """Largest difference from the numpy node over three frames, in 8-bit levels."""
    import cupy
    gpu, cpu = (Network(size, size, backend=b, **params) for b in ("cupy", "numpy"))
    return max(float(np.abs(cupy.asnumpy(gpu.render(None, t)) - cpu.render(None, t)).max()) * 255
               for t in (0.0, 0.5, 1.0))


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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

    print("\n| size | network | math | weights | ms/frame | frames/s | TFLOP/s | of FP32 peak | vs default |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, (w, h) in SIZES.items():
        for layers, hidden in ((8, 32), (8, 16)):
            default = None
            for math in MATH:
                for memory in _cuda.WEIGHT_MEMORIES:
                    with build(memory, math):
                        ms = kernel_ms(w, h, layers, hidden, args.reps)
                    default = default or ms
                    tflops = flop_per_pixel(layers, hidden, 8) * w * h / (ms / 1e3) / 1e12
                    print(f"| {label} | {layers} x {hidden} | {math} | {memory} | {ms:.3f} | {1e3 / ms:.0f} | "
                          f"{tflops:.1f} | {tflops / peak:.0%} | {default / ms:.2f}x |", flush=True)

    print("\nNetworks of one shape rendered back to back (the tiler's bands), accurate math:\n")
    print("| networks | each | weights | ms/frame, all of them |")
    print("|---|---|---|---|")
    for n, side, layers, hidden in ((8, 128, 4, 16), (8, 512, 8, 32)):
        for memory in _cuda.WEIGHT_MEMORIES:
            with build(memory, "accurate"):
                ms = bands_ms(n, side, layers, hidden, args.reps)
            print(f"| {n} | {layers} x {hidden} at {side}x{side} | {memory} | {ms:.3f} |", flush=True)

    print("\nLevels off the numpy node (worst pixel of three 256x256 frames; the promise is <= 1):\n")
    print("| network | " + " | ".join(MATH) + " |")
    print("|---|" + "---|" * len(MATH))
    for label, params in (("tanh 8 x 16", {}), ("tanh 8 x 32", {"hidden": 32}),
                          ("sin 6 x 16", {"activation": "sin", "layers": 6}), ("sin 8 x 16", {"activation": "sin"}),
                          ("gaussian 8 x 16", {"activation": "gaussian"})):
        cells = []
        for math in MATH:
            with build("shared", math):
                cells.append(f"{levels_off_numpy(params):.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)

    n, wall = full_render(args.seconds)
    video = float(Fraction(n) / 60)
    print(f"\nfull render, examples/mixed.yaml at 1920x1080, 60 fps, with audio: {n} frames in {wall:.2f} s = "
          f"{n / wall:.1f} fps, {video / wall:.2f}x real time")


if __name__ == "__main__":
    main()
