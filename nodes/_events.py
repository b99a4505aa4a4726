"""Events from a stream of strengths: streamed peak picking, and the decaying pulse a hit leaves behind."""

from __future__ import annotations

import math

import numpy as np


class PeakPicker:
    """librosa's peak_pick rule, streamed: frame j of a column is an onset when

    - it is the largest value in frames j-pre_max .. j+post (the earliest, if several are equal),
    - it exceeds the mean of frames j-pre_avg .. j+post by at least `threshold`,
    - at least `gap` frames have passed since that column's previous onset.

    A frame is decided once frame j+post has arrived (post frames of latency); frames are fed in
    order, in any batches, and the decisions do not depend on how they were batched.
    """

    def __init__(self, n_columns: int, *, pre_max: int, pre_avg: int, post: int, threshold: float, gap: int):
        self.pre_max, self.pre_avg, self.post, self.threshold, self.gap = pre_max, pre_avg, post, threshold, gap
        self.n_columns = n_columns
        self.reset()

    def reset(self) -> None:
        self.kept = np.zeros((0, self.n_columns), dtype=np.float32)  # the newest frames, for windows reaching back
        self.kept_first = 0                                          # frame index of kept[0]
        self.last = np.full(self.n_columns, -(1 << 40), dtype=np.int64)  # previous onset per column

    def feed(self, first: int, values: np.ndarray) -> list[tuple[int, int]]:
        """Add frames first.. (a gap since the last call restarts the history); return new onsets as (frame, column)."""
        if len(values) == 0:
            return []
        if first != self.kept_first + len(self.kept):
            self.kept, self.kept_first = self.kept[:0], first
        history = np.concatenate([self.kept, values])
        start = self.kept_first
        decided_before = start + len(self.kept) - self.post   # frames before this were decided already
        candidates = range(max(decided_before, start), start + len(history) - self.post)
        onsets = []
        for j in candidates:
            i = j - start
            lo_max, lo_avg, hi = max(0, i - self.pre_max), max(0, i - self.pre_avg), i + self.post + 1
            row = history[i]
            is_peak = (row >= history[lo_max:hi].max(axis=0)) & (row > history[lo_max:i].max(axis=0, initial=-np.inf))
            strong = row >= history[lo_avg:hi].mean(axis=0) + self.threshold
            for column in np.flatnonzero(is_peak & strong & (row > 0)):
                if j - self.last[column] >= self.gap:
                    self.last[column] = j
                    onsets.append((j, int(column)))
        keep = max(self.pre_max, self.pre_avg) + self.post
        self.kept = history[-keep:] if keep else history[:0]
        self.kept_first = start + len(history) - len(self.kept)
        return onsets


class Pulse:
    """A pulse that jumps to 1 when fired and decays by e every `decay` seconds; 0 before the first fire."""

    def __init__(self, size: int, decay: float):
        self.decay = decay
        self.fired = np.full(size, -math.inf)  # time of each column's newest fire, seconds

    def reset(self) -> None:
        self.fired[:] = -math.inf

    def fire(self, column: int | slice, time: float) -> None:
        self.fired[column] = time

    def at(self, time: float) -> np.ndarray:
        """The pulse at `time` (never before a fire: a fire in the future reads as 0)."""
        since = time - self.fired
        out = np.where(since >= 0, np.exp(-np.maximum(since, 0) / self.decay), 0.0)
        return out.astype(np.float32)
