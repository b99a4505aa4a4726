"""OSC arguments to param values and back: pure functions of a declaration and the arguments.

`/<node>/<param>` takes a value in the param's own units; `/<node>/<param>/norm` one number 0..1
placed on the param's fader by its declared scale (linear, or log for params that span decades).
"""

from __future__ import annotations

import math
from typing import Any

from cppnviz.errors import ParamError
from cppnviz.params import Param


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def from_value(decl: Param, args: list) -> tuple[Any, bool]:
    """A value in the param's own units: (checked value, clamped?)."""
    if decl.type == "floats":
        # One number sets every band; several set one each.
        return decl.check(list(args) if len(args) > 1 else args[0], clamp=True)
    if len(args) != 1:
        raise ParamError(f"expected one value ({decl.expected()}), found {len(args)}")
    value = args[0]
    # Toggles on most controllers send 0/1 numbers rather than OSC T/F.
    if decl.type == "bool" and _is_number(value) and value in (0, 1):
        value = bool(value)
    return decl.check(value, clamp=True)


def from_norm(decl: Param, args: list) -> tuple[Any, bool]:
    """One number 0..1 placed on the param's fader: (checked value, clamped?)."""
    if len(args) != 1 or not _is_number(args[0]) or not math.isfinite(args[0]):
        found = args[0] if len(args) == 1 else args
        raise ParamError(f"expected one number 0..1, found {found!r}")
    x = float(args[0])
    clamped = not 0.0 <= x <= 1.0
    x = min(max(x, 0.0), 1.0)
    if decl.type == "bool":
        return x >= 0.5, clamped
    if decl.type == "choice":
        n = len(decl.choices)
        return decl.choices[min(int(math.floor(x * n)), n - 1)], clamped
    if decl.type in ("str", "path"):
        raise ParamError(f"a {decl.type} param has no 0..1 form; send the text to /<node>/{decl.name}")
    value, _ = decl.check(decl.normalized(x), clamp=True)
    return value, clamped


def to_norm(decl: Param, value: Any) -> Any:
    """The inverse of from_norm, for queries on /norm addresses."""
    if decl.type == "bool":
        return 1.0 if value else 0.0
    if decl.type == "choice":
        n = len(decl.choices)
        # i/(n-1) lands inside choice i's slice of floor(x*n) and spans 0..1.
        return decl.choices.index(value) / (n - 1) if n > 1 else 0.0
    if decl.type in ("str", "path"):
        raise ParamError(f"param '{decl.name}' has no range to map onto 0..1")
    if isinstance(value, (list, tuple)):
        return [decl.fraction(v) for v in value]
    return decl.fraction(value)
