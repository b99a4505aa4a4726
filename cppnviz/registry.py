"""Node types by name, discovered on first use from the node library and installed plugins.

The engine never imports a node module by name: it walks the `cppnviz.nodes`
package (the repository's `nodes/` folder) and the `cppnviz.nodes` entry-point
group, so third-party node packs register the same way.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from importlib.metadata import entry_points

from .node import Node

_types: dict[str, type[Node]] | None = None


def _discover() -> dict[str, type[Node]]:
    found: dict[str, type[Node]] = {}
    package = importlib.import_module("cppnviz.nodes")
    modules = [importlib.import_module(f"{package.__name__}.{m.name}")
               for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    for ep in entry_points(group="cppnviz.nodes"):
        modules.append(ep.load())
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Node) and cls.type_name and cls.__module__ == module.__name__:
                if cls.type_name in found and found[cls.type_name] is not cls:
                    raise RuntimeError(f"node type '{cls.type_name}' is defined twice")
                found[cls.type_name] = cls
    return dict(sorted(found.items()))


def all_types() -> dict[str, type[Node]]:
    global _types
    if _types is None:
        _types = _discover()
    return _types


def lookup(type_name: str) -> type[Node] | None:
    return all_types().get(type_name)


def names() -> list[str]:
    return list(all_types())
