"""TouchDesigner names for node params: deterministic, collision-free, and matching ^[A-Z][a-z0-9]*$.

The rule: take the node's name and the param's name, join them, lowercase, drop every character
that is not a-z or 0-9 (underscores go), and capitalise the first letter:

    node 'smooth', param 'time_constant'  ->  Smoothtimeconstant
    node 'bands',  param 'n_fft'          ->  Bandsnfft

TouchDesigner accepts nothing else (a parameter called `band_gain` cannot exist). Two pairs can
then meet (node 'a_b' param 'c' and node 'a' param 'b_c' are both `Abc`), and a node param can
meet one of the bridge's own parameters (node 'gra', param 'ph' is `Graph`). Names are handed out
in a fixed order: the bridge's own parameters first, then the graph file's nodes in file order,
each node's params in declaration order. A name already taken gets the smallest numeric suffix,
from 2 up, that is still free (`Abc`, then `Abc2`). The same graph file therefore always gives
the same names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TD_NAME = re.compile(r"^[A-Z][a-z0-9]*$")


def base_name(node: str, param: str) -> str:
    """Node name + param name, lowercase a-z0-9 only, first letter capitalised."""
    raw = re.sub(r"[^a-z0-9]", "", f"{node}{param}".lower())
    if not raw or not raw[0].isalpha():
        # Node names start with a letter (the graph loader checks), so this only guards odd plugins.
        raw = "p" + raw
    return raw[0].upper() + raw[1:]


def assign_names(pairs: Iterable[tuple[str, str]], reserved: Iterable[str] = ()) -> dict[tuple[str, str], str]:
    """A TouchDesigner name for each (node, param) pair, in the order given; `reserved` names are never used."""
    taken = set(reserved)
    names: dict[tuple[str, str], str] = {}
    for node, param in pairs:
        base = base_name(node, param)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        if not TD_NAME.match(name):
            raise ValueError(f"bridge bug: {name!r} for {node}.{param} is not a TouchDesigner parameter name")
        taken.add(name)
        names[(node, param)] = name
    return names
