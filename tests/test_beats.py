"""beats: clicks and grooves at known tempi, silence and drones, offline and live in agreement, librosa's DP."""

import numpy as np
import pytest

from drums import SR, clicks, groove, node, run
from cppnviz.errors import ParamError
from cppnviz.nodes import _beat_offline
from cppnviz.nodes.beats import Beats, local_bpm

FPS = 60
WARM_UP_S = 5.0


def fired(out) -> np.ndarray:
    """Times of the frames whose `beat` output is 1."""
    return np.flatnonzero(out["beat"][:, 0]) / FPS


def nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each time, the signed distance to the nearest target."""
    return np.array([t - targets[np.argmin(np.abs(targets - t))] for t in times])


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_click_track_offline_beats_on_every_click(bpm):
    samples, times = clicks(bpm, 12.0)
    beats = node(Beats)
    out = run(beats, samples)
    given = np.asarray(beats.given)
    assert len(given) == len(times) and np.all(np.abs(given - times) <= 1 / FPS), given - times
    # The beat fires on the frame on screen when the click sounds.
    assert np.all((fired(out) - times <= 1e-9) & (fired(out) - times > -1 / FPS - 1e-9))
    tempo = out["bpm"][out["bpm"] > 0]
    assert np.all(np.abs(tempo / bpm - 1) < 0.01), (tempo.min(), tempo.max())


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_click_track_live_locks_onto_the_clicks(bpm):
    samples, times = clicks(bpm, 12.0)
    beats = node(Beats, live=True)
    out = run(beats, samples, live=True)
    late = fired(out)[fired(out) >= WARM_UP_S]
    assert len(late) == np.sum(times >= WARM_UP_S - 1 / FPS)
    assert np.all(np.abs(nearest(late, times)) <= 1 / FPS)
    tempo = out["bpm"][round(WARM_UP_S * FPS):round((times[-1]) * FPS)]
    assert np.all(np.abs(tempo / bpm - 1) < 0.01), (tempo.min(), tempo.max())


@pytest.mark.parametrize("live", [False, True])
def test_silence_and_drones_have_no_beats_and_bpm_zero(live):
    t = np.arange(8 * SR) / SR
    for name, y in {"silence": np.zeros(8 * SR), "tone": 0.5 * np.sin(2 * np.pi * 440 * t),
                    "chord": 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (110, 277, 440, 659))}.items():
        out = run(node(Beats, live=live), y.astype(np.float32), live=live)
        assert out["beat"].sum() == 0 and out["pulse"].max() == 0, name
        assert np.all(out["bpm"] == 0) and np.all(out["phase"] == 0), name


def test_offline_and_live_agree_on_a_steady_groove():
    samples, _ = groove(120.0, 20.0)
    offline, live = node(Beats), node(Beats, live=True)
    run(offline, samples)
    run(live, samples, live=True)
    a, b = np.asarray(offline.given), np.asarray(live.given)
    a, b = a[a >= WARM_UP_S], b[(b >= WARM_UP_S) & (b <= a[-1] + 0.030)]
    assert len(a) >= 29 and abs(len(a) - len(b)) <= 1
    assert np.all(np.abs(nearest(b, a)) <= 0.030), nearest(b, a)


@pytest.mark.parametrize("bpm", [96.0, 128.0])
def test_live_beats_fire_within_30_ms_of_the_true_beat(bpm):
    samples, times = groove(bpm, 16.0)
    out = run(node(Beats, live=True), samples, live=True)
    # After the warm-up and while the music plays (the beat predicted after the last one is a guess).
    late = fired(out)[(fired(out) >= WARM_UP_S) & (fired(out) <= times[-1] + 0.030)]
    lag = nearest(late, times)
    assert len(late) >= np.sum(times >= WARM_UP_S) - 1
    # Predicted, not heard: a beat is on screen no later than 30 ms after it sounds.
    assert np.all(lag <= 0.030) and np.all(lag > -0.070), lag


def test_grooves_keep_their_tempo_offline():
    for bpm in (72.0, 100.0, 160.0):
        samples, times = groove(bpm, 14.0)
        beats = node(Beats)
        run(beats, samples)
        tempo = np.median(local_bpm(beats.given))
        assert abs(tempo / bpm - 1) < 0.02, (bpm, tempo)


def test_phase_and_bar_phase_count_through_the_beats():
    samples, times = clicks(120.0, 8.0)
    out = run(node(Beats, beats_per_bar=4), samples)
    k = np.flatnonzero(out["beat"][:, 0])
    assert np.all(out["phase"][k, 0] < 0.05)                      # a beat starts its phase
    middle = (k[2] + k[3]) // 2
    assert out["phase"][middle, 0] == pytest.approx(0.5, abs=0.05)
    bars = out["bar_phase"][k, 0]
    assert np.allclose(bars[:8], [0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 0.75], atol=0.02)
    assert np.all((out["bar_phase"] >= 0) & (out["bar_phase"] < 1))


def test_pulse_falls_by_e_in_decay_seconds():
    samples, _ = clicks(60.0, 4.0)
    out = run(node(Beats, decay=0.1), samples)
    k = np.flatnonzero(out["beat"][:, 0])[0]
    assert out["pulse"][k, 0] == 1.0
    assert out["pulse"][k + 6, 0] == pytest.approx(np.exp(-6 / FPS / 0.1), rel=1e-5)


def test_a_fixed_tempo_is_kept():
    samples, times = clicks(100.0, 10.0)
    out = run(node(Beats, bpm=100.0), samples)
    assert np.allclose(out["bpm"][out["bpm"] > 0], 100.0, rtol=0.01)


@pytest.mark.parametrize("live", [False, True])
def test_outputs_are_finite_and_shaped_for_any_input(live):
    rng = np.random.default_rng(4)
    cases = {"digital silence": np.zeros(6 * SR), "clipping": np.clip(4 * groove(110.0, 6.0)[0], -1, 1),
             "dc": np.full(6 * SR, -0.9), "noise": rng.standard_normal(6 * SR) * 0.3}
    for name, y in cases.items():
        out = run(node(Beats, live=live), y.astype(np.float32), live=live)
        for port, values in out.items():
            assert values.dtype == np.float32 and values.shape[1:] == (1,), (name, port)
            assert np.all(np.isfinite(values)), (name, port)
        assert np.all((out["phase"] >= 0) & (out["phase"] < 1)) and np.all(out["bpm"] >= 0), name


def test_dynamic_programme_is_librosas_beat_track():
    """Same envelope, same tempo: the same beat frames as librosa.beat.beat_track, but for the trim at the
    ends: ours uses the threshold librosa documents, half of what its code applies, so librosa may drop a
    beat or two more at either end. Its beats are a run of ours, and the run covers all but the ends."""
    librosa = pytest.importorskip("librosa", reason="librosa (the dev extra) is the reference for beat_track")
    rng = np.random.default_rng(0)
    for period in (43, 37, 52):
        envelope = rng.gamma(1.0, 0.3, 1500)
        envelope[::period] += 3 + rng.random(len(envelope[::period]))
        envelope[:100] = 0
        envelope[-80:] *= 0.01       # a fading outro: both trim the beats there
        bpm = 60 * 22050 / 512 / period
        _, theirs = librosa.beat.beat_track(onset_envelope=envelope, sr=22050, hop_length=512, bpm=bpm)
        ours = _beat_offline.track(envelope, float(period), refined=False)
        start = int(np.searchsorted(ours, theirs[0]))
        np.testing.assert_array_equal(ours[start:start + len(theirs)], theirs)
        assert start <= 2 and len(ours) - start - len(theirs) <= 2


@pytest.mark.parametrize("params,words", [
    ({"bpm_min": 150.0, "bpm_max": 100.0}, ["param 'bpm_max'", "more than bpm_min (150)", "100"]),
    ({"band": [3000.0, 200.0]}, ["param 'band'", "2 increasing", "[3000.0, 200.0]"]),
    ({"hop": 4096}, ["param 'hop'", "at most n_fft", "4096"]),
])
def test_bad_params_are_one_line_naming_the_param(params, words):
    with pytest.raises(ParamError) as error:
        node(Beats, **params)
    assert "\n" not in str(error.value) and all(w in str(error.value) for w in words), str(error.value)


def test_offline_mode_refuses_live_and_names_the_alternative():
    assert node(Beats, mode="offline").live_problem() == "mode offline needs the whole track; live, use mode: live (or auto)"
    assert node(Beats, mode="auto", live=True).live_problem() is None and not node(Beats, live=True).whole_track()
    assert node(Beats).whole_track()


def test_live_beats_from_pushed_audio_follow_the_stream_position():
    """audio_in (TouchDesigner, a capture) keeps only its newest samples; `start` keeps the beats on time."""
    from fractions import Fraction

    from cppnviz.node import Context
    from cppnviz.nodes.stream import AudioIn
    from cppnviz.timebase import Tick

    samples, times = clicks(120.0, 12.0)
    source = AudioIn("in", {"sample_rate": SR, "history": 0.5}, Context(fps=Fraction(FPS), live=True))
    source.configure({})
    beats = node(Beats, live=True)
    block = SR // FPS
    for k in range(len(samples) // block):
        source.push(samples[k * block:(k + 1) * block])
        beats.process(Tick(k, k / FPS), audio=source.process(Tick(k, k / FPS))["audio"])
    given = np.asarray(beats.given)
    late = given[(given >= WARM_UP_S) & (given <= times[-1] + 0.030)]   # the one predicted past the end aside
    assert len(late) == np.sum(times >= WARM_UP_S) and np.all(np.abs(nearest(late, times)) <= 1 / FPS)


def test_a_live_knob_on_decay_keeps_the_lock():
    samples, times = clicks(120.0, 10.0)
    beats = node(Beats, live=True)
    half = run(beats, samples[: 6 * SR], live=True)
    assert beats.tracker.locked and half["bpm"][-1, 0] > 0
    assert not beats.set_param("decay", 0.4)
    assert beats.tracker.locked and beats.pulse.decay == 0.4
