"""`cppnviz beats` and `cppnviz features` on real WAV files: the tempo, one row per beat, every output shown."""

import csv
import io
import re

import numpy as np
import pytest
import yaml

from conftest import run_cli, write_wav
from drums import SR, clicks


@pytest.fixture(scope="module")
def click_wav(tmp_path_factory):
    samples, times = clicks(120.0, 12.0)
    return write_wav(tmp_path_factory.mktemp("beats") / "clicks.wav", samples), times


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_beats_prints_the_tempo_and_writes_a_row_per_beat(click_wav, tmp_path):
    wav, times = click_wav
    result = run_cli("beats", wav, "--out", tmp_path / "beats.csv")
    assert result.returncode == 0, result.stderr
    tempo = float(re.search(r"tempo ([0-9.]+) bpm", result.stderr).group(1))
    assert abs(tempo / 120.0 - 1) < 0.01 and f"{len(times)} beats" in result.stderr
    table = rows((tmp_path / "beats.csv").read_text())
    assert [r["beat"] for r in table[:6]] == ["1", "2", "3", "4", "1", "2"]
    assert np.allclose([float(r["time"]) for r in table], times, atol=1 / 60)
    assert np.allclose([float(r["bpm"]) for r in table], 120.0, rtol=0.01)


def test_beats_live_predicts_from_the_past(click_wav):
    wav, times = click_wav
    result = run_cli("beats", wav, "--live")
    assert result.returncode == 0, result.stderr
    got = np.array([float(r["time"]) for r in rows(result.stdout)])
    late = got[got >= 5.0]
    assert len(late) == np.sum(times >= 5.0) and np.allclose(late, times[times >= 5.0], atol=1 / 60)


def test_beats_of_silence_is_tempo_zero(tmp_path):
    wav = write_wav(tmp_path / "silence.wav", np.zeros(4 * SR))
    result = run_cli("beats", wav)
    assert result.returncode == 0, result.stderr
    assert "no beats found" in result.stderr and "tempo 0 bpm" in result.stderr
    assert result.stdout == "time,bpm,beat\n"


@pytest.mark.parametrize("args,words", [
    (["--bpm-min", "200", "--bpm-max", "100"], ["node 'beats' param 'bpm_max'", "more than bpm_min (200)", "100"]),
    (["--bpm", "-3"], ["param 'bpm'", "0..400", "-3"]),
])
def test_beats_bad_values_are_one_line(click_wav, args, words):
    result = run_cli("beats", click_wav[0], *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines


def test_beats_missing_song_and_folder_output(tmp_path, click_wav):
    missing = run_cli("beats", tmp_path / "nope.wav")
    assert missing.returncode == 2 and "file not found" in missing.stderr and len(missing.stderr.splitlines()) == 1
    folder = run_cli("beats", click_wav[0], "--out", tmp_path)
    assert folder.returncode == 2 and "error:" in folder.stderr and not list(tmp_path.glob("*.csv"))


def graph_file(folder, wav, extra: dict) -> str:
    data = {"fps": 30, "nodes": {"audio": {"type": "audio_file", "params": {"path": str(wav)}}, **extra}}
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_features_shows_every_output_of_beats_and_onsets(click_wav, tmp_path):
    wav, times = click_wav
    path = graph_file(tmp_path, wav, {
        "beats": {"type": "beats", "inputs": {"audio": "audio.audio"}},
        "onsets": {"type": "onsets", "inputs": {"audio": "audio.audio"}, "params": {"bands": "low_mid_high"}},
        "mix": {"type": "concat", "inputs": {"features": ["onsets.envelope", "beats.pulse"]},
                "params": {"gain": [1.0, 2.0]}}})
    beats = run_cli("features", path, "--node", "beats")
    assert beats.returncode == 0, beats.stderr
    table = rows(beats.stdout)
    assert list(table[0]) == ["frame", "time", "beat", "phase", "bar_phase", "bpm", "pulse"]
    assert sum(float(r["beat"]) for r in table) == len(times)
    onsets = run_cli("features", path, "--node", "onsets", "--seconds", "2")
    assert list(rows(onsets.stdout)[0])[2:] == ["strength_low", "strength_mid", "strength_high", "hit_low",
                                                "hit_mid", "hit_high", "envelope_low", "envelope_mid",
                                                "envelope_high"]
    mixed = rows(run_cli("features", path, "--node", "mix").stdout)
    assert list(mixed[0])[2:] == ["envelope_low", "envelope_mid", "envelope_high", "pulse"]
    assert max(float(r["pulse"]) for r in mixed) == 2.0   # the pulse's gain
