"""Audio sources: a song file decoded with PyAV, resampled, and served to the graph one tick at a time."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import av
import numpy as np

from cppnviz.errors import AudioError
from cppnviz.node import Node
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import AudioWindow, Output, Spec
from cppnviz.timebase import Tick, as_fraction, frame_count, sample_at


def decode_audio(path: str, sample_rate: int) -> np.ndarray:
    """Decode an audio file to float32 at `sample_rate` Hz.

    Returns the program signal, [shape=(n_samples, channels)], with channels 1
    (mono files) or 2 (stereo, and anything wider downmixed to stereo).
    Raises AudioError, one line naming the file, for anything that cannot be decoded.
    """
    _check_file(path)
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise _error(path, "no audio stream found")
            blocks = _decode_stream(container, container.streams.audio[0], sample_rate)
    except av.error.InvalidDataError:
        raise _error(path, "cannot decode: invalid data (not an audio format FFmpeg knows, or a damaged file)") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        # FFmpeg's errors carry the path and an errno; the user needs only the reason.
        raise _error(path, f"cannot decode: {getattr(exc, 'strerror', None) or exc}") from None
    if not blocks or sum(b.shape[1] for b in blocks) == 0:
        raise _error(path, "decodes to zero samples")
    # Joining the transposed blocks into a C-ordered (n, channels) array: one full-length copy, not two.
    program = np.empty((sum(b.shape[1] for b in blocks), blocks[0].shape[0]), np.float32)
    return np.concatenate([b.T for b in blocks], axis=0, out=program)


def _check_file(path: str) -> None:
    """The mistakes worth a plain message before FFmpeg gives a vaguer one."""
    if not os.path.exists(path):
        raise _error(path, "file not found")
    if os.path.isdir(path):
        raise _error(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise _error(path, "file is empty (0 bytes)")


def _decode_stream(container, stream, sample_rate: int) -> list[np.ndarray]:
    """Decode and resample one stream to planar float blocks, each [shape=(channels, n)]."""
    resampler = None
    blocks: list[np.ndarray] = []
    for frame in container.decode(stream):
        if resampler is None:
            # The first frame tells the real channel count (the stream header can be 0 or wrong).
            layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
            # A 5.1 downmix adds centre and surrounds onto each side (gain up to 2.4):
            # rematrix_maxval scales the mix so it never exceeds the loudest input.
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate,
                                          options={"rematrix_maxval": "1.0"})
        blocks.extend(f.to_ndarray() for f in resampler.resample(frame))
    if resampler is not None:
        # The resampler holds back its last few samples until flushed.
        blocks.extend(f.to_ndarray() for f in resampler.resample(None))
    return blocks


def _error(path: str, problem: str) -> AudioError:
    return AudioError(f"audio file '{path}': {problem}")


def analysis_signal(program: np.ndarray, normalize: bool) -> np.ndarray:
    """The mono signal the analysis sees: mean of the channels, peak-normalised like the seed."""
    mono = program.mean(axis=1, dtype=np.float32)
    peak = float(np.max(np.abs(mono)))
    if normalize and peak > 0:  # a silent track stays silent rather than becoming NaN
        mono /= peak
    return mono


class AudioFile(Node):
    """A song from a file (wav, flac, mp3, ogg, m4a, aiff, ...), decoded with PyAV."""

    type_name = "audio_file"
    stage = "analysis"
    outputs = (Output("audio", "audio", "the whole track; `now` is the sample at this frame's time"),)
    params = (
        Param("path", "path", REQUIRED, "the audio file to play and analyse"),
        Param("sample_rate", "int", 44100, "everything is resampled to this rate", min=8000, max=192000, unit="Hz"),
        Param("normalize", "bool", True, "peak-normalise the analysis signal (the video's sound is never changed)"),
    )

    def __init__(self, name, values, ctx):
        super().__init__(name, values, ctx)
        self._decoded: tuple[tuple[str, int], np.ndarray] | None = None

    def configure(self, inputs):
        # Decoding here lets `cppnviz check` reject a bad file before the first frame.
        self.program = self._program()
        self.mono = analysis_signal(self.program, self.p.normalize)
        return {"audio": Spec("audio", sample_rate=self.p.sample_rate)}

    def _program(self) -> np.ndarray:
        """Decode once per (path, rate): configure() re-runs on every param change."""
        key = (self.p.path, self.p.sample_rate)
        if self._decoded is None or self._decoded[0] != key:
            self._decoded = (key, decode_audio(self.p.path, self.p.sample_rate))
        return self._decoded[1]

    def frame_count(self) -> int:
        return frame_count(len(self.mono), self.p.sample_rate, self.ctx.fps)

    def process(self, tick: Tick, **inputs) -> dict:
        sr = self.p.sample_rate
        # A positive offset delays the pictures: frame k shows an earlier moment of the song.
        shift = math.floor(as_fraction(self.ctx.offset_ms) * sr / 1000 + Fraction(1, 2))
        now = sample_at(tick.index, sr, self.ctx.fps) - shift
        if self.ctx.live:
            # Live playback: only what has been played exists yet, so windows end at `now`.
            return {"audio": AudioWindow(samples=self.mono[:max(now, 0)], now=now, sample_rate=sr, final=False,
                                         program=self.program)}
        return {"audio": AudioWindow(samples=self.mono, now=now, sample_rate=sr, final=True, program=self.program)}
