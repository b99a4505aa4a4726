"""Feature conditioning: the seed's median normalisation and exponential smoothing."""

from __future__ import annotations

import math

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec


def _gains(value, size: int) -> np.ndarray:
    """One gain for every band, or a list with exactly one per band."""
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, size):
        raise ParamError(f"param 'gain': expected 1 or {size} values (one per band), found {len(values)}")
    return np.broadcast_to(np.asarray(values, dtype=np.float32), (size,)).copy()


class Normalizer(Node):
    """The seed's g_b * F / (M_b + eps), M_b the median of band b over the track or a trailing window."""

    type_name = "normalizer"
    stage = "analysis"
    inputs = (Input("features", "features", "raw band values"),)
    outputs = (Output("features", "features", "normalised band values, same shape"),)
    params = (
        Param("mode", "choice", "track_median", "track_median: median over the whole track (a prepass, offline "
              "only); running_median / running_mean: over the trailing window, no future samples",
              choices=("track_median", "running_median", "running_mean")),
        Param("window", "float", 4.0, "length of the trailing window for the running modes", min=0.05, max=600, unit="s"),
        Param("gain", "floats", 1.0, "g_b: one gain for all bands or one per band (the seed code uses 0.5)",
              min=0, max=1000),
        Param("eps", "float", 1e-6, "added to the median so silent bands do not divide by zero", min=0, max=1e6),
        Param("gate", "float", 0.0, "values below this become 0 (the seed code uses 0.1)", min=0, max=1000),
        Param("floor", "float", 0.1, "a band's median is never taken below this fraction of the band's mean "
              "level, so silence stays 0 and sparse sounds (clicks in silence) move the picture at every hit; "
              "0 = the seed's formula exactly", min=0, max=1),
    )

    def configure(self, inputs):
        spec = inputs["features"]
        self.gain = _gains(self.p.gain, spec.size)
        self.frames = max(1, round(self.p.window * float(self.ctx.fps)))
        # A param change re-runs configure mid-run: keep the track's median if it still fits.
        median = getattr(self, "median", None)
        self.median = median if median is not None and median.size == spec.size else None
        self.reset()
        return {"features": Spec("features", size=spec.size, labels=spec.labels)}

    def whole_track(self) -> bool:
        return self.p.mode == "track_median"

    def live_problem(self):
        if self.p.mode == "track_median":
            return (f"mode track_median needs the whole track, which a live input never has; add "
                    f"--set {self.name}.mode=running_median (or running_mean)")
        return None

    def fit(self, inputs):
        values = inputs["features"]
        self.median = self._floored(np.median(values, axis=0), values.mean(axis=0, dtype=np.float64))

    def _floored(self, median: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """max(median, floor * mean): a band that is silent most of the time (median 0) still has a level."""
        return np.maximum(median, self.p.floor * mean).astype(np.float32)

    def reset(self):
        self.history = None
        self.filled = 0

    def _reference(self, values: np.ndarray) -> np.ndarray:
        if self.p.mode == "track_median":
            if self.median is None:
                raise RuntimeError("track_median needs the prepass before the first frame")
            return self.median
        if self.history is None:
            self.history = np.zeros((self.frames, values.size), dtype=np.float32)
        self.history[self.filled % self.frames] = values
        self.filled += 1
        window = self.history[: min(self.filled, self.frames)]
        mean = window.mean(axis=0)
        reference = self._floored(np.median(window, axis=0) if self.p.mode == "running_median" else mean, mean)
        if self.filled < self.frames:
            # Warm-up: a few frames say little about each band's own level (one frame divided by itself
            # is the same value for every band), so lean on the level of all bands together and hand
            # over to each band's own as the window fills.
            weight = (self.filled - 1) / (self.frames - 1)   # 0 at the first frame, 1 once full
            reference = weight * reference + (1.0 - weight) * reference.mean()
        return reference

    def process(self, tick, features):
        out = self.gain * features / (self._reference(features) + self.p.eps)
        out[out < self.p.gate] = 0.0
        return {"features": out.astype(np.float32, copy=False)}


class Smoother(Node):
    """Exponential smoothing F^_n = a F^_n-1 + (1-a) F_n, per frame (seed) or as time constants in seconds."""

    type_name = "smoother"
    stage = "analysis"
    inputs = (Input("features", "features", "values to smooth"),)
    outputs = (Output("features", "features", "smoothed values, same shape"),)
    params = (
        Param("alpha", "float", 0.0, "per-frame factor as in the seed (0.9 mixed, 0.8 tiled at 30 fps); "
              "depends on fps; when > 0 it overrides the time constants", min=0, max=0.9999),
        Param("time_constant", "float", 0.3, "smoothing time constant, the same at any fps; "
              "when > 0 it sets both attack and release", min=0, max=60, unit="s"),
        Param("attack", "float", 0.0, "time constant while values rise (used when time_constant is 0; 0 = instant)",
              min=0, max=60, unit="s"),
        Param("release", "float", 0.0, "time constant while values fall (used when time_constant is 0; 0 = instant)",
              min=0, max=60, unit="s"),
        Param("zero_lag", "bool", False, "smooth forwards then backwards over the whole track: no delay "
              "(offline only)"),
    )

    def configure(self, inputs):
        spec = inputs["features"]
        self.rise, self.fall = self.coefficients()
        self.track = getattr(self, "track", None)
        self.reset()
        return {"features": Spec("features", size=spec.size, labels=spec.labels)}

    def coefficients(self) -> tuple[float, float]:
        """Per-frame factors while rising and falling: a = exp(-1/(tau*fps)), so a^fps is fps-independent."""
        if self.p.alpha > 0:
            return self.p.alpha, self.p.alpha
        fps = float(self.ctx.fps)

        def per_frame(tau: float) -> float:
            return math.exp(-1.0 / (tau * fps)) if tau > 0 else 0.0

        if self.p.time_constant > 0:
            a = per_frame(self.p.time_constant)
            return a, a
        return per_frame(self.p.attack), per_frame(self.p.release)

    def whole_track(self) -> bool:
        return self.p.zero_lag

    def live_problem(self):
        if self.p.zero_lag:
            return f"zero_lag needs the whole track, which a live input never has; add --set {self.name}.zero_lag=false"
        return None

    def reset(self):
        self.state = None

    def _step(self, values: np.ndarray) -> np.ndarray:
        if self.state is None:
            self.state = values.astype(np.float32, copy=True)  # F^_0 = F_0, as the seed
            return self.state.copy()
        a = np.where(values > self.state, self.rise, self.fall).astype(np.float32)
        self.state = a * self.state + (1.0 - a) * values
        return self.state.copy()

    def fit(self, inputs):
        values = inputs["features"].astype(np.float32)
        self.reset()
        forward = np.stack([self._step(v) for v in values]) if len(values) else values
        self.reset()
        backward = np.stack([self._step(v) for v in forward[::-1]])[::-1] if len(values) else values
        self.track = np.ascontiguousarray(backward)
        self.reset()

    def process(self, tick, features):
        if self.p.zero_lag:
            if self.track is None:
                raise RuntimeError("zero_lag needs the prepass before the first frame")
            return {"features": self.track[min(tick.index, len(self.track) - 1)].copy()}
        return {"features": self._step(features)}
