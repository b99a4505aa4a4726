"""The `cppnviz fit` command: a CPPN look fitted to a picture (cli.py adds it with add_fit_command)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import OutputError


def add_fit_command(subparsers) -> None:
    """Add `fit` to the CLI's subcommands."""
    text = "fit a CPPN to a picture and write a look file for the cppn node's `fitted` param"
    p = subparsers.add_parser("fit", help=text, description=text + ". Prints the fitted picture's PSNR against "
                              "the image and its reactivity (its motion under music, as a fraction of an unfitted "
                              "network's).")
    p.add_argument("image", help="picture to fit (PNG, JPEG, WebP, ...; 16-bit, grayscale; alpha goes on black)")
    p.add_argument("--out", required=True, metavar="LOOK.npz", help="look file to write")
    p.add_argument("--size", type=int, default=128, metavar="PX", help="training size of the short side (default 128)")
    p.add_argument("--layers", type=int, default=8, metavar="N", help="weight matrices (default 8)")
    p.add_argument("--hidden", type=int, default=32, metavar="N", help="units per hidden layer (default 32)")
    p.add_argument("--activation", default="tanh", help="tanh, sin or gaussian (default tanh)")
    p.add_argument("--features", type=int, default=8, metavar="N",
                   help="feature inputs the network takes: the size of the features link it will get (default 8)")
    p.add_argument("--feature-gain", type=float, default=0.5, metavar="G",
                   help="the normaliser gain of the graphs it will run in: the neutral feature value (default 0.5)")
    p.add_argument("--steps", type=int, default=4000, metavar="N", help="training steps of 1024 pixels (default 4000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and of the unfitted network (default 0)")
    p.add_argument("--reactivity", type=float, default=0.0, metavar="0..1",
                   help="0: the most faithful picture; 1: the most motion; between: a trade (default 0)")
    p.add_argument("--preview", metavar="PNG", help="also write the image and the fitted picture side by side")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_fit)


def _check_options(args) -> None:
    from .fit import ACTIVATIONS, FitError

    ranges = (("size", 8, 2048), ("layers", 2, 32), ("hidden", 1, 256), ("features", 0, 64), ("steps", 1, 10**7),
              ("seed", 0, 2**31 - 1))
    for name, low, high in ranges:
        value = getattr(args, name)
        if not low <= value <= high:
            raise FitError(f"--{name}: expected an integer in {low}..{high}, found {value}")
    if not 0.0 <= args.reactivity <= 1.0:
        raise FitError(f"--reactivity: expected a number in 0..1, found {args.reactivity}")
    if not 0.0 < args.feature_gain <= 1000:
        raise FitError(f"--feature-gain: expected a number in 0..1000 above 0, found {args.feature_gain}")
    if args.activation not in ACTIVATIONS:
        raise FitError(f"--activation: expected one of {', '.join(ACTIVATIONS)}, found {args.activation!r}")


def cmd_fit(args) -> int:
    from .cli import absolute
    from .fit import fit, image_hash, load_image, save_look
    from .outputs import check_file_output, check_not_an_input

    _check_options(args)
    outputs = [args.out] + ([args.preview] if args.preview else [])
    for out in outputs:   # before the training, not after a minute of it
        check_file_output(Path(out), what="a file name such as look.npz" if out == args.out else "a file name such as fit.png")
    check_not_an_input([absolute(o) for o in outputs], [absolute(args.image)])
    if args.preview and os.path.realpath(args.preview) == os.path.realpath(args.out):
        raise OutputError(f"cannot write '{args.preview}': it is also --out; give another name")
    image = load_image(args.image, size=args.size)
    h, w = image.shape[:2]

    from tqdm import tqdm  # loaded when the command runs

    print(f"fitting {args.image} at {w}x{h} px: {args.steps} steps", file=sys.stderr, flush=True)

    bar = tqdm(total=args.steps, unit="step", disable=True if args.quiet else None, file=sys.stderr,
               dynamic_ncols=True, desc="fit")
    started = time.perf_counter()
    try:
        model, figures = fit(image, layers=args.layers, hidden=args.hidden, activation=args.activation,
                             n_features=args.features, steps=args.steps, seed=args.seed, reactivity=args.reactivity,
                             feature_gain=args.feature_gain, progress=lambda k: bar.update(1))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    from PIL import Image

    with Image.open(args.image) as im:
        original = im.size
    save_look(args.out, model, n_features=args.features, feature_gain=args.feature_gain, figures=figures,
              image={"name": Path(args.image).name, "sha256": image_hash(args.image), "width": original[0],
                     "height": original[1], "fit_width": w, "fit_height": h},
              training={"size": args.size, "steps": args.steps, "seed": args.seed, "reactivity": args.reactivity,
                        "seconds": round(seconds, 2)})
    if args.preview:
        write_preview(Path(args.preview), image, model, args.features, args.feature_gain)
    motion = f", reactivity {figures['reactivity']:.3f} of an unfitted network" if "reactivity" in figures else ""
    print(f"wrote {args.out}: PSNR {figures['psnr']:.2f} dB at the neutral features{motion} "
          f"({args.layers}x{args.hidden} {args.activation}, {args.features} features, {w}x{h} px, "
          f"{args.steps} steps in {seconds:.1f} s)", file=sys.stderr)
    return 0


def write_preview(path: Path, image, model, n_features: int, gain: float) -> None:
    """The image and the fitted picture side by side, as an 8-bit PNG written under a partial name."""
    import numpy as np
    from PIL import Image

    from .fit import coordinates, render
    from .soundpic import write_atomic

    h, w = image.shape[:2]
    fitted = render(model, coordinates(h, w), np.full(n_features, gain, np.float32)).reshape(h, w, 3)
    both = Image.fromarray(np.round(np.clip(np.concatenate([image, fitted], axis=1), 0, 1) * 255).astype(np.uint8))
    write_atomic(path, lambda partial: both.save(partial, format="PNG"))
