"""The CPPN renderer: the seed post's fixed random network over (row, col, r, features, cos t), made fast.

The maths is the post's (h_l = act(W_l h_{l-1}), no biases, output (1+y)/2); the speed comes from
doing only what changes per frame: the spatial inputs are cached, the features' contribution to
layer 1 is one vector of `hidden` numbers per frame, and the per-pixel layers run in float32 over
cache-sized chunks of pixel rows on every core (numpy releases the GIL in matmul and tanh).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from cppnviz.errors import GraphError, ParamError, Problem
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec
from cppnviz.rebuild import off_render_thread

ACTIVATIONS = ("tanh", "sin", "gaussian", "clip")
BACKENDS = ("auto", "numpy", "cupy")

log = logging.getLogger(__name__)

# Bytes of one (chunk, hidden) float32 buffer: two of them fill a core's 2 MiB L2 here. At
# 512x512, 8 layers of 32 on 2 cores (best of 40): 1 MiB chunks (8192 pixels) 34 ms, 512 KiB
# 37 ms, 256 KiB 49 ms, 4 MiB 39 ms. Smaller chunks mean more numpy calls, and each call
# takes the GIL twice, so the threads wait on each other more; on 1 thread all were ~60 ms.
CHUNK_BYTES = 2**20
# OpenBLAS (x86-64 builds) multiplies without packing when M*N*K <= 1e6, so each layer's matmul
# runs as a stack of row blocks under that size, one numpy call per layer (numpy loops over the
# stack in C). (4096, 32) @ (32, 32), single thread: 149 us in one piece, 110 us as a Python
# loop over 976-row blocks, 97 us as a stack of 8 x 512 rows. Blocks of fewer than 128 rows
# (hidden > 88) are not used: at hidden 128 they were slower than one piece.
SMALL_GEMM = 1_000_000


# -- threads ----------------------------------------------------------------------

def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


THREADS = min(_cores(), 16)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One persistent pool shared by every network (the tiler holds several)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            # The thread that calls render() is the last worker.
            _pool = ThreadPoolExecutor(max(1, THREADS - 1), thread_name_prefix="cppn")
        return _pool


def _find_openblas():
    """(get, set) thread-count functions of the OpenBLAS numpy loaded, or None for any other BLAS."""
    here = os.path.dirname(np.__file__)
    libs = (glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*"))
            + glob.glob(os.path.join(here, ".dylibs", "*openblas*")))
    names = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads")]
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in names:
            if hasattr(lib, get) and hasattr(lib, set_):
                return getattr(lib, get), getattr(lib, set_)
    return None


_OPENBLAS = _find_openblas()


@contextmanager
def single_threaded_blas():
    """Run the block with OpenBLAS on one thread, then restore its count.

    Our own threads already fill the cores; OpenBLAS would otherwise split each chunk's
    matmul over its threads too (above M*N*K = 262144), and the two kinds of threads fight:
    before the row-block split, 512x512 frames took 85-120 ms instead of 47-55 ms. Matmuls in
    the small-matrix path never thread, so this guards hidden > 88 and other builds.
    (openblas_set_num_threads_local is process-global in pthread builds, hence set/restore.)
    """
    if _OPENBLAS is None:
        yield
        return
    get, set_ = _OPENBLAS
    before = get()
    if before != 1:
        set_(1)
    try:
        yield
    finally:
        if before != 1:
            set_(before)


# -- the network --------------------------------------------------------------------

def make_weights(sizes: list[int], seed: int, kind: str = "seed_compatible") -> list[np.ndarray]:
    """float64 weight matrices, one per consecutive pair of `sizes`, drawn in order.

    seed_compatible: numpy.random.seed(seed) + randn per layer (a private RandomState gives
    the same numbers without disturbing the global one); normal: default_rng(seed).
    """
    if kind == "seed_compatible":
        draw = np.random.RandomState(seed).randn
        return [draw(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    if kind == "normal":
        rng = np.random.default_rng(seed)
        return [rng.standard_normal((n_in, n_out)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    raise ValueError(f"unknown weights kind {kind!r}")


def axis_coords(n: int, half: float, scale: float) -> np.ndarray:
    """The seed's (i - n/2) / half in float32, exactly as the post computes it, times scale."""
    coords = (np.linspace(0, n - 1, n, dtype=np.float32) - n / 2.0) / half
    return coords * np.float32(scale) if scale != 1.0 else coords


