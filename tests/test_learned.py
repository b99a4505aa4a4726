"""Learned features: gradients, the autoencoder against PCA on music the test makes, the node against training."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import start_cli
from pieces import piece, write_wav
from cppnviz import learn, runner
from cppnviz.graph import build_graph
from cppnviz.nodes._learned_model import LearnedModel
from cppnviz.nodes._logmel import LogMel, MelSettings
from cppnviz.timebase import as_fraction, sample_at
from cppnviz.train import gradient_check

CLI = [sys.executable, "-m", "cppnviz.launch"]
SMALL = ["--mels", "32", "--context", "2", "--hidden", "64,32", "--epochs", "100", "--size", "10"]
EPS32 = float(np.finfo(np.float32).eps)


def learn_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "learn", "--quiet", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> list[Path]:
    """Five 10-second pieces: drums and bass, a plucked lead, pads and hats, and two busy mixes."""
    folder = tmp_path_factory.mktemp("songs")
    made = [write_wav(folder / f"style{s}.wav", piece(s, 10.0, s)) for s in range(4)]
    return made + [write_wav(folder / "style3b.wav", piece(3, 10.0, 11))]


@pytest.fixture(scope="module")
def trained(songs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    model = tmp_path_factory.mktemp("model") / "music.npz"
    done = learn_cli(*songs, "--out", model, "--holdout", "0.2", *SMALL, "--method", "autoencoder")
    assert done.returncode == 0, done.stderr
    return model, done


def test_autoencoder_gradients_match_finite_differences():
    net = learn.autoencoder(12, [8], 3, seed=4)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 12))
    assert gradient_check(net, x, x) < 1e-3


def test_autoencoder_beats_pca_on_held_out_time_and_the_file_holds_the_measured_errors(songs, trained):
    model_path, done = trained
    model = LearnedModel.load(model_path)
    errors = model.header["errors"]
    assert model.method == "autoencoder" and model.size == 10
    # Held-out time of the training songs: music like the training set.
    assert errors["autoencoder"]["heldout_time"] < errors["pca"]["heldout_time"], errors
    # The stored figures are the ones measured: rebuild the same split and measure them again.
    corpus = learn.load_corpus([str(s) for s in songs], model.settings, holdout=0.2, seed=0)
    pca = learn.fit_pca(corpus.train, 10, model.settings)
    assert errors["pca"]["heldout_time"] == pytest.approx(learn.pca_error(pca, corpus.heldout_time), rel=1e-4)
    codes = model.encode(corpus.heldout_time)
    rebuilt = model.reconstruct(codes)
    measured = float(np.mean(np.square(rebuilt - corpus.heldout_time, dtype=np.float64)))
    assert errors["autoencoder"]["heldout_time"] == pytest.approx(measured, rel=1e-4)
    assert np.all((codes >= 0) & (codes <= 1)), "the sigmoid bottleneck keeps features in [0, 1]"
    assert [s["role"] for s in model.header["songs"]].count("held out") == 1
    assert "held-out time" in done.stderr and "held-out songs" in done.stderr


def test_auto_never_keeps_a_model_worse_than_pca_on_held_out_songs(songs, tmp_path):
    out = tmp_path / "auto.npz"
    done = learn_cli(*songs, "--out", out, "--holdout", "0.2", *SMALL)
    assert done.returncode == 0, done.stderr
    model = LearnedModel.load(out)
    errors = model.header["errors"]
    kept = errors[model.method]["heldout_songs"]
    assert kept <= errors["pca"]["heldout_songs"], errors
    assert f"kept the {model.method}" in done.stderr


def graph(song: Path, model: Path, *, fps, live=False, **params) -> dict:
    return {"fps": fps, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(song), "sample_rate": 22050}},
        "learned": {"type": "learned", "inputs": {"audio": "audio.audio"},
                    "params": {"model": str(model), **params}}}}


def features(song, model, *, fps, live=False, **params) -> np.ndarray:
    built = build_graph(graph(song, model, fps=fps, **params), base_dir=song.parent, live=live)
    n = runner.total_frames(built)
    return np.stack([row[2] for row in runner.collect(built, "learned", ["features"], n)])


def encoder_tolerance(model: LearnedModel, input_error: float) -> float:
    """Largest change of any feature when every input moves by `input_error` or less, plus each layer's rounding.

    Output j of x @ W moves by at most sum_i |W_ij| * d (the largest column sum of |W|) when every input
    moves by d; the activation's slope is <= 1 (tanh) or 1/4 (sigmoid). Float32 rounding of a K-term dot
    product adds at most K * eps * sum_i |x_i W_ij| (Higham's gamma_K), and |x| <= 1 at every layer (the
    centred log-mel values lie in [-1, 1], tanh and sigmoid outputs too).
    """
    bound = input_error
    for w, kind in zip(model.encoder.weights, model.encoder.activations):
        slope = 0.25 if kind == "sigmoid" else 1.0
        column_sum = float(np.abs(w).sum(axis=0).max())
        bound = slope * (column_sum * bound + w.shape[0] * EPS32 * column_sum)
    return bound


def test_node_equals_the_encoder_on_the_training_frames_offline_and_live(songs, trained):
    model_path, _ = trained
    model = LearnedModel.load(model_path)
    s = model.settings
    fps = s.sample_rate / s.hop    # one frame per training hop (43.06640625: exact in binary): tick k is grid vector k
    song = songs[3]
    signal = learn.analysis_signal(str(song), s.sample_rate)
    grid = model.encode(LogMel(s).grid(signal))
    # A log-mel value is 10*log10(power) dB over a 100 dB range: a float32 sum of n_fft/2 positive powers
    # errs by <= (n_fft/2)*eps relative, i.e. 4.343 * (n_fft/2) * eps / 100 in value (batched and single
    # FFTs and matmuls round differently), plus a few eps for the dB mapping and the centring.
    input_error = 4.343 * (s.n_fft / 2) * EPS32 / 100 + 4 * EPS32
    tolerance = encoder_tolerance(model, input_error)
    offline = features(song, model_path, fps=fps, scale="none")
    assert offline.shape == (len(grid), 10)
    assert np.max(np.abs(offline - grid)) <= tolerance, (np.max(np.abs(offline - grid)), tolerance)
    # Live: the frames end at the newest sample, so tick k's centre is `after` samples before it.
    live = features(song, model_path, fps=fps, live=True, scale="none")
    _, after = s.reach
    centres = np.array([sample_at(k, s.sample_rate, as_fraction(fps)) - after for k in range(len(live))])
    expected = model.encode(LogMel(s).vectors(signal, centres))
    warm = np.flatnonzero(centres >= s.reach[0])          # before that the window still holds silence
    assert np.max(np.abs(live[warm] - expected[warm])) <= tolerance


def test_blur_is_centred_offline_and_trailing_live(songs, trained):
    model_path, _ = trained
    song, fps, blur = songs[0], 30, 0.2
    frames = round(blur * fps)
    raw = features(song, model_path, fps=fps, scale="none")
    offline = features(song, model_path, fps=fps, scale="none", blur=blur)
    k = len(raw) // 2
    lo = k - frames // 2
    assert np.allclose(offline[k], raw[lo:lo + frames].mean(axis=0), atol=1e-6)
    live_raw = features(song, model_path, fps=fps, live=True, scale="none")
    live = features(song, model_path, fps=fps, live=True, scale="none", blur=blur)
    assert np.allclose(live[k], live_raw[k - frames + 1:k + 1].mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("kind", ["silence", "clipping"])
def test_song_scaled_features_are_finite_and_in_unit_range(trained, tmp_path, kind):
    model_path, _ = trained
    t = np.arange(4 * 44100) / 44100
    samples = np.zeros_like(t) if kind == "silence" else np.clip(8 * np.sin(2 * np.pi * 110 * t), -1, 1)
    song = write_wav(tmp_path / f"{kind}.wav", samples.astype(np.float32))
    out = features(song, model_path, fps=30, scale="song")
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


def test_model_of_another_sample_rate_is_an_error_naming_both(songs, trained, tmp_path):
    model_path, _ = trained
    data = graph(songs[0], model_path, fps=30)
    data["nodes"]["audio"]["params"]["sample_rate"] = 44100
    (tmp_path / "g.yaml").write_text(__import__("yaml").safe_dump(data))
    done = subprocess.run([*CLI, "check", str(tmp_path / "g.yaml")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "22050 Hz" in done.stderr and "44100 Hz" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_songs_are_skipped_and_no_usable_song_is_one_error(songs, tmp_path):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"\x00not audio" * 100)
    out = tmp_path / "m.npz"
    done = learn_cli(corrupt, songs[0], songs[1], "--out", out, "--method", "pca", "--mels", "16", "--size", "4")
    assert done.returncode == 0, done.stderr
    assert "warning: skipped" in done.stderr and "corrupt.mp3" in done.stderr
    assert LearnedModel.load(out).header["skipped"]
    none = learn_cli(corrupt, "--out", tmp_path / "none.npz")
    assert none.returncode == 2 and none.stderr.startswith("error:") and not (tmp_path / "none.npz").exists()
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(out.read_bytes()[:200])
    with pytest.raises(Exception, match="damaged, truncated"):
        LearnedModel.load(damaged)


def test_songs_too_short_to_hold_out_time_are_one_error(tmp_path):
    blip = write_wav(tmp_path / "blip.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 600), 22050)
    out = tmp_path / "m.npz"
    done = learn_cli(blip, "--out", out, "--size", "1", "--epochs", "3")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "too short" in lines[0], done.stderr
    assert not out.exists()
    assert learn_cli(blip, "--out", out, "--size", "1", "--method", "pca").returncode == 0 and out.exists()

def test_ctrl_c_during_training_exits_130_and_leaves_no_file(songs, tmp_path):
    out = tmp_path / "m.npz"
    proc = start_cli("learn", *songs, "--out", out, "--epochs", "1000", "--holdout", "0", "--method", "autoencoder")
    # The progress bar's first epoch means decoding is over and training has begun.
    seen = ""
    while "epoch" not in seen:
        line = proc.stderr.read(64)
        assert line, "the command ended before training"
        seen += line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []
