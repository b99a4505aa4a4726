"""Port declarations, the specs that travel along links, and what audio ports carry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# What a port carries:
#   audio    -> AudioWindow (a view of the track or of a live ring buffer)
#   features -> float32 vector, shape (size,)
#   frame    -> float32 image in [0, 1], shape (height, width, 3), C-contiguous
KINDS = ("audio", "features", "frame")


@dataclass(frozen=True)
class Input:
    """An input port. `multiple` inputs take a list of links (e.g. frames to tile)."""

    name: str
    kind: str
    doc: str
    required: bool = True
    multiple: bool = False


@dataclass(frozen=True)
class Output:
    """An output port."""

    name: str
    kind: str
    doc: str


@dataclass(frozen=True)
class Spec:
    """What a link carries, known when the graph is built so links are checked once.

    features: `size` and optional `labels` (column names); frame: `shape`
    (height, width, 3); audio: `sample_rate` (of the analysis signal) and `program_rate` (of the
    original channels, where a file provides them).
    """

    kind: str
    size: int | None = None
    labels: tuple[str, ...] = field(default=())
    shape: tuple[int, int, int] | None = None
    sample_rate: int | None = None
    program_rate: int | None = None


@dataclass(frozen=True)
class AudioWindow:
    """Audio as a node sees it on one tick: a mono buffer and where "now" is in it.

    `samples` is float32 mono; `now` indexes the sample at the frame's time;
    `final` is True when the buffer holds the whole track (offline), so
    windows reaching past its end are zero-padded; when False (live) the
    newest sample is samples[-1] and windows must end there. `program` is the
    original channels, shape (n, channels), at `program_rate` (default: sample_rate),
    for the encoder's audio track. `start` is the stream position of samples[0]: a live ring
    buffer forgets its oldest samples, and nodes that keep state between ticks (onsets, beats)
    need to know which samples are new; `start + now` is the stream position of `now`.
    """

    samples: np.ndarray
    now: int
    sample_rate: int
    final: bool = True
    program: np.ndarray | None = None
    program_rate: int | None = None
    start: int = 0

    def window(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start+length), zero-padded outside the buffer.

        Live (not final) windows that would reach past the newest sample are
        moved back to end at it: the future has not arrived yet.
        """
        n = len(self.samples)
        if not self.final and start + length > n:
            start = n - length
        if 0 <= start and start + length <= n:
            return self.samples[start:start + length]
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(start, 0), min(start + length, n)
        if hi > lo:
            out[lo - start:hi - start] = self.samples[lo:hi]
        return out


def to_host(array):
    """A numpy array for a frame that may live on the GPU (a CuPy array); numpy arrays pass through."""
    return array.get() if hasattr(array, "__cuda_array_interface__") else array
