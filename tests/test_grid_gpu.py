"""frame_grid on the GPU path: the grid held on the device, blended there, frames equal to the numpy path's.

The kernel runs through the CuPy stand-in and the g++ shim (tests/cuda_shim/), and on the real CuPy
where a GPU is lent (the `cupy` fixture's `gpu` case).
"""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import run_cli, tone, write_wav
from test_cuda_shim import cupy, shim_build, standin  # noqa: F401  (fixtures: the stand-in, or the real CuPy)
from cppnviz import cli, grid, runner
from cppnviz.errors import ParamError
from cppnviz.graph import load_graph
from cppnviz.node import Context
from cppnviz.nodes.cppn import gpu_unavailable
from cppnviz.nodes.frame_grid import FrameGrid
from cppnviz.ports import Spec
from cppnviz.timebase import Tick

NO_GPU = gpu_unavailable()


def write_grid(path: Path, steps: list[int], height: int = 9, width: int = 13) -> np.ndarray:
    """A grid of random uint8 frames (every level, odd sizes) over features 0..d-1 in 0..1; returns its frames."""
    d = len(steps)
    writer = grid.GridWriter(path, grid.make_header(width=width, height=height, vary=list(range(d)), steps=steps,
                                                    ranges=[[0, 1]] * d, fixed=None, source={}))
    frames = np.random.default_rng(d).integers(0, 256, (*steps, height, width, 3), dtype=np.uint8)
    frames[(0,) * d] = 255       # a frame all at full level: the mixes around it may overshoot 1.0
    for pos in grid.positions(steps):
        writer.add(grid.encode(frames[pos]))
    writer.publish()
    return frames


def player(path: Path, backend: str, d: int, blend: str = "linear", smooth: float = 0.0) -> FrameGrid:
    node = FrameGrid("grid", {"path": str(path), "vary": list(range(d)), "blend": blend, "smooth": smooth,
                              "backend": backend}, Context(fps=Fraction(30)))
    node.input_specs = {"features": Spec("features", size=4)}
    node.output_specs = node.configure(node.input_specs)
    return node


@pytest.mark.parametrize("steps", [[5], [3, 4], [3, 2, 3]], ids=["1-D", "2-D", "3-D"])
@pytest.mark.parametrize("blend,smooth", [("linear", 0.0), ("nearest", 0.0), ("linear", 0.05)])
def test_gpu_frames_equal_the_numpy_frames(cupy, tmp_path, steps, blend, smooth):
    # Both paths turn each level into float32 exactly, multiply it by the same float32 scale
    # (weight * 1/255) and add the 2^d products in the same order, each operation rounded once
    # (the kernel's __fmul_rn / __fadd_rn never fuse), then clip at 1.0: the same bits, so equal.
    d = len(steps)
    path = tmp_path / "g.grid"
    frames = write_grid(path, steps)
    gpu, cpu = player(path, "cupy", d, blend, smooth), player(path, "numpy", d, blend, smooth)
    assert gpu.device is not None and gpu.grid.frames is None       # the frames live on the device only
    assert gpu.device.frames.dtype == np.uint8 and gpu.device.frames.shape == (frames[..., 0, 0, 0].size, 9, 13, 3)
    rng = np.random.default_rng(len(steps))
    points = [np.zeros(d), np.ones(d), np.full(d, 0.5), np.full(d, 7.0), *rng.uniform(0, 1, (6, d)),
              np.array([1e-3, 0.999, 0.2][:d])]
    for k, where in enumerate(points):
        features = np.zeros(4, np.float32)
        features[:d] = where
        tick = Tick(k, k / 30)
        ours, reference = gpu.process(tick, features=features)["frame"], cpu.process(tick, features=features)["frame"]
        assert hasattr(ours, "__cuda_array_interface__") and not hasattr(reference, "__cuda_array_interface__")
        host = ours.get()
        assert host.dtype == np.float32 and host.shape == (9, 13, 3)
        np.testing.assert_array_equal(host, reference)
        assert host.min() >= 0.0 and host.max() <= 1.0
    np.testing.assert_array_equal(gpu.position, cpu.position)


def test_backend_change_moves_the_grid(standin, tmp_path):
    path = tmp_path / "g.grid"
    frames = write_grid(path, [3, 4])
    node = player(path, "cupy", 2)
    node.set_param("backend", "numpy")                  # live: the frames come back to the host
    assert node.device is None and np.array_equal(node.grid.frames, frames)
    frame = node.process(Tick(0, 0.0), features=np.array([0.5, 0.5, 0, 0], np.float32))["frame"]
    assert isinstance(frame, np.ndarray)
    node.set_param("backend", "cupy")
    assert node.grid.frames is None
    np.testing.assert_array_equal(node.process(Tick(1, 0.0), features=np.array([0.5, 0.5, 0, 0], np.float32))
                                  ["frame"].get(), frame)


def test_a_grid_too_big_for_the_gpu_is_one_clear_error(standin, monkeypatch, tmp_path):
    class OutOfMemoryError(MemoryError):   # as cupy.cuda.memory.OutOfMemoryError names itself
        pass

    def full(a, dtype=None):
        raise OutOfMemoryError("Out of memory allocating 1,404 bytes (allocated so far: 0 bytes).")
    path = tmp_path / "g.grid"
    write_grid(path, [3, 4])
    monkeypatch.setattr(standin, "asarray", full)
    with pytest.raises(ParamError, match=r"param 'backend': the grid .* holds 0.00 GiB of frames, more than the GPU "
                                         r"has free .*set backend: numpy"):
        player(path, "cupy", 2)


