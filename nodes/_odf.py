"""Onset strength, streamed: spectral flux of a log-mel spectrogram on a fixed hop grid, the same offline and live.

Frame j is the window of n_fft samples that ends at stream sample j * hop. Its strength is the
rise in log-mel power since frame j-1, half-wave rectified and averaged over the mel bands of a
group (all of them, or low / mid / high): librosa's `onset_strength` with `lag=1`, `max_size=1`,
`center=True` (which also indexes a frame by where its window ends) and HTK mel filters without
area normalisation. Log power is floored `top_db` below the loudest value seen so far, or below
full scale (a sine of amplitude 1) while nothing louder has come: librosa floors below the loudest
of the whole track, which for a normalised song is full scale too. So the hiss or the odd
least-significant bit before a song starts is not taken for its first onset.

A window ending at the newest sample holds the newest sound, so live strength has no analysis lag.
The first window of a stream is not compared with what came before it (nothing did), so a sound
already playing when the stream starts is not an onset.
"""

from __future__ import annotations

import math

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.params import Param
from cppnviz.ports import AudioWindow

from .spectrum import mel_matrix, mel_to_hz, hz_to_mel

CHUNK = 512   # frames per FFT batch: a long song is never framed whole in memory
AMIN = 1e-10  # librosa's power_to_db floor: digital silence is -100 dB, not -inf


def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window (scipy's get_window('hann', n), as librosa's STFT uses), float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def mel_centres(n_mels: int, sample_rate: int) -> np.ndarray:
    """Centre frequency in Hz of each of mel_matrix's filters."""
    return mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2))[1:-1]


def group_matrix(n_mels: int, sample_rate: int, splits_hz) -> np.ndarray:
    """(n_groups, n_mels): row g averages the mel bands whose centre lies in group g.

    No splits: one group of every band. Splits [a, b]: below a, a..b, above b (low, mid, high).
    """
    group = np.searchsorted(np.asarray(splits_hz, dtype=np.float64), mel_centres(n_mels, sample_rate), side="right")
    matrix = np.zeros((len(splits_hz) + 1, n_mels), dtype=np.float32)
    matrix[group, np.arange(n_mels)] = 1.0
    counts = matrix.sum(axis=1, keepdims=True)
    return matrix / np.maximum(counts, 1.0)


