"""Fitting a CPPN to a picture: time and PSNR at 128 and 256 px, and the dial's trade-off (PSNR against reactivity).

Run: .venv/bin/python bench/bench_fit.py [--steps 4000] [--image PICTURE] [--pictures | --dial]
The picture is the project's own (tests/test_fit.py's shapes: a gradient, a disc and a box) unless --image names
one. Times are wall and CPU seconds of one process (the trainer runs BLAS on one thread). --pictures also
writes examples/fitted_look.npz (the look examples/fitted.yaml ships with) and docs/img/fit_before_after.png
(the picture, the look at the neutral features, a frame of examples/fitted.yaml's video of the demo song).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from cppnviz import fit as fitting  # noqa: E402
from machine import cpu_model, load  # noqa: E402


def picture(size: int, image: str | None) -> np.ndarray:
    if image:
        return fitting.load_image(image, size=size)
    from test_fit import shapes
    return shapes(size).astype(np.float32)


def timed_fit(image: np.ndarray, steps: int, reactivity: float):
    wall, cpu = time.perf_counter(), time.process_time()
    model, figures = fitting.fit(image, steps=steps, reactivity=reactivity, seed=0)
    return model, figures, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--image", help="a picture of your own instead of the project's shapes")
    parser.add_argument("--pictures", action="store_true", help="write the README picture and the example look")
    parser.add_argument("--dial", action="store_true",
                        help="only the dial at 0, 0.25, 0.5, 0.75, 1 (128 px), charted in docs/img/fit_dial.png")
    args = parser.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} cores, numpy {np.__version__}; load before: {load()}")
    print(f"8x32 tanh, 8 features, {args.steps} steps of 1024 pixels, seed 0")
    if args.dial:
        return chart_dial(args)
    print("size  reactivity  psnr_dB  reactivity_figure  motion  unfitted_motion  wall_s  cpu_s")
    looks = {}
    for size, reactivity in ((128, 0.0), (256, 0.0), (128, 0.5), (128, 1.0)):
        image = picture(size, args.image)
        model, figures, wall, cpu = timed_fit(image, args.steps, reactivity)
        looks[(size, reactivity)] = (image, model, figures)
        print(f"{size:4d}  {reactivity:10.1f}  {figures['psnr']:7.2f}  {figures['reactivity']:17.3f}  "
              f"{figures['motion']:6.4f}  {figures['unfitted_motion']:15.4f}  {wall:6.1f}  {cpu:5.1f}", flush=True)
    print(f"load after: {load()}")
    if args.pictures:
        write_pictures(looks[(128, 0.5)])


def chart_dial(args) -> None:
    """PSNR against the reactivity figure over five dial settings, printed and drawn."""
    from PIL import Image, ImageDraw

    image = picture(128, args.image)
    points = []
    print("dial  psnr_dB  reactivity_figure  cpu_s")
    for dial in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, figures, _, cpu = timed_fit(image, args.steps, dial)
        points.append((dial, figures["reactivity"], figures["psnr"]))
        print(f"{dial:4.2f}  {figures['psnr']:7.2f}  {figures['reactivity']:17.3f}  {cpu:5.1f}", flush=True)
    width, height, margin = 480, 320, 50
    chart = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(chart)
    top = max(p for _, _, p in points) + 2
    low = min(p for _, _, p in points) - 2
    x_of = lambda r: margin + r / 0.5 * (width - 2 * margin)           # reactivity 0..0.5 across
    y_of = lambda p: height - margin - (p - low) / (top - low) * (height - 2 * margin)
    draw.line([(margin, margin), (margin, height - margin), (width - margin, height - margin)], fill="black")
    draw.text((margin, 10), "PSNR (dB) against reactivity, dial 0..1, 8x32 tanh, 128 px", fill="black")
    draw.text((width - margin - 150, height - margin + 20), "reactivity (x unfitted network)", fill="black")
    for value in (0.1, 0.2, 0.3, 0.4, 0.5):
        draw.text((x_of(value) - 8, height - margin + 5), f"{value:.1f}", fill="black")
    for value in range(int(low) + 1, int(top) + 1, 2):
        draw.text((10, y_of(value) - 6), f"{value}", fill="black")
    xy = [(x_of(r), y_of(p)) for _, r, p in points]
    draw.line(xy, fill=(40, 90, 200), width=2)
    for (dial, _, _), (x, y) in zip(points, xy):
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(40, 90, 200))
        draw.text((x + 6, y - 14), f"{dial:g}", fill="black")
    out = ROOT / "docs" / "img" / "fit_dial.png"
    chart.save(out)
    print(f"wrote {out}")


def write_pictures(made) -> None:
    """The image, the fitted picture at the neutral features, and a frame of examples/fitted.yaml's video, side by side."""
    from PIL import Image

    from cppnviz import runner
    from cppnviz.graph import load_graph

    image, model, figures = made
    fitting.save_look(ROOT / "examples" / "fitted_look.npz", model, n_features=8, feature_gain=0.5, figures=figures,
                      image={"name": "shapes (tests/test_fit.py)", "fit_width": 128, "fit_height": 128},
                      training={"size": 128, "steps": "see bench_fit.py", "seed": 0, "reactivity": 0.5})
    neutral = fitting.render(model, fitting.coordinates(256, 256), np.full(8, 0.5, np.float32)).reshape(256, 256, 3)
    # The example graph on the demo song at 256 px: of its first 10 s, the frame farthest from the still picture.
    graph = load_graph(ROOT / "examples" / "fitted.yaml", [("cppn", "width", 256), ("cppn", "height", 256)])
    frames = [values.reshape(256, 256, 3) for _, _, values in runner.collect(graph, "cppn", ["frame"], 300)]
    moved = max(frames, key=lambda f: float(np.abs(f - neutral).mean()))
    big = np.asarray(Image.fromarray(np.round(image * 255).astype(np.uint8)).resize((256, 256), Image.Resampling.NEAREST),
                     np.float32) / 255
    gap = np.ones((256, 6, 3), np.float32)
    row = np.concatenate([big, gap, neutral, gap, moved], axis=1)
    out = ROOT / "docs" / "img" / "fit_before_after.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(row, 0, 1) * 255).astype(np.uint8)).save(out)
    print(f"wrote {out} and examples/fitted_look.npz (PSNR {figures['psnr']:.2f} dB, "
          f"reactivity {figures['reactivity']:.3f})")


if __name__ == "__main__":
    main()
