"""What a real TouchDesigner does that an easy stand-in hides (issue 9), checked under both profiles (2023, 2025).

Each test names the behaviour: cook levels, Script CHOP time slicing, parameter modes, parameter
writes during a cook, the GPU path's resolution and format, docked callbacks DATs, CHOP-only
references, deleted operators, the CHOP's channels while in error, and the docs that say so.
Fixtures and helpers come from test_touchdesigner.py.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from test_touchdesigner import (  # noqa: F401  (td and song are fixtures)
    FPS, blocks, bridge_of, cook, fake_cupy, make_op, node, settle, song, td, write_graph)

ROOT = Path(__file__).parent.parent
PACKAGE = "cppnviz.host_bridge.touchdesigner"


def setup_module_of(name):
    return importlib.import_module(f"{PACKAGE}.{name}")


# -- the stand-in itself behaves like TouchDesigner in these respects -------------------------------------

def test_standin_cook_level_exists_only_in_a_2025_callbacks_dat(td):
    assert not hasattr(td, "CookLevel") and not hasattr(td, "ParMode")
    dat = td.textDAT("dat")
    dat.text = "x = 1\n"
    assert ("CookLevel" in vars(dat.module)) is (td.profile >= 2025)


def test_standin_val_sets_constant_mode_and_exports_refuse_it(td):
    holder = td.baseCOMP("holder")
    par = holder.appendCustomPage("Page").appendFloat("Value")[0]
    par.expr = "2 * 3"
    assert par.mode.name == "EXPRESSION" and par.eval() == 6.0 and par.val == 0.0
    par.val = 1.0
    assert par.mode.name == "CONSTANT" and par.expr == "2 * 3" and par.eval() == 1.0
    par.mode = td.standin_ParMode.EXPRESSION   # the expression was kept
    assert par.eval() == 6.0
    td.standin_export(par, 4.0)
    assert par.mode.name == "EXPORT" and par.eval() == 4.0
    with pytest.raises(td.tdError, match="exported"):
        par.val = 2.0


def test_standin_refuses_writes_to_the_cooking_operators_parameters(td):
    top = td.scriptTOP("busy")
    page = top.appendCustomPage("Page")
    par = page.appendFloat("Value")[0]
    with td.standin_inside_cook(top):
        for write in (lambda: setattr(par, "val", 1.0), lambda: setattr(top.par, "Value", 1.0),
                      lambda: setattr(par, "help", "x"), lambda: top.appendCustomPage("More"),
                      lambda: page.appendFloat("Other"), page.destroy,
                      lambda: setattr(top.par, "format", "rgba8fixed")):
            with pytest.raises(td.tdError, match="own cook"):
                write()
    record = td.run(setattr, par, "val", 2.0, delayFrames=1, fromOP=top)
    assert td.standin_pending_runs() == [record] and par.eval() == 0.0
    settle(td)
    assert par.eval() == 2.0 and td.standin_pending_runs() == []


def test_standin_script_chop_time_slice_follows_its_first_input(td):
    audio = td.audiodeviceinCHOP("audio")
    chop = td.scriptCHOP("slicer")
    assert chop.timeSliceDefault is False
    chop.inputConnectors[0].connect(audio)
    assert chop.timeSliceDefault is True
    with td.standin_inside_cook(chop):
        chop.rate = 60
        with pytest.raises(td.tdError, match="isTimeSlice before rate"):
            chop.isTimeSlice = False


def test_standin_deleted_operator_is_invalid(td):
    comp = td.baseCOMP("comp")
    top = comp.create(td.scriptTOP, "gone")
    dat = top.par.callbacks.eval()
    assert dat.name == "gone_callbacks" and dat in comp.children   # the docked callbacks DAT
    top.destroy()
    assert not top.valid and not dat.valid and comp.children == []
    with pytest.raises(td.tdError, match="deleted"):
        top.par


# -- 1. CookLevel lives in the callbacks DAT (2025) and nowhere on 2023 ---------------------------------------

def test_the_callbacks_dat_cooks_every_frame_on_both_versions(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    assert td.standin_cooks_every_frame(top)
    module = top.par.callbacks.eval().module
    if td.profile >= 2025:
        assert module.onGetCookLevel(top) is td.standin_CookLevel.ALWAYS
    else:
        assert "CookLevel" not in vars(module)


def test_a_dat_with_only_the_import_line_still_cooks_every_frame(td, song):
    # The one-line DAT of the first instructions: the module must not hand it an onGetCookLevel that raises.
    dat = td.textDAT("bare")
    dat.text = f"from {PACKAGE}.script_top import *\n"
    top = td.scriptTOP("picture")
    top.par.callbacks = dat
    td.standin_setup(top)
    top.par.Graph = str(song.graph)
    cook(td, top)
    cook(td, top)
    assert td.standin_cooks_every_frame(top) and top.standin_errors == []


# -- 2. the Script CHOP is not a time slice --------------------------------------------------------------------

def test_the_script_chop_gives_one_sample_per_frame_after_dropped_frames(td, song):
    audio = td.audiodeviceinCHOP("audio")
    chop = make_op(td, "chop", "features")
    chop.inputConnectors[0].connect(audio)
    chop.par.Graph = str(song.graph)
    feed = blocks(song.samples)
    cook(td, chop, audio, next(feed))
    for frames in (1, 3, 1, 2):                 # TouchDesigner skipped frames twice
        cook(td, chop, audio, next(feed), frames=frames)
        assert chop.timeSliceDefault is True    # the audio input is time-sliced ...
        assert chop.isTimeSlice is False        # ... the features are not
        assert chop.numSamples == 1 and chop.rate == FPS and chop.numChans == 8


# -- 3. expressions, binds and exports on parameters survive loads, reloads and Setup Parameters -------------

def test_parameters_driven_by_the_user_stay_driven(td, song):
    ctrl = td.baseCOMP("ctrl")
    ctrl.appendCustomPage("Knobs").appendFloat("Gain")
    ctrl.par.Gain = 1.5
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    cook(td, top)                                # the node pages are built at the start of this frame
    top.par.Smoothtimeconstant.expr = "0.25 + 0 * absTime.frame"
    top.par.Barsgain.bindExpr = "op('/ctrl').par.Gain"
    top.par.Barsgain.mode = td.standin_ParMode.BIND
    td.standin_export(top.par.Normwindow, 2.0)
    top.par.Graph.expr = repr(str(song.graph))

    def still_driven():
        assert top.par.Smoothtimeconstant.mode.name == "EXPRESSION"
        assert top.par.Smoothtimeconstant.expr == "0.25 + 0 * absTime.frame"
        assert top.par.Barsgain.mode.name == "BIND" and top.par.Barsgain.bindExpr == "op('/ctrl').par.Gain"
        assert top.par.Normwindow.mode.name == "EXPORT"
        assert top.par.Graph.mode.name == "EXPRESSION"
        assert top.standin_errors == []

    def nodes_follow(gain):
        cook(td, top)
        cook(td, top)
        assert node(top, "smooth").p.time_constant == 0.25 and node(top, "bars").p.gain == gain
        assert node(top, "norm").p.window == 2.0
        still_driven()

    nodes_follow(1.5)
    top.par.Reload.pulse()                       # the file's values go only where the user does not drive
    cook(td, top)
    settle(td)
    still_driven()
    nodes_follow(1.5)
    td.standin_setup(top)                        # "Setup Parameters" again
    still_driven()
    ctrl.par.Gain = 3.0
    nodes_follow(3.0)
    write_graph(song.graph, lambda d: d["nodes"]["bars"]["params"].update(width=40))
    top.par.Reload.pulse()                       # the file's nodes in another order: the pages move, nothing lost
    nodes_follow(3.0)
    assert [p.name for p in top.customPages] == ["cppnviz", "audio", "bands", "bars", "norm", "smooth"]
    assert top.par.Barswidth.eval() == 40


def test_pages_rebuilt_for_another_graph_keep_modes_on_the_parameters_that_remain(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    cook(td, top)
    cook(td, top)
    top.par.Smoothtimeconstant.expr = "0.5"
    other = write_graph(song.folder / "other.yaml", lambda d: (
        d["nodes"].pop("norm"), d["nodes"]["smooth"].update(inputs={"features": "bands.bands"})))
    top.par.Graph = str(other)                   # another graph: other pages, the smoother's stays driven
    cook(td, top)
    cook(td, top)
    cook(td, top)
    assert top.standin_errors == []
    assert top.par.Smoothtimeconstant.mode.name == "EXPRESSION" and node(top, "smooth").p.time_constant == 0.5


# -- 4. nothing is written to the operator during its own cook -------------------------------------------------

def test_pages_are_built_after_the_cook_not_inside_it(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    td.standin_advance(1, FPS)
    assert td.standin_cook(top), top.standin_script_errors
    assert [p.name for p in top.customPages] == ["cppnviz"]      # nothing built during the cook
    runs = td.standin_pending_runs()
    assert [(r.delayFrames, r.fromOP) for r in runs] == [(1, top)]
    settle(td)
    assert [p.name for p in top.customPages] == ["cppnviz", "audio", "bands", "norm", "smooth", "bars"]
    assert top.par.Output.menuNames == ["auto", "bars.frame"]
    cook(td, top)
    assert top.standin_errors == [] and td.standin_pending_runs() == []


def test_a_cook_before_setup_parameters_builds_the_page_afterwards(td, song):
    dat = td.textDAT("callbacks")
    dat.text = setup_module_of("setup_network").TOP_CALLBACKS
    top = td.scriptTOP("picture")
    top.par.callbacks = dat                      # no "Setup Parameters" yet
    cook(td, top)
    assert top.customPages == []
    settle(td)
    assert [p.name for p in top.customPages] == ["cppnviz"]
    top.par.Graph = str(song.graph)
    cook(td, top)
    cook(td, top)
    assert top.standin_errors == [] and top.standin_image is not None


# -- 5. the GPU path sets the TOP's resolution and pixel format before copying ------------------------------------

@pytest.mark.parametrize("dtype,other,fmt", [("uint8", "float32", "rgba8fixed"), ("float32", "uint8", "rgba32float")])
def test_device_frames_set_resolution_and_format_first(td, song, monkeypatch, dtype, other, fmt):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    device_graph = write_graph(song.folder / "device.yaml",
                               lambda d: d["nodes"]["bars"].update(type="test_device_bars"))
    audio = td.audiodeviceinCHOP("audio")
    top = make_op(td, "top")
    top.par.Graph, top.par.Audiochop, top.par.Dtype = str(device_graph), audio, dtype
    feed = blocks(song.samples)
    cook(td, top, audio, next(feed))
    assert top.standin_cuda == []                 # the TOP is not set up for this memory yet: no copy
    cook(td, top, audio, next(feed))
    assert (top.par.outputresolution.eval(), top.par.resolutionw.eval(), top.par.resolutionh.eval()) == \
        ("custom", 32, 24)
    assert top.par.format.eval() == fmt and len(top.standin_cuda) == 1
    top.par.Dtype = other                         # the format follows the next frame
    cook(td, top, audio, next(feed))
    cook(td, top, audio, next(feed))
    assert top.par.format.eval() == {"uint8": "rgba8fixed", "float32": "rgba32float"}[other]
    assert top.standin_cuda[-1]["dataType"] is (np.uint8 if other == "uint8" else np.float32)
    assert top.standin_errors == []


# -- 6. setup_network reuses the docked callbacks DAT ------------------------------------------------------------

def test_setup_network_uses_the_docked_callbacks_dats(td, song):
    setup = setup_module_of("setup_network")
    project = td.baseCOMP("project1")
    made = setup.build(project, graph=str(song.graph))
    assert {o.name for o in project.children} == {"cppnviz_audio", "cppnviz_picture", "cppnviz_picture_callbacks",
                                                  "cppnviz_features", "cppnviz_features_callbacks"}
    assert made["top"].par.callbacks.eval() is made["top_callbacks"]
    assert made["top_callbacks"].name == "cppnviz_picture_callbacks"
    assert made["top_callbacks"].text == setup.TOP_CALLBACKS
    assert made["chop"].par.callbacks.eval().text == setup.CHOP_CALLBACKS


# -- 7. the audio CHOP parameter takes CHOPs; a bad reference is the user's mistake ---------------------------------

def test_audiochop_takes_chops_and_a_bad_reference_is_shown_on_the_operator(td, song):
    top = make_op(td, "top")
    top.par.Graph = str(song.graph)
    assert top.par.Audiochop.style == "CHOP"
    other = td.scriptTOP("other")
    with pytest.raises(td.tdError, match="not a CHOP"):
        top.par.Audiochop = other
    audio = td.audiodeviceinCHOP("audio")
    td.audiodeviceinCHOP("second")
    for reference, expected in (("/other", "not a CHOP"), ("/nothing", "not a CHOP"),
                                ("[op('/audio'), op('/second')]", "several")):
        if reference.startswith("["):
            top.par.Audiochop.expr = reference    # an expression may give a list
        else:
            top.par.Audiochop = reference         # a path that names a TOP, or nothing
        cook(td, top)
        assert any("Audiochop" in e and expected in e for e in top.standin_errors), top.standin_errors
        assert top.standin_script_errors == []
    top.par.Audiochop = audio
    cook(td, top, audio)
    cook(td, top, audio, song.samples[:, :735])
    assert top.standin_errors == [] and bridge_of(top).frame is not None


# -- 8. a deleted operator's bridge and worker thread go away ---------------------------------------------------

def test_a_deleted_operators_bridge_and_worker_go(td, song):
    script_top = setup_module_of("script_top")
    first, second = make_op(td, "top", "first"), make_op(td, "top", "second")
    for top in (first, second):
        top.par.Graph, top.par.Async = str(song.graph), True
    for _ in range(3):
        cook(td, first)
        cook(td, second, frames=0)
    gone = bridge_of(first)
    assert gone.driver is not None
    worker = gone.driver
    first.destroy()
    cook(td, second)                               # any callback into the module notices
    assert gone not in list(script_top._bridges.values())
    assert gone.driver is None and not worker.running()


def test_the_last_deleted_operators_worker_stops_on_its_own(td, song, monkeypatch):
    monkeypatch.setattr(setup_module_of("pipeline"), "IDLE_SECONDS", 0.05)
    top = make_op(td, "top")
    top.par.Graph, top.par.Async = str(song.graph), True
    cook(td, top)
    worker = bridge_of(top).driver
    assert worker.wait_idle(10)
    top.destroy()
    for _ in range(200):
        if not worker.running():
            break
        threading.Event().wait(0.025)
    assert not worker.running()


# -- 9. while in error, the CHOP's channels stay (at zero) ------------------------------------------------------

def test_while_in_error_the_chop_keeps_its_channels_at_zero(td, song):
    audio = td.audiodeviceinCHOP("audio")
    chop = make_op(td, "chop", "features")
    chop.inputConnectors[0].connect(audio)
    chop.par.Graph = str(song.graph)
    feed = blocks(song.samples)
    for _ in range(10):
        cook(td, chop, audio, next(feed))
    names = [c.name for c in chop.chans()]
    assert len(names) == 8 and any(c.vals[0] != 0 for c in chop.chans())
    chop.par.Graph = str(song.folder / "missing.yaml")
    cook(td, chop, audio, next(feed))
    assert any("graph file not found" in e for e in chop.standin_errors)
    assert [c.name for c in chop.chans()] == names and all(c.vals == [0.0] for c in chop.chans())
    assert chop.numSamples == 1
    chop.par.Graph = str(song.graph)
    for _ in range(10):
        cook(td, chop, audio, next(feed))
    assert chop.standin_errors == [] and [c.name for c in chop.chans()] == names
    assert any(c.vals[0] != 0 for c in chop.chans())


# -- 10. the docs say what the code does -------------------------------------------------------------------------

def test_the_docs_quote_the_callbacks_dat_text_and_the_versions(td):
    setup = setup_module_of("setup_network")
    docs = (ROOT / "docs" / "touchdesigner.md").read_text()
    recipe = (ROOT / "examples" / "touchdesigner" / "README.md").read_text()
    for text in (setup.TOP_CALLBACKS, setup.CHOP_CALLBACKS):
        assert text.strip() in docs          # copied into a Text DAT by hand, it must be the same text
    assert "docs/touchdesigner.md" in recipe and "script_top import *" in recipe
    assert "3.11.10" in docs and "3.11.15" in docs
