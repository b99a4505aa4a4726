"""What one cook asks of the graph (a Job) and what comes back (an Outcome); run inline or on a worker thread.

The main thread reads TouchDesigner (parameters, audio, time) into a Job; the Pipeline, which owns
the graph, runs it and answers with plain data. With Async on, the Pipeline lives on a worker
thread (AsyncDriver) and never sees a TouchDesigner object; the main thread shows the newest
finished Outcome on each cook.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cppnviz.errors import CppnvizError, ParamError

from .frames import to_image
from .layout import Layout, build_layout, from_td, to_td
from .session import Session

# A graph that failed to load is tried again at once when its file or the settings change, and
# otherwise once per this many seconds (a missing audio file copied in, a device plugged in); a
# bug is tried again only when the file changes or on Reload.
RETRY_SECONDS = 1.0
# A worker thread with no job for this long ends (the next job starts another).
IDLE_SECONDS = 5.0
# The bridge's own parameters: node params never take these names.
RESERVED = ("Graph", "Output", "Features", "Audiochop", "Preset", "Reload", "Reset", "Async", "Dtype")
# What a Drive page parameter's param holds between the driven param and the mapping field: 'scale/drive/min'.
DRIVEN = "/drive/"


@dataclass
class Job:
    """Everything one cook hands to the graph, read on the main thread."""

    graph: str
    target: str = "auto"
    pushed: bool = False
    audio: np.ndarray | None = None      # this cook's new samples (channels, n), a copy
    rate: float = 0.0
    seconds: float = 0.0                 # TouchDesigner's clock (paces a graph without pushed audio)
    changes: list[tuple[str, str, str, Any]] = field(default_factory=list)  # (TD name, node, param, TD value)
    generation: int = 0                  # the layout the changes were read from
    reload: bool = False
    reset: bool = False
    dtype: str = "uint8"
    render: bool = True
    preset: str = ""                     # a shipped preset's name, '' for none


@dataclass
class Outcome:
    """What the main thread shows: set fields are news, None means "no change"."""

    layout: Layout | None = None
    image: Any = None
    frame: int | None = None
    features: tuple[tuple[str, ...], np.ndarray] | None = None
    running: bool | None = None          # True: a graph runs; False: `error` says why not
    error: BaseException | None = None
    notes: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # TD name -> (level, text) or cleared
    warnings: list[str] | None = None

    def merge(self, later: "Outcome") -> None:
        """Fold a later outcome in: newer news wins, notes accumulate."""
        for name in ("layout", "image", "frame", "features", "warnings"):
            if getattr(later, name) is not None:
                setattr(self, name, getattr(later, name))
        if later.running is not None:
            self.running, self.error = later.running, later.error
        self.notes.update(later.notes)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(os.path.expanduser(path)).st_mtime
    except OSError:
        return None


class Pipeline:
    """Owns the Session; turns Jobs into Outcomes. Never raises: failures come back in the Outcome."""

    def __init__(self, kind: str):
        self.kind = kind
        self.session: Session | None = None
        self.key: tuple[str, bool] | None = None
        self.failed: tuple | None = None    # (key, file mtime, bug?, seconds) of the last failure
        self.error: BaseException | None = None
        self.generation = 0
        # TouchDesigner changes since the graph file was last read: kept when the graph is rebuilt
        # for another reason (audio CHOP set or cleared, a source param, a rejected change).
        self.overrides: dict[tuple[str, str], Any] = {}
        self.last_frame: Any = None
        self.last_dtype = ""

    def handle(self, job: Job) -> Outcome:
        out = Outcome()
        try:
            self._load(job, out)
        except Exception as exc:  # shown on the operator by the main thread; nothing half-built is kept
            self._fail(exc, job)
            out.running, out.error = False, exc
            return out
        if self.session is None:
            out.running, out.error = False, self.error
            return out
        try:
            if job.reset:
                self.session.reset()
            self._apply(job, out)
            self._retarget(job, out)
            if job.pushed:
                if job.audio is not None:
                    self.session.push(job.audio, job.rate)
            else:
                self.session.advance(job.seconds)
            if job.render:
                self._render(job, out)
            out.running, out.error = True, None
        except CppnvizError as exc:
            # This cook's input (the audio CHOP's samples, the Output choice) was unusable; the graph
            # itself is intact and the next cook tries again.
            out.running, out.error = False, exc
        except Exception as exc:  # a bug: the graph is dropped, and built again when the file changes or on Reload
            self._fail(exc, job)
            out.running, out.error = False, exc
        return out

    # -- loading ------------------------------------------------------------------------------
    def _load(self, job: Job, out: Outcome) -> None:
        key = (job.graph, job.pushed, job.preset)
        if not job.reload:
            if self.session is not None and key == self.key:
                return
            if self.session is None and self.failed is not None and self.failed[:2] == (key, _mtime(job.graph)):
                bug, when = self.failed[2:]
                if bug or job.seconds - when < RETRY_SECONDS:
                    return  # keep showing the error rather than re-reading the graph every frame
        if job.reload or self.key is None or key[0] != self.key[0] or key[2] != self.key[2]:
            self.overrides.clear()  # the file (or another preset) is read afresh: its values win
        self._open(key, job.target)
        out.layout = self._layout()
        out.warnings = list(self.session.warnings)

    def _open(self, key: tuple[str, bool, str], target: str) -> None:
        """Build a new Session; the old one is closed first, so a failure leaves none (never half of one)."""
        self._close()
        self.key = key
        overrides = [(n, p, v) for (n, p), v in self.overrides.items() if DRIVEN not in p]
        self.session = Session(key[0], pushed=key[1], kind=self.kind, target=target, overrides=overrides,
                               preset=key[2])
        self._steer_drives()
        self.failed, self.error = None, None
        self.last_frame = None

    def _layout(self) -> Layout:
        self.generation += 1
        s = self.session
        return build_layout(s.graph, s.page_nodes(), RESERVED, generation=self.generation, targets=s.targets,
                            target=s.target)

    def _close(self, failed: bool = False) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close(failed=failed)

    def _fail(self, exc: BaseException, job: Job) -> None:
        self._close(failed=True)
        self.error = exc
        bug = not isinstance(exc, CppnvizError)
        self.failed = ((job.graph, job.pushed, job.preset), _mtime(job.graph), bug, job.seconds)

    # -- changes from TouchDesigner -----------------------------------------------------------
    def _apply(self, job: Job, out: Outcome) -> None:
        if job.generation != self.generation:
            return  # read from the pages of an earlier load; the pages are being rebuilt
        for td_name, node_name, param, raw in job.changes:
            session = self.session
            if DRIVEN in param:
                self._steer(td_name, node_name, param, raw, out)
                continue
            drive = next((d for d in session.graph.drives if (d.spec.node, d.spec.param) == (node_name, param)), None)
            if drive is not None:
                # Read-only on the page; an expression or export on it still reaches here.
                out.notes[td_name] = ("warning", f"{node_name}.{param} is driven by {drive.spec.label} (drive:); "
                                                 f"steer it on the Drive page")
                continue
            node = session.graph.nodes[node_name]
            decl = node.param(param)
            current = to_td(decl, getattr(node.p, param))
            try:
                value = from_td(decl, raw, session.base_dir)
                checked, clamped = decl.check(value, clamp=True)  # set_param's own check: a wrong type stops here
            except ParamError as exc:
                out.notes[td_name] = ("error", f"{node_name}.{param}: {exc}; still {current}")
                continue
            rebuild = session.is_source(node_name)  # the source's buffer is the clock: never changed in place
            if not rebuild:
                try:
                    session.set_param(node_name, param, value)
                except CppnvizError:
                    # Refused by the running graph, which set_param leaves as it was; a change that
                    # reshapes what the node sends (the band table) may still suit a graph built with it.
                    rebuild = True
            if rebuild:
                try:
                    self._rebuild_with(node_name, param, checked)
                except CppnvizError as exc:
                    out.notes[td_name] = ("error", f"{node_name}.{param}: {exc}; still {current}")
                    continue
                out.warnings = list(self.session.warnings)
            self.overrides[(node_name, param)] = checked
            out.notes[td_name] = (("warning", f"{node_name}.{param}: {raw!r} is out of range; clamped to "
                                              f"{to_td(decl, checked)!r}") if clamped else None)

    def _steer(self, td_name: str, node_name: str, key: str, raw: Any, out: Outcome) -> None:
        """A drive's mapping field from the Drive page ('scale/drive/min'): checked, clamped, kept across rebuilds."""
        param, _, name = key.partition(DRIVEN)
        drive = next(d for d in self.session.graph.drives if (d.spec.node, d.spec.param) == (node_name, param))
        decl = dict(drive.fields())[name]
        try:
            value, clamped = decl.check(raw, clamp=True)
        except ParamError as exc:
            out.notes[td_name] = ("error", f"{node_name}.{key}: {exc}; still {getattr(drive.mapping, name)!r}")
            return
        drive.steer(name, value)
        self.overrides[(node_name, key)] = value
        out.notes[td_name] = (("warning", f"{node_name}.{key}: {raw!r} is out of range; clamped to {value!r}")
                              if clamped else None)

    def _steer_drives(self) -> None:
        """A graph built again gets the Drive page's values back (they are not params the file could hold)."""
        for (node_name, key), value in self.overrides.items():
            param, sep, name = key.partition(DRIVEN)
            for drive in self.session.graph.drives if sep else ():
                if (drive.spec.node, drive.spec.param) == (node_name, param):
                    drive.steer(name, value)

    def _rebuild_with(self, node_name: str, param: str, value: Any) -> None:
        """Build the graph again with one more change (its state and clock restart); keep the running one if that fails."""
        overrides = [(n, p, v) for (n, p), v in {**self.overrides, (node_name, param): value}.items() if DRIVEN not in p]
        old = self.session
        candidate = Session(self.key[0], pushed=self.key[1], kind=self.kind, target=old.target, overrides=overrides,
                            preset=self.key[2])
        old.close()
        self.session = candidate
        self._steer_drives()
        self.last_frame = None

    def _retarget(self, job: Job, out: Outcome) -> None:
        session = self.session
        wanted = session.default_target() if job.target in ("", "auto") else job.target
        if wanted == session.target:
            return
        before = session.page_nodes()
        session.set_target(job.target)
        self.last_frame = None
        if session.page_nodes() != before:
            out.layout = self._layout()

    # -- output -------------------------------------------------------------------------------
    def _render(self, job: Job, out: Outcome) -> None:
        value = self.session.render()
        if self.kind == "features":
            if value is not None:
                node, port = self.session.target.split(".", 1)
                names = tuple(f"{node}_{port}_{i}" for i in range(np.asarray(value).size))
                out.features = (names, np.asarray(value, dtype=np.float32).ravel().copy())
                out.frame = self.session.rendered
            return
        if value is None and (self.last_frame is None or job.dtype == self.last_dtype):
            return
        if value is not None:
            # Keep the frame itself: a Dtype change re-converts it without waiting for the next frame.
            self.last_frame = value
            out.frame = self.session.rendered
        self.last_dtype = job.dtype
        out.image = to_image(self.last_frame, job.dtype)


