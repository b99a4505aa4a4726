"""`render --ray` against the single-process render: speed-up, overhead per segment, driver memory, PSNR at joins.

Starts one local Ray cluster (ray.init, --cpus CPUs) and runs the real CLI as its drivers, each in a fresh
interpreter (VmHWM is the driver's peak RSS). Where Ray must stay on loopback (this project's test
machines), run it inside a network namespace:

    unshare --net sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_ray.py'
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import av
import numpy as np
import yaml

from machine import cpu_model, load  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from long_audio import sparse_song  # noqa: E402

CHILD = """
import sys
from cppnviz.launch import main
code = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("peak_kib", peak, file=sys.stderr)
sys.exit(code)
"""


def graph(tmp: Path, song: Path, width: int, height: int, name: str) -> Path:
    """examples/mixed.yaml at this size, on this song."""
    data = yaml.safe_load((ROOT / "examples" / "mixed.yaml").read_text())
    data["fps"] = 30
    data["nodes"]["audio"]["params"]["path"] = str(song)
    data["nodes"]["cppn"]["params"].update(width=width, height=height)
    data["nodes"]["video"]["params"]["path"] = str(tmp / f"{name}.mp4")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def render(path: Path, *args) -> tuple[float, float, str]:
    """(wall seconds of the whole command, driver peak RSS MiB, its summary line)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, "render", str(path), "--quiet", *map(str, args)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"render failed: {done.stderr[-2000:]}")
    peak = int(re.search(r"peak_kib (\d+)", done.stderr).group(1)) / 1024
    summary = next(line for line in done.stderr.splitlines() if " frames (" in line)
    return wall, peak, summary


def psnr(a: Path, b: Path) -> np.ndarray:
    """Per-frame PSNR (dB) of two files' decoded YUV frames."""
    def frames(p):
        with av.open(str(p)) as c:
            return np.stack([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]).astype(np.float64)
    x, y = frames(a), frames(b)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=("speed", "overhead", "memory"), help="one part")
    args = parser.parse_args()
    import ray
    ray.init(num_cpus=args.cpus, object_store_memory=500_000_000, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    print(f"# bench_ray {date.today()} | {cpu_model()} | {os.cpu_count()} cores, Ray with {args.cpus} CPUs | "
          f"Python {sys.version.split()[0]} | NumPy {np.__version__} | Ray {ray.__version__} | load {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "speed"):
            song = ROOT / "examples" / "demo.wav"             # music: the frames move, so PSNR means something
            print("\n| size | frames | segments | single s | --ray s | speed-up | PSNR min / mean dB (crf 20) |")
            print("|---|---|---|---|---|---|---|")
            for (w, h), seconds, seg in (((512, 512), 16, 2.0), ((1920, 1080), 4, 0.5)):
                g = graph(tmp, song, w, h, f"s{w}")
                single, _, _ = render(g, "--seconds", seconds, "--out", tmp / "single.mp4")
                on_ray, _, line = render(g, "--seconds", seconds, "--out", tmp / "ray.mp4", "--ray", address,
                                         "--segment-seconds", seg)
                db = psnr(tmp / "single.mp4", tmp / "ray.mp4")
                size = round(seg * 30)
                worst = int(np.argmin(db))
                print(f"# {w}x{h}: lowest PSNR at frame {worst}, {min(worst % size, size - worst % size)} frames "
                      f"from a join (segments of {size})", flush=True)
                n, count = int(line.split()[0]), re.search(r"in (\d+) segments", line).group(1)
                print(f"| {w}x{h} | {n} | {count} | {single:.1f} | "
                      f"{on_ray:.1f} | {single / on_ray:.2f}x | {db.min():.1f} / {db[np.isfinite(db)].mean():.1f} |",
                      flush=True)
        if args.only in (None, "overhead"):
            song = sparse_song(tmp / "song.flac", 60)
            g = graph(tmp, song, 64, 64, "tiny")
            # Run it with --cpus 1: one task at a time, so each extra segment adds its overhead and nothing else.
            print(f"\n| 64x64, 20 s at 30 fps, Ray with {args.cpus} CPUs | segments | --ray s | "
                  "extra per added segment (best of 3) |")
            print("|---|---|---|---|")
            base = None
            for seg in (20, 5, 1, 0.25):
                runs = [render(g, "--seconds", 20, "--out", tmp / "t.mp4", "--ray", address, "--segment-seconds", seg)
                        for _ in range(3)]
                wall, line = min(r[0] for r in runs), runs[0][2]      # the least disturbed of three
                count = int(re.search(r"in (\d+) segments", line).group(1))
                base = base or (wall, count)
                extra = (wall - base[0]) / (count - base[1]) if count > base[1] else float("nan")
                print(f"| segment {seg:g} s | {count} | {wall:.2f} | {extra * 1000:.0f} ms |", flush=True)
        if args.only in (None, "memory"):
            print("\n| song | frames (30 fps, 64x64) | driver peak RSS, --ray | single-process peak RSS |")
            print("|---|---|---|---|")
            for minutes in (1, 5, 20):
                song = sparse_song(tmp / f"m{minutes}.flac", minutes * 60)
                g = graph(tmp, song, 64, 64, "mem")
                _, ray_peak, line = render(g, "--out", tmp / "m.mp4", "--ray", address, "--segment-seconds", 60)
                _, single_peak, _ = render(g, "--out", tmp / "m.mp4")
                print(f"| {minutes} min | {line.split()[0]} | {ray_peak:.0f} MiB | {single_peak:.0f} MiB |",
                      flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
