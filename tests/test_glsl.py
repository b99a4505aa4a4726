"""Shaders generated from the render nodes: exact weights, every target compiles (glslangValidator), clear refusals.

The pictures themselves are held against the numpy node in a real browser by tests/test_web.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cppnviz.glsl import ShaderError, graph_shader, literal
from cppnviz.graph import build_graph

from conftest import run_cli, write_tone

ROOT = Path(__file__).parents[1]
GLSLANG = shutil.which("glslangValidator")
needs_glslang = pytest.mark.skipif(GLSLANG is None, reason="glslangValidator is not installed (Debian: glslang-tools)")

# What TouchDesigner puts in front of a GLSL TOP pixel shader, as far as ours uses it (Derivative's
# "Write a GLSL TOP": the version the TOP's GLSL Version menu picks, vUV from its vertex shader,
# TDOutputSwizzle among the TD functions).
TD_PREAMBLE = """#version 460
in vec3 vUV;
vec4 TDOutputSwizzle(vec4 c);
vec4 TDOutputSwizzle(vec4 c) { return c; }
"""


def graph(tmp_path: Path, render: dict) -> object:
    """audio -> bands -> the given render nodes (their features linked to the bands)."""
    song = write_tone(tmp_path / "song.wav", seconds=0.5)
    nodes = {"audio": {"type": "audio_file", "params": {"path": str(song)}},
             "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"},
                       "params": {"bands": "octave8"}}}
    nodes.update(render)
    return build_graph({"fps": 30, "nodes": nodes}, base_dir=tmp_path)


def cppn(**params) -> dict:
    return {"cppn": {"type": "cppn", "inputs": {"features": "bands.bands"},
                     "params": {"width": 64, "height": 48, "layers": 4, "hidden": 6, "backend": "numpy", **params}}}


VARIANTS = {
    "tanh": cppn(),
    "sin_gray_keep": cppn(activation="sin", output="gray", aspect="keep", scale=2.5),
    "gaussian_vignette_period": cppn(activation="gaussian", vignette=True, period=2.0, feature_gain=0.5),
    "clip_sigmoid": cppn(activation="clip", mapping="sigmoid"),
    "tiler_grid_with_frames": {
        **cppn(),
        "meter": {"type": "spectrum_meter", "inputs": {"features": "bands.bands"},
                  "params": {"width": 64, "height": 48, "gap": 3}},
        "tiles": {"type": "tiler", "inputs": {"features": "bands.bands", "frames": ["cppn.frame", "meter.frame"]},
                  "params": {"layout": "grid", "layers": 3, "hidden": 5, "backend": "numpy"}}},
}


def compile_shader(tmp_path: Path, text: str, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.frag"
    path.write_text(text)
    return subprocess.run([GLSLANG, str(path)], capture_output=True, text=True, timeout=60)


def test_literals_read_back_as_the_same_float32():
    rng = np.random.default_rng(3)
    bits = np.concatenate([rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32),
                           np.array([0, 0x80000000, 1, 0x007FFFFF, 0x7F7FFFFF, 0x3F800000], np.uint32)])
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    back = np.array([np.float32(literal(v)) for v in values], np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))
    # GLSL wants a decimal point or an exponent: "1" alone would be an int.
    assert all(re.fullmatch(r"-?\d+\.\d*(e[-+]?\d+)?|-?\d\.?\d*e[-+]?\d+", literal(v)) for v in values[:2000])
    with pytest.raises(ShaderError, match="finite"):
        literal(np.inf)


def test_every_weight_of_the_network_is_in_the_shader_exactly(tmp_path):
    g = graph(tmp_path, cppn(period=3.0))
    source = graph_shader(g, target="webgl2").source
    baked = {np.float32(x).tobytes() for x in re.findall(r"-?\d+\.\d*(?:e[-+]?\d+)?", source)}
    net = g.nodes["cppn"].network
    weights = [w[:3] for w in net.w_layers[:1]] + list(net.w_layers[1:])
    weights.append(np.asarray(net.weights64[0][3:], np.float64).astype(np.float32))
    missing = [float(v) for w in weights for v in np.asarray(w, np.float32).ravel() if v.tobytes() not in baked]
    assert missing == []
    # Features and time are uniforms, sized from the graph; the period is baked.
    assert "uniform float u_features[8];" in source and "uniform float u_time;" in source
    assert literal(3.0) in source


@needs_glslang
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_targets_compile_with_glslang(tmp_path, variant):
    g = graph(tmp_path, VARIANTS[variant])
    for target in ("glsl330", "webgl2"):
        shader = graph_shader(g, target=target)
        done = compile_shader(tmp_path, shader.source, f"{variant}_{target}")
        assert done.returncode == 0, done.stdout + done.stderr
    shader = graph_shader(g, target="touchdesigner")
    assert "vUV.st" in shader.source and "TDOutputSwizzle(" in shader.source and "#version" not in shader.source
    done = compile_shader(tmp_path, TD_PREAMBLE + shader.source, f"{variant}_td")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_glslang
def test_a_broken_shader_is_caught_by_the_compiler_check(tmp_path):
    # The compile check can fail: the TouchDesigner text alone lacks what TouchDesigner declares.
    g = graph(tmp_path, cppn())
    done = compile_shader(tmp_path, "#version 460\n" + graph_shader(g, target="touchdesigner").source, "bare")
    assert done.returncode != 0 and "vUV" in done.stdout


def test_the_uniform_array_lists_each_features_link_once(tmp_path):
    g = graph(tmp_path, VARIANTS["tiler_grid_with_frames"])
    shader = graph_shader(g, target="glsl330")
    # cppn, meter and tiler all read bands.bands: one copy in the array.
    assert [str(link) for link in shader.features] == ["bands.bands"] and shader.sizes == [8]
    assert (shader.width, shader.height) == (64 * 4, 48 * 3)  # 2 frames + 8 bands in rows of ceil(sqrt(10))


def test_a_node_without_a_shader_form_is_named(tmp_path):
    g = graph(tmp_path, cppn())
    with pytest.raises(ShaderError, match=r"node 'bands' \(stft_bands\) has no shader form; nodes with one: cppn"):
        graph_shader(g, node="bands")
    with pytest.raises(ShaderError, match="unknown target 'hlsl'"):
        graph_shader(g, target="hlsl")
    driven = cppn()
    driven["cppn"]["drive"] = {"scale": {"from": "bands.bands[0]", "min": 1.0, "max": 2.0}}
    with pytest.raises(ShaderError, match=r"node 'cppn' param 'scale' is driven by bands.bands: shaders bake"):
        graph_shader(graph(tmp_path, driven))


def test_cli_glsl_writes_the_touchdesigner_shader(tmp_path):
    song = write_tone(tmp_path / "song.wav", seconds=0.5)
    out = tmp_path / "cppn.glsl"
    done = run_cli("glsl", "examples/mixed.yaml", "--audio", song, "--target", "touchdesigner", "--node", "cppn",
                   "--out", out, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("// cppnviz: node 'cppn' of mixed.yaml, 256x256 frame, target touchdesigner")
    assert "uniform float uFeatures[8];" in text and "fragColor = TDOutputSwizzle(" in text
    done = run_cli("glsl", "examples/mixed.yaml", "--audio", song, "--node", "norm", cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: node 'norm' (normalizer) has no shader form; "
                                                "nodes with one: cppn, tiler, spectrum_meter"]


def test_the_shipped_touchdesigner_shader_is_what_the_graph_generates():
    from cppnviz.graph import load_graph

    example = ROOT / "examples" / "touchdesigner"
    shipped = (example / "mixed_live_glsl_top.glsl").read_text()
    generated = graph_shader(load_graph(example / "mixed_live.yaml"), node="cppn", target="touchdesigner").source
    assert shipped == generated, ("regenerate it: cppnviz glsl examples/touchdesigner/mixed_live.yaml --node cppn "
                                  "--target touchdesigner --out examples/touchdesigner/mixed_live_glsl_top.glsl")


def test_the_shader_draws_the_frame_the_live_window_shows(tmp_path):
    from cppnviz.glsl import output_node
    from cppnviz.live import shown_frame

    g = graph(tmp_path, VARIANTS["tiler_grid_with_frames"])   # no encoder: the frame no node reads
    assert output_node(g) == "tiles" and str(shown_frame(g)) == "tiles.frame"
