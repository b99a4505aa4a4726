"""`--out` never destroys anything, and the video's sound is the song's: the real CLI on real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SR, cppnviz_command, run_cli, tone, write_wav
from test_render import FFPROBE, graph_file, needs_ffprobe, probe

FFMPEG = shutil.which("ffmpeg")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def refused(result, *parts) -> str:
    """Exit 2 with exactly one `error:` line mentioning every part; return it."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture
def song(tmp_path):
    return write_wav(tmp_path / "song.wav", tone(440, 0.5))


@pytest.fixture
def graph(tmp_path, song):
    return graph_file(tmp_path, song, size=32)


def render(graph, *args, cwd=None):
    return run_cli("render", graph, "--quiet", *args, cwd=cwd)


# -- what is already there ---------------------------------------------------------------

def test_a_fifo_is_refused_and_kept(tmp_path, graph):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    refused(render(graph, "--out", fifo), str(fifo), "a FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not IS_ROOT, reason="making a device node (mknod) needs root; CI runs as root")
def test_a_device_is_refused_and_kept(tmp_path, graph):
    device = tmp_path / "full.mp4"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 7))   # the same device as /dev/full
    refused(render(graph, "--out", device), "a character device")
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_the_input_song_is_never_overwritten(tmp_path, graph, song):
    before = song.read_bytes()
    link = tmp_path / "looks_new.mp4"
    link.symlink_to(song)                                            # resolves to the song
    refused(render(graph, "--audio", song, "--out", link), "an input of this run")
    refused(render(graph, "--audio", "song.wav", "--out", "./sub/../song.wav", cwd=tmp_path))
    assert song.read_bytes() == before and link.is_symlink()


def test_the_graph_file_is_never_overwritten(tmp_path, graph):
    before = graph.read_bytes()
    link = tmp_path / "graph_alias.mkv"
    link.symlink_to(graph)
    refused(render(graph, "--out", link), "an input of this run", str(graph))
    assert graph.read_bytes() == before


def test_a_trailing_slash_names_a_folder_not_a_file(tmp_path, graph):
    refused(render(graph, "--out", f"{tmp_path}/newdir/"), "names a folder")
    refused(render(graph, "--out", "newdir/"), "names a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.yaml", "song.wav"]


@needs_ffprobe
@pytest.mark.parametrize("name, container", [("x.mkv", "matroska"), ("x.mov", "mov"), ("x.mp4", "mp4")])
def test_the_extension_chooses_the_container(tmp_path, graph, name, container):
    result = render(graph, "--out", tmp_path / name)
    assert result.returncode == 0, result.stderr
    found = json.loads(subprocess.run([FFPROBE, "-v", "error", "-show_entries", "format=format_name:format_tags",
                                       "-of", "json", str(tmp_path / name)], capture_output=True, text=True,
                                      check=True).stdout)["format"]
    # FFmpeg reads MP4 and QuickTime with one demuxer; the file's brand tells them apart.
    brand = found.get("tags", {}).get("major_brand", "").strip()
    assert {"matroska": "matroska" in found["format_name"], "mov": brand == "qt",
            "mp4": brand == "isom"}[container], found
    assert set(probe(tmp_path / name)) == {"video", "audio"}


@pytest.mark.parametrize("name", ["x.avi", "x.webm", "video"])
def test_an_unsupported_extension_names_the_supported_ones(tmp_path, graph, name):
    refused(render(graph, "--out", tmp_path / name), "unsupported extension", ".mp4, .mov, .mkv")
    assert not (tmp_path / name).exists()


# -- what a killed render left ---------------------------------------------------------------

