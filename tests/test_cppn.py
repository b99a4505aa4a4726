"""The cppn node: the seed post's static image, the params' meanings, and the fast path against a plain reference."""

from fractions import Fraction

import numpy as np
import pytest

import cppnviz.nodes.cppn as cppn_module
from cppnviz.node import Context
from cppnviz.nodes.cppn import CPPN
from cppnviz.ports import Spec
from cppnviz.timebase import Tick
from float32_bounds import assert_same_picture, cppn_frame_error


def make(features: int = 0, **overrides) -> CPPN:
    """A configured cppn node: declared defaults, then the overrides; `features` linked values if > 0."""
    values = {p.name: p.default for p in CPPN.params}
    values.update(overrides)
    node = CPPN("cppn", values, Context(fps=Fraction(60)))
    node.input_specs = {"features": Spec("features", size=features)} if features else {}
    node.configure(node.input_specs)
    return node


def render(node: CPPN, features=None, t: float = 0.0) -> np.ndarray:
    """One frame, copied (the node reuses its output buffer)."""
    inputs = {} if features is None else {"features": np.asarray(features, np.float32)}
    return node.process(Tick(round(t * 60), t), **inputs)["frame"].copy()


def post_static_image() -> np.ndarray:
    """The seed post's numpy code, verbatim but for the cv2 lines (float64 weights, global RNG)."""
    import numpy
    # basic parameters
    seed = 1337         # PRNG seed
    L = 8               # number of layers
    H = 32              # hidden layer size
    O = 3               # O=3 for RGB, O=1 for grayscale
    nrows = 512         # height of the output image
    ncols = 512         # width of the output image
    # construct a 2D array in which each row has numbers between -1.0 and 1.0
    rowmat = (numpy.tile(numpy.linspace(0, nrows-1, nrows, dtype=numpy.float32), ncols).reshape(ncols, nrows).T - nrows/2.0)/(min(nrows, ncols)/2.0)
    # construct a 2D array in which each column has numbers between -1.0 and 1.0
    colmat = (numpy.tile(numpy.linspace(0, ncols-1, ncols, dtype=numpy.float32), nrows).reshape(nrows, ncols)   - ncols/2.0)/(min(nrows, ncols)/2.0)
    # stack the obtained arrays together and reshape the result into a (nrows*ncols)x3 matrix that will be the input to the CPPN
    inputs = [rowmat, colmat, numpy.sqrt(numpy.power(rowmat, 2)+numpy.power(colmat, 2))]
    inputs = numpy.stack(inputs).transpose(1, 2, 0).reshape(-1, len(inputs))
    # init the PRNG seed
    if seed is not None:
        numpy.random.seed(seed)
    # apply the CPPN
    # (note that we generate its weights on the fly and never store them)
    results = inputs.copy()
    for i in range(0, L):
        if i==L-1:
            W = numpy.random.randn(results.shape[1], O)
        else:
            W = numpy.random.randn(results.shape[1], H)
        results = numpy.tanh(numpy.matmul(results, W))
    # rescale the input to (0.0, 1.0)
    results = (1 + results)/2.0
    # reshape the result into an image and convert its pixels to uint8 numbers
    results = (255.0*results.reshape(nrows, ncols, results.shape[-1])).astype(numpy.uint8)
    return results


