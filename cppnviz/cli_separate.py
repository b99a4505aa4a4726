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
    from .nodes.decode import Decoder

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
    n_fft, hop = values["n_fft"], values["hop_length"]
    settings = dict(n_fft=n_fft, hop_length=hop, kernel_frames=_hpss.kernel_frames(values["kernel_s"], rate, hop),
                    kernel_bins=_hpss.kernel_bins(values["kernel_hz"], rate, n_fft), power=values["power"],
                    margin=values["margin"])
    made = not folder.exists()
    if made:
        check_folder(folder)
        folder.mkdir()
    started = time.perf_counter()
    try:
        channels, samples = separate_file(song, rate, settings, outputs)
    except BaseException:
        if made:
            folder.rmdir()   # nothing written: not even the folder
        raise
    seconds = time.perf_counter() - started
    print(f"wrote {outputs[0]} and {outputs[1]}: {channels} channel{'s' * (channels > 1)} at {rate} Hz, "
          f"{samples / rate:.2f} s, decoded, separated and written in {seconds:.2f} s", file=sys.stderr)
    return 0


def separate_file(song: str, rate: int, settings: dict, outputs: list[Path]) -> tuple[int, int]:
    """Decode, separate and write block by block (memory stays flat however long the song); (channels, samples).

    Both files are written under partial names and renamed once both are complete.
    """
    import numpy as np

    from .nodes._hpss import BLOCK, Separator
    from .nodes.decode import Decoder, audio_error

    wavs: list[_Wav] = []
    separators: list = []
    samples = 0

    def write(parts) -> None:
        nonlocal samples
        for wav, part in zip(wavs, zip(*parts)):      # (harmonic per channel), (percussive per channel)
            wav.write(np.stack(part))
        samples += len(parts[0][0])

    try:
        for path in outputs:
            remove_stale_partials(path)
        with Decoder(song, program_rate=rate) as decoder:
            pending, held = [], 0
            for program, _ in decoder.blocks():
                if not program.size:
                    continue
                if not separators:
                    separators = [Separator(**settings) for _ in range(program.shape[0])]
                    wavs = [_Wav(path, rate, program.shape[0]) for path in outputs]
                pending.append(program)
                held += program.shape[1]
                if held >= BLOCK:
                    block = np.concatenate(pending, axis=1)
                    write([s.feed(channel) for s, channel in zip(separators, block)])
                    pending, held = [], 0
            if not separators:
                raise audio_error(song, "decodes to zero samples")
            if pending:
                block = np.concatenate(pending, axis=1)
                write([s.feed(channel) for s, channel in zip(separators, block)])
            write([s.flush() for s in separators])
        for wav in wavs:
            wav.close()
        for wav in wavs:
            os.replace(wav.partial, wav.path)
    except OSError as exc:
        raise OutputError(f"cannot write '{exc.filename or outputs[0]}': {exc.strerror or exc}") from None
    finally:
        for wav in wavs:
            wav.discard()
    return len(separators), samples


class _Wav:
    """A 32-bit float WAV written block by block under its partial name."""

    def __init__(self, path: Path, rate: int, channels: int):
        import av

        self.path, self.partial, self.rate = path, partial_path(path), rate
        self.layout = "mono" if channels == 1 else "stereo"
        self.container = av.open(str(self.partial), "w", format="wav")
        self.stream = self.container.add_stream("pcm_f32le", rate=rate, layout=self.layout)
        self.written = 0
        self.open = True

    def write(self, block) -> None:
        """Samples [shape=(channels, n)]."""
        import av
        import numpy as np

        for start in range(0, block.shape[1], 1 << 16):
            part = np.ascontiguousarray(block[:, start:start + (1 << 16)].T, np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="flt", layout=self.layout)
            frame.sample_rate, frame.pts = self.rate, self.written
            self.written += part.shape[1] // block.shape[0]
            self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        self.open = False

    def discard(self) -> None:
        """Close if still open and remove the partial file (a no-op once it was renamed)."""
        if self.open:
            try:
                self.container.close()
            except Exception:   # closing a file about to be deleted: its failure no longer matters
                pass
            self.open = False
        self.partial.unlink(missing_ok=True)
