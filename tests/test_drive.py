"""Drives: the mapping maths, a driven param following its feature frame by frame, load-time errors, live == offline."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SR, run_cli, tone
from cppnviz import live, registry, runner
from cppnviz.drive import Drive, DriveSpec, Mapping
from cppnviz.errors import GraphError
from cppnviz.graph import build_graph, load_graph
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Output, Spec
from cppnviz.timebase import tick

FPS = 60
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.wav"
EPS64 = np.finfo(np.float64).eps


class Ramp(Node):
    """A synthetic feature: value k / (n - 1) at tick k (a test source with an exact, known value)."""

    type_name = "test_ramp"
    stage = "analysis"
    outputs = (Output("value", "features", "k / (n - 1)"), Output("pair", "features", "two values"))
    params = (Param("n", "int", 100, "ticks of the ramp", min=2, max=10**6),)

    def configure(self, inputs):
        return {"value": Spec("features", size=1), "pair": Spec("features", size=2)}

    def process(self, tick, **inputs):
        v = tick.index / (self.p.n - 1)
        return {"value": np.array([v], np.float32), "pair": np.array([v, 1 - v], np.float32)}


@pytest.fixture
def ramp_type(monkeypatch):
    monkeypatch.setitem(registry.all_types(), "test_ramp", Ramp)


def drive(mapping: Mapping, decl: Param | None = None, static=1.0, fps=FPS, trailing=False) -> Drive:
    decl = decl or Param("x", "float", 1.0, "a float", min=-100, max=100)
    return Drive(DriveSpec("n", decl.name, "src", "out", None, mapping), decl, static, Fraction(fps), trailing)


# -- the mapping maths -------------------------------------------------------------------------

def test_piecewise_linear_through_avg_and_straight_without_it():
    m = Mapping(min=0.5, max=2.0, avg=1.0)
    assert [m.shape(u) for u in (0, 0.25, 0.5, 0.75, 1)] == [0.5, 0.75, 1.0, 1.5, 2.0]
    straight = Mapping(min=1.0, max=3.0)
    assert [straight.shape(u) for u in (0, 0.5, 1)] == [1.0, 2.0, 3.0]
    inverted = Mapping(min=2.0, max=0.0, avg=0.5)        # min above max: the value falls as the input rises
    assert [inverted.shape(u) for u in (0, 0.5, 1)] == [2.0, 0.5, 0.0]


def test_exp_curve_is_linear_in_the_logarithm():
    m = Mapping(min=0.01, max=1.0, curve="exp")
    # Halfway is the geometric mean; each quarter multiplies by the same ratio.
    values = [m.shape(u) for u in (0, 0.25, 0.5, 0.75, 1)]
    ratios = np.array(values[1:]) / np.array(values[:-1])
    np.testing.assert_allclose(values[2], 0.1, rtol=8 * EPS64)
    np.testing.assert_allclose(ratios, math.sqrt(10), rtol=16 * EPS64)
    through = Mapping(min=0.01, max=1.0, avg=0.5, curve="exp")
    np.testing.assert_allclose(through.shape(0.5), 0.5, rtol=8 * EPS64)


def test_step_quantises_from_min_and_types_round_to_their_values():
    m = Mapping(min=0.5, max=2.0, step=0.25)
    assert [m.quantise(v) for v in (0.5, 0.6, 0.63, 1.874, 1.875, 2.0)] == [0.5, 0.5, 0.75, 1.75, 2.0, 2.0]
    ints = drive(Mapping(min=1, max=4, input_range=(0, 1)), Param("i", "int", 1, "", min=1, max=8), static=1)
    assert [ints.update(k, u) for k, u in enumerate((0, 0.1, 0.5, 1.0))] == [1, 1, 3, 4]   # 2.5 rounds up
    choice = Param("c", "choice", "tanh", "", choices=("tanh", "sin", "gaussian", "clip"))
    d = drive(Mapping(min=0, max=3, input_range=(0, 1)), choice, static="tanh")
    assert [d.update(k, u) for k, u in enumerate((0, 0.3, 0.6, 1))] == ["tanh", "sin", "gaussian", "clip"]


def test_amount_blends_from_the_static_value_to_the_driven_one():
    d = drive(Mapping(min=0.0, max=10.0, input_range=(0, 1), amount=0.25), static=2.0)
    assert d.update(0, 1.0) == 2.0 + 0.25 * (10.0 - 2.0)
    d.steer("amount", 0.0)
    assert d.update(1, 1.0) == 2.0


@pytest.mark.parametrize("rate", [2.0, 5.0, 0.5])
def test_rate_cap_no_more_changes_than_rate_in_any_window_measured(rate):
    """A feature that jumps every frame: the value changes at most `rate` times in any 1 s (rate < 1: 1 per 1/rate s)."""
    d = drive(Mapping(min=0.0, max=1.0, input_range=(0, 1), rate=rate), trailing=True)
    rng = np.random.default_rng(1)
    seconds = 20
    values = [d.update(k, x) for k, x in enumerate(rng.uniform(0, 1, seconds * FPS))]
    changes = np.array([k for k in range(1, len(values)) if values[k] != values[k - 1]]) / FPS
    count, window = (math.floor(rate), 1.0) if rate >= 1 else (1, 1 / rate)
    # Every window [t, t + window) starting at a change holds the most changes any window of that length can.
    most = max(np.searchsorted(changes, t + window - 1e-9, side="left") - i for i, t in enumerate(changes))
    assert most <= count
    # And the cap is reached, not just respected: about `rate` changes a second over the run.
    assert len(changes) >= 0.9 * rate * (seconds - window)


def test_blur_centred_offline_and_trailing_live_against_their_definitions():
    xs = np.random.default_rng(2).uniform(0, 1, 200)
    n = 9                                    # 0.15 s at 60 fps
    m = Mapping(min=0.0, max=1.0, blur=n / FPS, input_range=(0.0, 1.0))
    offline = drive(m)
    assert offline.needs_prepass
    offline.prepare(xs)
    got = np.array([offline.update(k, x) for k, x in enumerate(xs)])
    centred = np.array([xs[max(0, k - n // 2):k - n // 2 + n].mean() for k in range(len(xs))])
    np.testing.assert_allclose(got, centred, rtol=0, atol=n * 4 * EPS64)
    trailing = drive(m, trailing=True)
    assert not trailing.needs_prepass
    got = np.array([trailing.update(k, x) for k, x in enumerate(xs)])
    past = np.array([xs[max(0, k - n + 1):k + 1].mean() for k in range(len(xs))])
    # A running sum over 200 values: its rounding grows with the count of additions.
    np.testing.assert_allclose(got, past, rtol=0, atol=len(xs) * 4 * EPS64)
    assert not np.allclose(centred, past)


def test_a_tick_is_taken_once_however_many_times_it_is_fed():
    d = drive(Mapping(min=0.0, max=1.0, blur=3 / FPS, input_range=(0, 1)), trailing=True)
    assert [d.update(0, 0.9), d.update(0, 0.0), d.update(1, 0.0)] == [0.9, 0.9, 0.45]


def test_input_range_auto_is_the_runs_min_max_offline_running_live_explicit_as_given():
    xs = np.array([2.0, 4.0, 3.0, 6.0, 2.0])
    auto = drive(Mapping(min=0.0, max=1.0))
    auto.prepare(xs)
    assert [auto.update(k, x) for k, x in enumerate(xs)] == [0.0, 0.5, 0.25, 1.0, 0.0]
    running = drive(Mapping(min=0.0, max=1.0), trailing=True)
    # Running min..max so far: the first value has no span (0), 4 is then the top, 3 halfway, 6 the top.
    assert [running.update(k, x) for k, x in enumerate(xs)] == [0.0, 1.0, 0.5, 1.0, 0.0]
    explicit = drive(Mapping(min=0.0, max=1.0, input_range=(2.0, 10.0)))
    assert not explicit.needs_prepass
    assert [explicit.update(k, x) for k, x in enumerate(xs)] == [0.0, 0.25, 0.125, 0.5, 0.0]


# -- in a graph -----------------------------------------------------------------------------------

def ramp_graph(drive_fields: dict, *, n=40, extra_nodes=None, params=None, live_run=False, tmp=None):
    nodes = {
        "ramp": {"type": "test_ramp", "params": {"n": n}},
        "cppn": {"type": "cppn", "params": {"width": 32, "height": 24, **(params or {})},
                 "drive": {"scale": {"from": "ramp.value", **drive_fields}}},
        **(extra_nodes or {}),
    }
    return build_graph({"fps": FPS, "nodes": nodes}, base_dir=tmp, live=live_run)


def test_a_driven_scale_follows_a_feature_ramp_frame_by_frame(ramp_type, tmp_path):
    n = 40
    graph = ramp_graph({"min": 1.0, "max": 1.6, "input_range": [0, 1]}, n=n, tmp=tmp_path)
    cppn = graph.nodes["cppn"]
    seen = []

    def record(k, scheduler):
        seen.append((cppn.p.scale, np.array(scheduler.outputs[("cppn", "frame")], copy=True)))
    runner.run(graph, n, on_tick=record)
    ramp = np.arange(n, dtype=np.float32) / np.float32(n - 1)        # the values the ramp node sends (float32)
    expected = 1.0 + 0.6 * ramp.astype(np.float64)
    np.testing.assert_allclose([s for s, _ in seen], expected, rtol=4 * EPS64)
    # Each frame is the picture at that scale: the same network built at the expected scale renders it exactly.
    reference = load_graph_with({"width": 32, "height": 24}, tmp_path)
    for k in (0, n // 3, n - 1):
        reference.set_param("scale", float(expected[k]))
        want = reference.process(tick(k, graph.ctx.fps))["frame"]
        np.testing.assert_array_equal(seen[k][1], want)
    assert not np.array_equal(seen[0][1], seen[-1][1])


def load_graph_with(params: dict, tmp_path) -> Node:
    graph = build_graph({"fps": FPS, "nodes": {"cppn": {"type": "cppn", "params": params}}}, base_dir=tmp_path)
    return graph.nodes["cppn"]


def test_drive_links_are_edges_upstream_and_order(ramp_type, tmp_path):
    graph = ramp_graph({"min": 1.0, "max": 2.0}, tmp=tmp_path)
    assert graph.upstream("cppn") == ["ramp", "cppn"]
    assert list(graph.nodes).index("ramp") < list(graph.nodes).index("cppn")


def test_every_load_time_problem_at_once_one_line_each(ramp_type, tmp_path):
    graph = {
        "fps": FPS,
        "nodes": {
            "ramp": {"type": "test_ramp"},
            "smooth": {"type": "smoother", "inputs": {"features": "ramp.pair"},
                       "drive": {"time_constant": {"from": "norm.features[0]", "min": 0.1, "max": 1.0}}},
            "norm": {"type": "normalizer", "inputs": {"features": "smooth.features"}, "params": {"mode": "running_median"}},
            "cppn": {"type": "cppn", "inputs": {"features": "smooth.features"},
                     "drive": {"scale": {"from": "nosuch.value", "min": 1, "max": 2},
                               "feature_gain": {"from": "ramp.nosuch", "min": 0, "max": 2},
                               "period": {"from": "ramp.value", "min": 1, "max": 5000},
                               "width": {"from": "ramp.value", "min": 64, "max": 128}}},
        },
    }
    with pytest.raises(GraphError) as caught:
        build_graph(graph, base_dir=tmp_path)
    lines = caught.value.problems()
    expected = [
        "node 'cppn' drive 'scale': 'from': unknown node 'nosuch'",
        "node 'cppn' drive 'feature_gain': 'from': unknown port 'nosuch' on node 'ramp'",
        "node 'cppn' drive 'period': 'max': 5000 lies outside the param's range",
        "node 'cppn' drive 'width': cannot be driven: a change reshapes the node's output",
        "cycle: smooth -> norm -> smooth",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(expected), lines


def test_a_source_index_is_checked_against_the_outputs_size_with_the_other_drive_problems(ramp_type, tmp_path):
    nodes = {"ramp": {"type": "test_ramp"},
             "cppn": {"type": "cppn", "drive": {"scale": {"from": "ramp.pair[2]", "min": 1, "max": 2},
                                                "feature_gain": {"from": "ramp.pair", "min": 0, "max": 2},
                                                "seed": {"from": "ramp.value", "min": 0, "max": 1, "curve": "cubic"}}}}
    with pytest.raises(GraphError) as caught:
        build_graph({"fps": FPS, "nodes": nodes}, base_dir=tmp_path)
    assert caught.value.problems() == [
        "node 'cppn' drive 'seed': 'curve': expected one of linear, exp, found the text 'cubic'",
        "node 'cppn' drive 'scale': 'from': index 2 out of range; 'ramp.pair' holds 2 values (0..1)",
        "node 'cppn' drive 'feature_gain': 'from': 'ramp.pair' holds 2 values; pick one with 'ramp.pair[i]', "
        "i in 0..1",
    ]


def test_the_cli_prints_one_error_line_per_drive_problem_and_exits_2(tmp_path):
    graph = tmp_path / "bad.yaml"
    graph.write_text(yaml.safe_dump({"fps": 30, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(DEMO)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"},
                  "drive": {"n_mels": {"from": "bands.bands[0]", "min": 4, "max": 8}}},
        "cppn": {"type": "cppn", "drive": {"scale": {"from": "bands.bands[0]", "min": 0.001, "max": 2}}}}}))
    result = run_cli("check", graph)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {graph}: node 'bands' drive 'n_mels': cannot be driven: a change reshapes the node's output "
        "(sizes, counts); set it under 'params' instead",
        f"error: {graph}: node 'cppn' drive 'scale': 'min': 0.001 lies outside the param's range; expected a "
        "number in 0.01..100",
    ]


# -- live == offline (trailing variants) -------------------------------------------------------------

class Recorder:
    """A feature sender that records the driven params' values on every frame shown (and stalls now and then)."""

    def __init__(self, graph, stall_every=15, stall_s=0.05):
        self.graph, self.stall_every, self.stall_s = graph, stall_every, stall_s
        self.values: dict[int, tuple] = {}

    def send(self, tick, outputs):
        p = self.graph.nodes["cppn"].p
        self.values[tick.index] = (p.scale, p.feature_gain, p.activation)
        if tick.index % self.stall_every == self.stall_every - 1:
            time.sleep(self.stall_s)


