"""End to end: the real CLI renders real files, checked with ffprobe and PyAV decoding."""

import json
import math
import shutil
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import SR, run_cli, start_cli, tone

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed (apt-get install ffmpeg; .ci/run does)")


def graph_file(tmp_path, audio, *, fps=30, size=64, out="out.mp4", smoother=None, offset_ms=0, extra=None):
    """A small mixed-style graph: audio -> bands -> median normaliser [-> smoother] -> cppn -> encoder."""
    nodes = {
        "audio": {"type": "audio_file", "params": {"path": str(audio)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
        "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"}, "params": {"gain": 0.5}},
        "cppn": {"type": "cppn", "inputs": {"features": "norm.features"},
                 "params": {"width": size, "height": size, "layers": 4, "hidden": 16, "seed": 7}},
        "video": {"type": "encoder", "inputs": {"frame": "cppn.frame", "audio": "audio.audio"},
                  "params": {"path": out, "preset": "ultrafast", "crf": 12}},
    }
    if smoother is not None:
        nodes["smooth"] = {"type": "smoother", "inputs": {"features": "norm.features"}, "params": smoother}
        nodes["cppn"]["inputs"]["features"] = "smooth.features"
    for name, params in (extra or {}).items():
        nodes[name]["params"].update(params)
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"fps": fps, "offset_ms": offset_ms, "nodes": nodes}))
    return path


def probe(path) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,nb_read_frames,duration,width,height,pix_fmt,sample_rate",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def decoded_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float32)


def noisy_track(seconds, clicks=(), level=0.01):
    """Quiet noise (so every band has a median) with loud clicks at the given times."""
    audio = level * np.random.default_rng(0).standard_normal(round(seconds * SR))
    for t in clicks:
        i = round(t * SR)
        audio[i:i + 64] += 0.9 * np.hanning(64)
    return audio


