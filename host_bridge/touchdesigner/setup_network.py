"""Build the TouchDesigner network once, from the textport; and the callbacks DAT text it writes.

    import cppnviz.host_bridge.touchdesigner.setup_network as s
    s.build(parent(), graph='C:/shows/mixed_live.yaml')

creates, inside the component given (the network you are looking at):

    <name>_audio                Audio Device In CHOP (the sound card's input)
    <name>_picture              Script TOP; Audiochop -> <name>_audio
    <name>_picture_callbacks    its docked callbacks DAT, holding TOP_CALLBACKS
    <name>_features             Script CHOP, <name>_audio wired into its input
    <name>_features_callbacks   its docked callbacks DAT, holding CHOP_CALLBACKS

A Script operator created from Python comes with a docked callbacks DAT; build() writes the text
into it rather than making a second DAT and leaving the first one orphaned. Documented calls only:
comp.create(td.<type>, name), op.par.callbacks.eval(), dat.text, op.inputConnectors[0].connect(...),
par values, nodeX/nodeY.
"""

import td

from cppnviz.host_bridge.touchdesigner import script_chop, script_top

# onGetCookLevel is defined in the DAT itself: CookLevel is a global of a TouchDesigner 2025
# callbacks DAT only (there is no td.CookLevel), and 2023 never calls it.
_CALLBACKS = '''from cppnviz.host_bridge.touchdesigner.{module} import *  # cppnviz {kind} callbacks


def onGetCookLevel(scriptOp):
    return CookLevel.ALWAYS  # TouchDesigner 2025: cook every frame
'''
TOP_CALLBACKS = _CALLBACKS.format(module="script_top", kind="Script TOP")
CHOP_CALLBACKS = _CALLBACKS.format(module="script_chop", kind="Script CHOP")


def build(comp, graph: str = "", name: str = "cppnviz", x: int = 0, y: int = 0) -> dict:
    """Create and wire the operators in `comp`; return them by role."""
    audio = comp.create(td.audiodeviceinCHOP, f"{name}_audio")
    top = comp.create(td.scriptTOP, f"{name}_picture")
    chop = comp.create(td.scriptCHOP, f"{name}_features")
    top_dat, chop_dat = top.par.callbacks.eval(), chop.par.callbacks.eval()
    top_dat.text = TOP_CALLBACKS
    chop_dat.text = CHOP_CALLBACKS
    chop.inputConnectors[0].connect(audio)
    # Build the custom pages now (TouchDesigner also calls onSetupParameters on "Setup Parameters").
    script_top.onSetupParameters(top)
    script_chop.onSetupParameters(chop)
    top.par.Audiochop = audio
    if graph:
        top.par.Graph = graph
        chop.par.Graph = graph
    for o, dx, dy in ((audio, 0, 0), (top, 400, 150), (chop, 400, -150)):
        o.nodeX, o.nodeY = x + dx, y + dy
    return {"audio": audio, "top": top, "chop": chop, "top_callbacks": top_dat, "chop_callbacks": chop_dat}