def reference(node: CPPN, features=None, t: float = 0.0) -> np.ndarray:
    """A plain float64 CPPN over all pixels at once, one matmul per layer: what the fast path must equal."""
    p = node.p
    h, w = p.height, p.width
    half_y, half_x = (h / 2, w / 2) if p.aspect == "stretch" else (min(h, w) / 2,) * 2
    y = (np.arange(h) - h / 2) / half_y * p.scale
    x = (np.arange(w) - w / 2) / half_x * p.scale
    rows, cols = np.meshgrid(y, x, indexing="ij")
    radius = np.sqrt(rows**2 + cols**2)
    columns = [rows, cols, radius]
    columns += [np.full((h, w), v * p.feature_gain) for v in ([] if features is None else features)]
    if p.period > 0:
        columns.append(np.full((h, w), np.cos(2 * np.pi * t / p.period)))
    hidden = np.stack(columns, axis=-1).reshape(h * w, -1)
    n_out = 3 if p.output == "rgb" else 1
    sizes = [hidden.shape[1]] + [p.hidden] * (p.layers - 1) + [n_out]
    if p.weights == "seed_compatible":
        rng = np.random.RandomState(p.seed)
        weights = [rng.randn(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    else:
        rng = np.random.default_rng(p.seed)
        weights = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    act = {"tanh": np.tanh, "sin": np.sin, "gaussian": lambda z: np.exp(-z**2),
           "clip": lambda z: np.clip(z, -1, 1)}[p.activation]
    for W in weights[:-1]:
        hidden = act(hidden @ W)
    z = hidden @ weights[-1]
    out = 1 / (1 + np.exp(-z)) if p.mapping == "sigmoid" else (1 + act(z)) / 2
    out = np.broadcast_to(out.reshape(h, w, n_out), (h, w, 3))
    if p.vignette:
        out = out * np.maximum(0, 1 - radius / p.scale)[..., None]
    return out


def test_reproduces_the_posts_static_image():
    state = np.random.get_state()
    try:
        expected = post_static_image()
    finally:
        np.random.set_state(state)
    node = make(weights="seed_compatible", aspect="keep", layers=8, hidden=32, seed=1337,
                output="rgb", width=512, height=512)
    ours = (render(node) * 255).astype(np.uint8)
    # float32 here, float64 there: a saturated tanh is exactly 1 in float32 (255, not 254).
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1


def test_weights_leave_the_global_rng_alone():
    np.random.seed(7)
    first = np.random.rand()
    np.random.seed(7)
    make(hidden=8, width=16, height=16)
    assert np.random.rand() == first


@pytest.mark.parametrize("overrides", [{}, {"output": "gray"}, {"activation": "sin", "mapping": "sigmoid"},
                                       {"activation": "gaussian", "vignette": True}, {"activation": "clip"}])
def test_frame_shape_dtype_range_contiguity(overrides):
    node = make(features=4, width=40, height=24, hidden=8, **overrides)
    frame = node.process(Tick(0, 0.0), features=np.array([0.5, 2.0, 0.0, 1.0], np.float32))["frame"]
    assert frame.shape == (24, 40, 3) and frame.dtype == np.float32 and frame.flags.c_contiguous
    assert 0.0 <= frame.min() and frame.max() <= 1.0


def test_same_seed_same_frames_other_seed_differs():
    a, b = make(features=3, width=32, height=32), make(features=3, width=32, height=32)
    other = make(features=3, width=32, height=32, seed=1338)
    for f in ([0, 0, 0], [1, 2, 3]):
        np.testing.assert_array_equal(render(a, f), render(b, f))
        assert not np.allclose(render(a, f), render(other, f))


def test_normal_weights_differ_from_seed_compatible():
    assert not np.allclose(render(make(width=32, height=32)), render(make(width=32, height=32, weights="normal")))


def test_features_change_the_picture():
    node = make(features=2, width=32, height=32)
    assert not np.allclose(render(node, [0, 0]), render(node, [1, 0]))
    assert not np.allclose(render(node, [0, 0]), render(node, [0, 1]))


def test_feature_gain_scales_the_features():
    node = make(features=2, width=32, height=32, feature_gain=2.0)
    plain = make(features=2, width=32, height=32)
    np.testing.assert_allclose(render(node, [0.5, 1.0]), render(plain, [1.0, 2.0]), atol=1e-6)


def test_gray_output_has_equal_channels():
    frame = render(make(output="gray", width=32, height=32))
    np.testing.assert_array_equal(frame[..., 0], frame[..., 1])
    np.testing.assert_array_equal(frame[..., 0], frame[..., 2])
    assert frame.std() > 0


def test_vignette_is_zero_at_the_corners():
    frame = render(make(vignette=True, width=48, height=32))
    for corner in (frame[0, 0], frame[0, -1], frame[-1, 0], frame[-1, -1]):
        np.testing.assert_array_equal(corner, 0.0)
    assert frame[16, 24].max() > 0  # the centre (r = 0) keeps its colour


def test_sigmoid_and_affine_mappings():
    affine = make(width=32, height=32, activation="gaussian")
    sigmoid = make(width=32, height=32, activation="gaussian", mapping="sigmoid")
    a, s = render(affine), render(sigmoid)
    assert not np.allclose(a, s)
    assert a.min() >= 0.5  # (1 + exp(-z^2)) / 2: the seed's affine mapping of a gaussian stays in [0.5, 1]
    np.testing.assert_allclose(s, reference(sigmoid), atol=1 / 255)


def test_period_animates_without_features():
    node = make(width=32, height=32, period=4.0)
    at0, at1, at4 = render(node, t=0.0), render(node, t=1.0), render(node, t=4.0)
    assert not np.allclose(at0, at1)
    np.testing.assert_allclose(at0, at4, atol=1e-6)  # one full period later
    still = make(width=32, height=32)
    np.testing.assert_array_equal(render(still, t=0.0), render(still, t=1.0))


def test_aspect_keep_versus_stretch_on_a_wide_frame():
    square_node, keep_node = make(width=64, height=64, aspect="keep"), make(width=128, height=64, aspect="keep")
    square, keep = render(square_node), render(keep_node)
    stretch = render(make(width=128, height=64, aspect="stretch"))
    # keep: both axes divided by min(h, w)/2, so the middle 64 columns are the square picture (the same
    # exact values; float32 rounding differs with where BLAS finds a pixel's row in the matrix)
    assert_same_picture(keep[:, 32:96], square, cppn_frame_error(keep_node.network)[:, 32:96],
                        cppn_frame_error(square_node.network))
    assert not np.allclose(stretch[:, 32:96], square, atol=1e-2)


def test_scale_zooms_out():
    # scale 2 spans +-2: the centre half of the picture at scale 2 is the scale-1 picture of half the size
    zoomed_node, small_node = make(width=64, height=64, scale=2.0), make(width=32, height=32)
    zoomed, small = render(zoomed_node), render(small_node)
    assert_same_picture(zoomed[16:48, 16:48], small, cppn_frame_error(zoomed_node.network)[16:48, 16:48],
                        cppn_frame_error(small_node.network))
    assert not np.allclose(render(make(width=64, height=64))[16:48, 16:48], small, atol=1e-2)


def test_param_change_rebuilds():
    node = make(width=32, height=32, hidden=16)
    before = render(node)
    node.set_param("hidden", 8)
    assert node.network.sizes[1] == 8
    np.testing.assert_array_equal(render(node), render(make(width=32, height=32, hidden=8)))
    assert not np.allclose(before, render(node))
    node.set_param("width", 48)
    assert render(node).shape == (32, 48, 3)


@pytest.mark.parametrize("aspect", ["stretch", "keep"])
def test_scale_and_vignette_changes_replace_the_pixels_not_the_network(aspect):
    # A drive changes scale every tick: it must give the frames of a node built at that scale,
    # bit for bit, without rebuilding the network (the same weight arrays afterwards).
    settings = {"width": 40, "height": 24, "layers": 4, "period": 2.0, "aspect": aspect, "backend": "numpy"}
    node = make(features=3, vignette=True, **settings)
    network, layers = node.network, list(node.network.w_layers)
    features = [0.3, 1.5, 0.0]
    for k, (name, value) in enumerate([("scale", 1.37), ("scale", 0.6), ("vignette", False), ("scale", 2.5),
                                       ("vignette", True), ("scale", 1.0)]):
        node.set_param(name, value)
        assert node.network is network and all(a is b for a, b in zip(node.network.w_layers, layers))
        fresh = make(features=3, **{**settings, "scale": node.p.scale, "vignette": node.p.vignette})
        np.testing.assert_array_equal(render(node, features, 0.3 * k), render(fresh, features, 0.3 * k))
    assert not np.array_equal(render(node, features), render(make(features=3, **settings, scale=2.0), features))


@pytest.mark.parametrize("overrides", [
    {"activation": "tanh"},
    {"activation": "sin", "layers": 5},
    {"activation": "gaussian", "mapping": "sigmoid"},
    {"activation": "clip", "output": "gray", "vignette": True},
    {"activation": "tanh", "aspect": "keep", "scale": 1.7, "period": 3.0, "weights": "normal"},
])
@pytest.mark.parametrize("small_chunks", [False, True])
def test_fast_path_equals_plain_float64_reference(overrides, small_chunks, monkeypatch):
    if small_chunks:
        # Many chunks on every thread, matmuls as stacks of row blocks plus the rows left over.
        monkeypatch.setattr(cppn_module, "CHUNK_BYTES", 600 * 4 * 16)
        monkeypatch.setattr(cppn_module, "SMALL_GEMM", 128 * 16 * 16)
    settings = {"layers": 6, "hidden": 16, "feature_gain": 0.8, **overrides}
    node = make(features=3, width=200, height=96, **settings)
    assert len(node.network.chunks) > 1
    assert (node.network.blocks[1] == 128) == small_chunks
    features = [0.3, 1.5, 0.0]
    for t in (0.0, 0.7):
        np.testing.assert_allclose(render(node, features, t), reference(node, features, t), atol=1 / 255)


def test_blas_thread_count_is_restored():
    if cppn_module._OPENBLAS is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS this node can find: nothing to set or restore")
    get, _ = cppn_module._OPENBLAS
    before = get()
    render(make(width=64, height=64))
    assert get() == before


def test_render_from_a_pool_thread_runs_inline():
    node = make(width=256, height=128)
    assert len(node.network.chunks) > 1
    expected = render(node)
    job = cppn_module._executor().submit(lambda: node.network.render(None, 0.0).copy())
    np.testing.assert_array_equal(job.result(timeout=60), expected)
