"""Loading a graph file: parse, validate everything, report every problem at once, configure.

A graph file is plain data:

    fps: 60                # frames per second (tick k is at t = k/fps)
    offset_ms: 0           # > 0 delays the pictures against the sound
    nodes:
      audio:
        type: audio_file
        params: {path: song.mp3}
      bands:
        type: stft_bands
        inputs: {audio: audio.audio}   # links live only under `inputs:`

Links are written `node.port` (or just `node` for its first output) and only
under `inputs:`, params only under `params:`, so a file path with dots can
never be mistaken for a link.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .drive import Drive, check_drives, check_source_size
from .errors import CppnvizError, GraphError, ParamError, Problem, describe_found
from .node import Context, Node
from .outputs import names_a_folder
from .params import REQUIRED, Param
from .ports import Input, Spec
from .timebase import as_fraction

NODE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
UNQUOTED_INDEX = re.compile(r"\{[^}]*\bfrom:\s*[a-z][\w.]*\[")
TOP_KEYS = ("fps", "offset_ms", "osc", "nodes")
OSC_KEYS = ("send", "to")
NODE_KEYS = ("type", "params", "inputs", "drive")


@dataclass(frozen=True)
class Link:
    """An input's source: node `node`, output `port`."""

    node: str
    port: str

    def __str__(self) -> str:
        return f"{self.node}.{self.port}"


@dataclass
class Graph:
    """A validated, configured graph: nodes in topological order and their links."""

    ctx: Context
    nodes: dict[str, Node]
    links: dict[str, dict[str, Link | list[Link]]]
    specs: dict[tuple[str, str], Spec]
    path: Path | None = None
    osc_send: list[Link] = field(default_factory=list)          # outputs sent over OSC every frame (live)
    osc_to: list[tuple[str, int]] = field(default_factory=list)  # where to send them
    drives: list[Drive] = field(default_factory=list)            # params that follow a features value

    def sources(self, name: str) -> list[Link]:
        """What `name` depends on: its input links, then the outputs its drives follow."""
        return _flat(self.links[name].values()) + [Link(d.spec.source, d.spec.port) for d in self.drives
                                                   if d.spec.node == name]

    def of_type(self, type_name: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.type_name == type_name]

    def upstream(self, name: str) -> list[str]:
        """The names of `name` and every node it depends on, in topological order."""
        needed = {name}
        stack = [name]
        while stack:
            for link in self.sources(stack.pop()):
                if link.node not in needed:
                    needed.add(link.node)
                    stack.append(link.node)
        return [n for n in self.nodes if n in needed]

    def files(self, *, written: bool) -> list[str]:
        """The path params' values: those nodes write (written=True) or read; the graph file is read too."""
        found = [] if written or self.path is None else [str(self.path)]
        for node in self.nodes.values():
            found += [getattr(node.p, p.name) for p in node.params
                      if p.type == "path" and getattr(node.p, p.name) and (p.name in node.writes) == written]
        return found

    def feeding(self, type_name: str) -> list[str]:
        """Names of nodes linked into a node of the given type."""
        return [link.node for n in self.of_type(type_name) for link in _flat(self.links[n.name].values())]


def _flat(values) -> list[Link]:
    out: list[Link] = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


# -- entry points ---------------------------------------------------------------

