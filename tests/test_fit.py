"""`cppnviz fit` and the cppn node's `fitted` param: real pictures in, look files out, rendered everywhere the node runs."""

from __future__ import annotations

import re
import signal
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from PIL import Image

import test_touchdesigner as tdt
from conftest import run_cli, start_cli, write_tone
from test_touchdesigner import song, td  # noqa: F401  (fixtures: the TouchDesigner stand-in and a song)
from cppnviz import fit as fitting
from cppnviz.errors import GraphError, ParamError
from cppnviz.fit import coordinates, load_image, load_look, psnr, render
from cppnviz.graph import load_graph
from cppnviz.node import Context
from cppnviz.nodes.cppn import CPPN
from cppnviz.ports import Spec
from cppnviz.timebase import Tick

ROOT = Path(__file__).resolve().parent.parent
DIAL_STEPS = 2000   # at 128 px: 0 reaches ~31 dB (the test asks 24); 0.5 and 1 trade it for motion


def shapes(n: int = 128) -> np.ndarray:
    """The project's own test picture: a colour gradient, a disc and a box, (n, n, 3) float in [0, 1]."""
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.8 - 0.5 * x * y], -1)
    img[(x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.2 ** 2] = (0.95, 0.8, 0.1)
    img[(np.abs(x - 0.7) < 0.15) & (np.abs(y - 0.7) < 0.12)] = (0.1, 0.2, 0.7)
    return img


def save(path: Path, img: np.ndarray, mode: str = "RGB", **options) -> Path:
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).convert(mode).save(path, **options)
    return path


