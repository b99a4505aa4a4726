"""Frame grids: playback fps of frame_grid (linear) on one core, bake fps, and PSNR against the CPPN by steps.

playback  a 4x4 grid at each size, a new point (between nodes: 4 frames blended) every frame, on the
          calling thread only (median wall time, and the thread's CPU time: on a shared machine the
          wall time includes waiting for a core); against the cppn node (8 layers of 16, every core)
          at the same size, measured in the same run. Memory: the grid's frames as held (uint8) and the process's peak RSS.
bake      `cppnviz bake` (the real command) of the same CPPN, 16x16 steps at 512x512 by default: wall
          time (start-up and analysis included), the command's own fps, and its CPU time (both cores
          busy: CPU time / wall time near 2).
psnr      an 8x16 tanh CPPN at 64x64 over features 0 and 1 in 0..1 (the others at 0.5), linear blending
          at 200 random points against rendering the CPPN there, for steps 8, 16, 32, 64.

    .venv/bin/python bench/bench_grid.py [--only playback bake psnr] [--sizes 512x512 1920x1080 3840x2160]
                                         [--bake 16x512x512 32x1920x1080] [--backend numpy|cupy]

--backend cupy plays from GPU memory (and renders the cppn there): each time waits for the GPU
(stream synchronised) but leaves the frame on the device, as the encoder and the window take it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from cppnviz import grid
from cppnviz.node import Context
from cppnviz.nodes import cppn
from cppnviz.nodes.frame_grid import FrameGrid
from cppnviz.ports import Spec
from cppnviz.timebase import Tick
from machine import cpu_model, load  # bench/machine.py, beside this script

LAYERS, HIDDEN, FEATURES = 8, 16, 8
ROOT = Path(__file__).resolve().parent.parent


def sync(frame) -> None:
    """Wait until the GPU has made a device frame (launches return at once); a host frame is already done."""
    if hasattr(frame, "__cuda_array_interface__"):
        import cupy
        cupy.cuda.get_current_stream().synchronize()


def cppn_node(width: int, height: int, backend: str = "auto"):
    values = {p.name: p.default for p in cppn.CPPN.params}
    values.update(width=width, height=height, layers=LAYERS, hidden=HIDDEN, activation="tanh", backend=backend)
    node = cppn.CPPN("cppn", values, Context(fps=Fraction(60)))
    node.input_specs = {"features": Spec("features", size=FEATURES)}
    node.configure(node.input_specs)
    return lambda features: node.process(Tick(0, 0.0), features=np.asarray(features, np.float32))["frame"]


def player(path: Path, backend: str = "numpy") -> FrameGrid:
    node = FrameGrid("grid", {"path": str(path), "vary": [0, 1], "blend": "linear", "smooth": 0.0,
                              "backend": backend}, Context(fps=Fraction(60)))
    node.input_specs = {"features": Spec("features", size=FEATURES)}
    node.configure(node.input_specs)
    return node


def synthetic_grid(path: Path, width: int, height: int, steps: int = 4) -> None:
    """A steps x steps grid of smooth pictures (gradients), quick to deflate: playback never inflates."""
    writer = grid.GridWriter(path, grid.make_header(width=width, height=height, vary=[0, 1], steps=[steps, steps],
                                                    ranges=[[0, 1], [0, 1]], fixed=None, source={}))
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    for i, j in grid.positions([steps, steps]):
        phase = np.array([0.0, 0.33, 0.66], np.float32) + (i * steps + j) / steps**2
        writer.add(grid.encode(grid.to_uint8((np.sin(6.0 * (x + y) + 6.3 * phase) + 1) / 2)))
    writer.publish()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def playback(sizes: list[str], folder: Path, backend: str = "numpy") -> None:
    print(f"{'size':>10} {'grid ms':>8} {'grid fps':>9} {'CPU ms':>7} {'cppn ms':>8} {'ratio':>7} {'frames MiB':>11} {'peak RSS MiB':>13}")
    rng = np.random.default_rng(0)
    for size in sizes:
        width, height = map(int, size.lower().split("x"))
        path = folder / f"play_{size}.grid"
        synthetic_grid(path, width, height)
        node = player(path, backend)
        held = (node.grid.frames if node.device is None else node.device.frames).nbytes / 2**20
        features = rng.uniform(0.01, 0.99, (200, FEATURES)).astype(np.float32)
        node.process(Tick(0, 0.0), features=features[0])   # warm-up
        times, cpu = [], []
        for k, f in enumerate(features[1:], 1):
            started, began = time.perf_counter(), time.thread_time()
            sync(node.process(Tick(k, k / 60), features=f)["frame"])
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - began)
        ms, cpu_ms = 1000 * statistics.median(times), 1000 * statistics.median(cpu)
        render = cppn_node(width, height, backend)
        sync(render(features[0]))
        reps = 2 if width * height > 3_000_000 else 5
        ref = []
        for f in features[:reps]:
            started = time.perf_counter()
            sync(render(f))
            ref.append(time.perf_counter() - started)
        ref_ms = 1000 * statistics.median(ref)
        print(f"{size:>10} {ms:8.2f} {1000 / ms:9.1f} {cpu_ms:7.2f} {ref_ms:8.1f} {ref_ms / ms:6.1f}x {held:11.0f} {rss_mib():13.0f}",
              flush=True)
        del node, render


def bake(specs: list[str], folder: Path) -> None:
    print(f"{'grid':>16} {'frames':>7} {'seconds':>8} {'fps':>7} {'CPU s':>7} {'cores busy':>10} {'file MiB':>9} "
          f"{'of raw':>7}")
    graph = folder / "bake.yaml"
    wav = ROOT / "examples" / "demo.wav"
    for spec in specs:
        steps, width, height = map(int, spec.lower().split("x"))
        graph.write_text(f"fps: 60\nnodes:\n  audio: {{type: audio_file, params: {{path: {wav}}}}}\n"
                         f"  bands: {{type: stft_bands, inputs: {{audio: audio.audio}}, params: {{bands: octave8}}}}\n"
                         f"  cppn: {{type: cppn, inputs: {{features: bands.bands}}, params: {{width: {width}, "
                         f"height: {height}, layers: {LAYERS}, hidden: {HIDDEN}, activation: tanh}}}}\n")
        out = folder / f"bake_{spec}.grid"
        command = [sys.executable, "-m", "cppnviz.launch", "bake", str(graph), "--node", "cppn", "--vary", "0,1",
                   "--steps", str(steps), "--range", "0:1", "--range", "0:1", "--fixed", ",".join(["0.5"] * 8),
                   "--out", str(out), "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        fps = float(re.search(r"in [0-9.]+ s: ([0-9.]+) fps", result.stderr).group(1))
        n = steps * steps
        size = out.stat().st_size
        print(f"{spec:>16} {n:7d} {wall:8.1f} {fps:7.1f} {cpu:7.1f} {cpu / wall:10.2f} {size / 2**20:9.1f} {size / (n * width * height * 3):7.1%}",
              flush=True)
        out.unlink()


def psnr(folder: Path, steps_list=(8, 16, 32, 64), size: int = 64) -> None:
    print(f"{'steps':>6} {'frames':>7} {'linear dB':>10} {'nearest dB':>11}")
    render = cppn_node(size, size)
    points = np.random.default_rng(1).uniform(0, 1, (200, 2))
    base = np.full(FEATURES, 0.5, np.float32)

    def at(f0, f1):
        v = base.copy()
        v[:2] = f0, f1
        return v
    direct = [render(at(*p)).astype(np.float64) for p in points]
    for steps in steps_list:
        path = folder / f"psnr_{steps}.grid"
        header = grid.make_header(width=size, height=size, vary=[0, 1], steps=[steps, steps], ranges=[[0, 1], [0, 1]],
                                  fixed=base.tolist(), source={})
        writer = grid.GridWriter(path, header)
        values = np.linspace(0, 1, steps)
        for i, j in grid.positions([steps, steps]):
            writer.add(grid.encode(grid.to_uint8(render(at(values[i], values[j])))))
        writer.publish()
        figures = []
        for blend in ("linear", "nearest"):
            node = player(path)
            node.p.blend = blend
            mse = np.mean([np.mean((node.process(Tick(0, 0.0), features=at(*p))["frame"] - d) ** 2)
                           for p, d in zip(points, direct)])
            figures.append(10 * np.log10(1 / mse))
        print(f"{steps:6d} {steps * steps:7d} {figures[0]:10.1f} {figures[1]:11.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("playback", "bake", "psnr"), default=["playback", "bake", "psnr"])
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1920x1080", "3840x2160"])
    parser.add_argument("--bake", nargs="+", default=["16x512x512"], metavar="STEPSxWxH")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="playback on the host or the GPU")
    args = parser.parse_args()
    print(f"date      {datetime.now().isoformat(timespec='seconds')}")
    print(f"machine   {platform.platform()}; {cpu_model()}; {os.cpu_count()} cores; Python "
          f"{platform.python_version()}; numpy {np.__version__}")
    print(f"load avg  {load()} (before)\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "psnr" in args.only:
            psnr(folder)
            print()
        if "bake" in args.only:
            bake(args.bake, folder)
            print()
        if "playback" in args.only:
            playback(args.sizes, folder, args.backend)
            print()
    print(f"load avg  {load()} (after; 2 cores: above ~0.5 means another process shared them)")


if __name__ == "__main__":
    main()
