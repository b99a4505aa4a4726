"""Render one frame of examples/driven.yaml per shipped preset and lay them out in docs/img/presets.png.

Run from the repository root: python examples/presets/contact_sheet.py [--seconds-at 8.0]
Each frame comes from a real run of the graph over the whole demo song (so offline drives see the
song's range), cut short of the encoder; the sheet is put together with Pillow.
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cppnviz import presets, runner
from cppnviz.graph import load_graph

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "examples" / "driven.yaml"


def frame_of(preset: Path | None, at: float) -> np.ndarray:
    """The cppn's frame at time `at` (seconds) of a run of the graph with the preset."""
    graph = load_graph(GRAPH, preset=str(preset) if preset else None)
    k = math.floor(Fraction(str(at)) * graph.ctx.fps)
    n = runner.total_frames(graph)
    grabbed = {}

    def grab(i, scheduler):
        if i == k:
            grabbed["frame"] = np.array(scheduler.outputs[("cppn", "frame")], copy=True)
    runner.run(graph, n, names=graph.upstream("cppn"), on_tick=grab)
    return grabbed["frame"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", type=float, default=8.0, help="the time of the frame, seconds")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "presets.png"))
    args = parser.parse_args()
    cells = [("driven.yaml (no preset)", None)] + [(presets.describe(p)[0], p) for p in presets.shipped()]
    size, label = 256, 22
    sheet = Image.new("RGB", (size * len(cells), size + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, preset) in enumerate(cells):
        frame = frame_of(preset, args.at)
        picture = Image.fromarray(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8))
        sheet.paste(picture.resize((size, size)), (i * size, label))
        draw.text((i * size + 6, 5), name, fill="black")
        print(f"{name}: frame at {args.at:g} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.png")
    sheet.save(tmp)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