def errors(result) -> str:
    """The one `error:` line of a user's mistake (exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dial(tmp_path_factory):
    """The shapes picture fitted by the real CLI at reactivity 0, 0.5 and 1: {reactivity: (look path, stderr)}."""
    folder = tmp_path_factory.mktemp("dial")
    picture = save(folder / "shapes.png", shapes())
    made = {}
    for reactivity in (0.0, 0.5, 1.0):
        out = folder / f"look{reactivity}.npz"
        result = run_cli("fit", picture, "--out", out, "--steps", DIAL_STEPS, "--reactivity", reactivity, "--quiet",
                         "--preview", folder / f"preview{reactivity}.png")
        assert result.returncode == 0, result.stderr
        made[reactivity] = (out, result.stderr)
    return picture, made


@pytest.fixture(scope="module")
def small_look(tmp_path_factory) -> Path:
    """A quick look (32 px, 300 steps, 3 features, 4x8) for the tests where the likeness is not the point."""
    folder = tmp_path_factory.mktemp("small")
    model, figures = fitting.fit(shapes(32), layers=4, hidden=8, n_features=3, steps=300, seed=5, reactivity=0.5)
    path = folder / "small.npz"
    fitting.save_look(path, model, n_features=3, feature_gain=0.5, figures=figures, image={}, training={})
    return path


# -- the dial and the figures ---------------------------------------------------------------

def test_reactivity_0_reaches_24_db_and_the_stored_figures_are_measured(dial):
    picture, made = dial
    path, stderr = made[0.0]
    look = load_look(path)
    image = load_image(picture, size=128)
    fitted = render(look.model, coordinates(128, 128), np.full(8, 0.5, np.float32)).reshape(image.shape)
    assert look.header["psnr"] >= 24.0
    assert look.header["psnr"] == pytest.approx(psnr(fitted, image), abs=1e-3)   # stored rounded to 3 places
    assert f"PSNR {look.header['psnr']:.2f} dB" in stderr
    assert look.header["image"]["sha256"] == fitting.image_hash(picture)
    assert (look.layers, look.hidden, look.activation, look.n_features) == (8, 32, "tanh", 8)
    # The reactivity figure is the motion over the reference sequence against the unfitted network's.
    sequence = fitting.reference_sequence(8, 0.5)
    coords = coordinates(128, 128)
    unfitted = fitting.unfitted(look.model.sizes, "tanh", 0)
    moved, unfitted_moved = fitting.motion(look.model, coords, sequence), fitting.motion(unfitted, coords, sequence)
    assert look.header["reactivity"] == pytest.approx(moved / unfitted_moved, abs=1e-4)
    assert (look.header["motion"], look.header["unfitted_motion"]) == pytest.approx((moved, unfitted_moved), abs=1e-5)


def test_the_dial_trades_likeness_for_motion_monotonically(dial):
    _, made = dial
    figures = [(load_look(path).header["psnr"], load_look(path).header["reactivity"]) for path, _ in made.values()]
    (p0, r0), (p5, r5), (p1, r1) = figures
    assert p0 > p5 > p1, figures
    assert r0 < r5 < r1, figures


def test_preview_shows_the_image_beside_the_fitted_picture(dial):
    picture, made = dial
    preview = np.asarray(Image.open(made[0.0][0].parent / "preview0.0.png"), np.float64) / 255
    assert preview.shape == (128, 256, 3)
    original = np.asarray(Image.open(picture), np.float64) / 255
    assert np.abs(preview[:, :128] - original).max() <= 0.5 / 255 + 1e-9
    assert psnr(preview[:, 128:], original) >= 24.0


def test_fitting_is_deterministic_for_a_seed():
    image = shapes(32)
    a, fa = fitting.fit(image, layers=3, hidden=8, n_features=2, steps=50, seed=3, reactivity=0.5)
    b, fb = fitting.fit(image, layers=3, hidden=8, n_features=2, steps=50, seed=3, reactivity=0.5)
    c, _ = fitting.fit(image, layers=3, hidden=8, n_features=2, steps=50, seed=4, reactivity=0.5)
    assert fa == fb and all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    assert not np.array_equal(a.weights[0], c.weights[0])


# -- pictures of every kind --------------------------------------------------------------------

def test_any_picture_a_user_has(tmp_path):
    img = shapes(40)
    rgb = load_image(save(tmp_path / "a.png", img), size=40)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.float32
    assert np.abs(rgb - np.round(img * 255) / 255).max() < 1e-6
    for name, options in (("a.jpg", {"quality": 95, "subsampling": 0}), ("a.webp", {"lossless": True})):
        other = load_image(save(tmp_path / name, img, **options), size=40)
        assert psnr(other, rgb) > 30, name
    gray = load_image(save(tmp_path / "g.png", img, "L"), size=40)
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_sixteen_bit_grayscale_keeps_its_depth(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    loaded = load_image(tmp_path / "deep.png", size=64)[..., 0]
    # Steps of 1/65535 survive: an 8-bit read would have 256 levels at most.
    assert np.abs(loaded - ramp / 65535).max() < 1e-6 and len(np.unique(loaded)) > 4000


def test_sixteen_bit_colour_pngs_load(tmp_path):
    # Written by FFmpeg (48 and 64 bits a pixel); Pillow reads 16-bit colour at 8 bits, so: the same picture.
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not found (.ci/run installs it)")
    pictures = {}
    for fmt in ("rgb24", "rgb48be", "rgba64be"):
        path = tmp_path / f"{fmt}.png"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=32x32", "-pix_fmt", fmt,
                        "-frames:v", "1", str(path)], check=True)
        pictures[fmt] = load_image(path, size=32)
    for fmt in ("rgb48be", "rgba64be"):   # testsrc is opaque: alpha 1 everywhere
        assert np.abs(pictures[fmt] - pictures["rgb24"]).max() <= 1 / 255 + 1e-6, fmt


def test_alpha_goes_on_black(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :8, 3] = 255
    rgba[:, 8:, 3] = 51          # 20 % opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    loaded = load_image(tmp_path / "alpha.png", size=16)
    assert np.allclose(loaded[:, :8], 200 / 255, atol=1e-6) and np.allclose(loaded[:, 8:], 200 / 255 * 0.2, atol=1e-6)


def test_the_short_side_becomes_size_and_the_aspect_is_kept(tmp_path):
    loaded = load_image(save(tmp_path / "wide.png", np.full((50, 100, 3), 0.5)), size=20)
    assert loaded.shape == (20, 40, 3) and np.allclose(loaded, 128 / 255, atol=1e-5)


# -- a user's mistakes -----------------------------------------------------------------------------

@pytest.mark.parametrize("make,words", [
    (lambda p: p, ["does not exist"]),
    (lambda p: (p.write_bytes(b""), p)[1], ["empty"]),
    (lambda p: (p.write_text("not a picture at all\n"), p)[1], ["not an image"]),
    (lambda p: (p.write_bytes(save(p.with_suffix(".x.png"), shapes(32)).read_bytes()[:300]), p)[1], ["damaged"]),
    (lambda p: save(p, shapes(4)), ["4x4", "8x8"]),
], ids=["missing", "empty", "text", "truncated", "too small"])
def test_bad_images_are_one_error_line_and_no_file(tmp_path, make, words):
    image = make(tmp_path / "in.png")
    out = tmp_path / "look.npz"
    line = errors(run_cli("fit", image, "--out", out, "--steps", 5, "--quiet"))
    assert str(image) in line and all(w in line for w in words), line
    assert not out.exists() and not list(tmp_path.glob(".look*"))


def test_unwritable_output_is_refused_before_training(tmp_path):
    image = save(tmp_path / "in.png", shapes(16))
    line = errors(run_cli("fit", image, "--out", tmp_path / "nowhere" / "look.npz", "--steps", 10**6))
    assert "nowhere" in line and "does not exist" in line
    line = errors(run_cli("fit", image, "--out", image, "--steps", 5))
    assert "input" in line and not (tmp_path / "look.npz").exists()


@pytest.mark.parametrize("args,words", [(["--reactivity", "1.5"], ["--reactivity", "1.5"]),
                                        (["--activation", "relu"], ["--activation", "relu"]),
                                        (["--size", "4"], ["--size", "4"])])
def test_bad_options_are_one_error_line(tmp_path, args, words):
    image = save(tmp_path / "in.png", shapes(16))
    line = errors(run_cli("fit", image, "--out", tmp_path / "look.npz", *args))
    assert all(w in line for w in words), line


def test_ctrl_c_leaves_no_file(tmp_path):
    image = save(tmp_path / "in.png", shapes(64))
    out = tmp_path / "look.npz"
    process = start_cli("fit", image, "--out", out, "--steps", 10**6, "--size", 64)
    assert process.stderr.readline().startswith("fitting ")   # said as the training starts
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and not out.exists() and list(tmp_path.iterdir()) == [image]


# -- look files -------------------------------------------------------------------------------------

def node(look: Path | str, features: int = 3, **params) -> CPPN:
    """A configured cppn node with `fitted` set (64x48, numpy unless params say otherwise)."""
    values = {p.name: p.default for p in CPPN.params}
    values.update({"width": 64, "height": 48, "backend": "numpy", "fitted": str(look), **params})
    made = CPPN("cppn", values, Context(fps=Fraction(30)))
    made.input_specs = {"features": Spec("features", size=features)} if features else {}
    made.configure(made.input_specs)
    return made


def frame(cppn: CPPN, features=None, t: float = 0.0) -> np.ndarray:
    out = cppn.process(Tick(round(t * 30), t), features)["frame"]
    return out.get() if hasattr(out, "__cuda_array_interface__") else out.copy()


def test_the_node_renders_what_was_fitted(small_look):
    look = load_look(small_look)
    cppn = node(small_look)
    features = np.array([0.3, 0.9, 0.5])
    expected = render(look.model, coordinates(48, 64), features.astype(np.float32)).reshape(48, 64, 3)
    # Same network, two float32 evaluations (the node sums the features' term in float64): a few units of
    # float32 roundoff per pre-activation through 4 Lipschitz-1 layers of 8 inputs, far below 1e-5.
    assert np.abs(frame(cppn, features) - expected).max() < 1e-5
    assert np.array_equal(frame(cppn, features), frame(cppn, features))       # identical inputs, identical frames
    assert not np.array_equal(frame(cppn, features), frame(cppn, features * 2))  # and it moves with them
    # Without a features link the look shows its picture at the neutral vector.
    neutral = render(look.model, coordinates(48, 64), np.full(3, 0.5, np.float32)).reshape(48, 64, 3)
    assert np.abs(frame(node(small_look, features=0)) - neutral).max() < 1e-5


def test_params_that_contradict_the_file_name_both_values(small_look):
    with pytest.raises(GraphError) as caught:
        node(small_look, hidden=12, activation="sin", period=2.0, features=5)
    text = str(caught.value)
    for words in ("param 'hidden': is 12", "has hidden 8", "param 'activation': is 'sin'", "has activation 'tanh'",
                  "param 'period'", "input 'features': carries 5 values", "takes 3"):
        assert words in text, text
    node(small_look, hidden=8, layers=4)   # the file's own values are no contradiction


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), "not an npz archive: damaged, truncated"),
    (lambda p: p.write_text("hello"), "not an npz archive"),
    (lambda p: p.write_bytes(flipped(p.read_bytes())), "damaged or truncated: Bad CRC"),
    (lambda p: np.savez(p.open("wb"), W0=np.zeros(3)), "not a cppnviz look file"),
    (lambda p: p.unlink(), "does not exist"),
], ids=["truncated", "text", "a flipped byte", "foreign npz", "missing"])
def test_a_bad_look_file_is_one_clear_error(small_look, tmp_path, damage, words):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(small_look.read_bytes())
    damage(bad)
    with pytest.raises(ParamError, match=f"param 'fitted': .*{words}"):
        node(bad)


def flipped(data: bytes) -> bytes:
    """The bytes with one bit flipped in the middle of the largest member's compressed data."""
    import io
    import struct
    import zipfile

    member = max(zipfile.ZipFile(io.BytesIO(data)).infolist(), key=lambda m: m.compress_size)
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26:member.header_offset + 30])
    out = bytearray(data)
    out[member.header_offset + 30 + name_length + extra_length + member.compress_size // 2] ^= 0x10
    return bytes(out)


def test_a_look_of_another_version_is_refused(small_look, tmp_path):
    from cppnviz import madefile

    header, arrays = madefile.read(small_look, kind="look", versions=(1,))
    newer = tmp_path / "newer.npz"
    madefile.write(newer, kind="look", version=2, header={k: v for k, v in header.items() if k not in ("kind", "version")},
                   arrays=arrays)
    with pytest.raises(ParamError, match="version 2; this cppnviz reads version 1"):
        node(newer)


# -- everywhere the node runs --------------------------------------------------------------------------

def fitted_graph(folder: Path, look: Path, **cppn) -> Path:
    """examples/fitted.yaml at 48x32 on a second of tone, writing into `folder`."""
    data = yaml.safe_load((ROOT / "examples" / "fitted.yaml").read_text())
    data["nodes"]["audio"]["params"]["path"] = str(write_tone(folder / "tone.wav", 1.0))
    data["nodes"]["cppn"]["params"].update({"fitted": str(look), "width": 48, "height": 32, **cppn})
    data["nodes"]["video"]["params"].update({"path": str(folder / "out.mp4"), "crf": 0, "preset": "ultrafast"})
    path = folder / "fitted.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_render_with_a_look_is_the_same_every_time(tmp_path, small_look):
    # A look of 8 features, as the example graph's bands give.
    model, figures = fitting.fit(shapes(32), layers=3, hidden=8, n_features=8, steps=100, seed=1, reactivity=1.0)
    look = tmp_path / "eight.npz"
    fitting.save_look(look, model, n_features=8, feature_gain=0.5, figures=figures, image={}, training={})
    graph = fitted_graph(tmp_path, look)
    videos = []
    for _ in range(2):
        result = run_cli("render", graph, "--quiet")
        assert result.returncode == 0, result.stderr
        with av.open(str(tmp_path / "out.mp4")) as container:
            videos.append(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]))
    assert videos[0].shape[0] >= 20 and np.array_equal(videos[0], videos[1])
    assert np.abs(np.diff(videos[0].astype(int), axis=0)).max() > 0    # the tone's frames differ: it moves
    # The graph's own mistakes name the file: a 3-feature look on 8 bands.
    line = errors(run_cli("check", fitted_graph(tmp_path, small_look)))
    assert "carries 8 values" in line and "takes 3" in line and str(small_look) in line


