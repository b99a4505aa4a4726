"""The `cppnviz separate` command: a song's harmonic and percussive parts as WAV files (cli.py adds it)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import OutputError, ParamError
from .outputs import check_folder, check_not_an_input, existing_kind, partial_path, remove_stale_partials

PARTS = ("harmonic", "percussive")


def add_separate_command(subparsers) -> None:
    """Add `separate` to the CLI's subcommands."""
    text = "split a song into harmonic.wav and percussive.wav (the parts an hpss node hears)"
    p = subparsers.add_parser("separate", help=text, description=text + ", at the song's own rate and channels "
                              "(wider than stereo is downmixed to stereo), as 32-bit float WAV.")
    p.add_argument("song", help="audio file (wav, flac, mp3, ogg, m4a, ...)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder to write into (made if missing)")
    for name, metavar in (("kernel_s", "S"), ("kernel_hz", "HZ"), ("power", "P"), ("margin", "M")):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=metavar, type=float,
                       help=f"the hpss node's {name} param")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_separate)


def cmd_separate(args) -> int:
    from .cli import absolute
    from .nodes import _hpss, hpss   # the node library, loaded when the command runs
    from .nodes.decode import Decoder, decode_program

    values = {}
    for param in hpss.HPSS.params:   # the node's own checks: one error line naming the value
        given = getattr(args, param.name, None)
        try:
            values[param.name] = param.default if given is None else param.check(given)[0]
        except ParamError as exc:
            raise ParamError(f"--{param.name.replace('_', '-')}: {exc}") from None
    song = absolute(args.song)
    folder = Path(absolute(args.out_dir))
    outputs = [folder / f"{part}.wav" for part in PARTS]
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write into '{args.out_dir}': it is {existing_kind(folder) or 'a regular file'}, "
                          f"not a folder")
    for path in outputs:
        if existing_kind(path) is not None:
            raise OutputError(f"cannot write '{path}': it is {existing_kind(path)}, not a regular file")
    check_not_an_input([str(p) for p in outputs], [song])
    with Decoder(song) as decoder:        # a missing or damaged song is one error line, before anything is made
        rate = decoder.stream.rate or decoder.stream.codec_context.sample_rate
    started = time.perf_counter()
    program, rate = decode_program(song, rate)
    channels = program.shape[1]
    n_fft, hop = values["n_fft"], values["hop_length"]
    harmonic, percussive = _hpss.hpss(
        program.T, n_fft=n_fft, hop_length=hop, kernel_frames=_hpss.kernel_frames(values["kernel_s"], rate, hop),
        kernel_bins=_hpss.kernel_bins(values["kernel_hz"], rate, n_fft), power=values["power"],
        margin=values["margin"])
    seconds = time.perf_counter() - started
    made = not folder.exists()
    if made:
        check_folder(folder)
        folder.mkdir()
    try:
        write_wavs(dict(zip(outputs, (harmonic, percussive))), rate)
    except BaseException:
        if made:
            folder.rmdir()   # nothing written: not even the folder
        raise
    print(f"wrote {outputs[0]} and {outputs[1]}: {channels} channel{'s' * (channels > 1)} at {rate} Hz, "
          f"{program.shape[0] / rate:.2f} s, decoded and separated in {seconds:.2f} s", file=sys.stderr)
    return 0


def write_wavs(parts: dict[Path, "object"], rate: int) -> None:
    """Each [shape=(channels, n)] float32 signal as a float WAV, under a partial name until all are written."""
    import av
    import numpy as np

    partials = {}
    try:
        for path, signal in parts.items():
            remove_stale_partials(path)
            partials[path] = tmp = partial_path(path)
            layout = "mono" if signal.shape[0] == 1 else "stereo"
            with av.open(str(tmp), "w", format="wav") as out:
                stream = out.add_stream("pcm_f32le", rate=rate, layout=layout)
                for start in range(0, signal.shape[1], 1 << 16):
                    block = np.ascontiguousarray(signal[:, start:start + (1 << 16)].T).reshape(1, -1)
                    frame = av.AudioFrame.from_ndarray(block, format="flt", layout=layout)
                    frame.sample_rate, frame.pts = rate, start
                    out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
        for path, tmp in partials.items():
            os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write '{exc.filename or next(iter(parts))}': {exc.strerror or exc}") from None
    finally:
        for tmp in partials.values():
            tmp.unlink(missing_ok=True)
