"""Drives: a param follows one features value through seed 003's mapping (avg, step, rate, blur, range, curve).

A drive is written under a node's `drive:` key:

    drive:
      scale: {from: beats.pulse, min: 1.0, max: 1.6}
      feature_gain: {from: smooth.features[0], min: 0.5, max: 2.0, avg: 1.0, step: 0.25, rate: 2}

Per tick the source value x goes through, in order:

1. `blur` (seconds): a moving average; centred on the tick offline (a prepass over the run),
   trailing (the past only) live or with `trailing: true`.
2. `input_range`: x is placed on 0..1 between lo and hi (clipped); `auto` takes the run's min..max
   offline (a prepass) and the running min..max so far live or with `trailing: true`.
3. the curve: piecewise-linear from `min` (input 0) through `avg` (input 0.5) to `max` (input 1);
   `curve: exp` does the same on the logarithm (time constants, zooms: equal ratios per step).
4. `amount`: a blend from the param's static value (0) to the driven one (1).
5. `step`: the value snaps to min + n * step; integer params to whole numbers, choice params
   (and bools) step through their values, min..max being indexes or the values themselves.
6. `rate`: at most `rate` changes of the value in any one-second window (rounded down to whole
   changes; below 1, one change per 1/rate s); a change that would exceed it waits until allowed.

The result goes through the param's own check, clamped like a live controller.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import Problem, describe_found
from .params import Param

KEYS = ("from", "min", "max", "avg", "step", "rate", "blur", "input_range", "curve", "amount", "trailing")
CURVES = ("linear", "exp")
# Params of these types hold one value a mapping can produce.
DRIVABLE = ("float", "int", "choice", "bool")
SOURCE = re.compile(r"^([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


@dataclass(frozen=True)
class Mapping:
    """The mapping fields of one drive, checked; numbers are in the param's units (choice: indexes)."""

    min: float
    max: float
    avg: float | None = None          # None: halfway (a straight line)
    step: float = 0.0                 # 0: no quantising
    rate: float = 0.0                 # changes per second; 0: no cap
    blur: float = 0.0                 # seconds
    input_range: tuple[float, float] | None = None   # None: auto
    curve: str = "linear"
    amount: float = 1.0
    trailing: bool = False

    def shape(self, u: float) -> float:
        """The value at input u in 0..1: piecewise-linear through avg at 0.5 (on the log for curve exp)."""
        lo, hi = self.min, self.max
        mid = self.avg if self.avg is not None else None
        if self.curve == "exp":
            lo, hi = math.log(lo), math.log(hi)
            mid = math.log(mid) if mid is not None else None
        if mid is None:
            v = lo + u * (hi - lo)
        elif u <= 0.5:
            v = lo + 2.0 * u * (mid - lo)
        else:
            v = mid + (2.0 * u - 1.0) * (hi - mid)
        return math.exp(v) if self.curve == "exp" else v

    def quantise(self, v: float) -> float:
        """Snap to min + n * step (within min..max); no step leaves v alone."""
        if not self.step:
            return v
        n = math.floor((v - self.min) / self.step + 0.5)
        lo, hi = sorted((self.min, self.max))
        return min(max(self.min + n * self.step, lo), hi)


@dataclass(frozen=True)
class DriveSpec:
    """One checked `drive:` entry: which param, from which value, through which mapping."""

    node: str
    param: str
    source: str          # node
    port: str
    index: int | None    # None: the output must hold one value
    mapping: Mapping

    @property
    def label(self) -> str:
        """The source as written: node.port or node.port[i]."""
        return f"{self.source}.{self.port}" + (f"[{self.index}]" if self.index is not None else "")

    def pick(self, value: Any) -> float:
        """The one number this drive follows, out of its source output's value for a tick."""
        return float(np.asarray(value).reshape(-1)[self.index or 0])


# -- checking a drive: section ----------------------------------------------------------

def check_drives(name: str, cls, given: Any, types: dict, broken: set, problems: list[Problem]) -> list[DriveSpec]:
    """Check a node's `drive:` mapping (param -> fields); report every problem, return the good drives."""
    where = f"node '{name}'"
    if not isinstance(given, dict):
        problems.append(Problem(where, f"'drive' must be a mapping of params to drives, found {describe_found(given)}"))
        return []
    declared = {p.name: p for p in cls.params}
    found = []
    for param, fields in given.items():
        at = f"{where} drive '{param}'"
        decl = declared.get(param)
        if decl is None:
            problems.append(Problem(at, f"unknown param for {cls.type_name}; expected one of {', '.join(declared)}"))
            continue
        if decl.shapes:
            problems.append(Problem(at, "cannot be driven: a change reshapes the node's output "
                                        "(sizes, counts); set it under 'params' instead"))
            continue
        if decl.type not in DRIVABLE:
            problems.append(Problem(at, f"cannot be driven: a {decl.type} param; drives set numbers, choices and "
                                        f"true/false"))
            continue
        if not isinstance(fields, dict):
            problems.append(Problem(at, f"expected a mapping with 'from', 'min', 'max', ..., found {describe_found(fields)}"))
            continue
        for key in fields:
            if key not in KEYS:
                problems.append(Problem(at, f"unknown key '{key}'; expected one of {', '.join(KEYS)}"))
        source = _check_source(at, fields.get("from"), types, broken, problems)
        mapping = _check_mapping(at, decl, fields, problems)
        if source is not None and mapping is not None:
            found.append(DriveSpec(name, param, *source, mapping))
    return found


def _check_source(at, text, types, broken, problems) -> tuple[str, str, int | None] | None:
    if not isinstance(text, str) or not (m := SOURCE.match(text.strip())):
        problems.append(Problem(at, f"'from': expected 'node.port' or 'node.port[i]' naming a features output, "
                                    f"found {describe_found(text)}"))
        return None
    node, port, index = m.group(1), m.group(2), m.group(3)
    if node in broken:
        return None  # reported with the node itself
    src = types.get(node)
    if src is None:
        problems.append(Problem(at, f"'from': unknown node '{node}' (found {text!r})"))
        return None
    outputs = {o.name: o for o in src.outputs}
    out = outputs.get(port)
    if out is None:
        problems.append(Problem(at, f"'from': unknown port '{port}' on node '{node}' ({src.type_name}); expected one "
                                    f"of {', '.join(outputs) or 'none'}"))
        return None
    if out.kind != "features":
        problems.append(Problem(at, f"'from': '{node}.{port}' gives {out.kind}; a drive follows a features output"))
        return None
    return node, port, None if index is None else int(index)


def _number(at, fields, key, problems, default=None):
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(Problem(at, f"'{key}': expected a number, found {describe_found(value)}"))
        return None
    return float(value)


def _end(at, decl: Param, fields, key, problems) -> float | None:
    """min or max in the param's units (choices and bools as indexes); defaults to the param's own range."""
    if decl.type in ("choice", "bool"):
        values = list(decl.choices) if decl.type == "choice" else [False, True]
        value = fields.get(key, values[0] if key == "min" else values[-1])
        if value in values and not (isinstance(value, (int, float)) and decl.type == "choice"):
            return float(values.index(value))
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values):
            return float(value)
        problems.append(Problem(at, f"'{key}': expected one of {', '.join(map(str, values))} (or its index "
                                    f"0..{len(values) - 1}), found {describe_found(value)}"))
        return None
    default = decl.min if key == "min" else decl.max
    if key not in fields and default is None:
        problems.append(Problem(at, f"'{key}': missing; the param has no range to take it from"))
        return None
    value = _number(at, fields, key, problems, default)
    if value is None:
        return None
    if (decl.min is not None and value < decl.min) or (decl.max is not None and value > decl.max):
        problems.append(Problem(at, f"'{key}': {value:g} lies outside the param's range; expected "
                                    f"{decl.expected()}"))
        return None
    return value


