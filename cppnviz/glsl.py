"""Fragment shaders generated from a graph's render nodes: the same weights and params the numpy path uses.

A render node's shader form is a GLSL function `vec3 node_NAME(vec2 ij)` of continuous pixel
coordinates in that node's frame (ij = (row, column), pixel centres at integers, row 0 at the
top, as numpy indexes the frame), so a tiler can place its input frames' functions in its cells
and any canvas size samples the same picture. Weights are read from the node objects the graph
built (never a second copy of the network maths) and baked in as float32 literals that round-trip
exactly: WebGL2 guarantees only 224 uniform vectors. Features arrive as one uniform float array,
the time as one uniform float. Targets: webgl2 (GLSL ES 3.00), glsl330, touchdesigner (a GLSL TOP
pixel shader: `vUV.st`, `out vec4 fragColor`, `TDOutputSwizzle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import CppnvizError
from .graph import Graph, Link

TARGETS = ("webgl2", "glsl330", "touchdesigner")
# Uniform names per target: TouchDesigner's own are prefixed uTD, so ours are plain camel case there.
UNIFORMS = {"webgl2": ("u_features", "u_time"), "glsl330": ("u_features", "u_time"),
            "touchdesigner": ("uFeatures", "uTime")}
# Baked weights past this many make shaders that browsers take seconds to compile (or refuse).
MAX_WEIGHTS = 200_000


class ShaderError(CppnvizError):
    """A graph (or node) that cannot be written as a shader."""


@dataclass
class Shader:
    """A generated fragment shader and what feeds it: `features` links end to end fill the uniform array."""

    source: str
    target: str
    width: int                      # the frame the shader draws, in the graph's pixels
    height: int
    features: list[Link] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)   # values of each features link

    @property
    def n_features(self) -> int:
        return sum(self.sizes)


def literal(value) -> str:
    """A GLSL float literal that reads back as exactly this float32 (the shortest such digits)."""
    v = np.float32(value)
    if not np.isfinite(v):
        raise ShaderError(f"a weight is {float(v)}: a shader needs finite numbers")
    if v == 0 or 1e-4 <= abs(v) < 1e7:
        return np.format_float_positional(v, unique=True, trim="0")
    return np.format_float_scientific(v, unique=True, trim="0")


def _vec4(values) -> str:
    return "vec4(" + ", ".join(literal(v) for v in values) + ")"


def _padded(w: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """w in the top-left corner of zeros (rows, cols): units padded to whole vec4s contribute exact zeros."""
    out = np.zeros((rows, cols), np.float32)
    out[:w.shape[0], :w.shape[1]] = w
    return out


def _blocks(n: int) -> int:
    return (n + 3) // 4


_ACT = {
    # tanh clamped first: some drivers compute it from exp(2x), which overflows to NaN past |x| ~ 44;
    # tanh(15) is already 1 in float32.
    "tanh": "tanh(clamp({x}, -15.0, 15.0))",
    "sin": "sin({x})",
    "gaussian": "gaussian({x})",  # a function, so the sum is written (and computed) once
    "clip": "clamp({x}, -1.0, 1.0)",
}


def network_function(fname: str, net, *, half_y: float, half_x: float, scale: float, vignette: bool,
                     features: list[str], gain: str = "1.0") -> str:
    """GLSL `vec3 fname(vec2 ij)` of a cppn Network: its float32 weights (and biases, where it holds them).

    `features` are GLSL expressions of the values fed beside (row, col, r), times `gain`. Layer 1's
    feature and cos(t) weights are the float64 ones numpy multiplies per frame, rounded to float32.
    """
    act = _ACT[net.activation]
    w_layers = [np.asarray(w, np.float32) for w in net.w_layers]
    w_frame = np.asarray(net.weights64[0][3:], np.float64).astype(np.float32)
    if len(features) != net.n_features:
        raise ShaderError(f"{fname}: expected {net.n_features} feature expressions, found {len(features)}")
    # Fitted networks carry biases (the seed's have none): layer 1's in b_first, which numpy adds to the
    # per-frame term, the later layers' in biases[layer - 1].
    b_first = np.asarray(getattr(net, "b_first", 0.0), np.float64).astype(np.float32)
    biases = getattr(net, "biases", None)
    total = sum(w.size for w in w_layers) + w_frame.size
    if total > MAX_WEIGHTS:
        raise ShaderError(f"{fname}: {total} weights is more than a shader can bake ({MAX_WEIGHTS} at most); "
                          "use fewer layers or hidden units")
    hidden = w_layers[0].shape[1]
    nb = _blocks(hidden)
    lines = [f"vec3 {fname}(vec2 ij) {{",
             # The numpy path's coordinates: (i - n/2) / half * scale, r from the scaled pair.
             f"    float y = (ij.x - {literal(net.height / 2.0)}) / {literal(half_y)} * {literal(scale)};",
             f"    float x = (ij.y - {literal(net.width / 2.0)}) / {literal(half_x)} * {literal(scale)};",
             "    float r = sqrt(y * y + x * x);"]
    extra = [f"({e}) * {gain}" for e in features]
    if net.period > 0:
        # fract first: cos of a huge float32 argument would lose the phase an hour into a song.
        lines.append(f"    float c = cos(6.283185307179586 * fract({{time}} / {literal(net.period)}));")
        extra.append("c")
    first = _padded(w_layers[0][:3], 3, nb * 4)
    frame = _padded(w_frame, len(extra), nb * 4)
    for o in range(nb):
        cols = slice(4 * o, 4 * o + 4)
        terms = [f"y * {_vec4(first[0, cols])}", f"x * {_vec4(first[1, cols])}", f"r * {_vec4(first[2, cols])}"]
        terms += [f"{e} * {_vec4(frame[k, cols])}" for k, e in enumerate(extra) if frame[k, cols].any()]
        if b_first.any():
            terms.append(_vec4(_padded(np.broadcast_to(b_first, (hidden,))[None], 1, nb * 4)[0, cols]))
        lines.append(f"    vec4 h0_{o} = " + act.format(x=" + ".join(terms)) + ";")
    n_layers = len(w_layers)
    for layer in range(1, n_layers):
        w = w_layers[layer]
        last = layer == n_layers - 1
        nb_in, nb_out = _blocks(w.shape[0]), _blocks(w.shape[1])
        wp = _padded(w, nb_in * 4, nb_out * 4)
        for o in range(nb_out):
            terms = []
            for i in range(nb_in):
                block = wp[4 * i:4 * i + 4, 4 * o:4 * o + 4]
                if block.any():
                    # mat4 takes columns: column k is input unit 4i+k's weights to outputs 4o..4o+3,
                    # which is the block's row k, so the block in C order is the constructor's order.
                    terms.append(f"mat4({', '.join(literal(v) for v in block.ravel())}) * h{layer - 1}_{i}")
            if biases is not None:
                bias = _padded(np.asarray(biases[layer - 1], np.float32)[None], 1, nb_out * 4)
                terms.append(_vec4(bias[0, 4 * o:4 * o + 4]))
            z = " + ".join(terms) or "vec4(0.0)"
            if last and net.mapping == "sigmoid":
                # 1/(1+exp(-z)) == (1 + tanh(z/2)) / 2, as numpy computes it.
                value = f"tanh(clamp(0.5 * ({z}), -15.0, 15.0))"
            else:
                value = act.format(x=z)
            lines.append(f"    vec4 h{layer}_{o} = {value};")
    out = f"h{n_layers - 1}_0"
    colour = f"{out}.rgb" if w_layers[-1].shape[1] == 3 else f"vec3({out}.x)"
    lines.append(f"    vec3 rgb = {colour} * 0.5 + 0.5;")
    if vignette:
        # The frame's vignette uses the unzoomed radius, so `scale` does not move it.
        lines.append(f"    rgb *= max(0.0, 1.0 - r / {literal(scale)});")
    lines += ["    return rgb;", "}"]
    return "\n".join(lines)


# -- the render nodes' shader forms -------------------------------------------------------

class _Writer:
    """Collects the functions of one graph's render nodes and the features links they read."""

    def __init__(self, graph: Graph, target: str):
        self.graph, self.target = graph, target
        self.features_name, self.time_name = UNIFORMS[target]
        self.functions: list[str] = []
        self.done: set[str] = set()
        self.links: list[Link] = []
        self.offsets: dict[Link, int] = {}
        self.total = 0

    def feature(self, link: Link, k: int) -> str:
        """The GLSL expression of value k of a features link (given a place in the uniform array)."""
        if link not in self.offsets:
            self.offsets[link] = self.total
            self.links.append(link)
            self.total += int(self.graph.specs[(link.node, link.port)].size or 0)
        return f"{self.features_name}[{self.offsets[link] + k}]"

    def node(self, name: str) -> str:
        """Write node `name`'s function (and those of the frames it reads) once; return its name."""
        fname = f"node_{name}"
        if name in self.done:
            return fname
        node = self.graph.nodes[name]
        form = SHADER_FORMS.get(node.type_name)
        if form is None or node.stage != "render":
            known = ", ".join(SHADER_FORMS)
            raise ShaderError(f"node '{name}' ({node.type_name}) has no shader form; nodes with one: {known}")
        # A driven param changes every tick; the shader bakes params, so it cannot follow one yet.
        for drive in getattr(self.graph, "drives", ()):
            if drive.spec.node == name:
                raise ShaderError(f"node '{name}' param '{drive.spec.param}' is driven by "
                                  f"{drive.spec.source}.{drive.spec.port}: shaders bake params and cannot follow "
                                  "a drive yet; remove the drive to export this node")
        body = form(self, name, node, fname)
        self.functions.append(body.replace("{time}", self.time_name))
        self.done.add(name)
        return fname


