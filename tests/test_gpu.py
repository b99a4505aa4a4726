"""The CuPy backend: kernels compile for NVIDIA GPUs, auto falls back cleanly, and on a GPU it matches numpy."""

from fractions import Fraction
import logging
import re

import numpy as np
import pytest

from agreement import HALF_LEVEL, levels_off
from conftest import run_cli, tone, write_wav
from cppnviz.node import Context
from cppnviz.nodes import _cuda
from cppnviz.nodes.cppn import CPPN, Network, gpu_unavailable
from cppnviz.nodes.output import CB_PAIR, CR_PAIR, LUMA, _Yuv420

NO_GPU = gpu_unavailable()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no usable GPU: {NO_GPU}")


def nvrtc_or_skip():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC not available to compile CUDA source ({type(exc).__name__}: {exc}); "
                    f"pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12")
    return nvrtc


def compile_for_hopper(source: str) -> tuple[str, str]:
    """(PTX, ptxas's report: registers, stack frame, spills) of the source compiled for sm_90."""
    nvrtc = nvrtc_or_skip()
    program = nvrtc.createProgram(source, "kernel.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["-arch=sm_90", "--std=c++14", "-Xptxas=-v"])
    except Exception:
        pytest.fail(nvrtc.getProgramLog(program))
    return nvrtc.getPTX(program).decode(), nvrtc.getProgramLog(program)


@pytest.mark.parametrize("activation,hidden,layers,sigmoid,fast_math", [
    ("tanh", 32, 8, False, False), ("sin", 32, 8, False, False), ("gaussian", 32, 8, False, False),
    ("clip", 32, 8, False, False), ("tanh", 16, 4, True, False),
    ("tanh", 128, 6, False, False),  # too big for constant memory: weights through the read-only cache
    ("tanh", 32, 8, False, True), ("tanh", 16, 4, True, True),  # FAST_MATH, as bench/bench_gpu.py builds it
])
def test_cppn_kernel_compiles_for_hopper_and_keeps_the_hidden_vector_in_registers(activation, hidden, layers, sigmoid,
                                                                                fast_math):
    n_weights = 3 * hidden + (layers - 2) * hidden * hidden + hidden * 3
    source = _cuda.cppn_source(hidden=hidden, layers=layers, n_out=3, activation=activation, sigmoid=sigmoid,
                               vignette=True, n_weights=n_weights, fast_math=fast_math)
    ptx, report = compile_for_hopper(source)
    assert "cppn_frame" in ptx
    hardware_tanh = ptx.count("tanh.approx.f32")
    if not fast_math:
        assert hardware_tanh == 0, "tanh.approx's 2^-11 error breaks the 1/255 promise: tanhf is the default"
    if hidden <= 64:
        assert re.search(r"\b0 bytes spill stores", report), f"the hidden vector spilled to local memory:\n{report}"
        if fast_math:
            # Fully unrolled: one hardware tanh per hidden unit per layer, plus the outputs (227 for 8 of 32).
            assert hardware_tanh == hidden * (layers - 1) + 3


def test_yuv_kernel_compiles():
    assert "rgb_to_yuv420" in compile_for_hopper(_cuda._YUV_SOURCE)[0]


def test_grid_blend_kernel_compiles_and_never_fuses():
    from cppnviz.nodes import _grid_cuda
    ptx = compile_for_hopper(_grid_cuda._SOURCE)[0]
    # Fused multiply-adds would round once where the numpy player rounds twice: its frames must stay bit-equal.
    assert "grid_blend" in ptx and "fma." not in ptx


def test_kernel_weights_follow_the_numpy_networks_layout():
    net = Network(16, 16, layers=4, hidden=8, n_features=2)
    packed = _cuda.pack_weights(net.w_layers)
    assert packed.dtype == np.float32 and packed.size == 3 * 8 + 2 * 8 * 8 + 8 * 3
    np.testing.assert_array_equal(packed[:24].reshape(3, 8), net.w_layers[0][:3])
    np.testing.assert_array_equal(packed[-24:].reshape(8, 3), net.w_layers[-1])


def cppn(backend, **params):
    values = {p.name: p.default for p in CPPN.params}
    values.update(width=64, height=48, backend=backend, **params)
    node = CPPN("cppn", values, Context(fps=Fraction(30)))
    node.configure({})
    return node


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present: the fallback is not taken")
def test_auto_falls_back_to_numpy_and_says_why(caplog):
    with caplog.at_level(logging.DEBUG):
        node = cppn("auto")
    assert node.network.gpu is None
    assert "rendering on the CPU with numpy (no GPU:" in caplog.text


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present: backend cupy works")
def test_backend_cupy_without_a_gpu_is_a_clear_user_error(tmp_path):
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5))
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""fps: 30
nodes:
  audio: {{type: audio_file, params: {{path: {audio}}}}}
  cppn: {{type: cppn, params: {{width: 32, height: 32, backend: cupy}}}}
  video: {{type: encoder, inputs: {{frame: cppn.frame}}, params: {{path: out.mp4}}}}
