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
    `start` is the stream position of samples[0] (`start + now` is the stream
    position of `now`): a live ring buffer forgets its oldest samples and a
    streamed file holds a few seconds either side of now, and nodes that keep
    state between ticks (onsets, beats) need to know which samples are new.
    `final` is True offline: the stream is known ahead of now, and windows
    reaching before its start or past its end (once `complete`: the buffer
    reaches the end of the stream) are zero-padded; when False (live) the
    newest sample is samples[-1] and windows must end there. `program` is the
    original channels, shape (n, channels), at `program_rate` (default:
    sample_rate) from stream position `program_start`, for the encoder's sound.
    A window is valid during its tick only: a streamed source reuses its buffer.
    """

    samples: np.ndarray
    now: int
    sample_rate: int
    final: bool = True
    program: np.ndarray | None = None
    program_rate: int | None = None
    start: int = 0
    program_start: int = 0
    complete: bool = True

    def window(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start+length) (indexes into `samples`), zero-padded outside the stream.

        Live (not final) windows that would reach past the newest sample are
        moved back to end at it: the future has not arrived yet. An offline
        window reaching past what a streamed buffer holds is a bug of the
        node asking (it reaches further than the source keeps): ValueError.
        """
        n = len(self.samples)
        if not self.final and start + length > n:
            start = n - length
        if 0 <= start and start + length <= n:
            return self.samples[start:start + length]
        if self.final and ((start < 0 and self.start > 0) or (start + length > n and not self.complete)):
            raise ValueError(f"an analysis window [{self.start + start}, {self.start + start + length}) reaches "
                             f"past the {n} samples the source holds from {self.start}")
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(start, 0), min(start + length, n)
        if hi > lo:
            out[lo - start:hi - start] = self.samples[lo:hi]
        return out


def to_host(array):
    """A numpy array for a frame that may live on the GPU (a CuPy array); numpy arrays pass through."""
    return array.get() if hasattr(array, "__cuda_array_interface__") else array
