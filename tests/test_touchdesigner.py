"""The TouchDesigner bridge, driven the way TouchDesigner drives it, against the strict stand-in in tests/td_standin.

TouchDesigner cannot run here: tests/td_standin/td.py encodes the documented API (and rejects what
TouchDesigner rejects), acting as TouchDesigner 2023 and as 2025 (every test that uses it runs
under both). The pictures and channels are checked against the offline renderer and the real
`cppnviz features` command on the same audio. What a real TouchDesigner does that an easy stand-in
would hide is tested in test_touchdesigner_td_behaviour.py.
"""

from __future__ import annotations

import csv
import importlib
import sys
import threading
import time
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SR, run_cli, write_wav
from cppnviz import registry, runner
from cppnviz.graph import load_graph
from cppnviz.node import Node
from cppnviz.nodes.audio import decode_audio
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import Input, Output, Spec
from cppnviz.timebase import sample_at

STANDIN = Path(__file__).parent / "td_standin"
FPS = 60
BLOCK = SR // FPS  # 735 samples: one frame of audio at 44100 Hz, 60 fps


# -- a small picture node for these tests (the real renderers are written elsewhere) ------------------

class Bars(Node):
    """Test picture: one bar per feature value rising from the bottom row, over a top-to-bottom gradient."""

    type_name = "test_bars"
    stage = "render"
    inputs = (Input("features", "features", "one bar per value"),)
    outputs = (Output("frame", "frame", "the bars, (height, width, 3)"),)
    params = (
        Param("width", "int", 32, "picture width", min=8, max=512, unit="px"),
        Param("height", "int", 24, "picture height", min=8, max=512, unit="px"),
        Param("gain", "float", 0.25, "bar height per unit of feature", min=0, max=10),
        Param("sleep", "float", 0.0, "seconds to wait per frame (a slow renderer)", min=0, max=1, unit="s"),
        Param("fail", "bool", False, "raise inside process() (a bug)"),
    )
    threads: set[str] = set()

    def configure(self, inputs):
        self.size = inputs["features"].size
        return {"frame": Spec("frame", shape=(self.p.height, self.p.width, 3))}

    def image(self, features: np.ndarray) -> np.ndarray:
        h, w = self.p.height, self.p.width
        height_from_bottom = (np.arange(h)[::-1, None] + 0.5) / h
        column = np.minimum(np.arange(w) * self.size // w, self.size - 1)
        level = np.asarray(features, dtype=np.float32)[column] * self.p.gain
        img = np.empty((h, w, 3), dtype=np.float32)
        img[..., 0] = np.clip((level[None, :] - height_from_bottom) * 4.0, 0.0, 1.0)
        img[..., 1] = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        img[..., 2] = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]  # dark top row, bright bottom row
        return img

    def process(self, tick, features):
        Bars.threads.add(threading.current_thread().name)
        if self.p.fail:
            raise RuntimeError("test_bars was told to fail")
        if self.p.sleep:
            time.sleep(self.p.sleep)
        return {"frame": self.image(features)}


class FakeDeviceArray(np.ndarray):
    """Host memory behind a cupy-like face: `.data.ptr`, a module named cupy, and no way back to the host."""

    __module__ = "cupy"

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        raise AssertionError("the GPU path copied a device array to the host")


def fake_cupy() -> types.ModuleType:
    """The subset of cupy the bridge calls, over FakeDeviceArray; asnumpy fails the test."""
    module = types.ModuleType("cupy")
    module.uint8, module.float32 = np.uint8, np.float32
    module.empty = lambda shape, dtype: np.empty(shape, dtype).view(FakeDeviceArray)
    module.clip = np.clip
    stream = types.SimpleNamespace(ptr=0xC0FFEE, synchronize=lambda: None)
    module.cuda = types.SimpleNamespace(get_current_stream=lambda: stream)

    def asnumpy(_):
        raise AssertionError("the GPU path copied a device array to the host")
    module.asnumpy = asnumpy
    return module


class DeviceBars(Bars):
    """Bars delivered as a (fake) device array, as a GPU renderer would."""

    type_name = "test_device_bars"

    def process(self, tick, features):
        return {"frame": self.image(features).view(FakeDeviceArray)}


# -- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(params=[2023, 2025], ids=["td2023", "td2025"])
def td(monkeypatch, request):
    """The stand-in `td` module as TouchDesigner 2023 and 2025, importable by the callbacks; test nodes registered."""
    monkeypatch.syspath_prepend(str(STANDIN))
    module = importlib.import_module("td")
    module.standin_reset(request.param)
    monkeypatch.setitem(registry.all_types(), Bars.type_name, Bars)
    monkeypatch.setitem(registry.all_types(), DeviceBars.type_name, DeviceBars)
    Bars.threads = set()
    yield module
    for name in ("cppnviz.host_bridge.touchdesigner.script_top", "cppnviz.host_bridge.touchdesigner.script_chop"):
        callbacks = sys.modules.get(name)
        for bridge in getattr(callbacks, "_bridges", {}).values():
            bridge.close()
    assert module.thread_violations == []
    assert module.standin_run_errors == []   # a deferred run that raised (TouchDesigner prints it and goes on)


