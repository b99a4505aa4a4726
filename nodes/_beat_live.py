"""Causal beat tracking: tempo and phase from the past only, the next beat predicted before it happens.

Halfway between beats the tracker looks back over the last 6 s of onset strength: the tempo from
TempoModel (filtered forward through the same kind of transitions as the offline path, so it holds
steady and still follows a new section within seconds), the phase from the grid of beats at that
tempo that best fits the onsets, recent ones counting most; the next beat is that grid one step on.
The beat is known half a period before it happens, so a show fires it on time instead of after the
onset is heard (the habit of Stark, Davies and Plumbley's BTrack, 2009, which predicts from its past
the same way).
"""

from __future__ import annotations

import numpy as np

from ._tempo import TempoModel

WINDOW_S = 6.0       # seconds of onset strength the tempo is estimated from (8 s offline: live must follow sooner)
JUMP = 1.0           # log-score cost of a tempo change; estimates come once a beat, and a change must show in seconds
LOCK_S = 3.0         # seconds of onset strength before the first tempo estimate
MIN_ONSETS = 4       # onsets in the last window for the tracker to run: fewer is silence or a drone
QUIET_S = 2.0        # no onset for this long before a lock: nothing to lock on
QUIET_BEATS = 1.5    # no onset for this many periods while locked: the music stopped, and so do the beats
PHASE_BEATS = 4      # a beat this many beats back counts half as much in setting the phase
PHASE_STEP = 0.25    # frames between the phases tried


class LiveTracker:
    """Feed it frames of onset strength in order; it says which future frames will be beats."""

    def __init__(self, rate: float, bpm_min: float, bpm_max: float, fixed_bpm: float | None = None):
        self.tempo = tempo = TempoModel(rate, bpm_min, bpm_max, jump=JUMP, window=WINDOW_S)
        self.fixed_period = 60.0 * tempo.rate / fixed_bpm if fixed_bpm else None
        self.size = tempo.frames
        self.reset()

    def reset(self) -> None:
        self.strength = np.zeros(self.size)
        self.frame = -1                 # index of the newest frame fed
        self.seen = 0                   # frames fed since the start (or a gap)
        self.belief = None              # log belief over the tempo model's candidates
        self.period = None              # frames per beat, once estimated
        self.locked = False             # whether beats are being predicted
        self.last_beat = None           # frame of the latest beat predicted
        self.predict_at = None          # frame at which to predict the next beat
        self.onsets: list[int] = []     # frames of recent onsets (the node's peak picker feeds them)
        self.predictions: list[float] = []

    @property
    def bpm(self) -> float:
        return 60.0 * self.tempo.rate / self.period if self.locked else 0.0

    def onset(self, frame: int) -> None:
        """Tell the tracker an onset was picked at `frame` (it runs only while there are some)."""
        self.onsets.append(frame)

    def feed(self, first: int, values: np.ndarray) -> list[float]:
        """Add frames first..first+len-1; return the beat frames (fractional) newly predicted, each still to come."""
        if first != self.frame + 1:  # the stream started, or skipped frames: start over from here
            self.reset()
            self.frame = first - 1
        self.predictions = []
        for value in values:
            self._step(float(value))
        return self.predictions

    def _step(self, value: float) -> None:
        self.frame += 1
        self.seen += 1
        self.strength = np.roll(self.strength, -1)
        self.strength[-1] = value
        n = self.frame
        self.onsets = [j for j in self.onsets if j > n - self.size]
        silent_for = QUIET_BEATS * self.period if self.period else QUIET_S * self.tempo.rate
        quiet = not self.onsets or n - self.onsets[-1] > silent_for
        if len(self.onsets) < MIN_ONSETS or quiet or self.seen < LOCK_S * self.tempo.rate:
            self.locked, self.predict_at = False, None
            return
        if self.predict_at is None or n >= self.predict_at:
            self.locked = self._estimate_tempo()
            if not self.locked:
                return
            beat = self._predict()
            self.predictions.append(beat)
            self.last_beat = beat
            self.predict_at = int(np.ceil(beat + self.period / 2))

    def _estimate_tempo(self) -> bool:
        """Update the tempo belief from the last window of strength; False when it holds no periodicity."""
        if self.fixed_period is not None:
            self.period = self.fixed_period
            return True
        scores = self.tempo.scores(self.recent())
        if scores is None:
            return self.period is not None
        if self.belief is None or self.seen < self.size:
            self.belief = scores  # until the window is full, each estimate stands on its own
        else:
            self.belief = (self.belief[None, :] + self.tempo.log_transition).max(axis=1) + scores
        self.belief -= self.belief.max()
        self.period = float(self.tempo.periods[int(np.argmax(self.belief))])
        return True

    def recent(self) -> np.ndarray:
        """The strength of the frames fed so far, at most the last window."""
        return self.strength[-min(self.seen, self.size):]

    def _predict(self) -> float:
        """The next beat still to come: the beat grid at this tempo that best fits the recent onsets, one step on."""
        n, period = self.frame, self.period
        window = self.recent()
        latest = n - grid_phase(window, period)
        beat = latest + (np.floor((n - latest) / period) + 1) * period
        if self.last_beat is not None and beat - self.last_beat < period / 2:
            beat += period  # never a second beat within half a period of the one just given
        return float(beat)


def grid_phase(strength: np.ndarray, period: float) -> float:
    """How many frames before the newest one the latest beat lies: the offset of the grid of beats
    `period` apart whose summed strength is largest, recent beats counting most (half as much every
    PHASE_BEATS beats back)."""
    offsets = np.arange(0.0, period, PHASE_STEP)
    beats_back = np.arange(int(len(strength) // period))
    if len(beats_back) == 0:
        return 0.0
    positions = len(strength) - 1 - offsets[:, None] - beats_back[None, :] * period
    weights = 0.5 ** (beats_back / PHASE_BEATS)
    fit = (np.interp(positions, np.arange(len(strength)), strength) * weights).sum(axis=1)
    return float(offsets[int(np.argmax(fit))])
