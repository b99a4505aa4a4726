"""Harmonic/percussive separation by median filtering (Fitzgerald 2010), as librosa.decompose.hpss does it.

One streaming implementation serves every path: `Separator.feed()` takes any number of samples and
returns the output samples that are final; `flush()` ends the stream. Offline (`hpss()`) is the
same separator fed the whole track and flushed, so a live run's output is the offline output
delayed by `Separator.latency` samples, sample for sample.

The arithmetic follows librosa: a centred STFT (zero-padded by n_fft/2, periodic Hann window), the
magnitude median-filtered along time (harmonic) and along frequency (percussive) with symmetric
("reflect" in scipy's words) edges, librosa.util.softmask masks, and an inverse STFT normalised by
the summed squared window.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cppnviz.soundpic import window

# Median windows copied at once: a few MB keeps the copy in cache and bounds memory for any length.
CHUNK_VALUES = 1 << 20
# The offline path feeds this many samples at a time: memory stays flat however long the song.
BLOCK = 1 << 20
TINY = np.finfo(np.float32).tiny

_pool: ThreadPoolExecutor | None = None


def odd(x: float) -> int:
    """The odd integer nearest to x (at least 1): a median kernel centred on its sample."""
    return max(1, 2 * round((x - 1) / 2) + 1)


def kernel_frames(kernel_s: float, sr: int, hop_length: int) -> int:
    """Frames of the harmonic (time) median for a kernel given in seconds."""
    return odd(kernel_s * sr / hop_length)


def kernel_bins(kernel_hz: float, sr: int, n_fft: int) -> int:
    """Bins of the percussive (frequency) median for a kernel given in Hz."""
    return odd(kernel_hz * n_fft / sr)


def median_rows(padded: np.ndarray, k: int) -> np.ndarray:
    """Median of every k consecutive values along the last axis of a 2-D array, shape (rows, n - k + 1).

    Chunks of rows are copied out of a sliding window view and partitioned (np.partition releases
    the GIL, so large inputs use both cores).
    """
    rows, n = padded.shape
    width = n - k + 1
    out = np.empty((rows, width), padded.dtype)
    if width <= 0 or rows == 0:
        return out[:, :max(width, 0)]
    step = max(1, CHUNK_VALUES // (width * k))

    def one(r: int) -> None:
        windows = np.array(sliding_window_view(padded[r:r + step], k, axis=1))
        windows.partition(k // 2, axis=-1)
        out[r:r + step] = windows[..., k // 2]

    starts = range(0, rows, step)
    if len(starts) > 1 and (os.cpu_count() or 1) > 1:
        global _pool
        if _pool is None:
            _pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="hpss")
        list(_pool.map(one, starts))
    else:
        for r in starts:
            one(r)
    return out


def reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indexes outside [0, n) folded back symmetrically (d c b a | a b c d | d c b a), as scipy's reflect."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def softmask(x: np.ndarray, ref: np.ndarray, power: float, split_zeros: bool) -> np.ndarray:
    """librosa.util.softmask: x^p / (x^p + ref^p), scaled by max(x, ref) first; 0.5 or 0 where both vanish."""
    z = np.maximum(x, ref)
    bad = z < TINY
    z[bad] = 1
    mask = (x / z) ** power
    other = (ref / z) ** power
    mask /= np.where(bad, 1, mask + other)
    mask[bad] = 0.5 if split_zeros else 0.0
    return mask


class Separator:
    """Median-filter HPSS of one channel, fed block by block; output trails input by `latency` samples at most."""

    def __init__(self, *, n_fft: int = 2048, hop_length: int = 512, kernel_frames: int = 31,
                 kernel_bins: int = 31, power: float = 2.0, margin: float = 1.0):
        self.n_fft, self.hop = n_fft, hop_length
        self.kt, self.kf = kernel_frames, kernel_bins
        self.power, self.margin = float(power), float(margin)
        self.window = window(n_fft).astype(np.float32)     # periodic Hann, as to-image's STFT
        self.window_sq = self.window * self.window
        self.reset()

    @property
    def latency(self) -> int:
        """Samples the output may trail the input: the last frame's half window, the time median's
        look-ahead, and the half window of overlap-add still open."""
        return self.n_fft + (self.kt // 2) * self.hop

    def reset(self) -> None:
        half = self.n_fft // 2
        self.received = 0                                   # input samples fed
        self.emitted = 0                                    # output samples returned
        self.buffer = np.zeros(half, np.float32)            # input from position buffer_at (zeros before 0)
        self.buffer_at = -half
        self.frames = 0                                     # STFT frames computed; frame j starts at j*hop - n_fft/2
        self.masked = 0                                     # frames separated and overlap-added
        self.mags = np.zeros((0, self.n_fft // 2 + 1), np.float32)   # |frames| from mags_at on
        self.mags_at = 0
        self.spec = np.zeros((0, self.n_fft // 2 + 1), np.complex64)  # frames [masked, frames)
        self.acc = np.zeros((3, 0), np.float32)             # harmonic, percussive, window sum, from acc_at
        self.acc_at = -half

    # -- the stream ---------------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Take input samples; return (harmonic, percussive) samples from position `emitted` that are final."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.received += len(samples)
        self.buffer = np.concatenate((self.buffer, samples))
        self._analyse(self._frames_ready(self.received))
        # Masks need kt//2 frames of look-ahead for the time median.
        self._separate(self.frames - self.kt // 2, end=None)
        return self._emit(self.masked * self.hop - self.n_fft // 2)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of stream: the last frames (zero-padded, mirrored at the end as librosa) and every sample left."""
        self.buffer = np.concatenate((self.buffer, np.zeros(self.n_fft // 2, np.float32)))
        total = self.received // self.hop + 1
        self._analyse(total)
        self._separate(total, end=total)
        return self._emit(self.received)

    # -- steps ----------------------------------------------------------------------------------
    def _frames_ready(self, received: int) -> int:
        """Frames whose last sample has arrived."""
        half = self.n_fft // 2
        return (received - half) // self.hop + 1 if received >= half else 0

    def _analyse(self, until: int) -> None:
        """STFT frames [frames, until) from the buffered input."""
        if until <= self.frames:
            return
        first = self.frames * self.hop - self.n_fft // 2 - self.buffer_at
        segments = sliding_window_view(self.buffer[first:], self.n_fft)[::self.hop][:until - self.frames]
        spec = np.fft.rfft(segments * self.window, axis=1).astype(np.complex64, copy=False)
        self.spec = np.concatenate((self.spec, spec))
        self.mags = np.concatenate((self.mags, np.abs(spec)))
        self.frames = until

    def _separate(self, until: int, end: int | None) -> None:
        """Masks for frames [masked, until), overlap-added; `end` is the frame count once the stream ended."""
        a, b = self.masked, until
        if b <= a:
            return
        h = self.kt // 2
        # Time median: frames [a-h, b+h), mirrored at the start (and at the end once known).
        index = np.arange(a - h, b + h)
        index = reflect(index, end) if end is not None else np.where(index < 0, -index - 1, index)
        history = np.ascontiguousarray(self.mags[index - self.mags_at].T)
        harm = median_rows(history, self.kt).T
        mags = self.mags[a - self.mags_at:b - self.mags_at]
        hf = self.kf // 2
        perc = median_rows(np.pad(mags, ((0, 0), (hf, hf)), mode="symmetric"), self.kf) if hf else mags.copy()
        spec = self.spec[:b - a]
        mask_h = softmask(harm, perc * self.margin, self.power, self.margin == 1)
        harmonic = np.fft.irfft(spec * mask_h, n=self.n_fft, axis=1).astype(np.float32, copy=False)
        self._overlap_add(a, 0, harmonic * self.window)
        self._overlap_add(a, 2, np.broadcast_to(self.window_sq, harmonic.shape))
        if self.margin != 1:   # with margin 1 the masks sum to 1: the percussive part is the input less the harmonic
            mask_p = softmask(perc, harm * self.margin, self.power, False)
            percussive = np.fft.irfft(spec * mask_p, n=self.n_fft, axis=1).astype(np.float32, copy=False)
            self._overlap_add(a, 1, percussive * self.window)
        self.masked = b
        self.spec = self.spec[b - a:]
        keep = max(0, b - h)                                 # the next time median starts at b - h
        self.mags = self.mags[keep - self.mags_at:]
        self.mags_at = keep

    def _overlap_add(self, first: int, row: int, frames: np.ndarray) -> None:
        """Add frames first, first+1, ... into accumulator `row`.

        Every sample sums its frames in frame order, batch or not: the live output is the offline
        output to the last bit. With a hop dividing n_fft, one add per hop-sized slice of the frames.
        """
        count, n_fft, hop = len(frames), self.n_fft, self.hop
        start = first * hop - n_fft // 2 - self.acc_at
        need = start + (count - 1) * hop + n_fft
        if need > self.acc.shape[1]:
            self.acc = np.concatenate((self.acc, np.zeros((3, need - self.acc.shape[1]), np.float32)), axis=1)
        acc = self.acc[row, start:need]
        if n_fft % hop or start % hop:
            for i in range(count):
                acc[i * hop:i * hop + n_fft] += frames[i]
            return
        slices = n_fft // hop
        blocks = acc.reshape(-1, hop)                  # a view: rows of the accumulator hop samples long
        parts = frames.reshape(count, slices, hop)
        for r in reversed(range(slices)):              # block m gets frame m - r: earlier frames first
            blocks[r:r + count] += parts[:, r]

    def _emit(self, until: int) -> tuple[np.ndarray, np.ndarray]:
        """Output samples [emitted, until), normalised by the summed squared window (where it is not ~0)."""
        if until <= self.emitted:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        lo, hi = self.emitted - self.acc_at, until - self.acc_at
        if hi > self.acc.shape[1]:   # a hop longer than half a window leaves samples no frame covers
            self.acc = np.concatenate((self.acc, np.zeros((3, hi - self.acc.shape[1]), np.float32)), axis=1)
        done = self.acc[:, lo:hi]
        norm = done[2]
        safe = np.where(norm > TINY, norm, 1)
        harmonic = done[0] / safe
        if self.margin == 1:
            percussive = self.buffer[self.emitted - self.buffer_at:until - self.buffer_at] - harmonic
        else:
            percussive = done[1] / safe
        self.acc = self.acc[:, hi:]
        self.acc_at = until
        self.emitted = until
        # Input is kept from the next frame's start, and from the next sample out (percussive = input - harmonic).
        keep = min(self.frames * self.hop - self.n_fft // 2, until)
        self.buffer = self.buffer[keep - self.buffer_at:]
        self.buffer_at = keep
        return harmonic, percussive


def hpss(y: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(harmonic, percussive) of a whole signal [shape=(..., n)], each channel separated on its own.

    Keyword arguments are Separator's (n_fft, hop_length, kernel_frames, kernel_bins, power, margin).
    """
    y = np.asarray(y, np.float32)
    flat = y.reshape(int(np.prod(y.shape[:-1])), y.shape[-1])
    harmonic, percussive = np.empty_like(flat), np.empty_like(flat)
    for c, channel in enumerate(flat):
        separator = Separator(**kwargs)
        at = 0
        for h, p in _blocks(separator, channel):
            harmonic[c, at:at + len(h)], percussive[c, at:at + len(p)] = h, p
            at += len(h)
    return harmonic.reshape(y.shape), percussive.reshape(y.shape)


def _blocks(separator: Separator, channel: np.ndarray):
    """The parts of a whole channel, one block at a time (memory stays flat), then the end of the stream."""
    for start in range(0, len(channel), BLOCK):
        yield separator.feed(channel[start:start + BLOCK])
    yield separator.flush()