def music(seconds: float = 2.0) -> np.ndarray:
    """Stereo test audio that changes in every band over time, (n, 2)."""
    t = np.arange(round(seconds * SR)) / SR
    rng = np.random.default_rng(7)
    left = 0.3 * np.sin(2 * np.pi * 110 * t) * (1 + np.sin(2 * np.pi * 1.5 * t)) / 2
    left += 0.2 * np.sin(2 * np.pi * (300 + 900 * t) * t)
    bursts = (np.sin(2 * np.pi * 4 * t) > 0.6) * rng.standard_normal(len(t)) * 0.15
    right = 0.25 * np.sin(2 * np.pi * 2500 * t) * ((t % 0.5) < 0.25) + bursts
    return np.clip(np.stack([left, right], axis=1), -1, 1)


GRAPH = {
    "fps": FPS,
    "nodes": {
        "audio": {"type": "audio_file", "params": {"path": "song.wav", "normalize": False}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"},
                  "params": {"n_fft": 2048, "window": "none", "bands": "octave8", "align": "end"}},
        "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"},
                 "params": {"mode": "running_median", "window": 1.0, "gain": 0.5, "gate": 0.1}},
        "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}, "params": {"time_constant": 0.2}},
        "bars": {"type": "test_bars", "inputs": {"features": "smooth.features"}, "params": {}},
    },
}


@pytest.fixture
def song(tmp_path):
    """A graph file, its WAV, and the decoded samples a CHOP would deliver (channels, n)."""
    write_wav(tmp_path / "song.wav", music())
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(GRAPH, sort_keys=False))
    samples = decode_audio(str(tmp_path / "song.wav"), SR).T.copy()
    return types.SimpleNamespace(graph=path, samples=samples, folder=tmp_path)


def write_graph(path: Path, change=None) -> Path:
    data = yaml.safe_load(yaml.safe_dump(GRAPH))
    if change:
        change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def offline_frames(graph_path: Path, node: str = "bars", port: str = "frame") -> list[np.ndarray]:
    """The offline renderer's values of node.port for every frame (graph loaded as `cppnviz render` does)."""
    graph = load_graph(graph_path)
    values: list[np.ndarray] = []
    runner.run(graph, runner.total_frames(graph), names=graph.upstream(node),
               on_tick=lambda k, s: values.append(np.array(s.outputs[(node, port)])))
    return values


def as_uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(frame * 255.0 + 0.5), 0, 255).astype(np.uint8)


def make_op(td, kind: str, name: str = "picture"):
    """A Script TOP or CHOP whose Callbacks DAT imports the bridge's callbacks, set up as TouchDesigner does."""
    setup = importlib.import_module("cppnviz.host_bridge.touchdesigner.setup_network")
    dat = td.textDAT(f"{name}_callbacks")
    dat.text = setup.TOP_CALLBACKS if kind == "top" else setup.CHOP_CALLBACKS
    op = (td.scriptTOP if kind == "top" else td.scriptCHOP)(name)
    op.par.callbacks = dat
    td.standin_setup(op)
    return op


def bridge_of(op):
    """The bridge behind an operator (the DAT's star import leaves out the private names)."""
    kind = "script_top" if type(op).__name__ == "scriptTOP" else "script_chop"
    return sys.modules[f"cppnviz.host_bridge.touchdesigner.{kind}"]._bridge(op)


def cook(td, op, audio=None, block=None, frames: int = 1):
    """One TouchDesigner frame: the audio CHOP gets its time slice, time moves on, the operator cooks."""
    if audio is not None:
        audio.standin_feed(block if block is not None else np.zeros((2, 0), np.float32))
    td.standin_advance(frames, FPS)
    assert td.standin_cook(op), op.standin_script_errors
    return op


def settle(td):
    """Start the next frame without cooking: what the last cook left for then (new pages, their values) is done."""
    td.standin_advance(1, FPS)


def blocks(samples: np.ndarray, sizes=None):
    """The first cook's slice is empty (frame 0 is due at sample 0); then slices of `sizes` (default 735)."""
    yield samples[:, :0]
    pos, i = 0, 0
    while pos < samples.shape[1]:
        size = sizes[i % len(sizes)] if sizes else BLOCK
        yield samples[:, pos:pos + size]
        pos, i = pos + size, i + 1


def picture(op) -> np.ndarray:
    """What the TOP shows, turned back into row 0 = top, RGB."""
    assert op.standin_image is not None
    return op.standin_image[::-1, :, :3]


# -- the stand-in is as strict as TouchDesigner ------------------------------------------------------------

