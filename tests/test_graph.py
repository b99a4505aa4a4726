"""Graph loading: every problem reported at once, each naming node, param/port, found and expected."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from cppnviz.errors import GraphError, ParamError
from cppnviz.graph import build_graph, load_graph, parse_assignment, read_graph_file
from cppnviz.params import REQUIRED, Param
from conftest import write_tone

SR = 44100


# -- helpers ------------------------------------------------------------------------


@pytest.fixture
def tone(tmp_path) -> Path:
    return write_tone(tmp_path / "tone.wav")


def chain(audio_path="tone.wav") -> dict:
    """A good graph: audio -> bands -> norm -> smooth, as plain data."""
    return {
        "fps": 30,
        "nodes": {
            "audio": {"type": "audio_file", "params": {"path": str(audio_path)}},
            "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}},
            "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"}},
            "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}},
        },
    }


def problems(data, base_dir: Path, overrides=()) -> list[str]:
    """The problem lines build_graph reports for `data` (it must fail)."""
    with pytest.raises(GraphError) as info:
        build_graph(data, base_dir=base_dir, overrides=overrides)
    return info.value.problems()


def only_problem(data, base_dir: Path, overrides=()) -> str:
    found = problems(data, base_dir, overrides)
    assert len(found) == 1, found
    return found[0]


def assert_mentions(line: str, *parts: str) -> None:
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"


# -- a good graph ---------------------------------------------------------------------

def test_good_graph_builds_in_topological_order(tmp_path, tone):
    data = chain()
    # Declared out of order: the links decide the order, not the file.
    data["nodes"] = dict(reversed(list(data["nodes"].items())))
    graph = build_graph(data, base_dir=tmp_path)
    assert list(graph.nodes) == ["audio", "bands", "norm", "smooth"]
    assert graph.specs[("bands", "bands")].kind == "features"
    assert graph.specs[("smooth", "features")].size == graph.specs[("bands", "bands")].size


def test_link_without_port_takes_the_first_output(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["inputs"] = {"audio": "audio"}
    graph = build_graph(data, base_dir=tmp_path)
    assert str(graph.links["bands"]["audio"]) == "audio.audio"


# -- every problem at once --------------------------------------------------------------

def test_several_mistakes_give_one_line_each(tmp_path, tone):
    data = chain()
    data["colour"] = "red"
    nodes = data["nodes"]
    nodes["audio"]["params"]["sample_rate"] = True
    nodes["bands"]["params"] = {"n_fft": "big", "windw": "hann"}
    nodes["norm"]["params"] = {"window": 1000}
    nodes["smooth"]["inputs"] = {"feats": "norm.features"}
    nodes["blend"] = {"type": "blender"}
    found = problems(data, tmp_path)
    # Seven mistakes; the misspelled input is also reported as the required input it leaves unconnected.
    assert len(found) == 8, found
    text = "\n".join(found)
    for parts in [
        ("'colour'", "unknown top-level key", "fps", "nodes"),
        ("node 'audio' param 'sample_rate'", "found true", "expected an integer in 8000..192000"),
        ("node 'bands' param 'n_fft'", "found the text 'big'", "expected an integer"),
        ("node 'bands' param 'windw'", "unknown param for stft_bands", "n_fft"),
        ("node 'norm' param 'window'", "found 1000", "expected a number in 0.05..600"),
        ("node 'smooth' input 'feats'", "unknown input port", "expected features"),
        ("node 'smooth' input 'features'", "required input not connected"),
        ("node 'blend'", "unknown node type 'blender'", "audio_file"),
    ]:
        assert any(all(p in line for p in parts) for line in found), f"{parts} not in:\n{text}"


def test_a_link_to_a_broken_node_is_not_reported_again(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["type"] = "stft_bandz"
    line = only_problem(data, tmp_path)
    assert_mentions(line, "node 'bands'", "unknown node type 'stft_bandz'", "stft_bands")


@pytest.mark.parametrize("bad_name", ["audio.src", "Audio", "audio src"])
def test_a_bad_node_name_is_one_line_even_when_linked(tmp_path, tone, bad_name):
    data = chain()
    data["nodes"][bad_name] = data["nodes"].pop("audio")
    data["nodes"]["bands"]["inputs"]["audio"] = f"{bad_name}.audio"
    assert_mentions(only_problem(data, tmp_path), f"node '{bad_name}'", "bad node name")


@pytest.mark.parametrize("text,found", [
    ("", "found nothing"),
    ("just words\n", "found the text 'just words'"),
    ("[1, 2, 3]\n", "found a list of 3"),
])
def test_a_graph_file_that_is_not_a_mapping_says_what_it_holds(tmp_path, text, found):
    path = tmp_path / "g.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GraphError) as info:
        load_graph(path)
    assert_mentions(str(info.value), "expected a mapping", found)
    assert "NoneType" not in str(info.value) and "found str" not in str(info.value)


def test_found_values_are_described_in_the_users_words(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"n_fft": [1, 2, 3], "window": None}
    data["nodes"]["smooth"]["params"] = {"alpha": {"a": 1}}
    lines = problems(data, tmp_path)
    assert any("param 'n_fft'" in line and "found a list of 3" in line for line in lines), lines
    assert any("param 'window'" in line and "found nothing" in line for line in lines), lines
    assert any("param 'alpha'" in line and "found a mapping of 1 key" in line for line in lines), lines


# -- each kind on its own -------------------------------------------------------------

def test_unknown_node_type(tmp_path, tone):
    data = chain()
    data["nodes"]["fx"] = {"type": "glitter"}
    assert_mentions(only_problem(data, tmp_path), "node 'fx'", "unknown node type 'glitter'",
                    "expected one of", "smoother")


def test_missing_node_type(tmp_path, tone):
    data = chain()
    data["nodes"]["fx"] = {"params": {}}
    assert_mentions(only_problem(data, tmp_path), "node 'fx'", "'type': expected one of", "found nothing")


def test_unknown_param(tmp_path, tone):
    data = chain()
    data["nodes"]["smooth"]["params"] = {"alhpa": 0.5}
    assert_mentions(only_problem(data, tmp_path), "node 'smooth' param 'alhpa'", "unknown param for smoother",
                    "alpha")


def test_missing_required_param(tmp_path):
    data = chain()
    del data["nodes"]["audio"]["params"]
    assert_mentions(only_problem(data, tmp_path), "node 'audio' param 'path'", "missing", "expected a file path")


def test_wrong_type(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"n_fft": "big"}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' param 'n_fft'", "found the text 'big'",
                    "expected an integer in 16..65536")


def test_bool_is_not_an_integer(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"n_fft": True}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' param 'n_fft'", "found true", "expected an integer")


def test_a_string_is_not_a_float(tmp_path, tone):
    data = chain()
    data["nodes"]["smooth"]["params"] = {"time_constant": "1.5"}
    assert_mentions(only_problem(data, tmp_path), "node 'smooth' param 'time_constant'", "found the text '1.5'",
                    "expected a number in 0..60")


def test_out_of_range(tmp_path, tone):
    data = chain()
    data["nodes"]["smooth"]["params"] = {"alpha": 1.5}
    assert_mentions(only_problem(data, tmp_path), "node 'smooth' param 'alpha'", "found 1.5",
                    "expected a number in 0..0.9999")


def test_choice_not_in_choices(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"window": "hamming"}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' param 'window'", "found the text 'hamming'",
                    "expected one of none, hann")


def test_floats_item_out_of_range_names_the_item(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"bands": "custom", "edges": [20, 200, 100000]}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' param 'edges'", "found 100000",
                    "in 0..96000")


def test_a_problem_found_by_configure_is_worded_like_the_others(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = {"n_fft": 2049}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' param 'n_fft'", "found 2049", "even")


def test_unknown_input_port(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["inputs"] = {"audio": "audio.audio", "sidechain": "audio.audio"}
    assert_mentions(only_problem(data, tmp_path), "node 'bands' input 'sidechain'", "unknown input port",
                    "expected audio")


def test_unknown_output_port_in_a_link(tmp_path, tone):
    data = chain()
    data["nodes"]["norm"]["inputs"] = {"features": "bands.energy"}
    assert_mentions(only_problem(data, tmp_path), "node 'norm' input 'features'", "unknown port 'energy'",
                    "on node 'bands'", "expected one of bands")


def test_link_to_an_unknown_node(tmp_path, tone):
    data = chain()
    data["nodes"]["norm"]["inputs"] = {"features": "bandz.bands"}
    assert_mentions(only_problem(data, tmp_path), "node 'norm' input 'features'", "unknown node 'bandz'",
                    "'bandz.bands'")


def test_required_input_not_connected(tmp_path, tone):
    data = chain()
    del data["nodes"]["norm"]["inputs"]
    assert_mentions(only_problem(data, tmp_path), "node 'norm' input 'features'", "required input not connected",
                    "features")


def test_incompatible_ports(tmp_path, tone):
    data = chain()
    data["nodes"]["norm"]["inputs"] = {"features": "audio.audio"}
    assert_mentions(only_problem(data, tmp_path), "node 'norm' input 'features'", "incompatible ports",
                    "'audio.audio' gives audio", "expects features")


def test_a_list_into_a_single_input(tmp_path, tone):
    data = chain()
    data["nodes"]["norm"]["inputs"] = {"features": ["bands.bands", "bands.bands"]}
    assert_mentions(only_problem(data, tmp_path), "node 'norm' input 'features'", "takes one link",
                    "a list of 2")


def test_unknown_node_key(tmp_path, tone):
    data = chain()
    data["nodes"]["smooth"]["param"] = {"alpha": 0.5}
    assert_mentions(only_problem(data, tmp_path), "node 'smooth'", "unknown key 'param'", "type, params, inputs")


def test_unknown_top_level_key(tmp_path, tone):
    data = chain()
    data["frame_rate"] = 30
    assert_mentions(only_problem(data, tmp_path), "'frame_rate'", "unknown top-level key",
                    "expected one of fps, offset_ms", "nodes")


@pytest.mark.parametrize("fps", [0, -30, "30", True, 5000])
def test_fps_must_be_a_number_in_range(tmp_path, tone, fps):
    data = chain()
    data["fps"] = fps
    assert_mentions(only_problem(data, tmp_path), "'fps'", "expected a number in 1..1000")


@pytest.mark.parametrize("nodes", [None, {}, ["audio"]])
def test_nodes_must_be_a_mapping(tmp_path, nodes):
    assert_mentions(only_problem({"fps": 30, "nodes": nodes}, tmp_path), "'nodes'", "expected a mapping")


def test_graph_must_be_a_mapping(tmp_path):
    assert_mentions(only_problem(["nodes"], tmp_path), "expected a mapping")


# -- cycles -----------------------------------------------------------------------------

def test_cycle_is_printed_as_its_path(tmp_path):
    data = {"fps": 30, "nodes": {
        "a": {"type": "smoother", "inputs": {"features": "b.features"}},
        "b": {"type": "normalizer", "inputs": {"features": "a.features"}},
    }}
    assert_mentions(only_problem(data, tmp_path), "cycle: a -> b -> a")


def test_three_node_cycle_reported_once(tmp_path):
    data = {"fps": 30, "nodes": {
        "a": {"type": "smoother", "inputs": {"features": "c.features"}},
        "b": {"type": "smoother", "inputs": {"features": "a.features"}},
        "c": {"type": "smoother", "inputs": {"features": "b.features"}},
    }}
    assert_mentions(only_problem(data, tmp_path), "cycle: a -> c -> b -> a")


def test_self_loop_is_a_cycle(tmp_path):
    data = {"fps": 30, "nodes": {"a": {"type": "smoother", "inputs": {"features": "a.features"}}}}
    assert_mentions(only_problem(data, tmp_path), "cycle: a -> a")


# -- node names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Bands", "1bands", "my-bands", "_bands", "my bands", "bänds", 7])
def test_bad_node_names_are_rejected(tmp_path, name):
    data = {"fps": 30, "nodes": {name: {"type": "smoother"}}}
    assert_mentions(only_problem(data, tmp_path), f"node '{name}'", "bad node name",
                    "lowercase letters, digits and _")


def test_good_node_name_with_digits_and_underscores(tmp_path, tone):
    data = chain()
    data["nodes"]["bands_2"] = {"type": "stft_bands", "inputs": {"audio": "audio.audio"}}
    assert "bands_2" in build_graph(data, base_dir=tmp_path).nodes


# -- --set overrides go through the same validation ----------------------------------------

def test_override_replaces_the_file_value(tmp_path, tone):
    graph = build_graph(chain(), base_dir=tmp_path, overrides=[("bands", "n_fft", 1024)])
    assert graph.nodes["bands"].p.n_fft == 1024


def test_override_out_of_range_is_an_error_not_clamped(tmp_path, tone):
    line = only_problem(chain(), tmp_path, overrides=[("bands", "n_fft", 8)])
    assert_mentions(line, "node 'bands' param 'n_fft'", "found 8", "expected an integer in 16..65536")


def test_override_of_an_unknown_node(tmp_path, tone):
    line = only_problem(chain(), tmp_path, overrides=[("bandz", "n_fft", 1024)])
    assert_mentions(line, "--set bandz.n_fft", "no node named 'bandz'", "audio, bands, norm, smooth")


def test_override_of_an_unknown_param(tmp_path, tone):
    line = only_problem(chain(), tmp_path, overrides=[("bands", "nfft", 1024)])
    assert_mentions(line, "node 'bands' param 'nfft'", "unknown param")


def test_override_into_malformed_params_is_reported_not_a_crash(tmp_path, tone):
    data = chain()
    data["nodes"]["bands"]["params"] = [1, 2]
    line = only_problem(data, tmp_path, overrides=[("bands", "n_fft", 1024)])
    assert_mentions(line, "node 'bands'", "'params' must be a mapping", "a list")


def test_overrides_do_not_change_the_callers_data(tmp_path, tone):
    data = chain()
    build_graph(data, base_dir=tmp_path, overrides=[("bands", "n_fft", 1024)])
    assert "params" not in data["nodes"]["bands"]


@pytest.mark.parametrize("text, expected", [
    ("bands.n_fft=1024", ("bands", "n_fft", 1024)),
    ("smooth.alpha=0.5", ("smooth", "alpha", 0.5)),
    ("audio.normalize=false", ("audio", "normalize", False)),
    ("norm.gain=[1, 2.5]", ("norm", "gain", [1, 2.5])),
    ("audio.path=my song.wav", ("audio", "path", "my song.wav")),
    ("bands.window=", ("bands", "window", "")),
])
def test_parse_assignment_reads_the_value_as_yaml(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["foo", "bands=1024", ".n_fft=1024", "bands.=1024", "bands.n_fft"])
def test_parse_assignment_rejects_bad_syntax(text):
    with pytest.raises(GraphError) as info:
        parse_assignment(text)
    [line] = info.value.problems()
    assert_mentions(line, "--set", "expected NODE.PARAM=VALUE", repr(text))


def test_override_value_that_is_not_yaml_is_kept_as_text(tmp_path, tone):
    node, param, value = parse_assignment("bands.window=[hann")
    line = only_problem(chain(), tmp_path, overrides=[(node, param, value)])
    assert_mentions(line, "node 'bands' param 'window'", "found the text '[hann'")


# -- files -----------------------------------------------------------------------------

def write_graph(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_relative_path_resolves_against_the_graph_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    write_tone(folder / "song.wav")
    graph_file = write_graph(folder / "graph.yaml", chain("song.wav"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    graph = load_graph(graph_file)
    assert Path(graph.nodes["audio"].p.path) == folder / "song.wav"


def test_relative_graph_path_from_another_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    write_tone(folder / "song.wav")
    write_graph(folder / "graph.yaml", chain("song.wav"))
    monkeypatch.chdir(tmp_path)
    graph = load_graph(Path("project") / "graph.yaml")
    assert Path(graph.nodes["audio"].p.path) == folder / "song.wav"


def test_absolute_path_is_kept(tmp_path, tone):
    graph = load_graph(write_graph(tmp_path / "sub" / "graph.yaml", chain(tone)))
    assert Path(graph.nodes["audio"].p.path) == tone


def test_missing_audio_is_one_problem_naming_node_and_file(tmp_path):
    line = only_problem(chain("nowhere.wav"), tmp_path)
    assert_mentions(line, "node 'audio'", str(tmp_path / "nowhere.wav"), "not found")


def test_graph_file_not_found(tmp_path):
    with pytest.raises(GraphError) as info:
        load_graph(tmp_path / "missing.yaml")
    [line] = info.value.problems()
    assert_mentions(line, "missing.yaml", "graph file not found")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("fps: 30\nnodes:\n  audio:\n    type: [audio_file\n", encoding="utf-8")
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    [line] = info.value.problems()
    assert_mentions(line, "broken.yaml:5", "not valid YAML")


def test_python_tags_are_rejected_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(f"fps: 30\nnodes: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(GraphError) as info:
        load_graph(path)
    [line] = info.value.problems()
    assert_mentions(line, "evil.yaml:2", "not valid YAML", "python/object/apply:os.system")
    assert not marker.exists()


def test_python_object_tag_is_rejected(tmp_path):
    path = tmp_path / "object.yaml"
    path.write_text("fps: !!python/object:fractions.Fraction {}\nnodes: {}\n", encoding="utf-8")
    with pytest.raises(GraphError, match="python/object:fractions.Fraction"):
        read_graph_file(path)


def test_empty_graph_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(GraphError, match="expected a mapping"):
        load_graph(path)


# -- Param: the one validation path ---------------------------------------------------------

INT = Param("n", "int", 4, "an int", min=0, max=10)
FLOAT = Param("x", "float", 0.5, "a float", min=0, max=2)
FLOATS = Param("g", "floats", 1.0, "gains", min=0, max=10)
CHOICE = Param("mode", "choice", "a", "a choice", choices=("a", "b"))


def test_out_of_range_raises_without_clamp():
    with pytest.raises(ParamError, match=r"expected an integer in 0..10, found 12"):
        INT.check(12)
    with pytest.raises(ParamError, match=r"expected a number in 0..2, found -1"):
        FLOAT.check(-1)


def test_clamp_flag_clamps_and_says_so():
    assert INT.check(12, clamp=True) == (10, True)
    assert INT.check(-3, clamp=True) == (0, True)
    assert INT.check(7, clamp=True) == (7, False)
    assert FLOAT.check(3, clamp=True) == (2.0, True)
    assert FLOAT.check(1.25, clamp=True) == (1.25, False)


def test_clamped_values_keep_their_type():
    value, _ = FLOAT.check(5, clamp=True)
    assert type(value) is float
    values, _ = FLOATS.check([20, 3], clamp=True)
    assert all(type(v) is float for v in values)
    value, _ = INT.check(99.0, clamp=True)
    assert type(value) is int


def test_clamp_never_accepts_a_wrong_type_or_nan():
    for bad in ("3", True, None, math.nan, math.inf, [1]):
        with pytest.raises(ParamError):
            FLOAT.check(bad, clamp=True)


def test_int_accepts_whole_floats_but_not_bool_or_fractions():
    assert INT.check(3.0) == (3, False)
    assert type(INT.check(3.0)[0]) is int
    with pytest.raises(ParamError, match="found true"):
        INT.check(True)
    with pytest.raises(ParamError, match="found 2.5"):
        INT.check(2.5)
    with pytest.raises(ParamError, match="found the text '3'"):
        INT.check("3")


def test_float_rejects_bool_and_numeric_strings():
    assert FLOAT.check(1) == (1.0, False)
    with pytest.raises(ParamError, match="found the text '1.5'"):
        FLOAT.check("1.5")
    with pytest.raises(ParamError, match="found false"):
        FLOAT.check(False)


def test_found_shows_the_value_as_written():
    with pytest.raises(ParamError, match=r"found 1000$"):
        FLOAT.check(1000)


def test_floats_one_number_or_a_list_each_in_range():
    assert FLOATS.check(2) == (2.0, False)
    assert FLOATS.check([1, 2.5]) == ([1.0, 2.5], False)
    with pytest.raises(ParamError, match=r"found 20$"):
        FLOATS.check([1, 20])
    assert FLOATS.check([1, 20, -1], clamp=True) == ([1.0, 10.0, 0.0], True)
    for bad in ([], ["1"], [1, True], "1"):
        with pytest.raises(ParamError, match="a number or a list of numbers"):
            FLOATS.check(bad)


def test_choice_accepts_only_its_choices():
    assert CHOICE.check("b") == ("b", False)
    with pytest.raises(ParamError, match="expected one of a, b, found the text 'c'"):
        CHOICE.check("c")
    with pytest.raises(ParamError):
        CHOICE.check(1, clamp=True)


def test_bool_str_and_path():
    flag = Param("f", "bool", False, "a flag")
    assert flag.check(True) == (True, False)
    with pytest.raises(ParamError, match="expected true or false, found 1"):
        flag.check(1)
    path = Param("p", "path", REQUIRED, "a file")
    assert path.required
    with pytest.raises(ParamError, match="expected a file path, found an empty text"):
        path.check("")
    with pytest.raises(ParamError, match="expected a string, found 3"):
        Param("s", "str", "", "text").check(3)


def test_normalized_maps_0_to_1_onto_the_range():
    assert FLOAT.normalized(0) == 0.0
    assert FLOAT.normalized(0.25) == 0.5
    assert FLOAT.normalized(1) == 2.0
    assert INT.normalized(0) == 0
    assert INT.normalized(1) == 10
    assert INT.normalized(0.5) == 5
    assert type(INT.normalized(0.33)) is int


def test_normalized_rounds_int_halves_up_and_clamps_the_fraction():
    steps = Param("s", "int", 0, "steps", min=0, max=4)
    assert [steps.normalized(f) for f in (0.125, 0.375, 0.625, 0.875)] == [1, 2, 3, 4]
    assert INT.normalized(-1) == 0
    assert INT.normalized(2) == 10


def test_normalized_needs_a_range():
    with pytest.raises(ParamError, match="no range"):
        Param("u", "float", 0.0, "unbounded", min=0).normalized(0.5)


def test_declaration_mistakes_are_bugs_not_user_errors():
    with pytest.raises(ValueError):
        Param("x", "number", 0, "bad type")
    with pytest.raises(ValueError):
        Param("x", "choice", "a", "no choices")


def test_describe_is_plain_data():
    assert INT.describe() == {"type": "int", "doc": "an int", "default": 4, "min": 0, "max": 10}
    assert Param("p", "path", REQUIRED, "a file").describe()["required"] is True
    assert CHOICE.describe()["choices"] == ["a", "b"]


def test_a_param_change_that_would_reshape_an_output_is_refused_and_reverted(tmp_path):
    """Mid-run, downstream nodes were built for the old shape: the change must not half-apply."""
    import numpy as np
    from conftest import write_wav
    wav_path = write_wav(tmp_path / "a.wav", np.zeros(44100))
    graph = build_graph({"fps": 30, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(wav_path)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "mel", "n_mels": 8}},
    }}, base_dir=tmp_path)
    bands = graph.nodes["bands"]
    with pytest.raises(ParamError, match="cannot change to 12 while running"):
        bands.set_param("n_mels", 12)
    assert bands.p.n_mels == 8 and bands.matrix.shape[0] == 8
    assert bands.set_param("window", "none") is False  # a change that keeps the shape applies
    assert bands.p.window == "none" and bands.taper is None
