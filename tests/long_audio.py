"""Hours of audio made on the spot: silence with a short tone every 30 s, as FLAC (a few MB for three hours)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def sparse_song(path: Path, seconds: float, rate: int = 8000, every: float = 30.0) -> Path:
    """Write `seconds` of mono digital silence with a 0.25 s 440 Hz tone every `every` s, block by block."""
    block = round(every * rate)
    t = np.arange(rate // 4) / rate
    tone = np.round(0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    pcm = np.zeros(block, np.int16)
    pcm[:len(tone)] = tone
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        total = round(seconds * rate)
        for start in range(0, total, block):
            frame = av.AudioFrame.from_ndarray(pcm[None, :min(block, total - start)].copy(), format="s16",
                                               layout="mono")
            frame.rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
