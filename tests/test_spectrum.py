"""stft_bands: band edges in Hz, tones land in the right band, and the seed code's numbers."""

from fractions import Fraction

import numpy as np
import pytest

from conftest import SR, tone
from cppnviz.graph import build_graph
from cppnviz.node import Context
from cppnviz.ports import AudioWindow, Spec
from cppnviz.runner import collect, total_frames
from cppnviz.timebase import Tick
from cppnviz.nodes import spectrum


def bands_node(**params):
    values = {p.name: p.default for p in spectrum.STFTBands.params}
    values.update(params)
    node = spectrum.STFTBands("bands", values, Context(fps=Fraction(60)))
    spec = node.configure({"audio": Spec("audio", sample_rate=params.pop("sample_rate", SR))})
    return node, spec["bands"]


def test_post_table_edges_follow_the_actual_sample_rate():
    assert spectrum.edge_bins(spectrum.POST_EDGES_HZ, 2048, 44100).tolist() == [1, 3, 12, 23, 93, 186, 279, 929]
    # The post's own example: F4 = sum(amp[23:93]) is the 500 Hz - 2 kHz band at 44.1 kHz.
    # At 22050 Hz every edge doubles in bins (a port that assumed 44100 would not move them).
    assert spectrum.edge_bins([500, 2000], 2048, 22050).tolist() == [46, 186]
    assert spectrum.edge_bins([500, 2000], 2048, 48000).tolist() == [21, 85]


def test_octave8_is_the_seed_codes_bins_at_44100():
    assert spectrum.edge_bins(spectrum.OCTAVE8_EDGES_HZ, 2048, 44100).tolist() == [0, 4, 12, 28, 60, 124, 252, 508, 1024]


def test_band_matrix_sums_each_bin_range_once():
    m = spectrum.band_matrix(spectrum.OCTAVE8_EDGES_HZ, 2048, 44100)
    assert m.shape == (8, 1024)
    assert m.sum(axis=0).tolist() == [1.0] * 1024  # every kept bin in exactly one band


def test_mel_filters_are_triangles_with_increasing_centres():
    m = spectrum.mel_matrix(16, 2048, 44100)
    assert m.shape == (16, 1024)
    assert np.all(m.max(axis=1) > 0.5) and np.all(m <= 1.0)
    assert np.all(np.diff(m.argmax(axis=1)) > 0)


def band_holding(freq, edges):
    return int(np.searchsorted(edges, freq, side="right") - 1)


