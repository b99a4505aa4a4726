"""The node pages as plain data: one TouchDesigner parameter per node param, and value conversions both ways.

Param type -> TouchDesigner parameter:

    float  -> Float      int    -> Int       bool -> Toggle     choice -> Menu (its choices)
    str    -> Str        path   -> File
    floats -> Str holding the numbers separated by commas ("20, 60, 250"). A `floats` param takes
              one number or a list whose length the graph decides (band edges, one gain per band);
              a TouchDesigner parameter has a fixed number of fields, so one text field it is.
              One number without a comma is a single value; "0.5," is a list of one.

Ranges come from the declaration: min/max as the parameter's min/max and as its slider range
(normMin/normMax), with clampMin/clampMax off so an out-of-range value reaches the node's own
validation, which clamps it and says so on the operator.

A param declared with a log scale (it spans decades: cppn scale 0.01..100) keeps its own units
here, so an expression, a bind or a CHOP export means what the graph file and OSC mean by it.
TouchDesigner's sliders are linear only (normMin/normMax, no curve), and across four decades
every useful value would crowd the slider's first percent; so its slider spans one decade either
side of the default instead (within min..max). The parameter's min/max stay the declared ones:
a typed or driven value reaches the whole range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cppnviz.errors import ParamError
from cppnviz.graph import Graph, resolve_path
from cppnviz.params import Param

from .naming import assign_names

# The page of the drives' mappings (capitalised: node names, and so node pages, are lowercase).
DRIVE_PAGE = "Drive"

# A log-scaled param's slider spans the default divided and multiplied by this (see above).
LOG_SLIDER_SPAN = 10.0

STYLE = {"float": "Float", "int": "Int", "bool": "Toggle", "choice": "Menu", "str": "Str", "path": "File",
         "floats": "Str"}


@dataclass(frozen=True)
class ParSpec:
    """One node param as a TouchDesigner custom parameter."""

    name: str            # TouchDesigner name, ^[A-Z][a-z0-9]*$
    node: str
    param: str
    style: str           # Float, Int, Toggle, Menu, Str, File
    label: str
    help: str
    default: Any         # in TouchDesigner's form (floats as text)
    min: float | None = None
    max: float | None = None
    norm_min: float | None = None
    norm_max: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False  # a driven param: the drive sets it every tick


@dataclass(frozen=True)
class Layout:
    """What the operator's parameters should look like for a loaded graph."""

    generation: int                      # bumps on every load: changes read from older pages are dropped
    pages: tuple[tuple[str, tuple[ParSpec, ...]], ...]   # (page name = node name, its parameters)
    values: dict[str, Any] = field(default_factory=dict)  # TouchDesigner name -> current value, TD form
    targets: tuple[str, ...] = ()        # outputs the Output/Features menu offers ('node.port')
    target: str = ""                     # the one shown now
    fps: float = 60.0

    @property
    def specs(self) -> list[ParSpec]:
        return [spec for _, specs in self.pages for spec in specs]


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def to_td(decl: Param, value: Any) -> Any:
    """A node param's value in the form its TouchDesigner parameter holds."""
    if decl.type == "floats":
        items = value if isinstance(value, (list, tuple)) else [value]
        return ", ".join(_number(v) for v in items)
    if decl.type in ("str", "path", "choice"):
        return "" if value is None else str(value)
    if decl.type == "bool":
        return bool(value)
    if decl.type == "int":
        return int(value)
    return float(value)


def parse_floats(text: str) -> float | list[float]:
    """'0.5' -> 0.5; '20, 60, 250' -> [20.0, 60.0, 250.0]; anything else raises ParamError."""
    parts = [p.strip() for p in str(text).split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing comma makes a list of what came before
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ParamError(f"expected numbers separated by commas, found {text!r}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ParamError(f"expected finite numbers, found {text!r}")
    return numbers[0] if "," not in str(text) else numbers


def from_td(decl: Param, raw: Any, base_dir: Path) -> Any:
    """A TouchDesigner parameter's value as the node param expects it (validation happens in set_param)."""
    if decl.type == "floats":
        return parse_floats(raw)
    if decl.type == "path":
        return resolve_path(decl, raw, base_dir) if raw else raw
    if decl.type == "bool":
        return bool(raw)
    return raw


def _help(decl: Param) -> str:
    unit = f", {decl.unit}" if decl.unit else ""
    text = "numbers separated by commas: " if decl.type == "floats" else ""
    return f"{decl.doc} ({text}{decl.expected()}{unit})"


def _slider(decl: Param) -> tuple[float | None, float | None]:
    """The slider's range: the declared range, or a span around the default where a side is open (log: a decade each side)."""
    if decl.type not in ("float", "int"):
        return None, None
    if decl.scale == "log":
        middle = math.sqrt(decl.min * decl.max) if decl.required else float(decl.default)
        return max(decl.min, middle / LOG_SLIDER_SPAN), min(decl.max, middle * LOG_SLIDER_SPAN)
    default = 0.0 if decl.required else float(decl.default)
    low = decl.min if decl.min is not None else min(0.0, default)
    high = decl.max if decl.max is not None else max(low + 1.0, 2.0 * abs(default))
    return low, high


def spec_for(name: str, node: str, decl: Param) -> ParSpec:
    low, high = _slider(decl)
    style = STYLE[decl.type]
    default = ({"Float": 0.0, "Int": 0, "Toggle": False}.get(style, "") if decl.required
               else to_td(decl, decl.default))
    return ParSpec(
        name=name, node=node, param=decl.name, style=style, label=decl.name, help=_help(decl), default=default,
        min=decl.min if decl.type in ("float", "int") else None,
        max=decl.max if decl.type in ("float", "int") else None,
        norm_min=low, norm_max=high, choices=tuple(decl.choices))


def build_layout(graph: Graph, page_nodes: list[str], reserved: tuple[str, ...], *, generation: int,
                 targets: tuple[str, ...], target: str) -> Layout:
    """The pages for `page_nodes` (in the graph file's order) with their current values."""
    drives = [d for d in getattr(graph, "drives", ()) if d.spec.node in page_nodes]   # (plain stand-ins have none)
    driven = {(d.spec.node, d.spec.param): d for d in drives}
    # A mapping field's param is 'scale/drive/min': the pipeline steers the drive with it.
    steered = [(d.spec.node, f"{d.spec.param}/drive/{name}", decl) for d in drives for name, decl in d.fields()]
    pairs = [(node, decl.name) for node in page_nodes for decl in graph.nodes[node].params]
    names = assign_names(pairs + [(node, key) for node, key, _ in steered], reserved)
    pages, values = [], {}
    for node in page_nodes:
        specs = []
        for decl in graph.nodes[node].params:
            spec = spec_for(names[(node, decl.name)], node, decl)
            if (node, decl.name) in driven:
                spec = replace(spec, read_only=True, help=f"{spec.help}; driven by {driven[(node, decl.name)].spec.label}:"
                                                           f" its mapping is on the {DRIVE_PAGE} page")
            specs.append(spec)
            values[spec.name] = to_td(decl, getattr(graph.nodes[node].p, decl.name))
        if specs:
            pages.append((node, tuple(specs)))
    if steered:
        specs = []
        for node, key, decl in steered:
            param, _, name = key.partition("/drive/")
            spec = replace(spec_for(names[(node, key)], node, decl), param=key, label=f"{node} {param} {name}")
            specs.append(spec)
            values[spec.name] = float(decl.default)
        pages.append((DRIVE_PAGE, tuple(specs)))
    return Layout(generation=generation, pages=tuple(pages), values=values, targets=targets, target=target,
                  fps=float(graph.ctx.fps))
