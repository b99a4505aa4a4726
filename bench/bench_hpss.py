"""hpss: separation time per minute of stereo 44.1 kHz, peak memory against song length, live cost per 512-sample block.

The reference, measured in the same run, is librosa.decompose.hpss (scipy's median filter) with
librosa.stft / istft on the same audio: on a shorter excerpt (it takes ~1 s per second of mono
audio here), scaled to a minute of stereo, and said so. Peak memory: what `hpss()` allocates on a
stereo song of each length (tracemalloc), its outputs included.

    python bench/bench_hpss.py [--minutes 1] [--reference-seconds 10] [--lengths 1,4,10]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

import numpy as np

from machine import cpu_model, load  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from drums import groove  # noqa: E402  (a drum pattern over a held chord, made on the spot)

from cppnviz.nodes import _hpss  # noqa: E402

SR = 44100


def song(seconds: float) -> np.ndarray:
    """Stereo [shape=(2, n)]: the tests' groove repeated, the right channel a shifted copy (not a duplicate)."""
    bar, _ = groove(120, 8.0)
    n = round(seconds * SR)
    left = np.resize(bar, n)
    return np.stack((left, 0.7 * np.roll(left, SR // 3))).astype(np.float32)


def best_of(repeats: int, fn) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` calls; CPU sums both cores' threads."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def separation(minutes: float, reference_seconds: float) -> None:
    y = song(60 * minutes)
    ours, cpu = (t / minutes for t in best_of(3, lambda: _hpss.hpss(y)))
    print(f"separation, stereo 44.1 kHz, {minutes:g} min: {ours:.2f} s per minute wall, {cpu:.2f} s CPU "
          f"({60 / ours:.0f}x real time; target < 2 s)")
    import librosa
    excerpt = song(reference_seconds)[0]

    def reference():
        harmonic, percussive = librosa.decompose.hpss(librosa.stft(excerpt))
        librosa.istft(harmonic, length=len(excerpt)), librosa.istft(percussive, length=len(excerpt))
    theirs = best_of(1, reference)[0] * (60 / reference_seconds) * 2
    print(f"  librosa hpss (scipy median filter), {reference_seconds:g} s mono scaled to a minute of stereo: "
          f"{theirs:.1f} s per minute; ours is {theirs / ours:.1f}x faster")


def live_block_cost(seconds: float = 20.0, block: int = 512) -> None:
    y = song(seconds)[0]
    separator = _hpss.Separator()
    for start in range(0, 10 * SR, block):   # warm up: past the first frames and their look-ahead
        separator.feed(y[start:start + block])
    starts = range(10 * SR, len(y) - block, block)
    began = time.perf_counter()
    for start in starts:
        separator.feed(y[start:start + block])
    per = (time.perf_counter() - began) / len(starts)
    print(f"live: {1e3 * per:.3f} ms per {block}-sample block (the block lasts {1e3 * block / SR:.1f} ms: "
          f"{per / (block / SR):.1%} of one core); look-ahead {1e3 * separator.latency / SR:.0f} ms")


def peak_memory(minutes: float) -> None:
    """Peak of the memory hpss() allocates (tracemalloc sees NumPy's buffers) on a stereo song of this length."""
    y = song(60 * minutes)
    tracemalloc.start()
    _hpss.hpss(y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    parts = 2 * y.nbytes
    print(f"peak memory, {minutes:g} min stereo: {peak / 2**20:.0f} MiB allocated at most, of which the two "
          f"parts it returns are {parts / 2**20:.0f} MiB: {(peak - parts) / 2**20:.0f} MiB working memory "
          f"(the song itself, {y.nbytes / 2**20:.0f} MiB, not counted)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--reference-seconds", type=float, default=10.0)
    parser.add_argument("--lengths", default="1,4,10", help="song lengths in minutes for the memory figures")
    args = parser.parse_args(argv)
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}, {resource.getpagesize()} B pages, Python "
          f"{platform.python_version()}, NumPy {np.__version__}, load {load()}")
    separation(args.minutes, args.reference_seconds)
    live_block_cost()
    for minutes in args.lengths.split(","):
        peak_memory(float(minutes))


if __name__ == "__main__":
    main()