def test_the_cuda_kernel_with_biases_matches_numpy(small_look, monkeypatch, tmp_path_factory):
    # The fused kernel runs on the g++ shim here (tests/test_cuda_shim.py), on the GPU where one is lent.
    import sys

    import cppnviz.nodes.cppn as cppn_module
    from cuda_shim import cupy_standin, gxx

    if gxx.GXX is None:
        pytest.skip("g++ not found: the shim compiles the CUDA kernels with it")
    monkeypatch.setattr(cupy_standin, "build_dir", tmp_path_factory.mktemp("shim"))
    monkeypatch.setitem(sys.modules, "cupy", cupy_standin)
    cppn_module.gpu_unavailable.cache_clear()
    try:
        gpu, cpu = node(small_look, backend="cupy"), node(small_look)
        assert gpu.network.gpu is not None and "#define BIASES 1" in gpu.network.gpu.module.code
        for features in ([0.5, 0.5, 0.5], [0.1, 1.4, 0.7]):
            assert np.abs(frame(gpu, np.array(features)) - frame(cpu, np.array(features))).max() <= 1 / 255
    finally:
        cppn_module.gpu_unavailable.cache_clear()


def test_a_real_gpu_agrees_with_numpy(small_look):
    from cppnviz.nodes.cppn import gpu_unavailable

    reason = gpu_unavailable()
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    gpu, cpu = node(small_look, backend="cupy"), node(small_look)
    for features in ([0.5, 0.5, 0.5], [0.1, 1.4, 0.7]):
        assert np.abs(frame(gpu, np.array(features)) - frame(cpu, np.array(features))).max() <= 1 / 255