def read_graph_file(path: str | Path) -> dict:
    """Read and parse a graph file with yaml.safe_load; raise GraphError if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphError([Problem(str(path), "graph file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphError([Problem(str(path), f"cannot read graph file: {exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        lines = text.splitlines()
        # YAML ends a plain value at '[' inside { }: the drive written as the issue (and habit) writes it.
        hint = ('; inside { } a drive\'s source with an index needs quotes: from: "node.port[i]"'
                if mark and mark.line < len(lines) and UNQUOTED_INDEX.search(lines[mark.line]) else "")
        raise GraphError([Problem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}{hint}")]) from None
    return data


def load_graph(path: str | Path, overrides: list[tuple[str, str, Any]] = (), *, live: bool = False,
               preset: str | None = None) -> Graph:
    """Read, validate and configure a graph file; `overrides` are (node, param, value) from --set.

    `preset` (a file, or a shipped preset's name) is merged in before the checks.
    """
    path = Path(path)
    data = read_graph_file(path)
    if preset is not None:
        from .presets import apply_preset
        data = apply_preset(data, preset)
    return build_graph(data, base_dir=path.resolve().parent, overrides=overrides, live=live, path=path)


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """Parse `NODE.PARAM=VALUE` from --set; the value is read as YAML (numbers, true, [1, 2])."""
    target, sep, raw = text.partition("=")
    node, dot, param = target.strip().partition(".")
    if not sep or not dot or not node or not param:
        raise GraphError([Problem("--set", f"expected NODE.PARAM=VALUE, found {text!r}")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return node, param, value


def build_graph(data: Any, *, base_dir: Path, overrides=(), live: bool = False, path: Path | None = None) -> Graph:
    """Validate plain graph data and build its nodes; raise GraphError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise GraphError([Problem(str(path or "graph"), f"expected a mapping with 'fps' and 'nodes', found {describe_found(data)}")])

    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(f"'{key}'", f"unknown top-level key; expected one of {', '.join(TOP_KEYS)}"))
    fps = _check_top_number(data, "fps", 60, 1, 1000, problems)
    offset_ms = _check_top_number(data, "offset_ms", 0.0, -10000, 10000, problems)
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.append(Problem("'nodes'", f"expected a mapping of node names to nodes, found {describe_found(raw_nodes)}"))
        raise GraphError(problems)

    ctx = Context(fps=as_fraction(fps if fps else 60), offset_ms=float(offset_ms or 0.0), live=live, base_dir=base_dir)
    raw_nodes = _apply_overrides(raw_nodes, overrides, problems)

    types: dict[str, type[Node]] = {}
    values: dict[str, dict[str, Any]] = {}
    for name, spec in raw_nodes.items():
        where = f"node '{name}'"
        if not isinstance(name, str) or not NODE_NAME.match(name):
            problems.append(Problem(where, "bad node name; expected lowercase letters, digits and _ starting with a letter"))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(where, f"expected a mapping with 'type', 'params', 'inputs', found {describe_found(spec)}"))
            continue
        for key in spec:
            if key not in NODE_KEYS:
                problems.append(Problem(where, f"unknown key '{key}'; expected one of {', '.join(NODE_KEYS)}"))
        type_name = spec.get("type")
        cls = registry.lookup(type_name) if isinstance(type_name, str) else None
        if cls is None:
            known = ", ".join(registry.names())
            if isinstance(type_name, str):
                problems.append(Problem(where, f"unknown node type {type_name!r}; expected one of {known}"))
            else:
                problems.append(Problem(where, f"'type': expected one of {known}, found {describe_found(type_name)}"))
            continue
        types[name] = cls
        values[name] = _check_params(name, cls, spec.get("params") or {}, base_dir, problems)

    # Links to a declared node that is itself broken were reported with that node: one line per mistake.
    broken = {name for name in raw_nodes if name not in types}
    links = {name: _check_inputs(name, types[name], raw_nodes[name].get("inputs") or {}, types, broken, problems)
             for name in types}
    osc_send, osc_to = _check_osc(data.get("osc"), types, broken, problems)
    # Drive problems do not stop the nodes being configured: a bad index is then reported with them.
    drive_problems: list[Problem] = []
    drives = {name: check_drives(name, types[name], raw_nodes[name].get("drive") or {}, types, broken,
                                 drive_problems) for name in types}
    # Drives are edges: a driven node runs after the node it follows (a loop back is a cycle).
    deps = {name: {**links[name], **{f"drive {d.param}": Link(d.source, d.port) for d in drives[name]}}
            for name in types}
    order = _topological_order(types, deps, problems)
    if problems:
        raise GraphError(problems + drive_problems)

    graph = Graph(ctx=ctx, nodes={}, links=links, specs={}, path=path, osc_send=osc_send, osc_to=osc_to)
    failed: set[str] = set()
    for name in order:
        node = types[name](name, values[name], ctx)
        graph.nodes[name] = node
        sources = _flat(links[name].values())
        if any(link.node in failed for link in sources):
            failed.add(name)  # upstream already reported; don't cascade
            continue
        arriving = {port: ([graph.specs[(l.node, l.port)] for l in v] if isinstance(v, list)
                           else graph.specs[(v.node, v.port)]) for port, v in links[name].items()}
        node.input_specs = arriving
        try:
            out_specs = node.configure(arriving)
        except GraphError as exc:
            problems.extend(_node_problem(name, str(p)) for p in exc.items)
            failed.add(name)
            continue
        except CppnvizError as exc:
            problems.append(_node_problem(name, str(exc)))
            failed.add(name)
            continue
        node.output_specs = out_specs
        for out in types[name].outputs:
            graph.specs[(name, out.name)] = out_specs[out.name]
    for name in order:
        for spec in drives[name]:
            if spec.source in failed or name in failed:
                continue
            problem = check_source_size(spec, graph.specs[(spec.source, spec.port)].size)
            if problem is not None:
                drive_problems.append(problem)
                continue
            graph.drives.append(Drive(spec, types[name].param(spec.param), values[name][spec.param], ctx.fps,
                                      trailing=live))
    if problems or drive_problems:
        raise GraphError(problems + drive_problems)
    return graph


