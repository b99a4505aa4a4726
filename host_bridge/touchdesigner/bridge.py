"""The TouchDesigner side of the bridge: parameters and audio read on the main thread, pictures and channels shown.

A Bridge is given its handles (the `td` module, and the operator on each call) instead of
looking operators up by name, so it runs the same inside TouchDesigner and against the test's
stand-in. Every TouchDesigner object is touched here, in the callbacks, on the main thread; the
graph runs in a Pipeline, inline or (Async on) on a worker thread that only sees plain data.

Errors. A mistake the user can fix (a missing graph file, a bad graph, an unusable audio CHOP, a
wrong parameter value) is shown with scriptOp.addError, one line per problem, on every cook
while it lasts; nothing runs until it is fixed, and the cook after the fix starts from a fresh
graph. A bug (any other exception) is raised from the callback once, so TouchDesigner shows it
as a script error with its traceback in the textport; later cooks show it with addError until
the graph file changes or Reload is pressed. Warnings (a clamped value, an offset the pushed
audio cannot apply) use scriptOp.addWarning. TouchDesigner clears an operator's messages at
every cook, so they are added again on each cook while they hold.

Parameters. An operator's own parameters and pages are never written during its cook (that is
undocumented and known to cause cook-dependency loops): what a cook decides to change — the node
pages of a newly loaded graph, the TOP's resolution and format for a GPU copy, the page missing
before "Setup Parameters" — is done at the start of the next frame, with
td.run(..., delayFrames=1, fromOP=scriptOp). A parameter the user drives (expression, export,
bind) is never given a value (see pages).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cppnviz import presets
from cppnviz.errors import AudioError, CppnvizError

from . import frames, pages
from .layout import Layout
from .pages import FIXED_PAGE, Fixed, is_constant
from .pipeline import AsyncDriver, Job, Outcome, Pipeline

AUTO = "auto"

GRAPH = Fixed("Graph", "File", "Graph", "the cppnviz graph file (.yaml)", "")
AUDIOCHOP = Fixed("Audiochop", "CHOP", "Audio CHOP", "a time-sliced audio CHOP (Audio Device In): its samples drive "
                  "the graph, replacing the graph's audio_file; empty: the graph's own audio file, paced by time")
RELOAD = Fixed("Reload", "Pulse", "Reload", "read the graph file again (its values replace the ones set here)")
RESET = Fixed("Reset", "Pulse", "Reset", "clear every node's state and restart at frame 0")
NO_PRESET = "none"
PRESET = Fixed("Preset", "Menu", "Preset", "a shipped preset applied over the graph: its drives and params "
               "(`cppnviz presets` says what each does); none: the graph as written", NO_PRESET,
               (NO_PRESET, *(p.stem for p in presets.shipped())))


def _plain(style: str, value: Any) -> Any:
    """A parameter's value as a plain Python value of its style (a toggle may evaluate to 0/1)."""
    if style == "Toggle":
        return bool(value)
    if style == "Int":
        return int(value)
    if style == "Float":
        return float(value)
    return str(value)


def audio_chop(par) -> Any:
    """The CHOP an Audiochop parameter names, None when it is empty; anything else is the user's mistake."""
    value = par.eval()
    if isinstance(value, (list, tuple)):
        raise AudioError(f"Audiochop: names several operators ({len(value)}); choose one audio CHOP")
    if value is None:
        if is_constant(par) and not par.val:
            return None
        named = par.val if is_constant(par) else (par.expr or par.bindExpr or "its export")
        raise AudioError(f"Audiochop: {named!r} is not a CHOP; choose an audio CHOP (Audio Device In)")
    if not getattr(value, "isCHOP", False):
        raise AudioError(f"Audiochop: {value.path} is not a CHOP; choose an audio CHOP (Audio Device In)")
    return value