""")
    result = run_cli("render", graph)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "param 'backend': cupy cannot render here:" in lines[0]
    assert not (tmp_path / "out.mp4").exists()


@needs_gpu
@pytest.mark.parametrize("params", [  # inside the agreement region (tests/agreement.py): sin runs 6 layers
    {}, {"activation": "sin", "layers": 6}, {"activation": "gaussian"}, {"activation": "clip"},
    {"mapping": "sigmoid"}, {"output": "gray", "vignette": True}, {"aspect": "keep", "scale": 2.5},
    {"hidden": 32, "layers": 8}, {"hidden": 96, "layers": 5}, {"period": 2.0},
])
def test_gpu_frames_match_numpy_within_one_level(params):
    import cupy
    gpu, cpu = cppn("cupy", **params), cppn("numpy", **params)
    assert gpu.network.gpu is not None
    for k in range(3):
        t = k / 30
        ours = cupy.asnumpy(gpu.network.render(None, t))
        reference = cpu.network.render(None, t)
        assert levels_off(reference, cpu.network) <= 255 * HALF_LEVEL, "configuration outside the agreement region"
        assert np.abs(ours - reference).max() <= 1 / 255


@needs_gpu
def test_gpu_yuv_equals_the_encoders_cpu_conversion():
    import cupy
    rgb = np.random.default_rng(0).random((37, 51, 3)).astype(np.float32)  # odd sizes: padded edges
    cpu = _Yuv420(37, 51)
    slot = cpu.new_slot()
    cpu.fill(rgb.copy(), slot)
    planes = _cuda.GpuYuv420(37, 51, LUMA, CB_PAIR, CR_PAIR).convert(cupy.asarray(rgb))
    for ours, reference in zip(planes, slot.views):
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1


@needs_gpu
@pytest.mark.parametrize("blend", ["linear", "nearest"])
def test_gpu_frame_grid_equals_the_numpy_player(tmp_path, blend):
    # The grid on the device, blended there: the numpy player's frames bit for bit (tests/test_grid_gpu.py says why).
    from test_grid_gpu import player, write_grid
    from cppnviz.timebase import Tick
    frames = write_grid(tmp_path / "g.grid", [4, 3], height=270, width=480)
    gpu, cpu = player(tmp_path / "g.grid", "cupy", 2, blend), player(tmp_path / "g.grid", "numpy", 2, blend)
    assert gpu.device.frames.nbytes == frames.nbytes
    for k, where in enumerate(np.random.default_rng(1).uniform(-0.1, 1.1, (12, 2))):
        features = np.zeros(4, np.float32)
        features[:2] = where
        ours = gpu.process(Tick(k, k / 30), features=features)["frame"].get()
        np.testing.assert_array_equal(ours, cpu.process(Tick(k, k / 30), features=features)["frame"])
