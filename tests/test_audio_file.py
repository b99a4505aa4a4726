"""The audio_file node and decode_audio on real files of every format, encoded here with PyAV."""

from __future__ import annotations

import runpy
import struct
import subprocess
import sys
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cppnviz.errors import AudioError
from cppnviz.node import Context
from cppnviz.timebase import tick
from cppnviz.nodes.audio import AudioFile, decode_audio

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.wav"
SECONDS = 1.5
TONE = 440.0
AMPLITUDE = 0.5
SR = 44100

LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


# -- helpers ------------------------------------------------------------------------

def encode(path: Path, codec: str, rate: int, channels: int, *, seconds: float = SECONDS, gains=None,
           **options) -> Path:
    """Write a 440 Hz sine, the same on every channel (times `gains`, one per channel), with a real PyAV encoder."""
    n = round(seconds * rate)
    tone = AMPLITUDE * np.sin(2 * np.pi * TONE * np.arange(n) / rate)
    signal = np.repeat(tone[None, :], channels, axis=0)             # (channels, n)
    if gains is not None:
        signal *= np.asarray(gains, np.float64)[:, None]
    layout = LAYOUTS[channels]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout, options=options)
        fmt = stream.codec_context.codec.audio_formats[0]
        step = stream.codec_context.frame_size or 1024              # PCM encoders take any size
        for start in range(0, n, step):
            frame = av.AudioFrame.from_ndarray(_as_format(signal[:, start:start + step], fmt), format=fmt.name, layout=layout)
            frame.rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _as_format(block: np.ndarray, fmt) -> np.ndarray:
    """Float samples in the array shape and dtype AudioFrame.from_ndarray expects for `fmt`."""
    dtype = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}[fmt.name.rstrip("p")]
    if np.issubdtype(dtype, np.integer):
        block = np.round(block * np.iinfo(dtype).max)
    block = block.astype(dtype)
    return block if fmt.is_planar else block.T.reshape(1, -1)       # packed: interleaved in one row


def make_node(path, *, normalize=True, sample_rate=SR, fps=Fraction(60), offset_ms=0.0) -> AudioFile:
    values = {"path": str(path), "sample_rate": sample_rate, "normalize": normalize}
    return AudioFile("audio", values, Context(fps=fps, offset_ms=offset_ms))


def dominant_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def write_wav(path: Path, samples: np.ndarray, rate: int = SR) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    return path