class Bridge:
    """One Script operator's cppnviz graph. Subclasses say what is shown (a picture, channels)."""

    kind = "frame"
    fixed: tuple[Fixed, ...] = ()
    target_par = "Output"

    def __init__(self, td: Any):
        self.td = td
        self.pipeline = Pipeline(self.kind)
        self.driver: AsyncDriver | None = None
        self.layout: Layout | None = None           # the layout the operator's pages show
        self.fps = 60.0                             # the newest graph's frame rate
        self.deferred: dict[str, Any] = {}          # what the next frame's start does, by kind
        self.seen: dict[str, Any] = {}              # TD name -> the value the graph was last given
        self.pulses: set[str] = set()
        self.notes: dict[str, tuple[str, str]] = {}  # TD name -> (level, text) about its value
        self.warnings: list[str] = []
        self.error: BaseException | None = None
        self.raised: BaseException | None = None
        self.image: Any = None     # the newest picture; holding it keeps a GPU source alive for its copy
        self.features: tuple | None = None
        self.frame: int | None = None

    # -- callbacks --------------------------------------------------------------------------
    def setup_parameters(self, op) -> None:
        """Build the 'cppnviz' page and, once a graph is loaded, its node pages (values and modes kept)."""
        pages.build_fixed_page(op, self.fixed)
        if self.layout is not None:
            pages.build_node_pages(op, self.layout, keep_values=True)

    def pulse(self, par) -> None:
        # Handled at the next cook, where the graph is touched: onPulse only takes note.
        if par.name in ("Reload", "Reset"):
            self.pulses.add(par.name)

    def cook(self, op) -> None:
        # Reading a time value makes TouchDesigner 2023 cook this operator every frame.
        _ = self.td.absTime.frame
        if not any(page.name == FIXED_PAGE for page in op.customPages):
            self._defer(op, "setup", lambda: self.setup_parameters(op))  # "Setup Parameters" not pressed yet
            return
        try:
            job = self._job(op)
        except CppnvizError as exc:  # an unusable audio CHOP: shown like any other user mistake
            outcome = Outcome(running=False, error=exc)
        else:
            outcome = self._run(op, job)
        self._show(op, outcome)

    def close(self) -> None:
        """Stop the worker thread, if any (the operator is going away)."""
        if self.driver is not None:
            self.driver.close()
            self.driver = None

    def _defer(self, op, kind: str, action) -> None:
        """Do `action` at the start of the next frame, outside this operator's cook (the newest of each kind)."""
        if not self.deferred:
            self.td.run(self._run_deferred, op, delayFrames=1, fromOP=op)
        self.deferred[kind] = action

    def _run_deferred(self, op) -> None:
        actions, self.deferred = self.deferred, {}
        if op.valid:  # deleted meanwhile: nothing to write to
            for action in actions.values():
                action()

    # -- main thread: read TouchDesigner ------------------------------------------------------
    def _audio_chop(self, op):
        return audio_chop(op.par.Audiochop)

    def _async(self, op) -> bool:
        return False

    def _preset(self, op) -> str:
        """The chosen shipped preset, '' for none (an operator set up before the menu existed has none)."""
        par = getattr(op.par, "Preset", None)
        value = str(par.eval()) if par is not None else NO_PRESET
        return "" if value == NO_PRESET else value

    def _dtype(self, op) -> str:
        return "uint8"

    def _job(self, op) -> Job:
        chop = self._audio_chop(op)
        job = Job(graph=str(op.par.Graph.eval()), target=str(getattr(op.par, self.target_par).eval()),
                  pushed=chop is not None, seconds=float(self.td.absTime.seconds),
                  generation=self.layout.generation if self.layout else 0,
                  reload="Reload" in self.pulses, reset="Reset" in self.pulses, dtype=self._dtype(op),
                  preset=self._preset(op))
        self.pulses.clear()
        if chop is not None:
            if not chop.isTimeSlice:
                # A CHOP that is not time-sliced gives its whole buffer every cook: pushed again and
                # again, it would run the clock too fast.
                raise AudioError(f"Audiochop {chop.path}: not time-sliced; use an Audio Device In CHOP "
                                 f"(or another time-sliced audio CHOP)")
            # A copy: TouchDesigner may reuse the CHOP's memory after this cook.
            job.audio = np.array(chop.numpyArray(), dtype=np.float32, copy=True)
            job.rate = float(chop.rate)
        if self.layout is not None:
            for spec in self.layout.specs:
                value = _plain(spec.style, getattr(op.par, spec.name).eval())
                if value != self.seen.get(spec.name):
                    self.seen[spec.name] = value
                    job.changes.append((spec.name, spec.node, spec.param, value))
        return job

    def _run(self, op, job: Job) -> Outcome:
        if self._async(op):
            if self.driver is None:
                self.driver = AsyncDriver(self.pipeline)
            self.driver.submit(job)
            return self.driver.take()
        pending = Outcome()
        if self.driver is not None:  # Async switched off: finish what is queued, then run inline
            self.driver.close()
            pending = self.driver.take()
            self.driver = None
        pending.merge(self.pipeline.handle(job))
        return pending

    # -- main thread: show --------------------------------------------------------------------
    def _show(self, op, outcome: Outcome) -> None:
        if outcome.layout is not None:
            layout, self.fps = outcome.layout, outcome.layout.fps
            self.notes.clear()  # they were about values the new layout replaces
            self._defer(op, "layout", lambda: self._apply_layout(op, layout))
        if outcome.warnings is not None:
            self.warnings = outcome.warnings
        for name, note in outcome.notes.items():
            if note is None:
                self.notes.pop(name, None)
            else:
                self.notes[name] = note
        if outcome.running is True:
            self.error = None
        elif outcome.running is False:
            self.error = outcome.error
            self.image = None
            if self.features is not None:  # the same channels, at zero: references downstream keep working
                self.features = (self.features[0], np.zeros_like(self.features[1]))
        if outcome.image is not None:
            self.image = outcome.image
        if outcome.features is not None:
            self.features = outcome.features
        if outcome.frame is not None:
            self.frame = outcome.frame
        for text in self.warnings:
            op.addWarning(text)
        for level, text in self.notes.values():
            (op.addWarning if level == "warning" else op.addError)(text)
        self._output(op)
        if self.error is not None:
            self._report(op, self.error)

    def _report(self, op, exc: BaseException) -> None:
        if isinstance(exc, CppnvizError):
            for line in exc.problems():
                op.addError(line)
            return
        if exc is not self.raised:
            self.raised = exc
            raise RuntimeError(f"cppnviz: internal error: {type(exc).__name__}: {exc}") from exc
        op.addError(f"cppnviz: internal error (traceback in the textport): {type(exc).__name__}: {exc}")

    def _apply_layout(self, op, layout: Layout) -> None:
        """Show a new layout (at a frame's start): the target menu, the node pages and their values."""
        menu = getattr(op.par, self.target_par)
        names = [AUTO, *layout.targets]
        chosen = menu.eval()
        menu.menuNames, menu.menuLabels = names, names
        if is_constant(menu):
            menu.val = chosen if chosen in names else AUTO
        pages.build_node_pages(op, layout, keep_values=False)
        self.layout = layout
        # What the graph has now; a parameter the user drives differs, and its value goes to the graph next cook.
        self.seen = {spec.name: _plain(spec.style, layout.values[spec.name]) for spec in layout.specs}

    def _output(self, op) -> None:
        raise NotImplementedError


