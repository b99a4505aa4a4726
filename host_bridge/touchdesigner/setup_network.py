"""Build the TouchDesigner network once, from the textport.

    import cppnviz.host_bridge.touchdesigner.setup_network as s
    s.build(parent(), graph='C:/shows/mixed_live.yaml')

creates, inside the component given (the network you are looking at):

    <name>_audio            Audio Device In CHOP (the sound card's input)
    <name>_top_callbacks    Text DAT:  from cppnviz.host_bridge.touchdesigner.script_top import *
    <name>_picture          Script TOP using it; Audiochop -> <name>_audio
    <name>_chop_callbacks   Text DAT:  from cppnviz.host_bridge.touchdesigner.script_chop import *
    <name>_features         Script CHOP using it, <name>_audio wired into its input

using only documented calls: comp.create(td.<type>, name), dat.text, op.par.callbacks = dat,
op.inputConnectors[0].connect(...), par values, nodeX/nodeY.
"""

import td

from cppnviz.host_bridge.touchdesigner import script_chop, script_top

TOP_CALLBACKS = "from cppnviz.host_bridge.touchdesigner.script_top import *  # cppnviz Script TOP callbacks\n"
CHOP_CALLBACKS = "from cppnviz.host_bridge.touchdesigner.script_chop import *  # cppnviz Script CHOP callbacks\n"


def build(comp, graph: str = "", name: str = "cppnviz", x: int = 0, y: int = 0) -> dict:
    """Create and wire the operators in `comp`; return them by role."""
    audio = comp.create(td.audiodeviceinCHOP, f"{name}_audio")
    top_dat = comp.create(td.textDAT, f"{name}_top_callbacks")
    top_dat.text = TOP_CALLBACKS
    chop_dat = comp.create(td.textDAT, f"{name}_chop_callbacks")
    chop_dat.text = CHOP_CALLBACKS
    top = comp.create(td.scriptTOP, f"{name}_picture")
    top.par.callbacks = top_dat
    chop = comp.create(td.scriptCHOP, f"{name}_features")
    chop.par.callbacks = chop_dat
    chop.inputConnectors[0].connect(audio)
    # Build the custom pages now (TouchDesigner also calls onSetupParameters on "Setup Parameters").
    script_top.onSetupParameters(top)
    script_chop.onSetupParameters(chop)
    top.par.Audiochop = audio
    if graph:
        top.par.Graph = graph
        chop.par.Graph = graph
    for o, dx, dy in ((audio, 0, 0), (top_dat, 200, 150), (top, 400, 150), (chop_dat, 200, -150),
                      (chop, 400, -150)):
        o.nodeX, o.nodeY = x + dx, y + dy
    return {"audio": audio, "top": top, "chop": chop, "top_callbacks": top_dat, "chop_callbacks": chop_dat}
