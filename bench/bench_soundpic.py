"""Sound as pictures: how faithful to-image -> to-audio is, untouched, magnitude-only and after image processing.

    python bench/bench_soundpic.py [--seconds 8]

Songs: the demo track (examples/demo.wav) and a fluidsynth groove (bench/grooves.py: drums, bass, pad) when
fluidsynth is installed, the first --seconds of each. Every round trip runs the real commands on real files.
Figures: SNR of to-audio(to-image(x)) per phase plane, bit depth and scale; magnitude only, spectral
convergence (SC = || |STFT(y)| - |STFT(x)| || / || |STFT(x)| ||) and SNR for Griffin-Lim (100 iterations),
fast Griffin-Lim (100), PGHI, the shipped PGHI + 32 fast Griffin-Lim iterations and librosa.griffinlim
(100 iterations, and as many as fit in the shipped method's time), all in this run; SC of processed
pictures (Gaussian blur sigma 1 px, 2x time stretch, 5 px shift) against the processed picture; video
against picture.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from cppnviz import phase as ph  # noqa: E402
from cppnviz import soundpic as sp  # noqa: E402
from cppnviz.cli import main  # noqa: E402
from cppnviz.cli_soundpic import channel_planes, write_wav  # noqa: E402
from cppnviz.nodes.decode import decode_program  # noqa: E402

N_FFT, HOP = 2048, 512


def run(*args) -> float:
    """One CLI command in this process, quietly; seconds it took."""
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in args])
    if code:
        raise SystemExit(f"{args}: exit {code}: {err.getvalue()}")
    return time.perf_counter() - start


def read(path: Path) -> np.ndarray:
    return decode_program(str(path))[0].astype(np.float64)


def songs(folder: Path, seconds: float) -> dict[str, Path]:
    out = {}
    demo = decode_program(str(ROOT / "examples" / "demo.wav"))[0].astype(np.float64)
    import grooves
    found = {"demo": demo}
    if grooves.missing_tools() is None:
        groove = next(g for g in grooves.GROOVES if g.name == "funk_100")
        wav, _ = grooves.render(groove, folder)
        found["funk_100 (fluidsynth)"] = read(wav)
    for name, samples in found.items():
        path = folder / f"{name.split()[0]}.wav"
        write_wav(path, samples[: round(seconds * 44100)], 44100)   # the originals, as 24-bit files
        out[name] = path
    return out


def round_trips(name: str, song: Path, folder: Path) -> None:
    x = read(song)
    print(f"\n### {name}: untouched round trip ({x.shape[0] / 44100:.1f} s, {x.shape[1]} channels, "
          f"n_fft {N_FFT}, hop {HOP})\n")
    print("| phase plane | bits | scale | SNR dB | PNG size | to-image s | to-audio s |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("phase", "deviation", "none"):
        for bits in (16, 8):
            for scale in ("log", "linear"):
                png, wav = folder / f"{kind}{bits}{scale}.png", folder / f"{kind}{bits}{scale}.wav"
                t_image = run("to-image", song, "--out", png, "--bits", bits, "--phase", kind, "--scale", scale)
                t_audio = run("to-audio", png, "--out", wav)
                y = read(wav)
                figure = f"{sp.snr_db(x, y):.1f}" if kind != "none" else \
                    f"SC {20 * np.log10(np.mean([sc(y[:, c], x[:, c]) for c in range(x.shape[1])])):.1f}"
                print(f"| {kind} | {bits} | {scale} | {figure} | {png.stat().st_size / 1e6:.1f} MB | "
                      f"{t_image:.2f} | {t_audio:.2f} |")
    png, mkv = folder / "v.png", folder / "v.mkv"
    run("to-image", song, "--out", png)
    run("to-video", song, "--out", mkv, "--fps", 30)
    run("to-audio", png, "--out", folder / "vp.wav")
    t_video = run("to-audio", mkv, "--out", folder / "vv.wav")
    picture, video = sp.snr_db(x, read(folder / "vp.wav")), sp.snr_db(x, read(folder / "vv.wav"))
    print(f"\nVideo (FFV1 16-bit, 30 fps, 256 columns shown, {mkv.stat().st_size / 1e6:.1f} MB): SNR {video:.2f} dB "
          f"against the picture's {picture:.2f} dB (difference {abs(video - picture):.3f} dB); to-audio from the "
          f"video {t_video:.2f} s")


def sc(y: np.ndarray, x: np.ndarray) -> float:
    return sp.spectral_convergence(y, np.abs(sp.stft(x, n_fft=N_FFT, hop_length=HOP)), hop_length=HOP)


def magnitude_only(name: str, song: Path) -> None:
    import librosa

    x = read(song).mean(axis=1)
    mag = np.abs(sp.stft(x, n_fft=N_FFT, hop_length=HOP))
    rows = []

    def ours(label, method, n_iter, momentum=None):
        start = time.perf_counter()
        if momentum is not None:
            p0 = np.random.default_rng(0).uniform(-np.pi, np.pi, mag.shape)
            phase = ph.fgla(mag, p0, hop_length=HOP, length=len(x), n_iter=n_iter, momentum=momentum)
        else:
            phase = ph.rebuild(mag, hop_length=HOP, length=len(x), method=method, n_iter=n_iter)
        y = sp.istft(mag * np.exp(1j * phase), hop_length=HOP, length=len(x))
        spent = time.perf_counter() - start
        rows.append((label, sc(y, x), sp.snr_db(x, y), spent))
        return spent

    librosa.griffinlim(mag[:, :8], n_iter=1, hop_length=HOP, n_fft=N_FFT)     # warm up its imports
    ours("Griffin-Lim, 100 iterations (ours, momentum 0)", "fgla", 100, momentum=0.0)
    ours("fast Griffin-Lim, 100 iterations (ours, momentum 0.99)", "fgla", 100, momentum=0.99)
    ours("PGHI alone", "pghi", 0)
    shipped = ours("**PGHI + 32 fast Griffin-Lim iterations (shipped)**", "pghi+fgla", 32)
    start = time.perf_counter()
    librosa.griffinlim(mag, n_iter=100, hop_length=HOP, n_fft=N_FFT, length=len(x), random_state=0)
    per_iteration = (time.perf_counter() - start) / 100
    for n_iter in (100, max(1, int(np.ceil(shipped / per_iteration)))):
        start = time.perf_counter()
        y = librosa.griffinlim(mag, n_iter=n_iter, hop_length=HOP, n_fft=N_FFT, length=len(x), random_state=0)
        spent = time.perf_counter() - start
        rows.append((f"librosa.griffinlim, {n_iter} iterations (momentum 0.99)", sc(y, x), sp.snr_db(x, y), spent))
    print(f"\n### {name}: magnitude only (mono mix, {len(x) / 44100:.1f} s)\n")
    print("| method | SC dB | SNR dB | seconds |")
    print("|---|---|---|---|")
    for label, conv, snr, spent in rows:
        print(f"| {label} | {20 * np.log10(conv):.1f} | {snr:.1f} | {spent:.2f} |")


def processed(name: str, song: Path, folder: Path) -> None:
    from scipy import ndimage

    cases = {"blur sigma 1 px": lambda p: ndimage.gaussian_filter(p, sigma=(1, 1, 0)),
             "2x time stretch (resize)": lambda p: sp.resample_axis(p, 2 * p.shape[1], 1),
             "5 px up (shift)": lambda p: np.concatenate([p[5:], np.zeros_like(p[:5])])}
    print(f"\n### {name}: processed pictures, SC of the sound against the processed picture (dB)\n")
    print("| case | scale | phase, keep | phase, refine | deviation, keep | deviation, refine |")
    print("|---|---|---|---|---|---|")
    for case, process in cases.items():
        for scale in ("log", "linear"):
            cells = []
            for kind in ("phase", "deviation"):
                png = folder / f"p-{song.stem}-{kind}-{scale}.png"
                if not png.exists():
                    run("to-image", song, "--out", png, "--phase", kind, "--scale", scale)
                pixels, layout = sp.read_picture(str(png))
                edited = folder / "edited.png"
                edited.unlink(missing_ok=True)
                sp.write_png(edited, sp.quantize(process(pixels), layout), layout)
                with contextlib.redirect_stderr(io.StringIO()):
                    planes = channel_planes(*sp.read_picture(str(edited)), str(edited))
                for mode in ("keep", "refine"):
                    wav = folder / f"edited-{mode}.wav"
                    wav.unlink(missing_ok=True)
                    run("to-audio", edited, "--out", wav, "--phase", mode)
                    y = read(wav)
                    assert np.all(np.isfinite(y))
                    conv = np.mean([sp.spectral_convergence(y[:, c], m, hop_length=HOP)
                                    for c, (m, _) in enumerate(planes)])
                    cells.append(f"{20 * np.log10(conv):.1f}")
            print(f"| {case} | {scale} | " + " | ".join(cells) + " |")


def main_bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    from machine import cpu_model, load
    import platform
    print(f"machine: {cpu_model()}, Python {platform.python_version()}, NumPy {np.__version__}, load {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, song in songs(folder, args.seconds).items():
            round_trips(name, song, folder)
            magnitude_only(name, song)
            processed(name, song, folder)
    print(f"\nload after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench(sys.argv[1:]))
