"""Beat tracking accuracy on labelled MIDI grooves: offline and live `beats`, and librosa's beat_track, in one run.

Each groove of bench/grooves.py is written as MIDI and rendered with fluidsynth; the ground truth is
the MIDI's beat times. Per file: F-measure with a +-70 ms window (MIREX; matching within the window
is one-to-one), the tempo error (median over the beats of the tempo there against the MIDI's), for
offline `beats` (whole file), live `beats` after a 5 s warm-up, and librosa.beat.beat_track (its
defaults, the file at 22050 Hz, whole file). Live latency: when each beat's frame is on screen (60 fps)
against the beat's true time, for beats after the warm-up matched within 70 ms.

    python bench/bench_beats.py [--out DIR]       # DIR keeps the rendered grooves (default: a temp folder)
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np

from grooves import GROOVES, SR, missing_tools, render
from machine import cpu_model, load  # bench/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from drums import node, run  # noqa: E402  (the tests' driver: every tick through the node, offline or live)

from cppnviz.nodes.beats import Beats, local_bpm  # noqa: E402

WINDOW_S = 0.070
WARM_UP_S = 5.0
FPS = 60


def f_measure(reference, estimated, window: float = WINDOW_S) -> float:
    """MIREX beat F-measure: estimates matched one-to-one to references within +-window.

    On a line, matching in time order is a maximum matching (mir_eval's bipartite matching gives the
    same count when the window is under half the shortest beat interval, as here)."""
    reference, estimated = np.sort(reference), np.sort(estimated)
    if len(reference) == 0 or len(estimated) == 0:
        return 0.0
    i = j = matched = 0
    while i < len(reference) and j < len(estimated):
        gap = estimated[j] - reference[i]
        if abs(gap) <= window:
            matched, i, j = matched + 1, i + 1, j + 1
        elif gap < 0:
            j += 1
        else:
            i += 1
    if matched == 0:
        return 0.0
    precision, recall = matched / len(estimated), matched / len(reference)
    return 2 * precision * recall / (precision + recall)


def tempo_error(times, reference) -> float:
    """Median relative error of the tempo at each estimated beat against the MIDI tempo at the nearest
    true beat (60 over its interval to the next), so a tempo change is judged section by section."""
    times, reference = np.asarray(times), np.asarray(reference)
    if len(times) < 2:
        return float("nan")
    truth = 60.0 / np.diff(reference)
    nearest = np.clip(np.searchsorted(reference, times), 0, len(truth) - 1)
    return float(np.median(local_bpm(times) / truth[nearest] - 1))


def read_mono(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV as float32 mono in [-1, 1] (fluidsynth writes 16-bit stereo)."""
    with wave.open(str(path)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, f.getnchannels())
    return (pcm.mean(axis=1) / 32768).astype(np.float32)


def latencies(fired: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each fired frame time after the warm-up matched to a true beat within the window: frame - beat."""
    out = []
    for t in fired[fired >= WARM_UP_S]:
        gap = t - reference[np.argmin(np.abs(reference - t))]
        if abs(gap) <= WINDOW_S:
            out.append(gap)
    return np.asarray(out)


def evaluate(wav: Path, reference: np.ndarray) -> dict:
    """Every figure for one file."""
    samples = read_mono(wav)
    figures = {}
    started = time.perf_counter()
    offline = node(Beats, fps=FPS)
    run(offline, samples, fps=FPS)
    figures["offline_s"] = time.perf_counter() - started
    started = time.perf_counter()
    live = node(Beats, fps=FPS, live=True)
    out = run(live, samples, fps=FPS, live=True)
    figures["live_s"] = time.perf_counter() - started
    given_live = np.asarray(live.given)
    late_ref = reference[reference >= WARM_UP_S]
    figures["offline_f"] = f_measure(reference, offline.given)
    figures["offline_tempo"] = tempo_error(offline.given, reference)
    figures["live_f"] = f_measure(late_ref, given_live[given_live >= WARM_UP_S])
    figures["live_tempo"] = tempo_error(given_live[given_live >= WARM_UP_S], reference)
    lag = latencies(np.flatnonzero(out["beat"][:, 0]) / FPS, reference)
    figures["lag_ms"] = 1000 * lag
    import librosa  # a dev dependency: only the comparison needs it

    y = librosa.resample(samples, orig_sr=SR, target_sr=22050)
    _, theirs = librosa.beat.beat_track(y=y, sr=22050, units="time")
    figures["librosa_f"] = f_measure(reference, theirs)
    figures["librosa_tempo"] = tempo_error(theirs, reference)
    return figures


def percent(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:+.2f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the rendered grooves (kept)")
    args = parser.parse_args()
    why = missing_tools()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    import librosa

    folder = args.out or Path(tempfile.mkdtemp(prefix="grooves-"))
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}, load {load()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, librosa {librosa.__version__}")
    print("| file | tempo | offline F | offline tempo err | live F (after 5 s) | live tempo err | librosa F | "
          "librosa tempo err | live lag median / p95 / max ms | offline / live s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    lags = []
    for groove in GROOVES:
        wav, times = render(groove, folder)
        f = evaluate(wav, np.asarray(times))
        lags.append(f["lag_ms"])
        tempo = " -> ".join(f"{bpm:g}" for _, bpm in groove.tempo) + (f", swing {groove.swing:g}" if groove.swing else "")
        lag = f["lag_ms"]
        lag_text = f"{np.median(lag):.1f} / {np.percentile(lag, 95):.1f} / {lag.max():.1f}" if len(lag) else "n/a"
        print(f"| {groove.name}{' (held out)' if groove.held_out else ''} | {tempo} | {f['offline_f']:.3f} | "
              f"{percent(f['offline_tempo'])} | {f['live_f']:.3f} | {percent(f['live_tempo'])} | "
              f"{f['librosa_f']:.3f} | {percent(f['librosa_tempo'])} | {lag_text} | "
              f"{f['offline_s']:.2f} / {f['live_s']:.2f} |")
    every = np.concatenate(lags)
    print(f"live lag over every file: {len(every)} beats, median {np.median(every):.1f} ms, "
          f"p95 {np.percentile(every, 95):.1f} ms, max {every.max():.1f} ms (limit 30 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
