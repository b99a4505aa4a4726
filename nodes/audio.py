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


# Sample rates AAC encodes, up to 48 kHz: the video keeps the song's rate where it is one of these.
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# ITU-R BS.775 stereo downmix: fronts at unity, centre and surrounds at -3 dB, LFE left out. Nothing
# scales the matrix down (libswresample only does so for integer output): the whole track's peak
# decides the gain instead, in _join.
BS775 = {"center_mix_level": "0.707107", "surround_mix_level": "0.707107", "lfe_mix_level": "0"}


def program_rate(source_rate: int) -> int:
    """The rate of the video's sound: the source's where AAC takes it, else the next AAC rate, at most 48 kHz."""
    return next((rate for rate in AAC_RATES if rate >= source_rate), AAC_RATES[-1])


def decode_audio(path: str, sample_rate: int | None = None) -> np.ndarray:
    """Decode an audio file to float32 at `sample_rate` Hz (None: program_rate of the file's own rate).

    Returns the program signal, [shape=(n_samples, channels)], with channels 1
    (mono files) or 2 (stereo, and anything wider downmixed to stereo as ITU-R BS.775
    does, lowered only as much as the track's peak needs to stay within [-1, 1]).
    Raises AudioError, one line naming the file, for anything that cannot be decoded.
    """
    return decode_program(path, sample_rate)[0]


def decode_program(path: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """decode_audio, and the rate it decoded at."""
    _check_file(path)
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise _error(path, "no audio stream found")
            blocks, rate = _decode_stream(container, container.streams.audio[0], sample_rate)
    except av.error.InvalidDataError:
        raise _error(path, "cannot decode: invalid data (not an audio format FFmpeg knows, or a damaged file)") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        # FFmpeg's errors carry the path and an errno; the user needs only the reason.
        raise _error(path, f"cannot decode: {getattr(exc, 'strerror', None) or exc}") from None
    if not blocks or sum(b.shape[1] for b in blocks) == 0:
        raise _error(path, "decodes to zero samples")
    return _join(blocks), rate


def _join(blocks: list[np.ndarray]) -> np.ndarray:
    """Planar blocks -> one C-ordered (n, channels) array (one full-length copy), peak-limited to 1."""
    program = np.empty((sum(b.shape[1] for b in blocks), blocks[0].shape[0]), np.float32)
    np.concatenate([b.T for b in blocks], axis=0, out=program)
    peak = float(np.max(np.abs(program)))
    if peak > 1.0:  # a downmix (or a hot master) past full scale: the least gain that keeps it from clipping
        program *= np.float32(1.0 / peak)
        np.clip(program, -1.0, 1.0, out=program)  # float32 rounding of the product may land a hair above 1
    return program


def _check_file(path: str) -> None:
    """The mistakes worth a plain message before FFmpeg gives a vaguer one."""
    if not os.path.exists(path):
        raise _error(path, "file not found")
    if os.path.isdir(path):
        raise _error(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise _error(path, "file is empty (0 bytes)")


def _decode_stream(container, stream, sample_rate: int | None) -> tuple[list[np.ndarray], int | None]:
    """Decode and resample one stream to planar float blocks, each [shape=(channels, n)]; and their rate."""
    resampler = None
    blocks: list[np.ndarray] = []
    for frame in container.decode(stream):
        if resampler is None:
            # The first frame tells the real channel count and rate (the stream header can be 0 or wrong).
            layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
            sample_rate = sample_rate or program_rate(frame.sample_rate)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate, options=BS775)
        blocks.extend(f.to_ndarray() for f in resampler.resample(frame))
    if resampler is not None:
        # The resampler holds back its last few samples until flushed.
        blocks.extend(f.to_ndarray() for f in resampler.resample(None))
    return blocks, sample_rate


def resample_mono(mono: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """A float32 mono signal at another rate, through libswresample as the decoder resamples."""
    if rate_in == rate_out:
        return mono
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate_out)
    blocks = []
    step = 1 << 16
    for start in range(0, len(mono), step):
        frame = av.AudioFrame.from_ndarray(mono[None, start:start + step], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate_in, start
        blocks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    blocks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _error(path: str, problem: str) -> AudioError:
    return AudioError(f"audio file '{path}': {problem}")


def analysis_signal(program: np.ndarray, normalize: bool, rate_in: int, rate_out: int) -> np.ndarray:
    """The mono signal the analysis sees at rate_out: mean of the channels, peak-normalised like the seed."""
    mono = resample_mono(program.mean(axis=1, dtype=np.float32), rate_in, rate_out)
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
        Param("sample_rate", "int", 44100, "the analysis runs at this rate (the video keeps the song's own rate, "
              "at most 48 kHz)", min=8000, max=192000, unit="Hz"),
        Param("normalize", "bool", True, "peak-normalise the analysis signal (the video's sound is never changed)"),
    )

    def __init__(self, name, values, ctx):
        super().__init__(name, values, ctx)
        self._decoded: tuple[str, tuple[np.ndarray, int]] | None = None

    def configure(self, inputs):
        # Decoding here lets `cppnviz check` reject a bad file before the first frame.
        self.program, self.program_rate = self._program()
        self.mono = analysis_signal(self.program, self.p.normalize, self.program_rate, self.p.sample_rate)
        return {"audio": Spec("audio", sample_rate=self.p.sample_rate, program_rate=self.program_rate)}

    def _program(self) -> tuple[np.ndarray, int]:
        """Decode once per path, at the song's own rate where AAC takes it: configure() re-runs on every param change."""
        if self._decoded is None or self._decoded[0] != self.p.path:
            self._decoded = (self.p.path, decode_program(self.p.path))
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
                                         program=self.program, program_rate=self.program_rate)}
        return {"audio": AudioWindow(samples=self.mono, now=now, sample_rate=sr, final=True, program=self.program,
                                     program_rate=self.program_rate)}
