"""Composing frames: the seed's tiled video (one CPPN disc per band) and a spectrum meter to show what the analyser hears."""

from __future__ import annotations

import math

import numpy as np

from cppnviz.errors import GraphError, ParamError, Problem
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec, to_host

from .cppn import ACTIVATIONS, BACKENDS, Network, axis_coords, choose_backend, feature_count


def grid_shape(n: int, layout: str, columns: int) -> tuple[int, int]:
    """(rows, columns) of cells for n cells: one row, or a grid of `columns` (0: ceil(sqrt(n)))."""
    if layout == "row":
        return 1, n
    cols = min(columns, n) if columns else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


class Tiler(Node):
    """The seed's tiled video: one CPPN per band drawn as a disc that grows with the band, beside any input frames."""

    type_name = "tiler"
    stage = "render"
    inputs = (
        Input("features", "features", "one value per band: band b drives tile b's network and disc", required=False),
        Input("frames", "frame", "frames to place side by side (all of one shape), before the band tiles",
              required=False, multiple=True),
    )
    outputs = (Output("frame", "frame", "the composed picture: input frames first, then one tile per band"),)
    params = (
        Param("tile_size", "int", 64, "side of each band's square tile; with frames linked every cell takes the "
              "frames' shape and a band tile is the largest centred square", min=16, max=2048, unit="px", shapes=True),
        Param("layout", "choice", "row", "row: every cell side by side (the seed); grid: rows of `columns` cells",
              choices=("row", "grid"), shapes=True),
        Param("columns", "int", 0, "cells per grid row; 0 = ceil(sqrt(cells)); ignored by layout row", min=0, max=64, shapes=True),
        Param("layers", "int", 4, "weight matrices per band network (the seed's tiled.py: 4)", min=2, max=32),
        Param("hidden", "int", 16, "units per hidden layer of each band network", min=1, max=256),
        Param("seed", "int", 1337, "weights seed: band b's network uses seed + b", min=0, max=2**31 - 1),
        Param("activation", "choice", "clip", "nonlinearity of every layer (the seed's tiled.py: clip to [-1, 1])",
              choices=ACTIVATIONS),
        Param("period", "float", 4.0, "each network's input cos(2 pi t / period) (the seed: 4 s); 0 = off",
              min=0, max=3600, unit="s"),
        Param("radius_gain", "float", 1.3, "disc radius R = min(radius_gain * value + 1e-6, 1), 1 = tile edge",
              min=0, max=100),
        Param("background", "choice", "white", "white: discs on white, colours inverted as the seed (1 - v); "
              "black: discs on black, colours as rendered", choices=("white", "black")),
        Param("backend", "choice", "auto", "where the band networks render: auto (the GPU when usable), numpy, "
              "cupy", choices=BACKENDS),
    )
    # Every param but radius_gain rebuilds the band networks: live, that is done off the render thread.
    heavy = frozenset(p.name for p in params) - {"radius_gain"}

    def configure(self, inputs):
        p = self.p
        frames = inputs.get("frames") or []
        n_bands = feature_count(inputs)
        if not frames and not n_bands:
            raise GraphError([Problem("inputs", "link 'features' (one tile per band), 'frames', or both")])
        shapes = [s.shape for s in frames]
        if any(s is None or len(s) != 3 for s in shapes) or len(set(shapes)) > 1:
            found = ", ".join("?" if s is None else f"{s[0]}x{s[1]}" for s in shapes)
            raise GraphError([Problem("input 'frames'", f"all frames must have one shape (height x width); found {found}")])
        # Cells: the input frames' shape, else square tiles; a band tile is a square centred in its cell.
        cell_h, cell_w = shapes[0][:2] if frames else (p.tile_size, p.tile_size)
        side = min(cell_h, cell_w)
        n = len(frames) + n_bands
        rows, cols = grid_shape(n, p.layout, p.columns)
        self.bg = 1.0 if p.background == "white" else 0.0
        self.frame = np.full((rows * cell_h, cols * cell_w, 3), self.bg, np.float32)
        origins = [((k // cols) * cell_h, (k % cols) * cell_w) for k in range(n)]
        self.frame_views = [self.frame[y:y + cell_h, x:x + cell_w] for y, x in origins[:len(frames)]]
        dy, dx = (cell_h - side) // 2, (cell_w - side) // 2
        self.tile_views = [self.frame[y + dy:y + dy + side, x + dx:x + dx + side] for y, x in origins[len(frames):]]
        backend = choose_backend(p.backend, self.name) if n_bands else "numpy"
        self.networks = [Network(side, side, layers=p.layers, hidden=p.hidden, seed=p.seed + b, n_features=1,
                                 period=p.period, activation=p.activation, backend=backend) for b in range(n_bands)]
        # The networks' own radius (stretch coordinates of a square tile), for the disc masks.
        axis = axis_coords(side, side / 2.0, 1.0)
        self.r2 = (np.square(axis)[:, None] + np.square(axis)[None, :])[..., None]
        self.mask = np.empty((side, side, 1), np.float32)
        return {"frame": Spec("frame", shape=self.frame.shape)}

    def process(self, tick, features=None, frames=()):
        for view, frame in zip(self.frame_views, frames):
            np.copyto(view, to_host(frame))
        if self.networks:
            values = np.asarray(features, np.float64).reshape(-1)
            if values.size != len(self.networks):
                raise ValueError(f"expected {len(self.networks)} band values, found {values.size}")
            for view, network, v in zip(self.tile_views, self.networks, values):
                self._band(view, network, float(v), tick.time)
        return {"frame": self.frame}

    def _band(self, view: np.ndarray, network: Network, v: float, t: float) -> None:
        """Tile of one band: colours times mask 1 - (r/R)^2 inside radius R, then inverted on white."""
        grow = self.p.radius_gain * v
        if not grow > 0:
            # A silent band draws nothing. (The seed's code lights the one pixel at r = 0.)
            view[...] = self.bg
            return
        radius = min(grow + 1e-6, 1.0)
        m = self.mask
        np.multiply(self.r2, 1.0 / radius**2, out=m)
        np.subtract(1.0, m, out=m)
        np.maximum(m, 0.0, out=m)
        # A GPU tile is small: composing it on the host costs one short copy.
        np.multiply(to_host(network.render(np.array([v]), t)), m, out=view)
        if self.bg == 1.0:
            np.subtract(1.0, view, out=view)


class SpectrumMeter(Node):
    """Bars of the feature values, one per band, so a user sees what the analyser hears."""

    type_name = "spectrum_meter"
    stage = "render"
    inputs = (Input("features", "features", "the values to draw, one bar each"),)
    outputs = (Output("frame", "frame", "the bars, float32 (height, width, 3) in [0, 1]"),)
    params = (
        Param("width", "int", 256, "frame width", min=16, max=7680, unit="px", shapes=True),
        Param("height", "int", 256, "frame height", min=16, max=4320, unit="px", shapes=True),
        Param("max_value", "float", 2.0, "value drawn at full height; larger values are clipped", min=1e-6, max=1e6,
              scale="log"),
        Param("color", "floats", [0.2, 0.9, 1.0], "bar colour: red, green, blue (or one gray value)", min=0, max=1),
        Param("gap", "int", 2, "space between neighbouring bars (half of it at each edge)", min=0, max=256, unit="px"),
        Param("background", "float", 0.0, "gray level behind the bars", min=0, max=1),
    )

    def configure(self, inputs):
        p = self.p
        color = p.color if isinstance(p.color, list) else [p.color]
        if len(color) not in (1, 3):
            raise ParamError(f"param 'color': expected 1 or 3 values (red, green, blue), found {len(color)}")
        self.color = np.broadcast_to(np.asarray(color, np.float32), (3,)).copy()
        n = feature_count(inputs)
        if n < 1:
            raise GraphError([Problem("input 'features'", "expected at least one value to draw")])
        # Column -> band it belongs to, or -1 in the gaps: bar b spans its slot less gap/2 each side.
        edges = np.round(np.arange(n + 1) * p.width / n).astype(int)
        band_of_column = np.full(p.width, -1, np.intp)
        for b in range(n):
            lo, hi = edges[b] + p.gap // 2, edges[b + 1] - (p.gap - p.gap // 2)
            if hi <= lo:  # a slot narrower than the gap keeps a one-pixel bar
                lo, hi = edges[b], max(edges[b] + 1, edges[b + 1] - 1)
            band_of_column[lo:hi] = b
        # Pixel row y lights when its height above the bottom is below its column's bar height.
        # Compared on the frame seen as (height, width * 3): each colour channel its own column,
        # so every numpy pass runs along long contiguous rows (twice as fast as (h, w, 1) masks).
        self.band_of_channel = np.repeat(band_of_column, 3)
        self.height_above = (p.height - 1 - np.arange(p.height))[:, None]
        self.heights = np.zeros(n + 1, np.intp)  # index -1 (gaps) stays 0: never lit
        self.channel_heights = np.zeros(3 * p.width, np.intp)
        self.lit = np.zeros((p.height, 3 * p.width), bool)
        self.lit_row = np.tile(self.color, p.width)
        self.frame = np.zeros((p.height, p.width, 3), np.float32)
        return {"frame": Spec("frame", shape=self.frame.shape)}

    def process(self, tick, features):
        values = np.nan_to_num(np.asarray(features, np.float64).reshape(-1), nan=0.0)
        fraction = np.clip(values / self.p.max_value, 0.0, 1.0)
        self.heights[:-1] = np.round(fraction * self.p.height)
        np.take(self.heights, self.band_of_channel, out=self.channel_heights)
        np.less(self.height_above, self.channel_heights, out=self.lit)
        rows = self.frame.reshape(self.p.height, -1)
        rows[...] = self.p.background
        np.copyto(rows, self.lit_row, where=self.lit)
        return {"frame": self.frame}