class AsyncDriver:
    """Runs a Pipeline on a worker thread. submit() queues a Job; take() returns what finished since the last take().

    Jobs that pile up while a frame renders are handled together: every one's audio and changes
    are applied in order, and only the newest frame is rendered. A worker with nothing to do for
    IDLE_SECONDS ends, and the next submit() starts another: so the worker of a deleted
    operator, whose cooks have stopped, never outlives it for long.
    """

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self._lock = threading.Condition()
        self._jobs: list[Job] = []
        self._finished = Outcome()
        self._submitted = self._handled = 0
        self._thread: threading.Thread | None = None
        self._closing = False

    def submit(self, job: Job) -> None:
        with self._lock:
            self._submitted += 1
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cppnviz-td-render", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def take(self) -> Outcome:
        with self._lock:
            finished, self._finished = self._finished, Outcome()
        return finished

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job is handled (tests, and switching Async off)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._handled == self._submitted, timeout)

    def running(self) -> bool:
        """Whether a worker thread is alive."""
        with self._lock:
            thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self) -> None:
        """Finish the queued jobs and stop the worker (the Pipeline then belongs to the caller)."""
        with self._lock:
            self._closing = True
            thread = self._thread
            self._lock.notify_all()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._jobs or self._closing, IDLE_SECONDS)
                batch, self._jobs = self._jobs, []
                if not batch:  # idle for IDLE_SECONDS, or closing with nothing left
                    self._thread = None
                    return
            for i, job in enumerate(batch):
                outcome = self.pipeline.handle(replace(job, render=i == len(batch) - 1))
                with self._lock:
                    self._finished.merge(outcome)
                    self._handled += 1
                    self._lock.notify_all()