def test_standin_rejects_what_touchdesigner_rejects(td):
    top = td.scriptTOP("strict")
    good = np.zeros((4, 6, 4), np.uint8)
    with pytest.raises(td.tdError, match="outside onCook"):
        top.copyNumpyArray(good)
    with td.standin_inside_cook(top):
        top.copyNumpyArray(good)
        top.copyNumpyArray(np.zeros((4, 6, 4), np.float32))
        top.copyNumpyArray(np.zeros((4, 6, 1), np.uint16))
        with pytest.raises(td.tdError, match="dtype float64"):
            top.copyNumpyArray(np.zeros((4, 6, 4)))
        with pytest.raises(td.tdError, match="C-contiguous"):
            top.copyNumpyArray(np.flipud(good))           # the negative-stride view np.flipud returns
        with pytest.raises(td.tdError, match="channels"):
            top.copyNumpyArray(np.zeros((4, 6, 5), np.uint8))
        with pytest.raises(td.tdError, match="shape"):
            top.copyNumpyArray(np.zeros((4, 6), np.uint8))

    page = top.appendCustomPage("Checks")
    for bad in ("band_gain", "bandgain", "BandGain", "Band gain", "1band", ""):
        with pytest.raises(td.tdError, match="invalid parameter name"):
            page.appendFloat(bad)
    first = page.appendFloat("Bandgain2")[0]
    with pytest.raises(td.tdError, match="already exists"):
        page.appendInt("Bandgain2", replace=False)
    assert page.appendInt("Bandgain2")[0].style == "Int" and not first.valid   # replace=True, the default
    with pytest.raises(td.tdError, match="no longer exists"):
        first.eval()
    with pytest.raises(AttributeError):
        top.par.Nosuchpar

    shape = td.CUDAMemoryShape()
    shape.width, shape.height, shape.numComps, shape.dataType = 6, 4, 4, np.uint8
    with pytest.raises(AttributeError):
        shape.stride = 24                            # exactly the documented fields
    with td.standin_inside_cook(top):
        with pytest.raises(td.tdError, match="size"):
            top.copyCUDAMemory(good.ctypes.data, good.nbytes - 1, shape)
        with pytest.raises(td.tdError, match="output resolution"):
            top.copyCUDAMemory(good.ctypes.data, good.nbytes, shape, stream=5)
    top.par.outputresolution, top.par.resolutionw, top.par.resolutionh = "custom", 6, 4
    with td.standin_inside_cook(top), pytest.raises(td.tdError, match="pixel format 'rgba32float'"):
        top.copyCUDAMemory(good.ctypes.data, good.nbytes, shape, stream=5)   # the default format: 32-bit float
    top.par.format = "rgba8fixed"
    with td.standin_inside_cook(top):
        top.copyCUDAMemory(good.ctypes.data, good.nbytes, shape, stream=5)

    chop = td.scriptCHOP("strictchop")
    with td.standin_inside_cook(chop):
        chop.numSamples = 1
        with pytest.raises(td.tdError, match="rate before numSamples"):
            chop.rate = 60
        with pytest.raises(td.tdError, match="expected 1 values"):
            chop.appendChan("a").vals = [1.0, 2.0]
        with pytest.raises(td.tdError, match="float32"):
            chop.copyNumpyArray(np.zeros((1, 1)))


def test_standin_records_calls_from_other_threads(td):
    top = td.scriptTOP("guarded")
    page = top.appendCustomPage("Page")
    par = page.appendFloat("Value")[0]
    errors = []

    def worker():
        try:
            par.eval()
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=worker, name="intruder")
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]
    assert td.thread_violations == ["Par.eval from thread 'intruder'"]
    td.thread_violations.clear()  # the fixture checks for violations the bridge made


# -- parameter names ---------------------------------------------------------------------------------------

def test_every_registered_node_types_params_get_valid_unique_names(td):
    from cppnviz.host_bridge.touchdesigner import naming, pages
    from cppnviz.host_bridge.touchdesigner.layout import build_layout
    from cppnviz.host_bridge.touchdesigner.pipeline import RESERVED

    types_ = registry.all_types()
    assert len(types_) >= 6
    nodes = {}
    for type_name, cls in types_.items():
        values = {p.name: ("" if p.default is REQUIRED else p.default) for p in cls.params}
        nodes[type_name] = types.SimpleNamespace(params=cls.params, p=types.SimpleNamespace(**values))
    graph = types.SimpleNamespace(nodes=nodes, ctx=types.SimpleNamespace(fps=Fraction(60)))
    layout = build_layout(graph, list(nodes), RESERVED, generation=1, targets=(), target="")
    names = [spec.name for spec in layout.specs]
    assert len(names) == sum(len(cls.params) for cls in types_.values())
    assert len(set(names)) == len(names), "collision"
    assert not set(names) & set(RESERVED)
    assert all(naming.TD_NAME.match(n) for n in names)
    # The same graph always gives the same names.
    assert [s.name for s in build_layout(graph, list(nodes), RESERVED, generation=2, targets=(), target="").specs] == names
    # And TouchDesigner (the strict stand-in) accepts the whole layout as pages.
    top = td.scriptTOP("everything")
    pages.build_node_pages(top, layout, keep_values=False)
    assert sorted(p.name for page in top.customPages for p in page.pars) == sorted(names)


