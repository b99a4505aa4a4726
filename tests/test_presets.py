"""Presets: listed by the CLI, applied over a graph with the graph's own checks, by render, features and live."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_cli
from cppnviz import cli, cli_live, presets, runner
from cppnviz.errors import GraphError
from cppnviz.graph import load_graph

ROOT = Path(__file__).resolve().parents[1]
DRIVEN = ROOT / "examples" / "driven.yaml"
SHIPPED = ("beat_punch", "calm_zoom", "colour_drift", "strobe_safe", "tiled_bloom")
SMALL = [("cppn", "width", 48), ("cppn", "height", 48)]


def test_presets_lists_the_shipped_ones_with_their_descriptions():
    result = run_cli("presets")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[:len(SHIPPED)]]
    assert listed == list(SHIPPED)
    for path in presets.shipped():
        name, description = presets.describe(path)
        assert f"{path.stem}" in result.stdout and f"{name}: {description}" in result.stdout


def test_every_shipped_preset_applies_to_the_example_and_they_look_different(tmp_path):
    """One frame per preset, half a second into the demo song at 48x48: each differs clearly from every other."""
    frames = {}
    for name in (None, *SHIPPED):
        graph = load_graph(DRIVEN, SMALL, preset=name)
        kept = {}
        runner.run(graph, 30, names=graph.upstream("cppn"),
                   on_tick=lambda k, s: kept.__setitem__("f", np.array(s.outputs[("cppn", "frame")], copy=True)))
        frames[name] = kept["f"]
    names = list(frames)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # Mean absolute difference per channel value (0..1): two different looks differ by far more
            # than a float32 rounding; 0.05 is a twentieth of the full range.
            assert np.abs(frames[a] - frames[b]).mean() > 0.05, (a, b)


def test_preset_params_and_drives_replace_the_graphs_and_null_removes_a_drive():
    graph = load_graph(DRIVEN, SMALL, preset="calm_zoom")
    driven = {(d.spec.node, d.spec.param): d for d in graph.drives}
    assert set(driven) == {("cppn", "scale")}              # feature_gain: null removed the graph's drive
    assert driven[("cppn", "scale")].spec.label == "smooth.features[1]"
    assert driven[("cppn", "scale")].mapping.curve == "exp"
    assert graph.nodes["cppn"].p.feature_gain == 0.6 and graph.nodes["smooth"].p.time_constant == 1.0


def test_preset_problems_all_at_once_one_error_line_each_and_nothing_written(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text(yaml.safe_dump({
        "name": "bad", "description": "every mistake at once",
        "nodes": {"nosuch": {"params": {"x": 1}},
                  "cppn": {"drive": {"scale": {"from": "beats.pulse", "min": 0.5, "max": 500}}}}}))
    out = tmp_path / "out.mp4"
    result = run_cli("render", DRIVEN, "--preset", preset, "--out", out, "--seconds", "0.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {DRIVEN}: preset {preset} node 'nosuch': not in the graph; its nodes: audio, bands, norm, smooth, "
        "beats, cppn, video",
    ]
    # With the unknown node gone, the drive's range is checked like the graph's own.
    preset.write_text(yaml.safe_dump({"name": "bad", "description": "a range too wide",
                                      "nodes": {"cppn": {"drive": {"scale": {"from": "beats.pulse", "min": 0.5,
                                                                             "max": 500}}}}}))
    result = run_cli("render", DRIVEN, "--preset", preset, "--out", out, "--seconds", "0.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {DRIVEN}: node 'cppn' drive 'scale': 'max': 500 lies outside the param's range; expected a number "
        "in 0.01..100",
    ]
    assert list(tmp_path.iterdir()) == [preset]


def test_a_preset_file_of_the_wrong_shape_is_one_line_per_problem(tmp_path):
    preset = tmp_path / "shape.yaml"
    preset.write_text("name: two\ndescription: [a, b]\nnodes: {cppn: {inputs: {}}}\nextra: 1\n")
    with pytest.raises(GraphError) as caught:
        load_graph(DRIVEN, preset=str(preset))
    assert caught.value.problems() == [
        f"preset {preset}: unknown key 'extra'; expected one of name, description, nodes",
        f"preset {preset}: 'description': expected one line of text, found a list of 2",
        f"preset {preset} node 'cppn': unknown key 'inputs'; expected one of params, drive",
    ]
    with pytest.raises(GraphError, match="no such file, nor a shipped preset; shipped: beat_punch, calm_zoom"):
        load_graph(DRIVEN, preset="nosuch")


def test_render_with_a_preset_writes_a_video_ffprobe_reads(tmp_path):
    out = tmp_path / "punch.mp4"
    result = run_cli("render", DRIVEN, "--preset", "beat_punch", "--out", out, "--seconds", "0.5", "--quiet",
                     "--set", "cppn.width=48", "--set", "cppn.height=48")
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                            "stream=width,height,nb_read_frames", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (48, 48, 30)


def test_features_with_a_preset_sees_its_params():
    plain = run_cli("features", DRIVEN, "--node", "smooth", "--seconds", "0.5")
    calm = run_cli("features", DRIVEN, "--node", "smooth", "--seconds", "0.5", "--preset", "calm_zoom")
    by_hand = run_cli("features", DRIVEN, "--node", "smooth", "--seconds", "0.5", "--set", "smooth.time_constant=1.0")
    assert plain.returncode == calm.returncode == by_hand.returncode == 0, (plain.stderr, calm.stderr)
    # calm zoom's smoother (time constant 1 s) is what --set gives: the same CSV, and not the graph's own.
    assert calm.stdout == by_hand.stdout != plain.stdout


def test_live_applies_the_preset_before_the_graph_is_checked():
    args = cli.build_parser().parse_args(["live", str(DRIVEN), "--preset", "strobe_safe", "--input"])
    graph = cli_live.live_graph(args)
    assert graph.ctx.live and {d.spec.param: d.mapping.rate for d in graph.drives} == {"scale": 2, "feature_gain": 1}
    assert all(d.trailing for d in graph.drives)


def test_presets_of_a_missing_or_empty_folder_is_an_error_not_an_empty_list(tmp_path):
    for folder, message in ((tmp_path / "nosuch", "not a folder"), (tmp_path, "no presets (.yaml files)")):
        result = run_cli("presets", folder)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [f"error: presets {folder}: {message}" + (
            "; expected a folder of preset .yaml files" if message == "not a folder" else " in this folder")]


def test_a_folder_given_as_a_preset_is_not_read_as_a_graph_file(tmp_path):
    with pytest.raises(GraphError) as caught:
        load_graph(DRIVEN, preset=str(tmp_path))
    assert caught.value.problems() == [f"--preset {tmp_path}: no such file, nor a shipped preset; shipped: "
                                       f"{', '.join(SHIPPED)}"]