def song_graph(folder, *, trailing: bool):
    fields = {"trailing": True} if trailing else {}
    nodes = {
        "audio": {"type": "audio_file", "params": {"path": "song.wav"}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"},
                  "params": {"n_fft": 2048, "align": "end", "bands": "octave8"}},
        "cppn": {"type": "cppn", "params": {"width": 16, "height": 16, "backend": "numpy"},
                 "drive": {"scale": {"from": "bands.bands[1]", "min": 0.5, "max": 3.0, "blur": 0.2, **fields},
                           "feature_gain": {"from": "bands.bands[4]", "min": 0.0, "max": 2.0, "avg": 0.5,
                                            "step": 0.25, "rate": 3, **fields},
                           "activation": {"from": "bands.bands[6]", "min": "tanh", "max": "clip", "rate": 2,
                                          **fields}}},
    }
    path = folder / ("trailing.yaml" if trailing else "live.yaml")
    path.write_text(yaml.safe_dump({"fps": FPS, "nodes": nodes}), encoding="utf-8")
    return path


def test_live_driven_values_equal_offline_with_the_trailing_variants(tmp_path, wav):
    rng = np.random.default_rng(5)
    seconds = 2.0
    n = round(seconds * SR)
    bursts = (np.sin(2 * np.pi * 2.5 * np.arange(n) / SR) > 0).astype(np.float64)
    wav(0.3 * (tone(180, seconds) + tone(2500, seconds)) + 0.2 * bursts * rng.standard_normal(n), "song.wav")
    offline_graph = load_graph(song_graph(tmp_path, trailing=True))
    frames = round(seconds * FPS)
    offline = {}
    p = offline_graph.nodes["cppn"].p
    runner.run(offline_graph, frames, on_tick=lambda k, s: offline.__setitem__(k, (p.scale, p.feature_gain, p.activation)))

    graph = load_graph(song_graph(tmp_path, trailing=False), live=True)   # live: trailing by itself
    assert all(d.trailing for d in graph.drives)
    clock = live.AudioClock(SR, backend="null", play=live.audio_source(graph).program)
    recorder = Recorder(graph)
    stats = live.LiveRun(graph, clock, sender=recorder, seconds=seconds).run()
    assert stats.dropped > 0                 # frames were skipped: their ticks still fed the drives
    assert len(recorder.values) == stats.frames
    for k, values in recorder.values.items():
        assert values == offline[k], k
    # The drives moved: a test that could not fail otherwise.
    assert len({v[0] for v in offline.values()}) > 10 and len({v[2] for v in offline.values()}) > 1


