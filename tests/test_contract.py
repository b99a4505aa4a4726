"""The contract every registered node type keeps: valid declarations, runs on silence, kinds, determinism, reset."""

from fractions import Fraction
import re

import numpy as np
import pytest

from conftest import write_wav
from made_samples import MAKERS
from cppnviz import registry
from cppnviz.node import Context, Node
from cppnviz.ports import KINDS, AudioWindow, Spec
from cppnviz.timebase import Tick

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TYPES = sorted(registry.all_types().items())


@pytest.mark.parametrize("type_name,cls", TYPES)
def test_declaration_is_complete(type_name, cls):
    assert NAME.match(type_name) and cls.doc(), f"{type_name}: needs a snake_case name and a docstring"
    assert cls.stage in ("analysis", "render", "encode")
    names = [p.name for p in cls.params] + [i.name for i in cls.inputs]
    assert len(set(p.name for p in cls.params)) == len(cls.params), "duplicate param names"
    for param in cls.params:
        assert NAME.match(param.name) and param.doc, f"{type_name}.{param.name}: name and doc"
        if not param.required:
            assert param.check(param.default)[0] == param.default, f"{type_name}.{param.name}: default out of range"
    for port in (*cls.inputs, *cls.outputs):
        assert port.kind in KINDS and port.doc and NAME.match(port.name)
    assert names  # every node has something to set or connect


def make_input(spec: Spec, k: int, noisy: bool):
    """Silence, or (noisy) values that change every tick so state carried between ticks shows."""
    rng = np.random.default_rng(k)
    if spec.kind == "audio":
        samples = (0.5 * rng.standard_normal(44100) if noisy else np.zeros(44100)).astype(np.float32)
        return AudioWindow(samples, 22050, 44100, program=samples[:, None])
    shape = (spec.size,) if spec.kind == "features" else spec.shape
    return (rng.random(shape) if noisy else np.zeros(shape)).astype(np.float32)


INPUT_SPECS = {"audio": Spec("audio", sample_rate=44100), "features": Spec("features", size=8),
               "frame": Spec("frame", shape=(32, 48, 3))}


def build(cls, tmp_path) -> tuple[Node, dict]:
    values = {p.name: p.default for p in cls.params}
    for p in cls.params:
        if p.required and p.type == "path" and cls.inputs and p.name not in cls.writes:
            values[p.name] = str(MAKERS[cls.type_name](tmp_path))   # a player reads a file the project makes
        elif p.required and p.type == "path":
            # A source reads a real (silent) file; a sink writes into the test's folder.
            values[p.name] = str(write_wav(tmp_path / "silence.wav", np.zeros(22050))) if not cls.inputs else str(tmp_path / "out.mp4")
    for p in cls.params:  # keep frames small so the contract runs fast
        if p.name in ("width", "height") and p.type == "int":
            values[p.name] = 32
    node = cls("node", values, Context(fps=Fraction(30), base_dir=tmp_path))
    specs = {}
    for port in cls.inputs:
        spec = INPUT_SPECS[port.kind]
        specs[port.name] = [spec, spec] if port.multiple else spec
    node.input_specs = specs
    return node, node.configure(specs)


def fit_inputs(node, n=4) -> dict:
    """What the prepass hands a whole-track node: each input's values over n ticks, stacked."""
    return {port: np.stack([make_input(spec, k, False) for k in range(n)])
            for port, spec in node.input_specs.items()}


def run_ticks(node, n=4, noisy=False):
    out = []
    for k in range(n):
        inputs = {port: ([make_input(s, k, noisy) for s in spec] if isinstance(spec, list) else make_input(spec, k, noisy))
                  for port, spec in node.input_specs.items()}
        out.append(node.process(Tick(k, k / 30), **inputs) or {})
    return out


@pytest.mark.parametrize("type_name,cls", TYPES)
def test_runs_on_silence_with_the_declared_kinds(type_name, cls, tmp_path):
    node, out_specs = build(cls, tmp_path)
    assert set(out_specs) == {o.name for o in cls.outputs}
    if node.whole_track():
        node.fit(fit_inputs(node))
    node.start()
    try:
        results = run_ticks(node)
        node.finish()
    except BaseException:
        node.abort()
        raise
    for tick_out in results:
        for port in cls.outputs:
            value, spec = tick_out[port.name], out_specs[port.name]
            if spec.kind == "features":
                assert value.dtype == np.float32 and value.shape == (spec.size,)
                assert np.all(np.isfinite(value))
            elif spec.kind == "frame":
                assert value.dtype == np.float32 and value.shape == spec.shape and value.flags.c_contiguous
                assert 0.0 <= value.min() and value.max() <= 1.0
            else:
                assert isinstance(value, AudioWindow) and value.sample_rate == spec.sample_rate


@pytest.mark.parametrize("type_name,cls", [(t, c) for t, c in TYPES if c.outputs])
def test_deterministic_and_reset_clears_state(type_name, cls, tmp_path):
    def outputs(node, specs):
        return [{k: (v.samples if isinstance(v, AudioWindow) else np.array(v)) for k, v in o.items()}
                for o in run_ticks(node, noisy=True)]

    a, specs = build(cls, tmp_path)
    b, _ = build(cls, tmp_path)
    for node in (a, b):
        if node.whole_track():
            node.fit(fit_inputs(node))
    first = outputs(a, specs)
    for x, y in zip(first, outputs(b, specs)):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    a.reset()
    for x, y in zip(first, outputs(a, specs)):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
