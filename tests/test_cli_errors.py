"""The real `cppnviz` console script on real files: a user's mistake exits 2 with one `error:` line each."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import yaml

from cppnviz import registry
from conftest import write_tone

SR = 44100
BASE_NODES = ("audio_file", "stft_bands", "normalizer", "smoother")


# -- helpers ------------------------------------------------------------------------


def command() -> list[str]:
    """The installed console script next to this Python, else `python -m cppnviz.launch`."""
    script = shutil.which("cppnviz", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "cppnviz.launch"]


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*command(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def user_errors(result: subprocess.CompletedProcess) -> list[str]:
    """Assert a user's mistake (exit 2, no traceback) and return its `error:` lines."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    return lines


def one_error(result: subprocess.CompletedProcess) -> str:
    lines = user_errors(result)
    assert len(lines) == 1, lines
    return lines[0]


def assert_mentions(line: str, *parts: str) -> None:
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"


def chain(audio="tone.wav") -> dict:
    return {
        "fps": 30,
        "nodes": {
            "audio": {"type": "audio_file", "params": {"path": str(audio)}},
            "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}},
            "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"}},
            "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}},
        },
    }


def write_graph(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A folder with tone.wav and graph.yaml (audio -> bands -> norm -> smooth)."""
    folder = tmp_path / "project"
    folder.mkdir()
    write_tone(folder / "tone.wav")
    write_graph(folder / "graph.yaml", chain())
    return folder


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# -- check ---------------------------------------------------------------------------

def test_check_good_graph_exits_0_and_writes_nothing(tmp_path, project, elsewhere):
    before = listing(tmp_path)
    result = cli("check", project / "graph.yaml", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout and "4 nodes" in result.stdout
    assert listing(tmp_path) == before


def test_relative_path_resolves_against_the_graph_folder_not_the_cwd(project, elsewhere):
    result = cli("check", Path("..") / "project" / "graph.yaml", cwd=elsewhere)
    assert result.returncode == 0, result.stderr


def test_several_mistakes_one_error_line_each(project):
    data = chain()
    data["colour"] = "red"
    data["nodes"]["bands"]["params"] = {"n_fft": "big"}
    data["nodes"]["norm"]["inputs"] = {"features": "audio.audio"}
    data["nodes"]["smooth"]["params"] = {"alpha": 2}
    data["nodes"]["fx"] = {"type": "glitter"}
    lines = user_errors(cli("check", write_graph(project / "bad.yaml", data)))
    assert len(lines) == 5, lines
    text = "\n".join(lines)
    for parts in [
        ("'colour'", "unknown top-level key"),
        ("node 'bands' param 'n_fft'", "found the text 'big'", "expected an integer"),
        ("node 'norm' input 'features'", "incompatible ports", "gives audio", "expects features"),
        ("node 'smooth' param 'alpha'", "found 2", "expected a number in 0..0.9999"),
        ("node 'fx'", "unknown node type 'glitter'"),
    ]:
        assert any(all(p in line for p in parts) for line in lines), f"{parts} not in:\n{text}"
    assert all("bad.yaml" in line for line in lines)


def test_cycle_is_printed_as_its_path(project):
    data = {"fps": 30, "nodes": {
        "a": {"type": "smoother", "inputs": {"features": "b.features"}},
        "b": {"type": "smoother", "inputs": {"features": "a.features"}},
    }}
    assert_mentions(one_error(cli("check", write_graph(project / "cycle.yaml", data))), "cycle: a -> b -> a")


def test_graph_file_not_found(elsewhere):
    assert_mentions(one_error(cli("check", "nowhere.yaml", cwd=elsewhere)), "nowhere.yaml", "not found")


def test_yaml_syntax_error_gives_the_line(project):
    path = write_graph(project / "broken.yaml", "fps: 30\nnodes:\n  audio:\n    type: [audio_file\n")
    assert_mentions(one_error(cli("check", path)), "broken.yaml:5", "not valid YAML")


def test_python_tag_is_rejected_and_not_executed(project):
    marker = project / "executed"
    path = write_graph(project / "evil.yaml",
                       f"fps: 30\nnodes: !!python/object/apply:os.system ['touch {marker}']\n")
    line = one_error(cli("check", path))
    assert_mentions(line, "evil.yaml", "python/object/apply:os.system")
    assert not marker.exists()


# -- --set -------------------------------------------------------------------------------

def test_set_changes_a_param(project):
    assert cli("check", project / "graph.yaml", "--set", "bands.n_fft=1024").returncode == 0


def test_set_out_of_range_is_an_error_not_clamped(project):
    line = one_error(cli("check", project / "graph.yaml", "--set", "bands.n_fft=8"))
    assert_mentions(line, "node 'bands' param 'n_fft'", "found 8", "expected an integer in 16..65536")


def test_set_wrong_type(project):
    line = one_error(cli("check", project / "graph.yaml", "--set", "smooth.alpha=lots"))
    assert_mentions(line, "node 'smooth' param 'alpha'", "found the text 'lots'", "expected a number")


def test_set_unknown_node(project):
    line = one_error(cli("check", project / "graph.yaml", "--set", "bandz.n_fft=1024"))
    assert_mentions(line, "--set bandz.n_fft", "no node named 'bandz'")


def test_set_unknown_param(project):
    line = one_error(cli("check", project / "graph.yaml", "--set", "bands.nfft=1024"))
    assert_mentions(line, "node 'bands' param 'nfft'", "unknown param", "n_fft")


def test_set_bad_syntax(project):
    line = one_error(cli("check", project / "graph.yaml", "--set", "foo"))
    assert_mentions(line, "--set", "expected NODE.PARAM=VALUE", "'foo'")


def test_every_bad_set_is_reported(project):
    lines = user_errors(cli("check", project / "graph.yaml", "--set", "bandz.n_fft=1024",
                            "--set", "smooth.alpha=2"))
    assert len(lines) == 2, lines


# -- --audio / --out --------------------------------------------------------------------------

def test_audio_overrides_the_graph_and_is_relative_to_the_cwd(project, elsewhere):
    write_tone(elsewhere / "other.wav", seconds=0.5)
    write_graph(project / "nosong.yaml", chain("missing.wav"))
    result = cli("features", project / "nosong.yaml", "--audio", "other.wav", "--node", "bands", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 15  # header + 0.5 s at 30 fps


def test_audio_with_two_audio_file_nodes(project):
    data = chain()
    data["nodes"]["audio2"] = {"type": "audio_file", "params": {"path": "tone.wav"}}
    line = one_error(cli("features", write_graph(project / "two.yaml", data), "--audio", project / "tone.wav"))
    assert_mentions(line, "--audio", "exactly one audio_file", "audio, audio2")


def test_audio_with_no_audio_file_node(project):
    data = {"fps": 30, "nodes": {"smooth": {"type": "smoother"}}}
    line = one_error(cli("features", write_graph(project / "none.yaml", data), "--audio", project / "tone.wav"))
    assert_mentions(line, "--audio", "exactly one audio_file", "found none")


# -- audio a user may give -------------------------------------------------------------------

def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("these are my lyrics, not a song\n" * 50, encoding="utf-8")


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(20000))


def _header_only(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)


@pytest.mark.parametrize("name, make, says", [
    ("missing.wav", None, ("not found",)),
    ("empty.wav", _empty, ("empty",)),
    ("lyrics.txt", _text, ("cannot decode", "no audio stream")),  # FFmpeg may probe text as a format
    ("noise.mp3", _random, ("cannot decode", "no audio stream")),
    ("silence.wav", _header_only, ("zero samples",)),
])
def test_unreadable_audio_is_a_user_error_naming_the_file(project, name, make, says):
    if make:
        make(project / name)
    line = one_error(cli("check", write_graph(project / "g.yaml", chain(name))))
    assert_mentions(line, "node 'audio'", str(project / name))
    assert any(reason in line for reason in says), line


@pytest.mark.parametrize("command_name", ["features", "render"])
def test_unreadable_audio_given_with_audio_flag(project, command_name):
    _random(project / "noise.wav")
    line = one_error(cli(command_name, project / "graph.yaml", "--audio", project / "noise.wav"))
    assert_mentions(line, str(project / "noise.wav"), "cannot decode")


def test_audio_that_is_a_directory(project):
    (project / "songs").mkdir()
    line = one_error(cli("check", write_graph(project / "g.yaml", chain("songs"))))
    assert_mentions(line, str(project / "songs"), "directory")


# -- features output ------------------------------------------------------------------------

def test_features_csv_has_a_header_and_one_row_per_frame(project, elsewhere):
    result = cli("features", project / "graph.yaml", "--node", "smooth", "--out", "f.csv", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((elsewhere / "f.csv").open()))
    assert rows[0][:2] == ["frame", "time"] and len(rows[0]) == 2 + 7
    assert len(rows) == 1 + 30


def test_features_out_into_a_missing_folder(project):
    target = project / "no" / "such" / "f.csv"
    line = one_error(cli("features", project / "graph.yaml", "--node", "smooth", "--out", target))
    assert_mentions(line, str(target), "does not exist")
    assert not (project / "no").exists()


def test_features_out_onto_a_directory_leaves_no_file(project):
    target = project / "out"
    target.mkdir()
    before = listing(project)
    line = one_error(cli("features", project / "graph.yaml", "--node", "smooth", "--out", target))
    assert_mentions(line, str(target), "cannot write")
    assert listing(project) == before


def test_features_unknown_node(project):
    line = one_error(cli("features", project / "graph.yaml", "--node", "nope"))
    assert_mentions(line, "--node", "'nope'", "audio, bands, norm, smooth")


def test_features_node_that_is_not_features(project):
    line = one_error(cli("features", project / "graph.yaml", "--node", "audio"))
    assert_mentions(line, "--node", "node 'audio'", "audio", "expected features")


# -- render ---------------------------------------------------------------------------------

def test_render_without_an_encoder_is_a_user_error(project):
    line = one_error(cli("render", project / "graph.yaml"))
    assert_mentions(line, "no encoder node")


def test_render_out_without_an_encoder_names_the_flag(project):
    line = one_error(cli("render", project / "graph.yaml", "--out", project / "video.mp4"))
    assert_mentions(line, "--out", "exactly one encoder", "found none")
    assert not (project / "video.mp4").exists()


def _frame_source():
    """A node type that makes frames from audio/features alone (the cppn when it exists), or None."""
    types = registry.all_types()
    candidates = ["cppn"] + [t for t in types if t != "cppn"]
    for type_name in candidates:
        cls = types.get(type_name)
        if cls is None or not any(o.kind == "frame" for o in cls.outputs):
            continue
        if all(i.kind in ("audio", "features") for i in cls.inputs if i.required):
            return cls
    return None


def _encoder_graph(project: Path) -> Path:
    """The chain plus frames from a frame source into an encoder, wired by the declared port kinds."""
    encoder, source = registry.lookup("encoder"), _frame_source()
    if encoder is None:
        pytest.skip("encoder node not yet available")
    if source is None:
        pytest.skip("no node that makes frames (cppn) yet")
    data = chain()
    nodes = data["nodes"]
    frame_port = next(o.name for o in source.outputs if o.kind == "frame")
    sources = {"audio": "audio.audio", "features": "smooth.features", "frame": f"art.{frame_port}"}
    small = {p.name: 32 for p in source.params if p.name in ("width", "height")}  # keep the render quick
    nodes["art"] = {"type": source.type_name, "params": small,
                    "inputs": {i.name: sources[i.kind] for i in source.inputs if i.required}}
    nodes["video"] = {"type": "encoder", "params": {"path": "video.mp4"},
                      "inputs": {i.name: sources[i.kind] for i in encoder.inputs}}
    return write_graph(project / "video.yaml", data)


def test_render_writes_the_video_where_out_says(project, elsewhere):
    graph = _encoder_graph(project)
    result = cli("render", graph, "--out", "clip.mp4", "--seconds", "0.2", "--quiet", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "clip.mp4").stat().st_size > 0
    assert not (project / "video.mp4").exists()


def test_render_out_into_a_missing_folder(project):
    graph = _encoder_graph(project)
    target = project / "no" / "such" / "video.mp4"
    lines = user_errors(cli("render", graph, "--out", target, "--seconds", "0.2", "--quiet"))
    assert any(str(target.parent) in line or str(target) in line for line in lines), lines
    assert not (project / "no").exists()


def test_render_onto_an_unwritable_output_leaves_no_file(project):
    graph = _encoder_graph(project)
    target = project / "out.mp4"
    target.mkdir()  # a directory where the video should go: cannot be written, even as root
    before = listing(project)
    lines = user_errors(cli("render", graph, "--out", target, "--seconds", "0.2", "--quiet"))
    assert any("out.mp4" in line for line in lines), lines
    assert listing(project) == before


def test_batch_reports_a_bad_set_even_when_every_video_is_up_to_date(project):
    graph = _encoder_graph(project)
    made = cli("batch", graph, project / "tone.wav", "--out-dir", project / "videos", "--seconds", "0.2", "--quiet")
    assert made.returncode == 0 and "wrote" in made.stdout, made.stderr
    line = one_error(cli("batch", graph, project / "tone.wav", "--out-dir", project / "videos",
                         "--set", "bandz.n_fft=1024"))
    assert_mentions(line, "tone.wav", "--set bandz.n_fft", "no node named 'bandz'")


def test_batch_of_a_graph_with_two_audio_files_names_batch_not_a_flag(project):
    graph = _encoder_graph(project)
    data = yaml.safe_load(graph.read_text())
    data["nodes"]["drums"] = {"type": "audio_file", "params": {"path": "tone.wav"}}
    write_graph(graph, data)
    line = one_error(cli("batch", graph, project / "tone.wav", "--out-dir", project / "videos"))
    assert_mentions(line, "batch needs exactly one audio_file node", "audio, drums")
    assert "--audio" not in line and not (project / "videos").exists()


# -- nodes, manifest ------------------------------------------------------------------------

def test_nodes_json_lists_every_base_node_with_documented_params():
    result = cli("nodes", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(BASE_NODES) <= set(data)
    for type_name in BASE_NODES:
        info = data[type_name]
        assert info["doc"]
        assert info["params"]
        for name, param in info["params"].items():
            assert {"type", "default", "doc"} <= set(param), (type_name, name)
            assert param["doc"], (type_name, name)
    assert data["audio_file"]["params"]["path"]["required"] is True
    assert data["stft_bands"]["inputs"]["audio"]["kind"] == "audio"
    assert data["smoother"]["outputs"]["features"]["kind"] == "features"


def test_nodes_text_lists_every_base_node():
    result = cli("nodes")
    assert result.returncode == 0, result.stderr
    for type_name in BASE_NODES:
        assert f"{type_name}:" in result.stdout


def test_manifest_is_yaml_listing_the_nodes():
    result = cli("manifest")
    assert result.returncode == 0, result.stderr
    assert set(BASE_NODES) <= set(yaml.safe_load(result.stdout)["nodes"])


def test_unknown_command_is_a_usage_error():
    result = cli("paint")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("seconds", ["inf", "1e400", "nan"])
def test_seconds_must_be_finite(project, seconds):
    result = cli("render", project / "graph.yaml", "--seconds", seconds)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert_mentions(result.stderr.splitlines()[-1], "--seconds", "finite", seconds)


def test_features_output_is_checked_before_the_analysis_runs(project, monkeypatch, capsys):
    from cppnviz import cli as cli_module, runner

    def analysis(*args, **kwargs):
        raise AssertionError("the analysis ran before the output was checked")
    monkeypatch.setattr(runner, "collect", analysis)
    target = project / "missing" / "x.csv"
    assert cli_module.main(["features", str(project / "graph.yaml"), "--node", "smooth", "--out", str(target)]) == 2
    assert_mentions(capsys.readouterr().err, str(target), "does not exist")
    fifo = project / "pipe.csv"
    os.mkfifo(fifo)
    assert cli_module.main(["features", str(project / "graph.yaml"), "--node", "smooth", "--out", str(fifo)]) == 2
    assert_mentions(capsys.readouterr().err, "a FIFO")
    graph = project / "graph.yaml"
    assert cli_module.main(["features", str(graph), "--node", "smooth", "--out", str(graph)]) == 2
    assert_mentions(capsys.readouterr().err, "an input of this run")


def test_a_cppn_without_features_warns_once_that_it_will_not_move(project):
    data = chain()
    data["nodes"]["cppn"] = {"type": "cppn", "params": {"width": 16, "height": 16, "layers": 2, "hidden": 4}}
    data["nodes"]["video"] = {"type": "encoder", "inputs": {"frame": "cppn.frame"},
                              "params": {"path": "still.mp4", "preset": "ultrafast"}}
    graph = write_graph(project / "still.yaml", data)
    result = cli("render", graph, "--seconds", "0.2", "--quiet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "no features input" in line]
    assert len(warnings) == 1 and "cppn" in warnings[0] and "period" in warnings[0], result.stderr
    moving = {**data, "nodes": {**data["nodes"], "cppn": {**data["nodes"]["cppn"], "inputs": {"features": "smooth.features"}}}}
    result = cli("render", write_graph(project / "moving.yaml", moving), "--seconds", "0.2", "--quiet")
    assert result.returncode == 0 and "no features input" not in result.stderr, result.stderr
