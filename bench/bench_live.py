"""Live runner: (a) audio-to-picture latency of clicks, (b) sustained frame rate of examples/mixed.yaml,
(c) frame timing during bursts of 10,000 OSC messages sent as fast as a socket can, (d) frame timing
while a heavy change (`/cppn/hidden 256` with `/cppn/layers 32`) is built and trialled off the render thread.

Both run on pyo's null backend (no sound card; the audio clock is paced by the
wall clock, so every figure is real time). Latency is measured on that clock:
from the moment a click's sample has been played (or captured) to the moment
the first frame whose analysis window holds it is ready (sent and shown).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np

from cppnviz import audio_clock, live
from cppnviz.graph import build_graph, load_graph
from cppnviz.host_bridge.osc.control import ParamControl
from cppnviz.host_bridge.osc.server import OscServer
from cppnviz.runner import Scheduler
from cppnviz.timebase import sample_at
from machine import cpu_model, load  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
SR = 44100


def write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return path


class Recorder:
    """Keeps each frame's band values (a FeatureSender stand-in)."""

    def __init__(self, link):
        self.link = link
        self.values: dict[int, np.ndarray] = {}

    def send(self, tick, outputs):
        self.values[tick.index] = np.array(outputs[self.link], copy=True)


# -- (a) latency --------------------------------------------------------------------------------

def click_track(seconds: float, every: float, rng) -> tuple[np.ndarray, list[int]]:
    """Silence with a 1 ms click every `every` s, at random offsets so clicks fall anywhere within a frame."""
    n = round(seconds * SR)
    audio = np.zeros(n)
    clicks = []
    for start in np.arange(0.5, seconds - 0.5, every):
        c = round((start + rng.uniform(0, 0.05)) * SR)
        audio[c:c + 44] = 0.9
        clicks.append(c)
    return audio, clicks


def latency(folder: Path, fps: int, n_fft: int, capture: bool, seconds: float) -> dict:
    audio, clicks = click_track(seconds, 0.25, np.random.default_rng(1))
    song = write_wav(folder / "clicks.wav", audio)
    nodes = {"audio": {"type": "audio_in", "params": {"sample_rate": SR}} if capture else
             {"type": "audio_file", "params": {"path": str(song), "normalize": False}},
             "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"},
                       "params": {"n_fft": n_fft, "align": "end", "bands": "octave8", "window": "none"}}}
    data = {"fps": fps, "nodes": nodes, "osc": {"send": ["bands.bands"]}}
    graph = build_graph(data, base_dir=folder, live=True)
    source = live.audio_source(graph)
    if capture:
        clock = live.AudioClock(SR, backend="null", capture=source.push, signal=audio.astype(np.float32))
    else:
        clock = live.AudioClock(SR, backend="null", play=source.program)
    recorder = Recorder(("bands", "bands"))
    run = live.LiveRun(graph, clock, sender=recorder, seconds=seconds)
    stats = run.run()
    records = sorted(stats.records)
    quiet = max(float(v.sum()) for v in recorder.values.values()) * 0.01
    ms = []
    missed = 0
    for c in clicks:
        # The first frame ready after the click whose window holds it: newest sample past c, oldest before.
        frame = next((r for r in records if r.newest > c and r.newest - n_fft <= c), None)
        if frame is None or recorder.values[frame.index].sum() <= quiet:
            missed += 1
            continue
        ms.append(1000 * (frame.done - c) / SR)
    ms = np.array(ms)
    return {"clicks": len(clicks), "missed": missed, "mean": ms.mean(), "p50": np.median(ms),
            "p95": np.percentile(ms, 95), "max": ms.max(), "dropped": stats.dropped, "frames": stats.frames,
            "starved": stats.starved + stats.lost, "max_late_ms": 1000 * clock.max_late_s}


# -- (b) sustained frame rate --------------------------------------------------------------------

def sustained(graph_path: Path, size: int, seconds: float, window: bool) -> dict:
    overrides = [("norm", "mode", "running_median"), ("cppn", "width", size), ("cppn", "height", size)]
    graph = load_graph(graph_path, overrides, live=True)
    source = live.audio_source(graph)
    clock = live.AudioClock(source.p.sample_rate, backend="null", play=source.program)
    preview = None
    if window:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        preview = live.PreviewWindow()
    run = live.LiveRun(graph, clock, window=preview, seconds=seconds)
    try:
        stats = run.run()
    finally:
        if preview is not None:
            preview.close()
    # Reference measured in this run: the same nodes stepped back to back, as fast as they go, offline.
    offline = load_graph(graph_path, overrides, live=False)
    scheduler = Scheduler(offline, run.names)
    for node in run.names:
        offline.nodes[node].reset()
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 5.0:
        scheduler.step(n)
        n += 1
    offline_fps = n / (time.perf_counter() - started)
    return {"fps": stats.fps_achieved, "frames": stats.frames, "dropped": stats.dropped,
            "starved": stats.starved, "max_late_ms": 1000 * clock.max_late_s,
            "lat_mean": 1000 * stats.latency_mean, "lat_max": 1000 * stats.latency_max,
            "offline_fps": offline_fps, "graph_fps": float(graph.ctx.fps), "nodes": run.names}


