"""Frame grid player: the frame a baked grid holds at this tick's feature values, blended between its nodes."""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from cppnviz import grid
from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import Input, Output, Spec

from .cppn import BACKENDS, choose_backend

log = logging.getLogger(__name__)

CHUNK_PIXELS = 32768    # rows blended at a time: the float32 scratch (384 KiB) stays in L2
_LEVEL = np.float32(1.0 / 255.0)


class FrameGrid(Node):
    """Plays a baked frame grid (`cppnviz bake`, `cppnviz grid-from`): features pick a point in it."""

    type_name = "frame_grid"
    stage = "render"
    # `smooth` glides the grid position from tick to tick, so with smooth > 0 a frame depends on the
    # ticks before it: this render node keeps state between ticks. Paths that need render nodes to be
    # pure functions of (tick, inputs, params) (frame ranges rendered apart, e.g. Ray segments) must
    # refuse it by name, or run it with smooth 0.
    keeps_state = True
    inputs = (Input("features", "features", "values whose `vary` entries pick the point in the grid"),)
    outputs = (Output("frame", "frame", "the grid's frame at that point, float32 (height, width, 3) in [0, 1] (a CuPy "
                      "array on the cupy backend)"),)
    params = (
        Param("path", "path", REQUIRED, "grid file to play (made by cppnviz bake or cppnviz grid-from)"),
        Param("vary", "floats", [0, 1], "feature indices that index the grid's axes, in order; must match the file",
              min=0, max=4095),
        Param("blend", "choice", "linear", "nearest: the closest stored frame; linear: bi/trilinear between the "
              "2^d stored frames around the point", choices=("nearest", "linear")),
        Param("smooth", "float", 0.0, "time constant of the grid position, so jumps glide (0: none)",
              min=0, max=60, unit="s"),
        Param("backend", "choice", "auto", "where the frames are held and blended: auto (the GPU when one is usable), "
              "numpy (host memory, one core), cupy (the whole grid in GPU memory; an error where no GPU is usable)",
              choices=BACKENDS),
    )

    def configure(self, inputs):
        p = self.p
        backend = choose_backend(p.backend, self.name)
        loaded = (_identity(p.path), backend)
        if getattr(self, "_loaded", None) != loaded:   # a blend or smooth change keeps the frames
            self.grid = self.device = None            # a grid held on the other backend is let go first
            self.grid = grid.read(p.path)
            if backend == "cupy":
                from ._grid_cuda import GridBlend
                frames = self.grid.frames
                # Uploaded once as held on the host (uint8); the host copy is then let go.
                self.device = GridBlend(frames.reshape(-1, *frames.shape[len(self.grid.steps):]), p.path)
                self.grid = grid.Grid(self.grid.header, None)
            self._loaded = loaded
        header = self.grid.header
        vary = p.vary if isinstance(p.vary, list) else [p.vary]
        if not all(float(v).is_integer() for v in vary):
            raise ParamError(f"param 'vary': expected feature indices (whole numbers), found {vary}")
        vary = [int(v) for v in vary]
        if vary != header["vary"]:
            raise ParamError(f"param 'vary': the grid '{p.path}' was baked over features {header['vary']}, "
                             f"found {vary}")
        size = inputs["features"].size
        if size is not None and max(vary) >= size:
            raise ParamError(f"param 'vary': feature index {max(vary)} is past the {size} features arriving")
        fixed = header.get("fixed")
        if size is not None and fixed is not None and len(fixed) != size:
            log.warning("node '%s': the grid '%s' was baked with %d features, %d arrive here",
                        self.name, p.path, len(fixed), size)
        self.vary = np.asarray(vary)
        self.steps = np.asarray(header["steps"])
        ranges = np.asarray(header["ranges"], np.float64)
        self.low, self.span = ranges[:, 0], ranges[:, 1] - ranges[:, 0]
        self.snap = np.abs(ranges).max(axis=1) * 2.0**-23 * (self.steps - 1) / np.abs(self.span)
        self.strides = np.asarray([int(np.prod(self.steps[i + 1:])) for i in range(len(self.steps))])
        height, width = header["height"], header["width"]
        if self.device is not None:
            self.frame = self.device.frame
            self.reset()
            return {"frame": Spec("frame", shape=(height, width, 3))}
        self.flat = self.grid.frames.reshape(-1, *self.grid.frames.shape[len(self.steps):])
        self.frame = np.zeros((height, width, 3), np.float32)
        rows = max(1, CHUNK_PIXELS // width)
        self.scratch = np.empty((rows, width, 3), np.float32)
        self.rows = [(i, min(i + rows, height)) for i in range(0, height, rows)]
        self.reset()
        return {"frame": Spec("frame", shape=(height, width, 3))}

    def reset(self):
        self.position = None     # the smoothed grid position, in steps
        self.shown = None        # the (frame index, weight) pairs self.frame holds

    def locate(self, features) -> np.ndarray:
        """Where the features point in the grid, in steps along each axis, within the grid."""
        values = np.asarray(features, np.float64)[self.vary]
        with np.errstate(divide="ignore", invalid="ignore"):
            where = np.where(self.span != 0, (values - self.low) / self.span, 0.0) * (self.steps - 1)
        where = np.clip(np.nan_to_num(where), 0, self.steps - 1)
        # A value baked at a node arrives as float32, up to half an ulp (|v| 2^-24) off the node's value:
        # snap what lies within one ulp of a node onto it, so the player shows the stored frame itself.
        nodes = np.rint(where)
        return np.where(np.abs(where - nodes) <= self.snap, nodes, where)

    def process(self, tick, features):
        target = self.locate(features)
        if self.p.smooth > 0 and self.position is not None:
            a = math.exp(-1.0 / (self.p.smooth * float(self.ctx.fps)))
            self.position = a * self.position + (1.0 - a) * target
        else:
            self.position = target
        mix = self.weights(self.position)
        if mix != self.shown:
            self._blend(mix)
            self.shown = mix
        return {"frame": self.frame}

    def weights(self, position: np.ndarray) -> list[tuple[int, float]]:
        """(flat frame index, weight) of the stored frames to mix; frames of weight 0 left out."""
        if self.p.blend == "nearest":
            return [(int(np.dot(np.floor(position + 0.5).astype(int), self.strides)), 1.0)]
        base = np.minimum(np.floor(position).astype(int), self.steps - 1)
        frac = position - base
        mix = []
        for corner in np.ndindex(*(2,) * len(self.steps)):
            w = float(np.prod([f if c else 1.0 - f for c, f in zip(corner, frac)]))
            if w > 0:
                mix.append((int(np.dot(base + corner, self.strides)), w))
        return mix

    def _blend(self, mix: list[tuple[int, float]]) -> None:
        """frame = sum of weight * stored frame / 255, a chunk of rows at a time (one core), or on the GPU."""
        if self.device is not None:   # the same float32 scales, products and sums, in the same order
            self.device.blend([(i, np.float32(w) * _LEVEL) for i, w in mix])
            return
        scaled = [(self.flat[i], np.float32(w) * _LEVEL) for i, w in mix]
        for i0, i1 in self.rows:
            out, tmp = self.frame[i0:i1], self.scratch[:i1 - i0]
            first, w = scaled[0]
            np.multiply(first[i0:i1], w, out=out)
            for stored, w in scaled[1:]:
                np.multiply(stored[i0:i1], w, out=tmp)
                out += tmp
        if len(mix) > 1:   # float rounding of weights summing to 1 may overshoot 1.0 by an ulp
            np.minimum(self.frame, 1.0, out=self.frame)


def _identity(path: str) -> tuple:
    """What makes a loaded grid still the file at `path`: its name, size and modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return (path,)
    return (path, st.st_size, st.st_mtime_ns)
