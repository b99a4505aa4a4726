"""The operator's custom parameters: the fixed 'cppnviz' page and one page per node, built from plain specs.

Every custom page other than 'cppnviz' on a bridge's operator belongs to the bridge: it is
rebuilt when the graph's parameters change shape (another graph, other nodes). Pages are only
destroyed and appended when the names or styles differ, so a steady graph never rebuilds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .layout import Layout, ParSpec
from .naming import TD_NAME

FIXED_PAGE = "cppnviz"


@dataclass(frozen=True)
class Fixed:
    """One of the bridge's own parameters."""

    name: str
    style: str
    label: str
    help: str
    default: Any = None
    menu: tuple[str, ...] = ()


def _append(page, style: str, name: str, label: str):
    if not TD_NAME.match(name):
        raise ValueError(f"bridge bug: {name!r} is not a TouchDesigner parameter name")
    method = {"Float": page.appendFloat, "Int": page.appendInt, "Toggle": page.appendToggle,
              "Menu": page.appendMenu, "Str": page.appendStr, "File": page.appendFile,
              "Pulse": page.appendPulse, "OP": page.appendOP}[style]
    return method(name, label=label)[0]


def _kept(op, names) -> dict[str, tuple[str, Any, list[str]]]:
    """Current (style, value, menu names) of the named parameters the operator has."""
    kept = {}
    for page in op.customPages:
        for par in page.pars:
            if par.name in names:
                kept[par.name] = (par.style, par.val, par.menuNames if par.style == "Menu" else [])
    return kept


def build_fixed_page(op, fixed: tuple[Fixed, ...]) -> None:
    """(Re)create the 'cppnviz' page first among the custom pages, keeping the values the operator already has."""
    kept = _kept(op, {f.name for f in fixed})
    for page in op.customPages:
        if page.name == FIXED_PAGE:
            page.destroy()
    page = op.appendCustomPage(FIXED_PAGE)
    for f in fixed:
        par = _append(page, f.style, f.name, f.label)
        par.help = f.help
        style, value, menu = kept.get(f.name, (None, None, []))
        if f.style == "Menu":
            # An Output menu filled from the graph keeps its entries until the graph says otherwise.
            names = menu if style == "Menu" and menu else list(f.menu)
            par.menuNames, par.menuLabels = names, names
        if f.default is not None:
            par.default = f.default
            par.val = f.default
        if style == f.style and f.style != "Pulse" and value is not None and (f.style != "Menu" or value in par.menuNames):
            par.val = value


def _signature(pages) -> list:
    return [(name, [(p[0], p[1]) for p in pars]) for name, pars in pages]


def build_node_pages(op, layout: Layout, *, keep_values: bool) -> None:
    """Make the node pages match `layout`; values come from the layout, or stay as they are when `keep_values`."""
    existing = [p for p in op.customPages if p.name != FIXED_PAGE]
    have = _signature([(p.name, [(par.name, par.style) for par in p.pars]) for p in existing])
    want = _signature([(node, [(s.name, s.style) for s in specs]) for node, specs in layout.pages])
    kept = _kept(op, {s.name for s in layout.specs}) if keep_values else {}
    if have != want or keep_values:
        for page in existing:
            page.destroy()
        for node, specs in layout.pages:
            page = op.appendCustomPage(node)
            for spec in specs:
                _append(page, spec.style, spec.name, spec.label)
    for spec in layout.specs:
        par = getattr(op.par, spec.name)
        _configure(par, spec)
        style, value, _ = kept.get(spec.name, (None, None, []))
        if style == spec.style and (spec.style != "Menu" or value in spec.choices):
            par.val = value
        else:
            par.val = layout.values[spec.name]


def _configure(par, spec: ParSpec) -> None:
    par.help = spec.help
    if spec.style in ("Float", "Int"):
        if spec.min is not None:
            par.min = spec.min
        if spec.max is not None:
            par.max = spec.max
        # Off, so an out-of-range value reaches the node's validation, which clamps it and warns.
        par.clampMin = par.clampMax = False
        par.normMin, par.normMax = spec.norm_min, spec.norm_max
    if spec.style == "Menu":
        par.menuNames, par.menuLabels = list(spec.choices), list(spec.choices)
    par.default = spec.default
