"""Offline beat tracking by dynamic programming over the whole track (Ellis 2007, as librosa's beat_track).

Every frame t gets the best cumulative score of a beat sequence ending there: its own onset
strength plus the best earlier beat between 2 and 1/2 periods back, penalised by
tightness * log(gap / period)^2. The period may change over the track (a tempo path); the best
sequence is then read backwards from the last strong beat.
"""

from __future__ import annotations

import numpy as np

TIGHTNESS = 100.0   # librosa's default: how strictly beats keep to the period


def local_score(strength: np.ndarray, period: float) -> np.ndarray:
    """Strength over its standard deviation, smoothed by a Gaussian of width period/32 (librosa's)."""
    scale = strength.std(ddof=1) if len(strength) > 1 else 0.0
    normalised = strength / (scale + np.finfo(np.float64).tiny)
    offsets = np.arange(-int(period), int(period) + 1)
    window = np.exp(-0.5 * (offsets * 32.0 / period) ** 2)
    return np.convolve(normalised, window, mode="same")


def track(strength: np.ndarray, periods, *, tightness: float = TIGHTNESS, refined: bool = True) -> np.ndarray:
    """Frames of the beats; `periods` is the beat period in frames at every frame (or one for all).

    `refined`: each beat moves between frames to the vertex of its local score's peak (float frames);
    without it the frames are librosa's, integers.
    """
    strength = np.asarray(strength, dtype=np.float64)
    n = len(strength)
    if n == 0 or not strength.any():
        return np.zeros(0, dtype=int)
    periods = np.broadcast_to(np.asarray(periods, dtype=np.float64), (n,))
    local = local_score(strength, float(np.median(periods)))
    cumulative = np.zeros(n)
    backlink = np.full(n, -1)
    started = False
    threshold = 0.01 * local.max()
    for t in range(n):
        period = periods[t]
        first, last = t - int(round(2 * period)), t - int(round(period / 2))
        best = -np.inf
        if last >= 0:
            earlier = np.arange(max(first, 0), last + 1)
            candidates = cumulative[earlier] - tightness * np.log((t - earlier) / period) ** 2
            pick = int(np.argmax(candidates))
            best = candidates[pick]
        cumulative[t] = local[t] + (best if np.isfinite(best) else 0.0)
        # No beat sequence starts before the music does: the first frames with almost no strength.
        if started or local[t] >= threshold:
            started = True
            backlink[t] = earlier[pick] if np.isfinite(best) else -1
    beats = [last_beat(cumulative)]
    while backlink[beats[-1]] >= 0:
        beats.append(int(backlink[beats[-1]]))
    beats = trim(local, np.asarray(beats[::-1]))
    return beats + np.array([peak_offset(local, b) for b in beats]) if refined else beats


def peak_offset(values: np.ndarray, i: int) -> float:
    """Where the peak at index i lies between frames: the vertex of the parabola through i and its neighbours."""
    if 0 < i < len(values) - 1:
        left, centre, right = values[i - 1], values[i], values[i + 1]
        curvature = left - 2 * centre + right
        if curvature < 0 and centre >= max(left, right):
            return float(0.5 * (left - right) / curvature)
    return 0.0


def last_beat(cumulative: np.ndarray) -> int:
    """The last local maximum of the cumulative score that reaches half the median of all its maxima.

    As librosa.util.localmax: x[i] > x[i-1] and x[i] >= x[i+1], the ends padded with themselves
    (so the first frame never is one, the last may be).
    """
    padded = np.pad(cumulative, 1, mode="edge")
    maxima = np.flatnonzero((cumulative > padded[:-2]) & (cumulative >= padded[2:]))
    if len(maxima) == 0:
        return len(cumulative) - 1
    strong = maxima[cumulative[maxima] >= 0.5 * np.median(cumulative[maxima])]
    return int(strong[-1]) if len(strong) else len(cumulative) - 1


def trim(local: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Drop beats before the first and after the last frame whose score passes half the RMS of the
    smoothed score at the beats (no beats in a silent intro or outro).

    librosa documents this threshold but smooths with an unnormalised Hann window (its sum is 2), which
    doubles it: on a steady click track every beat is then as strong as the threshold, and the first
    beats go. Here the window is normalised, so the threshold is the documented one.
    """
    if len(beats) == 0:
        return beats
    window = np.hanning(5)
    smooth = np.convolve(local[beats], window / window.sum(), mode="same")
    strong = np.flatnonzero(local > 0.5 * np.sqrt(np.mean(smooth ** 2)))
    if len(strong) == 0:
        return beats[:0]
    return beats[(beats >= strong[0]) & (beats <= strong[-1])]
