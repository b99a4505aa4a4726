"""Short pieces of music made in the test, each with its own instruments, tempo and harmony (learned features)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from drums import DEMO

SR = 44100       # the demo's instruments are made at this rate
PROGRESSIONS = ([57, 60, 64], [53, 57, 60], [55, 59, 62], [52, 55, 59])


def piece(style: int, seconds: float, seed: int) -> np.ndarray:
    """One of four styles: drums + bass, a plucked lead, pads with hats, a busy mix of all of them."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    track = np.zeros(n)
    bpm = (96, 120, 140, 108)[style % 4] + 4 * (seed % 3)
    beat = 60.0 / bpm
    chord_s = 4 * beat
    for i, at in enumerate(np.arange(0.0, seconds - 0.3, beat / 2)):
        step = i % 8
        chord = PROGRESSIONS[int(at / chord_s) % 4]
        if style in (0, 3) and step % 4 == 0:
            DEMO["place"](track, DEMO["kick"](), at)
        if style in (0, 3) and step % 4 == 2:
            DEMO["place"](track, 0.5 * DEMO["snare"](rng), at)
        if style in (2, 3):
            DEMO["place"](track, 0.25 * DEMO["hihat"](rng), at)
        if style in (0, 3) and step % 2 == 0:
            DEMO["place"](track, 0.4 * DEMO["bass_note"](chord[0] - 24, beat), at)
        if style in (1, 3) and rng.random() < 0.7:
            DEMO["place"](track, 0.3 * DEMO["lead_note"](int(rng.choice(chord)) + 12, beat / 2), at)
    if style == 2:   # slow pads: the chord as detuned sines, swelling over each bar
        for b, at in enumerate(np.arange(0.0, seconds, chord_s)):
            span = (t >= at) & (t < at + chord_s)
            swell = np.sin(np.pi * (t[span] - at) / chord_s)
            for note in PROGRESSIONS[b % 4]:
                f = DEMO["midi_hz"](note)
                track[span] += 0.08 * swell * (np.sin(2 * np.pi * f * t[span]) + np.sin(2 * np.pi * f * 1.003 * t[span]))
    return (0.8 * track / max(np.max(np.abs(track)), 1e-9)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SR) -> Path:
    """16-bit mono WAV."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path
