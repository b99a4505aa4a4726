"""Script CHOP callbacks: a cppnviz graph's features as channels, one sample per frame.

A Script CHOP's callbacks DAT holds setup_network.CHOP_CALLBACKS:

    from cppnviz.host_bridge.touchdesigner.script_chop import *

plus its own onGetCookLevel (see script_top). Wire the audio CHOP into its first input (or name
it on the Audiochop parameter). Channels are named <node>_<output>_<index> (smooth_features_0,
...). Only the features output's upstream runs here (analysis only), so this CHOP works alongside
a Script TOP on the same graph; each keeps its own copy of the analysis.
"""

import td

from cppnviz.host_bridge.touchdesigner.bridge import ChopBridge
from cppnviz.host_bridge.touchdesigner.owners import Bridges

__all__ = ["onSetupParameters", "onPulse", "onCook", "setupParameters", "cook"]

_bridges = Bridges(lambda: ChopBridge(td))


def _bridge(scriptOp) -> ChopBridge:
    return _bridges.get(scriptOp)


def onSetupParameters(scriptOp):
    _bridge(scriptOp).setup_parameters(scriptOp)


def onPulse(par):
    _bridge(par.owner).pulse(par)


def onCook(scriptOp):
    _bridge(scriptOp).cook(scriptOp)


setupParameters = onSetupParameters
cook = onCook
