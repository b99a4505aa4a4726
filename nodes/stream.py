"""Audio pushed in by a host (a TouchDesigner audio CHOP, a pyo input) instead of read from a file."""

from __future__ import annotations

import threading

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import AudioWindow, Output, Spec


class AudioIn(Node):
    """Live audio pushed by a host: the graph's clock follows the samples received."""

    type_name = "audio_in"
    stage = "analysis"
    outputs = (Output("audio", "audio", "the newest samples; `now` is the newest sample received"),)
    params = (
        Param("sample_rate", "int", 44100, "rate the graph analyses at; pushed audio at other rates is resampled",
              min=8000, max=192000, unit="Hz", shapes=True),
        Param("history", "float", 2.0, "seconds of audio kept for analysis windows (at least one window)",
              min=0.1, max=60, unit="s"),
    )

    def configure(self, inputs):
        self.capacity = round(self.p.history * self.p.sample_rate)
        self._lock = threading.Lock()
        self.reset()
        return {"audio": Spec("audio", sample_rate=self.p.sample_rate)}

    def reset(self):
        # Twice the history, compacted when full: appends and windows never copy the whole history.
        self._buffer = np.zeros(2 * self.capacity, dtype=np.float32)
        self._end = 0
        self.received = 0  # samples pushed since reset, at sample_rate: the graph's clock
        self._converter = None

    def push(self, samples: np.ndarray, rate: int | None = None) -> int:
        """Append a block (mono (n,), or (channels, n) as a CHOP gives it); return samples received so far.

        Safe to call from an audio thread while the graph runs.
        """
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim == 2:
            block = block.mean(axis=0)
        if block.ndim != 1:
            raise ParamError(f"audio_in '{self.name}': expected samples shaped (n,) or (channels, n), found {block.shape}")
        rate = rate or self.p.sample_rate
        with self._lock:
            if rate != self.p.sample_rate and len(block):
                block = self._resampler(rate).feed(block)
            self.received += len(block)
            block = block[-self.capacity:]
            if self._end + len(block) > len(self._buffer):
                keep = self.capacity - len(block)
                self._buffer[:keep] = self._buffer[self._end - keep:self._end]
                self._end = keep
            self._buffer[self._end:self._end + len(block)] = block
            self._end += len(block)
            return self.received

    def _resampler(self, rate: int) -> "_Resampler":
        if self._converter is None or self._converter.rate_in != rate:
            self._converter = _Resampler(rate, self.p.sample_rate)
        return self._converter

    def process(self, tick):
        with self._lock:
            # A copy of the kept history only: the audio thread may append while nodes read it.
            start = max(0, self._end - self.capacity)
            samples = self._buffer[start:self._end].copy()
            first = self.received - len(samples)  # the stream position of samples[0]
        return {"audio": AudioWindow(samples, now=len(samples), sample_rate=self.p.sample_rate, final=False,
                                     start=first)}


class _Resampler:
    """Linear-interpolation resampling of a stream, block by block, without drift.

    Output sample j sits at input position j * rate_in / rate_out, counted from the
    stream's start, so block boundaries never round the clock. Enough for analysis;
    never used for a program track.
    """

    def __init__(self, rate_in: int, rate_out: int):
        self.rate_in, self.rate_out = rate_in, rate_out
        self.consumed = 0   # input samples seen
        self.produced = 0   # output samples made
        self.last = None    # the previous block's last sample, to interpolate across the boundary

    def feed(self, block: np.ndarray) -> np.ndarray:
        first = self.consumed
        self.consumed += len(block)
        # Outputs whose input position is within what has arrived: j * in/out <= consumed - 1.
        end = (self.consumed - 1) * self.rate_out // self.rate_in + 1
        positions = np.arange(self.produced, end, dtype=np.float64) * self.rate_in / self.rate_out
        self.produced = end
        if self.last is None:
            xs, values = np.arange(first, self.consumed), block
        else:
            xs, values = np.arange(first - 1, self.consumed), np.concatenate(([self.last], block))
        self.last = block[-1]
        return np.interp(positions, xs, values).astype(np.float32)
