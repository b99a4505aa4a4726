"""The web player: export time for a song, and frames per second of the page at 1080p in headless Chromium.

Chromium here draws WebGL2 with SwiftShader, on the CPU: a floor, not what a viewer's GPU does. The
page counts its own requestAnimationFrame callbacks over a few seconds (`index.html?bench=S&size=WxH`,
the first draw, which compiles the shader, not counted) and reports them in <body data-fps>. The
reference in the same run is the numpy node rendering the same 1080p frame on this machine's cores.

    .venv/bin/python bench/bench_web.py [--song examples/demo.wav] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model, load  # noqa: E402

from cppnviz.graph import load_graph, parse_assignment  # noqa: E402
from cppnviz.web import export  # noqa: E402


def page_fps(page: Path, seconds: float, width: int, height: int) -> str:
    """The page's own report: "fps F at WxH, N frames in S s" (it logs it to the console when done)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    url = f"{page.as_uri()}?bench={seconds}&size={width}x{height}"
    # --dump-dom gives up on a busy page after ~10 s; the console message arrives whenever the page is done.
    browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--use-angle=swiftshader",
                                "--enable-unsafe-swiftshader", f"--window-size={width},{height}",
                                "--enable-logging=stderr", "--v=0", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    def stop():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGTERM)  # the browser's own process group, started above
    guard = threading.Timer(seconds + 120, stop)  # a page that never reports ends the read
    guard.start()
    try:
        for line in browser.stderr:
            found = re.search(r"cppnviz bench: (fps [^\"]*)", line)
            if found:
                return found.group(1)
        raise SystemExit("the page reported no fps")
    finally:
        guard.cancel()
        stop()
        browser.wait(timeout=30)


def numpy_frame_ms(graph, repeats: int = 3) -> float:
    node = graph.nodes["cppn"]
    features = np.full(node.network.n_features, 0.5)
    node.network.render(features, 0.0)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        node.network.render(features, 1.0)
        best = min(best, time.perf_counter() - began)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song", default=str(ROOT / "examples" / "demo.wav"))
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the page counts frames")
    args = parser.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
          f"load {load()}")
    graph_file = ROOT / "examples" / "mixed.yaml"
    song = ("audio", "path", str(Path(args.song).resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        graph = load_graph(graph_file, [song])
        made = export(graph, Path(tmp) / "site")
        print(f"export mixed.yaml ({made.n_frames} frames, {made.n_frames / 60:.1f} s of song): "
              f"{made.total_s:.2f} s, of which analysis {made.analysis_s:.2f} s")
        small = page_fps(made.folder / "index.html", args.seconds, 256, 256)
        print(f"page in headless Chromium (SwiftShader): {small}")
        sets = [song] + [parse_assignment(s) for s in ("cppn.width=1920", "cppn.height=1080", "cppn.backend=numpy")]
        graph = load_graph(graph_file, sets)
        big = export(graph, Path(tmp) / "site1080")
        report = page_fps(big.folder / "index.html", args.seconds, 1920, 1080)
        fps = float(report.split()[1])
        numpy_ms = numpy_frame_ms(graph)
        print(f"page in headless Chromium (SwiftShader): {report}")
        print(f"numpy node at 1920x1080 on this machine: {numpy_ms:.0f} ms a frame, {1000 / numpy_ms:.2f} fps; "
              f"page / numpy: {fps * numpy_ms / 1000:.2f}x")


if __name__ == "__main__":
    main()
