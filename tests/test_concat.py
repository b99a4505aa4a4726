"""concat: several feature links joined into one vector for a network, each scaled by its gain."""

from fractions import Fraction

import numpy as np
import pytest

from conftest import write_tone
from cppnviz.errors import GraphError
from cppnviz.graph import build_graph
from cppnviz.node import Context
from cppnviz.nodes.concat import Concat
from cppnviz.ports import Spec
from cppnviz.runner import run
from cppnviz.timebase import Tick


def concat(*sizes, gain=1.0, labels=None):
    node = Concat("mix", {"gain": gain}, Context(fps=Fraction(30)))
    specs = [Spec("features", size=s, labels=(labels[i] if labels else ())) for i, s in enumerate(sizes)]
    node.input_specs = {"features": specs}
    return node, node.configure(node.input_specs)["features"]


def test_joins_in_order_with_one_gain_per_link():
    node, spec = concat(3, 1, gain=[1.0, 3.0])
    assert spec.size == 4
    out = node.process(Tick(0, 0.0), features=[np.array([1, 2, 3], np.float32), np.array([0.5], np.float32)])
    np.testing.assert_array_equal(out["features"], [1, 2, 3, 1.5])
    assert out["features"].dtype == np.float32


def test_labels_pass_through_when_every_link_has_them():
    _, spec = concat(2, 1, labels=[("low", "high"), ("pulse",)])
    assert spec.labels == ("low", "high", "pulse")
    _, spec = concat(2, 1, labels=[("low", "high"), ()])
    assert spec.labels == ()


def test_gain_list_must_match_the_links():
    with pytest.raises(Exception, match=r"param 'gain': expected 1 or 2 values \(one per input link\), found 3"):
        concat(2, 1, gain=[1.0, 2.0, 3.0])


def graph_data(wav, mix_inputs, gain=None):
    nodes = {
        "audio": {"type": "audio_file", "params": {"path": str(wav)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
        "beats": {"type": "beats", "inputs": {"audio": "audio.audio"}},
        "mix": {"type": "concat", "inputs": {"features": mix_inputs}},
        "cppn": {"type": "cppn", "inputs": {"features": "mix.features"}, "params": {"width": 16, "height": 16}},
    }
    if gain is not None:
        nodes["mix"]["params"] = {"gain": gain}
    return {"fps": 30, "nodes": nodes}


def test_bands_and_the_beat_pulse_feed_one_network(tmp_path):
    wav = write_tone(tmp_path / "tone.wav", seconds=1.0)
    graph = build_graph(graph_data(wav, ["bands.bands", "beats.pulse"], gain=[1.0, 3.0]), base_dir=tmp_path)
    assert graph.specs[("mix", "features")].size == 9
    scheduler = run(graph, 3)
    assert scheduler.outputs[("cppn", "frame")].shape == (16, 16, 3)


def test_a_wrong_gain_count_is_reported_with_the_node(tmp_path):
    wav = write_tone(tmp_path / "tone.wav", seconds=0.5)
    with pytest.raises(GraphError) as error:
        build_graph(graph_data(wav, ["bands.bands", "beats.pulse"], gain=[1.0, 2.0, 3.0]), base_dir=tmp_path)
    assert [str(p) for p in error.value.items] == \
        ["node 'mix' param 'gain': expected 1 or 2 values (one per input link), found 3"]