@needs_ffprobe
@pytest.mark.parametrize("seconds,fps", [(2.0, 30), (1.37, 60)])
def test_video_and_audio_last_as_long_as_the_input(tmp_path, wav, seconds, fps):
    audio = wav(tone(220, seconds) + noisy_track(seconds))
    result = run_cli("render", graph_file(tmp_path, audio, fps=fps), "--quiet")
    assert result.returncode == 0, result.stderr
    streams = probe(tmp_path / "out.mp4")
    n_samples = round(seconds * SR)
    frames = math.ceil(n_samples * fps / SR)  # documented: ceil(duration * fps)
    video, sound = streams["video"], streams["audio"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert int(video["nb_read_frames"]) == frames
    assert abs(float(video["duration"]) - seconds) <= 1 / fps
    assert sound["codec_name"] == "aac" and int(sound["sample_rate"]) == SR
    assert abs(float(sound["duration"]) - seconds) <= 1 / fps
    assert abs(float(sound["duration"]) - float(video["duration"])) <= 1 / fps


def first_changed_frame(frames: np.ndarray) -> int:
    """The first frame that differs clearly from the silent opening frames."""
    change = np.abs(frames - frames[:5].mean(axis=0)).mean(axis=(1, 2, 3))
    changed = np.flatnonzero(change > max(4 * change[:5].max(), 2.0))
    assert len(changed), "the picture never changed"
    return int(changed[0])


@pytest.mark.parametrize("fps", [30, 60])
def test_a_click_changes_the_picture_at_its_frame(tmp_path, wav, fps):
    t = 1.3
    audio = wav(noisy_track(2.0, clicks=[t], level=0.0))  # digital silence: a still picture until the click
    assert run_cli("render", graph_file(tmp_path, audio, fps=fps), "--quiet").returncode == 0
    changed = first_changed_frame(decoded_frames(tmp_path / "out.mp4"))
    assert abs(changed - round(t * fps)) <= 1, (changed, round(t * fps))


@pytest.mark.parametrize("floor, every_click_moves", [(0.1, True), (0.0, False)])
def test_clicks_in_silence_move_the_picture_at_every_click(tmp_path, wav, floor, every_click_moves):
    # Digital silence with a click every 1.5 s, the demo's smoothing. floor 0 is the seed's formula:
    # each band's track median is 0, the first click normalises to ~1e6 and keeps the picture
    # saturated, so the later clicks hardly show.
    clicks = [0.5, 2.0, 3.5, 5.0]
    audio = wav(noisy_track(6.0, clicks=clicks, level=0.0))
    graph = graph_file(tmp_path, audio, smoother={"time_constant": 0.316}, extra={"norm": {"floor": floor}})
    assert run_cli("render", graph, "--quiet").returncode == 0
    frames = decoded_frames(tmp_path / "out.mp4")
    jumps = [np.abs(frames[round(t * 30) + 2] - frames[round(t * 30) - 2]).mean() for t in clicks]
    # In 8-bit levels: a click that moves the picture changes it by tens of levels on average.
    assert all(jump > 10 for jump in jumps) == every_click_moves, jumps


def test_offset_ms_delays_the_pictures(tmp_path, wav):
    audio = wav(noisy_track(2.0, clicks=[1.0], level=0.0))
    assert run_cli("render", graph_file(tmp_path, audio, offset_ms=200), "--quiet").returncode == 0
    changed = first_changed_frame(decoded_frames(tmp_path / "out.mp4"))
    assert abs(changed - round(1.2 * 30)) <= 1


def test_same_graph_seed_and_audio_give_identical_frames(tmp_path, wav):
    audio = wav(tone(330, 1.0) + noisy_track(1.0, clicks=[0.5]))
    graph = graph_file(tmp_path, audio, smoother={"time_constant": 0.1})
    assert run_cli("render", graph, "--quiet").returncode == 0
    first = decoded_frames(tmp_path / "out.mp4")
    assert run_cli("render", graph, "--quiet", "--out", tmp_path / "again.mp4").returncode == 0
    np.testing.assert_array_equal(first, decoded_frames(tmp_path / "again.mp4"))
    assert run_cli("render", graph, "--quiet", "--out", tmp_path / "other.mp4", "--set", "cppn.seed=8").returncode == 0
    assert not np.array_equal(first, decoded_frames(tmp_path / "other.mp4"))


def test_seconds_audio_and_out_override_the_graph(tmp_path, wav):
    long_track = wav(tone(440, 3.0), name="long.wav")
    other = wav(tone(880, 2.0), name="other.wav")
    graph = graph_file(tmp_path, long_track)
    out = tmp_path / "elsewhere" / "clip.mp4"
    out.parent.mkdir()
    result = run_cli("render", graph, "--audio", other, "--out", out, "--seconds", "0.5", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(decoded_frames(out)) == 15
    assert not (tmp_path / "out.mp4").exists()
    assert "x real time" in result.stderr and "render" in result.stderr


def test_features_csv_has_a_row_per_frame(tmp_path, wav):
    audio = wav(tone(1000, 1.0))
    csv_path = tmp_path / "features.csv"
    result = run_cli("features", graph_file(tmp_path, audio), "--out", csv_path)
    assert result.returncode == 0, result.stderr
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["frame", "time"] and len(header) == 2 + 8  # norm feeds the cppn: 8 octave bands
    assert len(lines) == 1 + 30
    row = lines[16].split(",")
    assert row[0] == "15" and float(row[1]) == pytest.approx(0.5)
    # A steady tone divided by its own track median is 0.5 (the gain) wherever it has energy.
    assert float(row[2 + 3]) == pytest.approx(0.5, abs=1e-3)
    raw = run_cli("features", graph_file(tmp_path, audio), "--node", "bands")
    assert raw.returncode == 0, raw.stderr
    values = [float(v) for v in raw.stdout.splitlines()[16].split(",")[2:]]
    assert int(np.argmax(values)) == 3  # 1 kHz lies in the 603-1292 Hz band


def test_png_sequence(tmp_path, wav):
    audio = wav(tone(440, 0.5))
    folder = tmp_path / "frames"
    result = run_cli("render", graph_file(tmp_path, audio), "--quiet",
                     "--set", f"video.path={folder}", "--set", "video.format=png")
    assert result.returncode == 0, result.stderr
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 15
    with av.open(str(pngs[0])) as c:
        assert next(c.decode(video=0)).width == 64


def test_tiled_example_renders(tmp_path):
    examples = Path(__file__).resolve().parent.parent / "examples"
    out = tmp_path / "tiled.mp4"
    result = run_cli("render", examples / "tiled.yaml", "--out", out, "--seconds", "0.5", "--quiet")
    assert result.returncode == 0, result.stderr
    frames = decoded_frames(out)
    assert len(frames) == 30 and frames.shape[1:3] == (128, 1024)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.05, 0.15, 0.4])
def test_a_signal_during_start_up_exits_130_in_one_line(tmp_path, wav, sig, delay):
    # Within the first fraction of a second the process is still importing numpy, PyAV and the nodes.
    graph = graph_file(tmp_path, wav(tone(440, 60.0)), size=64)  # far longer than the test waits
    proc = start_cli("render", graph, "--quiet")
    time.sleep(delay)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav", "graph.yaml"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_render_leaves_the_previous_file_and_no_partial(tmp_path, wav, sig):
    audio = wav(tone(440, 30.0))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous render")
    graph = graph_file(tmp_path, audio, size=512, extra={"cppn": {"layers": 8, "hidden": 32}})
    proc = start_cli("render", graph, "--quiet")
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".partial") or "partial" in p.name
                                             for p in tmp_path.iterdir()):
        time.sleep(0.1)  # wait until the encoder has started writing
    time.sleep(0.5)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert out.read_bytes() == b"previous render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav", "graph.yaml", "out.mp4"]
