"""The Node base class: declarations as class data, process() as a plain function of a tick."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from .errors import ParamError
from .params import Param
from .ports import Input, Output, Spec
from .timebase import Tick


@dataclass
class Context:
    """What every node of a run may know: the clock and where the graph file lives."""

    fps: Fraction
    offset_ms: float = 0.0
    live: bool = False
    base_dir: Path = field(default_factory=Path.cwd)


class Node:
    """Base class of every node type.

    Subclasses declare `type_name`, `inputs`, `outputs` and `params` as class
    data and implement `configure()` (check input specs, allocate, return
    output specs) and `process()` (one tick's inputs in, a dict of outputs
    out). State lives on the instance and `reset()` clears it.
    """

    type_name: ClassVar[str] = ""
    # Which part of the run the node's time counts towards: analysis, render or encode.
    stage: ClassVar[str] = "render"
    # A render node whose frame depends on earlier ticks (not a pure function of this tick's inputs)
    # says so: paths that render frame ranges apart (Ray segments) refuse it by name.
    keeps_state: ClassVar[bool] = False
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()
    params: ClassVar[tuple[Param, ...]] = ()
    # Path params the node writes; every other path param names a file the run reads.
    writes: ClassVar[tuple[str, ...]] = ()
    # Params whose change is slow to apply (a network rebuilt). Live, a change to one is built on a
    # worker thread in a copy of the node (twin() + rebuild()) while this node keeps rendering,
    # and swapped in between ticks (adopt()). So configure() must make anew everything process()
    # writes to (the copy renders a trial frame while this node renders the show), and the node
    # must keep no state between ticks that the swap would roll back: render nodes, as a rule.
    heavy: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, values: dict[str, Any], ctx: Context):
        self.name = name
        self.ctx = ctx
        self.p = SimpleNamespace(**values)
        self.input_specs: dict[str, Any] = {}
        self.output_specs: dict[str, Spec] | None = None  # set when the graph is built

    # -- declarations -------------------------------------------------------
    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def doc(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    # -- lifecycle ------------------------------------------------------------
    def configure(self, inputs: dict[str, Any]) -> dict[str, Spec]:
        """Check the specs arriving on the inputs, allocate, and return the output specs.

        Raise ParamError or GraphError for a problem the user can fix; the
        engine attaches the node's name.
        """
        raise NotImplementedError

    def frame_count(self, limit: int | None = None) -> int | None:
        """How many frames this node's material lasts (sources), at most `limit`; None if unbounded.

        A source may read only as far as `limit` needs (an hour-long file cut to 30 s).
        """
        return None

    def whole_track(self) -> bool:
        """True when this node needs the whole track of its inputs before the first frame."""
        return False

    def live_problem(self) -> str | None:
        """Why this node cannot run live with its current params (and what to use instead), or None."""
        return "it needs the whole track before the first frame" if self.whole_track() else None

    def fit(self, inputs: dict[str, np.ndarray]) -> None:
        """Receive every tick's inputs stacked along axis 0 (prepass, whole_track nodes only).

        A node that sets `observes` gets {} here instead, having seen each tick in observe().
        """

    # Whole-track nodes whose inputs cannot be kept for every tick (audio windows: a streamed
    # source reuses its buffer) set this and take them one tick at a time during the prepass.
    observes: ClassVar[bool] = False

    def observe(self, tick: Tick, **inputs: Any) -> None:
        """One tick of the prepass, for nodes that set `observes`; the inputs are valid during the call only."""

    def start(self) -> None:
        """Called once before the first tick of a run (open files, start threads)."""

    def process(self, tick: Tick, **inputs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self) -> None:
        """Called after the last tick of a successful run (complete and publish outputs)."""

    def abort(self) -> None:
        """Called when a run fails or is interrupted: leave nothing half-written behind."""

    def reset(self) -> None:
        """Clear state carried between ticks (smoothers, buffers)."""

    # -- params ---------------------------------------------------------------
    def set_param(self, name: str, value: Any, *, clamp: bool = False) -> bool:
        """Validate and apply one param change; return whether it was clamped.

        Hosts call this between ticks only (changes are queued until then).
        """
        try:
            decl = self.param(name)
        except KeyError:
            raise ParamError(f"node '{self.name}' has no param '{name}'") from None
        value, clamped = decl.check(value, clamp=clamp)
        old = getattr(self.p, name)
        setattr(self.p, name, value)
        try:
            self._keeps_outputs(self.param_changed(name), {name: value})
        except Exception:
            # Leave the node exactly as it was: the running graph was built around the old value.
            setattr(self.p, name, old)
            self.param_changed(name)
            raise
        return clamped

    def param_changed(self, name: str) -> dict[str, Spec] | None:
        """React to a param change between ticks; the default re-runs configure() and returns its specs."""
        return self.configure(self.input_specs)

    def _keeps_outputs(self, specs: dict[str, Spec] | None, changes: dict[str, Any]) -> None:
        """Refuse a change that would alter what a running node's outputs carry: the graph was built around them."""
        if self.output_specs is not None and specs is not None and specs != self.output_specs:
            names = ", ".join(f"'{n}'" for n in changes)
            values = ", ".join(repr(v) for v in changes.values())
            raise ParamError(f"node '{self.name}' param{'s' if len(changes) > 1 else ''} {names}: cannot change to "
                             f"{values} while running: it changes what the node's outputs carry (size or shape)")

    # -- heavy changes, built off the render thread ----------------------------------------
    def twin(self, changes: dict[str, Any], *, clamp: bool = False) -> Node:
        """A shallow copy with `changes` (param name -> value) checked and set; this node is untouched.

        Call between ticks; configure the copy with rebuild() on any thread, then adopt() it.
        """
        values = dict(vars(self.p))
        for name, value in changes.items():
            try:
                decl = self.param(name)
            except KeyError:
                raise ParamError(f"node '{self.name}' has no param '{name}'") from None
            values[name], _ = decl.check(value, clamp=clamp)
        twin = copy.copy(self)
        twin.p = SimpleNamespace(**values)
        return twin

    def rebuild(self, changes: dict[str, Any]) -> None:
        """Configure this copy (made by twin()) for its params; ParamError if the outputs would change."""
        self._keeps_outputs(self.configure(self.input_specs), changes)

    def adopt(self, twin: Node) -> None:
        """Take over what `twin` built: its params and everything configure() made (between ticks only)."""
        self.__dict__.update(twin.__dict__)
