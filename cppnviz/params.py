"""Param declarations and the one validation path shared by files, --set, OSC and hosts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ParamError, describe_found

# A param whose declaration has this default must be given in the graph.
REQUIRED = object()

TYPES = ("float", "int", "bool", "str", "choice", "path", "floats")
# How a fader (OSC /norm, a host's slider) spreads the range: evenly, or evenly in ratios (a param
# spanning decades, where the values that matter would otherwise crowd the fader's first percent).
SCALES = ("linear", "log")


@dataclass(frozen=True)
class Param:
    """A node param: type, default, range, unit and a one-line doc.

    Types: float, int, bool, str, choice (one of `choices`), path (a file path,
    relative paths resolve against the graph file's folder) and floats (one
    number or a list of numbers, each within min..max).

    `scale="log"` (numbers with 0 < min < max) maps a fader's 0..1 onto the range by ratio:
    the middle of the fader is the geometric mean of min and max.
    """

    name: str
    type: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = field(default=())
    scale: str = "linear"
    # A change would reshape an output (frame size, band count): such a param cannot be driven.
    shapes: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"param {self.name}: unknown type {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"param {self.name}: a choice param needs choices")
        if self.scale not in SCALES:
            raise ValueError(f"param {self.name}: unknown scale {self.scale!r}")
        if self.scale == "log" and not (self.type in ("float", "int", "floats") and self.min is not None
                                        and self.max is not None and 0 < self.min < self.max):
            raise ValueError(f"param {self.name}: a log scale needs numbers with 0 < min < max")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def expected(self) -> str:
        """Words for what this param accepts, used in every error message about it."""
        rng = self._range_words()
        if self.type == "float":
            return f"a number{rng}"
        if self.type == "int":
            return f"an integer{rng}"
        if self.type == "bool":
            return "true or false"
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        if self.type == "floats":
            return f"a number or a list of numbers{rng}"
        if self.type == "path":
            return "a file path"
        return "a string"

    def _range_words(self) -> str:
        if self.min is not None and self.max is not None:
            return f" in {_fmt(self.min)}..{_fmt(self.max)}"
        if self.min is not None:
            return f" >= {_fmt(self.min)}"
        if self.max is not None:
            return f" <= {_fmt(self.max)}"
        return ""

    def check(self, value: Any, *, clamp: bool = False) -> tuple[Any, bool]:
        """Return (the value coerced to this param's type, whether it was clamped).

        A wrong type always raises ParamError; an out-of-range number raises
        unless `clamp` is set (live controllers clamp, files and --set do not).
        """
        wrong = ParamError(f"expected {self.expected()}, found {describe_found(value)}")
        raw = value
        t = self.type
        if t == "bool":
            if not isinstance(value, bool):
                raise wrong
            return value, False
        if t in ("str", "path"):
            # An empty path is "none" only for an optional path param, one whose default is empty.
            if not isinstance(value, str) or (t == "path" and not value and self.default != ""):
                raise wrong
            return value, False
        if t == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise wrong
            return value, False
        if t == "floats":
            items = value if isinstance(value, (list, tuple)) else [value]
            if not items or not all(_is_number(v) for v in items):
                raise wrong
            checked = [self._in_range(float(v), clamp, v) for v in items]
            values = [v for v, _ in checked]
            clamped = any(c for _, c in checked)
            return (values if isinstance(value, (list, tuple)) else values[0]), clamped
        if t == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise wrong
            v, clamped = self._in_range(value, clamp, raw)
            return int(v), clamped
        # float
        if not _is_number(value):
            raise wrong
        return self._in_range(float(value), clamp, value)

    def _in_range(self, value, clamp: bool, raw: Any):
        """Check one coerced number; `raw` is what the user wrote, for the message."""
        wrong = ParamError(f"expected {self.expected()}, found {describe_found(raw)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise wrong
        low = self.min if self.min is not None else value
        high = self.max if self.max is not None else value
        if low <= value <= high:
            return value, False
        if not clamp:
            raise wrong
        # The bound may be declared as an int; a float param must still give a float.
        return type(value)(min(max(value, low), high)), True

    def normalized(self, fraction: float) -> Any:
        """Map 0..1 onto this param's range (for controllers that send 0..1), by its scale."""
        if self.min is None or self.max is None:
            raise ParamError(f"param '{self.name}' has no range to map 0..1 onto")
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.scale == "log":
            low = math.log(self.min)
            value = math.exp(low + fraction * (math.log(self.max) - low))
        else:
            value = self.min + fraction * (self.max - self.min)
        # Halves round up (round() would send 2.5 to 2 but 3.5 to 4: uneven knob steps).
        return math.floor(value + 0.5) if self.type == "int" else value

    def fraction(self, value: float) -> float:
        """Where `value` sits on this param's fader, 0..1: the inverse of normalized()."""
        if self.min is None or self.max is None:
            raise ParamError(f"param '{self.name}' has no range to map onto 0..1")
        value = min(max(float(value), self.min), self.max)
        if self.scale == "log":
            return math.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / ((self.max - self.min) or 1.0)

    def describe(self) -> dict:
        """Plain data for the manifest and `cppnviz nodes --json`."""
        out: dict[str, Any] = {"type": self.type, "doc": self.doc}
        out["default"] = None if self.required else self.default
        if self.required:
            out["required"] = True
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.unit:
            out["unit"] = self.unit
        if self.choices:
            out["choices"] = list(self.choices)
        if self.scale != "linear":
            out["scale"] = self.scale
        if self.shapes:
            out["shapes"] = True
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
