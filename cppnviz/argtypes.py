"""argparse value types shared by the render and live commands."""

from __future__ import annotations

import argparse
import math


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0, or an argparse error naming what was found."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not (value > 0 and math.isfinite(value)):  # 1e400 parses as inf
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, found {text!r}")
    return value
