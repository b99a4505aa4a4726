"""`cppnviz web` in a real headless Chromium (WebGL2 through SwiftShader): the page's pictures are the
numpy node's, its clock picks the offline frame for a time, and a graph it cannot draw writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cppnviz import registry, runner, web
from cppnviz.graph import Link, build_graph, load_graph, parse_assignment
from cppnviz.node import Node
from cppnviz.ports import Output, Spec
from cppnviz.timebase import tick

from conftest import SR, run_cli, write_wav

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "examples" / "demo.wav"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: chromium)")
SECONDS = 4        # of the demo song: features for 240 frames at 60 fps
FRAMES = (30, 111, 200, 75)   # each variant is drawn at two of these (Chromium keeps 16 WebGL contexts a page)

# Graph, --set overrides, the render node: each a picture the page must draw as the numpy node does.
VARIANTS = {
    "tanh_vignette": ("mixed.yaml", [], "cppn"),
    # sin is chaotic sooner: at 8 layers float32 rounding alone decides each pixel (numpy's picture is
    # noise no other float32 implementation reproduces); at 6 SwiftShader was 1.2-1.4 levels off, at 5 ~0.5.
    "sin_period": ("mixed.yaml", ["cppn.activation=sin", "cppn.layers=5", "cppn.vignette=false",
                                  "cppn.period=2.0"], "cppn"),
    "gaussian_gray": ("mixed.yaml", ["cppn.activation=gaussian", "cppn.output=gray", "cppn.scale=2.0",
                                     "cppn.mapping=sigmoid"], "cppn"),
    "tiler": ("tiled.yaml", ["tiles.tile_size=64", "tiles.layout=grid", "tiles.columns=4"], "tiles"),
}


def browser(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with WebGL2 on SwiftShader (root needs --no-sandbox)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--use-angle=swiftshader",
                           "--enable-unsafe-swiftshader", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=timeout)


def export(tmp_path: Path, name: str, graph: str, sets: list[str], song: Path = DEMO) -> Path:
    folder = tmp_path / name
    args = ["web", ROOT / "examples" / graph, "--audio", song, "--out", folder, "--seconds", SECONDS]
    for s in sets:
        args += ["--set", s]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return folder / "index.html"


def frames_of(g, node: str, frames) -> dict[int, np.ndarray]:
    """The node's own frames (and those of the render nodes it reads), 8-bit as the PNG encoder writes them,
    fed the features `cppnviz features` collects."""
    n = runner.total_frames(g, SECONDS)
    render = [x for x in g.upstream(node) if g.nodes[x].stage == "render"]
    links = [l for x in render for v in g.links[x].values() for l in (v if isinstance(v, list) else [v])]
    rows = {}
    for link in {l for l in links if g.nodes[l.node].stage != "render"}:
        rows[link] = {k: values for k, _, values in runner.collect(g, link.node, [link.port], n)}
    out = {}
    for k in frames:
        made = {}
        for x in render:
            def value(l):
                return made[l] if l in made else rows[l][k]
            inputs = {port: [value(l) for l in v] if isinstance(v, list) else value(v) for port, v in g.links[x].items()}
            made[Link(x, "frame")] = np.array(g.nodes[x].process(tick(k, g.ctx.fps), **inputs)["frame"])
        out[k] = np.clip(made[Link(node, "frame")] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def composite_graph():
    """A tiler over two input frames (a non-square cppn with aspect keep and a spectrum meter) and 8 band tiles."""
    analysis = yaml.safe_load((ROOT / "examples" / "mixed.yaml").read_text())["nodes"]
    nodes = {name: analysis[name] for name in ("audio", "bands", "norm", "smooth")}
    nodes["audio"]["params"]["path"] = str(DEMO)
    nodes.update({
        "cppn": {"type": "cppn", "inputs": {"features": "smooth.features"},
                 "params": {"width": 64, "height": 48, "aspect": "keep", "scale": 2.5, "backend": "numpy"}},
        "meter": {"type": "spectrum_meter", "inputs": {"features": "smooth.features"},
                  "params": {"width": 64, "height": 48, "gap": 3, "max_value": 1.5}},
        "tiles": {"type": "tiler", "inputs": {"features": "smooth.features", "frames": ["cppn.frame", "meter.frame"]},
                  "params": {"layout": "grid", "layers": 3, "hidden": 5, "activation": "tanh", "background": "black",
                             "backend": "numpy"}}})
    return build_graph({"fps": 60, "nodes": nodes}, base_dir=ROOT / "examples")


@needs_chromium
def test_page_pictures_match_the_numpy_nodes(tmp_path):
    # One variant through the real CLI, the others exported in this process (same code, no start-up).
    graphs = {name: load_graph(ROOT / "examples" / graph, [parse_assignment(s) for s in sets]
                               + [("audio", "path", str(DEMO))]) for name, (graph, sets, _) in VARIANTS.items()}
    graphs.update(composite=composite_graph(), biased=biased_graph())
    nodes = {**{name: node for name, (_, _, node) in VARIANTS.items()}, "composite": "tiles", "biased": "cppn"}
    if graphs["biased"] is None:  # fitted networks' biases, where the cppn node holds them
        del graphs["biased"]
    pages = {"tanh_vignette": export(tmp_path, "tanh_vignette", *VARIANTS["tanh_vignette"][:2])}
    for name, g in graphs.items():
        if name not in pages:
            pages[name] = web.export(g, tmp_path / name, seconds=SECONDS).folder / "index.html"
    # Variant i at two times of FRAMES, a different pair for each: one page of at most 12 iframes, each
    # the player's still mode, in one browser launch.
    times = {name: (FRAMES[i % 4], FRAMES[(i + 1) % 4]) for i, name in enumerate(graphs)}
    shots = screenshot_stills(tmp_path, pages, times)
    errors, pictures = {}, {}
    for name, g in graphs.items():
        pictures[name] = expected = frames_of(g, nodes[name], times[name])
        # The song moves the picture, so matching each time means the page looked up that time.
        first, second = (expected[k].astype(float) for k in times[name])
        assert np.abs(first - second).mean() > 2.0, name
        for k, frame in expected.items():
            got = shots[(name, k)].astype(np.float64)
            assert frame.shape == got.shape
            errors[(name, k)] = np.abs(got - frame).mean()
    if "biased" in pictures:  # the biases change the picture, so a shader without them would fail
        k = next(k for k in times["biased"] if k in times["tanh_vignette"])
        assert np.abs(pictures["biased"][k].astype(float) - pictures["tanh_vignette"][k]).mean() > 2.0
    print("mean absolute error, 8-bit levels:", {f"{n}@{k}": round(e, 5) for (n, k), e in errors.items()})
    # The bound: 2/255 mean absolute error (2 on 0..255 levels).
    assert max(errors.values()) <= 2.0, errors


def screenshot_stills(tmp_path: Path, pages: dict[str, Path], times) -> dict[tuple[str, int], np.ndarray]:
    """{(name, frame): the still's pixels}: each page at its frames' times, in one browser launch."""
    cells, slots = [], {}
    for row, name in enumerate(pages):
        height = {"tiler": 128, "composite": 144}.get(name, 256)  # rows of 4 cells: 64x64, 64x48
        for col, k in enumerate(times[name]):
            src = f"{pages[name].as_uri()}?t={k / 60!r}&still=1"
            cells.append(f'<iframe src="{src}" style="position:absolute;left:{col * 256}px;top:{row * 256}px;'
                         f'width:256px;height:{height}px;border:0"></iframe>')
            slots[(name, k)] = (row * 256, col * 256, height)
    harness = tmp_path / "stills.html"
    harness.write_text("<!doctype html><body style='margin:0;background:#777'>" + "".join(cells) + "</body>")
    shot = harness.with_suffix(".png")
    columns = max(len(t) for t in times.values())
    # The budget lets every iframe load and draw before the shot, however slow the machine.
    done = browser("--virtual-time-budget=2000", f"--screenshot={shot}",
                   f"--window-size={256 * columns},{256 * len(pages)}", harness.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    picture = np.asarray(Image.open(shot).convert("RGB"))
    return {key: picture[y:y + h, x:x + 256] for key, (y, x, h) in slots.items()}


def biased_graph():
    """mixed.yaml with random biases on every layer of its network, as a fitted look has; None before fitting exists."""
    g = load_graph(ROOT / "examples" / "mixed.yaml", [("audio", "path", str(DEMO)), ("cppn", "backend", "numpy")])
    net = g.nodes["cppn"].network
    if not (hasattr(net, "b_first") and hasattr(net, "biases")):
        return None
    rng = np.random.default_rng(18)
    net.b_first = rng.normal(0, 0.5, net.w_layers[0].shape[1])
    net.biases = [rng.normal(0, 0.5, w.shape[1]).astype(np.float32) for w in net.w_layers[1:]]
    return g


def click_track(path: Path, clicks, seconds: float = 3.0) -> Path:
    """Silence with a 4 ms burst of a 3 kHz tone at each click time."""
    audio = np.zeros(round(seconds * SR))
    burst = np.sin(2 * np.pi * 3000 * np.arange(round(0.004 * SR)) / SR) * 0.8
    for c in clicks:
        start = round(c * SR)
        audio[start:start + burst.size] = burst
    return write_wav(path, audio)


@needs_chromium
def test_the_page_draws_the_offline_frame_of_a_time(tmp_path):
    clicks = (0.5, 1.3, 2.1)
    song = click_track(tmp_path / "clicks.wav", clicks)
    graph = tmp_path / "clicks.yaml"
    graph.write_text(yaml.safe_dump({"fps": 60, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(song)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
        "meter": {"type": "spectrum_meter", "inputs": {"features": "bands.bands"}, "params": {"max_value": 50.0}}}}))
    folder = tmp_path / "site"
    done = run_cli("web", graph, "--out", folder)
    assert done.returncode == 0, done.stderr
    g = load_graph(graph)
    offline = np.array([v for _, _, v in runner.collect(g, "bands", ["bands"], runner.total_frames(g))])
    energy = offline.sum(axis=1)
    fps = Fraction(60)
    # Offline, each click is loudest in the frame whose time it is (windows centred on the frame).
    for c in clicks:
        k = int(c * fps)
        assert energy[k] == energy[k - 3:k + 4].max() and energy[k] > 100 * energy[k - 6]
    # The page at a time draws the frame the video shows then (k/fps <= t < (k+1)/fps), with its values;
    # a time between frames blends toward the next one. One launch: stills in iframes report to a harness.
    times = (*clicks, clicks[0] + 0.25 / 60, 2.999)
    drawn = stills_reported(tmp_path, folder / "index.html", times)
    for t in times:
        k = int(t * 60 + 1e-6)
        frame, shown = drawn[repr(t)]
        assert frame == k, (t, frame)
        w = t * 60 - k
        expected = offline[k] * (1 - w) + offline[min(k + 1, len(offline) - 1)] * w
        # float32 features blended in double: a few float32 ulps of the largest value.
        np.testing.assert_allclose(shown, expected, rtol=0, atol=4 * np.finfo(np.float32).eps * offline.max())
    assert len(offline) == 180 and drawn[repr(2.999)][0] == 179


def stills_reported(tmp_path: Path, page: Path, times) -> dict[str, tuple[int, np.ndarray]]:
    """{repr(t): (frame, values)} as the player's still mode reports them to the page embedding it."""
    frames = "".join(f'<iframe src="{page.as_uri()}?t={t!r}&still=1" width=64 height=64></iframe>' for t in times)
    harness = tmp_path / "stills.html"
    harness.write_text("<!doctype html><body><pre id=log></pre><script>addEventListener('message', e => {"
                       "const d = e.data.cppnviz; document.getElementById('log').textContent += "
                       "d.t + ';' + d.frame + ';' + d.values + '\\n'; });</script>" + frames + "</body>")
    # The budget lets every posted message land before the DOM is dumped, however slow the machine.
    dom = browser("--virtual-time-budget=2000", "--dump-dom", harness.as_uri()).stdout
    log = re.search(r'<pre id="log">(.*?)</pre>', dom, re.S).group(1)
    drawn = {}
    for line in log.strip().splitlines():
        t, frame, values = line.split(";")
        drawn[repr(float(t))] = (int(frame), np.array(values.split(), np.float64))
    assert sorted(drawn) == sorted(map(repr, times)), log
    return drawn


@needs_chromium
def test_playing_the_page_draws_the_frames_of_the_audio_clock(tmp_path):
    # The player as a user runs it (not the still mode): the song plays and every animation frame draws
    # the analysis frame of the audio element's currentTime. The probe wraps the page's draw() to log it.
    site = tmp_path / "site"
    assert run_cli("web", ROOT / "examples/mixed.yaml", "--out", site, "--seconds", 6).returncode == 0
    probe = ("<script>const drawn = []; const pageDraw = draw;"
             "draw = t => { const k = pageDraw(t); drawn.push([t, k, audio.currentTime]); return k; };"
             "audio.play();"
             "setTimeout(() => console.log('cppnviz probe ' + JSON.stringify({drawn: drawn,"
             "bar: !document.getElementById('bar').hidden, seek: +document.getElementById('seek').max,"
             "fps: document.getElementById('fps').textContent})), 3000);</script></body>")
    page = site / "probe.html"
    page.write_text((site / "index.html").read_text().replace("</body>", probe))
    browser = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--use-angle=swiftshader",
                                "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
                                "--window-size=128,128", "--enable-logging=stderr", "--v=0", page.as_uri()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    def stop():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGTERM)  # the browser started above, with its helpers
    guard = threading.Timer(120, stop)  # a page that never reports must not hang the test run
    guard.start()
    try:
        line = next((line for line in browser.stderr if "cppnviz probe" in line), "")
    finally:
        guard.cancel()
        stop()
        browser.wait(timeout=30)
    report = json.loads(re.search(r"cppnviz probe (\{.*\})", line).group(1))
    # The controls show (play/pause, seek over the song's 6 s, fullscreen) and the fps readout counts.
    assert report["bar"] and report["seek"] == 6.0 and re.fullmatch(r"\d+ fps", report["fps"]), report
    drawn = report["drawn"]
    times = [t for t, _, _ in drawn]
    assert len(drawn) >= 3 and times[-1] - times[0] > 1.0, drawn  # the song played
    assert times == sorted(times)
    for t, k, now in drawn:
        assert k == int(t * 60 + 1e-6)  # the offline video's frame at that time
        assert 0 <= now - t < 0.1        # t was the audio clock, read as the frame was drawn