def _activate(x: np.ndarray, kind: str) -> None:
    """Apply the activation in place (no new arrays: these run once per layer per chunk)."""
    if kind == "tanh":
        np.tanh(x, out=x)
    elif kind == "sin":
        np.sin(x, out=x)
    elif kind == "gaussian":
        np.square(x, out=x)
        np.negative(x, out=x)
        np.exp(x, out=x)
    else:  # clip, as the seed's tiled.py
        np.clip(x, -1.0, 1.0, out=x)


def _block_rows(w: np.ndarray) -> int:
    """Rows per block (a power of two) so that rows * w.size stays in OpenBLAS's small-matrix path; 0: no blocks."""
    rows = 1 << max(0, (SMALL_GEMM // w.size).bit_length() - 1)
    return rows if rows >= 128 else 0


def _matmul(a: np.ndarray, w: np.ndarray, out: np.ndarray, block: int) -> None:
    """out = a @ w, computed as a stack of `block`-row pieces plus the rows left over."""
    stacked = len(a) // block * block if block else 0
    if stacked:
        shape = (stacked // block, block, a.shape[1])
        np.matmul(a[:stacked].reshape(shape), w, out=out[:stacked].reshape(shape[:2] + (w.shape[1],)))
    if stacked < len(a):
        np.matmul(a[stacked:], w, out=out[stacked:])


class Network:
    """A CPPN at one frame size: render(features, t) -> the (height, width, 3) float32 frame.

    Inputs per pixel: row, col, r, n_features values, then cos(2 pi t / period) if
    period > 0. The returned frame is one buffer, overwritten by the next render. A fitted look
    (cppnviz.fit.Look, `cppnviz fit`) brings its own shape, weights and biases: h_l = act(W_l h_{l-1} + b_l).
    """

    def __init__(self, width: int, height: int, *, layers: int = 8, hidden: int = 16, seed: int = 1337,
                 n_features: int = 0, period: float = 0.0, activation: str = "tanh", output: str = "rgb",
                 mapping: str = "affine", scale: float = 1.0, aspect: str = "stretch",
                 vignette: bool = False, weights: str = "seed_compatible", threads: int | None = None,
                 backend: str = "numpy", look=None):
        if look is not None:  # a fitted look (cppnviz.fit.Look): its shape, mapping and weights, and biases
            layers, hidden, activation, output, mapping = look.layers, look.hidden, look.activation, "rgb", "sigmoid"
            n_features = look.n_features
        self.width, self.height = width, height
        self.n_features, self.period = n_features, period
        self.activation, self.mapping = activation, mapping
        self.threads = THREADS if threads is None else max(1, threads)
        n_in = 3 + n_features + (1 if period > 0 else 0)
        n_out = 3 if output == "rgb" else 1
        self.sizes = [n_in] + [hidden] * (layers - 1) + [n_out]
        self.weights64 = (make_weights(self.sizes, seed, weights) if look is None
                          else [m.astype(np.float64) for m in look.model.weights])
        # Biases (fitted looks only): layer 1's joins the per-frame term, the others follow each matmul.
        self.b_first = 0.0 if look is None else look.model.biases[0].astype(np.float64)
        self.biases = None if look is None else [b.astype(np.float32) for b in look.model.biases[1:]]
        # Without a features link a look shows its picture at the neutral vector it was fitted for.
        self.neutral = None if look is None else np.full(n_features, look.feature_gain)
        w = [m.astype(np.float32) for m in self.weights64]
        # Layer 1 per pixel is (row, col, r, 1) @ w_first: the weights of the spatial inputs, then
        # the per-frame term (features and cos t times their weights) as the weight of a constant 1.
        self.w_first = np.zeros((4, hidden), np.float32)
        self.w_first[:3] = w[0][:3]
        self.w_frame = self.weights64[0][3:]
        self.w_layers = [self.w_first] + w[1:]
        self.blocks = [_block_rows(m) for m in self.w_layers]

        self.half_y, self.half_x = ((height / 2.0, width / 2.0) if aspect == "stretch"
                                    else (min(height, width) / 2.0,) * 2)
        self.gpu = None
        if backend == "cupy":
            # The fused kernel computes coordinates per pixel itself: no CPU frame buffers at all.
            from ._cuda import CudaNetwork
            self.gpu = CudaNetwork(self.w_layers, width, height, activation=activation, mapping=mapping,
                                   half_y=self.half_y, half_x=self.half_x, scale=scale, vignette=vignette,
                                   biases=self.biases)
            self.gpu_vignette = vignette
            return
        # Cached per pixel: (row, col, r, 1), 16 bytes. Caching layer 1's product instead,
        # 4 * hidden bytes a pixel, was slower: reading it back took 5.4 ms a 512x512 frame
        # (hidden 32, one thread), multiplying these again takes 1.4 ms.
        self.coords = np.empty((height * width, 4), np.float32)
        self.coords[:, 3] = 1.0
        self.zoom(scale, vignette)

        rows = max(1, min(16384, max(1024, CHUNK_BYTES // (4 * hidden))) // width)
        self.chunks = [(i, min(i + rows, height)) for i in range(0, height, rows)]

        # Per-worker scratch, allocated once: two ping-pong hidden buffers and the output units.
        pixels = rows * width
        n_slots = min(self.threads, len(self.chunks))
        self.scratch = [(np.empty((pixels, hidden), np.float32), np.empty((pixels, hidden), np.float32),
                         np.empty((pixels, n_out), np.float32)) for _ in range(n_slots)]
        self.frame = np.zeros((height, width, 3), np.float32)
        self._flat = self.frame.reshape(-1, 3)

    def zoom(self, scale: float, vignette: bool) -> bool:
        """Place the pixels at `scale`, framed by the vignette or not, in place; False where only a new network can.

        Only the coordinate cache depends on these, not the weights. The constructor places them
        through here too, so a network zoomed to a scale renders bit for bit what one built at it
        does. (Scaling layer 1's coordinate weights instead would round differently from the
        coordinates the CUDA kernel and the GLSL export compute per pixel.)
        """
        if self.gpu is not None:
            if vignette != self.gpu_vignette:  # compiled into the kernel
                return False
            self.gpu.args = (np.float32(self.half_y), np.float32(self.half_x), np.float32(scale))
            return True
        # Coordinates as the seed computes them; r from the scaled coordinates.
        self.y = axis_coords(self.height, self.half_y, scale)
        self.x = axis_coords(self.width, self.half_x, scale)
        self.r = np.sqrt(np.square(self.y)[:, None] + np.square(self.x)[None, :])
        # The vignette frames the picture: it uses the unzoomed radius so `scale` does not move it.
        self.vignette = np.maximum(0.0, 1.0 - self.r / np.float32(scale))[..., None] if vignette else None
        coords = self.coords.reshape(self.height, self.width, 4)
        coords[..., 0] = self.y[:, None]
        coords[..., 1] = self.x[None, :]
        coords[..., 2] = self.r
        return True

    def frame_bias(self, features: np.ndarray | None, t: float) -> np.ndarray:
        """Set and return the per-frame part of layer 1's pre-activation: features (and cos t) times their weights."""
        features = self.neutral if features is None else features
        values = [] if features is None else list(np.asarray(features, np.float64).reshape(-1))
        if len(values) != self.n_features:
            raise ValueError(f"expected {self.n_features} feature values, found {len(values)}")
        if self.period > 0:
            values.append(math.cos(2.0 * math.pi * t / self.period))
        self.w_first[3] = (np.asarray(values, np.float64) @ self.w_frame if values else 0.0) + self.b_first
        return self.w_first[3]

    def render(self, features: np.ndarray | None = None, t: float = 0.0) -> np.ndarray:
        """Render one frame into self.frame (a cupy array on the GPU backend) and return it."""
        self.frame_bias(features, t)
        if self.gpu is not None:
            return self.gpu.render(self.w_first[3])
        with single_threaded_blas():
            if len(self.scratch) == 1 or threading.current_thread().name.startswith("cppn") or off_render_thread():
                # One chunk, or called from a pool thread (waiting on the pool there could deadlock), or
                # a trial off the render thread (the pool's threads belong to the frame being rendered).
                for i0, i1 in self.chunks:
                    self._chunk(i0, i1, self.scratch[0])
            else:
                # Workers pull chunks from one shared iterator, so a core slowed by another
                # process simply takes fewer chunks (next() on it is atomic under the GIL).
                todo = iter(self.chunks)

                def work(slot):
                    for i0, i1 in todo:
                        self._chunk(i0, i1, slot)
                # The calling thread works too, rather than sleep while the pool does.
                jobs = [_executor().submit(work, slot) for slot in self.scratch[1:]]
                try:
                    work(self.scratch[0])
                finally:  # never return (or raise) while a worker still writes into the frame
                    for job in jobs:
                        job.result()
        return self.frame

    def _chunk(self, i0: int, i1: int, slot) -> None:
        """Image rows i0..i1 through every layer, written into the frame."""
        p0, p1 = i0 * self.width, i1 * self.width
        x = self.coords[p0:p1]
        for k, (w, block) in enumerate(zip(self.w_layers[:-1], self.blocks)):
            h = slot[k % 2][:p1 - p0]  # the two hidden buffers take turns
            _matmul(x, w, h, block)
            if k and self.biases is not None:
                h += self.biases[k - 1]
            _activate(h, self.activation)
            x = h
        o = slot[2][:p1 - p0]
        _matmul(x, self.w_layers[-1], o, self.blocks[-1])
        if self.biases is not None:
            o += self.biases[-1]
        if self.mapping == "sigmoid":
            # 1/(1+exp(-z)) == (1 + tanh(z/2)) / 2, which never overflows.
            o *= 0.5
            np.tanh(o, out=o)
        else:
            _activate(o, self.activation)
        o *= 0.5
        out = self._flat[p0:p1]
        np.add(o, 0.5, out=out)  # a gray (n, 1) column broadcasts to the 3 channels
        if self.vignette is not None:
            out *= self.vignette[i0:i1].reshape(-1, 1)


# -- the node -------------------------------------------------------------------------

PARAMS = (
    Param("width", "int", 256, "frame width", min=16, max=7680, unit="px", shapes=True),
    Param("height", "int", 256, "frame height", min=16, max=4320, unit="px", shapes=True),
    Param("layers", "int", 8, "number of weight matrices (L in the seed post)", min=2, max=32),
    Param("hidden", "int", 16, "units in each hidden layer (H in the seed post)", min=1, max=256),
    Param("seed", "int", 1337, "weights seed: the same seed gives the same pictures", min=0, max=2**31 - 1),
    Param("activation", "choice", "tanh", "nonlinearity of every layer: tanh, sin, gaussian exp(-x^2), "
          "clip to [-1, 1] (the seed's tiled.py)", choices=ACTIVATIONS),
    Param("output", "choice", "rgb", "rgb: 3 output units; gray: 1 unit shown on all 3 channels",
          choices=("rgb", "gray")),
    Param("mapping", "choice", "affine", "affine: (1+y)/2 with the activation on the last layer too (the seed); "
          "sigmoid: 1/(1+exp(-z)) of the last layer's pre-activation (NeuroMV)", choices=("affine", "sigmoid")),
    Param("scale", "float", 1.0, "coordinate zoom: the inputs span +-scale, so larger shows more of the pattern",
          min=0.01, max=100, scale="log"),
    Param("aspect", "choice", "stretch", "stretch: each axis by its own half-size (the seed's videos); "
          "keep: both by min(height, width)/2 (the post's static image)", choices=("stretch", "keep")),
    Param("vignette", "bool", False, "multiply by max(0, 1 - r) as the seed's mixed.py (r at scale 1)"),
    Param("period", "float", 0.0, "adds the input cos(2 pi t / period), t the frame time; 0 = off",
          min=0, max=3600, unit="s"),
    Param("weights", "choice", "seed_compatible", "seed_compatible: numpy.random.seed + randn per layer "
          "(the post's numbers); normal: numpy's default_rng", choices=("seed_compatible", "normal")),
    Param("feature_gain", "float", 1.0, "multiplies the feature vector before it enters the network",
          min=0, max=100),
    Param("backend", "choice", "auto", "auto: the GPU (CuPy) when one is usable, else numpy on the CPU; "
          "numpy; cupy (an error where no GPU is usable)", choices=BACKENDS),
    Param("fitted", "path", "", "a look made by `cppnviz fit` (shape, activation, mapping and weights come from "
          "it; layers, hidden, activation, output and mapping left at their defaults take its values); empty = none"),
)

# Params a look file decides: set to anything but their default or the file's value, they contradict it.
FITTED_PARAMS = ("layers", "hidden", "activation", "output", "mapping")


@functools.cache
def gpu_unavailable() -> str | None:
    """Why CuPy cannot render here, or None (asked once per process: probing a driver is slow)."""
    from ._cuda import gpu_unavailable as probe
    return probe()


def choose_backend(requested: str, node: str) -> str:
    """numpy or cupy for `requested` (auto, numpy, cupy); auto logs which it chose and why."""
    if requested == "numpy":
        return "numpy"
    reason = gpu_unavailable()
    if reason is None:
        if requested == "auto":
            log.info("node '%s': rendering on the GPU with CuPy", node)
        return "cupy"
    if requested == "cupy":
        raise ParamError(f"param 'backend': cupy cannot render here: {reason}")
    # Loud only for someone who installed CuPy and expects the GPU; --debug shows it to everyone.
    level = logging.DEBUG if reason.startswith("cupy is not installed") else logging.INFO
    log.log(level, "node '%s': rendering on the CPU with numpy (no GPU: %s)", node, reason)
    return "numpy"


def feature_count(inputs: dict, port: str = "features") -> int:
    """Size of the features arriving on `port`, 0 when it is not linked."""
    spec = inputs.get(port)
    if spec is None:
        return 0
    if spec.size is None:
        raise GraphError([Problem(f"input '{port}'", "the features link has no size")])
    return int(spec.size)


def load_fitted(p, n_linked: int):
    """The look the `fitted` param names (cppnviz.fit.Look), checked against the other params and the features link."""
    from cppnviz.fit import load_look
    from cppnviz.madefile import MadeFileError

    try:
        look = load_look(p.fitted)
    except MadeFileError as exc:
        raise ParamError(f"param 'fitted': {exc}") from None
    defaults = {q.name: q.default for q in PARAMS}
    problems = []
    for name in FITTED_PARAMS:
        ours, theirs = getattr(p, name), look.header[name]
        if ours != defaults[name] and ours != theirs:
            problems.append(Problem(f"param '{name}'", f"is {ours!r} but the fitted look '{p.fitted}' has {name} "
                                                       f"{theirs!r}; leave it out or set it to {theirs!r}"))
    if p.period:
        problems.append(Problem("param 'period'", f"is {p.period!r} but the fitted look '{p.fitted}' has no time "
                                                  "input; leave it out or set it to 0"))
    if n_linked and n_linked != look.n_features:
        problems.append(Problem("input 'features'", f"carries {n_linked} values but the fitted look '{p.fitted}' "
                                                    f"takes {look.n_features}"))
    if problems:
        raise GraphError(problems)
    return look


class CPPN(Node):
    """A compositional pattern-producing network frame: the seed post's CPPN, driven by features."""

    type_name = "cppn"
    stage = "render"
    inputs = (Input("features", "features", "values fed to the network beside (row, col, r)", required=False),)
    outputs = (Output("frame", "frame", "the rendered picture, float32 (height, width, 3) in [0, 1]"),)
    params = PARAMS
    # Every param but feature_gain and scale rebuilds the network: live, that is done off the render
    # thread. A new scale only re-places the pixels (vignette too, but on the GPU it is compiled in).
    heavy = frozenset(p.name for p in PARAMS) - {"feature_gain", "scale"}

    def configure(self, inputs):
        p = self.p
        look = load_fitted(p, feature_count(inputs)) if p.fitted else None
        self.network = Network(p.width, p.height, layers=p.layers, hidden=p.hidden, seed=p.seed,
                               n_features=feature_count(inputs), period=p.period, activation=p.activation,
                               output=p.output, mapping=p.mapping, scale=p.scale, aspect=p.aspect,
                               vignette=p.vignette, weights=p.weights,
                               backend=choose_backend(p.backend, self.name), look=look)
        return {"frame": Spec("frame", shape=(p.height, p.width, 3))}

    def start(self):
        # Said when a run starts (not while loading, where another mistake may stop everything).
        if self.network.n_features == 0 and self.p.period == 0 and not getattr(self, "_warned_static", False):
            self._warned_static = True
            log.warning("node '%s': no features input and period 0: every frame is the same picture; link "
                        "'features' (e.g. to a smoother) or set period", self.name)

    def param_changed(self, name):
        if name == "feature_gain":  # read every frame: nothing to rebuild
            return None
        network = getattr(self, "network", None)
        if name in ("scale", "vignette") and network is not None and network.zoom(self.p.scale, self.p.vignette):
            return None  # the same weights, the pixels re-placed
        return super().param_changed(name)

    def process(self, tick, features=None):
        if features is not None and self.p.feature_gain != 1.0:
            features = np.asarray(features, np.float64) * self.p.feature_gain
        return {"frame": self.network.render(features, tick.time)}
