"""The `to-image`, `to-video` and `to-audio` commands: sound as pictures and back (cli.py adds them with one line)."""

from __future__ import annotations

import argparse
import sys
import wave
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import OutputError
from .outputs import check_file_output, check_not_an_input, names_a_folder
from .soundpic import REPRESENTATIONS, SCALES, Layout, PictureError

VIDEO_SUFFIXES = (".mkv", ".mka", ".webm", ".mp4", ".mov", ".avi", ".nut")


def add_soundpic_commands(subparsers) -> None:
    """Add to-image, to-video and to-audio to the CLI's subcommands."""
    text = "turn audio into a spectrogram picture (PNG, 8 or 16 bits) that to-audio turns back into sound"
    p = subparsers.add_parser("to-image", help=text, description=text)
    _source_flags(p, "song.png")
    p.add_argument("--stereo", choices=("side", "files"), default="side",
                   help="a stereo song as one picture with the channels side by side (default) or two files, "
                        "OUT-L.png and OUT-R.png")
    p.set_defaults(func=cmd_to_image)

    text = "turn audio into a scrolling spectrogram video (FFV1 in Matroska: lossless) that to-audio turns back"
    p = subparsers.add_parser("to-video", help=text, description=text)
    _source_flags(p, "song.mkv")
    p.add_argument("--fps", type=_fraction, default=Fraction(30), help="video frame rate (default 30)")
    p.add_argument("--width", type=int, default=256, metavar="PX",
                   help="columns shown per channel, one per hop; stereo shows both side by side (default 256)")
    p.set_defaults(func=cmd_to_video)

    text = "turn a spectrogram picture or video (from to-image or to-video, processed or not) back into sound"
    p = subparsers.add_parser("to-audio", help=text, description=text)
    p.add_argument("pictures", nargs="+", metavar="PICTURE",
                   help="picture or video; two pictures (OUT-L.png OUT-R.png from --stereo files) make stereo")
    p.add_argument("--out", required=True, metavar="FILE.wav", help="WAV file to write (24-bit PCM)")
    p.add_argument("--phase", choices=("keep", "refine", "rebuild"), default="keep",
                   help="keep: the phase the picture stores (default); refine: that phase, then --iterations of "
                        "fast Griffin-Lim (for processed pictures); rebuild: from the magnitude alone (always so "
                        "for pictures made with --phase none)")
    p.add_argument("--method", choices=("pghi+fgla", "pghi", "fgla"), default="pghi+fgla",
                   help="phase rebuilding: phase-gradient heap integration, refined by --iterations of fast "
                        "Griffin-Lim (default), either alone")
    p.add_argument("--iterations", type=int, default=32, metavar="N", help="fast Griffin-Lim iterations (default 32)")
    p.add_argument("--time", choices=("stretch", "fit"), default="stretch",
                   help="a picture wider or narrower than its layout: stretch: one column per hop, so it plays "
                        "longer or shorter (default); fit: resampled back to the layout's length")
    p.add_argument("--like", metavar="ORIGINAL",
                   help="take the layout from this file (what to-image or to-video made) when the picture's "
                        "metadata was dropped by an image tool")
    g = p.add_argument_group("layout flags, for a picture without metadata and no --like")
    g.add_argument("--sr", type=int, help="sample rate in Hz (needed: it marks the layout as given)")
    g.add_argument("--n-fft", type=int, default=2048)
    g.add_argument("--hop-length", type=int, default=512)
    g.add_argument("--scale", choices=SCALES, default="log")
    g.add_argument("--bins-per-octave", type=int, default=48)
    g.add_argument("--representation", choices=REPRESENTATIONS, default="phase", help="what the green channel holds")
    g.add_argument("--db-range", type=float, help="dB from black to white (default 120; to-image made 8-bit pictures with 80)")
    g.add_argument("--db-top", type=float, default=6.0, help="dB of white, above a full-scale sine (default 6)")
    g.add_argument("--channels", type=int, choices=(1, 2), default=1, help="channels side by side in one picture")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_to_audio)


