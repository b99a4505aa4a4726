"""The encoder node on real files, checked with ffprobe and by decoding them back with PyAV."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from cppnviz.errors import OutputError
from cppnviz.node import Context
from cppnviz.nodes.output import Encoder
from cppnviz.ports import AudioWindow, Spec
from cppnviz.timebase import tick

SR = 44100
FPS = Fraction(30)
# Saturated colours: decoding them with the wrong matrix (BT.601) is off by more than 15/255.
PALETTE = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9], [0.5, 0.5, 0.5]], np.float32)
# yuv420 limited range at crf 18 plus swscale's own rounding, on flat colour.
COLOUR_TOLERANCE = 4 / 255

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed: apt-get install ffmpeg")


# -- helpers ------------------------------------------------------------------------

def make_encoder(path: Path, *, fmt: str = "mp4", fps: Fraction = FPS, shape=(48, 64), audio: bool = True) -> Encoder:
    enc = Encoder("enc", {"path": str(path), "format": fmt, "crf": 18, "preset": "ultrafast", "audio_bitrate": 128},
                  Context(fps=fps))
    specs = {"frame": Spec("frame", shape=(*shape, 3))}
    if audio:
        specs["audio"] = Spec("audio", sample_rate=SR)
    enc.configure(specs)
    return enc


def solid(k: int, shape=(48, 64)) -> np.ndarray:
    return np.broadcast_to(PALETTE[k % len(PALETTE)], (*shape, 3)).copy()


def gradient(shape) -> np.ndarray:
    """Red rising left to right, green top to bottom, blue constant: every pixel distinct."""
    h, w = shape
    frame = np.empty((h, w, 3), np.float32)
    frame[..., 0] = np.linspace(0.1, 0.9, w, dtype=np.float32)[None, :]
    frame[..., 1] = np.linspace(0.2, 0.8, h, dtype=np.float32)[:, None]
    frame[..., 2] = 0.4
    return frame


def window(program: np.ndarray | None, mono: np.ndarray | None = None) -> AudioWindow:
    mono = program.mean(axis=1).astype(np.float32) if mono is None else mono
    return AudioWindow(samples=mono, now=0, sample_rate=SR, final=True, program=program)


def encode(enc: Encoder, n: int, *, frames=solid, audio: AudioWindow | None = None, fps: Fraction = FPS) -> None:
    enc.start()
    for k in range(n):
        inputs = {"frame": frames(k)}
        if audio is not None:
            inputs["audio"] = audio
        enc.process(tick(k, fps), **inputs)
    enc.finish()


def probe(path: Path) -> dict[str, dict]:
    """ffprobe's view of the file's streams, keyed by codec type."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,nb_read_frames,duration,width,height,pix_fmt,r_frame_rate,"
         "channels,sample_rate,color_space,color_range", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame as float RGB, converted by swscale with the matrix the stream is tagged with."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert (frame.colorspace, frame.color_range) == (1, 1)      # BT.709, limited ("MPEG") range
            rgb = frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG",
                                 interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND)
            frames.append(rgb.to_ndarray().astype(np.float32) / 255)
    return frames