def _features_link(graph: Graph, name: str) -> Link | None:
    link = graph.links[name].get("features")
    return link if isinstance(link, Link) else None


def _cppn(w: _Writer, name: str, node, fname: str) -> str:
    p = node.p
    link = _features_link(w.graph, name)
    n = node.network.n_features
    gain = literal(p.feature_gain)
    neutral = getattr(node.network, "neutral", None)
    if link is None and neutral is not None:
        # A fitted look with no features link shows the neutral vector it was fitted for, as numpy does.
        features, gain = [literal(v) for v in neutral], "1.0"
    else:
        features = [w.feature(link, k) for k in range(n)] if n else []
    half_y, half_x = (p.height / 2.0, p.width / 2.0) if p.aspect == "stretch" else (min(p.height, p.width) / 2.0,) * 2
    return network_function(fname, node.network, half_y=half_y, half_x=half_x, scale=p.scale, vignette=p.vignette,
                            features=features, gain=gain)


def _origin(view: np.ndarray, base: np.ndarray) -> tuple[int, int]:
    """(row, column) of a view's first pixel in the frame it was cut from: the layout the node itself made."""
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return offset // base.strides[0], (offset % base.strides[0]) // base.strides[1]


def _tiler(w: _Writer, name: str, node, fname: str) -> str:
    frame, bg = node.frame, literal(node.bg)
    links = w.graph.links[name].get("frames") or []
    links = links if isinstance(links, list) else [links]
    parts = []
    band_link = _features_link(w.graph, name)
    for b, network in enumerate(node.networks):
        # Each band's network sees its band value as its one feature, as Tiler.process feeds it.
        parts.append(network_function(f"{fname}_band{b}", network, half_y=network.height / 2.0,
                                      half_x=network.width / 2.0, scale=1.0, vignette=False, features=["v"]))
        parts[-1] = parts[-1].replace(f"vec3 {fname}_band{b}(vec2 ij)", f"vec3 {fname}_band{b}(vec2 ij, float v)")
    body = [f"vec3 {fname}(vec2 ij) {{", "    vec2 p = floor(ij + 0.5);  // the pixel this point falls in"]
    for link, view in zip(links, node.frame_views):
        y0, x0 = _origin(view, frame)
        h, wd = view.shape[:2]
        inner = w.node(link.node)
        body.append(f"    if (p.x >= {y0}.0 && p.x < {y0 + h}.0 && p.y >= {x0}.0 && p.y < {x0 + wd}.0) "
                    f"return {inner}(ij - vec2({y0}.0, {x0}.0));")
    radius_gain = literal(node.p.radius_gain)
    for b, view in enumerate(node.tile_views):
        y0, x0 = _origin(view, frame)
        side = view.shape[0]
        v = w.feature(band_link, b)
        half = literal(side / 2.0)
        body += [f"    if (p.x >= {y0}.0 && p.x < {y0 + side}.0 && p.y >= {x0}.0 && p.y < {x0 + side}.0) {{",
                 f"        float v = {v};",
                 f"        float grow = {radius_gain} * v;",
                 f"        if (!(grow > 0.0)) return vec3({bg});  // a silent band draws nothing",
                 "        float radius = min(grow + 1e-6, 1.0);",
                 f"        vec2 q = ij - vec2({y0}.0, {x0}.0);",
                 # The networks' own radius (stretch coordinates of a square tile), for the disc.
                 f"        vec2 a = (q - {half}) / {half};",
                 "        float m = max(0.0, 1.0 - dot(a, a) / (radius * radius));",
                 f"        vec3 c = {fname}_band{b}(q, v) * m;",
                 "        return " + ("1.0 - c;" if node.bg == 1.0 else "c;"),
                 "    }"]
    body += [f"    return vec3({bg});", "}"]
    return "\n\n".join(parts + ["\n".join(body)])