def _check_mapping(at, decl: Param, fields: dict, problems: list[Problem]) -> Mapping | None:
    before = len(problems)
    lo = _end(at, decl, fields, "min", problems)
    hi = _end(at, decl, fields, "max", problems)
    avg = _number(at, fields, "avg", problems) if "avg" in fields else None
    if avg is not None and lo is not None and hi is not None and not min(lo, hi) <= avg <= max(lo, hi):
        problems.append(Problem(at, f"'avg': expected a value between min and max ({lo:g}..{hi:g}), found {avg:g}"))
    numbers = {}   # step, rate, blur, amount
    for key, low, high in (("step", 0, None), ("rate", 0, None), ("blur", 0, 3600), ("amount", 0, 1)):
        value = numbers[key] = _number(at, fields, key, problems, 1.0 if key == "amount" else 0.0)
        if value is not None and (value < low or (high is not None and value > high)):
            rng = f"in {low}..{high}" if high is not None else f">= {low}"
            problems.append(Problem(at, f"'{key}': expected a number {rng}, found {value:g}"))
    curve = fields.get("curve", "linear")
    if curve not in CURVES:
        problems.append(Problem(at, f"'curve': expected one of {', '.join(CURVES)}, found {describe_found(curve)}"))
    elif curve == "exp" and any(v is not None and v <= 0 for v in (lo, hi, avg)):
        problems.append(Problem(at, "'curve': exp needs min, max (and avg) above 0"))
    span = fields.get("input_range", "auto")
    input_range = None
    if span != "auto":
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span) or span[0] >= span[1]):
            problems.append(Problem(at, f"'input_range': expected auto or [lo, hi] with lo < hi, found "
                                        f"{describe_found(span)}"))
        else:
            input_range = (float(span[0]), float(span[1]))
    trailing = fields.get("trailing", False)
    if not isinstance(trailing, bool):
        problems.append(Problem(at, f"'trailing': expected true or false, found {describe_found(trailing)}"))
    if len(problems) > before:
        return None
    return Mapping(min=lo, max=hi, avg=avg, input_range=input_range, curve=curve, trailing=trailing, **numbers)


def check_source_size(spec: DriveSpec, size: int | None) -> Problem | None:
    """The index (or its absence) against the source output's size, known once the source is configured."""
    at = f"node '{spec.node}' drive '{spec.param}'"
    if spec.index is None and size != 1:
        return Problem(at, f"'from': '{spec.label}' holds {size} values; pick one with "
                           f"'{spec.label}[i]', i in 0..{(size or 1) - 1}")
    if spec.index is not None and size is not None and spec.index >= size:
        return Problem(at, f"'from': index {spec.index} out of range; '{spec.source}.{spec.port}' holds {size} "
                           f"values (0..{size - 1})")
    return None


# -- running a drive ----------------------------------------------------------------------

