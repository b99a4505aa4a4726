"""stack: any number of frames side by side, one above another, or in a grid, with gaps between them."""

from __future__ import annotations

import math

import numpy as np

from cppnviz.errors import GraphError, ParamError, Problem
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec, to_host


def _size(shape) -> str:
    return "?" if shape is None else f"{shape[0]}x{shape[1]}"


class Stack(Node):
    """Frames placed in a row, a column or a grid (one picture per stem), gaps and labels optional."""

    type_name = "stack"
    stage = "render"
    inputs = (Input("frames", "frame", "the frames to place, in order: a list of links (as many as wanted)",
                    multiple=True),)
    outputs = (Output("frame", "frame", "the frames placed together"),)
    params = (
        Param("layout", "choice", "row", "row: side by side (equal heights); column: one above another (equal "
              "widths); grid: rows of `columns` cells (equal sizes)", choices=("row", "column", "grid")),
        Param("columns", "int", 0, "cells per grid row; 0 = ceil(sqrt(frames)); ignored by row and column",
              min=0, max=64),
        Param("gap", "int", 0, "pixels between neighbouring frames", min=0, max=512, unit="px"),
        Param("background", "float", 0.0, "grey level of the gaps and of empty grid cells (0 black, 1 white)",
              min=0, max=1),
        Param("labels", "str", "", "captions, comma-separated, one per frame in order, drawn white on a black "
              "outline in each frame's top-left corner; empty: none"),
    )

    def configure(self, inputs):
        p = self.p
        specs = inputs["frames"]
        specs = specs if isinstance(specs, list) else [specs]
        shapes = [s.shape for s in specs]
        found = ", ".join(_size(s) for s in shapes)
        if any(s is None for s in shapes):
            raise GraphError([Problem("input 'frames'", f"every frame needs a known size; found {found}")])
        heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
        if p.layout == "row":
            if len(set(heights)) > 1:
                raise GraphError([Problem("input 'frames'", f"layout row needs frames of one height; found {found}")])
            origins, size = self._line(widths, heights[0], along=1)
        elif p.layout == "column":
            if len(set(widths)) > 1:
                raise GraphError([Problem("input 'frames'", f"layout column needs frames of one width; found {found}")])
            origins, size = self._line(heights, widths[0], along=0)
        else:
            if len(set(shapes)) > 1:
                raise GraphError([Problem("input 'frames'", f"layout grid needs frames of one size; found {found}")])
            cols = min(p.columns, len(shapes)) if p.columns else math.ceil(math.sqrt(len(shapes)))
            rows = math.ceil(len(shapes) / cols)
            h, w = heights[0], widths[0]
            origins = [((k // cols) * (h + p.gap), (k % cols) * (w + p.gap)) for k in range(len(shapes))]
            size = (rows * h + (rows - 1) * p.gap, cols * w + (cols - 1) * p.gap)
        self.frame = np.full((*size, 3), p.background, np.float32)
        self.views = [self.frame[y:y + s[0], x:x + s[1]] for (y, x), s in zip(origins, shapes)]
        self.text, self.outline = self._captions(size, origins, len(shapes))
        return {"frame": Spec("frame", shape=(*size, 3))}

    def _captions(self, size, origins, count) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Masks of the labels' pixels and of a one-pixel outline around them (drawn once: labels do not change)."""
        labels = [t.strip() for t in self.p.labels.split(",")] if self.p.labels.strip() else []
        if len(labels) > count:
            raise ParamError(f"param 'labels': {len(labels)} captions for {count} frames, found {self.p.labels!r}")
        if not labels:
            return None, None
        from PIL import Image, ImageDraw   # only when labels are asked for

        image = Image.new("L", (size[1], size[0]), 0)
        draw = ImageDraw.Draw(image)
        for (y, x), label in zip(origins, labels):
            draw.text((x + 3, y + 2), label, fill=255)
        text = np.asarray(image) > 127
        grown = text.copy()
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            grown |= np.roll(text, (dy, dx), axis=(0, 1))
        return text, grown & ~text

    def _line(self, lengths: list[int], across: int, along: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """Origins of frames one after another along axis `along` (0 down, 1 right), gaps between; the total size."""
        starts = np.concatenate(([0], np.cumsum(np.asarray(lengths) + self.p.gap)[:-1])).tolist()
        total = sum(lengths) + (len(lengths) - 1) * self.p.gap
        if along == 1:
            return [(0, x) for x in starts], (across, total)
        return [(y, 0) for y in starts], (total, across)

    def process(self, tick, frames):
        for view, frame in zip(self.views, frames):
            view[...] = to_host(frame)
        if self.text is not None:
            self.frame[self.outline] = 0.0
            self.frame[self.text] = 1.0
        return {"frame": self.frame}
