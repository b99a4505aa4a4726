"""Output nodes: the encoder writes the frames (and the song) to an MP4 file or a PNG sequence."""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from cppnviz.errors import GraphError, OutputError, Problem
from cppnviz.node import Context, Node
from cppnviz.outputs import (check_file_output, check_folder, existing_kind, names_a_folder, partial_path,
                             remove_stale_partials)
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import AudioWindow, Input, to_host
from cppnviz.timebase import Tick, sample_at

log = logging.getLogger(__name__)

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# BT.709 luma weights; the stream is tagged BT.709, limited ("tv") range, so players decode it as written.
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
# Limited range: Y' = 16 + 219·Y, Cb/Cr = 128 + 224·C.
LUMA = (219.0 * np.array([KR, KG, KB])).astype(np.float32)
# Chroma is the mean of a 2×2 block. The rows below apply to a horizontal pixel pair at once
# (6 floats, a free view of the frame), so one matrix-vector pass converts and sums; hence 1/4.
_CB = 224.0 / 4 * np.array([-KR, -KG, 1.0 - KB]) / (2.0 * (1.0 - KB))
_CR = 224.0 / 4 * np.array([1.0 - KR, -KG, -KB]) / (2.0 * (1.0 - KR))
CB_PAIR = np.tile(_CB, 2).astype(np.float32)
CR_PAIR = np.tile(_CR, 2).astype(np.float32)

PNG_NAME = re.compile(r"\d{6}\.png")
# Containers PyAV muxes H.264 + AAC into, by the extension the user gave.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _plane(plane, height: int, width: int, channels: int = 1) -> np.ndarray:
    """A writable uint8 view of a PyAV plane without its line padding, shape (height, width[, channels])."""
    flat = np.frombuffer(plane, dtype=np.uint8)
    shape, strides = (height, width), (plane.line_size, channels)
    if channels > 1:
        shape, strides = (height, width, channels), (plane.line_size, channels, 1)
    return np.lib.stride_tricks.as_strided(flat, shape, strides, writeable=True)


class _Slot:
    """One reusable VideoFrame and numpy views of its planes, handed between process() and the writer."""

    def __init__(self, frame: av.VideoFrame, views: tuple[np.ndarray, ...]):
        self.frame = frame
        self.views = views