def test_name_rule_and_collisions():
    from cppnviz.host_bridge.touchdesigner.naming import assign_names, base_name
    from cppnviz.host_bridge.touchdesigner.pipeline import RESERVED

    assert base_name("smooth", "time_constant") == "Smoothtimeconstant"
    assert base_name("bands", "n_fft") == "Bandsnfft"
    assert base_name("cppn_2", "seed") == "Cppn2seed"
    pairs = [("a_b", "c"), ("a", "b_c"), ("ab", "c"), ("gra", "ph"), ("abc", "2")]
    names = assign_names(pairs, RESERVED)
    assert names == {("a_b", "c"): "Abc", ("a", "b_c"): "Abc2", ("ab", "c"): "Abc3", ("gra", "ph"): "Graph2",
                     ("abc", "2"): "Abc22"}
    assert assign_names(pairs, RESERVED) == names


def test_node_pages_follow_the_declarations(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    assert top.standin_errors == []
    settle(td)                                   # the pages are built at the start of the next frame
    assert [p.name for p in top.customPages] == ["cppnviz", "audio", "bands", "norm", "smooth", "bars"]
    tc = top.par.Smoothtimeconstant
    assert (tc.style, tc.label, tc.min, tc.max, tc.normMin, tc.normMax, tc.default) == \
        ("Float", "time_constant", 0, 60, 0, 60, 0.3)
    assert tc.eval() == 0.2 and not tc.clampMin and not tc.clampMax and "time constant" in tc.help
    assert top.par.Bandsnfft.style == "Int" and top.par.Bandsnfft.eval() == 2048
    assert top.par.Bandswindow.menuNames == ["none", "hann"] and top.par.Bandswindow.eval() == "none"
    assert top.par.Bandsedges.style == "Str" and top.par.Bandsedges.eval().startswith("20, 60, 250")
    assert top.par.Normgain.eval() == "0.5"
    assert top.par.Audiopath.style == "File" and top.par.Audiopath.eval() == str(song.folder / "song.wav")
    assert top.par.Audionormalize.style == "Toggle" and top.par.Audionormalize.eval() is False
    assert top.par.Output.menuNames == ["auto", "bars.frame"]
    assert top.par.Dtype.menuNames == ["uint8", "float32"]


# -- pictures and channels against the offline renderer ---------------------------------------------------

CPPN = {"type": "cppn", "inputs": {"features": "smooth.features"},
        "params": {"width": 40, "height": 24, "layers": 4, "hidden": 8, "period": 0.5}}


@pytest.mark.parametrize("renderer,dtype", [("test_bars", "uint8"), ("test_bars", "float32"), ("cppn", "uint8"),
                                            ("cppn", "float32")])
def test_pictures_match_the_offline_renderer(td, song, renderer, dtype):
    if renderer == "cppn":
        write_graph(song.graph, lambda d: d["nodes"].update(bars=CPPN))
    expected = offline_frames(song.graph)
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop, top.par.Dtype = str(song.graph), audio, dtype
    shown = []
    for block in blocks(song.samples):
        cook(td, top, audio, block)
        assert top.standin_errors == [] and top.standin_warnings == []
        image = top.standin_image
        assert image.shape == expected[0].shape[:2] + (4,)
        assert image.dtype == np.dtype(dtype) and image.flags.c_contiguous
        shown.append((bridge_of(top).frame, picture(top).copy(), image[..., 3].copy()))
    # The last slice completes frame 120 too, which the offline video (120 frames for 2 s) does not have.
    assert [k for k, _, _ in shown] == list(range(len(expected) + 1))
    for k, rgb, alpha in shown[:-1]:
        if dtype == "uint8":
            assert np.abs(rgb.astype(int) - as_uint8(expected[k]).astype(int)).max() <= 1, f"frame {k}"
            assert (alpha == 255).all()
        else:
            np.testing.assert_allclose(rgb, expected[k], atol=1e-5, err_msg=f"frame {k}")
            assert (alpha == 1.0).all()
    if renderer == "test_bars":
        # The bottom scanline comes first: the gradient is dark at the top row of the picture.
        assert shown[-1][1][0, 0, 2] < shown[-1][1][-1, 0, 2]
    assert len({rgb.tobytes() for _, rgb, _ in shown}) > 20  # the picture moved with the music


def read_csv(path: Path) -> list[list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [[float(x) for x in row[2:]] for row in rows[1:]]


@pytest.mark.parametrize("sizes", [None, [1000, 300, 2205, 1]], ids=["735-sample slices", "irregular slices"])
def test_chop_channels_equal_cppnviz_features(td, song, sizes):
    # The command runs in its own process, where the test's picture node does not exist: analysis only.
    write_graph(song.graph, lambda d: d["nodes"].pop("bars"))
    result = run_cli("features", song.graph, "--node", "smooth", "--out", song.folder / "f.csv")
    assert result.returncode == 0, result.stderr
    expected = read_csv(song.folder / "f.csv")
    audio = td.audiodeviceinCHOP("audio")
    chop = make_op(td, "chop", "features")
    chop.inputConnectors[0].connect(audio)
    chop.par.Graph = str(song.graph)
    seen = []
    for block in blocks(song.samples, sizes):
        cook(td, chop, audio, block)
        assert chop.standin_errors == []
        assert [c.name for c in chop.chans()] == [f"smooth_features_{i}" for i in range(8)]
        assert chop.numSamples == 1 and chop.rate == FPS
        seen.append((bridge_of(chop).frame, [c.vals[0] for c in chop.chans()]))
    assert chop.par.Features.eval() == "auto" and "smooth.features" in chop.par.Features.menuNames
    assert seen[-1][0] == len(expected)  # the last slice completes one frame past the offline run's end
    if sizes is None:
        assert [k for k, _ in seen] == list(range(len(expected) + 1))
    for k, values in seen[:-1]:
        np.testing.assert_allclose(values, expected[k], rtol=2e-5, atol=1e-6, err_msg=f"frame {k}")


def test_without_an_audio_chop_the_file_runs_paced_by_time(td, song):
    expected = offline_frames(song.graph)  # align: end, so the live file windows match the offline ones
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    for k in range(40):
        cook(td, top)
        assert bridge_of(top).frame == k
        assert np.abs(picture(top).astype(int) - as_uint8(expected[k]).astype(int)).max() <= 1
    cook(td, top, frames=3)  # TouchDesigner dropped two frames: the clock, not the cook count, decides
    assert bridge_of(top).frame == 42


def test_resampled_chop_keeps_the_clock(td, song):
    audio = td.audiodeviceinCHOP("audio", rate=48000)
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    cook(td, top, audio)
    for _ in range(60):
        cook(td, top, audio, np.zeros((2, 800), np.float32))  # 48000 / 60
    assert top.standin_errors == []
    assert abs(bridge_of(top).frame - 60) <= 1


# -- parameters from TouchDesigner ------------------------------------------------------------------------

def node(op, name):
    return bridge_of(op).pipeline.session.graph.nodes[name]


def test_parameter_changes_reach_the_nodes_and_are_clamped_with_a_warning(td, song):
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    feed = blocks(song.samples)
    cook(td, top, audio, next(feed))
    settle(td)

    top.par.Smoothtimeconstant = 0.5
    cook(td, top, audio, next(feed))
    assert node(top, "smooth").p.time_constant == 0.5 and top.standin_warnings == []

    top.par.Smoothtimeconstant = 100.0  # past max 60: clamped, and the operator says so on every cook
    cook(td, top, audio, next(feed))
    assert node(top, "smooth").p.time_constant == 60.0
    assert any("smooth.time_constant" in w and "clamped to 60" in w for w in top.standin_warnings)
    cook(td, top, audio, next(feed))
    assert any("clamped" in w for w in top.standin_warnings)
    top.par.Smoothtimeconstant = 0.3
    cook(td, top, audio, next(feed))
    assert top.standin_warnings == [] and node(top, "smooth").p.time_constant == 0.3

    top.par.Normgain = "0.5, 1, 1, 1, 1, 1, 1, 2"  # a floats param: numbers separated by commas
    cook(td, top, audio, next(feed))
    assert node(top, "norm").p.gain == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    top.par.Normgain = "lots"                    # the wrong type: an error, the node keeps its value
    cook(td, top, audio, next(feed))
    assert any("norm.gain" in e and "numbers separated by commas" in e for e in top.standin_errors)
    assert node(top, "norm").p.gain == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    assert top.standin_image is not None          # the picture goes on meanwhile
    top.par.Normgain = "0.5"
    cook(td, top, audio, next(feed))
    assert top.standin_errors == [] and node(top, "norm").p.gain == 0.5

    top.par.Bandsbands = "post"                  # 7 bands instead of 8: the nodes downstream follow
    cook(td, top, audio, next(feed))
    assert top.standin_errors == [] and node(top, "bars").size == 7
    assert bridge_of(top).pipeline.session.graph.specs[("smooth", "features")].size == 7

    top.par.Normgain = "1, 2"                    # 2 gains for 7 bands: refused in context, graph rebuilt without it
    cook(td, top, audio, next(feed))
    assert any("norm.gain" in e and "one per band" in e for e in top.standin_errors)
    assert node(top, "norm").p.gain == 0.5 and node(top, "bands").p.bands == "post"
    top.par.Normgain = "1"
    cook(td, top, audio, next(feed))
    assert top.standin_errors == [] and node(top, "norm").p.gain == 1.0

    top.par.Bandsnfft = 1025                     # an odd window: configure refuses it
    cook(td, top, audio, next(feed))
    assert any("bands.n_fft" in e and "even" in e for e in top.standin_errors)
    top.par.Bandsnfft = 1024
    cook(td, top, audio, next(feed))
    assert top.standin_errors == [] and node(top, "bands").p.n_fft == 1024


# -- errors, reload, reset ----------------------------------------------------------------------------------

def test_a_bad_graph_path_shows_an_error_and_the_fix_recovers(td, song):
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Audiochop = audio
    cook(td, top, audio)
    assert any("no graph file set" in e for e in top.standin_errors)
    top.par.Graph = str(song.folder / "missing.yaml")
    cook(td, top, audio)
    assert any("graph file not found" in e for e in top.standin_errors)
    assert top.standin_image is None and bridge_of(top).pipeline.session is None  # nothing half-built
    assert top.standin_script_errors == []

    broken = song.folder / "broken.yaml"
    write_graph(broken, lambda d: d["nodes"]["smooth"]["params"].update(time_constant=-1))
    top.par.Graph = str(broken)
    cook(td, top, audio)
    assert any("smooth" in e and "time_constant" in e for e in top.standin_errors)
    write_graph(broken)  # the user fixes the file: the next cook reads it again
    cook(td, top, audio, song.samples[:, :BLOCK])
    assert top.standin_errors == [] and top.standin_image is not None

    top.par.Graph = str(song.folder / "missing.yaml")
    cook(td, top, audio)
    assert top.standin_errors and bridge_of(top).pipeline.session is None
    top.par.Graph = str(song.graph)
    cook(td, top, audio, song.samples[:, :BLOCK])
    assert top.standin_errors == [] and bridge_of(top).frame is not None


def test_a_missing_audio_file_is_tried_again_and_a_bad_audio_slice_passes(td, song):
    later = write_graph(song.folder / "later.yaml", lambda d: d["nodes"]["audio"]["params"].update(path="later.wav"))
    top = make_op(td, "top")
    top.par.Graph = str(later)
    cook(td, top)
    assert any("later.wav" in e and "file not found" in e for e in top.standin_errors)
    write_wav(song.folder / "later.wav", music(0.5))  # the user copies the song in; the graph file is unchanged
    cook(td, top, frames=90)                          # retried once per second of TouchDesigner's clock
    assert top.standin_errors == [] and top.standin_image is not None

    audio = td.audiodeviceinCHOP("audio")
    top.par.Audiochop = audio
    cook(td, top, audio, song.samples[:, :BLOCK])
    audio.rate = 0                                    # one unusable slice: an error, the graph stays
    cook(td, top, audio, song.samples[:, BLOCK:2 * BLOCK])
    assert any("sample rate" in e for e in top.standin_errors)
    session = bridge_of(top).pipeline.session
    assert session is not None
    audio.rate = SR
    cook(td, top, audio, song.samples[:, 2 * BLOCK:3 * BLOCK])
    assert top.standin_errors == [] and bridge_of(top).pipeline.session is session


def test_a_live_incapable_graph_is_refused_with_the_running_variant_named(td, song):
    whole = write_graph(song.folder / "whole.yaml", lambda d: d["nodes"]["norm"]["params"].update(mode="track_median"))
    top = make_op(td, "top")
    top.par.Graph = str(whole)
    cook(td, top)
    assert any("node 'norm'" in e and "running_median" in e for e in top.standin_errors)


def test_a_bug_raises_once_as_a_script_error_then_shows_until_reload(td, song):
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    cook(td, top, audio)
    settle(td)
    top.par.Barsfail = True
    audio.standin_feed(song.samples[:, :BLOCK])
    assert not td.standin_cook(top)  # raised from onCook: TouchDesigner shows a script error
    assert "test_bars was told to fail" in top.standin_script_errors[-1]
    cook(td, top, audio)
    assert any("internal error" in e for e in top.standin_errors)
    assert bridge_of(top).pipeline.session is None
    top.par.Reload.pulse()                       # the file says fail: false
    cook(td, top, audio, song.samples[:, :BLOCK])
    assert top.standin_errors == [] and top.standin_image is not None
    settle(td)                                   # and the page says so from the next frame
    assert top.par.Barsfail.eval() is False
    cook(td, top, audio, song.samples[:, BLOCK:2 * BLOCK])
    assert top.standin_errors == [] and len(top.standin_script_errors) == 1


def test_reload_rereads_the_graph_and_reset_restarts_the_state(td, song):
    expected = offline_frames(song.graph)
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    feed = list(blocks(song.samples))
    for block in feed[:30]:
        cook(td, top, audio, block)
    assert bridge_of(top).frame == 29

    top.par.Reset.pulse()
    cook(td, top, audio, feed[0])
    assert bridge_of(top).frame == 0 and node(top, "smooth").state is not None
    for block in feed[1:10]:
        cook(td, top, audio, block)
    assert np.abs(picture(top).astype(int) - as_uint8(expected[9]).astype(int)).max() <= 1  # as if from the start

    top.par.Barsgain = 2.0                       # a tweak made in TouchDesigner...
    cook(td, top, audio, feed[10])
    write_graph(song.graph, lambda d: d["nodes"]["bars"]["params"].update(gain=0.5, width=40))
    top.par.Reload.pulse()                       # ...gives way to the file on Reload
    cook(td, top, audio, feed[11])
    settle(td)
    assert top.par.Barsgain.eval() == 0.5 and node(top, "bars").p.gain == 0.5
    assert top.par.Barswidth.eval() == 40 and top.standin_image.shape == (24, 40, 4)
    assert bridge_of(top).frame == 1  # a new graph starts its clock again: frames 0 and 1 by this slice


def test_changing_the_audio_source_keeps_the_tweaks(td, song):
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    settle(td)
    assert "Audiopath" in [p.name for page in top.customPages for p in page.pars]
    top.par.Smoothtimeconstant = 1.5
    cook(td, top)
    top.par.Audiochop = audio                   # audio_file becomes audio_in: other pages, same tweak
    cook(td, top, audio, song.samples[:, :BLOCK])
    settle(td)
    names = [p.name for page in top.customPages for p in page.pars]
    assert "Audiopath" not in names and "Audiohistory" in names
    assert node(top, "audio").type_name == "audio_in" and node(top, "audio").p.sample_rate == SR
    assert node(top, "smooth").p.time_constant == 1.5 and top.par.Smoothtimeconstant.eval() == 1.5


def test_setup_parameters_again_keeps_every_value(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    settle(td)
    top.par.Barsgain = 3.0
    cook(td, top)
    td.standin_setup(top)                       # TouchDesigner runs it again when the DAT is reassigned
    assert top.par.Graph.eval() == str(song.graph) and top.par.Barsgain.eval() == 3.0
    assert [p.name for p in top.customPages][0] == "cppnviz"
    cook(td, top)
    assert top.standin_errors == [] and node(top, "bars").p.gain == 3.0


# -- async ---------------------------------------------------------------------------------------------------

def test_async_renders_off_the_main_thread_without_touching_touchdesigner(td, song):
    write_graph(song.graph, lambda d: d["nodes"]["bars"]["params"].update(sleep=0.004))  # slower than some cooks
    audio = td.audiodeviceinCHOP("audio")
    reference = make_op(td, "top", "reference")
    reference.par.Graph, reference.par.Audiochop = str(song.graph), audio
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop, top.par.Async = str(song.graph), audio, True
    shown = []
    for block in list(blocks(song.samples))[:60]:
        audio.standin_feed(block)
        td.standin_advance(1, FPS)
        assert td.standin_cook(top), top.standin_script_errors
        assert td.standin_cook(reference)
        shown.append(bridge_of(top).frame)
    assert "cppnviz-td-render" in Bars.threads and "MainThread" in Bars.threads  # async, and the sync reference
    assert bridge_of(top).driver.wait_idle(10)
    audio.standin_feed(np.zeros((2, 0), np.float32))
    cook(td, top, audio)                        # no new samples: shows the newest finished frame
    assert bridge_of(top).frame == 59
    np.testing.assert_array_equal(top.standin_image, reference.standin_image)
    frames_shown = [k for k in shown if k is not None]
    assert frames_shown == sorted(frames_shown) and len(frames_shown) > 10
    assert td.thread_violations == []

    top.par.Smoothtimeconstant = 100.0          # a clamp warning comes back from the worker
    cook(td, top, audio)
    assert bridge_of(top).driver.wait_idle(10)
    cook(td, top, audio)
    assert any("clamped" in w for w in top.standin_warnings)

    top.par.Graph = str(song.folder / "missing.yaml")  # errors come back too, and the fix recovers
    cook(td, top, audio)
    bridge_of(top).driver.wait_idle(10)
    cook(td, top, audio)
    assert any("graph file not found" in e for e in top.standin_errors)
    top.par.Graph = str(song.graph)
    cook(td, top, audio, song.samples[:, :BLOCK])
    bridge_of(top).driver.wait_idle(10)
    cook(td, top, audio)
    assert top.standin_errors == [] and top.standin_image is not None

    top.par.Async = False                       # back to inline: the worker stops
    cook(td, top, audio, song.samples[:, BLOCK:2 * BLOCK])
    assert bridge_of(top).driver is None and top.standin_errors == []
    assert td.thread_violations == []


# -- the GPU path -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_device_frames_go_through_copy_cuda_memory(td, song, monkeypatch, dtype):
    """With a fake cupy: proves the branch, the layout (flipped, BGRA/RGBA, contiguous), the shape fields, the
    stream, and that no host copy is asked for. It cannot prove real cupy or TouchDesigner's CUDA interop."""
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    device_graph = write_graph(song.folder / "device.yaml",
                               lambda d: d["nodes"]["bars"].update(type="test_device_bars"))
    audio = td.audiodeviceinCHOP("audio")
    host = make_op(td, "top", "host")
    host.par.Graph, host.par.Audiochop, host.par.Dtype = str(song.graph), audio, dtype
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop, top.par.Dtype = str(device_graph), audio, dtype
    for k, block in enumerate(list(blocks(song.samples))[:20]):
        audio.standin_feed(block)
        td.standin_advance(1, FPS)
        assert td.standin_cook(top), top.standin_script_errors
        assert td.standin_cook(host)
        if k == 0:   # the TOP's resolution and format are set for this memory at the next frame's start
            assert top.standin_cuda == []
            continue
        record = top.standin_cuda[-1]
        assert (record["width"], record["height"], record["numComps"]) == (32, 24, 4)
        assert record["dataType"] is (np.uint8 if dtype == "uint8" else np.float32)
        assert record["stream"] == 0xC0FFEE and record["size"] == 32 * 24 * 4 * np.dtype(dtype).itemsize
        rgba = top.standin_image[..., [2, 1, 0, 3]] if dtype == "uint8" else top.standin_image
        np.testing.assert_array_equal(rgba, host.standin_image)
    assert len(top.standin_cuda) == 19


# -- the network script -------------------------------------------------------------------------------------------

def test_setup_network_builds_a_working_network(td, song):
    setup = importlib.import_module("cppnviz.host_bridge.touchdesigner.setup_network")
    project = td.baseCOMP("project1")
    made = setup.build(project, graph=str(song.graph))
    top, chop, audio = made["top"], made["chop"], made["audio"]
    assert isinstance(top, td.scriptTOP) and isinstance(chop, td.scriptCHOP) and isinstance(audio, td.audiodeviceinCHOP)
    assert chop.inputs == [audio]
    assert top.par.Audiochop.eval() is audio and chop.par.Graph.eval() == str(song.graph)
    module = made["top_callbacks"].module
    assert module.cook is module.onCook and module.setupParameters is module.onSetupParameters
    for block in list(blocks(song.samples))[:5]:
        audio.standin_feed(block)
        td.standin_advance(1, FPS)
        assert td.standin_cook(top) and td.standin_cook(chop)
    assert top.standin_errors == [] and chop.standin_errors == []
    assert top.standin_image.shape == (24, 32, 4) and chop.numChans == 8


# -- the clock's arithmetic and the graph swap ----------------------------------------------------------------------

def test_last_due_is_the_inverse_of_sample_at():
    from cppnviz.host_bridge.touchdesigner.session import last_due

    for sr, fps in ((44100, Fraction(60)), (48000, Fraction(2997, 100)), (22050, Fraction(25))):
        for received in list(range(0, 5000)) + [10 ** 7, 10 ** 7 + 1]:
            k = last_due(received, sr, fps)
            assert sample_at(k, sr, fps) <= received < sample_at(k + 1, sr, fps)


def test_pushed_audio_replaces_the_audio_file_node():
    from cppnviz.errors import GraphError
    from cppnviz.host_bridge.touchdesigner.session import with_pushed_audio

    data = {"fps": 30, "nodes": {"song": {"type": "audio_file", "params": {"path": "x.wav", "sample_rate": 22050}},
                                 "bands": {"type": "stft_bands", "inputs": {"audio": "song.audio"}}}}
    swapped = with_pushed_audio(data)
    assert swapped["nodes"]["song"] == {"type": "audio_in", "params": {"sample_rate": 22050}}
    assert swapped["nodes"]["bands"] is data["nodes"]["bands"] and data["nodes"]["song"]["type"] == "audio_file"
    two = {"nodes": {**data["nodes"], "other": {"type": "audio_file", "params": {"path": "y.wav"}}}}
    with pytest.raises(GraphError, match="exactly one audio_file"):
        with_pushed_audio(two)


def test_output_menu_switches_pictures_and_dtype_switches_the_format(td, song):
    write_graph(song.graph, lambda d: d["nodes"].update(cppn=CPPN))
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    feed = blocks(song.samples)
    cook(td, top, audio, next(feed))
    settle(td)
    assert top.par.Output.menuNames == ["auto", "bars.frame", "cppn.frame"]
    assert top.standin_image.shape == (24, 40, 4)          # auto: the last picture in the graph
    top.par.Output = "bars.frame"
    cook(td, top, audio, next(feed))
    assert top.standin_errors == [] and top.standin_image.shape == (24, 32, 4)
    shown = top.standin_image.copy()
    top.par.Dtype = "float32"                             # no new frame due: the same frame, re-converted
    cook(td, top, audio, song.samples[:, :0])
    assert top.standin_image.dtype == np.float32
    assert np.abs(top.standin_image * 255 - shown).max() <= 0.5 + 1e-3


def test_the_example_graph_runs_in_touchdesigner(td):
    example = Path(__file__).parent.parent / "examples" / "touchdesigner" / "mixed_live.yaml"
    top, chop = make_op(td, "top"), make_op(td, "chop", "features")
    top.par.Graph = chop.par.Graph = str(example)
    for _ in range(3):
        cook(td, top)
        cook(td, chop, frames=0)
    assert top.standin_errors == [] and chop.standin_errors == []
    assert top.standin_image.shape == (256, 256, 4) and chop.numChans == 8
    assert top.par.Output.menuNames == ["auto", "cppn.frame"] and "Cppnseed" in [p.name for p in top.customPages[-1].pars]


def test_a_log_scaled_param_keeps_its_units_and_a_decade_slider_around_its_default():
    from cppnviz.host_bridge.touchdesigner.layout import spec_for
    scale = spec_for("Cppnscale", "cppn", registry.lookup("cppn").param("scale"))
    assert (scale.min, scale.max, scale.default) == (0.01, 100, 1.0)     # what the graph file and OSC mean
    assert (scale.norm_min, scale.norm_max) == (0.1, 10.0)              # not 0.01..100, where 1.0 sits at 1 %
    meter = spec_for("Barsmaxvalue", "bars", registry.lookup("spectrum_meter").param("max_value"))
    assert (meter.min, meter.max, meter.norm_min, meter.norm_max) == (1e-6, 1e6, 0.2, 20.0)
