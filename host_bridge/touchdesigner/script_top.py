"""Script TOP callbacks: a cppnviz graph's picture in TouchDesigner.

A Script TOP's callbacks DAT holds setup_network.TOP_CALLBACKS (setup_network.build() writes it):

    from cppnviz.host_bridge.touchdesigner.script_top import *

plus an onGetCookLevel of its own. That one cannot live here: it returns CookLevel.ALWAYS, and
CookLevel exists only in a TouchDesigner 2025 callbacks DAT's own globals (`td.CookLevel` does
not exist; 2023 has no CookLevel at all). Absolute imports only: TouchDesigner runs a DAT's text
as a module of its own, outside this package. The callbacks are thin: the work is in bridge.TopBridge.
"""

import td

from cppnviz.host_bridge.touchdesigner.bridge import TopBridge
from cppnviz.host_bridge.touchdesigner.owners import Bridges

__all__ = ["onSetupParameters", "onPulse", "onCook", "setupParameters", "cook"]

_bridges = Bridges(lambda: TopBridge(td))


def _bridge(scriptOp) -> TopBridge:
    return _bridges.get(scriptOp)


def onSetupParameters(scriptOp):
    _bridge(scriptOp).setup_parameters(scriptOp)


def onPulse(par):
    _bridge(par.owner).pulse(par)


def onCook(scriptOp):
    _bridge(scriptOp).cook(scriptOp)


# The names older TouchDesigner builds and docs use.
setupParameters = onSetupParameters
cook = onCook
