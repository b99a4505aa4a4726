"""hpss: the song split into its harmonic part (chords, pads) and its percussive part (drums), as audio to analyse."""

from __future__ import annotations

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import AudioWindow, Input, Output, Spec

from ._hpss import Separator, kernel_bins, kernel_frames
from ._modes import OfflineOrLive
from .audio import MIN_REACH, REACH_S, _Buffer

# librosa's defaults (n_fft 2048, hop 512, kernels of 31 frames and 31 bins at 44.1 kHz), as time and
# frequency so a song at another rate is separated alike: 31 * 512 / 44100 s and 31 * 44100 / 2048 Hz.
KERNEL_S = 0.36
KERNEL_HZ = 667.0


class HPSS(OfflineOrLive, Node):
    """Harmonic/percussive separation by median filtering (Fitzgerald 2010; librosa.decompose.hpss)."""

    type_name = "hpss"
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to separate"),)
    outputs = (
        Output("harmonic", "audio", "the sustained part (chords, pads, voices): any analysis node takes it"),
        Output("percussive", "audio", "the attacks (drums, plucks): any analysis node takes it"),
    )
    params = (
        Param("n_fft", "int", 2048, "STFT window length", min=64, max=16384, unit="samples"),
        Param("hop_length", "int", 512, "STFT hop, at most n_fft / 2", min=16, max=8192, unit="samples"),
        Param("kernel_s", "float", KERNEL_S, "harmonic median filter length along time, rounded to an odd "
              "number of hops (0.36 s: librosa's 31 frames at 44.1 kHz)", min=0.001, max=10, unit="s"),
        Param("kernel_hz", "float", KERNEL_HZ, "percussive median filter length along frequency, rounded to an "
              "odd number of bins (667 Hz: librosa's 31 bins at 44.1 kHz)", min=1, max=20000, unit="Hz"),
        Param("power", "float", 2.0, "soft mask exponent: M_h = H^p / (H^p + (margin P)^p); larger is harder",
              min=0.1, max=100),
        Param("margin", "float", 1.0, "a part must exceed the other by this factor to keep a bin; above 1 "
              "leaves a residual in neither output", min=1, max=100),
        Param("mode", "choice", "auto", "offline: the whole track once (a prepass); live: causal, the output "
              "trails the input by a look-ahead it reports; auto: offline in a render, live in a live run",
              choices=("auto", "offline", "live")),
    )

    def configure(self, inputs):
        p = self.p
        sr = inputs["audio"].sample_rate
        if p.n_fft % 2:
            raise ParamError(f"param 'n_fft': expected an even number, found {p.n_fft}")
        if p.hop_length > p.n_fft // 2:
            raise ParamError(f"param 'hop_length': expected at most n_fft / 2 ({p.n_fft // 2}), found {p.hop_length}")
        self.sample_rate = sr
        self.settings = dict(n_fft=p.n_fft, hop_length=p.hop_length,
                             kernel_frames=kernel_frames(p.kernel_s, sr, p.hop_length),
                             kernel_bins=kernel_bins(p.kernel_hz, sr, p.n_fft), power=p.power, margin=p.margin)
        self.separator = Separator(**self.settings)
        self.keep = max(round(REACH_S * sr), MIN_REACH)   # live: history kept for downstream windows
        # Offline, the separation stays until the next prepass (a param change between ticks keeps it).
        self.fitted = getattr(self, "fitted", None)
        self.reset()
        spec = Spec("audio", sample_rate=sr)
        return {"harmonic": spec, "percussive": spec}

    # -- modes ------------------------------------------------------------------------------
    @property
    def latency(self) -> int:
        """Samples the outputs trail the input: 0 offline, the separator's look-ahead live."""
        return 0 if self.offline() else self.separator.latency

    @property
    def latency_s(self) -> float:
        """The live look-ahead in seconds (the live runner adds it to the latency it prints)."""
        return self.latency / self.sample_rate

    # -- the stream -------------------------------------------------------------------------
    def reset(self):
        self._restart(0)

    def _restart(self, at: int) -> None:
        """Separate afresh from stream position `at`, as from the start of a track."""
        self.separator.reset()
        self.fed = at                   # stream position of the next input sample to feed
        self.parts = _Buffer(2)         # harmonic and percussive from stream position parts.start
        self.parts.start = self.parts.end = at

    def _feed(self, audio: AudioWindow, until: int) -> None:
        """Feed the separator the input samples [fed, until) and keep what it returns."""
        if self.fed < audio.start:
            # The source no longer holds samples never fed (a param change mid-show rebuilt the separator,
            # an input stalled for seconds): start again from what it holds rather than invent the gap.
            self._restart(audio.start)
        if until <= self.fed:
            return
        new = audio.samples[self.fed - audio.start:until - audio.start]
        self.fed = until
        self._keep(*self.separator.feed(new))

    def _keep(self, harmonic: np.ndarray, percussive: np.ndarray) -> None:
        if len(harmonic):
            self.parts.append(np.stack((harmonic, percussive)))

    # -- offline: the prepass feeds the whole track, tick by tick ------------------------------
    observes = True

    def observe(self, tick, audio):
        if not audio.final:
            raise ParamError(f"node '{self.name}' param 'mode': offline needs the whole track before the first "
                             f"frame, and this audio source does not hold it; use mode: live")
        self._feed(audio, audio.start + len(audio.samples))

    def fit(self, inputs):
        for window in np.ravel(inputs.get("audio", [])):   # stacked windows, as a tool may hand them
            self.observe(None, window)
        self._keep(*self.separator.flush())
        parts = self.parts.view()          # the whole track: kept, the buffer is replaced by reset()
        self.fitted = (parts[0], parts[1])
        self.reset()

    # -- per tick ---------------------------------------------------------------------------
    def process(self, tick, audio):
        position = audio.start + audio.now
        if self.offline():
            harmonic, percussive = self.fitted if self.fitted is not None else (np.zeros(0, np.float32),) * 2
            return {"harmonic": AudioWindow(harmonic, position, self.sample_rate),
                    "percussive": AudioWindow(percussive, position, self.sample_rate)}
        # Live: what has been heard is fed; the outputs end `latency` samples before it.
        self._feed(audio, position)
        ready = position - self.latency
        self.parts.forget_before(ready - self.keep)
        held = self.parts.view()[:, :max(0, ready - self.parts.start)]
        return {name: AudioWindow(held[i], len(held[i]), self.sample_rate, final=False, start=self.parts.start)
                for i, name in enumerate(("harmonic", "percussive"))}
