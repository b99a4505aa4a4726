"""The `cppnviz presets` command: the shipped presets (or a folder's) with their descriptions."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import presets
from .errors import CppnvizError


def add_presets_command(subparsers) -> None:
    """Add `presets` to the CLI's subcommands."""
    text = "list the shipped presets (drives and params to apply with --preset) and what each does"
    p = subparsers.add_parser("presets", help=text, description=text + ".")
    p.add_argument("folder", nargs="?", help="list the presets in this folder instead")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_presets)


def cmd_presets(args) -> int:
    if args.folder is not None and not Path(args.folder).is_dir():
        raise CppnvizError(f"presets {args.folder}: not a folder; expected a folder of preset .yaml files")
    files = sorted(Path(args.folder).glob("*.yaml")) if args.folder else presets.shipped()
    if args.folder is not None and not files:
        raise CppnvizError(f"presets {args.folder}: no presets (.yaml files) in this folder")
    rows = [(path.stem, *presets.describe(path)) for path in files]
    width = max((len(stem) for stem, _, _ in rows), default=0)
    for stem, name, description in rows:
        print(f"{stem:<{width}}  {name}: {description}")
    if args.folder is None:
        print(f"\n(in {presets.shipped_folder()}; apply one with --preset NAME or --preset FILE)")
    return 0
