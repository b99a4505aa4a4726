"""to-image, to-video, to-audio: round trips on real files, processed pictures, stereo, and the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cppnviz import soundpic as sp
from cppnviz.cli import main
from cppnviz.cli_soundpic import channel_planes, write_wav
from cppnviz.nodes.decode import decode_program
from drums import SR, groove

LAYOUT = ["--n-fft", "1024", "--hop-length", "256"]


def run(*args: str) -> None:
    assert main([str(a) for a in args]) == 0, args


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the CLI in this process from a folder; (exit status, standard error)."""
    def call(*args, cwd: Path) -> tuple[int, str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err
    return call


def read(path: Path) -> np.ndarray:
    return decode_program(str(path))[0].astype(np.float64)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A mono song (chords and drums, 1 s) and a stereo one, as 24-bit WAV files, and their samples."""
    folder = tmp_path_factory.mktemp("soundpic")
    mono = groove(120, 1.0, start=0.2)[0].astype(np.float64)
    write_wav(folder / "mono.wav", mono[:, None], SR)
    write_wav(folder / "stereo.wav", np.stack([mono, 0.6 * np.roll(mono, 3000)], axis=1), SR)
    return folder, read(folder / "mono.wav"), read(folder / "stereo.wav")


@pytest.mark.parametrize("bits, kind, scale, floor_db", [
    (16, "phase", "log", 60), (16, "phase", "linear", 60), (16, "deviation", "log", 60),
    (8, "phase", "log", 25), (8, "deviation", "linear", 25)])
def test_untouched_round_trip(songs, tmp_path, bits, kind, scale, floor_db):
    folder, mono, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", "--bits", bits, "--phase", kind,
        "--scale", scale, *LAYOUT)
    with Image.open(tmp_path / "a.png") as image:     # a PNG another library reads, layout in its text chunk
        assert sp.KEY in image.text and image.size[0] == 1 + len(mono) // 256
    run("to-audio", tmp_path / "a.png", "--out", tmp_path / "b.wav")
    back = read(tmp_path / "b.wav")
    assert back.shape == mono.shape
    assert sp.snr_db(mono, back) >= floor_db       # the figures: >= 60 dB at 16 bits, >= 25 dB at 8


def test_sixteen_bits_reach_the_pixels(songs, tmp_path):
    folder, _, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", *LAYOUT)
    with av.open(str(tmp_path / "a.png")) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name.startswith("rgb48")
        values = np.unique(frame.to_ndarray())
    assert np.any(values % 257)    # not 8-bit values widened


def test_stereo_side_by_side_and_as_two_files(songs, tmp_path):
    folder, _, stereo = songs
    run("to-image", folder / "stereo.wav", "--out", tmp_path / "s.png", *LAYOUT)
    run("to-audio", tmp_path / "s.png", "--out", tmp_path / "s.wav")
    run("to-image", folder / "stereo.wav", "--out", tmp_path / "f.png", "--stereo", "files", *LAYOUT)
    assert not (tmp_path / "f.png").exists()
    run("to-audio", tmp_path / "f-L.png", tmp_path / "f-R.png", "--out", tmp_path / "f.wav")
    for name in ("s.wav", "f.wav"):
        back = read(tmp_path / name)
        assert back.shape == stereo.shape
        assert min(sp.snr_db(stereo[:, c], back[:, c]) for c in (0, 1)) >= 60


def test_video_round_trip_equals_the_picture_round_trip(songs, tmp_path):
    folder, mono, _ = songs
    for bits in (16,):
        run("to-image", folder / "mono.wav", "--out", tmp_path / f"{bits}.png", "--bits", bits, *LAYOUT)
        run("to-video", folder / "mono.wav", "--out", tmp_path / f"{bits}.mkv", "--bits", bits, "--fps", 30,
            "--width", 48, *LAYOUT)
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,nb_frames",
                                "-of", "csv=p=0", tmp_path / f"{bits}.mkv"], capture_output=True, text=True)
        assert probe.stdout.startswith("ffv1,48,")
        run("to-audio", tmp_path / f"{bits}.png", "--out", tmp_path / f"{bits}p.wav")
        run("to-audio", tmp_path / f"{bits}.mkv", "--out", tmp_path / f"{bits}v.wav")
        picture = sp.snr_db(mono, read(tmp_path / f"{bits}p.wav"))
        video = sp.snr_db(mono, read(tmp_path / f"{bits}v.wav"))
        assert abs(picture - video) <= 0.1
    # a copy without the container tag reads with --like the original
    subprocess.run(["ffmpeg", "-v", "error", "-i", tmp_path / "16.mkv", "-map_metadata", "-1", "-c", "copy",
                    tmp_path / "bare.mkv"], check=True)
    assert sp.video_layout(str(tmp_path / "bare.mkv")) is None
    run("to-audio", tmp_path / "bare.mkv", "--out", tmp_path / "bare.wav", "--like", tmp_path / "16.mkv")
    assert abs(sp.snr_db(mono, read(tmp_path / "bare.wav")) - video) <= 0.1


def blur(p):
    from scipy import ndimage
    return ndimage.gaussian_filter(p, sigma=(1, 1, 0))


def stretch(p):
    return sp.resample_axis(p, 2 * p.shape[1], 1)


def shift(p):
    out = np.zeros_like(p)
    out[:-5] = p[5:]            # every row 5 px up: higher frequencies
    return out


PROCESSES = {"blur": blur, "stretch": stretch, "shift": shift}


@pytest.fixture(scope="module")
def processed(songs, tmp_path_factory):
    """{(kind, case, phase mode): (spectral convergence against the processed picture, rms)}."""
    folder, mono, _ = songs
    out = tmp_path_factory.mktemp("processed")
    figures = {}
    for kind, cases in (("phase", ("blur",)), ("deviation", ("blur", "stretch", "shift"))):
        run("to-image", folder / "mono.wav", "--out", out / f"{kind}.png", "--phase", kind, "--scale", "linear",
            *LAYOUT)
        pixels, layout = sp.read_picture(str(out / f"{kind}.png"))
        for case, process in ((case, PROCESSES[case]) for case in cases):
            picture = out / f"{kind}-{case}.png"
            sp.write_png(picture, sp.quantize(process(pixels), layout), layout)
            magnitude, _ = channel_planes(*sp.read_picture(str(picture)), str(picture))[0]
            for mode in ("keep", "refine"):
                wav = out / f"{kind}-{case}-{mode}.wav"
                run("to-audio", picture, "--out", wav, "--phase", mode)
                y = read(wav)[:, 0]
                assert np.all(np.isfinite(y))
                figures[kind, case, mode] = (sp.spectral_convergence(y, magnitude, hop_length=256),
                                             np.sqrt(np.mean(y * y)))
    return figures, np.sqrt(np.mean(mono * mono))


@pytest.mark.parametrize("case", ["blur", "stretch", "shift"])
def test_processed_pictures_sound_like_the_picture(processed, case):
    figures, loudness = processed
    for (kind, where, mode), (sc, rms) in figures.items():
        if where == case:
            assert rms > 0.3 * loudness, (kind, mode)          # not silent
            assert sc < 1.0, (kind, mode)                      # closer to the picture than silence is (1.0)
    assert figures["deviation", case, "keep"][0] < 10 ** (-6 / 20)      # measured -6.8 to -17.7 dB
    assert figures["deviation", case, "refine"][0] < 10 ** (-12 / 20)   # measured -13.8 to -19.5 dB


def test_deviation_survives_a_blur_better_than_phase(processed):
    figures, _ = processed
    assert figures["deviation", "blur", "keep"][0] < figures["phase", "blur", "keep"][0]


def test_stretched_picture_lasts_twice_as_long_with_one_warning(songs, tmp_path, cli):
    folder, mono, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", "--phase", "deviation", *LAYOUT)
    pixels, layout = sp.read_picture(str(tmp_path / "a.png"))
    # an image tool's 2x time stretch, saved without the text chunk
    Image.fromarray(sp.quantize(stretch(pixels), sp.Layout(sr=1, bits=8))).save(tmp_path / "edited.png")
    code, err = cli("to-audio", "edited.png", "--out", "b.wav", cwd=tmp_path)
    assert code == 2 and not (tmp_path / "b.wav").exists()
    [line] = err.splitlines()
    assert line.startswith("error: 'edited.png' carries no cppnviz layout") and "--like" in line
    code, err = cli("to-audio", "edited.png", "--out", "b.wav", "--like", "a.png", cwd=tmp_path)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "time kept at one column per hop" in warnings[0]
    back = read(tmp_path / "b.wav")[:, 0]
    assert abs(len(back) - 2 * len(mono)) <= 2 * 256 and np.all(np.isfinite(back))
    # --time fit: resampled back to the original's length instead
    code, err = cli("to-audio", "edited.png", "--out", "fit.wav", "--like", "a.png", "--time", "fit", cwd=tmp_path)
    assert code == 0 and "time axis resampled" in err, err
    assert read(tmp_path / "fit.wav").shape == mono.shape


def test_resized_height_is_resampled_with_one_warning(songs, tmp_path, cli):
    folder, _, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", *LAYOUT)
    pixels, layout = sp.read_picture(str(tmp_path / "a.png"))
    sp.write_png(tmp_path / "tall.png", sp.quantize(sp.resample_axis(pixels, 2 * pixels.shape[0], 0), layout), layout)
    code, err = cli("to-audio", "tall.png", "--out", "b.wav", cwd=tmp_path)
    assert code == 0, err
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert f"resampled from {2 * pixels.shape[0]} to {pixels.shape[0]} rows" in warning


def test_explicit_flags_replace_lost_metadata(songs, tmp_path):
    folder, mono, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", "--bits", "8", "--scale", "linear", *LAYOUT)
    with Image.open(tmp_path / "a.png") as image:
        image.save(tmp_path / "plain.png")                 # Pillow drops the text chunk
    run("to-audio", tmp_path / "plain.png", "--out", tmp_path / "b.wav", "--sr", SR, "--scale", "linear",
        "--db-range", 80, *LAYOUT)
    back = read(tmp_path / "b.wav")
    # the length is whole hops (the original's last partial hop is not in the picture's width)
    assert len(back) == (len(mono) // 256) * 256
    assert sp.snr_db(mono[:len(back)], back) >= 25


def test_a_picture_only_ffmpeg_reads_comes_back_with_like(songs, tmp_path):
    folder, mono, _ = songs
    run("to-image", folder / "mono.wav", "--out", tmp_path / "a.png", *LAYOUT)
    pixels, layout = sp.read_picture(str(tmp_path / "a.png"))
    with av.open(str(tmp_path / "a.dpx"), "w", format="image2", options={"update": "1"}) as container:
        stream = container.add_stream("dpx", rate=1)       # 16-bit DPX: FFmpeg reads it, Pillow does not
        stream.width, stream.height, stream.pix_fmt = pixels.shape[1], pixels.shape[0], "rgb48le"
        frame = av.VideoFrame.from_ndarray(np.round(pixels * 65535).astype("<u2"), format="rgb48le")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    run("to-audio", tmp_path / "a.dpx", "--out", tmp_path / "b.wav", "--like", tmp_path / "a.png")
    assert sp.snr_db(mono, read(tmp_path / "b.wav")) >= 60


def test_a_damaged_layout_tag_is_one_error_line(tmp_path, cli):
    for name, tag in (("broken.mkv", "{broken"), ("list.mkv", "[1]"), ("typed.mkv", '{"sr": "x"}')):
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream("ffv1", rate=30)
            stream.width, stream.height = 16, 16
            container.metadata[sp.KEY] = tag
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
            container.mux(stream.encode(None))
        code, err = cli("to-audio", name, "--out", "b.wav", cwd=tmp_path)
        assert code == 2, err
        [line] = err.splitlines()
        assert line.startswith("error: ") and "metadata cannot be read" in line, line
    assert not (tmp_path / "b.wav").exists()


def test_refusals_are_one_line_and_write_nothing(songs, tmp_path, cli):
    folder, _, _ = songs
    (tmp_path / "text.png").write_text("not a picture")
    with av.open(str(tmp_path / "empty.mkv"), "w") as container:     # a video stream, no frames
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height = 16, 16
        container.metadata[sp.KEY] = sp.Layout(sr=SR).to_json()
        container.start_encoding()
    cases = [
        (("to-audio", "text.png", "--out", "b.wav"), "cannot read 'text.png'"),
        (("to-audio", "empty.mkv", "--out", "b.wav"), "no frames"),
        (("to-image", folder / "mono.wav", "--out", "missing/a.png"), "does not exist"),
        (("to-video", folder / "mono.wav", "--out", "v.mp4"), ".mkv"),
        (("to-image", folder / "mono.wav", "--out", "a.png", "--hop-length", "300"), "hop_length"),
        (("to-image", "nothing.wav", "--out", "a.png"), "nothing.wav"),
    ]
    for args, words in cases:
        code, err = cli(*args, cwd=tmp_path)
        assert code == 2, (args, err)
        [line] = err.splitlines()
        assert line.startswith("error: ") and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mkv", "text.png"]


def test_spectrogram_node_draws_the_picture_layout():
    from cppnviz.nodes.spectrogram_image import SpectrogramImage
    from drums import node, run as run_node

    song = groove(120, 1.0, start=0.2)[0]
    layout = sp.Layout(sr=SR, n_fft=256, hop_length=64, scale="linear", db_range=80.0)
    made = node(SpectrogramImage, fps=50, width=64, height=129, n_fft=256, hop_length=64, scale="linear")
    frames = run_node(made, song, fps=50)["frame"]
    # the same columns and rows as to-image's picture: at tick k the newest column is the one centred on now
    unit = sp.magnitude_to_unit(np.abs(sp.stft(song.astype(np.float64), n_fft=256, hop_length=64)), layout)[::-1]
    k = len(frames) - 1
    last = round(k * SR / 50) // 64
    assert np.allclose(frames[k][:, :, 0], unit[:, last - 63:last + 1], atol=1e-6)   # float32 pixels of float64 maths
    assert np.array_equal(frames[k][..., 0], frames[k][..., 2])
    # scrolling: one tick later, the picture moved left by the columns that tick added
    from cppnviz.ports import AudioWindow
    from cppnviz.timebase import Tick

    made.reset()
    before, after = (made.process(Tick(i, i / 50), audio=AudioWindow(song, round(i * SR / 50), SR))["frame"].copy()
                     for i in (k - 1, k))
    step = last - round((k - 1) * SR / 50) // 64
    assert step > 0 and np.array_equal(before[:, step:], after[:, :-step])


def test_spectrogram_node_live_lags_half_a_window():
    from cppnviz.nodes.spectrogram_image import SpectrogramImage
    from drums import node, run as run_node

    song = groove(120, 1.0, start=0.2)[0]
    params = dict(fps=50, width=32, height=64, n_fft=256, hop_length=64)
    offline = run_node(node(SpectrogramImage, **params), song, fps=50)["frame"]
    live = run_node(node(SpectrogramImage, live=True, **params), song, fps=50, live=True)["frame"]
    # live windows end at the newest sample: the newest column is n_fft/2 = 2 hops older than offline's
    assert np.allclose(live[-1][:, 2:], offline[-1][:, :-2], atol=1e-6)


def test_spectrogram_example_renders_beside_the_cppn(tmp_path):
    examples = Path(__file__).resolve().parent.parent / "examples"
    out = tmp_path / "spectrogram.mp4"
    result = subprocess.run(["cppnviz", "render", examples / "spectrogram.yaml", "--out", out, "--seconds", "0.5",
                             "--quiet"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 30 and frames[0].shape == (256, 512, 3)
    # the left half is the spectrogram: gray (the encoder's YUV moves gray by a level or two), drawn by the end
    left = frames[-1][:, :256].astype(int)
    assert np.abs(left[..., 0] - left[..., 2]).max() <= 8 and left.mean() > 10


def test_ctrl_c_during_to_video_leaves_no_file(songs, tmp_path):
    import signal
    import time

    from conftest import start_cli

    folder, _, _ = songs
    proc = start_cli("to-video", folder / "stereo.wav", "--out", "v.mkv", "--fps", 240, "--width", 1024,
                     cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".v.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(tmp_path.glob(".v.partial-*")), "the video was never being written"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert list(tmp_path.iterdir()) == []