@dataclass
class Drive:
    """One drive at run time: its state (blur, running range, rate history) and the value it holds.

    update() takes each tick's source value (every tick, drawn or not, so blur and rate keep the
    song's time); the runner sets `value` on the node before the node runs.
    """

    spec: DriveSpec
    decl: Param
    static: Any                    # the param's value from the file: amount 0 gives it
    fps: Fraction
    trailing: bool                 # the live variants (trailing blur, running range)
    mapping: Mapping = field(init=False)
    value: Any = field(init=False, default=None)
    # Offline, centred blur and the run's range come from a prepass: 0..1 inputs per tick.
    prepared: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self):
        self.mapping = self.spec.mapping
        self.trailing = self.trailing or self.mapping.trailing
        self.reset()

    @property
    def needs_prepass(self) -> bool:
        m = self.mapping
        return not self.trailing and (m.blur > 0 or m.input_range is None)

    @property
    def ready(self) -> bool:
        return not self.needs_prepass or self.prepared is not None

    def reset(self) -> None:
        """Forget the past (blur window, running range, changes); the prepared inputs stay."""
        n = max(1, round(self.mapping.blur * float(self.fps)))
        self._window: deque = deque(maxlen=n)
        self._sum = 0.0
        self._lo = math.inf
        self._hi = -math.inf
        self._changes: deque = deque()
        self.value = None
        self._tick: int | None = None

    def steer(self, field_name: str, number: float) -> None:
        """Set min, max or amount while running (OSC /<node>/<param>/drive/...); checked by the caller."""
        self.mapping = replace(self.mapping, **{field_name: float(number)})

    def fields(self) -> list[tuple[str, Param]]:
        """The fields a host may steer (min, max, amount), each declared like a param, with its range.

        min and max lie in the param's range (choices and bools: their indexes); above 0 for curve exp.
        """
        decl = self.decl
        if decl.type in ("choice", "bool"):
            low, high = 0, (len(decl.choices) if decl.type == "choice" else 2) - 1
        else:
            low, high = decl.min, decl.max
        if self.mapping.curve == "exp" and (low is None or low <= 0):
            low = 1e-6   # the curve runs on the logarithm
        units = "choices by index" if decl.type in ("choice", "bool") else "in the param's units"
        ends = [(name, Param(name, "float", getattr(self.mapping, name), f"the driven value at input "
                             f"{0 if name == 'min' else 1} ({units})", min=low, max=high, unit=decl.unit))
                for name in ("min", "max")]
        amount = Param("amount", "float", self.mapping.amount, "0: the param's static value, 1: the driven one",
                       min=0, max=1)
        return [*ends, ("amount", amount)]

    # -- the prepass -------------------------------------------------------------------------
    def prepare(self, xs: np.ndarray) -> None:
        """Offline: the source's value at every tick of the run -> the 0..1 input of every tick."""
        xs = np.asarray(xs, np.float64)
        n = max(1, round(self.mapping.blur * float(self.fps)))
        if n > 1:
            # Centred: frames k - n//2 .. k - n//2 + n - 1, the mean of those inside the run.
            sums = np.concatenate(([0.0], np.cumsum(xs)))
            k = np.arange(len(xs))
            a = np.clip(k - n // 2, 0, len(xs))
            b = np.clip(k - n // 2 + n, 0, len(xs))
            xs = (sums[b] - sums[a]) / (b - a)
        lo, hi = self.mapping.input_range or ((float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0))
        self.prepared = _place(xs, lo, hi)

    # -- every tick ------------------------------------------------------------------------
    def update(self, k: int, x: float) -> Any:
        """Take tick k's source value; return (and hold) the param value for tick k.

        A tick is taken once: a second call for the same k (two schedulers over one run) returns the value held.
        """
        if k == self._tick:
            return self.value
        self._tick = k
        if self.prepared is not None and not self.trailing:
            u = float(self.prepared[min(k, len(self.prepared) - 1)])
        else:
            u = self._trailing_input(float(x))
        m = self.mapping
        target = m.shape(u)
        if m.amount < 1.0:
            target = self._number(self.static) + m.amount * (target - self._number(self.static))
        value = self._typed(m.quantise(target))
        if self.value is None:
            self.value = value       # the first value is where the param starts, not a change
        elif value != self.value and self._may_change(k):
            self.value = value
        return self.value

    def _trailing_input(self, x: float) -> float:
        if len(self._window) == self._window.maxlen:
            self._sum -= self._window[0]
        self._window.append(x)
        self._sum += x
        blurred = self._sum / len(self._window)
        if self.mapping.input_range is not None:
            lo, hi = self.mapping.input_range
        else:
            self._lo, self._hi = min(self._lo, blurred), max(self._hi, blurred)
            lo, hi = self._lo, self._hi
        # Plain floats: numpy's per-call overhead on one number is most of a drive's cost per tick.
        return 0.0 if hi <= lo else min(max((blurred - lo) / (hi - lo), 0.0), 1.0)

    def _may_change(self, k: int) -> bool:
        """The rate cap: at most floor(rate) changes in any 1 s (rate < 1: one per 1/rate s)."""
        rate = self.mapping.rate
        if not rate:
            return True
        count, span = (math.floor(rate), Fraction(1)) if rate >= 1 else (1, 1 / Fraction(rate).limit_denominator(10**6))
        now = Fraction(k) / self.fps
        while self._changes and now - self._changes[0] >= span:
            self._changes.popleft()
        if len(self._changes) >= count:
            return False
        self._changes.append(now)
        return True

    def _number(self, value: Any) -> float:
        """A param value as a number on the mapping's scale (choices and bools: their index)."""
        if self.decl.type == "choice":
            return float(self.decl.choices.index(value))
        return float(value)

    def _typed(self, v: float) -> Any:
        """A number on the mapping's scale as the param's value: ints round (halves up), choices index."""
        t = self.decl.type
        if t == "float":
            return v
        n = math.floor(v + 0.5)
        if t == "int":
            return n
        values = list(self.decl.choices) if t == "choice" else [False, True]
        return values[min(max(n, 0), len(values) - 1)]


def _place(x, lo: float, hi: float):
    """x on 0..1 between lo and hi, clipped; a range of one value places everything at 0."""
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