def png_bytes(width=4, height=4) -> bytes:
    """A valid grey PNG, built from the spec with the stdlib."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# -- formats ------------------------------------------------------------------------

# (file name, codec, source rate, channels, duration tolerance in seconds, encoder options)
EXACT = 1.5 / SR
FORMATS = [
    ("mono22k.wav", "pcm_s16le", 22050, 1, EXACT, {}),
    ("surround48k.wav", "pcm_s16le", 48000, 6, EXACT, {}),
    ("stereo96k.flac", "flac", 96000, 2, EXACT, {}),
    ("mono44k.flac", "flac", 44100, 1, EXACT, {}),
    ("mono48k.aiff", "pcm_s16be", 48000, 1, EXACT, {}),
    ("stereo22k.aiff", "pcm_s16be", 22050, 2, EXACT, {}),
    ("mono22k.mp3", "libmp3lame", 22050, 1, 0.1, {}),
    ("stereo48k.mp3", "libmp3lame", 48000, 2, 0.1, {}),
    ("stereo48k.ogg", "vorbis", 48000, 2, 0.1, {"strict": "experimental"}),
    ("mono48k.opus.ogg", "libopus", 48000, 1, 0.1, {}),
    ("stereo44k.m4a", "aac", 44100, 2, 0.1, {}),
    ("surround96k.m4a", "aac", 96000, 6, 0.1, {}),
]


@pytest.mark.parametrize("name, codec, rate, channels, tolerance, options", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_every_format(tmp_path, name, codec, rate, channels, tolerance, options):
    path = encode(tmp_path / name, codec, rate, channels, **options)
    node = make_node(path)
    specs = node.configure({})

    assert specs["audio"].kind == "audio" and specs["audio"].sample_rate == SR
    # The video keeps the song's own rate (every rate here is one AAC takes), never above 48 kHz.
    assert node.program_rate == specs["audio"].program_rate == min(rate, 48000)
    assert node.program.dtype == np.float32 and node.mono.dtype == np.float32
    assert node.program.shape[1] == min(channels, 2)
    assert abs(len(node.mono) / SR - SECONDS) <= tolerance
    assert abs(len(node.program) / node.program_rate - SECONDS) <= tolerance
    assert np.max(np.abs(node.program)) <= 1.0  # no clipping from any downmix
    assert np.max(np.abs(node.mono)) == pytest.approx(1.0)
    # The pitch survives resampling from any rate: a wrong rate would move the peak.
    assert dominant_hz(node.mono, SR) == pytest.approx(TONE, abs=3)


def test_decode_audio_returns_program_at_the_asked_rate(tmp_path):
    path = encode(tmp_path / "tone.flac", "flac", 48000, 2)
    program = decode_audio(str(path), 16000)
    assert program.shape == (round(SECONDS * 16000), 2) and program.dtype == np.float32
    assert program.flags.c_contiguous
    assert dominant_hz(program[:, 0], 16000) == pytest.approx(TONE, abs=3)


def test_surround_downmix_does_not_clip_and_is_lowered_only_as_far_as_its_peak_needs(tmp_path):
    # The same 0.5 sine on all six channels: BS.775 sums 0.5 (1 + 0.707 + 0.707) = 1.21 onto each side.
    program = decode_audio(str(encode(tmp_path / "six.wav", "pcm_s16le", 48000, 6)), SR)
    assert program.shape[1] == 2
    assert np.max(np.abs(program)) <= 1.0
    assert np.max(np.abs(program)) == pytest.approx(1.0, abs=1e-3)   # not the 1/2.414 of a fixed rescaling


def test_surround_downmix_follows_bs775(tmp_path):
    # 5.1 is FL FR FC LFE BL BR: fronts at unity, centre and surrounds at -3 dB, LFE left out.
    fronts = decode_audio(str(encode(tmp_path / "front.wav", "pcm_s16le", SR, 6, gains=[1, 1, 0, 0, 0, 0])))
    stereo = decode_audio(str(encode(tmp_path / "stereo.wav", "pcm_s16le", SR, 2)))
    np.testing.assert_array_equal(fronts, stereo)              # front-only 5.1 sounds as loud as stereo
    centre = decode_audio(str(encode(tmp_path / "centre.wav", "pcm_s16le", SR, 6, gains=[0, 0, 1, 0, 0, 0])))
    left_back = decode_audio(str(encode(tmp_path / "back.wav", "pcm_s16le", SR, 6, gains=[0, 0, 0, 0, 1, 0])))
    lfe = decode_audio(str(encode(tmp_path / "lfe.wav", "pcm_s16le", SR, 6, gains=[0, 0, 0, 1, 0, 0])))
    # 16-bit input: within one step of 2^-15 of the exact gains.
    np.testing.assert_allclose(np.max(np.abs(centre), axis=0), [AMPLITUDE / np.sqrt(2)] * 2, atol=2**-15)
    np.testing.assert_allclose(np.max(np.abs(left_back), axis=0), [AMPLITUDE / np.sqrt(2), 0], atol=2**-15)
    assert not np.any(lfe)


@pytest.mark.parametrize("source, expected", [(8000, 8000), (22050, 22050), (37800, 44100), (44100, 44100),
                                              (48000, 48000), (88200, 48000), (96000, 48000), (192000, 48000)])
def test_the_video_keeps_the_songs_rate_where_aac_takes_it(tmp_path, source, expected):
    node = make_node(encode(tmp_path / "tone.wav", "pcm_s16le", source, 2, seconds=0.2))
    node.configure({})
    assert node.program_rate == expected
    assert dominant_hz(node.program[:, 0], expected) == pytest.approx(TONE, abs=6)


def test_normalize_changes_only_the_analysis_signal(tmp_path):
    path = encode(tmp_path / "tone.wav", "pcm_s16le", SR, 2)
    raw, normal = make_node(path, normalize=False), make_node(path, normalize=True)
    raw.configure({})
    normal.configure({})
    assert np.max(np.abs(raw.mono)) == pytest.approx(AMPLITUDE, abs=1e-3)
    assert np.max(np.abs(normal.mono)) == pytest.approx(1.0)
    np.testing.assert_array_equal(raw.program, normal.program)
    assert np.max(np.abs(normal.program)) == pytest.approx(AMPLITUDE, abs=1e-3)


def test_pcm_at_the_same_rate_is_bit_exact(tmp_path):
    samples = np.round(np.linspace(-0.9, 0.9, 1000) * 32767) / 32767
    program = decode_audio(str(write_wav(tmp_path / "ramp.wav", samples)), SR)
    np.testing.assert_allclose(program[:, 0], samples * 32767 / 32768, atol=1e-7)


def test_silent_track_stays_silent(tmp_path):
    node = make_node(write_wav(tmp_path / "silence.wav", np.zeros(SR)))
    node.configure({})
    assert not np.any(node.mono) and np.all(np.isfinite(node.mono))


def test_param_change_reconfigures(tmp_path):
    path = encode(tmp_path / "tone.wav", "pcm_s16le", SR, 1)
    node = make_node(path)
    node.configure({})
    node.set_param("sample_rate", 22050)
    assert len(node.mono) == round(SECONDS * 22050)
    node.set_param("normalize", False)
    assert np.max(np.abs(node.mono)) == pytest.approx(AMPLITUDE, abs=1e-3)


# -- time -----------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [Fraction(60), Fraction(30), Fraction(30000, 1001), Fraction(24)])
def test_frame_count_covers_the_track(tmp_path, fps):
    n = 44101  # one sample past a second, so the count must round up
    node = make_node(write_wav(tmp_path / "n.wav", np.zeros(n)), fps=fps)
    node.configure({})
    assert node.frame_count() == -(-n * fps.numerator // (SR * fps.denominator))  # ceil(n*fps/sr)


@pytest.mark.parametrize("fps", [Fraction(60), Fraction(30000, 1001)])
def test_now_is_the_frame_time_in_samples(tmp_path, fps):
    node = make_node(write_wav(tmp_path / "one.wav", np.zeros(SR)), fps=fps)
    node.configure({})
    for k in (0, 1, 2, 59, 60, 1001, 123456):
        window = node.process(tick(k, fps))["audio"]
        assert window.start + window.now == round(Fraction(k) * SR / fps)   # a stream position
        assert window.sample_rate == SR and window.final


def test_a_long_song_streams_in_flat_memory_and_every_window_is_the_whole_decodes(tmp_path):
    # 60 s of a sweep: the source holds a few seconds around each frame, never the song, and every
    # window it serves holds exactly the samples the whole-file decode has there (or zeros outside it).
    seconds = 60.0
    t = np.arange(round(seconds * SR)) / SR
    path = write_wav(tmp_path / "sweep.wav", 0.5 * np.sin(2 * np.pi * (100 + 20 * t) * t))
    node = make_node(path, fps=Fraction(30))
    node.configure({})
    whole = node.mono
    assert node.frame_count() == round(seconds * 30)
    held = []
    for k in range(0, round(seconds * 30), 7):
        window = node.process(tick(k, Fraction(30)))["audio"]
        held.append(len(window.samples))
        for offset in (-node.reach, -2048, 0, node.reach - 4096):
            start = window.now + offset
            expected = np.zeros(4096, np.float32)
            lo = window.start + start                                  # the stream position asked for
            a, b = max(lo, 0), min(lo + 4096, len(whole))
            if b > a:
                expected[a - lo:b - lo] = whole[a:b]
            np.testing.assert_array_equal(window.window(start, 4096), expected)
    # A few seconds, however long the song: reach either side of now, and as much again before the
    # buffer moves its kept part down (it does so only now and then, so a tick costs O(1)).
    assert max(held) <= 8 * node.reach < len(whole) / 3, max(held)


def test_offset_delays_the_pictures(tmp_path):
    node = make_node(write_wav(tmp_path / "one.wav", np.zeros(SR)), offset_ms=100)
    node.configure({})
    for k in (0, 6, 60):
        assert node.process(tick(k, Fraction(60)))["audio"].now == k * 735 - 4410
    early = make_node(write_wav(tmp_path / "two.wav", np.zeros(SR)), offset_ms=-12.5)
    early.configure({})
    assert early.process(tick(6, Fraction(60)))["audio"].now == 6 * 735 + 551  # 551.25 rounds to 551


def test_registered_and_declared():
    from cppnviz import registry
    assert registry.lookup("audio_file") is AudioFile
    assert AudioFile.stage == "analysis" and AudioFile.inputs == ()
    assert [o.kind for o in AudioFile.outputs] == ["audio"]
    assert AudioFile.param("path").required
    assert AudioFile.param("sample_rate").unit == "Hz"
    assert all(p.doc for p in AudioFile.params)


# -- errors ---------------------------------------------------------------------------

def _video_without_audio(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str | tuple[str, ...]]:
    """Make one broken input; return it and the words its error must contain (one of them, for a tuple)."""
    path = tmp_path / {"missing": "nope.mp3", "directory": "folder.wav", "video": "silent.mp4",
                       "text": "notes.txt", "image": "cover.png", "image_named_mp3": "cover.mp3"}.get(case, f"{case}.wav")
    if case == "missing":
        return path, "not found"
    if case == "directory":
        path.mkdir()
        return path, "directory"
    if case == "empty":
        path.write_bytes(b"")
        return path, "empty"
    if case == "random":
        path.write_bytes(np.random.default_rng(7).bytes(50_000))
        return path, "cannot decode"
    if case == "text":
        path.write_text("these are liner notes, not a song\n" * 50)
        # FFmpeg may read text as a "tty" video or refuse it, depending on the content.
        return path, ("no audio stream", "cannot decode")
    if case in ("image", "image_named_mp3"):
        path.write_bytes(png_bytes())
        return path, "no audio stream"
    if case == "video":
        _video_without_audio(path)
        return path, "no audio stream"
    if case == "truncated_header":
        path.write_bytes(encode(tmp_path / "good.wav", "pcm_s16le", SR, 1).read_bytes()[:30])
        return path, "cannot decode"
    if case == "header_only":  # a well-formed WAV whose data chunk is empty
        write_wav(path, np.zeros(0))
        return path, "zero samples"
    raise ValueError(case)


ERRORS = ["missing", "directory", "empty", "random", "text", "image", "image_named_mp3", "video",
          "truncated_header", "header_only"]


@pytest.mark.parametrize("case", ERRORS)
def test_bad_files_raise_one_clear_audio_error(tmp_path, case):
    path, words = _bad_file(tmp_path, case)
    node = make_node(path)
    with pytest.raises(AudioError) as info:  # only AudioError: any other type fails the test
        node.configure({})
    message = str(info.value)
    assert message.startswith(f"audio file '{path}': ")
    assert any(w in message for w in ((words,) if isinstance(words, str) else words))
    assert "\n" not in message
    # No FFmpeg exception is chained behind it (`raise ... from None` or raised directly).
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_errors_reach_the_graph_loader_as_problems(tmp_path):
    from cppnviz.errors import GraphError
    from cppnviz.graph import build_graph
    (tmp_path / "empty.mp3").write_bytes(b"")
    data = {"fps": 30, "nodes": {"song": {"type": "audio_file", "params": {"path": "empty.mp3"}}}}
    with pytest.raises(GraphError) as info:
        build_graph(data, base_dir=tmp_path)
    assert info.value.problems() == [f"node 'song': audio file '{tmp_path / 'empty.mp3'}': file is empty (0 bytes)"]


# -- the demo track ---------------------------------------------------------------------

def test_demo_track_is_in_the_repository_and_decodes():
    assert DEMO.is_file() and DEMO.stat().st_size < 3_000_000
    node = make_node(DEMO, fps=Fraction(30))
    node.configure({})
    assert len(node.mono) == 16 * SR
    assert node.frame_count() == 16 * 30
    assert 0.7 < np.max(np.abs(node.program)) <= 0.81   # mixed with headroom


def test_make_demo_is_deterministic_and_matches_the_committed_file(tmp_path):
    script = ROOT / "examples" / "make_demo.py"
    for name in ("a.wav", "b.wav"):
        subprocess.run([sys.executable, str(script), str(tmp_path / name)], check=True, capture_output=True)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    # Other numpy builds may round a transcendental differently: allow one 16-bit step.
    np.testing.assert_allclose(decode_audio(str(tmp_path / "a.wav"), SR), decode_audio(str(DEMO), SR), atol=1e-4)


def test_demo_moves_every_band():
    """The seed's 8 octave bands (FFT bins [0:4] ... [508:1024] of 2048) must all rise and fall."""
    demo = runpy.run_path(str(ROOT / "examples" / "make_demo.py"))
    mono = demo["render"]().mean(axis=1)
    edges = [0, 4, 12, 28, 60, 124, 252, 508, 1024]
    hop, size = SR // 30, 2048
    starts = range(0, len(mono) - size, hop)
    amps = np.array([np.abs(np.fft.rfft(mono[s:s + size]))[:1024] for s in starts])
    bands = np.stack([amps[:, a:b].sum(axis=1) for a, b in zip(edges, edges[1:])], axis=1)
    low, high = np.percentile(bands, [10, 90], axis=0)
    assert np.all(high > 3 * low), (low, high)


def test_a_run_decodes_the_song_once_front_to_back(tmp_path, monkeypatch):
    import cppnviz.nodes.audio as audio_module
    node = make_node(encode(tmp_path / "tone.flac", "flac", 48000, 2, seconds=6.0))
    node.configure({})
    node.frame_count()
    opened = []

    class Counting(audio_module.Decoder):
        def __init__(self, *args, **kwargs):
            opened.append(args)
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(audio_module, "Decoder", Counting)
    for k in range(360):                      # the first seconds too, where windows reach before the start
        node.process(tick(k, Fraction(60)))
    assert len(opened) == 1
    node.process(tick(0, Fraction(60)))       # going back starts the decode again
    assert len(opened) == 2