class FlatColor(Node):
    """A render node with no shader form (this test's own)."""

    type_name = "flat_color"
    stage = "render"
    inputs = ()
    outputs = (Output("frame", "frame", "gray"),)
    params = ()

    def configure(self, inputs):
        self.frame = np.full((32, 32, 3), 0.5, np.float32)
        return {"frame": Spec("frame", shape=(32, 32, 3))}

    def process(self, tick):
        return {"frame": self.frame}


def test_a_node_without_a_shader_form_writes_nothing(tmp_path, monkeypatch, capsys):
    from cppnviz.cli import main

    monkeypatch.setitem(registry.all_types(), "flat_color", FlatColor)
    graph = tmp_path / "flat.yaml"
    graph.write_text(yaml.safe_dump({"fps": 30, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(DEMO)}}, "flat": {"type": "flat_color"}}}))
    before = set(tmp_path.iterdir())
    assert main(["web", str(graph), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: node 'flat' (flat_color) has no shader form; nodes with one: cppn, tiler, spectrum_meter"]
    assert set(tmp_path.iterdir()) == before


def test_folders_it_did_not_write_are_refused_and_its_own_replaced(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    done = run_cli("web", ROOT / "examples/mixed.yaml", "--out", foreign, "--seconds", 1)
    assert done.returncode == 2 and (foreign / "todo.txt").read_text() == "mine"
    assert done.stderr.strip().splitlines() == [
        f"error: cannot write '{foreign}': the folder holds files that `cppnviz web` did not write; "
        "give a new or empty folder"]
    site = tmp_path / "site"
    for seconds in (1, 2):  # the second export replaces the first whole
        done = run_cli("web", ROOT / "examples/mixed.yaml", "--out", site, "--seconds", seconds)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "shader.frag", "song.wav"]
    assert '"n_frames": 120' in (site / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name or ".old-" in p.name] == []


def test_a_song_browsers_may_not_play_is_transcoded(tmp_path):
    import av

    song = tmp_path / "song.aiff"
    with av.open(str(song), "w", format="aiff") as out:
        stream = out.add_stream("pcm_s16be", rate=SR, layout="mono")
        samples = (np.sin(2 * np.pi * 440 * np.arange(SR) / SR) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    done = run_cli("web", ROOT / "examples/mixed.yaml", "--audio", song, "--out", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration",
                            "-of", "default=nw=1", str(tmp_path / "site" / "song.ogg")],
                           capture_output=True, text=True, check=True).stdout
    assert "codec_name=opus" in probe
    assert abs(float(re.search(r"duration=([\d.]+)", probe).group(1)) - 1.0) < 0.05
    assert 'src="song.ogg"' in (tmp_path / "site" / "index.html").read_text()
