"""Decoding audio files with PyAV: the whole program at once, or streamed block by block in flat memory.

Two signals come out of one decode: the program (the song's channels, mixed to stereo as ITU-R BS.775
does, at its own rate where AAC takes it) for the video's sound, and the analysis signal (mono at the
graph's analysis rate). A streamed render decodes the file once to scan it (length, peaks) and once
per pass over the frames, holding only a few seconds of either signal at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np

from cppnviz.errors import AudioError

# Sample rates AAC encodes, up to 48 kHz: the video keeps the song's rate where it is one of these.
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# ITU-R BS.775 stereo downmix: fronts at unity, centre and surrounds at -3 dB, LFE left out. Nothing
# scales the matrix down (libswresample only does so for integer output): the track's peak decides
# the gain instead (`limit_gain`).
BS775 = {"center_mix_level": "0.707107", "surround_mix_level": "0.707107", "lfe_mix_level": "0"}


def program_rate(source_rate: int) -> int:
    """The rate of the video's sound: the source's where AAC takes it, else the next AAC rate, at most 48 kHz."""
    return next((rate for rate in AAC_RATES if rate >= source_rate), AAC_RATES[-1])


def limit_gain(peak: float) -> float:
    """The least gain that keeps a signal of this peak within [-1, 1]: 1 unless it would clip."""
    return 1.0 / peak if peak > 1.0 else 1.0


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
    with Decoder(path, sample_rate) as decoder:
        blocks = [program for program, _ in decoder.blocks() if program.size]
        rate = decoder.program_rate
    if not blocks or sum(b.shape[1] for b in blocks) == 0:
        raise audio_error(path, "decodes to zero samples")
    # Joining the transposed blocks into a C-ordered (n, channels) array: one full-length copy, not two.
    program = np.empty((sum(b.shape[1] for b in blocks), blocks[0].shape[0]), np.float32)
    np.concatenate([b.T for b in blocks], axis=0, out=program)
    gain = limit_gain(float(np.max(np.abs(program))))
    if gain != 1.0:
        program *= np.float32(gain)
        np.clip(program, -1.0, 1.0, out=program)  # float32 rounding of the product may land a hair above 1
    return program, rate


class Decoder:
    """One pass over a file: planar float32 blocks of the program and, if asked, of the analysis signal.

    `program_rate` None picks program_rate(the file's rate); `analysis_rate` None gives no analysis
    blocks. Use as a context manager; every PyAV or OS failure becomes a one-line AudioError.
    """

    def __init__(self, path: str, program_rate: int | None = None, analysis_rate: int | None = None):
        _check_file(path)
        self.path = path
        self.program_rate = program_rate
        self.analysis_rate = analysis_rate
        self.channels: int | None = None
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise self._failure(exc) from None
        if not self.container.streams.audio:
            self.container.close()
            raise audio_error(path, "no audio stream found")
        self.stream = self.container.streams.audio[0]

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def blocks(self):
        """Yield (program [shape=(channels, n)], analysis [shape=(channels, m)] or None) as decoding goes."""
        program = analysis = None
        try:
            for frame in self.container.decode(self.stream):
                if program is None:
                    # The first frame tells the real channel count and rate (the header can be 0 or wrong).
                    layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
                    self.channels = 1 if layout == "mono" else 2
                    self.program_rate = self.program_rate or program_rate(frame.sample_rate)
                    program = av.AudioResampler(format="fltp", layout=layout, rate=self.program_rate, options=BS775)
                    if self.analysis_rate and self.analysis_rate != self.program_rate:
                        analysis = av.AudioResampler(format="fltp", layout=layout, rate=self.analysis_rate,
                                                     options=BS775)
                yield from self._resampled(program, analysis, frame)
            if program is not None:
                # Resamplers hold back their last few samples until flushed.
                yield from self._resampled(program, analysis, None)
        except av.error.InvalidDataError:
            raise audio_error(self.path, "cannot decode: invalid data (not an audio format FFmpeg knows, "
                                         "or a damaged file)") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise self._failure(exc) from None

    def _resampled(self, program, analysis, frame):
        out = _planar(program.resample(frame))
        if analysis is not None:
            yield out, _planar(analysis.resample(frame))
        else:  # the analysis at the program's rate shares its samples; or none was asked for
            yield out, out if self.analysis_rate else None

    def _failure(self, exc: Exception) -> AudioError:
        # FFmpeg's errors carry the path and an errno; the user needs only the reason.
        return audio_error(self.path, f"cannot decode: {getattr(exc, 'strerror', None) or exc}")


def _planar(frames) -> np.ndarray:
    arrays = [f.to_ndarray() for f in frames]
    if not arrays:
        return np.zeros((0, 0), np.float32)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)


@dataclass(frozen=True)
class Scan:
    """What one pass over (the start of) a file found: analysis samples, and the peaks that set the gains."""

    analysis_samples: int
    program_peak: float
    mono_peak: float       # of the analysis signal's channel mean, after the program's limit gain
    complete: bool         # False when it stopped at the limit


def scan(path: str, analysis_rate: int, limit: int | None = None) -> Scan:
    """Decode (up to `limit` analysis samples of) a file and measure it, holding one block at a time."""
    count, program_peak, mono_peak = 0, 0.0, 0.0
    with Decoder(path, analysis_rate=analysis_rate) as decoder:
        for program, analysis in decoder.blocks():
            if program.size:
                program_peak = max(program_peak, float(np.max(np.abs(program))))
            if analysis.size:
                mono_peak = max(mono_peak, float(np.max(np.abs(analysis.mean(axis=0)))))
                count += analysis.shape[1]
            if limit is not None and count >= limit:
                return Scan(count, program_peak, mono_peak * limit_gain(program_peak), False)
    if count == 0:
        raise audio_error(path, "decodes to zero samples")
    return Scan(count, program_peak, mono_peak * limit_gain(program_peak), True)


def _check_file(path: str) -> None:
    """The mistakes worth a plain message before FFmpeg gives a vaguer one."""
    if not os.path.exists(path):
        raise audio_error(path, "file not found")
    if os.path.isdir(path):
        raise audio_error(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise audio_error(path, "file is empty (0 bytes)")


def audio_error(path: str, problem: str) -> AudioError:
    """The one-line error for an audio file that cannot be used."""
    return AudioError(f"audio file '{path}': {problem}")