# -- checks -----------------------------------------------------------------------

_ABOUT = re.compile(r"^((?:param|input) '[^']*'): (.*)$", re.S)


def _node_problem(name: str, message: str) -> Problem:
    """A problem raised by a node's configure(), worded like the loader's own (node 'x' param 'y': ...)."""
    about = _ABOUT.match(message)
    if about:
        return Problem(f"node '{name}' {about.group(1)}", about.group(2))
    return Problem(f"node '{name}'", message)


def _check_top_number(data, key, default, low, high, problems):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        problems.append(Problem(f"'{key}'", f"expected a number in {low}..{high}, found {describe_found(value)}"))
        return None
    return value


def _apply_overrides(raw_nodes: dict, overrides, problems: list[Problem]) -> dict:
    """Merge --set values into the raw node data so they meet the same validation as the file."""
    if not overrides:
        return raw_nodes
    merged = {name: (dict(spec) if isinstance(spec, dict) else spec) for name, spec in raw_nodes.items()}
    for node, param, value in overrides:
        spec = merged.get(node)
        if not isinstance(spec, dict):
            problems.append(Problem(f"--set {node}.{param}", f"no node named '{node}' in the graph; nodes: {', '.join(map(str, merged))}"))
            continue
        if not isinstance(spec.get("params") or {}, dict):
            continue  # _check_params reports the malformed 'params'
        params = dict(spec.get("params") or {})
        params[param] = value
        spec["params"] = params
    return merged


def _check_params(name: str, cls: type[Node], given: Any, base_dir: Path, problems: list[Problem]) -> dict:
    where = f"node '{name}'"
    if not isinstance(given, dict):
        problems.append(Problem(where, f"'params' must be a mapping, found {describe_found(given)}"))
        given = {}
    declared = {p.name: p for p in cls.params}
    for key in given:
        if key not in declared:
            problems.append(Problem(f"{where} param '{key}'",
                                    f"unknown param for {cls.type_name}; expected one of {', '.join(declared)}"))
    values: dict[str, Any] = {}
    for decl in cls.params:
        if decl.name not in given:
            if decl.required:
                problems.append(Problem(f"{where} param '{decl.name}'", f"missing; expected {decl.expected()}"))
            values[decl.name] = None if decl.default is REQUIRED else decl.default
            continue
        try:
            value, _ = decl.check(given[decl.name])
        except ParamError as exc:
            problems.append(Problem(f"{where} param '{decl.name}'", str(exc)))
            continue
        values[decl.name] = resolve_path(decl, value, base_dir)
    return values


def resolve_path(decl: Param, value: Any, base_dir: Path) -> Any:
    """Relative path params resolve against the graph file's folder; a trailing slash (a folder) is kept."""
    if decl.type != "path" or not value:
        return value
    path = Path(value).expanduser()
    text = str(path if path.is_absolute() else base_dir / path)
    return text + os.sep if names_a_folder(value) else text


