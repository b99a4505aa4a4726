"""Hours of audio in flat memory: a streamed render holds seconds of the song, never the song."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
import yaml

from cppnviz.node import Context
from cppnviz.nodes.audio import AudioFile
from long_audio import sparse_song
from test_render import needs_ffprobe, probe

# Runs a command in a fresh interpreter and prints its own peak RSS (VmHWM: ru_maxrss would carry
# the test process's high-water mark across fork and exec).
CHILD = """
import sys
from cppnviz.launch import main
code = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("peak_kib", peak, file=sys.stderr)
sys.exit(code)
"""


def render_peak_mib(graph, *args) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, "render", str(graph), "--quiet", *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_kib")) / 1024


@needs_ffprobe
def test_a_three_hour_set_renders_in_flat_memory_with_matching_lengths(tmp_path):
    # Three hours at 8 kHz decoded whole would be 330 MB for each float32 copy of it; streamed, the
    # render holds a few seconds. One frame a second keeps the test's run time to seconds.
    seconds = 3 * 3600
    song = sparse_song(tmp_path / "set.flac", seconds)
    graph = tmp_path / "set.yaml"
    graph.write_text(yaml.safe_dump({"fps": 1, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": "set.flac", "sample_rate": 8000}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"n_fft": 2048}},
        "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"}},
        "cppn": {"type": "cppn", "inputs": {"features": "norm.features"},
                 "params": {"width": 16, "height": 16, "layers": 3, "hidden": 8}},
        "video": {"type": "encoder", "inputs": {"frame": "cppn.frame", "audio": "audio.audio"},
                  "params": {"path": "set.mp4", "preset": "ultrafast"}},
    }}))
    assert song.stat().st_size < 10 * 2**20
    assert render_peak_mib(graph) < 300
    streams = probe(tmp_path / "set.mp4")
    assert int(streams["video"]["nb_read_frames"]) == seconds
    assert float(streams["video"]["duration"]) == pytest.approx(seconds, abs=1)
    assert float(streams["audio"]["duration"]) == pytest.approx(seconds, abs=1)


def test_a_cut_reads_only_the_start_of_a_long_file(tmp_path):
    song = sparse_song(tmp_path / "hour.flac", 3600)
    node = AudioFile("audio", {"path": str(song), "sample_rate": 8000, "normalize": True},
                     Context(fps=Fraction(30)))
    node.configure({})
    assert node.frame_count(limit=900) == 900            # --seconds 30
    assert node.scanned.analysis_samples < 8000 * 40   # read as far as 30 s needs, not the hour
    assert not node.scanned.complete
    assert node.frame_count() == 3600 * 30
    assert node.scanned.complete
