"""Learned features: a model made by `cppnviz learn` applied to log-mel frames of the audio (seed 003)."""

from __future__ import annotations

import os

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.madefile import MadeFileError
from cppnviz.node import Node
from cppnviz.params import REQUIRED, Param
from cppnviz.ports import Input, Output, Spec

from ._learned_model import LearnedModel
from ._logmel import LogMel


def centred_mean(values: np.ndarray, frames: int) -> np.ndarray:
    """Moving average over `frames` rows centred on each row (fewer rows at the ends), as seed 003 blurs."""
    if frames <= 1 or len(values) == 0:
        return values
    total = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)])
    lo = np.clip(np.arange(len(values)) - frames // 2, 0, len(values))
    hi = np.clip(lo + frames, 0, len(values))
    return ((total[hi] - total[lo]) / (hi - lo)[:, None]).astype(np.float32)


def song_scaled(values: np.ndarray) -> np.ndarray:
    """Each feature min-max scaled to [0, 1] over the song; a constant feature (silence) is 0."""
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = hi - lo
    return np.where(span > 0, (values - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


class Learned(Node):
    """Features from a model trained by `cppnviz learn`: its encoder applied to the audio's log-mel frames."""

    type_name = "learned"
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to analyse (at the model's sample rate)"),)
    outputs = (Output("features", "features", "one value per learned unit, shape (size,)"),)
    params = (
        Param("model", "path", REQUIRED, "a model file made by `cppnviz learn`"),
        Param("blur", "float", 0.0, "seconds of moving average (seed 003's blur): centred offline, trailing live",
              min=0, max=600, unit="s"),
        Param("scale", "choice", "song", "song: each feature min-max scaled to [0, 1] over the song (offline, a "
              "prepass); running: over what has been heard so far (live); none: the encoder's own values",
              choices=("song", "running", "none")),
    )
    # The prepass hands the audio a tick at a time (a streamed song holds only seconds around now).
    observes = True

    def configure(self, inputs):
        key = (self.p.model, _mtime(self.p.model))
        if getattr(self, "_loaded", (None,))[0] != key:
            try:
                self._loaded = (key, LearnedModel.load(self.p.model))
            except MadeFileError as exc:
                raise ParamError(f"param 'model': {exc}") from None
        self.model = self._loaded[1]
        settings = self.model.settings
        rate = inputs["audio"].sample_rate
        if rate != settings.sample_rate:
            raise ParamError(f"param 'model': '{self.p.model}' was trained on audio at {settings.sample_rate} Hz, "
                             f"the graph analyses at {rate} Hz; set the audio node's sample_rate to "
                             f"{settings.sample_rate}")
        self.mel = LogMel(settings)
        self.blur_frames = max(1, round(self.p.blur * float(self.ctx.fps)))
        self.track = None
        self.observed = []
        self.reset()
        size = self.model.size
        return {"features": Spec("features", size=size, labels=tuple(f"learned{i}" for i in range(size)))}

    def whole_track(self) -> bool:
        return not self.ctx.live and (self.p.scale == "song" or self.blur_frames > 1)

    def live_problem(self):
        if self.p.scale == "song":
            return (f"scale song needs the whole track, which a live input never has; add "
                    f"--set {self.name}.scale=running (or none)")
        return None

    def reset(self):
        self.recent = []                # live: the last blur_frames raw values (trailing blur)
        self.low = self.high = None     # live: running min and max

    def encoded(self, audio) -> np.ndarray:
        """The encoder's output for the frames centred on this tick (ending at the newest sample live)."""
        before, after = self.mel.s.reach
        segment = audio.window(audio.now - before, before + after)
        return self.model.encode(self.mel.vectors(segment, [before]))[0]

    def observe(self, tick, audio):
        self.observed.append(self.encoded(audio))

    def fit(self, inputs):
        for window in np.ravel(inputs.get("audio", [])):   # stacked windows, as a tool may hand them
            self.observe(None, window)
        raw = np.stack(self.observed) if self.observed else np.zeros((0, self.model.size), np.float32)
        self.observed = []
        values = centred_mean(raw, self.blur_frames)
        self.track = song_scaled(values) if self.p.scale == "song" and len(values) else values

    def process(self, tick, audio):
        if self.track is not None and len(self.track):
            return {"features": self.track[min(tick.index, len(self.track) - 1)].copy()}
        value = self.encoded(audio)
        if self.blur_frames > 1:
            self.recent = (self.recent + [value])[-self.blur_frames:]
            value = np.mean(self.recent, axis=0, dtype=np.float64).astype(np.float32)
        if self.p.scale != "none":      # running (song, with no prepass, is refused by live_problem)
            self.low = value if self.low is None else np.minimum(self.low, value)
            self.high = value if self.high is None else np.maximum(self.high, value)
            span = self.high - self.low
            value = np.where(span > 0, (value - self.low) / np.where(span > 0, span, 1), 0).astype(np.float32)
        return {"features": value}


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
