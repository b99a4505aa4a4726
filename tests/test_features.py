"""normalizer and smoother against the seed's formulas, causality and fps independence."""

from fractions import Fraction

import numpy as np
import pytest

from cppnviz.errors import ParamError
from cppnviz.node import Context
from cppnviz.nodes.features import Normalizer, Smoother
from cppnviz.ports import Spec
from cppnviz.timebase import Tick


def make(cls, fps=60, size=4, **params):
    values = {p.name: p.default for p in cls.params}
    values.update(params)
    node = cls("n", values, Context(fps=Fraction(fps)))
    node.configure({"features": Spec("features", size=size)})
    return node


def run(node, frames, fps=60):
    if node.whole_track():
        node.fit({"features": frames})
    node.reset()
    return np.stack([node.process(Tick(k, k / fps), features=f)["features"] for k, f in enumerate(frames)])


@pytest.fixture
def amps():
    return np.random.default_rng(3).gamma(2.0, 10.0, size=(300, 4)).astype(np.float32)


def test_track_median_is_the_seed_codes_normalisation(amps):
    """The seed code: amps = 0.5*amps/median(amps, 0); amps[amps < 0.1] = 0."""
    reference = 0.5 * amps / np.median(amps, 0)
    reference[reference < 0.1] = 0
    ours = run(make(Normalizer, gain=0.5, eps=0.0, gate=0.1), amps)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


def test_per_band_gains_and_eps_follow_the_post(amps):
    gains = [1.0, 2.0, 0.5, 3.0]
    ours = run(make(Normalizer, gain=gains, eps=0.25), amps)
    np.testing.assert_allclose(ours, np.array(gains) * amps / (np.median(amps, 0) + 0.25), rtol=1e-5)


def test_gain_list_must_match_the_band_count():
    with pytest.raises(ParamError, match="expected 1 or 4 values"):
        make(Normalizer, gain=[1.0, 2.0])


@pytest.mark.parametrize("mode", ["running_median", "running_mean"])
def test_running_modes_use_no_future_samples(amps, mode):
    node = make(Normalizer, mode=mode, window=1.0)
    assert not node.whole_track()
    before = run(node, amps)
    changed = amps.copy()
    changed[200:] *= 50  # the future changes...
    after = run(node, changed)
    np.testing.assert_array_equal(before[:200], after[:200])  # ...the past does not


def test_running_median_is_the_median_of_the_trailing_window(amps):
    out = run(make(Normalizer, mode="running_median", window=0.5), amps)  # 30 frames at 60 fps
    k = 120
    np.testing.assert_allclose(out[k], amps[k] / (np.median(amps[k - 29:k + 1], 0) + 1e-6), rtol=1e-5)


def test_alpha_is_the_seeds_recursion():
    frames = np.random.default_rng(4).random((50, 4)).astype(np.float32)
    ours = run(make(Smoother, alpha=0.9), frames)
    expected = [frames[0]]
    for f in frames[1:]:
        expected.append(0.9 * expected[-1] + 0.1 * f)
    np.testing.assert_allclose(ours, np.stack(expected), rtol=1e-5)


def test_time_constant_gives_the_same_curve_at_any_fps():
    def value_after_one_second(fps):
        steps = np.zeros((fps * 2, 1), dtype=np.float32)
        steps[1:] = 1.0  # a step right after the first frame
        return run(make(Smoother, fps=fps, size=1, time_constant=0.5), steps, fps=fps)[fps, 0]
    v30, v120 = value_after_one_second(30), value_after_one_second(120)
    assert v30 == pytest.approx(1 - np.exp(-2), abs=0.02)
    assert v30 == pytest.approx(v120, abs=0.02)


def test_attack_faster_than_release():
    pulse = np.zeros((120, 1), dtype=np.float32)
    pulse[10:60] = 1.0
    out = run(make(Smoother, size=1, time_constant=0.0, attack=0.02, release=0.5), pulse)[:, 0]
    assert out[15] > 0.95  # rose within 5 frames
    assert out[65] > 0.8   # still high 5 frames after the pulse ended


def test_zero_lag_does_not_delay_a_peak():
    impulse = np.zeros((121, 1), dtype=np.float32)
    impulse[60] = 1.0
    causal = run(make(Smoother, size=1, time_constant=0.1), impulse)[:, 0]
    zero_lag = run(make(Smoother, size=1, time_constant=0.1, zero_lag=True), impulse)[:, 0]
    assert int(np.argmax(zero_lag)) == 60
    np.testing.assert_allclose(zero_lag[60 - 10], zero_lag[60 + 10], rtol=0.05)  # symmetric around the event
    assert causal[55] == 0 and zero_lag[55] > 0  # the forward-backward pass anticipates it


def test_smoothing_off_passes_values_through():
    frames = np.random.default_rng(5).random((20, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(make(Smoother, time_constant=0.0), frames), frames)


def test_silence_normalises_to_zero_and_every_sparse_hit_stands_out():
    # Clicks in digital silence: a band's median is 0, so without a floor the decaying tail of one
    # click (1e-4 of it) would come out at ~1e2..1e8 and hold the picture saturated between clicks.
    frames = np.zeros((600, 3), np.float32)
    for k in range(50, 600, 100):
        frames[k] = [5.0, 2.0, 1.0]
        frames[k + 1:k + 4] = frames[k] * np.array([[1e-2], [1e-3], [1e-4]], np.float32)
    out = run(make(Normalizer, size=3, gain=0.5), frames)
    assert np.all(np.isfinite(out)) and not out[frames.sum(1) == 0].any()        # silence is 0
    hits = out[50::100]
    tails = out[53::100]
    assert (hits > 1.0).all() and np.allclose(hits, hits[0])                    # every click alike
    assert (tails < 0.01 * hits).all()                                           # and gone after it


def test_the_floor_leaves_ordinary_music_as_the_seed_normalises_it(amps):
    np.testing.assert_array_equal(run(make(Normalizer, gain=0.5), amps), run(make(Normalizer, gain=0.5, floor=0.0), amps))


@pytest.mark.parametrize("mode", ["running_median", "running_mean"])
def test_running_modes_warm_up_with_distinct_bands(mode):
    # A steady spectrum 1:2:4:8 from the first frame: each band divided by its own one-frame median
    # would give the same value for all four; the warm-up keeps their proportions instead.
    frames = np.tile(np.array([1.0, 2.0, 4.0, 8.0], np.float32), (240, 1))
    out = run(make(Normalizer, mode=mode, window=2.0), frames)   # 120 frames of window
    np.testing.assert_allclose(out[0] / out[0][0], [1, 2, 4, 8], rtol=1e-6)
    assert all(len(np.unique(row)) == 4 for row in out[:119])
    np.testing.assert_allclose(out[150], 1.0, rtol=1e-6)           # a full window: each band's own level
