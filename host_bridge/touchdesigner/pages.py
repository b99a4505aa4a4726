"""The operator's custom parameters: the fixed 'cppnviz' page and one page per node, built from plain specs.

Every custom page other than 'cppnviz' on a bridge's operator belongs to the bridge. A page is
destroyed and appended again only when its parameters' names or styles differ (another graph,
other params); pages that only move are reordered (sortCustomPages), so a steady graph never
rebuilds them.

A parameter the user drives — an expression, a CHOP export, a bind (mode other than CONSTANT) —
is never given a value: setting `par.val` puts a parameter into constant mode, erasing what drove
it. When pages are rebuilt, every parameter that remains (same name and style) gets back its
value, expression, bind expression and mode. An export cannot be given back from here (the
exporting CHOP makes it); *unverified*: whether TouchDesigner re-attaches it to the new parameter.
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


@dataclass(frozen=True)
class Saved:
    """What the user had on a parameter about to be rebuilt."""

    style: str
    val: Any
    mode: Any          # a ParMode member, handed back as it was
    expr: str
    bind_expr: str
    menu: list[str]


def is_constant(par) -> bool:
    """Whether the parameter holds its own value (compared by name: td.ParMode may not exist)."""
    return par.mode.name == "CONSTANT"


def _append(page, style: str, name: str, label: str):
    if not TD_NAME.match(name):
        raise ValueError(f"bridge bug: {name!r} is not a TouchDesigner parameter name")
    method = {"Float": page.appendFloat, "Int": page.appendInt, "Toggle": page.appendToggle,
              "Menu": page.appendMenu, "Str": page.appendStr, "File": page.appendFile,
              "Pulse": page.appendPulse, "CHOP": page.appendCHOP}[style]
    return method(name, label=label)[0]


def _save(pages, names) -> dict[str, Saved]:
    saved = {}
    for page in pages:
        for par in page.pars:
            if par.name in names:
                saved[par.name] = Saved(par.style, None if par.style == "Pulse" else par.val, par.mode, par.expr,
                                        par.bindExpr, par.menuNames if par.style == "Menu" else [])
    return saved


def _restore(par, saved: Saved | None) -> bool:
    """Give a new parameter what its predecessor had; False when there is nothing to give (it needs a value)."""
    if saved is None or saved.style != par.style:
        return False
    has_value = saved.style != "Pulse" and (saved.style != "Menu" or saved.val in par.menuNames)
    if has_value:
        par.val = saved.val
    if saved.expr:
        par.expr = saved.expr
    if saved.bind_expr:
        par.bindExpr = saved.bind_expr
    if saved.mode.name != "EXPORT":
        par.mode = saved.mode
    return has_value or not is_constant(par)


def _signature(pages) -> list:
    return [(page.name, [(par.name, par.style) for par in page.pars]) for page in pages]


def build_fixed_page(op, fixed: tuple[Fixed, ...]) -> None:
    """Make the 'cppnviz' page, first among the custom pages; one that already has these parameters is left alone."""
    existing = [p for p in op.customPages if p.name == FIXED_PAGE]
    if _signature(existing) == [(FIXED_PAGE, [(f.name, f.style) for f in fixed])]:
        return
    saved = _save(existing, {f.name for f in fixed})
    for page in existing:
        page.destroy()
    page = op.appendCustomPage(FIXED_PAGE)
    for f in fixed:
        par = _append(page, f.style, f.name, f.label)
        par.help = f.help
        old = saved.get(f.name)
        if f.style == "Menu":
            # An Output menu filled from the graph keeps its entries until the graph says otherwise.
            names = old.menu if old is not None and old.style == "Menu" and old.menu else list(f.menu)
            par.menuNames, par.menuLabels = names, names
        if f.default is not None:
            par.default = f.default
            par.val = f.default
        _restore(par, old)
    _sort(op, [FIXED_PAGE] + [p.name for p in op.customPages if p.name != FIXED_PAGE])


def _sort(op, order: list[str]) -> None:
    if [p.name for p in op.customPages] != order:
        op.sortCustomPages(*order)


def build_node_pages(op, layout: Layout, *, keep_values: bool) -> None:
    """Make the node pages match `layout`; constant parameters take the layout's values (unless `keep_values`)."""
    want = {node: [(s.name, s.style) for s in specs] for node, specs in layout.pages}
    pages = [p for p in op.customPages if p.name != FIXED_PAGE]
    names = [p.name for p in pages]
    stale = [p for p in pages if names.count(p.name) > 1 or _signature([p]) != [(p.name, want.get(p.name))]]
    saved = _save(stale, {s.name for s in layout.specs})
    for page in stale:
        page.destroy()
    kept_pages = {p.name for p in pages if p not in stale}
    rebuilt = set()
    for node, specs in layout.pages:
        if node not in kept_pages:
            page = op.appendCustomPage(node)
            for spec in specs:
                _append(page, spec.style, spec.name, spec.label)
                rebuilt.add(spec.name)
    fixed = [p.name for p in op.customPages if p.name == FIXED_PAGE]
    _sort(op, fixed + [node for node, _ in layout.pages])
    for spec in layout.specs:
        par = getattr(op.par, spec.name)
        _configure(par, spec)
        kept = _restore(par, saved.get(spec.name)) if spec.name in rebuilt else keep_values
        if is_constant(par) and not (keep_values and kept):
            par.val = layout.values[spec.name]


def _configure(par, spec: ParSpec) -> None:
    par.help = spec.help
    par.readOnly = spec.read_only
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
