"""Beats: tempo and beat times, offline over the whole track or live from the past, as pulses a picture can follow."""

from __future__ import annotations

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import AudioWindow, Input, Output, Spec

from . import _beat_offline
from ._beat_live import MIN_ONSETS, LiveTracker
from ._events import PeakPicker, Pulse
from ._modes import OfflineOrLive
from ._odf import FLUX_PARAMS, event_time, flux_stream, frequency_pair, horizon, position
from .onsets import POST_FRAMES, PRE_AVG_S, PRE_MAX_S
from ._tempo import TempoModel

# Onset rises beyond this many dB count alike: the first sound after silence (a rise of 60 dB or
# more) must not outweigh a song's worth of beats in the tempo and phase estimates.
CAP_DB = 20.0
# The onsets that tell music from silence: the onsets node's picking windows and default threshold and gap.
ONSET_THRESHOLD_DB = 2.0
ONSET_GAP_S = 0.05
TEMPO_HOP_S = 1.0   # offline, one tempo estimate a second along the track


def local_bpm(times) -> np.ndarray:
    """The tempo at each beat: 60 over the mean of the (up to) four intervals around it; 0 for a lone beat."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2:
        return np.zeros(len(times))
    intervals = np.diff(times)
    sums = np.concatenate(([0.0], np.cumsum(intervals)))
    ends = np.clip(np.arange(len(times)) + 2, 0, len(intervals))     # intervals [start, end) around beat i
    starts = np.clip(np.arange(len(times)) - 2, 0, len(intervals))
    return 60.0 * (ends - starts) / (sums[ends] - sums[starts])


def beat_strength(strength: np.ndarray) -> np.ndarray:
    """The beat band's onset strength, rises past CAP_DB squeezed towards it (tanh), float64."""
    return CAP_DB * np.tanh(np.asarray(strength, dtype=np.float64) / CAP_DB)