def decode_audio(path: Path) -> np.ndarray:
    """The AAC track as float samples, shape (channels, n)."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def tone(seconds: float, *, start: float = 0.0, amplitude: float = 0.5) -> np.ndarray:
    """A 440 Hz sine that begins at `start` seconds, silent before."""
    t = np.arange(round(seconds * SR)) / SR
    return np.where(t >= start, amplitude * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- MP4 ----------------------------------------------------------------------------

@needs_ffprobe
def test_mp4_with_stereo_audio_has_the_right_streams_and_lengths(tmp_path):
    n = 45
    left = tone(1.2, start=0.5)                                  # shorter than the 1.5 s of video
    program = np.stack([left, np.zeros_like(left)], axis=1)
    enc = make_encoder(tmp_path / "out.mp4")
    encode(enc, n, audio=window(program))
    assert enc.frames_written == n

    streams = probe(tmp_path / "out.mp4")
    video, audio = streams["video"], streams["audio"]
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (video["width"], video["height"]) == (64, 48)
    assert int(video["nb_read_frames"]) == n
    assert video["r_frame_rate"] == "30/1"
    assert float(video["duration"]) == pytest.approx(n / 30, abs=1e-3)
    assert (video["color_space"], video["color_range"]) == ("bt709", "tv")
    assert (audio["codec_name"], audio["channels"], int(audio["sample_rate"])) == ("aac", 2, SR)
    assert abs(float(audio["duration"]) - n / 30) <= 1 / 30

    # The tone is on the left only, and starts at 0.5 s give or take a frame (the AAC priming is cut).
    pcm = decode_audio(tmp_path / "out.mp4")
    assert np.abs(pcm[1]).max() < 0.02
    onset = np.argmax(np.abs(pcm[0]) > 0.25) / SR
    assert abs(onset - 0.5) <= 1 / 30


@needs_ffprobe
@pytest.mark.parametrize("with_program", [True, False], ids=["mono-program", "samples-only"])
def test_mono_audio_is_cut_to_the_video(tmp_path, with_program):
    n = 30
    mono = tone(2.5)                                             # longer than the 1 s of video
    audio = window(mono[:, None]) if with_program else window(None, mono)
    encode(make_encoder(tmp_path / "out.mp4"), n, audio=audio)

    audio = probe(tmp_path / "out.mp4")["audio"]
    assert (audio["codec_name"], audio["channels"]) == ("aac", 1)
    assert abs(float(audio["duration"]) - n / 30) <= 1 / 30
    assert np.abs(decode_audio(tmp_path / "out.mp4")).max() > 0.3


@needs_ffprobe
def test_fractional_frame_rate_is_exact(tmp_path):
    fps, n = Fraction(30000, 1001), 40
    enc = make_encoder(tmp_path / "out.mp4", fps=fps)
    encode(enc, n, audio=window(tone(3.0)[:, None]), fps=fps)

    streams = probe(tmp_path / "out.mp4")
    assert streams["video"]["r_frame_rate"] == "30000/1001"
    assert int(streams["video"]["nb_read_frames"]) == n
    assert float(streams["video"]["duration"]) == pytest.approx(float(n / fps), abs=1e-3)
    assert abs(float(streams["audio"]["duration"]) - float(n / fps)) <= float(1 / fps)


def test_live_window_takes_the_newest_samples(tmp_path):
    n = 10
    per_tick = SR // 30
    ring = np.zeros((4 * per_tick, 1), np.float32)
    ring[-per_tick:, 0] = tone(1 / 30)                           # only the newest tick's worth is sound
    live = AudioWindow(samples=ring[:, 0], now=len(ring) - 1, sample_rate=SR, final=False, program=ring)
    encode(make_encoder(tmp_path / "live.mp4"), n, audio=live)
    assert np.abs(decode_audio(tmp_path / "live.mp4")).max() > 0.3


def test_more_than_two_channels_is_an_output_error(tmp_path):
    enc = make_encoder(tmp_path / "out.mp4")
    enc.start()
    with pytest.raises(OutputError, match="6 channels"):
        enc.process(tick(0, FPS), frame=solid(0), audio=window(np.zeros((SR, 6), np.float32)))
    enc.abort()
    assert leftovers(tmp_path) == []


def test_mp4_colours_survive_the_round_trip(tmp_path):
    n = 12
    encode(make_encoder(tmp_path / "out.mp4", audio=False), n)
    frames = decode_video(tmp_path / "out.mp4")
    assert len(frames) == n
    for k, frame in enumerate(frames):                           # also proves reused buffers kept their order
        assert np.abs(frame[8:-8, 8:-8].mean(axis=(0, 1)) - PALETTE[k % len(PALETTE)]).max() <= COLOUR_TOLERANCE

    # The check can see a wrong matrix: decoding as BT.601 misses the red frame by far more.
    with av.open(str(tmp_path / "out.mp4")) as container:
        first = next(container.decode(video=0))
        as_601 = first.reformat(format="rgb24", src_colorspace="ITU601", src_color_range="MPEG").to_ndarray() / 255
    assert np.abs(as_601.mean(axis=(0, 1)) - PALETTE[0]).max() > 3 * COLOUR_TOLERANCE


@needs_ffprobe
def test_odd_size_is_padded_to_even_keeping_every_pixel(tmp_path):
    shape = (17, 33)
    picture = gradient(shape)
    encode(make_encoder(tmp_path / "odd.mp4", shape=shape, audio=False), 5, frames=lambda k: picture)

    video = probe(tmp_path / "odd.mp4")["video"]
    assert (video["width"], video["height"]) == (34, 18)
    frame = decode_video(tmp_path / "odd.mp4")[0]
    assert np.abs(frame[:17, :33] - picture).mean() <= COLOUR_TOLERANCE
    assert np.abs(frame[:17, 33] - picture[:, 32]).mean() <= COLOUR_TOLERANCE   # repeated last column
    assert np.abs(frame[17, :33] - picture[16]).mean() <= COLOUR_TOLERANCE       # repeated last row


# -- PNG ----------------------------------------------------------------------------

def test_png_sequence(tmp_path):
    shape, n = (17, 33), 5                                       # PNG keeps odd sizes as they are
    out = tmp_path / "frames"
    enc = make_encoder(out, fmt="png", shape=shape)
    encode(enc, n, frames=lambda k: solid(k, shape) if k else gradient(shape),
           audio=window(tone(1.0)[:, None]))                     # a linked song is ignored

    assert enc.frames_written == n
    assert leftovers(out) == [f"{k:06d}.png" for k in range(n)]
    assert leftovers(tmp_path) == ["frames"]
    for k in range(n):
        with av.open(str(out / f"{k:06d}.png")) as container:
            rgb = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32) / 255
        expected = solid(k, shape) if k else gradient(shape)
        assert rgb.shape == (*shape, 3)
        assert np.abs(rgb - expected).max() <= 0.5 / 255 + 1e-6    # lossless up to 8-bit rounding


def test_png_replaces_a_previous_render(tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    for k in range(8):
        (out / f"{k:06d}.png").write_bytes(b"old")
    encode(make_encoder(out, fmt="png", audio=False), 3)
    assert leftovers(out) == ["000000.png", "000001.png", "000002.png"]
    assert leftovers(tmp_path) == ["frames"]


def test_png_refuses_a_folder_holding_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="mine"):
        make_encoder(out, fmt="png")


# -- nothing lost -------------------------------------------------------------------

def test_output_appears_only_at_finish(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    enc = make_encoder(path)
    enc.start()
    for k in range(10):
        enc.process(tick(k, FPS), frame=solid(k), audio=window(tone(1.0)[:, None]))
    assert path.read_bytes() == b"previous render"
    # The writer thread creates its hidden partial file at its first mux, which may not have come yet.
    temps = [name for name in leftovers(tmp_path) if name != "out.mp4"]
    assert len(temps) <= 1 and all(name.startswith(".") and "partial" in name for name in temps)

    enc.finish()
    assert leftovers(tmp_path) == ["out.mp4"]
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


@pytest.mark.parametrize("fmt,name", [("mp4", "out.mp4"), ("png", "frames")])
def test_abort_leaves_nothing(tmp_path, fmt, name):
    enc = make_encoder(tmp_path / name, fmt=fmt)
    enc.start()
    for k in range(12):
        enc.process(tick(k, FPS), frame=solid(k), audio=window(tone(1.0)[:, None]))
    enc.abort()
    assert leftovers(tmp_path) == []


def test_abort_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    enc = make_encoder(path)
    enc.start()
    for k in range(5):
        enc.process(tick(k, FPS), frame=solid(k), audio=window(tone(1.0)[:, None]))
    enc.abort()
    assert leftovers(tmp_path) == ["out.mp4"]
    assert path.read_bytes() == b"previous render"


def test_abort_before_any_frame(tmp_path):
    enc = make_encoder(tmp_path / "out.mp4")
    enc.start()
    enc.abort()
    assert leftovers(tmp_path) == []


def test_a_failing_writer_surfaces_as_output_error(tmp_path):
    out = tmp_path / "frames"
    enc = make_encoder(out, fmt="png", audio=False)
    enc.start()
    (temp,) = tmp_path.iterdir()                                 # the hidden folder the frames go to
    shutil.rmtree(temp)                                          # now every frame the writer saves fails
    with pytest.raises(OutputError, match="frames"):
        for k in range(40):
            enc.process(tick(k, FPS), frame=solid(k))
        enc.finish()
    enc.abort()
    assert leftovers(tmp_path) == []


# -- configure ------------------------------------------------------------------------

def test_configure_creates_no_file(tmp_path):
    make_encoder(tmp_path / "out.mp4")
    make_encoder(tmp_path / "frames", fmt="png")
    assert leftovers(tmp_path) == []


def test_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="nowhere"):
        make_encoder(tmp_path / "nowhere" / "out.mp4")


def test_folder_that_is_a_file_is_an_output_error(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(OutputError, match="plain"):
        make_encoder(tmp_path / "plain" / "out.mp4")


def test_mp4_path_that_is_a_folder_is_an_output_error(tmp_path):
    (tmp_path / "video.mp4").mkdir()
    with pytest.raises(OutputError, match="video.mp4"):
        make_encoder(tmp_path / "video.mp4")


def test_unwritable_folder_is_an_output_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permission bits do not stop root from writing")
        with pytest.raises(OutputError, match="locked"):
            make_encoder(folder / "out.mp4")
    finally:
        folder.chmod(0o755)