# -- live control: OSC refuses a driven param and steers its mapping, over real sockets ---------------

def osc_graph(tmp_path):
    nodes = {
        "audio": {"type": "audio_in"},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}},
        "cppn": {"type": "cppn", "params": {"width": 16, "height": 16, "scale": 1.5},
                 "drive": {"scale": {"from": "bands.bands[0]", "min": 1.0, "max": 2.0, "input_range": [0, 1]}}},
    }
    return build_graph({"fps": FPS, "nodes": nodes}, base_dir=tmp_path, live=True)


def test_osc_refuses_a_driven_param_naming_the_drive_and_steers_the_mapping(tmp_path, caplog):
    import json
    import logging
    import shutil
    import socket
    import subprocess
    import urllib.request

    from pythonosc.osc_message import OscMessage
    from pythonosc.osc_message_builder import OscMessageBuilder

    from cppnviz.host_bridge.osc.control import ParamControl
    from cppnviz.host_bridge.osc.oscquery import OscQueryServer
    from cppnviz.host_bridge.osc.server import OscServer

    graph = osc_graph(tmp_path)
    drive = graph.drives[0]
    control = ParamControl(graph)
    caplog.set_level(logging.WARNING)
    with OscServer(control, port=0) as server, OscQueryServer(control, "127.0.0.1", 0, 0, "test") as query, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(5.0)

        def send(address, *args):
            builder = OscMessageBuilder(address)
            for arg in args:
                builder.add_arg(arg)
            before = control.stats["received"]
            client.sendto(builder.build().dgram, ("127.0.0.1", server.port))
            deadline = time.monotonic() + 5
            while control.stats["received"] <= before:
                assert time.monotonic() < deadline, "the server never took the message"
                time.sleep(0.005)

        send("/cppn/scale", 3.0)
        send("/cppn/scale/norm", 0.9)
        control.apply_pending()
        assert graph.nodes["cppn"].p.scale == 1.5 and control.stats["rejected"] == 2
        refused = [r.getMessage() for r in caplog.records if "driven by bands.bands[0]" in r.getMessage()]
        # One line a message, naming the drive and where to steer it.
        assert len(refused) == 2 and refused[0].startswith("OSC /cppn/scale 3.0 rejected")
        assert refused[1].startswith("OSC /cppn/scale/norm ")
        assert all("/cppn/scale/drive/min, /max or /amount" in line for line in refused)

        # liblo's oscsend (a peer we did not write) steers the mapping; apply_pending makes it count from this tick.
        if shutil.which("oscsend"):
            before = control.stats["received"]
            subprocess.run(["oscsend", "127.0.0.1", str(server.port), "/cppn/scale/drive/max", "f", "4.0"], check=True)
            deadline = time.monotonic() + 5
            while control.stats["received"] <= before:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        else:
            send("/cppn/scale/drive/max", 4.0)
        send("/cppn/scale/drive/min", 0.5)
        send("/cppn/scale/drive/amount", -0.5)           # below 0: clamped and counted, as any controller value
        assert control.apply_pending() == 3 and control.stats["clamped"] == 1
        assert (drive.mapping.min, drive.mapping.max, drive.mapping.amount) == (0.5, 4.0, 0.0)
        assert drive.update(0, 1.0) == 1.5                           # amount 0: the static value
        send("/cppn/scale/drive/amount", 0.5)
        control.apply_pending()
        assert drive.update(1, 1.0) == 1.5 + 0.5 * (4.0 - 1.5)   # halfway from the static value to the driven one
        send("/cppn/scale/drive/max")                                # a query answers the field's value
        answer = OscMessage(client.recvfrom(65536)[0])
        assert answer.address == "/cppn/scale/drive/max" and answer.params == [4.0]

        # OSCQuery lists the driven param read-only with its mapping fields.
        with urllib.request.urlopen(f"http://127.0.0.1:{query.port}/cppn/scale", timeout=5) as page:
            entry = json.load(page)
        assert entry["ACCESS"] == 1 and "driven by bands.bands[0]" in entry["DESCRIPTION"]
        fields = entry["CONTENTS"]["drive"]["CONTENTS"]
        assert {k: v["VALUE"] for k, v in fields.items()} == {"min": [0.5], "max": [4.0], "amount": [0.5]}
        assert fields["min"]["RANGE"] == [{"MIN": 0.01, "MAX": 100}] and fields["amount"]["ACCESS"] == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{query.port}/cppn/scale/drive/amount", timeout=5) as page:
            assert json.load(page)["FULL_PATH"] == "/cppn/scale/drive/amount"


def test_an_unquoted_index_inside_braces_is_a_yaml_error_that_says_to_quote_it(tmp_path):
    graph = tmp_path / "braces.yaml"
    graph.write_text("fps: 30\nnodes:\n  cppn:\n    type: cppn\n"
                     "    drive: {scale: {from: smooth.features[0], min: 1, max: 2}}\n")
    result = run_cli("check", graph)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {graph}:5: not valid YAML: expected ',' or '}}', but got '['; inside {{ }} a drive's source "
        'with an index needs quotes: from: "node.port[i]"']