class Beats(OfflineOrLive, Node):
    """Tempo and beats (offline: dynamic programming over the track; live: predicted from the past)."""

    type_name = "beats"
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to analyse"),)
    outputs = (
        Output("beat", "features", "1 on the frame that is on screen when a beat sounds, else 0; shape (1,)"),
        Output("phase", "features", "0..1 through the current beat (0 on the beat), for motion locked to the music"),
        Output("bar_phase", "features", "0..1 through the bar of `beats_per_bar` beats, counted from the first beat"),
        Output("bpm", "features", "the tempo in beats per minute; 0 where there are no beats (silence, a drone)"),
        Output("pulse", "features", "1 on each beat, decaying by e every `decay` s"),
    )
    params = FLUX_PARAMS + (
        Param("mode", "choice", "auto", "offline: dynamic programming over the whole track (a prepass); live: "
              "causal, each beat predicted from the past; auto: offline in a render, live in a live run",
              choices=("auto", "offline", "live")),
        Param("bpm", "float", 0.0, "a tempo to track near instead of an estimate (it picks half or double "
              "time), though beats still land on the onsets, so a tempo the song lacks is pulled to one it has; "
              "0 estimates it (and follows changes)", min=0, max=400, unit="bpm"),
        Param("bpm_min", "float", 50.0, "slowest tempo considered", min=20, max=400, unit="bpm"),
        Param("bpm_max", "float", 220.0, "fastest tempo considered", min=20, max=400, unit="bpm"),
        Param("band", "floats", [200.0, 3000.0], "the frequency range whose onsets carry the beat (kick and snare "
              "attacks, bass, chords; hats above it mark subdivisions)", min=1, max=96000, unit="Hz"),
        Param("beats_per_bar", "int", 4, "beats in a bar, for bar_phase", min=1, max=32),
        Param("decay", "float", 0.1, "the pulse falls by e in this time", min=0.001, max=60, unit="s"),
    )

    def configure(self, inputs):
        p = self.p
        sr = inputs["audio"].sample_rate
        band = frequency_pair(p, "band")
        if p.bpm_min >= p.bpm_max:
            raise ParamError(f"param 'bpm_max': expected more than bpm_min ({p.bpm_min:g}), found {p.bpm_max:g}")
        self.flux = flux_stream(p, sr, band)
        self.rate = self.flux.rate
        self.picker = PeakPicker(1, pre_max=round(PRE_MAX_S * self.rate), pre_avg=round(PRE_AVG_S * self.rate),
                                 post=POST_FRAMES, threshold=ONSET_THRESHOLD_DB, gap=round(ONSET_GAP_S * self.rate))
        self.pulse = Pulse(1, p.decay)
        self.frame_samples = sr / float(self.ctx.fps)
        # Offline the fitted beats stay (a param change re-runs configure between ticks).
        self.fitted = getattr(self, "fitted", None)
        self.fitted_bpm = getattr(self, "fitted_bpm", None)
        self.reset()
        return {out.name: Spec("features", size=1, labels=(out.name,)) for out in self.outputs}

    def param_changed(self, name):
        """The pulse's decay and the bar's length change in place: a show's knob must not lose the beat."""
        if name == "decay":
            self.pulse.decay = self.p.decay
        if name in ("decay", "beats_per_bar"):
            return self.output_specs
        return super().param_changed(name)

    # -- offline ----------------------------------------------------------------------------
    # The prepass hands the audio one tick at a time (a streamed song holds a few seconds around each
    # tick, never the whole): the beat band's onset strength is gathered as it comes, then tracked.
    observes = True

    def observe(self, tick, audio):
        """One prepass tick: the onset strength of every analysis frame the window newly completes."""
        if not audio.final:
            raise ParamError(f"node '{self.name}' param 'mode': offline needs the whole track before the first "
                             f"frame, and this audio source does not hold it; use mode: live")
        if self.observed is None:
            self.flux.reset()
            self.observed = (None, [])
        first, strength = self.flux.advance(audio, audio.start + len(audio.samples))
        if len(strength):
            start, pieces = self.observed
            pieces.append(strength[:, 1])    # in place: a list rebuilt every tick is quadratic in the song's length
            if start is None:
                self.observed = (first, pieces)

    def fit(self, inputs):
        for window in np.ravel(inputs.get("audio", [])):   # stacked windows, as a tool may hand them
            self.observe(None, window)
        start, pieces = self.observed or (None, [])
        self.observed = None
        self.flux.reset()
        self.fitted = self.track(start or 0, np.concatenate(pieces) if pieces else np.zeros(0))
        self.fitted_bpm = local_bpm(self.fitted)

    def track(self, first: int, strength: np.ndarray) -> np.ndarray:
        """Beat times (stream seconds) of a whole track's onset strength from frame `first`, by dynamic programming."""
        strength = beat_strength(strength)
        self.picker.reset()
        onsets = self.picker.feed(first, strength[:, None].astype(np.float32))
        self.picker.reset()
        if len(onsets) < MIN_ONSETS:
            return np.zeros(0)
        periods = self.periods(strength)
        if periods is None:
            return np.zeros(0)
        return event_time(first + _beat_offline.track(strength, periods), self.p.hop, self.flux.sample_rate)

    def periods(self, strength: np.ndarray) -> np.ndarray | float | None:
        """Frames per beat at every frame: the fixed tempo, or the tempo path of the track."""
        if self.p.bpm > 0:
            return 60.0 * self.rate / self.p.bpm
        model = TempoModel(self.rate, self.p.bpm_min, self.p.bpm_max)
        centres, bpms = model.path(strength, max(1, round(TEMPO_HOP_S * self.rate)))
        if len(bpms) == 0:
            return None
        return np.interp(np.arange(len(strength)), centres, 60.0 * self.rate / bpms)

    # -- per tick ---------------------------------------------------------------------------
    def reset(self):
        self.observed = None              # offline prepass: (first frame, strength pieces) so far
        self.flux.reset()
        self.picker.reset()
        self.pulse.reset()
        self.tracker = LiveTracker(self.rate, self.p.bpm_min, self.p.bpm_max, self.p.bpm or None)
        self.upcoming: list[float] = []   # beat times (s) still to fire
        self.given: list[float] = []      # beat times fired, in order
        self.next_fit = 0                 # offline: index of the next fitted beat to fire

    def process(self, tick, audio):
        sr = audio.sample_rate
        now = position(audio) / sr
        # A beat fires on the frame on screen when it sounds: this frame until the next one's time.
        until = (position(audio) + self.frame_samples) / sr
        if self.offline():
            beats = self.fitted if self.fitted is not None else np.zeros(0)
            while self.next_fit < len(beats) and beats[self.next_fit] < until:
                self.upcoming.append(float(beats[self.next_fit]))
                self.next_fit += 1
            coming = float(beats[self.next_fit]) if self.next_fit < len(beats) else None
        else:
            self.listen(audio)
            coming = None
        fired = [t for t in self.upcoming if t < until]
        self.upcoming = [t for t in self.upcoming if t >= until]
        if fired:
            self.given += fired
            self.pulse.fire(0, now)
        return self.outputs_at(now, bool(fired), coming)

    def listen(self, audio: AudioWindow) -> None:
        """Live: analyse the new audio; the tracker's predictions join the beats to come."""
        first, strength = self.flux.advance(audio, horizon(audio, 0))
        strength = beat_strength(strength[:, 1])
        for frame, _ in self.picker.feed(first, strength[:, None].astype(np.float32)):
            self.tracker.onset(frame)
        for frame in self.tracker.feed(first, strength):
            self.upcoming.append(float(event_time(frame, self.p.hop, audio.sample_rate)))

    def outputs_at(self, now: float, fired: bool, coming: float | None) -> dict:
        """beat, phase, bar_phase, bpm and pulse at time `now`, given the beats fired so far and the next one."""
        last = self.given[-1] if self.given else None
        if self.offline():
            # Between two beats of the track; before the first and after the last there is no tempo.
            bpm = float(self.fitted_bpm[self.next_fit - 1]) if last is not None and coming is not None else 0.0
        else:
            bpm = self.tracker.bpm
        phase = min(max((now - last) * bpm / 60.0, 0.0), 1.0 - 1e-6) if bpm > 0 and last is not None else 0.0
        count = len(self.given)
        bar = ((count - 1) % self.p.beats_per_bar + phase) / self.p.beats_per_bar if count else 0.0
        values = {"beat": float(fired), "phase": phase, "bar_phase": bar, "bpm": bpm}
        out = {name: np.array([value], dtype=np.float32) for name, value in values.items()}
        out["pulse"] = self.pulse.at(now)
        return out
