"""audio_in: pushed audio becomes the graph's clock, without drift at any block size or rate."""

from fractions import Fraction

import numpy as np
import pytest

from cppnviz.node import Context
from cppnviz.nodes.stream import AudioIn
from cppnviz.timebase import Tick


def node(sample_rate=44100, history=2.0):
    n = AudioIn("live", {"sample_rate": sample_rate, "history": history}, Context(fps=Fraction(60), live=True))
    n.configure({})
    return n


@pytest.mark.parametrize("rate,block", [(44100, 735), (48000, 735), (48000, 256), (22050, 1000), (96000, 4096)])
def test_clock_counts_every_sample_at_the_graph_rate_without_drift(rate, block):
    n = node()
    seconds = 3
    t = np.arange(rate * seconds) / rate
    signal = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for i in range(0, len(signal), block):
        n.push(signal[None, i:i + block], rate)  # (channels, samples), as a CHOP gives it
    # Upsampling keeps at most one output sample pending until the next input sample arrives.
    assert 0 <= 44100 * seconds - n.received <= (1 if rate < 44100 else 0)
    window = n.process(Tick(0, 0))["audio"]
    ideal = np.sin(2 * np.pi * 440 * np.arange(n.received) / 44100)[-len(window.samples):]
    assert np.abs(window.samples - ideal).max() < 5e-3


def test_keeps_only_the_history_and_windows_end_at_the_newest_sample():
    n = node(history=0.1)
    ramp = np.arange(20000, dtype=np.float32)
    for i in range(0, len(ramp), 512):
        n.push(ramp[i:i + 512])
    window = n.process(Tick(0, 0))["audio"]
    assert len(window.samples) == 4410 and window.samples[-1] == 19999 and not window.final
    np.testing.assert_array_equal(window.window(window.now - 1024, 1024), ramp[-1024:])


def test_stereo_blocks_are_downmixed():
    n = node()
    n.push(np.stack([np.ones(100), -np.ones(100)]).astype(np.float32))
    assert np.all(n.process(Tick(0, 0))["audio"].samples == 0)


def test_reset_restarts_the_clock():
    n = node()
    n.push(np.ones(1000, np.float32), 48000)
    n.reset()
    assert n.received == 0 and len(n.process(Tick(0, 0))["audio"].samples) == 0
