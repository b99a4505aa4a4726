"""Peak memory of `cppnviz render` against song length: frames stream through a fixed pool, so only the audio grows."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import yaml

from machine import cpu_model  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
SR = 44100

# Runs one render in a fresh interpreter and prints its own peak RSS in KiB. VmHWM, not
# getrusage's ru_maxrss: on Linux that carries the parent's high-water mark across fork and exec.
CHILD = """
import sys
from cppnviz.cli import main
code = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("maxrss_kib", peak, file=sys.stderr)
sys.exit(code)
"""


def song(path: Path, seconds: float) -> None:
    """A stereo 16-bit WAV: a tone and noise, so every band has energy."""
    import wave
    n = round(seconds * SR)
    t = np.arange(n) / SR
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(n)
    pcm = (np.clip(np.stack([left, left[::-1]], axis=1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def peak_rss_mib(seconds: float, size: int, tmp: Path) -> float:
    audio = tmp / f"song_{seconds:g}.wav"
    song(audio, seconds)
    graph = yaml.safe_load((ROOT / "examples" / "mixed.yaml").read_text())
    graph["nodes"]["audio"]["params"]["path"] = str(audio)
    graph["nodes"]["cppn"]["params"].update(width=size, height=size)
    graph["nodes"]["video"]["params"]["path"] = str(tmp / "out.mp4")
    path = tmp / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    result = subprocess.run([sys.executable, "-c", CHILD, "render", str(path), "--quiet"],
                            capture_output=True, text=True, check=True)
    kib = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("maxrss_kib"))
    return kib / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, nargs="*", default=[30, 180])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    print(f"# {date.today()} | {cpu_model()} | examples/mixed.yaml at {args.size}x{args.size}, stereo 44.1 kHz songs")
    print("| song s | peak RSS MiB | of which the decoded song (program + analysis), MiB |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            rss = peak_rss_mib(seconds, args.size, Path(tmp))
            audio_mib = seconds * SR * (2 + 1) * 4 / 2**20  # float32 stereo program + mono analysis
            print(f"| {seconds:g} | {rss:.0f} | {audio_mib:.0f} |", flush=True)


if __name__ == "__main__":
    main()
