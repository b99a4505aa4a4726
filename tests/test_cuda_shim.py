"""The CUDA kernels the project generates, compiled by g++ and driven by the project's own GPU code, against numpy.

No GPU is needed: tests/cuda_shim/ compiles each kernel's source as plain C++ (CUDA's built-ins
mapped to one call per thread over the launch grid) and stands in for CuPy as strictly as CuPy
itself (modules memoized on their source, kernel arguments taken byte for byte). CudaNetwork,
the tiler and GpuYuv420 run unmodified on it. Every picture is held to the backend's promise:
within 1/255 of the numpy node, in configurations inside the agreement region (tests/agreement.py).
Where a GPU is lent, the same pictures are checked on it with the real CuPy (the `gpu` cases).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import cppnviz.nodes.cppn as cppn_module
from agreement import HALF_LEVEL, levels_off
from cppnviz import runner
from cppnviz.graph import load_graph
from cppnviz.node import Context
from cppnviz.nodes import _cuda
from cppnviz.nodes.compose import Tiler
from cppnviz.nodes.cppn import CPPN
from cppnviz.nodes.output import CB_PAIR, CR_PAIR, LUMA, _Yuv420
from cppnviz.ports import Spec
from cppnviz.timebase import Tick
from cuda_shim import cupy_standin, gxx

NO_GXX = "g++ not found: the shim compiles the CUDA kernels with it (.ci/run installs Debian's g++)"
ROOT = Path(__file__).resolve().parent.parent
FEATURES = np.array([0.3, 1.5, -0.7])
TIMES = (0.0, 0.4, 1.3)


@pytest.fixture(scope="session")
def shim_build(tmp_path_factory):
    """One folder of compiled kernels for the session: each source compiles once."""
    return tmp_path_factory.mktemp("cuda-shim")


@pytest.fixture
def standin(monkeypatch, shim_build):
    """The stand-in installed as `cupy`, so the GPU backend probes, chooses and runs on the g++ shim."""
    if gxx.GXX is None:
        pytest.skip(NO_GXX)
    monkeypatch.setattr(cupy_standin, "build_dir", shim_build)
    monkeypatch.setitem(sys.modules, "cupy", cupy_standin)
    cppn_module.gpu_unavailable.cache_clear()
    yield cupy_standin
    cppn_module.gpu_unavailable.cache_clear()


@pytest.fixture(params=["shim", "gpu"])
def cupy(request):
    """What the GPU backend runs on: the g++ shim everywhere, and the real CuPy where a GPU is lent."""
    if request.param == "shim":
        return request.getfixturevalue("standin")
    reason = cppn_module.gpu_unavailable()
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    import cupy
    return cupy


def node(cls, inputs: dict, **params):
    """A configured node of `cls`: declared defaults, then params; `inputs` are the arriving specs."""
    values = {p.name: p.default for p in cls.params}
    values.update(params)
    made = cls(cls.type_name, values, Context(fps=Fraction(30)))
    made.configure(inputs)
    return made


def cppn(backend: str, features: int = 0, **params) -> CPPN:
    """A 64x48 cppn node (unless params say otherwise) on `backend`, with `features` values linked."""
    inputs = {"features": Spec("features", size=features)} if features else {}
    return node(CPPN, inputs, **{"width": 64, "height": 48, "backend": backend, **params})


def render(node: CPPN, t: float) -> np.ndarray:
    features = FEATURES[:node.network.n_features] if node.network.n_features else None
    frame = node.process(Tick(round(t * 30), t), features)["frame"]
    return frame.get() if hasattr(frame, "__cuda_array_interface__") else frame.copy()


def assert_agree(gpu: CPPN, cpu: CPPN, t: float) -> None:
    """Both frames within half a level of the exact picture, hence within 1/255 of each other."""
    assert gpu.network.gpu is not None and cpu.network.gpu is None
    ours, reference = render(gpu, t), render(cpu, t)
    # numpy's own distance says whether the configuration is inside the agreement region at all.
    assert levels_off(reference, cpu.network) <= 255 * HALF_LEVEL, "configuration outside the agreement region"
    assert levels_off(ours, cpu.network) <= 255 * HALF_LEVEL
    assert np.abs(ours - reference).max() <= 1 / 255


# Inside the agreement region with a wide margin (numpy is <= 0.04 levels off the exact picture in
# each, over seeds 1, 2, 3, 1337; sin is chaotic sooner, so it runs 6 layers, not 8).
CONFIGS = {
    "default": {},
    "sin": {"activation": "sin", "layers": 6},
    "gaussian": {"activation": "gaussian"},
    "clip": {"activation": "clip"},
    "sigmoid": {"mapping": "sigmoid"},
    "gray, vignette": {"output": "gray", "vignette": True},
    "keep aspect, scale": {"aspect": "keep", "scale": 2.5, "vignette": True},
    "scale 10": {"layers": 4, "scale": 10.0},
    "period": {"period": 2.0},
    "features": {"features": 3, "feature_gain": 0.8},
    "odd 17x9": {"width": 17, "height": 9},
    "odd 9x17, gray": {"width": 9, "height": 17, "output": "gray", "mapping": "sigmoid"},
    "8x32": {"hidden": 32},
    "weights over 64 KiB (global memory)": {"hidden": 96, "layers": 5},
    "normal weights": {"weights": "normal", "seed": 7},
}


@pytest.mark.parametrize("params", CONFIGS.values(), ids=CONFIGS.keys())
def test_frames_match_numpy(cupy, params):
    gpu, cpu = cppn("cupy", **params), cppn("numpy", **params)
    over_64_kib = gpu.network.gpu.weights.size > _cuda.CONSTANT_FLOATS
    assert gpu.network.gpu.memory == ("global" if over_64_kib else _cuda.WEIGHT_MEMORY)
    for t in TIMES:
        assert_agree(gpu, cpu, t)


def test_a_scale_change_keeps_the_kernel_and_gives_a_fresh_nodes_frames(cupy):
    # A new scale is a kernel argument: the same network and module, the frames of one built at it.
    # (period, not features: node() configures without setting input_specs, which a rebuild reads.)
    gpu = cppn("cupy", period=2.0, vignette=True)
    network, module = gpu.network, gpu.network.gpu.module
    for scale in (1.37, 2.5):
        gpu.set_param("scale", scale)
        assert gpu.network is network and gpu.network.gpu.module is module
        fresh = cppn("cupy", period=2.0, vignette=True, scale=scale)
        np.testing.assert_array_equal(render(gpu, 0.4), render(fresh, 0.4))
        assert_agree(gpu, cppn("numpy", period=2.0, vignette=True, scale=scale), 0.4)
    # The vignette is compiled into the kernel: turning it off builds a network without it.
    gpu.set_param("vignette", False)
    assert gpu.network is not network
    np.testing.assert_array_equal(render(gpu, 0.4), render(cppn("cupy", period=2.0, scale=2.5), 0.4))


@pytest.mark.parametrize("memory", _cuda.WEIGHT_MEMORIES)
def test_every_weight_memory_matches_numpy(cupy, monkeypatch, memory):
    monkeypatch.setattr(_cuda, "WEIGHT_MEMORY", memory)
    gpu, cpu = cppn("cupy", features=3), cppn("numpy", features=3)
    assert gpu.network.gpu.memory == memory
    for t in TIMES:
        assert_agree(gpu, cpu, t)


@pytest.mark.parametrize("params", [{"mapping": "sigmoid"}, {"activation": "sin", "layers": 6},
                                    {"activation": "gaussian", "output": "gray"}])
def test_fast_math_build_wires_the_same_network(standin, monkeypatch, params):
    # The shim computes the fast intrinsics exactly (cuda_shim.h), so this checks the FAST_MATH
    # build's wiring, not their error: that only a GPU shows (bench/bench_gpu.py measures it).
    monkeypatch.setattr(_cuda, "FAST_MATH", True)
    gpu, cpu = cppn("cupy", **params), cppn("numpy", **params)
    assert any(name in gpu.network.gpu.module.code for name in ("fast_tanh(x)", "__sinf(x)", "__expf("))
    for t in TIMES:
        assert_agree(gpu, cpu, t)


@pytest.mark.parametrize("memory", _cuda.WEIGHT_MEMORIES)
def test_networks_of_one_shape_keep_their_own_weights(cupy, monkeypatch, memory):
    # CuPy loads one module per source: networks of one shape share its constant memory.
    monkeypatch.setattr(_cuda, "WEIGHT_MEMORY", memory)
    pairs = [(cppn("cupy", seed=seed), cppn("numpy", seed=seed)) for seed in (1, 2, 3)]
    for t in TIMES[:2]:  # each renders after the others, twice over
        for gpu, cpu in pairs:
            assert_agree(gpu, cpu, t)


def test_tiler_bands_match_numpy(cupy):
    # Every band's network has one shape: the case that shares constant memory in every frame.
    gpu, cpu = (node(Tiler, {"features": Spec("features", size=6)}, backend=backend, tile_size=17, layout="grid",
                     columns=3) for backend in ("cupy", "numpy"))
    assert all(n.gpu is not None for n in gpu.networks)
    values = np.linspace(0.1, 0.9, 6)
    for t in TIMES:
        tick = Tick(round(t * 30), t)
        ours, reference = gpu.process(tick, features=values)["frame"], cpu.process(tick, features=values)["frame"]
        for network in cpu.networks:  # each band's numpy frame against its exact picture: inside the region
            assert levels_off(network.frame, network) <= 255 * HALF_LEVEL
        assert np.abs(ours - reference).max() <= 1 / 255


# -- the YUV 4:2:0 kernel -------------------------------------------------------------

U = 2.0**-24  # float32 unit roundoff


def exact_yuv(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per plane: the float64 value the encoder truncates (offset included), and the rounding-error bound of one
    float32 evaluation of it: gamma_(n+1) times the sum of its terms' magnitudes, n products plus the offset."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb.astype(np.float64), ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    planes = [(padded @ LUMA.astype(np.float64) + 16.5, np.abs(padded) @ np.abs(LUMA.astype(np.float64)) + 16.5, 3)]
    for pair in (CB_PAIR, CR_PAIR):
        c = pair[:3].astype(np.float64)
        quads = lambda x: x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]
        planes.append((quads(padded @ c) + 128.5, quads(np.abs(padded) @ np.abs(c)) + 128.5, 12))
    return [(value, (n + 1) * U / (1 - (n + 1) * U) * magnitude) for value, magnitude, n in planes]


@pytest.mark.parametrize("height,width", [(37, 51), (9, 17), (16, 16), (17, 2)])
def test_yuv_kernel_equals_the_encoders_conversion(cupy, height, width):
    # Outside [0, 1] too: both clip.
    rgb = np.random.default_rng(height * width).uniform(-0.05, 1.05, (height, width, 3)).astype(np.float32)
    cpu = _Yuv420(height, width)
    slot = cpu.new_slot()
    cpu.fill(rgb.copy(), slot)
    planes = _cuda.GpuYuv420(height, width, LUMA, CB_PAIR, CR_PAIR).convert(cupy.asarray(rgb))
    for ours, reference, (value, bound) in zip(planes, slot.views, exact_yuv(rgb)):
        assert ours.shape == reference.shape
        # The two float32 sums may round differently; their truncations can differ only where the exact
        # value lies within both rounding bounds of an integer.
        near_an_integer = np.abs(value - np.round(value)) <= 2 * bound
        differ = ours != reference
        assert np.abs(ours.astype(int) - reference).max() <= 1
        assert not (differ & ~near_an_integer).any()


# -- a render, end to end -------------------------------------------------------------

def test_render_on_the_gpu_path_encodes_what_numpy_encodes(cupy, tmp_path):
    # The demo graph at an odd size, losslessly encoded: the GPU's planes reach the file unchanged.
    def render_with(backend: str) -> np.ndarray:
        out = tmp_path / f"{backend}.mp4"
        overrides = [("cppn", "width", 33), ("cppn", "height", 17), ("cppn", "backend", backend),
                     ("video", "path", str(out)), ("video", "crf", 0), ("video", "preset", "ultrafast")]
        graph = load_graph(ROOT / "examples" / "mixed.yaml", overrides)
        runner.run(graph, 12)
        with av.open(str(out)) as container:
            return np.stack([f.to_ndarray() for f in container.decode(video=0)])  # yuv420p planes, stacked

    ours, reference = render_with("cupy"), render_with("numpy")
    assert ours.shape == reference.shape == (12, 18 * 3 // 2, 34)
    assert np.abs(ours.astype(int) - reference).max() <= 1


# -- the stand-in is as strict as CuPy ------------------------------------------------

PROBE = r"""
__constant__ float c_table[4];
extern "C" __global__ void probe(float* out, const float* in, int n, float gain, int index) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] * gain + c_table[index];
}
"""


def probe_args(standin, **changes):
    """Arguments for PROBE over 8 elements, with some replaced."""
    args = dict(out=standin.zeros(8, standin.float32), x=standin.asarray(np.arange(8, dtype=np.float32)),
                n=np.int32(8), gain=np.float32(2), index=np.int32(0))
    args.update(changes)
    return tuple(args.values())


def test_standin_shares_a_module_between_equal_sources_as_cupy_does(standin):
    first, second = standin.RawModule(code=PROBE), standin.RawModule(code=PROBE)
    assert first.get_global("c_table").ptr == second.get_global("c_table").ptr
    other = standin.RawModule(code=PROBE, options=("-DOTHER",))
    assert other.get_global("c_table").ptr != first.get_global("c_table").ptr


@pytest.mark.parametrize("change,message", [
    (lambda cupy: {"gain": 2.0}, "8 bytes of float64"),       # CuPy passes a Python float as a double
    (lambda cupy: {"n": 8}, "8 bytes of int64"),              # and a Python int as a long long
    (lambda cupy: {"x": np.arange(8, dtype=np.float32)}, "numpy.ndarray of shape"),
    (lambda cupy: {"x": cupy.zeros(8, np.float64)}, "float64 array"),
    (lambda cupy: {"x": cupy.zeros(16, cupy.float32)[::2]}, "non-contiguous"),
    (lambda cupy: {"index": None}, "device pointer for a value"),
], ids=["python float", "python int", "numpy array", "float64 array", "strided array", "None"])
def test_standin_refuses_arguments_the_kernel_would_misread(standin, change, message):
    kernel = standin.RawModule(code=PROBE).get_function("probe")
    kernel((1,), (8,), probe_args(standin))
    with pytest.raises(TypeError, match=message):
        kernel((1,), (8,), probe_args(standin, **change(standin)))


def test_standin_refuses_launches_cupy_refuses(standin):
    kernel = standin.RawModule(code=PROBE).get_function("probe")
    with pytest.raises(TypeError):
        kernel([1], (8,), probe_args(standin))                    # Function.__call__(tuple grid, tuple block, ...)
    with pytest.raises(TypeError, match="takes 5 arguments"):
        kernel((1,), (8,), probe_args(standin)[:4])
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(standin.zeros(3, standin.float32))


def test_standin_catches_kernels_that_stray(standin):
    kernel = standin.RawModule(code=PROBE).get_function("probe")
    with pytest.raises(gxx.LaunchError, match="out of bounds"):
        kernel((1,), (8,), probe_args(standin, index=np.int32(4)))  # past the end of c_table
    with pytest.raises(gxx.LaunchError, match="wrote outside"):
        kernel((1,), (16,), probe_args(standin, n=np.int32(9)))     # one write past `out`
    out = standin.empty(8, standin.float32)
    kernel((1,), (8,), (out, standin.zeros(7, standin.float32), np.int32(8), np.float32(1), np.int32(0)))
    assert np.isnan(out.get()[7]) and not np.isnan(out.get()[:7]).any()  # one read past `in`
    out = standin.empty(8, standin.float32)
    kernel((1,), (8,), probe_args(standin, out=out, n=np.int32(7)))
    assert np.isnan(out.get()[7])                                # an element left unwritten


# -- the kernels' own sin --------------------------------------------------------------

SIN_PROBE = _cuda.FUNCTIONS + r"""
extern "C" __global__ void sin_probe(float* out, const float* x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = accurate_sin(x[i]);
}
"""


def test_accurate_sin_is_within_two_to_the_minus_22(cupy):
    # Its error, from its arithmetic: r = x - k pi/2 rounds twice (2 x 2^-25 for |r| < 1), the
    # polynomials are minimax to about 2^-24, and their evaluation rounds a few times at 2^-25:
    # under 2^-22 in all. Arguments where networks put them, near every multiple of pi/2 (where r
    # cancels), up to the 1e5 edge of the fast path, and past it (sinf).
    rng = np.random.default_rng(5)
    multiples = np.arange(-63000, 63000, 7) * (np.pi / 2)
    x = np.concatenate([rng.uniform(-300, 300, 200_000), np.sign(rng.standard_normal(100_000)) * 10.0 ** rng.uniform(
        -8, 5, 100_000), multiples + rng.uniform(-1e-3, 1e-3, multiples.size), [0.0, -0.0, 99999.99, -1e5, 3e6]])
    x = x.astype(np.float32)
    kernel = cupy.RawModule(code=SIN_PROBE).get_function("sin_probe")
    out = cupy.empty(x.size, cupy.float32)
    kernel((-(-x.size // 256),), (256,), (out, cupy.asarray(x), np.int32(x.size)))
    error = np.abs(out.get().astype(np.float64) - np.sin(x.astype(np.float64)))
    assert error.max() <= 2.0**-22, f"{error.max():.3g} at x = {x[np.argmax(error)]!r}"
