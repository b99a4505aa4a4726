"""Audio sources: a song file decoded with PyAV, streamed to the graph one tick at a time in flat memory."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from cppnviz.node import Node
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import AudioWindow, Output, Spec
from cppnviz.timebase import Tick, as_fraction, frame_count, sample_at

from .decode import (Decoder, Scan, audio_error, decode_audio, decode_program, limit_gain,  # noqa: F401
                     program_rate, scan)

# How far either side of a frame's time the analysis signal is kept: more than any analysis window
# reaches (stft_bands' longest n_fft is 65536 samples, 1.5 s at 44.1 kHz; onsets look ahead ~1 window).
REACH_S = 2.0
MIN_REACH = 65536


class _Buffer:
    """A growing window onto a stream: append at the end, forget before a position; `start` is samples[0]'s."""

    def __init__(self, channels: int):
        self.data = np.zeros((channels, 1 << 16), np.float32)
        self.start = 0      # stream position of data[:, 0]
        self.end = 0        # stream position after the last sample held

    def append(self, block: np.ndarray) -> None:
        held = self.end - self.start
        if held + block.shape[1] > self.data.shape[1]:
            grown = np.zeros((self.data.shape[0], max(2 * self.data.shape[1], held + block.shape[1])), np.float32)
            grown[:, :held] = self.data[:, :held]
            self.data = grown
        self.data[:, held:held + block.shape[1]] = block
        self.end += block.shape[1]

    def forget_before(self, position: int) -> None:
        drop = min(max(0, position - self.start), self.end - self.start)
        if drop > self.data.shape[1] // 2:   # move the kept part down only now and then: amortised O(1)
            held = self.end - self.start
            self.data[:, :held - drop] = self.data[:, drop:held]
            self.start += drop

    def view(self) -> np.ndarray:
        return self.data[:, :self.end - self.start]


class _Stream:
    """One sequential decode: the analysis signal around `now` and the program from the current tick on."""

    def __init__(self, path: str, analysis_rate: int, rate: int, channels: int, program_gain: float,
                 mono_gain: float):
        self.decoder = Decoder(path, program_rate=rate, analysis_rate=analysis_rate)
        self.blocks = self.decoder.blocks()
        self.mono = _Buffer(1)
        self.program = _Buffer(channels)
        self.program_gain, self.mono_gain = np.float32(program_gain), np.float32(mono_gain)
        self.done = False

    def close(self) -> None:
        self.blocks.close()
        self.decoder.close()

    def fill(self, analysis_until: int, program_until: int) -> None:
        """Decode until both signals reach these stream positions (or the file ends)."""
        while not self.done and (self.mono.end < analysis_until or self.program.end < program_until):
            block = next(self.blocks, None)
            if block is None:
                self.done = True
                break
            program, analysis = block
            if program.size:
                self.program.append(program * self.program_gain)
            if analysis.size:
                self.mono.append(analysis.mean(axis=0, keepdims=True, dtype=np.float32) * self.mono_gain)


