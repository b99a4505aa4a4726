"""Onsets: spectral-flux strength, peak-picked hits and a decaying envelope, per band if asked."""

from __future__ import annotations

import math

import numpy as np

from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec

from ._events import PeakPicker, Pulse
from ._odf import FLUX_PARAMS, event_frame, flux_stream, frequency_pair, horizon, position

# Peak picking windows (librosa's onset_detect uses 30 ms and 100 ms at its 23 ms hop), and one
# frame of look-ahead: a hit is decided one hop after its frame, which is then the live latency.
PRE_MAX_S = 0.03
PRE_AVG_S = 0.10
POST_FRAMES = 1


class Onsets(Node):
    """Onset strength (log-mel spectral flux), a hit on the frame of each onset, and a decaying envelope."""

    type_name = "onsets"
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to analyse"),)
    outputs = (
        Output("strength", "features", "onset strength in dB (mean rise of log-mel power) since the previous "
                                       "tick, shape (1,) or (3,) per band"),
        Output("hit", "features", "1 on the frame of an onset, else 0; same shape"),
        Output("envelope", "features", "1 at each hit, decaying by e every `decay` s; same shape"),
    )
    params = FLUX_PARAMS + (
        Param("bands", "choice", "full", "full: one strength over every band; low_mid_high: three, split at "
              "`splits` (kick, snare, hats)", choices=("full", "low_mid_high"), shapes=True),
        Param("splits", "floats", [200.0, 5000.0], "the two frequencies between low, mid and high", min=1,
              max=96000, unit="Hz"),
        Param("threshold", "float", 2.0, "a peak must exceed the mean strength around it by this much",
              min=0, max=100, unit="dB"),
        Param("min_gap", "float", 50.0, "onsets of one band closer than this are one onset", min=0, max=10000,
              unit="ms"),
        Param("decay", "float", 0.2, "the envelope falls by e in this time", min=0.001, max=60, unit="s"),
    )

    def configure(self, inputs):
        sr = inputs["audio"].sample_rate
        splits = frequency_pair(self.p, "splits") if self.p.bands == "low_mid_high" else ()
        self.flux = flux_stream(self.p, sr, splits)
        rate = self.flux.rate
        self.picker = PeakPicker(self.flux.n_groups, pre_max=round(PRE_MAX_S * rate), pre_avg=round(PRE_AVG_S * rate),
                                 post=POST_FRAMES, threshold=self.p.threshold,
                                 gap=math.ceil(self.p.min_gap / 1000 * rate))
        self.pulse = Pulse(self.flux.n_groups, self.p.decay)
        # Offline, frames are computed ahead far enough to decide every onset until the next frame's time.
        self.frame_samples = sr / float(self.ctx.fps)
        self.ahead = self.frame_samples + (POST_FRAMES + 1) * self.p.hop
        self.reset()
        bands = ("_low", "_mid", "_high") if self.p.bands == "low_mid_high" else ("",)
        return {out.name: Spec("features", size=len(bands), labels=tuple(out.name + b for b in bands))
                for out in self.outputs}

    def param_changed(self, name):
        """Threshold, gap and decay change in place, keeping the analysis running (a show's knobs)."""
        if name == "decay":
            self.pulse.decay = self.p.decay
        elif name == "threshold":
            self.picker.threshold = self.p.threshold
        elif name == "min_gap":
            self.picker.gap = math.ceil(self.p.min_gap / 1000 * self.flux.rate)
        else:
            return super().param_changed(name)
        return self.output_specs

    def reset(self):
        self.flux.reset()
        self.picker.reset()
        self.pulse.reset()
        self.waiting = []  # (frame, strength row) computed ahead of their tick (offline)
        self.onsets = []   # (frame, column) decided ahead of their tick (offline)
        self.strength = np.zeros(self.flux.n_groups, dtype=np.float32)

    def process(self, tick, audio):
        first, values = self.flux.advance(audio, horizon(audio, self.ahead))
        self.onsets += self.picker.feed(first, values)
        self.waiting += list(zip(range(first, first + len(values)), values))
        # An onset belongs to the frame on screen when it sounds (this one, until the next one's time);
        # live, every frame computed is already due.
        due = event_frame(position(audio) + self.frame_samples, self.p.hop)
        now_s = position(audio) / audio.sample_rate
        rows = [row for j, row in self.waiting if j < due]
        self.waiting = [(j, row) for j, row in self.waiting if j >= due]
        if rows:
            self.strength = np.max(rows, axis=0)
        hit = np.zeros(self.flux.n_groups, dtype=np.float32)
        for j, column in [o for o in self.onsets if o[0] < due]:
            hit[column] = 1.0
            self.pulse.fire(column, now_s)
        self.onsets = [o for o in self.onsets if o[0] >= due]
        return {"strength": self.strength.copy(), "hit": hit, "envelope": self.pulse.at(now_s)}
