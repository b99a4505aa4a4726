"""onsets: librosa's onset strength, hits on every click and nothing on silence or tones, the envelope, live streams."""

import math

import numpy as np
import pytest

from drums import SR, clicks, node, run
from float32_bounds import U
from cppnviz.errors import ParamError
from cppnviz.nodes._odf import AMIN, FluxStream, periodic_hann
from cppnviz.nodes.onsets import Onsets
from cppnviz.nodes.spectrum import mel_matrix
from cppnviz.ports import AudioWindow

U64 = 2.0**-53
N_FFT, HOP, N_MELS, TOP_DB = 2048, 512, 128, 80.0


def fft_error(n: int, u: float) -> float:
    """Higham (2002, thm 24.2): a radix-2 FFT with twiddles good to u has ||dX|| <= this * ||X||."""
    eta = u + gamma_u(4, u) * (math.sqrt(2) + u)
    stages = math.log2(n)
    return stages * eta / (1 - stages * eta)


def gamma_u(k: int, u: float) -> float:
    return k * u / (1 - k * u)


def flux_reference(samples: np.ndarray, groups: list[slice], u: float, weight_u: float, *, running: bool):
    """(exact onset strength, bound on |computed - exact|), each [shape=(frames, groups)], for arithmetic of
    roundoff u, the log-mel power floored top_db below the loudest value so far or full scale (running,
    ours) or below the loudest of the track (librosa's).

    Exact values are evaluated in float64. Per frame: the windowed samples carry 2u (window and product
    rounding); the FFT adds fft_error(N) of ||X|| to every bin (a normwise bound, so per bin too; ||X||
    over both halves of the spectrum); |X|^2 adds gamma_2; the mel sum of N/2 non-negative terms
    gamma_{N/2}, and the float32 mel weights `weight_u` relative; 10 log10 turns an error e of the mel
    power M into at most 10 log10((M+e)/(M-e)) dB (both floored at AMIN, as the code does), plus 4 ulp
    for log10 and the product. The floor moves with the loudest value; a value well under it stays the
    floor. The rectified difference and the group mean add their own roundings.
    """
    x = samples.astype(np.float64)
    starts = np.arange(N_FFT, len(x) + 1, HOP) - N_FFT
    frames = np.stack([x[s:s + N_FFT] for s in starts]) * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))
    full = np.fft.rfft(frames, axis=1)
    spectrum = full[:, : N_FFT // 2]
    magnitude = np.abs(spectrum)
    per_bin = (fft_error(N_FFT, u) + 2 * u) * math.sqrt(2) * np.linalg.norm(full, axis=1, keepdims=True)
    power = magnitude**2
    power_error = 2 * magnitude * per_bin + per_bin**2 + gamma_u(2, u) * (magnitude + per_bin) ** 2
    mel = mel_matrix(N_MELS, N_FFT, SR).astype(np.float64)
    mels = power @ mel.T
    mel_error = power_error @ mel.T + (gamma_u(N_FFT // 2, u) + weight_u) * (mels + power_error @ mel.T)
    level = 10 * np.log10(np.maximum(mels, AMIN))
    level_error = (10 * np.log10(np.maximum(mels + mel_error, AMIN) / np.maximum(mels - mel_error, AMIN))
                   + 4 * u * np.abs(level))
    peaks = level.max(axis=1)
    full_scale = 20 * math.log10(N_FFT / 4)   # ours: never a floor below full scale - top_db
    loudest = np.maximum.accumulate(np.maximum(peaks, full_scale)) if running else np.full_like(peaks, peaks.max())
    # The computed maximum is off by no more than the error of the value that is the maximum, or than
    # any other value's excess over it.
    spread = np.maximum(level_error[np.arange(len(level)), level.argmax(axis=1)], (level + level_error).max(axis=1) - peaks)
    floor = (loudest - TOP_DB)[:, None]
    floor_error = ((np.maximum.accumulate(spread) if running else np.full_like(spread, spread.max()))
                   + u * (np.abs(loudest) + TOP_DB))[:, None]
    floored = np.maximum(level, floor)
    clear = level + level_error < floor - floor_error            # stays the floor whatever the rounding
    floored_error = np.where(clear, floor_error, np.maximum(level_error, floor_error))
    steps = np.diff(floored, axis=0)
    step_error = floored_error[1:] + floored_error[:-1] + u * np.abs(steps)
    exact, bound = [], []
    for group in groups:
        count = group.stop - group.start
        rise = np.maximum(steps[:, group], 0).mean(axis=1)
        mean_error = step_error[:, group].sum(axis=1) / count
        exact.append(rise)
        bound.append(mean_error + (gamma_u(count, u) + u) * (rise + mean_error))
    return np.stack(exact, axis=1), np.stack(bound, axis=1)


def reference_signal() -> np.ndarray:
    """A loud tone first (the loudest moment, so librosa's whole-track floor equals our running one), then
    noise bursts over a quieter tone: onsets of every size. A bed of white noise keeps every mel band
    within 50 dB of its frame's loudest (or under the floor), where the FFT's error bound is tight."""
    rng = np.random.default_rng(5)
    n = 3 * SR
    t = np.arange(n) / SR
    y = 0.15 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(n)
    y[:4096] = 0.95 * np.sin(2 * np.pi * 1000 * t[:4096])
    for at in np.arange(0.3, 2.8, 0.23):
        i = round(at * SR)
        y[i:i + 3000] += 0.2 * rng.standard_normal(3000) * np.exp(-np.arange(3000) / 500)
    return y.astype(np.float32)


def librosa_strength(y: np.ndarray, channels=None) -> np.ndarray:
    librosa = pytest.importorskip("librosa", reason="librosa (the dev extra) is the reference for onset strength")
    # Our mel filters are HTK's, peak 1, 0 Hz to Nyquist; strength is the mean rise (lag 1, no max filter).
    return librosa.onset.onset_strength_multi(y=y.astype(np.float64), sr=SR, n_fft=N_FFT, hop_length=HOP,
                                               n_mels=N_MELS, htk=True, norm=None, fmin=0.0, fmax=SR / 2,
                                               lag=1, max_size=1, center=True, aggregate=np.mean,
                                               channels=channels)


def ours(y: np.ndarray, splits=()) -> tuple[int, np.ndarray]:
    stream = FluxStream(SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, top_db=TOP_DB, splits_hz=splits)
    return stream.advance(AudioWindow(y, len(y), SR), len(y))


@pytest.mark.parametrize("splits", [(), (200.0, 5000.0)])
def test_strength_is_librosas_onset_strength(splits):
    y = reference_signal()
    first, strength = ours(y, splits)
    groups = np.flatnonzero(np.diff(np.argmax(FluxStream(SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, top_db=TOP_DB,
                                                                    splits_hz=splits).groups, axis=0))) + 1
    edges = [0, *groups.tolist(), N_MELS]
    slices = [slice(a, b) for a, b in zip(edges, edges[1:])]
    reference = librosa_strength(y, channels=None if not splits else edges)
    reference = reference.reshape(len(slices), -1).T
    # Our frame j ends at sample j*hop, as librosa's centred frame j shifted by n_fft/(2 hop); frame `first`
    # has nothing before it (strength 0), so compare from first+1 on, where both are whole windows.
    frames = np.arange(first + 1, min(first + len(strength), reference.shape[0]))
    got, want = strength[frames - first], reference[frames]
    # Frame j of the float64 pass is the window ending at (j + first) * hop: index j - first - 1 of the steps.
    exact_ours, bound_ours = flux_reference(y, slices, U, U, running=True)
    exact_librosa, bound_librosa = flux_reference(y, slices, U64, U, running=False)
    rows = frames - first - 1
    # librosa floors below the whole track's loudest value, we below the loudest so far: the exact
    # difference between the two is part of the allowance (zero once the loudest frame has passed).
    bound = bound_ours[rows] + bound_librosa[rows] + np.abs(exact_ours - exact_librosa)[rows]
    worst = np.unravel_index(np.argmax(np.abs(got - want) - bound), got.shape)
    assert np.all(np.abs(got - want) <= bound), (f"frame {frames[worst[0]]} group {worst[1]}: {got[worst]} "
                                                 f"against librosa's {want[worst]}, bound {bound[worst]:.3g}")
    assert want.max() > 10 and np.median(bound) < 0.1  # a real test: strong onsets, a bound far below them


def assert_same_strength(a: np.ndarray, b: np.ndarray) -> None:
    """The same strengths computed in other batches: BLAS may sum each mel band's N/2 non-negative terms in
    another order (each within gamma_{N/2} of exact, so two within twice that), which moves a level by at
    most 10 log10((1+2g)/(1-2g)) dB; log10 adds up to 4 ulp of 100 dB in each; a strength is the mean of
    differences of two levels, summed over at most n_mels bands in any order."""
    g = gamma_u(N_FFT // 2, U)
    level = 10 * math.log10((1 + 2 * g) / (1 - 2 * g)) + 2 * 4 * U * 100
    np.testing.assert_allclose(a, b, rtol=2 * gamma_u(N_MELS, U), atol=2 * level)


def test_frames_arrive_the_same_in_any_batches():
    y = reference_signal()
    first, whole = ours(y)
    stream = FluxStream(SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, top_db=TOP_DB)
    pieces, at = [], 0
    for step in np.random.default_rng(1).integers(1, 3000, size=10000):
        at = min(at + int(step), len(y))
        pieces.append(stream.advance(AudioWindow(y[:at], at, SR, final=False), at)[1])
        if at == len(y):
            break
    assert_same_strength(np.concatenate(pieces), whole)


def test_a_ring_buffer_stream_gives_the_same_strength():
    """Live audio (audio_in) keeps only its newest samples: `start` says where they sit in the stream."""
    y = reference_signal()
    first, whole = ours(y)
    stream = FluxStream(SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, top_db=TOP_DB)
    keep, got = 8192, []
    for end in range(735, len(y) + 735, 735):
        end = min(end, len(y))
        begin = max(0, end - keep)
        got.append(stream.advance(AudioWindow(y[begin:end], end - begin, SR, final=False, start=begin), end)[1])
    assert_same_strength(np.concatenate(got), whole)


def onset_ticks(out, fps=60):
    return np.flatnonzero(out["hit"][:, 0])


@pytest.mark.parametrize("live", [False, True])
def test_a_hit_on_every_click_within_a_frame(live):
    samples, times = clicks(120, 8.0)
    out = run(node(Onsets, live=live), samples, live=live)
    hits = onset_ticks(out) / 60
    assert len(hits) == len(times)
    lag = hits - times
    if live:
        # Decided one hop (11.6 ms) after the frame that shows it, then shown on the next frame.
        assert np.all((lag >= -1 / 60) & (lag <= 3 / 60)), lag
    else:
        assert np.all(np.abs(lag) <= 1 / 60), lag
    assert np.all(out["envelope"][onset_ticks(out), 0] == 1.0)


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize("bands", ["full", "low_mid_high"])
def test_silence_and_tones_have_no_onsets(live, bands):
    t = np.arange(3 * SR) / SR
    signals = {"silence": np.zeros(3 * SR), "tone": 0.5 * np.sin(2 * np.pi * 440 * t),
               "chord": 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (110, 440, 2500, 9000))}
    for name, y in signals.items():
        out = run(node(Onsets, live=live, bands=bands), y.astype(np.float32), live=live)
        assert out["hit"].sum() == 0 and out["envelope"].max() == 0, name
        # A steady sound rises by (almost) nothing: window leakage makes a fraction of a dB, under the threshold.
        assert out["strength"].max() < Onsets.param("threshold").default, name


def test_hiss_before_the_music_is_no_onset():
    """Digital silence, then hiss at the 16-bit floor, then clicks: the first onset is the first click."""
    samples, times = clicks(120.0, 4.0, start=2.0)
    samples[SR // 2:2 * SR] += np.random.default_rng(6).integers(-1, 2, 3 * SR // 2) / 32768
    hits = onset_ticks(run(node(Onsets), samples)) / 60
    assert len(hits) == len(times) and abs(hits[0] - 2.0) <= 1 / 60


def test_per_band_hits_tell_kick_from_hats():
    samples = np.zeros(3 * SR, dtype=np.float32)
    rng = np.random.default_rng(2)
    kick = np.sin(2 * np.pi * 60 * np.arange(20000) / SR) * np.exp(-np.arange(20000) / 1500)
    hat = rng.standard_normal(1500) * np.exp(-np.arange(1500) / 300)
    hat = np.diff(np.diff(hat, prepend=0), prepend=0)  # twice differentiated: mostly above 5 kHz
    for at in (0.5, 1.5):
        samples[round(at * SR):round(at * SR) + 20000] += 0.8 * kick
    for at in (1.0, 2.0):
        samples[round(at * SR):round(at * SR) + 1500] += 0.3 * hat / np.abs(hat).max()
    out = run(node(Onsets, bands="low_mid_high"), samples)
    low, high = (np.flatnonzero(out["hit"][:, c]) / 60 for c in (0, 2))
    assert np.allclose(low, [0.5, 1.5], atol=1 / 60)                   # the kicks, not the hats
    assert all(np.min(np.abs(high - t)) <= 1 / 60 for t in (1.0, 2.0))  # the hats (and the kicks' click)


def test_onsets_closer_than_the_minimum_gap_are_one():
    samples, _ = clicks(60, 3.0)
    doubled = samples + np.roll(samples, round(0.08 * SR))      # a second click 80 ms after each
    single = len(onset_ticks(run(node(Onsets), samples)))
    assert len(onset_ticks(run(node(Onsets, min_gap=100.0), doubled))) == single
    assert len(onset_ticks(run(node(Onsets, min_gap=50.0), doubled))) == 2 * single


def test_envelope_falls_by_e_in_decay_seconds():
    samples, times = clicks(30, 3.0)
    out = run(node(Onsets, decay=0.25), samples)
    k = onset_ticks(out)[0]
    assert out["envelope"][k + 15, 0] == pytest.approx(math.exp(-15 / 60 / 0.25), rel=1e-5)


def test_outputs_are_finite_for_any_input():
    rng = np.random.default_rng(3)
    cases = {"digital silence": np.zeros(SR), "clipping": np.clip(5 * rng.standard_normal(SR), -1, 1),
             "dc": np.full(SR, 0.7), "full-scale square": np.sign(np.sin(2 * np.pi * 50 * np.arange(SR) / SR))}
    for name, y in cases.items():
        for live in (False, True):
            out = run(node(Onsets, bands="low_mid_high", live=live), y.astype(np.float32), live=live)
            for port, values in out.items():
                assert values.dtype == np.float32 and values.shape[1:] == (3,), (name, port)
                assert np.all(np.isfinite(values)), (name, port)


@pytest.mark.parametrize("params,words", [
    ({"hop": 4096}, ["param 'hop'", "at most n_fft (2048)", "4096"]),
    ({"bands": "low_mid_high", "splits": [5000.0, 200.0]}, ["param 'splits'", "2 increasing", "[5000.0, 200.0]"]),
    ({"bands": "low_mid_high", "splits": 300.0}, ["param 'splits'", "2 increasing", "300.0"]),
])
def test_bad_params_are_one_line_naming_the_param(params, words):
    with pytest.raises(ParamError) as error:
        node(Onsets, **params)
    assert "\n" not in str(error.value) and all(w in str(error.value) for w in words), str(error.value)


def test_periodic_hann_is_scipys():
    scipy_signal = pytest.importorskip("scipy.signal", reason="scipy (with librosa, the dev extra)")
    np.testing.assert_allclose(periodic_hann(2048), scipy_signal.get_window("hann", 2048), atol=2 * U)
