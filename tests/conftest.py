"""Shared fixtures: real WAV files written with the standard library, and the real CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

SR = 44100


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SR) -> Path:
    """Write float samples in [-1, 1] (shape (n,) or (n, channels)) as 16-bit PCM."""
    data = np.asarray(samples, dtype=np.float64)
    channels = 1 if data.ndim == 1 else data.shape[1]
    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def tone(freq: float, seconds: float, sample_rate: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def write_tone(path: Path, seconds: float = 1.0, freq: float = 440.0) -> Path:
    """A real 16-bit mono WAV of a sine, written with the standard library."""
    return write_wav(path, tone(freq, seconds, amplitude=12000 / 32767))


def cppnviz_command() -> list[str]:
    """The installed console script next to this Python, else `python -m cppnviz.launch`."""
    script = shutil.which("cppnviz", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "cppnviz.launch"]


def ctrl_c_reaches_it() -> None:
    """preexec_fn: Ctrl-C handled as on a terminal, even when the test run itself was started in the
    background (a shell's `&` or nohup leaves SIGINT ignored, and exec passes that on)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args, cwd=None, env=None, command=None) -> subprocess.Popen:
    """The real CLI as a running process, its output piped, to be signalled as a user would."""
    return subprocess.Popen([*(command or cppnviz_command()), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, preexec_fn=ctrl_c_reaches_it)


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*cppnviz_command(), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def wav(tmp_path):
    """Factory: wav(samples, name='x.wav', sample_rate=44100) -> path of a real WAV file."""
    def make(samples, name="audio.wav", sample_rate=SR):
        return write_wav(tmp_path / name, samples, sample_rate)
    return make
