"""Fitting a CPPN to a picture: the image, the training, the reactivity dial, the look file.

The fitted network has the cppn node's inputs (row, col, r, then the features) and its sigmoid
mapping, plus biases, so the node renders it with its own code (numpy, CUDA, TouchDesigner).

The dial. Training pixels come in pairs of feature vectors: the neutral vector f0 (every band at
the normaliser's gain, the median of its output by construction), whose target is the image, and
a vector f drawn like the normaliser's output on music, whose target is the image plus
`reactivity` times what f does to an unfitted network of the same shape:

    target(x, f) = image(x) + reactivity * (R(x, f) - R(x, f0))

At 0 the network learns to ignore the features (the most faithful picture: training with random
features and the image as the only target removes motion, as NeuroMV found). At 1 it must carry
the unfitted network's whole motion beside the picture, and the capacity spent on motion is taken
from the likeness; values between scale the motion asked for, so both figures move monotonically.
We chose a motion target over a sensitivity penalty (asking only for *some* change) because a
penalty is met most cheaply by flicker of the whole frame; the target keeps the unfitted network's
kind of motion, shapes that shift with the bands. The features' first-layer weights start as the
unfitted network's times the dial, so the motion asked for has its pathway from the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import madefile
from .errors import CppnvizError
from .train import MLP, Adam, mse

KIND, VERSION = "look", 1
ACTIVATIONS = ("tanh", "sin", "gaussian")   # the cppn node's activations that have a derivative everywhere
MIN_SIZE = 8

# The normaliser's output on music, as log-normal around its gain: g * exp(SPREAD * z). Measured on
# examples/demo.wav through examples/mixed.yaml (gain 0.5): after the smoother the per-band median is
# 0.56-0.79 and the std of log(f / g) 0.16-0.66; before it 0.67-1.11 (gate off). 0.5 covers both.
SPREAD = 0.5
REFERENCE_FRAMES = 16      # feature vectors in the reference sequence the reactivity is measured over
REFERENCE_SEED = 20261130  # one fixed sequence, so figures of different looks compare


class FitError(CppnvizError):
    """An image that cannot be fitted (missing, empty, corrupt, not an image, too small)."""


# -- the picture ------------------------------------------------------------------------

def load_image(path: str | Path, *, size: int) -> np.ndarray:
    """[shape=(h, w, 3)] float32 in [0, 1], the short side `size` pixels (aspect kept); alpha composited on black."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FitError(f"cannot read image '{path}': it does not exist")
    if not path.is_file():
        raise FitError(f"cannot read image '{path}': it is not a regular file")
    if path.stat().st_size == 0:
        raise FitError(f"cannot read image '{path}': the file is empty")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = _as_float_rgb(im)
    except UnidentifiedImageError:
        raise FitError(f"cannot read image '{path}': not an image format Pillow knows") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data
        raise FitError(f"cannot read image '{path}': damaged or truncated ({exc})") from None
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise FitError(f"cannot fit image '{path}': it is {w}x{h} pixels; at least {MIN_SIZE}x{MIN_SIZE} are needed")
    scale = size / min(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    if shape != (w, h):
        # Per channel as 32-bit float images, so 16-bit pictures keep their depth through the resize.
        rgb = np.stack([np.asarray(Image.fromarray(rgb[..., c], "F").resize(shape, Image.Resampling.LANCZOS))
                        for c in range(3)], axis=-1)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _as_float_rgb(im) -> np.ndarray:
    """Any Pillow mode -> float32 RGB in [0, 1], alpha (also a palette's transparency) composited on black."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):        # 16-bit and 32-bit grayscale
        values = np.asarray(im, np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = (values / top).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode == "P" and "transparency" in im.info or im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        rgba = np.asarray(im, np.float32) / 255.0
        return rgba[..., :3] * rgba[..., 3:]
    return np.asarray(im.convert("RGB"), np.float32) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two pictures in [0, 1]."""
    err = float(np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
    return math.inf if err == 0 else 10.0 * math.log10(1.0 / err)


def image_hash(path: str | Path) -> str:
    return madefile.file_hash(path)


# -- the network's inputs -----------------------------------------------------------------

def coordinates(height: int, width: int) -> np.ndarray:
    """[shape=(h*w, 3)] (row, col, r) per pixel, float32, as the cppn node computes them (aspect stretch, scale 1)."""
    from .nodes.cppn import axis_coords

    y, x = axis_coords(height, height / 2.0, 1.0), axis_coords(width, width / 2.0, 1.0)
    grid = np.empty((height, width, 3), np.float32)
    grid[..., 0] = y[:, None]
    grid[..., 1] = x[None, :]
    grid[..., 2] = np.sqrt(np.square(y)[:, None] + np.square(x)[None, :])
    return grid.reshape(-1, 3)


def draw_features(rng: np.random.Generator, n: int, n_features: int, gain: float) -> np.ndarray:
    """[shape=(n, n_features)] feature vectors drawn like the normaliser's output on music."""
    return (gain * np.exp(SPREAD * rng.standard_normal((n, n_features)))).astype(np.float32)


def reference_sequence(n_features: int, gain: float) -> np.ndarray:
    """The fixed feature sequence the reactivity figure is measured over."""
    return draw_features(np.random.default_rng(REFERENCE_SEED), REFERENCE_FRAMES, n_features, gain)


def unfitted(sizes: list[int], activation: str, seed: int) -> MLP:
    """The cppn node's own random network of this shape (seed_compatible N(0, 1) weights, no biases), sigmoid mapping."""
    draw = np.random.RandomState(seed).randn
    weights = [draw(n_in, n_out).astype(np.float32) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return MLP(weights, [np.zeros(w.shape[1], np.float32) for w in weights],
               [activation] * (len(sizes) - 2) + ["sigmoid"])


def render(model: MLP, coords: np.ndarray, features: np.ndarray, *, chunk: int = 16384) -> np.ndarray:
    """[shape=(h*w, 3)] the network's colours at every pixel for one feature vector."""
    out = np.empty((len(coords), model.sizes[-1]), np.float32)
    row = np.broadcast_to(np.asarray(features, np.float32), (min(chunk, len(coords)), len(features)))
    for i in range(0, len(coords), chunk):
        block = coords[i:i + chunk]
        out[i:i + chunk] = model(np.concatenate([block, row[:len(block)]], axis=1))
    return out


def motion(model: MLP, coords: np.ndarray, sequence: np.ndarray) -> float:
    """Mean absolute change of a colour value from one frame of `sequence` to the next."""
    frames = [render(model, coords, f) for f in sequence]
    return float(np.mean([np.mean(np.abs(b - a)) for a, b in zip(frames[:-1], frames[1:])]))


# -- fitting ---------------------------------------------------------------------------------

@dataclass
class Look:
    """A fitted network and what it was made for: the node renders it, `cppnviz fit` writes it."""

    model: MLP
    n_features: int
    feature_gain: float
    header: dict

    @property
    def layers(self) -> int:
        return len(self.model.weights)

    @property
    def hidden(self) -> int:
        return self.model.weights[0].shape[1]

    @property
    def activation(self) -> str:
        return self.model.activations[0]


def fit(image: np.ndarray, *, layers: int = 8, hidden: int = 32, activation: str = "tanh", n_features: int = 8,
        steps: int = 4000, seed: int = 0, reactivity: float = 0.0, feature_gain: float = 0.5, lr: float = 3e-3,
        batch_size: int = 1024, progress: Callable[[int], None] | None = None) -> tuple[MLP, dict]:
    """Train a network on `image` [shape=(h, w, 3)]; return it and its figures (psnr, reactivity)."""
    # OpenBLAS threads split each tiny matmul and then wait on each other: 1500 steps at 128 px took
    # 8.3 s on one thread and 238 s on two on this (busy) 2-core machine. The same guard as the renderer's.
    from .nodes.cppn import single_threaded_blas

    with single_threaded_blas():
        return _fit(image, layers=layers, hidden=hidden, activation=activation, n_features=n_features, steps=steps,
                    seed=seed, reactivity=reactivity, feature_gain=feature_gain, lr=lr, batch_size=batch_size,
                    progress=progress)


def _fit(image, *, layers, hidden, activation, n_features, steps, seed, reactivity, feature_gain, lr, batch_size,
         progress):
    h, w = image.shape[:2]
    coords = coordinates(h, w)
    pixels = image.reshape(-1, 3).astype(np.float32)
    sizes = [3 + n_features] + [hidden] * (layers - 1) + [3]
    model = MLP.create(sizes, activation=activation, output="sigmoid", seed=seed)
    reference = unfitted(sizes, activation, seed)
    if reactivity > 0:
        # The features' weights start as the unfitted network's, scaled by the dial (Glorot's are ~0.3, too
        # small for Adam to grow in a few thousand steps). At 2000 steps this raised both figures: 24.3 dB and
        # 0.173 at 0.5 (from 23.7 dB and 0.143), 23.2 dB and 0.337 at 1 (from 21.1 dB and 0.308).
        model.weights[0][3:] = reactivity * reference.weights[0][3:]
    neutral = np.full(n_features, feature_gain, np.float32)
    rng = np.random.default_rng(seed)
    opt = Adam(model, lr=lr)
    half = batch_size // 2
    for step in range(steps):
        idx = rng.integers(0, len(coords), batch_size)
        xy = coords[idx]
        feats = np.empty((batch_size, n_features), np.float32)
        feats[:half] = neutral
        feats[half:] = draw_features(rng, batch_size - half, n_features, feature_gain)
        x = np.concatenate([xy, feats], axis=1)
        target = pixels[idx]
        if reactivity > 0:
            # Not clipped to [0, 1]: clipping took motion away where the picture is near black or white,
            # and the likeness then rose again past reactivity 0.5 (measured: 25.5, 26.1, 26.5 dB at 0.5,
            # 0.75, 1); unclipped, both figures move monotonically (24.5, 23.5, 22.6 dB).
            still = np.concatenate([xy[half:], np.broadcast_to(neutral, (batch_size - half, n_features))], axis=1)
            target[half:] += reactivity * (reference(x[half:]) - reference(still))
        out, cache = model.forward(x)
        _, grad = mse(out, target)
        grads, _ = model.backward(cache, grad)
        # Cosine decay: large steps find the picture, small ones settle its edges.
        opt.step(grads, lr * 0.5 * (1 + math.cos(math.pi * step / steps)))
        if progress is not None:
            progress(step + 1)
    fitted = render(model, coords, neutral).reshape(h, w, 3)
    sequence = reference_sequence(n_features, feature_gain) if n_features else None
    figures = {"psnr": psnr(fitted, image)}
    if sequence is not None:
        figures["motion"], figures["unfitted_motion"] = motion(model, coords, sequence), motion(reference, coords, sequence)
        figures["reactivity"] = figures["motion"] / figures["unfitted_motion"]
    return model, figures


# -- the look file ---------------------------------------------------------------------------

def save_look(path: str | Path, model: MLP, *, n_features: int, feature_gain: float, figures: dict,
              image: dict, training: dict) -> None:
    """Write a look file (kind "look"): the network's arrays and a header that describes them."""
    header = {
        "layers": len(model.weights), "hidden": model.weights[0].shape[1], "activation": model.activations[0],
        "mapping": "sigmoid", "output": "rgb", "aspect": "stretch",
        "inputs": ["row", "col", "r"] + [f"feature{i}" for i in range(n_features)],
        "n_features": n_features, "feature_gain": feature_gain, "feature_spread": SPREAD,
        "image": image, "training": training,
        "psnr": round(figures["psnr"], 3), "reactivity": round(figures.get("reactivity", 0.0), 4),
        # The reactivity's two parts: mean absolute change of a colour value (0..1) per frame of the reference sequence.
        "motion": round(figures.get("motion", 0.0), 5), "unfitted_motion": round(figures.get("unfitted_motion", 0.0), 5),
    }
    arrays = {name: value.astype(np.float32) for name, value in model.params().items()}
    madefile.write(path, kind=KIND, version=VERSION, header=header, arrays=arrays)


def load_look(path: str | Path) -> Look:
    """Read a look file made by `cppnviz fit`; one clear error for anything else."""
    header, arrays = madefile.read(path, kind=KIND, versions=(VERSION,))
    try:
        layers, n_features = int(header["layers"]), int(header["n_features"])
        weights = [np.asarray(arrays[f"W{i}"], np.float32) for i in range(layers)]
        biases = [np.asarray(arrays[f"b{i}"], np.float32) for i in range(layers)]
        activation, gain = str(header["activation"]), float(header["feature_gain"])
    except (KeyError, TypeError, ValueError) as exc:
        raise madefile.MadeFileError(f"'{path}' is a damaged look file (missing or bad {exc})") from None
    sizes = [3 + n_features] + [w.shape[1] for w in weights]
    shapes_ok = all(w.shape == (a, b) and bias.shape == (b,) for w, bias, a, b
                    in zip(weights, biases, sizes[:-1], sizes[1:]))
    if not shapes_ok or sizes[-1] != 3 or activation not in ACTIVATIONS:
        raise madefile.MadeFileError(f"'{path}' is a damaged look file (its arrays do not match its header)")
    model = MLP(weights, biases, [activation] * (layers - 1) + ["sigmoid"])
    return Look(model, n_features, gain, header)
