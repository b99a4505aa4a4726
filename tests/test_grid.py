"""Frame grids: bake (real CLI), resume after SIGKILL, the file's checks, grid-from, the frame_grid player."""

import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, start_cli, tone, write_wav
from test_touchdesigner import song, td  # noqa: F401  (fixtures: the TouchDesigner stand-in, a song)
from cppnviz import grid
from cppnviz.graph import build_graph
from cppnviz.node import Context
from cppnviz.timebase import Tick, tick
from cppnviz.nodes.frame_grid import FrameGrid

SIZE = 64
FIXED = "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5"


def graph_data(wav: Path, size: int = SIZE) -> dict:
    """The issue's 8x16 tanh CPPN on 8 octave bands of a real WAV."""
    return {"fps": 60, "nodes": {
        "audio": {"type": "audio_file", "params": {"path": str(wav)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
        "cppn": {"type": "cppn", "inputs": {"features": "bands.bands"},
                 "params": {"width": size, "height": size, "layers": 8, "hidden": 16, "activation": "tanh"}}}}


def write_graph(folder: Path, size: int = SIZE) -> Path:
    import yaml
    wav = write_wav(folder / "song.wav", tone(220.0, 1.0) + tone(3000.0, 1.0))
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump(graph_data(wav, size)))
    return path


def bake_args(graph: Path, out: Path, steps: int, *extra) -> list:
    return ["bake", graph, "--node", "cppn", "--vary", "0,1", "--steps", steps, "--range", "0:1", "--range", "0:1",
            "--fixed", FIXED, "--out", out, "--quiet", *extra]


def direct(graph: Path):
    """render(vector): the CPPN itself, as the bake renders it (tick 0)."""
    import yaml
    g = build_graph(yaml.safe_load(graph.read_text()), base_dir=graph.parent)
    node = g.nodes["cppn"]
    return lambda vector: node.process(tick(0, g.ctx.fps), features=np.asarray(vector, np.float32))["frame"].copy()


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    """A 32x32 grid of 64x64 frames of the 8x16 tanh CPPN over features 0 and 1 in 0..1, baked by the CLI."""
    folder = tmp_path_factory.mktemp("grid")
    graph = write_graph(folder)
    out = folder / "look.grid"
    result = run_cli(*bake_args(graph, out, 32, "--contact-sheet", folder / "sheet.png"))
    assert result.returncode == 0, result.stderr
    return graph, out


def player(path: Path, blend="linear", smooth=0.0, vary=(0, 1), backend="numpy") -> FrameGrid:
    from cppnviz.ports import Spec
    node = FrameGrid("grid", {"path": str(path), "vary": list(vary), "blend": blend, "smooth": smooth,
                              "backend": backend}, Context(fps=Fraction(60)))
    node.input_specs = {"features": Spec("features", size=8)}
    node.output_specs = node.configure(node.input_specs)
    return node


def features_at(f0: float, f1: float) -> np.ndarray:
    v = np.full(8, 0.5, np.float32)
    v[:2] = f0, f1
    return v


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_bake_round_trip_holds_the_direct_render_at_every_node(baked):
    graph, out = baked
    g = grid.read(out)
    assert g.frames.shape == (32, 32, SIZE, SIZE, 3)
    h = g.header
    assert h["vary"] == [0, 1] and h["ranges"] == [[0.0, 1.0], [0.0, 1.0]] and h["fixed"] == [0.5] * 8
    assert h["source"]["node_type"] == "cppn" and len(h["source"]["graph_sha256"]) == 64
    render = direct(graph)
    values = np.linspace(0, 1, 32)
    for i, j in [(0, 0), (3, 17), (31, 31), (20, 5)]:
        # Stored as 8-bit levels rounded to nearest: exactly the direct render's levels (lossless at 8 bits,
        # and within half a level of the float picture: >= 20*log10(255/0.5) = 54.2 dB).
        exact = render(features_at(values[i], values[j]))
        np.testing.assert_array_equal(g.frames[i, j], grid.to_uint8(exact))
        assert np.abs(g.frames[i, j] / 255.0 - exact).max() <= 0.5 / 255 + 1e-6
    streamed = {pos: frame for _, pos, frame in grid.iter_frames(out)}
    assert len(streamed) == 1024 and np.array_equal(streamed[(3, 17)], g.frames[3, 17])
    sheet = Image.open(out.parent / "sheet.png")
    assert sheet.size == (32 * SIZE, 32 * SIZE)
    np.testing.assert_array_equal(np.asarray(sheet)[3 * SIZE:4 * SIZE, 17 * SIZE:18 * SIZE], g.frames[3, 17])


def test_player_returns_the_stored_frames_at_the_nodes(baked):
    _, out = baked
    g = grid.read(out)
    values = np.linspace(0, 1, 32)
    for blend in ("linear", "nearest"):
        node = player(out, blend)
        for i, j in [(0, 0), (7, 30), (31, 31)]:
            frame = node.process(Tick(0, 0.0), features=features_at(values[i], values[j]))["frame"]
            expected = g.frames[i, j].astype(np.float32) * np.float32(1 / 255)
            np.testing.assert_array_equal(frame, expected)


def test_linear_blending_of_a_32_step_grid_is_within_30_db_of_the_cppn(baked):
    graph, out = baked
    render = direct(graph)
    node = player(out)
    rng = np.random.default_rng(7)
    errors = []
    for f0, f1 in rng.uniform(0, 1, (40, 2)):
        played = node.process(Tick(0, 0.0), features=features_at(f0, f1))["frame"]
        errors.append(np.mean((played.astype(np.float64) - render(features_at(f0, f1))) ** 2))
    figure = 10 * np.log10(1.0 / np.mean(errors))
    print(f"linear blend, 32 steps, 8x16 tanh CPPN, 64x64, range 0..1: {figure:.1f} dB PSNR")
    assert figure >= 30.0
    # and the nearest frame alone is much worse: the blending is what reaches it
    near = player(out, "nearest")
    worst = np.mean([np.mean((near.process(Tick(0, 0.0), features=features_at(a, b))["frame"]
                              - render(features_at(a, b))) ** 2) for a, b in rng.uniform(0, 1, (10, 2))])
    assert 10 * np.log10(1.0 / worst) < figure - 3


def test_sigkilled_bake_resumes_to_the_same_bytes(baked, tmp_path):
    graph = write_graph(tmp_path, size=96)
    whole, resumed = tmp_path / "whole.grid", tmp_path / "resumed.grid"
    assert run_cli(*bake_args(graph, whole, 20)).returncode == 0
    work = grid.work_path(resumed)
    total = whole.stat().st_size
    process = start_cli(*bake_args(graph, resumed, 20))
    deadline = time.monotonic() + 60
    while (not work.exists() or work.stat().st_size < total // 3) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not resumed.exists() and 0 < work.stat().st_size < total
    again = run_cli(*bake_args(graph, resumed, 20))
    assert again.returncode == 0, again.stderr
    assert "resuming:" in again.stderr
    assert resumed.read_bytes() == whole.read_bytes() and not work.exists()


def test_a_record_cut_short_is_baked_again(tmp_path):
    header = grid.make_header(width=8, height=4, vary=[0], steps=[6], ranges=[[0, 1]], fixed=None, source={})
    frames = [np.random.default_rng(k).integers(0, 256, (4, 8, 3), dtype=np.uint8) for k in range(6)]
    straight = grid.GridWriter(tmp_path / "a.grid", header)
    for f in frames:
        straight.add(grid.encode(f))
    straight.publish()
    cut = grid.GridWriter(tmp_path / "b.grid", header)
    for f in frames[:4]:
        cut.add(grid.encode(f))
    cut.close()
    work = grid.work_path(tmp_path / "b.grid")
    work.write_bytes(work.read_bytes()[:-3])     # killed in the middle of writing the 4th record
    again = grid.GridWriter(tmp_path / "b.grid", header)
    assert again.done == 3
    for f in frames[3:]:
        again.add(grid.encode(f))
    again.publish()
    assert (tmp_path / "b.grid").read_bytes() == (tmp_path / "a.grid").read_bytes()
    other = grid.make_header(width=8, height=4, vary=[0], steps=[7], ranges=[[0, 1]], fixed=None, source={})
    cut = grid.GridWriter(tmp_path / "b.grid", header)
    cut.add(grid.encode(frames[0]))
    cut.close()
    restarted = grid.GridWriter(tmp_path / "b.grid", other)   # other settings: started over, the change named
    assert restarted.done == 0 and restarted.started_over == "frames 6 -> 7, steps [6] -> [7]"
    restarted.close()


def flipped(path: Path, where: int, out: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[where] ^= 0x10
    out.write_bytes(bytes(data))
    return out


def test_a_flipped_byte_or_a_cut_is_one_error(baked, tmp_path):
    _, out = baked
    size = out.stat().st_size
    for where, words in [(size // 2, "fails its CRC check"), (30, "header fails its CRC check"),
                         (size - 3, "truncated or unfinished")]:
        bad = flipped(out, where, tmp_path / f"bad{where}.grid")
        with pytest.raises(grid.GridError, match=words):
            grid.read(bad)
    cut = tmp_path / "cut.grid"
    cut.write_bytes(out.read_bytes()[:size // 2])
    with pytest.raises(grid.GridError, match="truncated or unfinished"):
        grid.read(cut)
    # The player refuses it before the first frame: one error line, exit 2, no output.
    graph = tmp_path / "play.yaml"
    wav = write_wav(tmp_path / "song.wav", tone(440.0, 0.5))
    graph.write_text(f"fps: 30\nnodes:\n  audio: {{type: audio_file, params: {{path: {wav}}}}}\n"
                     f"  bands: {{type: stft_bands, inputs: {{audio: audio.audio}}, params: {{bands: octave8}}}}\n"
                     f"  grid: {{type: frame_grid, inputs: {{features: bands.bands}}, "
                     f"params: {{path: {tmp_path / f'bad{size // 2}.grid'}, vary: [0, 1]}}}}\n"
                     f"  video: {{type: encoder, inputs: {{frame: grid.frame}}, params: {{path: {tmp_path / 'v.mp4'}}}}}\n")
    result = run_cli("render", graph, "--quiet")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "fails its CRC check" in lines[0] and not (tmp_path / "v.mp4").exists()


def test_render_plays_a_baked_grid(baked, tmp_path):
    import av
    graph, out = baked
    play = tmp_path / "play.yaml"
    play.write_text(f"fps: 30\nnodes:\n  audio: {{type: audio_file, params: {{path: {graph.parent / 'song.wav'}}}}}\n"
                    f"  bands: {{type: stft_bands, inputs: {{audio: audio.audio}}, params: {{bands: octave8}}}}\n"
                    f"  grid: {{type: frame_grid, inputs: {{features: bands.bands}}, "
                    f"params: {{path: {out}, vary: [0, 1], smooth: 0.1}}}}\n"
                    f"  video: {{type: encoder, inputs: {{frame: grid.frame}}, params: {{path: {tmp_path / 'v.mp4'}}}}}\n")
    result = run_cli("render", play, "--quiet")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (SIZE, SIZE)
        assert sum(1 for _ in container.decode(stream)) == 30


def test_smooth_glides_and_reset_forgets(baked):
    _, out = baked
    node = player(out, smooth=0.1)
    node.process(Tick(0, 0.0), features=features_at(0, 0))
    assert np.array_equal(node.position, [0, 0])
    node.process(Tick(1, 1 / 60), features=features_at(1, 1))
    a = np.exp(-1 / (0.1 * 60))
    np.testing.assert_allclose(node.position, [(1 - a) * 31] * 2, rtol=1e-12)
    node.reset()
    node.process(Tick(0, 0.0), features=features_at(1, 1))
    assert np.array_equal(node.position, [31, 31])
    assert FrameGrid.keeps_state is True


def test_a_grid_baked_over_other_features_is_refused(baked):
    _, out = baked
    with pytest.raises(Exception, match=r"baked over features \[0, 1\], found \[0, 7\]"):
        player(out, vary=(0, 7))


def test_grid_from_images_named_by_position(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    pictures = rng.integers(0, 256, (3, 4, 10, 12, 3), dtype=np.uint8)
    for i in range(3):
        for j in range(4):
            Image.fromarray(pictures[i, j]).save(folder / f"shot2_{i:02d}_{j}.png")
    out = tmp_path / "made.grid"
    result = run_cli("grid-from", folder, "--steps", "3,4", "--range", "0:2", "--range=-1:1", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    g = grid.read(out)
    assert np.array_equal(g.frames, pictures) and g.header["ranges"] == [[0.0, 2.0], [-1.0, 1.0]]
    (folder / "shot2_01_3.png").unlink()
    result = run_cli("grid-from", folder, "--steps", "3,4", "--out", tmp_path / "other.grid", "--quiet")
    assert result.returncode == 2 and "no image for grid position (1, 3)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "other.grid").exists()
    Image.fromarray(pictures[1, 3, :9]).save(folder / "shot2_01_3.png")
    result = run_cli("grid-from", folder, "--steps", "3,4", "--out", tmp_path / "other.grid", "--quiet")
    assert result.returncode == 2 and "shot2_01_3.png' is 12x9" in result.stderr and "every image must be the same size" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "other.grid").exists()



def test_a_bad_contact_sheet_is_refused_before_any_frame(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        for j in range(2):
            Image.fromarray(np.full((4, 4, 3), 60 * i + 20 * j, np.uint8)).save(folder / f"f_{i}_{j}.png")
    before = (folder / "f_0_0.png").read_bytes()
    out = tmp_path / "made.grid"
    for sheet, words in [(out, "it is also --out"), (folder / "f_0_0.png", "an input of this run"),
                         (folder, "it is a folder"), (tmp_path / "nowhere" / "s.png", "does not exist")]:
        result = run_cli("grid-from", folder, "--steps", "2", "--out", out, "--contact-sheet", sheet, "--quiet")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
        assert not out.exists() and (folder / "f_0_0.png").read_bytes() == before

@pytest.mark.parametrize("args,words", [
    (["--vary", "0,9"], "--vary: feature index 9 is past the 8 features"),
    (["--vary", "0,1", "--steps", "1"], "--steps: expected one count"),
    (["--range", "2:2"], "--range: expected LO:HI"),
    (["--node", "bands"], "node 'bands' (stft_bands) must make frames"),
])
def test_bake_bad_arguments_are_one_line(baked, tmp_path, args, words):
    graph, _ = baked
    base = {"--node": "cppn", "--vary": "0,1", "--steps": "4"}
    extra = []
    for i in range(0, len(args), 2):
        if args[i] in base:
            base[args[i]] = args[i + 1]
        else:
            extra += [args[i], args[i + 1], args[i], args[i + 1]]
    flags = [x for kv in base.items() for x in kv]
    result = run_cli("bake", graph, *flags, *extra, "--fixed", FIXED, "--out", tmp_path / "x.grid", "--quiet")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "x.grid").exists()


def test_touchdesigner_script_top_plays_a_grid(baked, td, song):
    """Through the TouchDesigner bridge (the strict stand-in), frame_grid shows what the offline renderer does."""
    from test_touchdesigner import as_uint8, blocks, cook, make_op, offline_frames, picture, write_graph as td_graph
    _, out = baked
    td_graph(song.graph, lambda d: d["nodes"].update(bars={
        "type": "frame_grid", "inputs": {"features": "smooth.features"}, "params": {"path": str(out), "vary": [0, 1]}}))
    expected = offline_frames(song.graph)
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop = str(song.graph), audio
    shown = []
    for block in list(blocks(song.samples))[:40]:
        cook(td, top, audio, block)
        assert top.standin_errors == []
        shown.append(picture(top).copy())
    for k, rgb in enumerate(shown):
        assert np.abs(rgb.astype(int) - as_uint8(expected[k]).astype(int)).max() <= 1, f"frame {k}"
    assert len({rgb.tobytes() for rgb in shown}) > 5   # the point moved through the grid


def test_ranges_and_fixed_values_come_from_the_song_after_the_conditioning(tmp_path):
    from cppnviz import runner
    from cppnviz.graph import load_graph
    graph = write_graph(tmp_path)
    out = tmp_path / "song.grid"
    result = run_cli("bake", graph, "--node", "cppn", "--vary", "2,5", "--steps", "2", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    g = load_graph(graph)
    values = np.stack([v for _, _, v in runner.collect(g, "bands", ["bands"], runner.total_frames(g))])
    header = grid.read_header(out)
    np.testing.assert_allclose(header["ranges"], np.percentile(values[:, [2, 5]], [1, 99], axis=0).T, rtol=1e-12)
    np.testing.assert_allclose(header["fixed"], np.median(values, axis=0), rtol=1e-12)
    assert header["source"]["song"]["file"] == "song.wav" and header["source"]["song"]["frames"] == len(values)


@pytest.mark.parametrize("steps", [[5], [3, 4], [3, 2, 3]], ids=["1-D", "2-D", "3-D"])
def test_linear_weights_and_nearest_in_one_two_and_three_dimensions(tmp_path, steps):
    d = len(steps)
    path = tmp_path / "g.grid"
    writer = grid.GridWriter(path, grid.make_header(width=6, height=4, vary=list(range(d)), steps=steps,
                                                    ranges=[[0, 1]] * d, fixed=None, source={}))
    rng = np.random.default_rng(d)
    frames = rng.integers(0, 256, (*steps, 4, 6, 3), dtype=np.uint8)
    for pos in grid.positions(steps):
        writer.add(grid.encode(frames[pos]))
    writer.publish()
    where = np.array([0.3, 0.75, 0.5][:d]) * (np.array(steps) - 1)         # in steps along each axis
    features = np.zeros(8, np.float32)
    features[:d] = where / (np.array(steps) - 1)
    low, frac = np.floor(where).astype(int), where - np.floor(where)
    expected = np.zeros((4, 6, 3))
    for corner in np.ndindex(*(2,) * d):
        weight = np.prod([f if c else 1 - f for c, f in zip(corner, frac)])
        expected += weight * frames[tuple(low + corner)] / 255.0
    linear = player(path, vary=range(d)).process(Tick(0, 0.0), features=features)["frame"]
    # float32 weights and sums of 2^d terms: a few float32 ulps of 1.0 each
    np.testing.assert_allclose(linear, expected, rtol=0, atol=2 ** d * 4 * np.finfo(np.float32).eps)
    nearest = player(path, "nearest", vary=range(d)).process(Tick(0, 0.0), features=features)["frame"]
    np.testing.assert_array_equal(nearest, frames[tuple(np.floor(where + 0.5).astype(int))] * np.float32(1 / 255))
    beyond = np.full(8, -5.0, np.float32)
    beyond[d - 1] = 7.0    # outside the baked range: held at its edges
    edge = (0,) * (d - 1) + (steps[-1] - 1,)
    np.testing.assert_array_equal(player(path, vary=range(d)).process(Tick(0, 0.0), features=beyond)["frame"],
                                  frames[edge] * np.float32(1 / 255))


def test_live_plays_a_grid(baked, tmp_path):
    """`cppnviz live` (no sound card: the null backend) runs a frame_grid graph and shows its frames."""
    graph, out = baked
    play = tmp_path / "live.yaml"
    play.write_text(f"fps: 30\nnodes:\n  audio: {{type: audio_file, params: {{path: {graph.parent / 'song.wav'}}}}}\n"
                    f"  bands: {{type: stft_bands, inputs: {{audio: audio.audio}}, params: {{bands: octave8}}}}\n"
                    f"  grid: {{type: frame_grid, inputs: {{features: bands.bands}}, "
                    f"params: {{path: {out}, vary: [0, 1], smooth: 0.1}}}}\n")
    result = run_cli("live", play, "--audio-backend", "null", "--no-window", "--seconds", 1, "--osc-port", 0,
                     timeout=120)
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stderr.splitlines() if line.startswith("live: "))
    shown, dropped = int(summary.split()[1]), int(summary.split(" dropped")[0].rsplit(" ", 1)[1])
    assert shown + dropped == 30 and shown >= 15, summary   # a loaded 2-core VM may drop some
