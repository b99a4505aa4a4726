"""Script CHOP callbacks: a cppnviz graph's features as channels, one sample per frame.

Point a Script CHOP's Callbacks DAT at a Text DAT holding

    from cppnviz.host_bridge.touchdesigner.script_chop import *

and wire the audio CHOP into its first input (or name it on the Audiochop parameter). Channels
are named <node>_<output>_<index> (smooth_features_0, ...). Only the features output's upstream
runs here (analysis only), so this CHOP works alongside a Script TOP on the same graph; each keeps
its own copy of the analysis.
"""

import td

from cppnviz.host_bridge.touchdesigner.bridge import ChopBridge

__all__ = ["onSetupParameters", "onPulse", "onCook", "onGetCookLevel", "setupParameters", "cook"]

_bridges: dict[int, ChopBridge] = {}


def _bridge(scriptOp) -> ChopBridge:
    bridge = _bridges.get(scriptOp.id)
    if bridge is None:
        bridge = _bridges[scriptOp.id] = ChopBridge(td)
    return bridge


def onSetupParameters(scriptOp):
    _bridge(scriptOp).setup_parameters(scriptOp)


def onPulse(par):
    _bridge(par.owner).pulse(par)


def onGetCookLevel(scriptOp):
    return td.CookLevel.ALWAYS


def onCook(scriptOp):
    _bridge(scriptOp).cook(scriptOp)


setupParameters = onSetupParameters
cook = onCook
