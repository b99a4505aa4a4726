"""Frame/sample arithmetic: tick k is frame k at t_k = k/fps, computed from k, never accumulated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


def as_fraction(fps: float | int | Fraction) -> Fraction:
    """An exact frame rate: 29.97 becomes 2997/100, so sample positions never drift."""
    return Fraction(str(fps)) if isinstance(fps, float) else Fraction(fps)


def sample_at(k: int, sample_rate: int, fps: Fraction) -> int:
    """s_k = round(k * sr / fps), halves rounded up, exact for any k."""
    return math.floor(Fraction(k) * sample_rate / fps + Fraction(1, 2))


def frame_count(n_samples: int, sample_rate: int, fps: Fraction) -> int:
    """Frames needed to cover n samples: ceil(n * fps / sr).

    The video then lasts n_frames/fps, which is the audio's duration rounded
    up to the next frame (never more than one frame longer).
    """
    return math.ceil(Fraction(n_samples) * fps / sample_rate)


@dataclass(frozen=True)
class Tick:
    """One frame of a run: its index and its time in seconds."""

    index: int
    time: float


def tick(k: int, fps: Fraction) -> Tick:
    return Tick(k, float(Fraction(k) / fps))