class FluxStream:
    """Onset strength of each hop frame as its window becomes available; each frame is computed once."""

    def __init__(self, sample_rate: int, *, n_fft: int, hop: int, n_mels: int, top_db: float, splits_hz=()):
        self.sample_rate, self.n_fft, self.hop, self.top_db = sample_rate, n_fft, hop, top_db
        self.window = periodic_hann(n_fft)
        # A sine of amplitude 1 peaks at n_fft/4 in the Hann-windowed spectrum: its power, in dB.
        self.full_scale = 20 * math.log10(n_fft / 4)
        self.mel = mel_matrix(n_mels, n_fft, sample_rate)
        self.groups = group_matrix(n_mels, sample_rate, splits_hz)
        self.reset()

    @property
    def n_groups(self) -> int:
        return self.groups.shape[0]

    @property
    def rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop

    def reset(self) -> None:
        self.next = None       # index of the next frame to compute
        self.previous = None   # log-mel power of frame next-1, or None at a stream's start
        self.loudest = self.full_scale  # the loudest log-mel value so far (at least full scale), in dB

    def advance(self, audio: AudioWindow, until: int) -> tuple[int, np.ndarray]:
        """Compute every frame whose window ends at or before stream sample `until` and lies in `audio`.

        Returns (index of the first new frame, strengths [shape=(n_new, n_groups)] float32).
        A frame whose window reaches before the stream's start (or before what a live buffer still
        holds) is skipped; the frame after such a gap has strength 0.
        """
        oldest = max(0, audio.start)
        first_whole = -(-(oldest + self.n_fft) // self.hop)  # the first frame whose window lies in the buffer
        if self.next is None or self.next < first_whole:
            self.next, self.previous = first_whole, None
        last = until // self.hop
        if last < self.next:
            return self.next, np.zeros((0, self.n_groups), dtype=np.float32)
        first = self.next
        pieces = []
        while self.next <= last:
            count = min(last - self.next + 1, CHUNK)
            pieces.append(self._frames(audio, self.next, count))
            self.next += count
        return first, np.concatenate(pieces)

    def _frames(self, audio: AudioWindow, first: int, count: int) -> np.ndarray:
        """Strengths of frames first..first+count-1, the previous frame's log-mel power kept for the next call."""
        # One slice of the buffer covers every window: they overlap by n_fft - hop samples.
        begin = first * self.hop - self.n_fft - audio.start
        span = audio.window(begin, (count - 1) * self.hop + self.n_fft)
        frames = np.lib.stride_tricks.sliding_window_view(span, self.n_fft)[::self.hop]
        logmel = self.log_mel(frames)
        steps = np.diff(logmel, axis=0, prepend=(logmel[:1] if self.previous is None else self.previous[None]))
        self.previous = logmel[-1]
        return (np.maximum(steps, 0.0) @ self.groups.T).astype(np.float32, copy=False)

    def log_mel(self, frames: np.ndarray) -> np.ndarray:
        """Log-mel power in dB of each row of `frames`, floored top_db below the loudest value so far."""
        spectrum = np.fft.rfft(frames * self.window, axis=1)[:, : self.n_fft // 2]
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        logmel = 10.0 * np.log10(np.maximum(power @ self.mel.T, np.float32(AMIN)))
        loudest = np.maximum.accumulate(np.maximum(logmel.max(axis=1), self.loudest))
        self.loudest = float(loudest[-1])
        return np.maximum(logmel, (loudest - np.float32(self.top_db))[:, None]).astype(np.float32, copy=False)


# The analysis params onsets and beats share, declared once.
FLUX_PARAMS = (
    Param("n_fft", "int", 2048, "analysis window length", min=64, max=65536, unit="samples"),
    Param("hop", "int", 512, "samples between onset-strength frames (their time resolution)", min=16, max=16384,
          unit="samples"),
    Param("n_mels", "int", 128, "mel bands the strength is averaged over", min=1, max=512),
    Param("top_db", "float", 80.0, "log power is floored this far below the loudest value so far", min=1, max=200,
          unit="dB"),
)


def flux_stream(p, sample_rate: int, splits_hz=()) -> FluxStream:
    """A FluxStream from a node's FLUX_PARAMS values; one-line errors for values that do not fit together."""
    if p.hop > p.n_fft:
        raise ParamError(f"param 'hop': expected at most n_fft ({p.n_fft}) so every sample is analysed, found {p.hop}")
    return FluxStream(sample_rate, n_fft=p.n_fft, hop=p.hop, n_mels=p.n_mels, top_db=p.top_db, splits_hz=splits_hz)


def frequency_pair(p, name: str) -> list:
    """A node's param `name` as two increasing frequencies in Hz (a band, or the splits between bands)."""
    value = getattr(p, name)
    pair = value if isinstance(value, list) else [value]
    if len(pair) != 2 or pair[0] >= pair[1]:
        raise ParamError(f"param '{name}': expected 2 increasing frequencies in Hz, found {value}")
    return pair


def event_time(frame, hop: int, sample_rate: int):
    """When an onset seen first in frame j happened, in stream seconds: it entered the window between the
    ends of frames j-1 and j, so half a hop before frame j's end (librosa reports the end: half a hop late)."""
    return (np.asarray(frame, dtype=np.float64) - 0.5) * hop / sample_rate


def event_frame(sample: float, hop: int) -> float:
    """The (fractional) frame index whose event time is stream sample `sample`: event_time's inverse, in samples."""
    return sample / hop + 0.5


def position(audio: AudioWindow) -> int:
    """The stream position (in samples) of this tick's `now`."""
    return audio.start + audio.now


def horizon(audio: AudioWindow, ahead: float) -> int:
    """The last stream sample a frame's window may end at this tick: `ahead` samples past now offline, now live."""
    now = position(audio)
    return now + math.ceil(ahead) if audio.final else now
