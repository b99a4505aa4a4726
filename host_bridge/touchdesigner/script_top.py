"""Script TOP callbacks: a cppnviz graph's picture in TouchDesigner.

Point a Script TOP's Callbacks DAT at a Text DAT holding

    from cppnviz.host_bridge.touchdesigner.script_top import *

(setup_network.build() makes it). Absolute imports only: TouchDesigner runs a DAT's text as a
module of its own, outside this package. The callbacks are thin: the work is in bridge.TopBridge.
"""

import td

from cppnviz.host_bridge.touchdesigner.bridge import TopBridge

__all__ = ["onSetupParameters", "onPulse", "onCook", "onGetCookLevel", "setupParameters", "cook"]

# One bridge per operator, keyed by its id (stable when the operator is renamed), so several
# Script TOPs may share this module.
_bridges: dict[int, TopBridge] = {}


def _bridge(scriptOp) -> TopBridge:
    bridge = _bridges.get(scriptOp.id)
    if bridge is None:
        bridge = _bridges[scriptOp.id] = TopBridge(td)
    return bridge


def onSetupParameters(scriptOp):
    _bridge(scriptOp).setup_parameters(scriptOp)


def onPulse(par):
    _bridge(par.owner).pulse(par)


def onGetCookLevel(scriptOp):
    return td.CookLevel.ALWAYS


def onCook(scriptOp):
    _bridge(scriptOp).cook(scriptOp)


# The names older TouchDesigner builds and docs use.
setupParameters = onSetupParameters
cook = onCook