class TopBridge(Bridge):
    """A Script TOP showing one of the graph's pictures."""

    kind = "frame"
    target_par = "Output"
    fixed = (
        GRAPH,
        Fixed("Output", "Menu", "Output", "which picture to show: node.port (auto: the last one in the graph)",
              AUTO, (AUTO,)),
        AUDIOCHOP, PRESET, RELOAD, RESET,
        Fixed("Async", "Toggle", "Async", "render on a worker thread; each cook shows the newest finished frame",
              False),
        Fixed("Dtype", "Menu", "Dtype", "pixel format handed to TouchDesigner: uint8 (8-bit) or float32",
              "uint8", frames.DTYPES),
    )

    def _async(self, op) -> bool:
        return bool(op.par.Async.eval())

    def _dtype(self, op) -> str:
        return str(op.par.Dtype.eval())

    def _output(self, op) -> None:
        if self.image is None:
            return
        if frames.is_device_array(self.image):
            wanted = frames.cuda_settings(self.image)
            stale = {name: value for name, value in wanted.items() if getattr(op.par, name).eval() != value}
            if stale:
                # Copied into another resolution or format the picture comes out wrong: set them at the next
                # frame's start (not during this cook) and copy from then on.
                self._defer(op, "cuda", lambda: self._set(op, stale))
                return
        frames.copy_to_top(op, self.image, self.td)

    @staticmethod
    def _set(op, values: dict[str, Any]) -> None:
        for name, value in values.items():
            getattr(op.par, name).val = value


class ChopBridge(Bridge):
    """A Script CHOP with one channel per feature value of one graph output, one sample per frame."""

    kind = "features"
    target_par = "Features"
    fixed = (
        GRAPH,
        Fixed("Features", "Menu", "Features", "which features output: node.port (auto: the one feeding the picture)",
              AUTO, (AUTO,)),
        AUDIOCHOP, PRESET, RELOAD, RESET,
    )

    def _audio_chop(self, op):
        # Wired in (as setup_network does) or named on the Audiochop parameter.
        return op.inputs[0] if op.inputs else audio_chop(op.par.Audiochop)

    def _output(self, op) -> None:
        op.clear()
        # Time slicing defaults to the input's, and an audio input is time-sliced: the channels would
        # then span the frames since the last cook. One sample per frame instead, set before rate and
        # numSamples (as TouchDesigner 2025's own Script CHOP template does).
        op.isTimeSlice = False
        if self.features is None:
            return
        names, values = self.features
        op.rate = self.fps               # the documented order: rate before numSamples
        op.numSamples = 1
        for name, value in zip(names, values):
            op.appendChan(name).vals = [float(value)]
