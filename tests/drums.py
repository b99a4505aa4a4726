"""Test music made in the test: clicks, and drum grooves from the demo track's own instruments."""

from __future__ import annotations

import runpy
from fractions import Fraction
from pathlib import Path

import numpy as np

from cppnviz.node import Context
from cppnviz.ports import AudioWindow, Spec
from cppnviz.timebase import Tick, sample_at

SR = 44100
DEMO = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "make_demo.py"))


def clicks(bpm: float, seconds: float, start: float = 0.5, amplitude: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """A click (a 64-sample Hann burst) every beat from `start`; returns (float32 samples, click times)."""
    samples = np.zeros(round(seconds * SR), dtype=np.float32)
    times = np.arange(start, seconds - 0.1, 60.0 / bpm)
    burst = (amplitude * np.hanning(64)).astype(np.float32)
    for t in times:
        i = round(t * SR)
        samples[i:i + 64] += burst
    return samples, times


def groove(bpm: float, seconds: float, start: float = 0.5, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Kick on 1 and 3, snare on 2 and 4, hats on the 8ths, over a held chord; returns (samples, beat times)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    track = np.zeros(n)
    beat = 60.0 / bpm
    times = np.arange(start, seconds - 0.2, beat)
    kick, snare, hat = DEMO["kick"](), DEMO["snare"](rng), DEMO["hihat"](rng)
    for i, t in enumerate(times):
        DEMO["place"](track, kick if i % 2 == 0 else 0.6 * snare, t)
        DEMO["place"](track, 0.3 * hat, t + beat / 2)
    # A chord held throughout: steady sound the onsets must ignore.
    t = np.arange(n) / SR
    track += 0.05 * sum(np.sin(2 * np.pi * DEMO["midi_hz"](note) * t) for note in (57, 60, 64))
    return (0.8 * track / np.max(np.abs(track))).astype(np.float32), times


def node(cls, *, fps: int = 60, live: bool = False, sample_rate: int = SR, **params):
    """A configured node of type `cls` with its defaults and `params`, reading audio at `sample_rate`."""
    values = {p.name: p.default for p in cls.params}
    values.update(params)
    made = cls("n", values, Context(fps=Fraction(fps), live=live))
    made.input_specs = {"audio": Spec("audio", sample_rate=sample_rate)}
    made.output_specs = made.configure(made.input_specs)
    return made


def run(made, samples: np.ndarray, *, fps: int = 60, live: bool = False) -> dict[str, np.ndarray]:
    """Every tick of a track through `made`, offline (the whole track, a prepass if it asks) or live
    (only what has been played); returns each output stacked over the ticks."""
    if made.whole_track():
        made.fit({"audio": np.stack([AudioWindow(samples, 0, SR)])})
    made.reset()
    ticks = -(-len(samples) * fps // SR)
    outputs = []
    for k in range(ticks):
        now = sample_at(k, SR, Fraction(fps))
        window = AudioWindow(samples[:now], now, SR, final=False) if live else AudioWindow(samples, now, SR)
        outputs.append(made.process(Tick(k, k / fps), audio=window))
    return {port: np.stack([o[port] for o in outputs]) for port in outputs[0]}