# -- (c) OSC bursts -------------------------------------------------------------------------------

BURST_SENDER = r"""
import socket, struct, sys
port, n, bursts = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
head = b"/smooth/time_constant\x00\x00\x00,f\x00\x00"
packets = [head + struct.pack(">f", 0.5 * (i + 1) / n) for i in range(n * bursts)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
sys.stdin.readline()
for p in packets:          # as fast as a socket can, back to back
    sock.sendto(p, ("127.0.0.1", port))
"""


def controlled_run(graph_path: Path, size: int):
    """(graph, null clock, OSC control) for a live run of the graph at size x size with a running median."""
    overrides = [("norm", "mode", "running_median"), ("cppn", "width", size), ("cppn", "height", size)]
    graph = load_graph(graph_path, overrides, live=True)
    source = live.audio_source(graph)
    clock = live.AudioClock(source.p.sample_rate, backend="null", play=source.program)
    return graph, clock, ParamControl(graph)


def frames_between(stats, graph, start: float, end: float) -> dict:
    """Frames shown of frames due whose time (on the audio clock) lies in start..end, and how late they were ready."""
    sr, fps = stats.sample_rate, graph.ctx.fps
    window = [r for r in stats.records if start <= sample_at(r.index, sr, fps) <= end]
    due = len([k for k in range(max(r.index for r in stats.records) + 1) if start <= sample_at(k, sr, fps) <= end])
    late = [(r.done - sample_at(r.index, sr, fps)) / sr for r in window]
    return {"shown": len(window), "due": due, "max_ms": 1000 * max(late), "p95_ms": 1000 * np.percentile(late, 95)}


def run_acting(graph, clock, control, seconds: float, act) -> tuple:
    """A live run with OSC control; `act()` runs on a thread at 4 s, past the start-up (window, threads,
    first frames), so what is judged is what it does. (stats, clock position before act, after it)."""
    marks: dict[str, float] = {}

    def fire():
        time.sleep(4.0)
        marks["start"] = clock.position_now()
        act()
        marks["end"] = clock.position_now()

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    stats = live.LiveRun(graph, clock, control=control, seconds=seconds).run()
    thread.join()
    return stats, marks["start"], marks["end"]