def _source_flags(p, example: str) -> None:
    p.add_argument("audio", help="audio file (wav, flac, mp3, ogg, m4a, ...)")
    p.add_argument("--out", required=True, metavar="FILE", help=f"file to write, e.g. {example}")
    p.add_argument("--phase", choices=REPRESENTATIONS, default="phase",
                   help="green channel: phase (exact untouched round trips), deviation (phase advance minus the "
                        "bin's expected advance: survives blurs and resizes), none (magnitude only)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=16, help="bits per channel (default 16)")
    p.add_argument("--scale", choices=SCALES, default="log",
                   help="log: low octaves stretched to --bins-per-octave rows, exact inverse (default); linear")
    p.add_argument("--bins-per-octave", type=int, default=48, metavar="N", help="rows per octave at least (log scale)")
    p.add_argument("--n-fft", type=int, default=2048, metavar="N", help="window length in samples (default 2048)")
    p.add_argument("--hop-length", type=int, default=512, metavar="N", help="samples per column (default 512)")
    p.add_argument("--db-range", type=float, metavar="DB", help="dB from black to white (default 120, 8-bit: 80)")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _fraction(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a frame rate such as 30 or 30000/1001, found {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive frame rate, found {text}")
    return value


def warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _output(text: str, inputs: list[str], example: str) -> Path:
    from .cli import absolute

    path = Path(absolute(text))
    if names_a_folder(text):
        raise OutputError(f"cannot write '{text}': it names a folder; give a file name such as {example}")
    check_file_output(path, what=f"a file name such as {example}")
    check_not_an_input([str(path)], [absolute(i) for i in inputs])
    return path


# -- to-image / to-video ------------------------------------------------------------------------

def analyse(args) -> tuple[list[np.ndarray], Layout]:
    """Decode the song and make one picture per channel [shape=(rows, frames, 3)], and their layout."""
    from .nodes.decode import decode_program

    from .phase import encode
    from .soundpic import magnitude_to_unit, make_picture, quantize, stft

    db_range = args.db_range if args.db_range is not None else (80.0 if args.bits == 8 else 120.0)
    Layout(sr=1, n_fft=args.n_fft, hop_length=args.hop_length, scale=args.scale, bins_per_octave=args.bins_per_octave,
           bits=args.bits, db_range=db_range).checked()      # the flags, before the song is decoded
    program, sr = decode_program(args.audio)
    layout = Layout(sr=sr, n_fft=args.n_fft, hop_length=args.hop_length, scale=args.scale,
                    bins_per_octave=args.bins_per_octave, bits=args.bits, db_range=db_range, phase=args.phase,
                    samples=len(program), channels=program.shape[1]).checked()
    pictures = []
    for channel in program.T:
        S = stft(channel, n_fft=layout.n_fft, hop_length=layout.hop_length)
        unit = magnitude_to_unit(np.abs(S), layout)
        plane = encode(S, layout.phase, n_fft=layout.n_fft, hop_length=layout.hop_length, levels=layout.levels,
                       silent=quantize(unit, layout) == 0)
        pictures.append(make_picture(unit, plane, layout))
    return pictures, layout


def cmd_to_image(args) -> int:
    from .soundpic import write_png

    out = _output(args.out, [args.audio], "song.png")
    pictures, layout = analyse(args)
    if len(pictures) == 2 and args.stereo == "files":
        paths = [out.with_name(f"{out.stem}-{side}{out.suffix}") for side in "LR"]
        for path in paths:
            _output(str(path), [args.audio], "song.png")
        for path, picture in zip(paths, pictures):
            write_png(path, picture, replace(layout, channels=1))
    else:
        paths = [out]
        write_png(out, np.concatenate(pictures, axis=1), layout)
    rows, columns = pictures[0].shape[:2]
    for path in paths:
        print(f"wrote {path}: {columns * (len(pictures) if len(paths) == 1 else 1)}x{rows} px, {layout.bits}-bit, "
              f"{layout.scale} scale, phase plane {layout.phase}", file=sys.stderr)
    return 0


def cmd_to_video(args) -> int:
    from .soundpic import write_video

    out = _output(args.out, [args.audio], "song.mkv")
    if out.suffix.lower() not in (".mkv", ".mka"):
        raise OutputError(f"cannot write '{args.out}': to-video writes Matroska (FFV1, lossless); "
                          f"give a name ending in .mkv")
    if args.width < 2:
        raise PictureError(f"--width must be at least 2 columns, found {args.width}")
    pictures, layout = analyse(args)
    count = write_video(out, pictures, layout, args.fps, args.width)
    print(f"wrote {out}: {count} frames at {args.fps} fps, {args.width * len(pictures)}x{pictures[0].shape[0]} px, "
          f"FFV1 {layout.bits}-bit, phase plane {layout.phase}", file=sys.stderr)
    return 0


# -- to-audio ---------------------------------------------------------------------------------------

def given_layout(args) -> Layout | None:
    """The layout from --like, or from the explicit flags (when --sr is given), else None."""
    from .soundpic import picture_layout, video_layout

    if args.like:
        if args.like.lower().endswith(VIDEO_SUFFIXES):
            layout = video_layout(args.like)
        else:
            layout = picture_layout(args.like)
        if layout is None:
            raise PictureError(f"--like '{args.like}' carries no layout either (was it made by to-image?)")
        return layout
    if args.sr is None:
        return None
    return Layout(sr=args.sr, n_fft=args.n_fft, hop_length=args.hop_length, scale=args.scale,
                  bins_per_octave=args.bins_per_octave, db_range=args.db_range if args.db_range is not None else 120.0,
                  db_top=args.db_top, phase=args.representation, channels=args.channels).checked()


def load(path: str, given: Layout | None) -> tuple[np.ndarray, Layout]:
    """Pixels in [0, 1] and the layout to read them with (the file's own unless one was given)."""
    from .soundpic import read_picture, read_video

    if path.lower().endswith(VIDEO_SUFFIXES):
        return read_video(path, given, warn)
    pixels, layout = read_picture(path)
    layout = given or layout
    if layout is None:
        raise PictureError(f"'{path}' carries no cppnviz layout (most image tools drop PNG text chunks when "
                           f"they save): give --like ORIGINAL, the file to-image made, or the layout flags (--sr ...)")
    return pixels, layout


def channel_planes(pixels: np.ndarray, layout: Layout, path: str,
                   fit_time: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(magnitude, phase plane) per channel, after fitting a resized picture to the layout with one warning.

    A changed height is resampled back to the layout's rows. A changed width is kept (one column per hop:
    a stretched picture plays longer), or with fit_time resampled back to the layout's columns.
    """
    from .soundpic import read_planes, resample_axis, row_positions

    rows = len(row_positions(layout)[0])
    columns = pixels.shape[1] // layout.channels
    notes = []
    if pixels.shape[0] != rows:
        notes.append(f"frequency axis resampled from {pixels.shape[0]} to {rows} rows")
        pixels = resample_axis(pixels, rows, 0)
    if pixels.shape[1] % layout.channels:
        raise PictureError(f"'{path}' is {pixels.shape[1]} columns wide: not {layout.channels} equal channels")
    expected = layout.frames() if layout.samples else columns
    if columns != expected and fit_time:
        notes.append(f"time axis resampled from {columns} to {expected} columns per channel")
        pixels = np.concatenate([resample_axis(pixels[:, c * columns:(c + 1) * columns], expected, 1)
                                 for c in range(layout.channels)], axis=1)
        columns = expected
    elif columns != expected:
        seconds = (columns - 1) * layout.hop_length / layout.sr
        notes.append(f"time kept at one column per hop: {columns} columns per channel where the layout has "
                     f"{expected}, so the sound lasts {seconds:.2f} s instead of {layout.samples / layout.sr:.2f} s")
    if notes:
        warn(f"'{path}' is {pixels.shape[1]}x{pixels.shape[0]} px: " + "; ".join(notes))
    return [read_planes(pixels[:, c * columns:(c + 1) * columns], layout) for c in range(layout.channels)]


def cmd_to_audio(args) -> int:
    from .phase import decode, fgla, rebuild
    from .soundpic import istft

    out = _output(args.out, args.pictures, "back.wav")
    if len(args.pictures) > 2:
        raise PictureError(f"expected one picture, or two (left and right), found {len(args.pictures)}")
    if args.iterations < 0:
        raise PictureError(f"--iterations must be 0 or more, found {args.iterations}")
    given = given_layout(args)
    planes, layout = [], None
    for path in args.pictures:
        pixels, layout = load(path, given)
        planes += channel_planes(pixels, layout, path, fit_time=args.time == "fit")
    if len(planes) > 2:
        raise PictureError(f"{len(planes)} channels in {' and '.join(args.pictures)}: expected 1 or 2")
    if len({magnitude.shape for magnitude, _ in planes}) > 1:
        sizes = " and ".join(f"{m.shape[1]}" for m, _ in planes)
        raise PictureError(f"the channels are {sizes} columns long: left and right must have one length")
    rebuilding = args.phase == "rebuild" or layout.phase == "none"
    channels = []
    for magnitude, plane in planes:
        length = (magnitude.shape[1] - 1) * layout.hop_length
        length = layout.samples if layout.samples and layout.frames() == magnitude.shape[1] else length
        if rebuilding:
            phase = rebuild(magnitude, hop_length=layout.hop_length, length=length, method=args.method,
                            n_iter=args.iterations)
        else:
            phase = decode(plane, layout.phase, n_fft=layout.n_fft, hop_length=layout.hop_length)
            if args.phase == "refine":
                phase = fgla(magnitude, phase, hop_length=layout.hop_length, length=length, n_iter=args.iterations)
        channels.append(istft(magnitude * np.exp(1j * phase), hop_length=layout.hop_length, length=length))
    audio = np.stack(channels, axis=1)
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    if clipped:
        warn(f"{clipped} samples beyond full scale were clipped (peak {np.max(np.abs(audio)):.2f})")
    write_wav(out, audio, layout.sr)
    how = f"phase rebuilt ({args.method})" if rebuilding else f"phase from the {layout.phase} plane" + \
        (f", refined by {args.iterations} iterations" if args.phase == "refine" else "")
    print(f"wrote {out}: {audio.shape[0] / layout.sr:.2f} s, {audio.shape[1]} channel"
          f"{'s' if audio.shape[1] > 1 else ''} at {layout.sr} Hz, {how}", file=sys.stderr)
    return 0


def write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    """24-bit PCM WAV through the wave module, written under a partial name and renamed."""
    from .soundpic import write_atomic

    ints = np.round(np.clip(audio, -1.0, 1.0) * 8388607).astype("<i4")
    data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()   # little-endian: the low three bytes

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(audio.shape[1])
            w.setsampwidth(3)
            w.setframerate(sr)
            w.writeframes(data)

    write_atomic(path, write)