class _Yuv420:
    """Float RGB frames -> BT.709 limited-range planar YUV 4:2:0, written straight into VideoFrame planes.

    Odd sizes are padded to even by repeating the last column/row, so every source pixel is kept.
    """

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.out_height, self.out_width = height + height % 2, width + width % 2
        h, w = self.out_height, self.out_width
        self.padded = np.empty((h, w, 3), np.float32) if (h, w) != (height, width) else None
        self.luma = np.empty((h, w), np.float32)
        self.pair_sums = np.empty((h, w // 2), np.float32)
        self.chroma = np.empty((h // 2, w // 2), np.float32)

    def new_slot(self) -> _Slot:
        h, w = self.out_height, self.out_width
        frame = av.VideoFrame(w, h, "yuv420p")
        frame.colorspace, frame.color_range = Colorspace.ITU709, ColorRange.MPEG
        y, u, v = frame.planes
        return _Slot(frame, (_plane(y, h, w), _plane(u, h // 2, w // 2), _plane(v, h // 2, w // 2)))

    def fill(self, rgb: np.ndarray, slot: _Slot) -> None:
        if self.padded is not None:
            p, h, w = self.padded, self.height, self.width
            p[:h, :w] = rgb
            p[:h, w:] = p[:h, w - 1:w]
            p[h:] = p[h - 1:h]
            rgb = p
        y, u, v = slot.views
        np.matmul(rgb, LUMA, out=self.luma)
        _store(self.luma, 16.5, y)                          # +0.5 makes the truncating cast round
        pairs = rgb.reshape(rgb.shape[0], -1, 6)            # pixel pairs side by side: a view, no copy
        for weights, plane in ((CB_PAIR, u), (CR_PAIR, v)):
            np.matmul(pairs, weights, out=self.pair_sums)
            np.add(self.pair_sums[0::2], self.pair_sums[1::2], out=self.chroma)
            _store(self.chroma, 128.5, plane)


class _Rgb24:
    """Float RGB frames -> 8-bit RGB written into VideoFrame planes (for PNG)."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.scaled = np.empty((height, width, 3), np.float32)

    def new_slot(self) -> _Slot:
        frame = av.VideoFrame(self.width, self.height, "rgb24")
        return _Slot(frame, (_plane(frame.planes[0], self.height, self.width, 3),))

    def fill(self, rgb: np.ndarray, slot: _Slot) -> None:
        np.multiply(rgb, 255.0, out=self.scaled)
        _store(self.scaled, 0.5, slot.views[0])


def _store(values: np.ndarray, offset: float, out: np.ndarray) -> None:
    """out = clip(values + offset) as uint8, in place; the clip keeps out-of-range input from wrapping."""
    np.add(values, offset, out=values)
    np.clip(values, 0.0, 255.0, out=values)
    np.copyto(out, values, casting="unsafe")


class _Mp4:
    """An MP4 file being written: H.264 video and, once audio arrives, an AAC track."""

    def __init__(self, path: Path, container: str, width: int, height: int, fps: Fraction, crf: int, preset: str,
                 sample_rate: int | None, audio_bitrate: int):
        self.container = av.open(str(path), "w", format=container)
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        cc = self.video.codec_context
        self.time_base = cc.time_base = 1 / fps                # frame k has pts k
        cc.options = {"crf": str(crf), "preset": preset}
        cc.thread_count, cc.thread_type = 0, "FRAME"           # 0: libx264 uses every core
        cc.colorspace, cc.color_range = Colorspace.ITU709, ColorRange.MPEG
        cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self.sample_rate, self.bitrate = sample_rate, audio_bitrate * 1000
        self.audio = None
        self.pts = 0
        self.audio_pts = 0

    def write(self, frame: av.VideoFrame, audio: np.ndarray | None) -> None:
        if audio is not None:
            self._write_audio(audio)                           # first: adds the AAC stream before any mux
        frame.pts, frame.time_base = self.pts, self.time_base
        self.pts += 1
        self.container.mux(self.video.encode(frame))

    def _write_audio(self, samples: np.ndarray) -> None:
        """Buffer (n, channels) samples and encode every full AAC frame as soon as it is there."""
        if self.audio is None:
            self._open_audio(samples.shape[1])
        while len(samples):
            take = min(len(samples), self.frame_size - self.filled)
            self.pcm[:, self.filled:self.filled + take] = samples[:take].T
            self.filled += take
            samples = samples[take:]
            if self.filled == self.frame_size:
                self._encode_pcm()

    def _open_audio(self, channels: int) -> None:
        layout = {1: "mono", 2: "stereo"}[channels]
        self.audio = self.container.add_stream("aac", rate=self.sample_rate, layout=layout)
        self.audio.bit_rate = self.bitrate
        self.audio.codec_context.open()                        # to learn its frame size
        self.layout = layout
        self.frame_size = self.audio.codec_context.frame_size
        self.pcm = np.zeros((channels, self.frame_size), np.float32)
        self.filled = 0

    def _encode_pcm(self) -> None:
        block = np.ascontiguousarray(self.pcm[:, :self.filled])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self.layout)
        frame.sample_rate, frame.pts, frame.time_base = self.sample_rate, self.audio_pts, Fraction(1, self.sample_rate)
        self.audio_pts += self.filled
        self.filled = 0
        self.container.mux(self.audio.encode(frame))

    def close(self) -> None:
        """Flush both encoders and write the index; the file is complete after this."""
        if self.audio is not None and self.filled:
            self._encode_pcm()                                 # AAC takes a short last frame
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()

    def discard(self) -> None:
        """Close a file about to be deleted; a failure to finish it (a full disk) no longer matters."""
        try:
            self.container.close()
        except (OSError, av.FFmpegError) as exc:
            log.debug("closing the discarded %s: %s", self.container.name, exc)


class _PngSequence:
    """A folder being filled with 000000.png, 000001.png, ... encoded by FFmpeg's PNG encoder."""

    def __init__(self, folder: Path, width: int, height: int, fps: Fraction):
        self.folder = folder
        self.codec = av.CodecContext.create("png", "w")
        self.codec.width, self.codec.height, self.codec.pix_fmt = width, height, "rgb24"
        self.codec.time_base = 1 / fps
        # One thread: with frame threads the codec would still read a frame after encode() returns,
        # and our frames are reused.
        self.codec.thread_count = 1
        self.count = 0

    def write(self, frame: av.VideoFrame, audio: np.ndarray | None) -> None:
        frame.pts = self.count
        for packet in self.codec.encode(frame):
            self._save(packet)

    def _save(self, packet) -> None:
        (self.folder / f"{self.count:06d}.png").write_bytes(bytes(packet))
        self.count += 1

    def close(self) -> None:
        for packet in self.codec.encode(None):
            self._save(packet)

    def discard(self) -> None:
        pass


class Encoder(Node):
    """Write the frames to an H.264 MP4 (with the song as AAC) or a PNG sequence, published only when complete.

    process() converts each frame and queues it; a writer thread encodes and muxes meanwhile.
    `frames_written` counts the frames the writer has encoded.
    """

    type_name = "encoder"
    stage = "encode"
    inputs = (
        Input("frame", "frame", "the picture of this tick"),
        Input("audio", "audio", "the song, muxed into the MP4 as AAC (its `program` channels)", required=False),
    )
    outputs = ()
    writes = ("path",)
    params = (
        Param("path", "path", REQUIRED, "output file (.mp4, .mov or .mkv), or the folder to hold the frames (png)"),
        Param("format", "choice", "mp4", "mp4: H.264 video with the song as AAC, in the container the path's "
              "extension names (.mp4, .mov, .mkv); png: numbered PNG frames, no audio", choices=("mp4", "png")),
        Param("crf", "int", 20, "H.264 quality: lower is better and bigger, 18 looks lossless to most eyes",
              min=0, max=51),
        Param("preset", "choice", "veryfast", "libx264 speed preset: slower presets make smaller files",
              choices=PRESETS),
        Param("audio_bitrate", "int", 192, "AAC bitrate of the song in the MP4", min=32, max=512, unit="kbit/s"),
    )

    # Frames in flight between process() and the writer; bounds memory however long the song.
    QUEUE_SIZE = 8

    def __init__(self, name: str, values: dict[str, Any], ctx: Context):
        super().__init__(name, values, ctx)
        self.frames_written = 0
        self._thread: threading.Thread | None = None
        self._sink = None
        self._temp: Path | None = None
        self._published = False
        self._gpu_converter = None  # made on the first GPU frame

    # -- configure -------------------------------------------------------------
    def configure(self, inputs: dict[str, Any]) -> dict:
        shape = inputs["frame"].shape
        if shape is None or len(shape) != 3 or shape[2] != 3:
            raise GraphError([Problem("input 'frame'", f"expected a frame of shape (height, width, 3), found {shape}")])
        self._height, self._width = shape[0], shape[1]
        audio = inputs.get("audio")
        self._sample_rate = (audio.program_rate or audio.sample_rate) if audio is not None else None
        if self.p.format == "mp4" and audio is not None and not self._sample_rate:
            raise GraphError([Problem("input 'audio'", "the audio link has no sample rate")])
        self._check_path()
        return {}

    def _check_path(self) -> None:
        """Fail early, creating nothing, when the output could not be written or would replace the wrong thing."""
        path = Path(self.p.path)
        if self.p.format == "mp4":
            if names_a_folder(self.p.path):
                raise OutputError(f"cannot write '{self.p.path}': it names a folder; give a file name such as "
                                  f"{path / 'video.mp4'}, or format png for a folder of frames")
            check_file_output(path)
            if path.suffix.lower() not in CONTAINERS:
                raise OutputError(f"cannot write '{path}': unsupported extension '{path.suffix or '(none)'}'; "
                                  "supported: .mp4, .mov, .mkv, or format png for a folder of frames")
            self._container = CONTAINERS[path.suffix.lower()]
            return
        kind = existing_kind(path)
        if path.exists() and kind != "a folder":
            raise OutputError(f"cannot write PNG frames to '{path}': it is {kind or 'a file'}; give a folder")
        check_folder(path)
        if kind == "a folder" and any(not PNG_NAME.fullmatch(entry.name) for entry in path.iterdir()):
            raise OutputError(f"cannot write PNG frames to '{path}': the folder holds other files; "
                              "give a new or empty folder")

    # -- run -------------------------------------------------------------------
    def start(self) -> None:
        path = Path(self.p.path)
        self.frames_written = 0
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._published = False
        for stale in remove_stale_partials(path):             # left by renders that were killed
            log.info("removed %s, left by an interrupted render", stale)
        self._temp = partial_path(path)
        try:
            if self.p.format == "mp4":
                self._converter = _Yuv420(self._height, self._width)
                self._sink = _Mp4(self._temp, self._container, self._converter.out_width, self._converter.out_height,
                                  self.ctx.fps, self.p.crf, self.p.preset, self._sample_rate, self.p.audio_bitrate)
            else:
                self._converter = _Rgb24(self._height, self._width)
                self._temp.mkdir()
                self._sink = _PngSequence(self._temp, self._width, self._height, self.ctx.fps)
        except (OSError, av.FFmpegError) as exc:
            self._discard()
            raise OutputError(f"cannot write '{path}': {exc}") from exc
        # Frames are reused, never reallocated: libx264 copies each picture inside encode(), so a slot
        # is free again once the writer hands it back. Two more than the queue: one filling, one encoding.
        self._free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(self.QUEUE_SIZE + 2):
            self._free.put(self._converter.new_slot())
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_all, name=f"encoder '{self.name}'", daemon=True)
        self._thread.start()

    def process(self, tick: Tick, frame: np.ndarray, audio: AudioWindow | None = None) -> dict:
        if frame.shape != (self._height, self._width, 3):
            raise ValueError(f"frame of shape {frame.shape} arrived, configured for {(self._height, self._width, 3)}")
        slot = self._take_slot()
        self._raise_if_failed()                                # checked after waiting: the writer may have failed meanwhile
        if hasattr(frame, "__cuda_array_interface__"):        # a GPU frame (the cppn's cupy backend)
            self._fill_from_gpu(frame, slot)
        else:
            self._converter.fill(frame, slot)
        samples = self._samples(tick.index, audio) if audio is not None and self.p.format == "mp4" else None
        self._work.put((slot, samples))
        return {}

    def _fill_from_gpu(self, frame, slot: _Slot) -> None:
        """YUV 4:2:0 made on the GPU, copied through pinned memory; PNG frames come to the host as RGB."""
        if not isinstance(self._converter, _Yuv420):
            self._converter.fill(to_host(frame), slot)
            return
        if self._gpu_converter is None:
            from ._cuda import GpuYuv420
            self._gpu_converter = GpuYuv420(self._height, self._width, LUMA, CB_PAIR, CR_PAIR)
        for plane, view in zip(self._gpu_converter.convert(frame), slot.views):
            np.copyto(view, plane)

    def _samples(self, k: int, audio: AudioWindow) -> np.ndarray:
        """This tick's program samples [s_k, s_k+1), zero-padded past the end of the track (a copy)."""
        program = audio.program if audio.program is not None else audio.samples[:, None]
        if program.shape[1] not in (1, 2):
            raise OutputError(f"cannot write '{self.p.path}': the encoder muxes mono or stereo audio, "
                              f"the song has {program.shape[1]} channels")
        start = sample_at(k, self._sample_rate, self.ctx.fps)
        n = sample_at(k + 1, self._sample_rate, self.ctx.fps) - start
        start -= audio.program_start if audio.program is not None else audio.start   # into the buffer
        if not audio.final:                                    # live: the newest samples are this tick's
            start = len(program) - n
        out = np.zeros((n, program.shape[1]), np.float32)
        lo, hi = max(start, 0), min(start + n, len(program))
        if hi > lo:
            out[lo - start:hi - start] = program[lo:hi]
        return out

    def _take_slot(self) -> _Slot:
        """A free frame to fill; waits while the writer is behind (that wait is the back-pressure)."""
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise RuntimeError(f"encoder '{self.name}': the writer thread ended unexpectedly")

    def _write_all(self) -> None:
        """The writer thread: encode and mux until the None sentinel, then close the file."""
        failed = False
        while (item := self._work.get()) is not None:
            slot, samples = item
            # After a failure or a cancel, keep taking work so process() never waits forever.
            if not failed and not self._cancel.is_set():
                try:
                    self._sink.write(slot.frame, samples)
                    self.frames_written += 1
                except BaseException as exc:                   # handed to the main thread, never dropped
                    self._error, failed = exc, True
            self._free.put(slot)
        if not failed and not self._cancel.is_set():
            try:
                self._sink.close()
            except BaseException as exc:
                self._error = exc

    def _raise_if_failed(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, (OSError, av.FFmpegError)):
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OutputError(f"cannot write '{self.p.path}': {reason[:1].lower()}{reason[1:]}") from exc
        raise exc

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._work.put(None)
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Let the writer drain and close the file, then rename it onto `path`."""
        self._stop_thread()
        try:
            self._raise_if_failed()
            self._publish()
        except BaseException:
            self._discard()
            raise

    def _publish(self) -> None:
        path = Path(self.p.path)
        try:
            if self.p.format == "png" and path.exists():
                # A folder cannot be renamed over a full one: move the old frames aside first.
                old = partial_path(path, kind="old")
                os.replace(path, old)
                os.replace(self._temp, path)
                shutil.rmtree(old)
            else:
                os.replace(self._temp, path)
        except OSError as exc:
            raise OutputError(f"cannot write '{path}': {exc}") from exc
        self._sink, self._temp, self._published = None, None, True

    def abort(self) -> None:
        """Stop the writer and delete the temporary output; a previous file at `path` stays as it was."""
        if self._published:
            return                                             # finished and published: nothing half-written
        if self._thread is not None:
            self._cancel.set()
            self._stop_thread()
        self._discard()

    def _discard(self) -> None:
        sink, temp = self._sink, self._temp
        self._sink, self._temp = None, None
        try:
            if sink is not None:
                sink.discard()
        finally:
            if temp is not None and temp.is_dir():
                shutil.rmtree(temp)
            elif temp is not None:
                temp.unlink(missing_ok=True)
