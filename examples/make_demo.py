"""Synthesise the demo track (16 s of drums, bass and a lead at 120 bpm) and write it as a 16-bit WAV."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

SR = 44100
BPM = 120
BARS = 8
BEAT = 60 / BPM                      # seconds per beat
SECONDS = BARS * 4 * BEAT            # 16 s
SEED = 2018                          # the noise of snare and hats; fixed so the file never changes


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def decay(n: int, seconds: float) -> np.ndarray:
    """An exponential envelope that falls by e every `seconds`."""
    return np.exp(-np.arange(n) / (seconds * SR))


def band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise with everything outside low..high Hz removed (an FFT brick wall is plenty here)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n)
    return out / np.max(np.abs(out))


def place(track: np.ndarray, sound: np.ndarray, at_seconds: float, gain: float = 1.0) -> None:
    """Add a sound into the track, cut at the track's end."""
    start = round(at_seconds * SR)
    end = min(start + len(sound), len(track))
    track[start:end] += gain * sound[:end - start]


def kick() -> np.ndarray:
    """A sine whose pitch drops from 150 to 45 Hz, with a fast decay: the lowest bands."""
    t = np.arange(round(0.4 * SR)) / SR
    drop = 0.03  # seconds for the pitch to fall by e
    # Phase is the integral of f(t) = 45 + 105 exp(-t/drop), so the sweep has no clicks.
    phase = 2 * np.pi * (45 * t + 105 * drop * (1 - np.exp(-t / drop)))
    return np.sin(phase) * decay(len(t), 0.12)


def snare(rng: np.random.Generator) -> np.ndarray:
    """A burst of noise between 1 and 5 kHz over a short 190 Hz body."""
    n = round(0.25 * SR)
    body = np.sin(2 * np.pi * 190 * np.arange(n) / SR) * decay(n, 0.03)
    return 0.8 * band_noise(rng, n, 1000, 5000) * decay(n, 0.06) + 0.4 * body


def hihat(rng: np.random.Generator) -> np.ndarray:
    """A short burst of noise above 7 kHz: the highest bands."""
    n = round(0.06 * SR)
    return band_noise(rng, n, 7000, 20000) * decay(n, 0.015)


def bass_note(note: int, seconds: float) -> np.ndarray:
    """A sawtooth built from its first harmonics with a gentle roll-off, i.e. a low-passed saw."""
    t = np.arange(round(seconds * SR)) / SR
    f = midi_hz(note)
    harmonics = np.arange(1, int(1500 / f) + 1)
    weights = (1 / harmonics) / (1 + (harmonics * f / 400) ** 2)
    saw = np.sin(2 * np.pi * f * np.outer(t, harmonics)) @ weights
    envelope = np.minimum(1, t / 0.005) * np.minimum(1, (seconds - t) / 0.02) * (0.6 + 0.4 * decay(len(t), 0.4))
    return saw / np.max(np.abs(saw)) * envelope


def lead_note(note: int, seconds: float) -> np.ndarray:
    """A triangle wave with 5.5 Hz vibrato and a soft attack and release."""
    t = np.arange(round(seconds * SR)) / SR
    freq = midi_hz(note) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    triangle = 2 / np.pi * np.arcsin(np.sin(phase))
    return triangle * np.minimum(1, t / 0.01) * np.minimum(1, (seconds - t) / 0.03)


# One bar each: A1 F1 C2 G1, twice.
BASS = [33, 29, 36, 31] * 2
# (beat, length in beats, MIDI note) in A minor pentatonic (A C D E G), bars 3 to 8.
LEAD = [
    (8, 1, 69), (9, 0.5, 72), (9.5, 0.5, 74), (10, 1, 76), (11, 1, 74),
    (12, 0.5, 72), (12.5, 0.5, 69), (13, 1, 67), (14, 2, 69),
    (16, 1, 76), (17, 0.5, 79), (17.5, 0.5, 81), (18, 1, 79), (19, 1, 76),
    (20, 0.5, 74), (20.5, 0.5, 76), (21, 1, 72), (22, 2, 74),
    (24, 0.5, 81), (24.5, 0.5, 79), (25, 0.5, 76), (25.5, 0.5, 74), (26, 1, 72), (27, 1, 74),
    (28, 1, 76), (29, 0.5, 74), (29.5, 0.5, 72), (30, 2, 69),
]


def render() -> np.ndarray:
    """The mix, [shape=(n_samples, 2)], float64 with its peak at 0.8."""
    rng = np.random.default_rng(SEED)
    n = round(SECONDS * SR)
    drums, hats, bass, lead = (np.zeros(n) for _ in range(4))
    hat = hihat(rng)
    snares = [snare(rng) for _ in range(2)]  # two takes, alternated, so hits are not identical
    for beat in range(BARS * 4):
        place(drums, kick(), beat * BEAT)
        if beat % 4 in (1, 3):
            place(drums, snares[beat // 2 % 2], beat * BEAT, 0.6)
    for eighth in range(BARS * 8):
        place(hats, hat, eighth * BEAT / 2, 0.35 if eighth % 2 else 0.2)
    for bar, note in enumerate(BASS):
        for beat in range(4):  # the bass restrikes on every beat
            place(bass, bass_note(note, BEAT * 0.9), (bar * 4 + beat) * BEAT)
    for beat, length, note in LEAD:
        place(lead, lead_note(note, length * BEAT), beat * BEAT)

    # Hats a little right, lead a little left, kick, snare and bass in the middle.
    centre = drums + 0.5 * bass
    left = centre + 0.8 * hats + 1.2 * 0.35 * lead
    right = centre + 1.2 * hats + 0.8 * 0.35 * lead
    mix = np.stack([left, right], axis=1)
    fade = np.minimum(1, np.minimum(np.arange(n) / (0.02 * SR), (n - np.arange(n)) / (0.5 * SR)))
    mix *= fade[:, None]
    return 0.8 * mix / np.max(np.abs(mix))


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM with the stdlib, so the bytes depend on nothing but the samples."""
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(audio.shape[1])
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes(pcm.tobytes())


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("demo.wav")
    write_wav(out, render())
    print(f"wrote {out} ({SECONDS:g} s, {SR} Hz, stereo)")


if __name__ == "__main__":
    main(sys.argv)