@pytest.mark.parametrize("table", ["post", "octave8"])
@pytest.mark.parametrize("freq", [100.0, 1000.0, 8000.0])
def test_a_tone_raises_the_band_that_holds_its_frequency(table, freq):
    node, spec = bands_node(bands=table)
    signal = tone(freq, 0.5).astype(np.float32)
    values = node.process(Tick(10, 10 / 60), audio=AudioWindow(signal, SR // 4, SR))["bands"]
    edges = spectrum.POST_EDGES_HZ if table == "post" else spectrum.OCTAVE8_EDGES_HZ
    expected = band_holding(freq, edges)
    assert int(np.argmax(values)) == expected
    # 100 Hz in a low band, 1 kHz in a middle one, 8 kHz in a high one.
    position = {100.0: "low", 1000.0: "middle", 8000.0: "high"}[freq]
    n = spec.size
    assert {"low": expected <= 1, "middle": 2 <= expected <= n - 3, "high": expected >= n - 2}[position]
    # The tone's band dominates the rest clearly, not by a hair.
    others = np.delete(values, expected)
    assert values[expected] > 5 * others.max()


def test_matches_the_seed_code_on_random_audio_at_30_fps():
    """window none + octave8 + align start at 30 fps is exactly the seed's mixed.py analysis."""
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(SR).astype(np.float32)
    values = {p.name: p.default for p in spectrum.STFTBands.params}
    values.update(window="none", bands="octave8", align="start")
    node = spectrum.STFTBands("bands", values, Context(fps=Fraction(30)))
    node.configure({"audio": Spec("audio", sample_rate=SR)})
    S, G = int(SR / 30), 2048
    edges = [0, 4, 12, 28, 60, 124, 252, 508, 1024]
    for n in (0, 5, 29):
        segment = audio[n * S:n * S + G]
        segment = np.pad(segment, (0, G - len(segment)))
        amp = np.abs(np.fft.fft(segment)[0:1024])
        reference = [amp[a:b].sum() for a, b in zip(edges, edges[1:])]
        ours = node.process(Tick(n, n / 30), audio=AudioWindow(audio, n * S, SR))["bands"]
        np.testing.assert_allclose(ours, reference, rtol=1e-4)


def test_centred_window_covers_half_a_window_either_side_of_the_frame():
    node, _ = bands_node(window="none", bands="octave8")
    audio = np.zeros(SR, dtype=np.float32)
    at = 22050
    audio[at] = 1.0  # a click: flat spectrum wherever it is inside the window
    hit = lambda now: node.process(Tick(0, 0), audio=AudioWindow(audio, now, SR))["bands"].sum() > 0
    # The window for `now` is samples [now - 1024, now + 1024).
    assert hit(at + 1024) and hit(at - 1023)
    assert not hit(at + 1025) and not hit(at - 1024)


def test_live_window_never_reads_the_future():
    """A live buffer (final=False) ends at its newest sample, whatever the alignment asks for."""
    node, _ = bands_node(window="none")
    audio = np.random.default_rng(1).standard_normal(4096).astype(np.float32)
    live = AudioWindow(audio, now=4096, sample_rate=SR, final=False)
    offline = AudioWindow(audio, now=4096, sample_rate=SR, final=True)
    expected = node.process(Tick(0, 0), audio=AudioWindow(audio, now=4096 - 1024, sample_rate=SR))["bands"]
    np.testing.assert_allclose(node.process(Tick(0, 0), audio=live)["bands"], expected)
    # Offline, the same position pads the missing future with zeros instead.
    assert not np.allclose(node.process(Tick(0, 0), audio=offline)["bands"], expected)


def test_graph_labels_name_the_band_edges(tmp_path, wav):
    path = wav(tone(1000, 1.0))
    graph = build_graph({"fps": 60, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(path)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "mel", "n_mels": 24}},
    }}, base_dir=tmp_path)
    spec = graph.specs[("bands", "bands")]
    assert spec.size == 24 and len(spec.labels) == 24
    rows = list(collect(graph, "bands", ["bands"], total_frames(graph)))
    assert len(rows) == 60 and rows[30][2].shape == (24,)


def steady_tone_jitter(window: str, freq: float) -> float:
    """Mean change per frame of the seed's normalised bands (0.5 F / track median) on a steady sine."""
    from cppnviz.nodes.features import Normalizer
    from cppnviz.timebase import sample_at
    audio = tone(freq, 3.0).astype(np.float32)
    node, spec = bands_node(window=window, bands="octave8")
    fps = Fraction(60)
    bands = np.stack([node.process(Tick(k, float(k / fps)), audio=AudioWindow(audio, sample_at(k, SR, fps), SR))["bands"]
                      for k in range(20, 160)])
    values = {p.name: p.default for p in Normalizer.params}
    values.update(gain=0.5)
    norm = Normalizer("norm", values, Context(fps=fps))
    norm.configure({"features": spec})
    norm.fit({"features": bands})
    normalised = np.stack([norm.process(None, features=b)["features"] for b in bands])
    return float(np.abs(np.diff(normalised, axis=0)).mean())


@pytest.mark.parametrize("freq", [440.0, 1000.0])
def test_a_hann_window_steadies_a_steady_tone(freq):
    # The rectangular window (the seed's) leaks the tone into every band, and how much depends on
    # where the frame cuts the sine: divided by each band's small median, that flickers. The README
    # states the figures; hann about halves the flicker (0.24 -> 0.11 and 0.24 -> 0.10 per frame).
    rectangular, hann = steady_tone_jitter("none", freq), steady_tone_jitter("hann", freq)
    assert rectangular > 0.15 and hann < 0.6 * rectangular, (rectangular, hann)