def burst(graph_path: Path, size: int, seconds: float, bursts: int, n: int = 10_000) -> dict:
    """A live run of the graph; `bursts` bursts of n messages to one param sent at 4 s (0: none, the reference).

    Judged from the burst's start until a second after the server took the last message (or the
    same span without one): frames shown of frames due, and how long after its time (on the
    audio clock) each was ready.
    """
    graph, clock, control = controlled_run(graph_path, size)
    with OscServer(control, port=0) as server:
        sender = subprocess.Popen([sys.executable, "-c", BURST_SENDER, str(server.port), str(n), str(max(bursts, 1))],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        sender.stdout.readline()

        def send():
            if bursts:
                sender.stdin.write("go\n")
                sender.stdin.flush()
                sender.wait()
                while control.stats["received"] + control.stats["overflow"] < n * bursts:
                    time.sleep(0.001)

        stats, start, taken = run_acting(graph, clock, control, seconds, send)
        sender.kill()
        sender.wait()
    sr = stats.sample_rate
    return {**frames_between(stats, graph, start, taken + sr),
            "taken_ms": 1000 * (taken - start) / sr, "stats": dict(control.stats),
            "buffer_kib": server.receive_buffer // 1024}


def heavy(graph_path: Path, size: int, seconds: float, changes: dict) -> dict:
    """A live run of the graph; `changes` to the cppn sent at 4 s. Judged from then until 1 s after they were settled."""
    graph, clock, control = controlled_run(graph_path, size)

    def change():
        for name, value in changes.items():
            control.handle(f"/cppn/{name}", [value])
        while control.stats["applied"] + control.stats["rejected"] < len(changes):
            time.sleep(0.001)

    stats, start, settled = run_acting(graph, clock, control, seconds, change)
    sr = stats.sample_rate
    return {**frames_between(stats, graph, start, settled + sr),
            "settled_s": (settled - start) / sr,
            "applied": control.stats["applied"], "rejected": control.stats["rejected"],
            "now": {name: getattr(graph.nodes["cppn"].p, name) for name in changes}}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--graph", default=str(ROOT / "examples" / "mixed.yaml"))
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-window", action="store_true", help="(b) without the preview window (SDL dummy)")
    parser.add_argument("--only", choices=("latency", "sustained", "burst", "heavy"), help="run one section")
    args = parser.parse_args()
    pyo = audio_clock.import_pyo()  # for its version in the header

    print(f"# {datetime.now():%Y-%m-%d %H:%M} | {cpu_model()} | {os.cpu_count()} cores | "
          f"Python {platform.python_version()} | numpy {np.__version__} | pyo {pyo.PYO_VERSION} | "
          f"load average {load()}")
    print(f"# null audio backend: pyo (double precision) manual server, {audio_clock.BUFFER_SIZE}-sample buffers paced by the "
          "wall clock; no Python on the audio path, the render thread keeps rings of audio seconds ahead")
    if args.only in (None, "latency"):
        section_latency(args)
    if args.only in (None, "sustained"):
        section_sustained(args)
    if args.only in (None, "burst"):
        section_burst(args)
    if args.only in (None, "heavy"):
        section_heavy(args)


def section_latency(args) -> None:
    print()
    print("## (a) audio-to-picture latency: click played/captured -> first frame holding it is ready")
    print("| path | fps | n_fft | clicks | missed | mean ms | median ms | p95 ms | max ms | frames | dropped | "
          "audio samples starved/lost | null clock max lateness ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for capture in (False, True):
            r = latency(Path(tmp), 60, 2048, capture, args.seconds / 2)
            print(f"| {'capture (audio_in)' if capture else 'file playback'} | 60 | 2048 | {r['clicks']} | "
                  f"{r['missed']} | {r['mean']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
                  f"{r['frames']} | {r['dropped']} | {r['starved']} | {r['max_late_ms']:.1f} |", flush=True)


def section_sustained(args) -> None:
    print()
    print(f"## (b) sustained frame rate: {Path(args.graph).name} live at {args.size}x{args.size} "
          f"(norm.mode running_median), {args.seconds:g} s, preview window {'off' if args.no_window else 'on (SDL dummy)'}")
    r = sustained(Path(args.graph), args.size, args.seconds, not args.no_window)
    print("| fps achieved | frames | dropped | audio samples starved | null clock max lateness ms | latency mean ms | "
          "latency max ms | offline fps (same nodes, back to back) | headroom: offline fps / graph fps |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['fps']:.1f} | {r['frames']} | {r['dropped']} | {r['starved']} | {r['max_late_ms']:.1f} | "
          f"{r['lat_mean']:.1f} | {r['lat_max']:.1f} | {r['offline_fps']:.1f} | {r['offline_fps'] / r['graph_fps']:.2f} |")
    print(f"# nodes run live: {', '.join(r['nodes'])} | load average after {load()}")


def section_burst(args) -> None:
    print()
    print(f"## (c) OSC bursts: {Path(args.graph).name} live at {args.size}x{args.size}, 60 fps, 8 s; bursts of "
          "10,000 /smooth/time_constant messages sent back to back as fast as a socket can, at 4 s; judged "
          "from the burst until 1 s after the server took the last message")
    print("| bursts | frames shown / due | latest frame ready after its time ms | p95 ms | all taken in ms | "
          "received | applied | coalesced | dropped by the kernel | receive buffer KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for bursts in (0, 1, 3):
        r = burst(Path(args.graph), args.size, 8.0, bursts)
        st = r["stats"]
        print(f"| {bursts or 'none (reference)'} | {r['shown']} / {r['due']} | {r['max_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['taken_ms']:.0f} | {st['received']} | {st['applied']} | {st['coalesced']} | {st['overflow']} | "
              f"{r['buffer_kib']} |", flush=True)
    print(f"# load average after {load()}")



def section_heavy(args) -> None:
    print()
    print(f"## (d) heavy changes: {Path(args.graph).name} live at {args.size}x{args.size}, 60 fps, 14 s; at 4 s "
          "two cppn params in one message each; judged from then until 1 s after they were applied or refused")
    print("| changes | frames shown / due | latest frame ready after its time ms | settled after s | applied | "
          "rejected | cppn now |")
    print("|---|---|---|---|---|---|---|")
    for changes in ({"hidden": 256, "layers": 32}, {"hidden": 24, "layers": 6}):
        r = heavy(Path(args.graph), args.size, 14.0, changes)
        print(f"| {changes} | {r['shown']} / {r['due']} | {r['max_ms']:.1f} | {r['settled_s']:.2f} | {r['applied']} | "
              f"{r['rejected']} | {r['now']} |", flush=True)
    print(f"# load average after {load()}")


if __name__ == "__main__":
    main()
