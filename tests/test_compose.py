"""The tiler (the seed's tiled video, and frames side by side) and the spectrum meter."""

from fractions import Fraction

import numpy as np
import pytest

from cppnviz.errors import GraphError
from cppnviz.node import Context
from cppnviz.nodes.compose import SpectrumMeter, Tiler
from cppnviz.ports import Spec
from cppnviz.timebase import Tick


def make(cls, inputs: dict, **overrides):
    """A configured node of `cls`: declared defaults, then the overrides; `inputs` are the arriving specs."""
    values = {p.name: p.default for p in cls.params}
    values.update(overrides)
    node = cls("node", values, Context(fps=Fraction(60)))
    node.input_specs = inputs
    node.configure(inputs)
    return node


def bands(n: int) -> dict:
    return {"features": Spec("features", size=n)}


def frames(*shapes) -> dict:
    return {"frames": [Spec("frame", shape=s) for s in shapes]}


def test_eight_bands_in_a_row_like_the_seed():
    node = make(Tiler, bands(8))
    frame = node.process(Tick(0, 0.0), features=np.ones(8, np.float32))["frame"]
    assert frame.shape == (64, 512, 3) and frame.dtype == np.float32 and frame.flags.c_contiguous
    assert 0.0 <= frame.min() and frame.max() <= 1.0


@pytest.mark.parametrize("columns,shape", [(0, (192, 192, 3)), (4, (128, 256, 3)), (8, (64, 512, 3))])
def test_grid_shapes(columns, shape):
    node = make(Tiler, bands(8), layout="grid", columns=columns)
    assert node.process(Tick(0, 0.0), features=np.ones(8, np.float32))["frame"].shape == shape


def test_silent_band_is_white_and_loud_band_is_a_centred_disc():
    node = make(Tiler, bands(2))
    frame = node.process(Tick(0, 0.0), features=np.array([0.0, 10.0], np.float32))["frame"]
    silent, loud = frame[:, :64], frame[:, 64:]
    np.testing.assert_array_equal(silent, 1.0)
    # R = 1: the disc touches the tile's edges, so the corners (r > 1) stay white and the middle is coloured
    for corner in (loud[0, 0], loud[0, -1], loud[-1, 0], loud[-1, -1]):
        np.testing.assert_array_equal(corner, 1.0)
    assert loud[16:48, 16:48].mean() < 0.9


def test_disc_grows_with_the_band_value():
    node = make(Tiler, bands(1))

    def coloured(v):
        return int((node.process(Tick(0, 0.0), features=np.array([v], np.float32))["frame"] < 1.0).any(-1).sum())
    assert 0 < coloured(0.1) < coloured(0.3) < coloured(0.7)


def test_black_background_is_the_white_one_inverted():
    values = np.array([0.4, 0.0, 2.0], np.float32)
    white = make(Tiler, bands(3)).process(Tick(5, 5 / 60), features=values)["frame"].copy()
    black = make(Tiler, bands(3), background="black").process(Tick(5, 5 / 60), features=values)["frame"]
    np.testing.assert_allclose(white, 1.0 - black, atol=1e-6)


def test_bands_move_with_the_period():
    node = make(Tiler, bands(1), period=4.0)
    values = np.array([1.0], np.float32)
    first = node.process(Tick(0, 0.0), features=values)["frame"].copy()
    assert not np.allclose(first, node.process(Tick(60, 1.0), features=values)["frame"])
    np.testing.assert_allclose(first, node.process(Tick(240, 4.0), features=values)["frame"], atol=1e-6)


def test_two_frames_side_by_side():
    node = make(Tiler, frames((32, 32, 3), (32, 32, 3)))
    rng = np.random.default_rng(1)
    a, b = (rng.random((32, 32, 3)).astype(np.float32) for _ in range(2))
    out = node.process(Tick(0, 0.0), frames=[a, b])["frame"]
    assert out.shape == (32, 64, 3)
    np.testing.assert_array_equal(out[:, :32], a)
    np.testing.assert_array_equal(out[:, 32:], b)


def test_frames_in_a_grid_leave_empty_cells_as_background():
    node = make(Tiler, frames(*[(16, 24, 3)] * 3), layout="grid", background="black")
    parts = [np.full((16, 24, 3), v, np.float32) for v in (0.25, 0.5, 0.75)]
    out = node.process(Tick(0, 0.0), frames=parts)["frame"]
    assert out.shape == (32, 48, 3)
    assert out[0, 0, 0] == 0.25 and out[0, 24, 0] == 0.5 and out[16, 0, 0] == 0.75
    np.testing.assert_array_equal(out[16:, 24:], 0.0)


def test_frames_then_band_tiles_at_the_frames_height():
    node = make(Tiler, {**frames((32, 32, 3)), **bands(2)})
    picture = np.full((32, 32, 3), 0.3, np.float32)
    out = node.process(Tick(0, 0.0), frames=[picture], features=np.array([0.0, 5.0], np.float32))["frame"]
    assert out.shape == (32, 96, 3)
    np.testing.assert_array_equal(out[:, :32], picture)
    np.testing.assert_array_equal(out[:, 32:64], 1.0)
    assert out[:, 64:].mean() < 1.0


def test_mismatched_frame_shapes_raise_at_configure():
    with pytest.raises(GraphError, match="32x32.*16x32"):
        make(Tiler, frames((32, 32, 3), (16, 32, 3)))


def test_tiler_needs_an_input():
    with pytest.raises(GraphError, match="features"):
        make(Tiler, {})


def test_output_buffer_is_reused():
    node = make(Tiler, bands(2))
    first = node.process(Tick(0, 0.0), features=np.ones(2, np.float32))["frame"]
    assert node.process(Tick(1, 1 / 60), features=np.ones(2, np.float32))["frame"] is first


def lit_rows(frame: np.ndarray, x: int, background: float) -> int:
    return int((frame[:, x] != background).any(-1).sum())


def test_spectrum_meter_bar_heights_are_proportional():
    node = make(SpectrumMeter, bands(4), width=64, height=100, max_value=2.0, background=0.1)
    frame = node.process(Tick(0, 0.0), features=np.array([0.0, 0.5, 1.0, 3.0], np.float32))["frame"]
    assert frame.shape == (100, 64, 3) and frame.dtype == np.float32
    # slot centres 8, 24, 40, 56: heights 0, 25, 50 and clipped to 100
    assert [lit_rows(frame, x, 0.1) for x in (8, 24, 40, 56)] == [0, 25, 50, 100]
    np.testing.assert_allclose(frame[99, 24], [0.2, 0.9, 1.0])  # bars grow from the bottom
    np.testing.assert_allclose(frame[74, 24], 0.1)
    assert lit_rows(frame, 0, 0.1) == 0 and lit_rows(frame, 63, 0.1) == 0  # gaps at the edges


def test_spectrum_meter_gray_colour_and_wrong_colour_length():
    node = make(SpectrumMeter, bands(2), width=32, height=32, color=[0.5])
    frame = node.process(Tick(0, 0.0), features=np.array([2.0, 2.0], np.float32))["frame"]
    np.testing.assert_allclose(frame[10, 8], 0.5)
    with pytest.raises(Exception, match="color"):
        make(SpectrumMeter, bands(2), color=[0.5, 0.5])
