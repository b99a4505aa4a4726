"""Concat: several feature vectors joined into one, so bands and a beat pulse feed one network."""

from __future__ import annotations

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec


class Concat(Node):
    """Feature vectors one after another in one vector, each link scaled by its gain."""

    type_name = "concat"
    stage = "analysis"
    inputs = (Input("features", "features", "the vectors to join, in order: a list of links", multiple=True),)
    outputs = (Output("features", "features", "the inputs one after another, shape (sum of their sizes,)"),)
    params = (
        Param("gain", "floats", 1.0, "one gain for every input, or a list with one per input link (e.g. [1, 3] "
              "to make a beat pulse count three times as much as the bands)", min=-1000, max=1000),
    )

    def configure(self, inputs):
        specs = inputs["features"]
        specs = specs if isinstance(specs, list) else [specs]
        gains = self.p.gain if isinstance(self.p.gain, list) else [self.p.gain]
        if len(gains) not in (1, len(specs)):
            raise ParamError(f"param 'gain': expected 1 or {len(specs)} values (one per input link), "
                             f"found {len(gains)}")
        sizes = [int(s.size or 0) for s in specs]
        self.scale = np.repeat(np.broadcast_to(np.asarray(gains, np.float32), (len(specs),)), sizes)
        # Columns keep their names where every input names its own (cppnviz features shows them).
        named = all(len(s.labels) == s.size for s in specs)
        labels = tuple(label for s in specs for label in s.labels) if named else ()
        return {"features": Spec("features", size=sum(sizes), labels=labels)}

    def process(self, tick, features):
        joined = np.concatenate([np.asarray(f, np.float32).reshape(-1) for f in features])
        return {"features": joined * self.scale}
