"""Log-mel frames with context, the one definition shared by `cppnviz learn` (training) and the `learned` node.

A frame is the log-mel power of a Hann window of n_fft samples centred on a sample position, mapped
from [-90, +10] dB (relative to a full-scale sine) to [0, 1]; a vector stacks `context` frames `hop`
samples apart, centred on the position. Training asks for the vectors on a hop grid, the node for the
one at its tick: both go through `vectors()`, so they are the same numbers for the same audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .spectrum import mel_matrix

FLOOR_DB, CEILING_DB = -90.0, 10.0
CHUNK = 2048     # windows per FFT batch: bounds the memory of a long song


@dataclass(frozen=True)
class MelSettings:
    """What a frame is; a model stores these and a graph must analyse at the same sample rate."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 64
    context: int = 4

    @property
    def size(self) -> int:
        """Length of one input vector: n_mels values for each context frame."""
        return self.n_mels * self.context

    @property
    def offsets(self) -> np.ndarray:
        """Start of each context window relative to the centre position, in samples."""
        steps = (2 * np.arange(self.context) - (self.context - 1)) * self.hop // 2
        return steps - self.n_fft // 2

    @property
    def reach(self) -> tuple[int, int]:
        """Samples needed before and after a centre: (before, after)."""
        return -int(self.offsets[0]), int(self.offsets[-1]) + self.n_fft

    def as_dict(self) -> dict:
        return asdict(self)


class LogMel:
    """Computes frames for one MelSettings (the window and filters built once)."""

    def __init__(self, settings: MelSettings):
        self.s = settings
        self.taper = np.hanning(settings.n_fft).astype(np.float32)
        # A full-scale sine's peak bin has power (sum(window) / 2)^2: scale it to 1 (0 dB).
        self.scale = np.float32(4.0 / float(self.taper.sum()) ** 2)
        self.mel = np.ascontiguousarray(mel_matrix(settings.n_mels, settings.n_fft, settings.sample_rate).T)

    def frames(self, windows: np.ndarray) -> np.ndarray:
        """[shape=(n, n_fft)] samples -> [shape=(n, n_mels)] values in [0, 1]."""
        spectrum = np.fft.rfft(windows * self.taper, axis=1)[:, : self.s.n_fft // 2]
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32) * self.scale
        db = 10.0 * np.log10(np.maximum(power @ self.mel, np.float32(1e-12)))
        return np.clip((db - FLOOR_DB) / (CEILING_DB - FLOOR_DB), 0.0, 1.0).astype(np.float32)

    def vectors(self, signal: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """[shape=(n_centres, n_mels * context)]: the stacked frames around each centre of mono `signal`.

        Samples outside the signal count as silence. Windows shared by neighbouring centres (the
        training grid) are computed once.
        """
        signal = np.asarray(signal, dtype=np.float32)
        centres = np.asarray(centres, dtype=np.int64).reshape(-1)
        starts = centres[:, None] + self.s.offsets[None, :]
        unique, where = np.unique(starts, return_inverse=True)
        before, after = self.s.reach
        pad_lo = max(0, before - int(centres.min(initial=0)))
        pad_hi = max(0, int(centres.max(initial=0)) + after - len(signal))
        padded = np.concatenate([np.zeros(pad_lo, np.float32), signal, np.zeros(pad_hi, np.float32)])
        views = np.lib.stride_tricks.sliding_window_view(padded, self.s.n_fft)
        frames = np.empty((len(unique), self.s.n_mels), np.float32)
        for i in range(0, len(unique), CHUNK):
            frames[i:i + CHUNK] = self.frames(views[unique[i:i + CHUNK] + pad_lo])
        return frames[where.reshape(starts.shape)].reshape(len(centres), self.s.size)

    def grid(self, signal: np.ndarray) -> np.ndarray:
        """The vectors of a whole song on its hop grid (centres 0, hop, 2*hop, ...): training's input."""
        return self.vectors(signal, np.arange(0, len(signal), self.s.hop))