def render_play(tmp_path: Path, grid_path: Path, backend: str) -> np.ndarray:
    """The example player graph on a grid, rendered losslessly in this process; the decoded yuv420p planes."""
    out = tmp_path / f"{backend}.mp4"
    overrides = [("grid", "path", str(grid_path)), ("grid", "vary", [0, 1]), ("grid", "backend", backend),
                 ("grid", "smooth", 0.05), ("video", "path", str(out)), ("video", "crf", 0),
                 ("video", "preset", "ultrafast")]
    graph = load_graph(tmp_path / "play.yaml", overrides)
    assert (graph.nodes["grid"].device is not None) == (backend == "cupy")
    runner.run(graph, 10)
    with av.open(str(out)) as container:
        return np.stack([f.to_ndarray() for f in container.decode(video=0)])


def test_render_plays_a_grid_on_the_gpu_path(standin, tmp_path):
    # The device frames go to the encoder's GPU colour conversion, as the cppn node's do.
    wav = write_wav(tmp_path / "song.wav", tone(220.0, 0.5) + tone(3000.0, 0.5))
    (tmp_path / "play.yaml").write_text(
        f"fps: 30\nnodes:\n  audio: {{type: audio_file, params: {{path: {wav}}}}}\n"
        "  bands: {type: stft_bands, inputs: {audio: audio.audio}, params: {bands: octave8}}\n"
        "  norm: {type: normalizer, inputs: {features: bands.bands}}\n"
        "  grid: {type: frame_grid, inputs: {features: norm.features}, params: {path: x.grid, vary: [0, 1]}}\n"
        "  video: {type: encoder, inputs: {frame: grid.frame}, params: {path: x.mp4}}\n")
    write_grid(tmp_path / "g.grid", [4, 4], height=17, width=33)
    ours, reference = (render_play(tmp_path, tmp_path / "g.grid", b) for b in ("cupy", "numpy"))
    assert ours.shape == reference.shape == (10, 18 * 3 // 2, 34)
    # Equal frames; the GPU's colour conversion may round a sample one level the other way (test_cuda_shim.py).
    assert np.abs(ours.astype(int) - reference).max() <= 1
    assert len({frame.tobytes() for frame in reference}) > 3      # the point moved through the grid


def test_bake_renders_on_the_baked_nodes_gpu_backend(standin, tmp_path):
    # `cppnviz bake` takes the node's frames wherever it renders them: a cppn on the cupy backend
    # renders on the GPU and each frame comes back to the host to be stored (8-bit levels).
    wav = write_wav(tmp_path / "song.wav", tone(220.0, 0.5))
    graph = tmp_path / "bake.yaml"
    graph.write_text(
        f"fps: 30\nnodes:\n  audio: {{type: audio_file, params: {{path: {wav}}}}}\n"
        "  bands: {type: stft_bands, inputs: {audio: audio.audio}, params: {bands: octave8}}\n"
        "  cppn: {type: cppn, inputs: {features: bands.bands}, params: {width: 24, height: 16, layers: 4}}\n")
    baked = {}
    for backend in ("cupy", "numpy"):
        out = tmp_path / f"{backend}.grid"
        # In this process (the stand-in is this process's cupy), through the command's own parser.
        args = cli.build_parser().parse_args([
            "bake", str(graph), "--node", "cppn", "--vary", "0,1", "--steps", "3", "--range", "0:1", "--range", "0:1",
            "--fixed", "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5", "--set", f"cppn.backend={backend}", "--out", str(out),
            "--quiet"])
        assert args.func(args) == 0
        baked[backend] = grid.read(out)
    assert baked["cupy"].header["source"]["params"]["backend"] == "cupy"
    # The GPU's frames are within 1/255 of numpy's (the cppn backend's promise): stored levels within one.
    assert np.abs(baked["cupy"].frames.astype(int) - baked["numpy"].frames).max() <= 1


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present: backend cupy works")
def test_backend_cupy_without_a_gpu_is_the_cppn_nodes_error(tmp_path):
    write_grid(tmp_path / "g.grid", [3, 4])
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5))
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""fps: 30
nodes:
  audio: {{type: audio_file, params: {{path: {audio}}}}}
  bands: {{type: stft_bands, inputs: {{audio: audio.audio}}, params: {{bands: octave8}}}}
  grid: {{type: frame_grid, inputs: {{features: bands.bands}}, params: {{path: g.grid, backend: cupy}}}}
  video: {{type: encoder, inputs: {{frame: grid.frame}}, params: {{path: out.mp4}}}}
""")
    result = run_cli("render", graph)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "node 'grid'" in lines[0] and "param 'backend': cupy cannot render here:" in lines[0]
    assert lines[0].split("param 'backend': ")[1] == f"cupy cannot render here: {NO_GPU}"
    assert not (tmp_path / "out.mp4").exists()
    # auto falls back to the host, where the frames are numpy arrays
    assert isinstance(player(tmp_path / "g.grid", "auto", 2).process(
        Tick(0, 0.0), features=np.zeros(4, np.float32))["frame"], np.ndarray)