def _spectrum_meter(w: _Writer, name: str, node, fname: str) -> str:
    p = node.p
    link = _features_link(w.graph, name)
    bands = node.band_of_channel[::3]  # the band each pixel column shows, -1 in the gaps
    n = len(node.heights) - 1
    color = ", ".join(literal(c) for c in node.color)
    body = [f"vec3 {fname}(vec2 ij) {{", "    vec2 p = floor(ij + 0.5);",
            f"    float above = {p.height - 1}.0 - p.x;  // pixel rows above the bottom one"]
    for b in range(n):
        columns = np.flatnonzero(bands == b)  # the node's own bar spans
        if not columns.size:
            continue
        v = w.feature(link, b)
        body.append(f"    if (p.y >= {columns[0]}.0 && p.y <= {columns[-1]}.0) {{ "
                    f"float v = {v}; v = isnan(v) ? 0.0 : v; "
                    f"float height = roundEven(clamp(v / {literal(p.max_value)}, 0.0, 1.0) * {p.height}.0); "
                    f"if (above < height) return vec3({color}); }}")
    body += [f"    return vec3({literal(p.background)});", "}"]
    return "\n".join(body)


SHADER_FORMS = {"cppn": _cppn, "tiler": _tiler, "spectrum_meter": _spectrum_meter}