def dead_pid() -> int:
    """The pid of a process that has just ended (and so belongs to no one)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partial_files_of_dead_renders_are_removed_and_a_live_ones_kept(tmp_path, graph):
    dead = tmp_path / f".out.partial-{dead_pid()}.mp4"
    dead.write_bytes(b"left by a SIGKILLed render")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".out.partial-{sleeper.pid}.mp4"
        alive.write_bytes(b"another render, still writing")
        unrelated = tmp_path / ".other.partial-1.mp4"
        unrelated.write_bytes(b"not ours")
        assert render(graph, "--out", tmp_path / "out.mp4").returncode == 0
        assert not dead.exists() and alive.exists() and unrelated.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_sigkilled_render_leaves_nothing_after_the_next_one(tmp_path, song):
    long_song = write_wav(tmp_path / "long.wav", tone(440, 30.0))
    graph = graph_file(tmp_path, long_song, size=256)
    proc = subprocess.Popen([*cppnviz_command(), "render", str(graph), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any("partial" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert any("partial" in p.name for p in tmp_path.iterdir()), "the render never started writing"
    assert render(graph, "--audio", song).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.yaml", "long.wav", "out.mp4", "song.wav"]


# -- a full disk -----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB filesystem (tmpfs), unmounted afterwards."""
    mount = shutil.which("mount")
    folder = tmp_path / "small"
    folder.mkdir()
    if not IS_ROOT or mount is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); CI runs as root")
    made = subprocess.run([mount, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this sandbox cannot mount a tmpfs: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_error_line_and_keeps_the_previous_file(tmp_path, song, small_disk):
    out = small_disk / "out.mp4"
    out.write_bytes(b"previous render")
    graph = graph_file(tmp_path, write_wav(tmp_path / "long.wav", tone(440, 8.0)), size=256)
    refused(render(graph, "--out", out), str(out), "no space left on device")
    assert out.read_bytes() == b"previous render"
    assert sorted(p.name for p in small_disk.iterdir()) == ["out.mp4"]


# -- the sound in the video -------------------------------------------------------------------

def integrated_loudness(path) -> float:
    """EBU R128 integrated loudness in LUFS, measured by FFmpeg's ebur128 filter."""
    result = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-vn", "-af", "ebur128",
                             "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = result.stderr[result.stderr.rindex("Summary:"):]
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))


def music(seconds: float, rate: int) -> np.ndarray:
    """A few seconds of chords with a beat, so loudness gating sees something music-like."""
    t = np.arange(round(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) / 3
    return 0.5 * chord * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0))


def write_surround(path, fronts: np.ndarray, rate: int):
    """A 6-channel (5.1) 16-bit WAV with `fronts` on FL and FR and silence elsewhere, through PyAV."""
    import av
    n = len(fronts)
    pcm = np.zeros((6, n), np.int16)
    pcm[0] = pcm[1] = np.round(fronts * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="5.1")
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout="5.1")
        frame.rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg; .ci/run does)")
def test_front_only_surround_is_as_loud_as_stereo_in_the_video(tmp_path):
    signal = music(4.0, 48000)
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([signal, signal], axis=1), 48000)
    surround = write_surround(tmp_path / "surround.wav", signal, 48000)
    graph = graph_file(tmp_path, stereo, size=32)
    for song in (stereo, surround):
        assert render(graph, "--audio", song, "--out", tmp_path / f"{song.stem}.mp4").returncode == 0
    loud_stereo = integrated_loudness(tmp_path / "stereo.mp4")
    loud_surround = integrated_loudness(tmp_path / "surround.mp4")
    assert loud_stereo > -30
    assert abs(loud_surround - loud_stereo) <= 0.5, (loud_stereo, loud_surround)


@needs_ffprobe
@pytest.mark.parametrize("source, expected", [(48000, "48000"), (96000, "48000"), (22050, "22050"), (44100, "44100")])
def test_the_videos_sound_keeps_the_songs_rate(tmp_path, source, expected):
    song = write_wav(tmp_path / "song.wav", tone(440, 0.5, sample_rate=source), source)
    graph = graph_file(tmp_path, song, size=32)
    assert render(graph).returncode == 0
    assert probe(tmp_path / "out.mp4")["audio"]["sample_rate"] == expected