class AudioFile(Node):
    """A song from a file (wav, flac, mp3, ogg, m4a, aiff, ...), decoded with PyAV."""

    type_name = "audio_file"
    stage = "analysis"
    outputs = (Output("audio", "audio", "the song around this frame's time (streamed); `now` is the sample at it"),)
    params = (
        Param("path", "path", REQUIRED, "the audio file to play and analyse"),
        Param("sample_rate", "int", 44100, "the analysis runs at this rate (the video keeps the song's own rate, "
              "at most 48 kHz)", min=8000, max=192000, unit="Hz", shapes=True),
        Param("normalize", "bool", True, "peak-normalise the analysis signal (the video's sound is never changed)"),
    )

    def __init__(self, name, values, ctx):
        super().__init__(name, values, ctx)
        # The last scan: ((path, analysis rate), analysis samples it was limited to or None, what it found).
        self._scan_cache: tuple[tuple[str, int], int | None, Scan] | None = None
        self._stream: _Stream | None = None
        self._whole: tuple[str, tuple[np.ndarray, int]] | None = None

    def configure(self, inputs):
        # Opening the file and decoding its first block here lets `cppnviz check` reject a bad file
        # before the first frame; the rest streams.
        self.close_stream()
        with Decoder(self.p.path) as decoder:
            first = next(decoder.blocks(), None)
            self.program_rate, self.channels = decoder.program_rate, decoder.channels
        if first is None:
            raise audio_error(self.p.path, "decodes to zero samples")
        self.reach = max(round(REACH_S * self.p.sample_rate), MIN_REACH)
        return {"audio": Spec("audio", sample_rate=self.p.sample_rate, program_rate=self.program_rate)}

    # -- measured once per run: length and gains ----------------------------------------------
    def frame_count(self, limit: int | None = None) -> int:
        """Frames of the song, or `limit` if it is shorter: only that much of the file is read."""
        samples = None if limit is None else sample_at(limit, self.p.sample_rate, self.ctx.fps)
        count = frame_count(self._scan(samples).analysis_samples, self.p.sample_rate, self.ctx.fps)
        return count if limit is None else min(count, limit)

    @property
    def scanned(self) -> Scan | None:
        """What the last scan of this song found, or None."""
        cache = self._scan_cache
        return cache[2] if cache is not None and cache[0] == (self.p.path, self.p.sample_rate) else None

    def _scan(self, samples: int | None = None) -> Scan:
        """The song's scan up to `samples` analysis samples (all: None); a longer or whole scan serves too."""
        found = self.scanned
        if found is not None and (found.complete or (samples is not None and self._scan_cache[1] >= samples)):
            return found
        found = scan(self.p.path, self.p.sample_rate, samples)
        self._scan_cache = ((self.p.path, self.p.sample_rate), samples, found)
        return found

    def gains(self) -> tuple[float, float]:
        """(program gain, analysis gain), from the run's scan: the limit that keeps a hot downmix from
        clipping, and on the analysis signal also the seed's peak normalisation."""
        found = self.scanned or self._scan()
        program = limit_gain(found.program_peak)
        if self.p.normalize and found.mono_peak > 0:   # silence stays silent rather than NaN
            return program, program / found.mono_peak
        return program, program

    # -- the whole song in memory (live playback through pyo) ------------------------------------
    @property
    def program(self) -> np.ndarray:
        """The whole program, [shape=(n, channels)] at program_rate (decoded on first use; a render streams)."""
        if self._whole is None or self._whole[0] != self.p.path:
            self._whole = (self.p.path, decode_program(self.p.path, self.program_rate))
        return self._whole[1][0]

    @property
    def mono(self) -> np.ndarray:
        """The whole analysis signal, as the stream serves it (for tests and tools; a render streams)."""
        stream = self._open_stream()
        try:
            stream.fill(math.inf, 0)
            return stream.mono.view()[0].copy()
        finally:
            stream.close()

    # -- the run ------------------------------------------------------------------------------
    def _open_stream(self) -> _Stream:
        program_gain, mono_gain = self.gains()
        return _Stream(self.p.path, self.p.sample_rate, self.program_rate, self.channels, program_gain, mono_gain)

    def close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def reset(self):
        self.close_stream()   # a new pass starts the decode from the beginning

    def finish(self):
        self.close_stream()

    def abort(self):
        self.close_stream()

    def process(self, tick: Tick, **inputs) -> dict:
        sr = self.p.sample_rate
        # A positive offset delays the pictures: frame k shows an earlier moment of the song.
        shift = math.floor(as_fraction(self.ctx.offset_ms) * sr / 1000 + Fraction(1, 2))
        now = sample_at(tick.index, sr, self.ctx.fps) - shift
        at = sample_at(tick.index, self.program_rate, self.ctx.fps)         # the sound is never shifted
        stream = self._stream
        if stream is None or max(now - self.reach, 0) < stream.mono.start or at < stream.program.start:
            self.close_stream()                                             # going back: decode again
            stream = self._stream = self._open_stream()
        stream.fill(now + self.reach, sample_at(tick.index + 1, self.program_rate, self.ctx.fps))
        stream.mono.forget_before(now - self.reach)
        stream.program.forget_before(at)
        if self.ctx.live:
            # Live playback: only what has been played exists yet, so windows end at `now`.
            samples = stream.mono.view()[0, :max(0, now - stream.mono.start)]
            final = False
        else:
            samples, final = stream.mono.view()[0], True
        return {"audio": AudioWindow(samples=samples, now=now - stream.mono.start, sample_rate=sr, final=final,
                                     program=stream.program.view().T, program_rate=self.program_rate,
                                     start=stream.mono.start, program_start=stream.program.start,
                                     complete=stream.done)}
