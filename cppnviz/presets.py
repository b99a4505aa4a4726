"""Presets: shareable YAML files of drives and static params for named nodes, applied over a graph.

    name: calm zoom
    description: a slow zoom that breathes with the bass
    nodes:
      cppn:
        params: {activation: tanh}
        drive:
          scale: {from: "smooth.features[0]", min: 0.8, max: 1.4, blur: 2.0}

The preset's params and drives replace the graph's (a drive set to null removes the graph's drive,
so the param keeps its static value); the merged graph is then checked like any graph file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import GraphError, Problem, describe_found

KEYS = ("name", "description", "nodes")
NODE_KEYS = ("params", "drive")


def shipped_folder() -> Path:
    """Where the presets that come with cppnviz live (examples/presets)."""
    return Path(__file__).resolve().parents[1] / "examples" / "presets"


def shipped() -> list[Path]:
    return sorted(shipped_folder().glob("*.yaml"))


def find(text: str) -> Path:
    """A preset file by path, or by the name of a shipped one (`beat_punch`)."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    named = shipped_folder() / f"{text}.yaml"
    if named.exists() and "/" not in text:
        return named
    names = ", ".join(p.stem for p in shipped()) or "none"
    raise GraphError([Problem(f"--preset {text}", f"no such file, nor a shipped preset; shipped: {names}")])


def read_preset(text: str) -> tuple[Path, dict]:
    """Read and check a preset's own structure (its params and drives are checked with the graph)."""
    from .graph import read_graph_file

    path = find(text)
    data = read_graph_file(path)
    where = f"preset {path}"
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise GraphError([Problem(where, f"expected a mapping with name, description and nodes, found "
                                         f"{describe_found(data)}")])
    for key in data:
        if key not in KEYS:
            problems.append(Problem(where, f"unknown key '{key}'; expected one of {', '.join(KEYS)}"))
    for key in ("name", "description"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
            problems.append(Problem(where, f"'{key}': expected one line of text, found {describe_found(value)}"))
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        problems.append(Problem(where, f"'nodes': expected a mapping of node names to params and drives, found "
                                       f"{describe_found(nodes)}"))
        nodes = {}
    for name, spec in nodes.items():
        if not isinstance(spec, dict):
            problems.append(Problem(f"{where} node '{name}'", f"expected a mapping with params and drive, found "
                                                               f"{describe_found(spec)}"))
            continue
        for key, value in spec.items():
            if key not in NODE_KEYS:
                problems.append(Problem(f"{where} node '{name}'", f"unknown key '{key}'; expected one of "
                                                                   f"{', '.join(NODE_KEYS)}"))
            elif not isinstance(value, dict):
                problems.append(Problem(f"{where} node '{name}'", f"'{key}' must be a mapping, found "
                                                                   f"{describe_found(value)}"))
    if problems:
        raise GraphError(problems)
    return path, data


def apply_preset(graph: Any, text: str) -> Any:
    """The graph data with the preset's params and drives merged in; every problem at once."""
    path, preset = read_preset(text)
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, dict):
        return graph  # the graph's own check reports it
    merged = dict(nodes)
    problems = []
    for name, spec in preset["nodes"].items():
        target = merged.get(name)
        if not isinstance(target, dict):
            problems.append(Problem(f"preset {path} node '{name}'", f"not in the graph; its nodes: "
                                                                     f"{', '.join(map(str, nodes))}"))
            continue
        target = dict(target)
        for key in NODE_KEYS:
            if key in spec:
                own = target.get(key) if isinstance(target.get(key), dict) else {}
                combined = {**own, **spec[key]}
                target[key] = {k: v for k, v in combined.items() if not (key == "drive" and v is None)}
        merged[name] = target
    if problems:
        raise GraphError(problems)
    return {**graph, "nodes": merged}


def describe(path: Path) -> tuple[str, str]:
    """(name, description) of a preset file, for `cppnviz presets`."""
    _, data = read_preset(str(path))
    return data["name"], data["description"]
