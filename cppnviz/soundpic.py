"""Sound as pictures: the STFT layout (linear or log rows, dB as 8/16-bit pixels), its exact inverse, PNG and video files.

A picture holds one channel's STFT: time runs left to right (one column per hop), frequency bottom to top.
Red and blue hold the magnitude in dB mapped onto the pixel range [db_top - db_range, db_top]; green holds
the phase representation (cppnviz.phase) or the magnitude again. The Hann window at a hop of n_fft/4 sums
to a constant (and so does its square), so `istft(stft(y)) == y` to float rounding. The layout travels with
the file: a JSON text chunk in a PNG, a container tag in a video.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import CppnvizError, OutputError
from .outputs import check_file_output, partial_path, remove_stale_partials

KEY = "cppnviz"          # the PNG text chunk and container tag holding the layout
VERSION = 1
SCALES = ("linear", "log")
REPRESENTATIONS = ("phase", "deviation", "none")


class PictureError(CppnvizError):
    """A picture or video that cannot be read or turned into sound as it is."""


@dataclass(frozen=True)
class Layout:
    """Everything needed to turn a picture back into sound; written into the file as JSON."""

    sr: int
    n_fft: int = 2048
    hop_length: int = 512
    scale: str = "log"              # linear: one row per bin; log: low octaves stretched to bins_per_octave rows
    bins_per_octave: int = 48
    bits: int = 16
    db_range: float = 120.0         # pixel 0 is silence, 1 is db_top - db_range
    db_top: float = 6.0             # dB above a full-scale sine's bin (a DC offset of 1 reaches +6 dB)
    phase: str = "phase"            # representation in the green channel: phase, deviation or none
    samples: int = 0                # per channel, to trim the inverse STFT
    channels: int = 1               # pictures side by side in one file (1 or 2)
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Layout:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, found {type(data).__name__}")
            known = {f.name for f in fields(cls)}
            layout = cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise PictureError(f"'{where}': its {KEY} metadata cannot be read ({exc})") from None
        if layout.version > VERSION:
            raise PictureError(f"'{where}': made by a newer cppnviz (layout version {layout.version}, "
                               f"this one reads up to {VERSION})")
        try:
            return layout.checked(f"'{where}': ")
        except TypeError as exc:   # a value of the wrong type ("sr": "x") cannot even be compared
            raise PictureError(f"'{where}': its {KEY} metadata cannot be read ({exc})") from None

    def checked(self, where: str = "") -> Layout:
        """This layout, or one PictureError naming the first value that cannot work (after `where`, if given)."""
        problems = [(self.scale in SCALES, "scale", self.scale, " or ".join(SCALES)),
                    (self.phase in REPRESENTATIONS, "phase", self.phase, ", ".join(REPRESENTATIONS)),
                    (self.bits in (8, 16), "bits", self.bits, "8 or 16"),
                    (self.n_fft >= 16 and self.n_fft % 4 == 0, "n_fft", self.n_fft, "a multiple of 4, at least 16"),
                    (0 < self.hop_length <= self.n_fft // 4 and self.n_fft % self.hop_length == 0, "hop_length",
                     self.hop_length, "a divisor of n_fft, at most n_fft/4 (windows must overlap 4 times or more "
                     "to sum to a constant)"),
                    (self.sr > 0, "sr", self.sr, "a positive rate in Hz"),
                    (self.db_range > 0, "db_range", self.db_range, "a positive number of dB"),
                    (self.bins_per_octave >= 1, "bins_per_octave", self.bins_per_octave, "at least 1"),
                    (self.channels in (1, 2), "channels", self.channels, "1 or 2")]
        for ok, name, value, expected in problems:
            if not ok:
                raise PictureError(f"{where}layout {name} is {value!r}; expected {expected}")
        return self

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, samples: int | None = None) -> int:
        """STFT columns for `samples` (default: the layout's) with centred, zero-padded windows."""
        return 1 + (self.samples if samples is None else samples) // self.hop_length


# -- STFT -------------------------------------------------------------------------------------------

def window(n_fft: int) -> np.ndarray:
    """Periodic Hann: at a hop of n_fft/4 both it and its square sum to constants (COLA)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float64)


def reference(n_fft: int) -> float:
    """The magnitude of a full-scale sine's bin (0 dB): half the window's sum."""
    return n_fft / 4.0


def stft(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """[shape=(n_fft/2+1, 1 + len(y)//hop_length)] complex STFT, windows centred on multiples of the hop,
    phase measured from each window's centre (so a steady tone has one phase across its bins)."""
    y = np.asarray(y, np.float64)
    padded = np.pad(y, n_fft // 2)
    n_frames = 1 + len(y) // hop_length
    starts = np.arange(n_frames) * hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[starts] * window(n_fft)
    spectrum = np.fft.rfft(frames, axis=1).T
    spectrum[1::2] *= -1          # (-1)^k: the phase of the window's centre, not of its first sample
    return spectrum


def istft(S: np.ndarray, *, hop_length: int, length: int) -> np.ndarray:
    """The exact inverse of stft(): overlap-add of windowed frames divided by the summed squared window."""
    bins, n_frames = S.shape
    n_fft = 2 * (bins - 1)
    S = S.copy()
    S[1::2] *= -1
    w = window(n_fft)
    frames = np.fft.irfft(S.T, n=n_fft, axis=1) * w
    overlap = n_fft // hop_length
    out = np.zeros((n_frames + overlap - 1, hop_length))
    norm = np.zeros_like(out)
    parts = frames.reshape(n_frames, overlap, hop_length)
    for j in range(overlap):   # hop-sized pieces: piece j of frame m lands in block m + j
        out[j:j + n_frames] += parts[:, j]
        norm[j:j + n_frames] += (w * w).reshape(overlap, hop_length)[j]
    out, norm = out.ravel()[n_fft // 2:n_fft // 2 + length], norm.ravel()[n_fft // 2:n_fft // 2 + length]
    out = out / np.where(norm > 1e-10, norm, 1.0)
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


def spectral_convergence(y: np.ndarray, magnitude: np.ndarray, *, hop_length: int) -> float:
    """|| |STFT(y)| - magnitude || / || magnitude || (Frobenius): how well y's spectrogram matches a target."""
    n_fft = 2 * (magnitude.shape[0] - 1)
    got = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))[:, :magnitude.shape[1]]
    return float(np.linalg.norm(got - magnitude) / max(np.linalg.norm(magnitude), 1e-30))


def snr_db(reference_signal: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|x|^2 / |x - y|^2)."""
    x = np.asarray(reference_signal, np.float64)
    error = x - np.asarray(estimate, np.float64)
    return float(10 * np.log10(np.sum(x * x) / max(np.sum(error * error), 1e-300)))


# -- rows: which frequency each picture row shows -------------------------------------------------

def row_positions(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row in bins, from the bottom; the row of each bin).

    linear: one row per bin. log: bin k >= 1 gets max(1, round(bins_per_octave / (k ln 2))) rows, so every
    octave spans at least bins_per_octave rows; rows between bins interpolate them. Every bin keeps a row of
    its own, so the inverse reads the bins back exactly; the top octaves stay linear (one row per bin)
    because fewer rows than bins would lose what an image tool cannot give back.
    """
    bins = layout.bins
    if layout.scale == "linear":
        return np.arange(bins, dtype=np.float64), np.arange(bins)
    k = np.arange(1, bins - 1)
    repeats = np.concatenate([[1], np.maximum(1, np.round(layout.bins_per_octave / (k * np.log(2)))), [1]]).astype(int)
    positions = np.concatenate([b + np.arange(r) / r for b, r in enumerate(repeats)])
    return positions, np.concatenate([[0], np.cumsum(repeats)[:-1]])


def bins_to_rows(values: np.ndarray, positions: np.ndarray, *, circular: bool = False) -> np.ndarray:
    """Per-bin values (bins, frames) -> per-row values, linear between bins (on the unit circle if circular)."""
    lo = np.minimum(np.floor(positions).astype(int), values.shape[0] - 1)
    hi = np.minimum(lo + 1, values.shape[0] - 1)
    f = (positions - lo)[:, None]
    if not circular:
        return values[lo] * (1 - f) + values[hi] * f
    z = np.exp(1j * values)
    return np.angle(z[lo] * (1 - f) + z[hi] * f)


def resample_axis(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear resampling of `a` to n samples along `axis`, ends kept (what an image resize does)."""
    old = a.shape[axis]
    if old == n:
        return a
    x = np.linspace(0, old - 1, n)
    lo = np.minimum(np.floor(x).astype(int), old - 1)
    hi = np.minimum(lo + 1, old - 1)
    shape = [1] * a.ndim
    shape[axis] = n
    f = (x - lo).reshape(shape)
    return np.take(a, lo, axis=axis) * (1 - f) + np.take(a, hi, axis=axis) * f


# -- pixels --------------------------------------------------------------------------------------

def magnitude_to_unit(magnitude: np.ndarray, layout: Layout) -> np.ndarray:
    """|S| -> [0, 1]: dB on [db_top - db_range, db_top]; below the floor is 0 (silence)."""
    db = 20 * np.log10(np.maximum(magnitude, 1e-300) / reference(layout.n_fft))
    return np.clip((db - (layout.db_top - layout.db_range)) / layout.db_range, 0.0, 1.0)


def unit_to_magnitude(unit: np.ndarray, layout: Layout) -> np.ndarray:
    """The inverse of magnitude_to_unit; 0 (black) is silence."""
    db = layout.db_top - layout.db_range + np.clip(unit, 0.0, 1.0) * layout.db_range
    return np.where(unit > 0, reference(layout.n_fft) * 10.0 ** (db / 20), 0.0)


def quantize(unit: np.ndarray, layout: Layout) -> np.ndarray:
    """[0, 1] -> the layout's unsigned integers."""
    dtype = np.uint8 if layout.bits == 8 else np.uint16
    return np.round(np.clip(unit, 0.0, 1.0) * layout.levels).astype(dtype)


def make_picture(magnitude_unit: np.ndarray, phase_unit: np.ndarray | None, layout: Layout) -> np.ndarray:
    """One channel's picture [shape=(rows, frames, 3)] from per-bin planes in [0, 1]; low frequencies at the bottom.

    phase_unit, when given, is already quantised to the layout's levels (cppnviz.phase.encode), so the
    bin rows hold it exactly.
    """
    positions, _ = row_positions(layout)
    red = bins_to_rows(magnitude_unit, positions)
    if phase_unit is None:
        green = red
    else:  # interpolate the angle the unit value stands for, so rows between bins never jump across the wrap
        angle = bins_to_rows(phase_unit * 2 * np.pi - np.pi, positions, circular=True)
        green = (angle + np.pi) / (2 * np.pi)
    return quantize(np.stack([red, green, red], axis=-1)[::-1], layout)


def read_planes(pixels: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude, phase plane in [0, 1]), per bin, from one channel's picture in [0, 1] of the layout's height."""
    _, bin_rows = row_positions(layout)
    rows = pixels[::-1]
    return unit_to_magnitude(rows[bin_rows, :, 0], layout), rows[bin_rows, :, 1]


# -- files ---------------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels: np.ndarray, layout: Layout) -> bytes:
    """An 8- or 16-bit RGB PNG (PyAV's encoder: Pillow writes no 16-bit colour) with the layout in a tEXt chunk."""
    import av

    height, width = pixels.shape[:2]
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "rgb24" if layout.bits == 8 else "rgb48be"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24" if layout.bits == 8 else "rgb48le")
    data = b"".join(bytes(p) for p in codec.encode(frame)) + b"".join(bytes(p) for p in codec.encode(None))
    ihdr_end = 8 + 8 + 13 + 4       # signature, then IHDR's length, type, 13 bytes and CRC
    text = _chunk(b"tEXt", KEY.encode() + b"\0" + layout.to_json().encode("latin-1"))
    return data[:ihdr_end] + text + data[ihdr_end:]


def write_atomic(path: Path, write) -> None:
    """Call write(partial_path) and rename it onto `path`; on any failure (or Ctrl-C) leave nothing."""
    check_file_output(path, what="a file name such as song.png")
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_png(path: Path, pixels: np.ndarray, layout: Layout) -> None:
    data = png_bytes(pixels, layout)
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def read_picture(path: str) -> tuple[np.ndarray, Layout | None]:
    """(pixels in [0, 1], float64 [shape=(rows, columns, 3)], the layout from its metadata or None).

    Pixels come through FFmpeg (8- and 16-bit PNG, TIFF, JPEG, DPX, ...); the layout through picture_layout().
    """
    import av

    layout = picture_layout(path)
    try:
        with av.open(path, format="image2", options={"pattern_type": "none"}) as container:
            pixels = frame_pixels(next(container.decode(video=0)))
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as exc:
        raise PictureError(f"cannot read '{path}': not a picture FFmpeg decodes "
                           f"({getattr(exc, 'strerror', None) or exc or type(exc).__name__})") from None
    return pixels, layout


def picture_layout(path: str) -> Layout | None:
    """The layout in a picture's text chunk, or None (also for a format Pillow does not know: FFmpeg may).

    The chunk png_bytes() writes precedes the pixels, so Pillow finds it without decoding them; only a
    picture without it there is loaded, for a chunk after the pixels.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise PictureError(f"cannot read '{path}': no such file")
    try:
        with Image.open(path) as image:
            text = image.info.get(KEY)
            if text is None:
                text = getattr(image, "text", {}).get(KEY)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return None if not isinstance(text, str) else Layout.from_json(text, path)


def frame_pixels(frame) -> np.ndarray:
    """A decoded picture as RGB in [0, 1]: 8-bit sources through rgb24, deeper ones through rgb48.

    (FFmpeg's scaler widens 8 bits to 16 with dither, not by 257: reading an 8-bit picture as rgb48 would
    move every pixel by up to one level.)
    """
    array, full = frame_array(frame)
    return array / full


def frame_array(frame) -> tuple[np.ndarray, float]:
    """A decoded picture as integer RGB [shape=(height, width, 3)] and the value of full scale (255 or 65535)."""
    if max(c.bits for c in frame.format.components) <= 8:
        return frame.to_ndarray(format="rgb24"), 255.0
    return frame.to_ndarray(format="rgb48le"), 65535.0


# -- video: a scrolling spectrogram ---------------------------------------------------------------

def right_edge(i: int, layout: Layout, fps: Fraction) -> int:
    """The column at the right edge ("now") of video frame i: the newest column at time i / fps."""
    return (i * layout.sr * fps.denominator) // (layout.hop_length * fps.numerator)


def first_frame_showing(column: int, layout: Layout, fps: Fraction) -> int:
    """The first video frame whose right edge has reached `column`."""
    num = column * layout.hop_length * fps.numerator
    den = layout.sr * fps.denominator
    return -(-num // den)


def video_frames(pictures: list[np.ndarray], layout: Layout, fps: Fraction, view: int):
    """Yield the frames of the scrolling video: each channel's last `view` columns up to now, side by side."""
    columns = pictures[0].shape[1]
    last = first_frame_showing(columns - 1, layout, fps)
    padded = [np.concatenate([np.zeros((p.shape[0], view - 1, 3), p.dtype), p], axis=1) for p in pictures]
    for i in range(last + 1):
        edge = right_edge(i, layout, fps)
        yield np.concatenate([p[:, edge:edge + view] for p in padded], axis=1)


def write_video(path: Path, pictures: list[np.ndarray], layout: Layout, fps: Fraction, view: int) -> int:
    """FFV1 in Matroska (lossless, 8 or 16 bits per channel), the layout and the scroll in a container tag.

    Returns the number of frames written.
    """
    import av

    shift = -(-layout.sr * fps.denominator // (layout.hop_length * fps.numerator))
    if view < shift + 1:
        raise PictureError(f"--width {view} is narrower than the {shift + 1} columns a frame scrolls by; "
                           f"give at least {shift + 1}")
    meta = json.dumps({**json.loads(layout.to_json()), "fps": str(fps), "view": view})
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with av.open(str(tmp), "w", format="matroska") as container:
            container.metadata[KEY] = meta
            stream = container.add_stream("ffv1", rate=fps)
            stream.width, stream.height = view * len(pictures), pictures[0].shape[0]
            stream.pix_fmt = "bgr0" if layout.bits == 8 else "gbrp16le"
            fmt = "rgb24" if layout.bits == 8 else "rgb48le"
            for frame in video_frames(pictures, layout, fps, view):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)))
                count += 1
            container.mux(stream.encode(None))

    write_atomic(path, write)
    return count


def video_layout(path: str) -> Layout | None:
    """The layout a video carries in its container tag, or None; without decoding a frame."""
    import av

    if not os.path.isfile(path):
        raise PictureError(f"cannot read '{path}': no such file")
    try:
        with av.open(path) as container:
            text = {k.lower(): v for k, v in container.metadata.items()}.get(KEY)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise PictureError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    return None if text is None else Layout.from_json(text, path)


def read_video(path: str, layout: Layout | None, warn) -> tuple[np.ndarray, Layout]:
    """The whole picture (all channels side by side, in [0, 1]) back from a scrolling video, and its layout."""
    import av

    if not os.path.isfile(path):
        raise PictureError(f"cannot read '{path}': no such file")
    try:
        container = av.open(path)
    except av.error.EOFError:
        raise PictureError(f"cannot read '{path}': the video has no frames (or ends before its first)") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise PictureError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    with container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
        if not container.streams.video:
            raise PictureError(f"cannot read '{path}': it has no video stream")
        extra = {}
        if KEY in tags:
            layout = layout or Layout.from_json(tags[KEY], path)   # a damaged tag: one error line, unless given
            try:
                extra = json.loads(tags[KEY])
            except ValueError:
                pass
            extra = extra if isinstance(extra, dict) else {}
        if layout is None:
            raise PictureError(f"'{path}' carries no {KEY} layout (the tool that saved it dropped the tags): "
                               f"give --like ORIGINAL, the file to-video made, or the layout flags (--sr ...)")
        fps = Fraction(extra.get("fps") or container.streams.video[0].average_rate)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"     # FFV1 decodes slices on every core: about twice as fast here
        view = extra.get("view", stream.width // layout.channels)
        size = (len(row_positions(layout)[0]), view * layout.channels)
        columns = layout.frames() if layout.samples else None
        picture, count = None, 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                pixels, full = frame_array(frame)    # converted to float only where a column is read
                if pixels.shape[:2] != size:
                    if i == 0:
                        warn(f"'{path}' frames are {pixels.shape[1]}x{pixels.shape[0]}; its layout has "
                             f"{size[1]}x{size[0]}: each frame resampled to that size")
                    pixels = resample_axis(resample_axis(pixels / full, size[0], 0), size[1], 1)
                    full = 1.0
                if picture is None:
                    columns = columns or right_edge(_count_frames(path) - 1, layout, fps) + 1
                    picture = np.zeros((size[0], columns * layout.channels, 3))
                    first = np.array([first_frame_showing(j, layout, fps) for j in range(columns)])
                # the columns that reach the right edge in this frame are read from it, each once
                new = np.flatnonzero(first == i)
                x = view - 1 - right_edge(i, layout, fps) + new
                for c in range(layout.channels):
                    picture[:, c * columns + new] = pixels[:, c * view + x] / full
                count = i + 1
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise PictureError(f"cannot read '{path}': cannot decode its frames ({exc})") from None
    if picture is None:
        raise PictureError(f"cannot read '{path}': the video has no frames")
    if first[-1] >= count:
        got = int(np.searchsorted(first, count))
        warn(f"'{path}' has {count} frames; its layout needs {first[-1] + 1}: the sound ends after {got} columns")
        picture = np.concatenate([picture[:, c * columns:c * columns + got] for c in range(layout.channels)], axis=1)
        layout = replace(layout, samples=(got - 1) * layout.hop_length)
    return picture, layout


def _count_frames(path: str) -> int:
    """Video frames in a file, counted from its packets (without decoding them)."""
    import av

    with av.open(path) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)
