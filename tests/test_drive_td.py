"""Drives in the TouchDesigner bridge (against the strict stand-in): driven params read-only, the mapping on its own page."""

from __future__ import annotations

import yaml

from test_touchdesigner import GRAPH, blocks, bridge_of, cook, make_op, node, settle, song, td  # noqa: F401 (fixtures)


def driven_graph(path):
    data = yaml.safe_load(yaml.safe_dump(GRAPH))
    data["nodes"]["bars"]["drive"] = {"gain": {"from": "smooth.features[0]", "min": 0.1, "max": 1.0,
                                               "input_range": [0, 1]}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_driven_params_are_read_only_and_the_drive_page_steers_the_mapping(td, song):
    graph = driven_graph(song.folder / "driven.yaml")
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(graph), audio
    feed = blocks(song.samples)
    cook(td, top, audio, next(feed))
    settle(td)
    for _ in range(20):
        cook(td, top, audio, next(feed))
    drive = bridge_of(top).pipeline.session.graph.drives[0]

    assert top.par.Barsgain.readOnly and "driven by smooth.features[0]" in top.par.Barsgain.help
    assert not top.par.Smoothtimeconstant.readOnly
    page = next(p for p in top.customPages if p.name == "Drive")
    assert [p.name for p in page.pars] == ["Barsgaindrivemin", "Barsgaindrivemax", "Barsgaindriveamount"]
    assert (top.par.Barsgaindrivemin.eval(), top.par.Barsgaindrivemax.eval()) == (0.1, 1.0)
    assert (top.par.Barsgaindrivemin.min, top.par.Barsgaindrivemin.max) == (0, 10)   # the param's own range
    assert node(top, "bars").p.gain == drive.value and 0.1 <= drive.value <= 1.0

    top.par.Barsgaindrivemax = 4.0
    cook(td, top, audio, next(feed))
    assert drive.mapping.max == 4.0 and top.standin_errors == [] and top.standin_warnings == []
    top.par.Barsgaindriveamount = 0.0           # the static value from the file (the default 0.25)
    cook(td, top, audio, next(feed))
    assert node(top, "bars").p.gain == 0.25
    top.par.Barsgaindriveamount = 7.0           # past 1: clamped, and the operator says so
    cook(td, top, audio, next(feed))
    assert drive.mapping.amount == 1.0
    assert any("bars.gain/drive/amount" in w and "clamped to 1.0" in w for w in top.standin_warnings)
    top.par.Barsgaindriveamount = 1.0
    cook(td, top, audio, next(feed))

    top.par.Barsgain = 3.0                      # read-only on the page; an expression could still try
    cook(td, top, audio, next(feed))
    assert any("bars.gain is driven by smooth.features[0]" in w for w in top.standin_warnings)
    assert node(top, "bars").p.gain == drive.value

    top.par.Bandsbands = "post"                 # the graph is built again: the steering stays
    cook(td, top, audio, next(feed))
    rebuilt = bridge_of(top).pipeline.session.graph.drives[0]
    assert rebuilt is not drive and rebuilt.mapping.max == 4.0 and top.standin_errors == []


def test_the_preset_menu_applies_a_shipped_preset_over_the_graph(td, song):
    data = yaml.safe_load(yaml.safe_dump(GRAPH))
    # strobe_safe sets smooth's time constant and drives from beats.pulse: a graph with those nodes takes it.
    data["nodes"]["beats"] = {"type": "beats", "inputs": {"audio": "audio.audio"}}
    data["nodes"]["bars"]["drive"] = {}
    data["nodes"]["cppn"] = {"type": "cppn", "inputs": {"features": "smooth.features"},
                             "params": {"width": 16, "height": 16, "backend": "numpy"}}
    graph = song.folder / "presettable.yaml"
    graph.write_text(yaml.safe_dump(data, sort_keys=False))
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(graph), audio
    feed = blocks(song.samples)
    assert top.par.Preset.menuNames == ["none", "beat_punch", "calm_zoom", "colour_drift", "strobe_safe", "tiled_bloom"]
    cook(td, top, audio, next(feed))
    settle(td)
    assert bridge_of(top).pipeline.session.graph.drives == [] and node(top, "smooth").p.time_constant == 0.2

    top.par.Preset = "strobe_safe"
    cook(td, top, audio, next(feed))
    settle(td)
    cook(td, top, audio, next(feed))
    session = bridge_of(top).pipeline.session
    assert {(d.spec.node, d.spec.param): d.mapping.rate for d in session.graph.drives} == {
        ("cppn", "scale"): 2, ("cppn", "feature_gain"): 1}
    assert node(top, "smooth").p.time_constant == 0.8 and top.standin_errors == []
    assert top.par.Cppnscale.readOnly and top.par.Cppnscaledrivemax.eval() == 1.3
    top.par.Preset = "none"
    cook(td, top, audio, next(feed))
    assert bridge_of(top).pipeline.session.graph.drives == [] and node(top, "smooth").p.time_constant == 0.2