def test_live_swaps_in_another_look_between_ticks(small_look, tmp_path):
    # Live, `fitted` is a heavy param: built in a copy (twin + rebuild) and adopted between ticks.
    model, figures = fitting.fit(shapes(32)[::-1], layers=4, hidden=8, n_features=3, steps=100, seed=9)
    other = tmp_path / "other.npz"
    fitting.save_look(other, model, n_features=3, feature_gain=0.5, figures=figures, image={}, training={})
    cppn = node(small_look)
    assert "fitted" in CPPN.heavy
    before = frame(cppn, np.full(3, 0.5))
    twin = cppn.twin({"fitted": str(other)})
    twin.rebuild({"fitted": str(other)})
    cppn.adopt(twin)
    after = frame(cppn, np.full(3, 0.5))
    expected = render(model, coordinates(48, 64), np.full(3, 0.5, np.float32)).reshape(48, 64, 3)
    assert np.abs(after - expected).max() < 1e-5 and not np.allclose(before, after)


def test_touchdesigner_shows_the_look_as_the_offline_renderer_does(tmp_path, td, song):
    # Through the bridge and the strict `td` stand-in of tests/test_touchdesigner.py (its fixtures, imported above).
    model, figures = fitting.fit(shapes(32), layers=3, hidden=8, n_features=8, steps=100, seed=2, reactivity=1.0)
    look = tmp_path / "eight.npz"
    fitting.save_look(look, model, n_features=8, feature_gain=0.5, figures=figures, image={}, training={})
    cppn = {"type": "cppn", "inputs": {"features": "smooth.features"},
            "params": {"width": 40, "height": 24, "fitted": str(look)}}
    tdt.write_graph(song.graph, lambda d: d["nodes"].update(bars=cppn))
    expected = tdt.offline_frames(song.graph)
    audio = td.audiodeviceinCHOP("audio")
    top = tdt.make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    shown = []
    for block in list(tdt.blocks(song.samples))[:40]:
        tdt.cook(td, top, audio, block)
        assert top.standin_errors == [] and top.standin_warnings == []
        shown.append((tdt.bridge_of(top).frame, tdt.picture(top).copy()))
    for k, rgb in shown:
        assert np.abs(rgb.astype(int) - tdt.as_uint8(expected[k]).astype(int)).max() <= 1, f"frame {k}"
    assert len({rgb.tobytes() for _, rgb in shown}) > 10   # the look moves with the music


def test_the_shipped_look_runs_live(tmp_path):
    # `cppnviz live` on pyo's null backend (no sound card, no screen): the example graph, made live-capable.
    from test_live import run_live

    result = run_live("live", ROOT / "examples" / "fitted.yaml", "--audio-backend", "null", "--no-window",
                      "--seconds", 1, "--osc-port", 0, "--oscquery-port", 0, "--set", "norm.mode=running_median",
                      "--set", "cppn.width=64", "--set", "cppn.height=64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^live: \d+ frames in", result.stderr, re.M) and "error" not in result.stderr.lower(), result.stderr
