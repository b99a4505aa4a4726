"""Stems: several audio_file nodes, --audio NAME=FILE, the encoder's sound, lengths and rates made to fit."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import SR, run_cli, tone, write_wav
from cppnviz.nodes.decode import decode_audio

GRAPH = """\
fps: 30
nodes:
  mix: {type: audio_file, params: {path: mix.wav}}
  drums: {type: audio_file, params: {path: drums.wav}}
  mix_bands: {type: stft_bands, inputs: {audio: mix.audio}}
  drum_bands: {type: stft_bands, inputs: {audio: drums.audio}}
  both: {type: concat, inputs: {features: [mix_bands.bands, drum_bands.bands]}}
  a: {type: cppn, inputs: {features: mix_bands.bands}, params: {width: 32, height: 32}}
  b: {type: cppn, inputs: {features: drum_bands.bands}, params: {width: 32, height: 32, seed: 2}}
  side: {type: stack, inputs: {frames: [a.frame, b.frame]}}
  video: {type: encoder, inputs: {frame: side.frame, audio: mix.audio}, params: {path: out.mp4, preset: ultrafast}}
"""


@pytest.fixture
def stems(tmp_path):
    """A graph with two stems; the mix a 440 Hz tone (2 s), the drums a 3 kHz tone (1 s at 48 kHz)."""
    (tmp_path / "stems.yaml").write_text(GRAPH)
    write_wav(tmp_path / "mix.wav", tone(440, 2.0))
    write_wav(tmp_path / "drums.wav", tone(3000, 1.0, sample_rate=48000), sample_rate=48000)
    write_wav(tmp_path / "other.wav", tone(3000, 2.0))
    return tmp_path


def features(result) -> np.ndarray:
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))[1:]
    return np.array([[float(v) for v in row[2:]] for row in rows])


def test_the_encoder_muxes_the_stem_its_audio_links_to_and_the_video_lasts_as_long(stems):
    result = run_cli("render", "stems.yaml", "--quiet", cwd=stems)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration", "-of", "csv=p=0",
                            str(stems / "out.mp4")], capture_output=True, text=True, check=True).stdout.split()
    durations = dict(line.split(",") for line in probe)
    assert abs(float(durations["video"]) - 2.0) < 1 / 30 + 1e-6
    sound = decode_audio(str(stems / "out.mp4"), SR).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(sound[SR // 4:SR // 4 + SR]))
    assert abs(np.argmax(spectrum) - 440) <= 1        # 1 s of it: 1 Hz bins; the mix, not the drums' 3 kHz


def test_a_shorter_stem_at_another_rate_is_padded_with_one_warning_line(stems):
    result = run_cli("features", "stems.yaml", "--node", "both", cwd=stems)
    values = features(result)
    warnings = [line for line in result.stderr.splitlines() if "stem" in line]
    assert warnings == ["WARNING: stem 'drums' (drums.wav): its 48000 Hz resampled to 44100 Hz for analysis ('mix' is "
                        "44100 Hz); padded with 1.00 s of silence to the length of 'mix' (2.00 s)"]
    assert len(values) == 60                                     # the mix's 2 s at 30 fps, not the drums' 1 s
    drums = values[:, 7:].sum(axis=1)
    assert np.all(drums[5:25] > 0) and np.all(drums[36:] == 0)  # sound, then silence past its end (+ half a window)


def test_audio_name_equals_file_replaces_that_stem_only(stems):
    result = run_cli("features", "stems.yaml", "--node", "both", "--audio", "drums=other.wav", cwd=stems)
    values = features(result)
    assert "WARNING" not in result.stderr                       # same length and rate now
    assert len(values) == 60 and np.all(values[5:55, 7:].sum(axis=1) > 0)
    # 3 kHz lands in the 2-4 kHz band of the drums' bands; the mix keeps its 440 Hz in 250-500 Hz.
    assert np.argmax(values[30, 7:]) == 4 and np.argmax(values[30, :7]) == 2


@pytest.mark.parametrize("args,expected", [
    (["--audio", "bass=other.wav"],
     "error: stems.yaml: --audio bass=other.wav: no audio_file node named 'bass'; audio_file nodes: mix, drums"),
    (["--audio", "drums=other.wav", "--audio", "drums=mix.wav"],
     "error: stems.yaml: --audio: two files for node 'drums': other.wav and mix.wav"),
    (["--audio", "other.wav"], "error: stems.yaml: --audio other.wav: needs exactly one audio_file node in the graph, "
                               "found mix, drums; name one: --audio NAME=FILE"),
    (["--audio", "drums=missing.wav"],
     "error: stems.yaml: node 'drums': audio file 'STEMS/missing.wav': file not found"),
    (["--audio", "drums=corrupt.wav"],
     "error: stems.yaml: node 'drums': audio file 'STEMS/corrupt.wav': cannot decode"),
])
def test_stem_mistakes_are_one_line_and_nothing_is_written(stems, args, expected):
    (stems / "corrupt.wav").write_bytes(b"RIFF\x00\x01junk" * 100)
    before = sorted(p.name for p in stems.iterdir())
    result = run_cli("render", "stems.yaml", "--quiet", *args, cwd=stems)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.replace("STEMS", str(stems))), result.stderr
    assert sorted(p.name for p in stems.iterdir()) == before


SMALL = [f"--set={name}.{side}=32" for name in ("drums_picture", "PICTURE") for side in ("width", "height")]


def test_the_stems_example_renders_with_the_separated_parts(tmp_path):
    examples = Path(__file__).resolve().parent.parent / "examples"
    sets = [s.replace("PICTURE", "chords_picture") for s in SMALL]
    result = run_cli("render", examples / "stems.yaml", "--seconds", "1", "--quiet", "--out", tmp_path / "s.mp4",
                     *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                            "-select_streams", "v", str(tmp_path / "s.mp4")], capture_output=True, text=True)
    assert probe.stdout.strip() == "72,32"                     # two 32 px pictures and the 8 px gap


def test_the_stem_files_example_reads_the_files_separate_writes(tmp_path):
    examples = Path(__file__).resolve().parent.parent / "examples"
    write_wav(tmp_path / "song.wav", tone(440, 1.0) + tone(3000, 1.0))
    for name in ("stems_files.yaml",):
        (tmp_path / name).write_text((examples / name).read_text())
    assert run_cli("separate", "song.wav", "--out-dir", "stems", cwd=tmp_path).returncode == 0
    sets = [s.replace("PICTURE", "other_picture") for s in SMALL]
    result = run_cli("render", "stems_files.yaml", "--audio", "mix=song.wav", "--quiet", "--out", "f.mp4", *sets,
                     cwd=tmp_path)
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "f.mp4").stat().st_size > 0
