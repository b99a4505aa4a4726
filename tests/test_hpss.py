"""hpss: reconstruction, separation of a drum pattern from chords, agreement with librosa, live = offline delayed."""

from __future__ import annotations

import csv
import io
from fractions import Fraction

import numpy as np
import pytest

from conftest import SR, run_cli, write_wav
from drums import DEMO, node
from cppnviz.live import LiveStats, FrameRecord
from cppnviz.nodes import _hpss
from cppnviz.nodes.hpss import HPSS
from cppnviz.ports import AudioWindow
from cppnviz.timebase import Tick, sample_at

def parts(seconds: float = 4.0, bpm: float = 120, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(drums, chords): kick, snare and hats from the demo's instruments, and held three-note chords."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    drums = np.zeros(n)
    beat = 60 / bpm
    kick, snare, hat = DEMO["kick"](), DEMO["snare"](rng), DEMO["hihat"](rng)
    for i, t in enumerate(np.arange(0.25, seconds - 0.3, beat)):
        DEMO["place"](drums, kick if i % 2 == 0 else 0.6 * snare, t)
        DEMO["place"](drums, 0.3 * hat, t + beat / 2)
    t = np.arange(n) / SR
    chords = np.zeros(n)
    for k, notes in enumerate([(57, 60, 64), (53, 57, 60), (55, 59, 62)] * 4):
        # 50 ms fades, so a chord change is not itself a click
        fade = np.clip(np.minimum(t - 2.0 * k, 2.0 * (k + 1) - t) / 0.05, 0, 1)
        chords += fade * sum(np.sin(2 * np.pi * DEMO["midi_hz"](m) * t) for m in notes) / 3
    return tuple((0.5 * part / np.abs(part).max()).astype(np.float32) for part in (drums, chords))


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB, in float64."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


@pytest.fixture(scope="module")
def mix():
    drums, chords = parts()
    y = drums + chords
    return drums, chords, y, _hpss.hpss(y)


def test_harmonic_plus_percussive_reconstructs_the_input(mix):
    drums, chords, y, (harmonic, percussive) = mix
    # Soft masks with power 2 and margin 1 sum to 1: only float32 rounding is left (~ -140 dB).
    assert sdr(y, harmonic + percussive) >= 40


def test_percussive_follows_the_drums_and_harmonic_the_chords(mix):
    drums, chords, y, (harmonic, percussive) = mix
    assert sdr(drums, percussive) - sdr(drums, y) >= 6
    assert sdr(chords, harmonic) - sdr(chords, y) >= 3


def test_agrees_with_librosa_hpss():
    librosa = pytest.importorskip("librosa")
    drums, chords = parts(seconds=1.5)
    y = drums + chords
    harmonic, percussive = _hpss.hpss(y)
    stft = librosa.stft(y)
    reference = [librosa.istft(part, length=len(y)) for part in librosa.decompose.hpss(stft)]
    assert abs(sdr(chords, harmonic) - sdr(chords, reference[0])) < 1
    assert abs(sdr(drums, percussive) - sdr(drums, reference[1])) < 1
    # The same arithmetic in float32: the outputs agree far beyond the 1 dB asked.
    assert sdr(reference[0], harmonic) > 100 and sdr(reference[1], percussive) > 100


def test_kernels_in_seconds_and_hz_mean_the_same_sound_at_any_rate():
    # librosa's 31 frames x 31 bins at 44.1 kHz with n_fft 2048, hop 512; at 22.05 kHz with half of each.
    made = node(HPSS)
    assert made.settings["kernel_frames"] == 31 and made.settings["kernel_bins"] == 31
    half = node(HPSS, sample_rate=22050, n_fft=1024, hop_length=256)
    assert half.settings["kernel_frames"] == 31 and half.settings["kernel_bins"] == 31
    assert _hpss.odd(30.2) == 31 and _hpss.odd(32.1) == 33 and _hpss.odd(0.2) == 1


def test_the_node_offline_serves_the_whole_track_separation(mix):
    drums, chords, y, (harmonic, percussive) = mix
    made = node(HPSS)
    assert made.whole_track() and made.latency == 0
    made.fit({"audio": np.stack([AudioWindow(y, 0, SR)])})
    made.reset()   # the runner resets every node after the prepass: the separation stays
    now = sample_at(90, SR, Fraction(60))
    out = made.process(Tick(90, 1.5), audio=AudioWindow(y, now, SR))
    window = out["percussive"].window(out["percussive"].now - 1024, 2048)
    np.testing.assert_array_equal(window, percussive[now - 1024:now + 1024])
    np.testing.assert_array_equal(out["harmonic"].samples, harmonic)


def test_live_output_is_the_offline_output_delayed_by_the_reported_latency(mix):
    drums, chords, y, (harmonic, percussive) = mix
    made = node(HPSS, live=True)
    latency = made.latency
    assert not made.whole_track() and latency == 2048 + 15 * 512
    assert made.latency_s == pytest.approx(latency / SR)
    compared = 0
    for k in range(0, 230):
        now = sample_at(k, SR, Fraction(60))
        out = made.process(Tick(k, k / 60), audio=AudioWindow(y[:now], now, SR, final=False))
        for name, offline in (("harmonic", harmonic), ("percussive", percussive)):
            window = out[name]
            end = window.start + len(window.samples)
            assert end == max(0, now - latency) and not window.final
            if end > latency:   # after the first window
                np.testing.assert_allclose(window.samples[-735:], offline[end - 735:end], rtol=0, atol=1e-4)
                compared += 1
    assert compared > 300


def test_live_stats_add_the_look_ahead_to_every_latency():
    stats = LiveStats(SR, Fraction(60), lookahead_s=0.25)
    stats.add(FrameRecord(0, 0, 0, 0, SR // 100))   # ready 10 ms after its newest sample
    assert stats.latency_max == pytest.approx(0.26)
    assert "mean 260.0 ms" in stats.summary() and "including 250 ms look-ahead" in stats.summary()


def test_separated_parts_feed_analysis_nodes_in_a_real_run(tmp_path):
    """cppnviz features on a chords-only song: the harmonic bands carry the sound, the percussive hardly any."""
    drums, chords = parts(seconds=2.0)
    write_wav(tmp_path / "chords.wav", chords)
    (tmp_path / "g.yaml").write_text(
        "fps: 30\n"
        "nodes:\n"
        "  audio: {type: audio_file, params: {path: chords.wav}}\n"
        "  split: {type: hpss, inputs: {audio: audio.audio}}\n"
        "  harm: {type: stft_bands, inputs: {audio: split.harmonic}}\n"
        "  perc: {type: stft_bands, inputs: {audio: split.percussive}}\n"
        "  both: {type: concat, inputs: {features: [harm.bands, perc.bands]}}\n")
    result = run_cli("features", "g.yaml", "--node", "both", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))[1:]
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    harm, perc = values[:, :7].sum(), values[:, 7:].sum()
    assert len(rows) == 60 and harm > 10 * perc > 0


def test_bad_settings_are_one_error_line(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(4410))
    (tmp_path / "g.yaml").write_text(
        "nodes:\n"
        "  audio: {type: audio_file, params: {path: a.wav}}\n"
        "  split: {type: hpss, params: {n_fft: 1024, hop_length: 600}, inputs: {audio: audio.audio}}\n")
    result = run_cli("check", "g.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: g.yaml: node 'split' param 'hop_length': expected at most n_fft / 2 "
                                     "(512), found 600")


def test_separate_writes_both_parts_at_the_songs_rate_and_channels(tmp_path):
    from cppnviz.nodes.decode import decode_audio
    drums, chords = parts(seconds=1.5)
    y = drums + chords
    write_wav(tmp_path / "song.wav", np.stack([y, -0.5 * y], axis=1), sample_rate=48000)
    result = run_cli("separate", "song.wav", "--out-dir", "stems", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == ["harmonic.wav", "percussive.wav"]
    decoded = {}
    for name in ("song", "stems/harmonic", "stems/percussive"):
        probe = run_cli_tool("ffprobe", "-v", "error", "-show_entries", "stream=sample_rate,channels",
                             "-of", "csv=p=0", tmp_path / f"{name}.wav")
        assert probe == "48000,2"
        decoded[name] = decode_audio(str(tmp_path / f"{name}.wav"), 48000).T
    song, harmonic, percussive = decoded["song"], decoded["stems/harmonic"], decoded["stems/percussive"]
    assert harmonic.shape == percussive.shape == song.shape
    assert sdr(song, harmonic + percussive) >= 40
    assert sdr(chords, harmonic[0]) - sdr(chords, song[0]) >= 3   # the left channel: the chords come out


def run_cli_tool(*args) -> str:
    import subprocess
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("case", ["missing", "corrupt", "folder_is_a_file", "bad_power"])
def test_separate_refuses_in_one_line_and_writes_nothing(tmp_path, case):
    write_wav(tmp_path / "song.wav", np.zeros(4410))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x01junk" * 100)
    (tmp_path / "taken").write_text("a file")
    song, out, extra, expected = "song.wav", "stems", [], None
    if case == "missing":
        song, expected = "nope.wav", f"error: audio file '{tmp_path / 'nope.wav'}': file not found"
    elif case == "corrupt":
        song = "corrupt.wav"
    elif case == "folder_is_a_file":
        out, expected = "taken", "error: cannot write into 'taken': it is a regular file, not a folder"
    else:
        extra, expected = ["--power", "0"], "error: --power: expected a number in 0.1..100, found 0.0"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("separate", song, "--out-dir", out, *extra, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and (expected is None or result.stderr.strip() == expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_live_run_adds_the_look_ahead_to_the_latency_it_prints(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "fps: 30\n"
        "nodes:\n"
        "  mic: {type: audio_in}\n"
        "  split: {type: hpss, inputs: {audio: mic.audio}}\n"
        "  bands: {type: stft_bands, inputs: {audio: split.percussive}}\n"
        "  picture: {type: cppn, inputs: {features: bands.bands}, params: {width: 16, height: 16}}\n")
    result = run_cli("live", "g.yaml", "--input", "--audio-backend", "null", "--no-window", "--seconds", "0.5",
                     "--osc-port", "0", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = [line for line in result.stderr.splitlines() if line.startswith("live: ")][-1]
    assert "(including 221 ms look-ahead)" in summary                 # (2048 + 15 * 512) / 44100 s
    mean = float(summary.split("latency newest sample -> frame ready mean ")[1].split(" ms")[0])
    assert mean >= 221


def test_a_live_param_change_restarts_from_what_the_source_holds(mix):
    """A new power mid-show: the separator starts again from the source's history, not from the song's start."""
    drums, chords, y, _ = mix
    made = node(HPSS, live=True)
    history = SR   # the source keeps 1 s, as audio_in does

    def tick(k):
        now = sample_at(k, SR, Fraction(60))
        first = max(0, now - history)
        return now, first, made.process(Tick(k, k / 60), audio=AudioWindow(y[first:now], now - first, SR, final=False,
                                                                            start=first))

    for k in range(120):
        tick(k)
    made.set_param("power", 1.0)
    now, first, _ = tick(120)
    assert made.separator.received == now - first          # 1 s fed again, not 2 s
    later = _hpss.hpss(y[first:], power=1.0)[1]             # what a separation from `first` gives
    for k in range(121, 200):
        now, _, out = tick(k)
        window = out["percussive"]
        end = window.start + len(window.samples)
        assert end == now - made.latency
        if end - first > made.latency:
            np.testing.assert_allclose(window.samples[-735:], later[end - first - 735:end - first], rtol=0, atol=1e-4)


def test_an_interrupted_separate_leaves_no_file_and_no_folder(tmp_path):
    import signal
    import time
    from conftest import start_cli
    drums, chords = parts(seconds=4.0)
    write_wav(tmp_path / "song.wav", np.tile(drums + chords, 15))       # a minute: several blocks
    proc = start_cli("separate", "song.wav", "--out-dir", "stems", cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not any("partial" in p.name for p in (tmp_path / "stems").glob("*")):
        time.sleep(0.05)   # until the first block is being written
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]