# -- whole shaders ------------------------------------------------------------------------

def output_node(graph: Graph) -> str:
    """The render node whose frame a graph shows: the one the live window shows (live.shown_frame)."""
    from .live import shown_frame

    link = shown_frame(graph)
    if link is None:
        raise ShaderError("the graph has no node that draws a frame")
    return link.node


def _header(target: str, n_features: int) -> list[str]:
    features, time = UNIFORMS[target]
    size = max(1, n_features)  # GLSL has no zero-length arrays
    uniforms = [f"uniform float {features}[{size}];  // the features, end to end (see the comment above)",
                f"uniform float {time};  // seconds into the song"]
    if target == "webgl2":
        return ["#version 300 es", "precision highp float;", "precision highp int;", *uniforms,
                "uniform vec2 u_resolution;  // the canvas, in pixels", "out vec4 fragColor;"]
    if target == "glsl330":
        return ["#version 330", *uniforms, "uniform vec2 u_resolution;  // the viewport, in pixels",
                "out vec4 fragColor;"]
    # TouchDesigner declares vUV, TDOutputSwizzle and its own uniforms in front of this text.
    return [*uniforms, "out vec4 fragColor;"]


def graph_shader(graph: Graph, *, node: str | None = None, target: str = "webgl2") -> Shader:
    """The fragment shader of one render node (default: the graph's output frame) for `target`."""
    if target not in TARGETS:
        raise ShaderError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    name = node or output_node(graph)
    if name not in graph.nodes:
        raise ShaderError(f"no node named {name!r}; nodes: {', '.join(graph.nodes)}")
    writer = _Writer(graph, target)
    top = writer.node(name)
    height, width = graph.specs[(name, "frame")].shape[:2]
    sizes = [int(graph.specs[(l.node, l.port)].size or 0) for l in writer.links]
    layout = ", ".join(f"{l} [{writer.offsets[l]}..{writer.offsets[l] + s - 1}]" for l, s in zip(writer.links, sizes))
    fragment_coords = "vUV.st" if target == "touchdesigner" else "gl_FragCoord.xy / u_resolution"
    out = "TDOutputSwizzle(vec4(rgb, 1.0))" if target == "touchdesigner" else "vec4(rgb, 1.0)"
    comments = [f"// cppnviz: node '{name}' of {graph.path.name if graph.path else 'a graph'}, "
                f"{width}x{height} frame, target {target}",
                f"// {writer.features_name}: {layout or 'no features'}; {writer.time_name}: the frame's time in seconds"]
    header = _header(target, writer.total)
    # #version must be the first line a compiler sees; TouchDesigner writes its own in front of ours.
    split = 0 if target == "touchdesigner" else 1
    lines = header[:split] + comments + header[split:]
    lines += ["", "vec4 gaussian(vec4 x) { return exp(-x * x); }", "",
              *(f + "\n" for f in writer.functions),
              "void main() {",
              f"    vec2 uv = {fragment_coords};",
              # uv (0, 0) is the bottom-left corner; row 0 of the frame is its top.
              f"    vec2 ij = vec2((1.0 - uv.y) * {height}.0 - 0.5, uv.x * {width}.0 - 0.5);",
              f"    vec3 rgb = {top}(ij);",
              f"    fragColor = {out};",
              "}", ""]
    return Shader("\n".join(lines), target, width, height, writer.links, sizes)