def _check_inputs(name, cls, given, types, broken, problems) -> dict[str, Link | list[Link]]:
    where = f"node '{name}'"
    if not isinstance(given, dict):
        problems.append(Problem(where, f"'inputs' must be a mapping of input ports to links, found {describe_found(given)}"))
        given = {}
    declared = {i.name: i for i in cls.inputs}
    links: dict[str, Link | list[Link]] = {}
    for port, value in given.items():
        decl = declared.get(port)
        if decl is None:
            expected = ", ".join(declared) or "none (this node has no inputs)"
            problems.append(Problem(f"{where} input '{port}'", f"unknown input port for {cls.type_name}; expected {expected}"))
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not decl.multiple:
            problems.append(Problem(f"{where} input '{port}'", f"takes one link, found a list of {len(value)}"))
            continue
        resolved = [_check_link(f"{where} input '{port}'", decl, item, types, broken, problems) for item in items]
        if any(r is None for r in resolved):
            continue
        links[port] = resolved if decl.multiple else resolved[0]
    for decl in cls.inputs:
        if decl.required and decl.name not in given:
            problems.append(Problem(f"{where} input '{decl.name}'", f"required input not connected; expected a link to a {decl.kind} output"))
    return links


def _check_link(where, decl, text, types, broken, problems) -> Link | None:
    if not isinstance(text, str) or not text:
        problems.append(Problem(where, f"expected a link 'node.port', found {describe_found(text)}"))
        return None
    if any(text == str(b) or text.startswith(f"{b}.") for b in broken):
        return None  # the broken node (a bad name may hold a dot) was reported with itself
    node, _, port = text.partition(".")
    src = types.get(node)
    if src is None:
        problems.append(Problem(where, f"links to unknown node '{node}' (found {text!r})"))
        return None
    outputs = {o.name: o for o in src.outputs}
    if not port:
        if not src.outputs:
            problems.append(Problem(where, f"node '{node}' ({src.type_name}) has no outputs"))
            return None
        port = src.outputs[0].name
    out = outputs.get(port)
    if out is None:
        problems.append(Problem(where, f"unknown port '{port}' on node '{node}' ({src.type_name}); expected one of {', '.join(outputs) or 'none'}"))
        return None
    if out.kind != decl.kind:
        problems.append(Problem(where, f"incompatible ports: '{node}.{port}' gives {out.kind}, this input expects {decl.kind}"))
        return None
    return Link(node, port)


def parse_destination(text: Any) -> tuple[str, int] | None:
    """'host:port' -> (host, port), or None if it is not one."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _check_osc(section, types, broken, problems) -> tuple[list[Link], list[tuple[str, int]]]:
    """The optional `osc:` section: `send: [node.port, ...]` features outputs, `to: ["host:port", ...]`."""
    if section is None:
        return [], []
    if not isinstance(section, dict):
        problems.append(Problem("'osc'", f"expected a mapping with {', '.join(OSC_KEYS)}, found {describe_found(section)}"))
        return [], []
    for key in section:
        if key not in OSC_KEYS:
            problems.append(Problem("'osc'", f"unknown key '{key}'; expected one of {', '.join(OSC_KEYS)}"))
    sends = section.get("send") or []
    tos = section.get("to") or []
    if not isinstance(sends, list) or not isinstance(tos, list):
        problems.append(Problem("'osc'", "send and to must be lists"))
        return [], []
    wants_features = Input("send", "features", "")
    links = [_check_link("'osc' send", wants_features, item, types, broken, problems) for item in sends]
    destinations = []
    for item in tos:
        dest = parse_destination(item)
        if dest is None:
            problems.append(Problem("'osc' to", f"expected 'host:port', found {describe_found(item)}"))
        else:
            destinations.append(dest)
    return [link for link in links if link is not None], destinations


def _topological_order(types, links, problems) -> list[str]:
    """Depth-first order; a cycle is reported as its path (a -> b -> a)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset] = set()

    def visit(name: str, path: list[str]):
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            key = frozenset(cycle)
            if key not in reported:
                reported.add(key)
                problems.append(Problem("graph", "cycle: " + " -> ".join(cycle)))
            return
        state[name] = 1
        for link in _flat(links.get(name, {}).values()):
            if link.node in types:
                visit(link.node, path + [name])
        state[name] = 2
        order.append(name)

    for name in types:
        visit(name, [])
    return order
