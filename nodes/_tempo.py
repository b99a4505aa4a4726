"""Tempo from onset strength: autocorrelation scored over its first harmonics and a log-normal prior.

The score of a tempo is the mean of the onset strength's autocorrelation at 1, 2, 3 and 4 beat
periods (a comb: the true period repeats at its multiples, half of it does not), in log form,
plus a log-normal prior on the tempo (librosa's, centred on 120 bpm, here 1.5 octaves wide), all
within bpm_min..bpm_max. The strength first loses its local mean (the adaptive threshold of Stark
et al.'s BTrack), so periodicity comes from the peaks, not from loudness changes.

Both trackers use it: offline on 8 s windows, through a Viterbi path over the whole track (a
tempo may change); live on the last seconds, filtered forward through transitions of the same kind.
"""

from __future__ import annotations

import numpy as np

WINDOW_S = 8.0          # seconds of onset strength per estimate (librosa's tempogram: 8 s too)
PRIOR_CENTRE = 120.0    # bpm
PRIOR_OCTAVES = 1.5     # the prior's standard deviation in octaves
STEP = 0.005            # relative spacing of the candidate tempi (half a percent)
HARMONICS = 4
LOCAL_MEAN_S = 0.1      # half-width of the moving mean removed before the autocorrelation
STAY = 0.015            # octaves: how far a tempo drifts between two estimates without cost
JUMP = 6.0              # log-score cost of a sudden tempo change (a new section), per 1 s window
FLOOR = 1e-3            # the comb score is clipped here before its log (no periodicity at all)


class TempoModel:
    """Candidate tempi in bpm_min..bpm_max and the scores of a stretch of onset strength against them."""

    def __init__(self, rate: float, bpm_min: float, bpm_max: float, *, jump: float = JUMP, window: float = WINDOW_S):
        self.rate = rate
        count = max(2, int(np.ceil(np.log(bpm_max / bpm_min) / np.log1p(STEP))) + 1)
        self.bpms = np.geomspace(bpm_min, bpm_max, count)
        self.periods = 60.0 * rate / self.bpms           # frames per beat
        octaves = np.log2(self.bpms / PRIOR_CENTRE)
        self.log_prior = -0.5 * (octaves / PRIOR_OCTAVES) ** 2
        distance = np.abs(octaves[:, None] - octaves[None, :])
        # Drift within STAY octaves is free, a larger change costs JUMP: tempo holds, or changes outright.
        self.log_transition = np.where(distance <= STAY, 0.0, -jump)
        self.frames = int(round(window * rate))
        self.half_mean = max(1, int(round(LOCAL_MEAN_S * rate)))

    def scores(self, strength: np.ndarray) -> np.ndarray | None:
        """Log score of every candidate for this stretch of strength; None when it holds no periodicity."""
        peaks = peaks_only(strength, self.half_mean)
        n = len(peaks)
        if n < 2 or not peaks.any():
            return None
        centred = peaks - peaks.mean()
        spectrum = np.fft.rfft(centred, 2 * n)
        acf = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2)[:n]
        if acf[0] <= 0:
            return None
        lags = np.arange(n)
        acf = acf / acf[0] * n / np.maximum(n - lags, 1)   # unbiased: long lags overlap fewer frames
        # A tempo is scored once all its harmonics fit in the stretch (four beats heard), never on fewer.
        targets = np.arange(1, HARMONICS + 1)[None, :] * self.periods[:, None]
        fits = targets[:, -1] < n - 1
        if not fits.any():
            return None
        comb = np.interp(targets, lags, acf).mean(axis=1)
        return np.where(fits, np.log(np.maximum(comb, FLOOR)) + self.log_prior, -np.inf)

    def path(self, strength: np.ndarray, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame index of each window's centre, bpm at it): the Viterbi path of windowed scores."""
        starts = list(range(0, max(1, len(strength) - self.frames + 1), hop_frames))
        centres, emissions = [], []
        for start in starts:
            score = self.scores(strength[start:start + self.frames])
            if score is not None:
                centres.append(start + min(self.frames, len(strength)) // 2)
                emissions.append(score)
        if not emissions:
            return np.zeros(0, dtype=int), np.zeros(0)
        best = emissions[0].copy()
        back = []
        for emission in emissions[1:]:
            candidates = best[None, :] + self.log_transition   # [to, from]
            back.append(np.argmax(candidates, axis=1))
            best = candidates.max(axis=1) + emission
        states = [int(np.argmax(best))]
        for pointers in reversed(back):
            states.append(int(pointers[states[-1]]))
        return np.asarray(centres), self.bpms[np.asarray(states[::-1])]


def peaks_only(strength: np.ndarray, half: int) -> np.ndarray:
    """Strength above its moving mean over +-half frames, half-wave rectified (BTrack's adaptive threshold)."""
    x = np.asarray(strength, dtype=np.float64)
    if len(x) == 0:
        return x
    padded = np.pad(x, half, mode="edge")
    sums = np.cumsum(np.concatenate(([0.0], padded)))
    mean = (sums[2 * half + 1:] - sums[:-(2 * half + 1)]) / (2 * half + 1)
    return np.maximum(x - mean, 0.0)
