"""A strict stand-in for TouchDesigner's `td` module, written from the documented API (shared/notes/touchdesigner.md).

TouchDesigner cannot run here, so the bridge is tested against this module. It is as strict as
TouchDesigner where the documentation says what TouchDesigner rejects (array dtypes, shapes and
strides, parameter names, duplicates, CUDAMemoryShape fields, the Script CHOP's rate-before-numSamples
rule) and stricter where the documentation is vague, never looser. Every TouchDesigner object
here checks that it is used from the main thread: a call from any other thread is recorded in
`thread_violations` and raises, so a test can prove a worker thread never touched TouchDesigner.

Behaviours a bridge meets in its first minutes in a real TouchDesigner, modelled here:
- `profile` (2023 or 2025) switches the version differences: only 2025 calls onGetCookLevel, and
  `CookLevel` exists only in a 2025 callbacks DAT's own globals (there is no `td.CookLevel`).
- A parameter has a mode (constant, expression, export, bind); setting `.val` puts it in constant
  mode, so writing `.val` erases a user's expression or bind; an exported parameter refuses it.
- An operator's own parameters and pages cannot be written during its own cook; `run(...,
  delayFrames=1, fromOP=op)` defers the write to the next frame (`standin_advance` runs it).
- A Script CHOP's time slicing starts every cook as its first input's (`timeSliceDefault`); a
  time-sliced Script CHOP is as long as the frames since its last cook.
- copyCUDAMemory needs the Script TOP's resolution and pixel format set to the memory's first.
- A Script TOP/CHOP created with `comp.create` comes with a docked callbacks DAT.
- A deleted operator (`destroy()`) is no longer `valid`; touching it raises.

Names starting with `standin_` are the test's controls (feed audio, advance time, cook an operator);
TouchDesigner has no such names and the bridge must never use them.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import enum
import re
import threading
import types

import numpy as np

PAR_NAME = re.compile(r"^[A-Z][a-z0-9]*$")
OP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Stricter than TouchDesigner (which allows more characters): names that also work as Python
# identifiers and in CHOP channel patterns.
CHAN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOP_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
PROFILES = (2023, 2025)

profile = 2025
thread_violations: list[str] = []
standin_run_errors: list[str] = []   # exceptions raised by deferred runs (TouchDesigner prints them)


class tdError(Exception):
    """What TouchDesigner raises for a call it rejects."""


def _check_thread(what: str) -> None:
    current = threading.current_thread()
    if current is not threading.main_thread():
        thread_violations.append(f"{what} from thread {current.name!r}")
        raise RuntimeError(f"td stand-in: {what} used from thread {current.name!r}; TouchDesigner objects "
                           f"belong to the main thread")


class _TDObject:
    """Base of every stand-in object: public attributes only on the main thread, no attributes beyond __slots__."""

    __slots__ = ()

    def __getattribute__(self, name):
        if not name.startswith("_"):
            _check_thread(f"{type(self).__name__}.{name}")
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            _check_thread(f"{type(self).__name__}.{name} =")
        object.__setattr__(self, name, value)


# -- enums: not attributes of td (a 2025 callbacks DAT gets CookLevel in its globals) ---------------

class _CookLevel(enum.Enum):
    """What a 2025 onGetCookLevel returns. AUTOMATIC is TouchDesigner's default."""

    AUTOMATIC = 0   # inputs changed and output used
    ON_CHANGE = 1   # inputs changed, output used or not
    WHEN_USED = 2   # every frame while the output is used
    ALWAYS = 3      # every frame


class _ParMode(enum.Enum):
    """A parameter's mode (par.mode; compare par.mode.name: `ParMode` may not be reachable as td.ParMode)."""

    CONSTANT = 0
    EXPRESSION = 1
    EXPORT = 2
    BIND = 3


standin_CookLevel = _CookLevel   # for tests only
standin_ParMode = _ParMode


# -- time and deferred runs -----------------------------------------------------------

_cooking_now: list = []       # the operator whose onCook is running (a stack)
_timeline_fps = [60.0]


def _note_time_read() -> None:
    # Reading a time value inside onCook makes the operator time-dependent: it cooks every frame.
    if _cooking_now:
        object.__setattr__(_cooking_now[-1], "_time_dependent", True)


class _AbsTime(_TDObject):
    """td.absTime: frames and seconds since TouchDesigner started, advanced by the test."""

    __slots__ = ("_frame", "_seconds")

    def __init__(self):
        self._frame = 0
        self._seconds = 0.0

    @property
    def frame(self) -> int:
        _note_time_read()
        return self._frame

    @property
    def seconds(self) -> float:
        _note_time_read()
        return self._seconds


absTime = _AbsTime()


class Run(_TDObject):
    """A delayed call made by run(): what it calls, from which operator, frames left."""

    __slots__ = ("source", "args", "fromOP", "group", "delayFrames", "remainingFrames", "active")

    def __init__(self, source, args, fromOP, group, delayFrames):
        self.source, self.args, self.fromOP, self.group = source, args, fromOP, group
        self.delayFrames = self.remainingFrames = delayFrames
        self.active = True

    def kill(self):
        if self in _runs:
            _runs.remove(self)


_runs: list[Run] = []


def run(scriptOrCallable, *args, endFrame=False, fromOP=None, asParameter=False, group=None, delayFrames=0,
        delayMilliSeconds=0, delayRef=None):
    """Run a callable (or Python text) later. Only the frame delay is modelled: delayFrames >= 1."""
    _check_thread("run()")
    if endFrame or asParameter or delayMilliSeconds or delayRef is not None:
        raise tdError("td stand-in: run() models delayFrames only")
    if isinstance(delayFrames, bool) or not isinstance(delayFrames, int) or delayFrames < 1:
        raise tdError(f"td stand-in: run() needs delayFrames >= 1, found {delayFrames!r}")
    if not (callable(scriptOrCallable) or isinstance(scriptOrCallable, str)):
        raise tdError(f"run(): expected a script or a callable, found {scriptOrCallable!r}")
    if fromOP is not None and not isinstance(fromOP, OP):
        raise tdError(f"run(): fromOP must be an operator, found {fromOP!r}")
    record = Run(scriptOrCallable, args, fromOP, group, delayFrames)
    _runs.append(record)
    return record


def standin_pending_runs() -> list[Run]:
    """The runs that have not executed yet."""
    return list(_runs)


def _execute(record: Run) -> None:
    source = object.__getattribute__(record, "source")
    args = object.__getattribute__(record, "args")
    try:
        if isinstance(source, str):
            exec(source, {"op": op, "absTime": absTime, "args": args})
        else:
            source(*args)
    except Exception as exc:  # TouchDesigner prints it in the textport and goes on
        standin_run_errors.append(f"{type(exc).__name__}: {exc}")


def standin_advance(frames: int = 1, fps: float = 60.0) -> None:
    """Move absTime on by `frames` frames at `fps`; at the start of each frame, run the runs that fall due."""
    _timeline_fps[0] = float(fps)
    for _ in range(frames):
        absTime._frame += 1
        absTime._seconds += 1 / fps
        due = []
        for record in list(_runs):
            record.remainingFrames -= 1
            if record.remainingFrames <= 0:
                _runs.remove(record)
                due.append(record)
        for record in due:
            _execute(record)


# -- parameters -----------------------------------------------------------------------

class ParGroup(list):
    """What page.appendX returns: a tuple-like group of Pars (size 1 here); use [0]."""


OP_STYLES = ("OP", "CHOP")


class Par(_TDObject):
    """A parameter: value, mode, range and menu attributes as documented; eval() gives the working value."""

    __slots__ = ("name", "label", "help", "style", "owner", "page", "min", "max", "clampMin", "clampMax",
                 "normMin", "normMax", "default", "readOnly", "_val", "_menuNames", "_menuLabels", "_mode",
                 "_expr", "_bindExpr", "_export", "_alive")

    STYLES = ("Float", "Int", "Toggle", "Menu", "Str", "File", "Pulse", "OP", "CHOP")

    def __init__(self, owner, name: str, style: str, label: str | None = None, page=None):
        default = {"Float": 0.0, "Int": 0, "Toggle": False, "Menu": "", "Str": "", "File": "", "Pulse": None,
                   "OP": None, "CHOP": None}[style]
        for attr, value in (("_alive", True), ("_val", default), ("_menuNames", []), ("_menuLabels", []),
                            ("_mode", _ParMode.CONSTANT), ("_expr", ""), ("_bindExpr", ""), ("_export", None),
                            ("owner", owner), ("name", name), ("style", style), ("page", page),
                            ("label", label if label is not None else name), ("help", ""), ("min", 0.0),
                            ("max", 1.0), ("clampMin", False), ("clampMax", False), ("normMin", 0.0),
                            ("normMax", 1.0), ("readOnly", False), ("default", default)):
            object.__setattr__(self, attr, value)

    def __getattribute__(self, name):
        if not name.startswith("_") and name != "valid" and not object.__getattribute__(self, "_alive"):
            raise tdError(f"par {object.__getattribute__(self, 'name')}: the parameter no longer exists")
        return _TDObject.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            _check_thread(f"Par.{name} =")
            if not object.__getattribute__(self, "_alive"):
                raise tdError(f"par {object.__getattribute__(self, 'name')}: the parameter no longer exists")
            owner = object.__getattribute__(self, "owner")
            owner._refuse_in_cook(f"setting par {object.__getattribute__(self, 'name')}.{name}")
        object.__setattr__(self, name, value)

    @property
    def valid(self) -> bool:
        return self._alive

    @property
    def menuNames(self) -> list[str]:
        return list(self._menuNames)

    @menuNames.setter
    def menuNames(self, names):
        names = list(names)
        if not all(isinstance(n, str) for n in names):
            raise tdError(f"par {self.name}: menuNames must be strings, found {names!r}")
        self._menuNames = names
        if self.style == "Menu" and self._val not in names:
            self._val = names[0] if names else ""

    @property
    def menuLabels(self) -> list[str]:
        return list(self._menuLabels)

    @menuLabels.setter
    def menuLabels(self, labels):
        self._menuLabels = [str(x) for x in labels]

    # -- value and mode ------------------------------------------------------------------
    @property
    def val(self):
        """The constant-mode value only (eval() gives the working value in any mode)."""
        return self._val

    @val.setter
    def val(self, value):
        if self._mode is _ParMode.EXPORT:
            raise tdError(f"par {self.name}: exported to by a CHOP; its value cannot be set")
        self._val = self._coerce(value)
        self._mode = _ParMode.CONSTANT  # as in TouchDesigner: an expression or bind is dropped

    @property
    def expr(self) -> str:
        return self._expr

    @expr.setter
    def expr(self, text):
        if not isinstance(text, str):
            raise tdError(f"par {self.name}: expr must be a string, found {text!r}")
        if self._mode is _ParMode.EXPORT:
            raise tdError(f"par {self.name}: exported to by a CHOP; its expression cannot be set")
        self._expr = text
        self._mode = _ParMode.EXPRESSION

    @property
    def bindExpr(self) -> str:
        return self._bindExpr

    @bindExpr.setter
    def bindExpr(self, text):
        if not isinstance(text, str):
            raise tdError(f"par {self.name}: bindExpr must be a string, found {text!r}")
        self._bindExpr = text

    @property
    def mode(self) -> _ParMode:
        return self._mode

    @mode.setter
    def mode(self, mode):
        if not isinstance(mode, _ParMode):
            raise tdError(f"par {self.name}: mode must be a ParMode, found {mode!r}")
        if mode is _ParMode.EXPORT and self._export is None:
            raise tdError(f"par {self.name}: no CHOP exports to this parameter")
        if mode is not _ParMode.EXPORT and self._export is not None:
            raise tdError(f"par {self.name}: exported to by a CHOP; turn the export off first")
        self._mode = mode

    def _coerce(self, value):
        style = self.style
        if style == "Pulse":
            raise tdError(f"par {self.name}: a pulse has no value; use pulse()")
        if style in ("Float", "Int"):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise tdError(f"par {self.name}: expected a number, found {value!r}")
            return float(value) if style == "Float" else int(round(float(value)))
        if style == "Toggle":
            if value not in (True, False, 0, 1):
                raise tdError(f"par {self.name}: expected a toggle value, found {value!r}")
            return bool(value)
        if style == "Menu":
            if not isinstance(value, str) or value not in self._menuNames:
                raise tdError(f"par {self.name}: {value!r} is not one of the menu names {self._menuNames}")
            return value
        if style in ("Str", "File"):
            if not isinstance(value, str):
                raise tdError(f"par {self.name}: expected a string, found {value!r}")
            return value
        # An operator reference: an operator or its path. A CHOP parameter refuses other families.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, OP):
            if style == "CHOP" and not isinstance(value, CHOP):
                raise tdError(f"par {self.name}: {value.path} is not a CHOP")
            return value
        raise tdError(f"par {self.name}: expected an operator or a path, found {value!r}")

    def _resolve(self, value):
        """An operator reference as eval() gives it: the operator, None, or a list (an expression may return one)."""
        if value is None or (isinstance(value, str) and not value):
            return None
        if isinstance(value, (list, tuple)):
            return [self._resolve(v) for v in value]
        if isinstance(value, str):
            value = _ops.get(value)
        if not isinstance(value, OP):
            return None
        if self.style == "CHOP" and not isinstance(value, CHOP):
            return None   # a CHOP parameter accepts CHOPs only
        return value

    def _from_python(self, raw):
        style = self.style
        try:
            if style in OP_STYLES:
                return self._resolve(raw)
            if style == "Float":
                return float(raw)
            if style == "Int":
                return int(raw)
            if style == "Toggle":
                return bool(raw)
            if style == "Pulse":
                raise tdError(f"par {self.name}: a pulse has no value")
            return str(raw)
        except (TypeError, ValueError) as exc:
            raise tdError(f"par {self.name}: {raw!r} is not a {style} value ({exc})") from None

    def _python(self, text: str):
        try:
            return builtins.eval(text, {"op": op, "absTime": absTime, "me": self.owner})
        except tdError:
            raise
        except Exception as exc:
            raise tdError(f"par {self.name}: expression {text!r} failed: {type(exc).__name__}: {exc}") from None

    def eval(self):
        mode = self._mode
        if mode is _ParMode.CONSTANT:
            value = self._resolve(self._val) if self.style in OP_STYLES else self._val
        elif mode is _ParMode.EXPRESSION:
            value = self._from_python(self._python(self._expr))
        elif mode is _ParMode.EXPORT:
            value = self._from_python(self._export)
        else:
            master = self._python(self._bindExpr)
            if not isinstance(master, Par):
                raise tdError(f"par {self.name}: bindExpr {self._bindExpr!r} does not give a parameter")
            value = self._from_python(master.eval())
        if self.style in ("Float", "Int"):
            if self.clampMin and value < self.min:
                value = type(value)(self.min)
            if self.clampMax and value > self.max:
                value = type(value)(self.max)
        return value

    def pulse(self):
        """Press a pulse: TouchDesigner calls the owner's callbacks onPulse(par)."""
        if self.style != "Pulse":
            raise tdError(f"par {self.name}: pulse() on a {self.style} parameter")
        _callbacks(self.owner).onPulse(self)


def standin_export(par: Par, value) -> None:
    """A CHOP exports `value` to `par` (export mode); None turns the export off (constant mode)."""
    object.__setattr__(par, "_export", value)
    object.__setattr__(par, "_mode", _ParMode.CONSTANT if value is None else _ParMode.EXPORT)


class ParCollection(_TDObject):
    """op.par: attribute access by parameter name; assigning sets the value; unknown names raise."""

    __slots__ = ("_pars",)

    def __init__(self):
        object.__setattr__(self, "_pars", {})

    def __getattr__(self, name):
        pars = object.__getattribute__(self, "_pars")
        if name in pars:
            return pars[name]
        raise AttributeError(f"no parameter named {name!r}")

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        _check_thread(f"par.{name} =")
        self.__getattr__(name).val = value

    def _add(self, par: Par):
        if par.name in self._pars:
            raise tdError(f"parameter {par.name!r} already exists")
        self._pars[par.name] = par

    def _remove(self, name: str):
        object.__setattr__(self._pars.pop(name), "_alive", False)


class Page(_TDObject):
    """A custom parameter page; appendX(name, label=None, replace=True) returns a ParGroup (use [0])."""

    __slots__ = ("name", "owner", "_pars")

    def __init__(self, owner, name: str):
        object.__setattr__(self, "_pars", [])
        self.owner, self.name = owner, name

    @property
    def pars(self) -> list[Par]:
        return list(self._pars)

    def _append(self, style: str, name: str, label: str | None, replace: bool) -> ParGroup:
        self.owner._refuse_in_cook(f"appending parameter {name!r}")
        if not isinstance(name, str) or not PAR_NAME.match(name):
            raise tdError(f"invalid parameter name {name!r}: a capital letter, then lowercase letters and digits only")
        existing = self.owner.par._pars.get(name)
        if existing is not None:
            if not replace:
                raise tdError(f"parameter {name!r} already exists")
            # replace=True (the default): the old parameter goes, a fresh one takes its name.
            object.__getattribute__(existing, "page")._pars.remove(existing)
            self.owner.par._remove(name)
        par = Par(self.owner, name, style, label, page=self)
        self.owner.par._add(par)
        self._pars.append(par)
        return ParGroup([par])

    def appendFloat(self, name, label=None, replace=True):
        return self._append("Float", name, label, replace)

    def appendInt(self, name, label=None, replace=True):
        return self._append("Int", name, label, replace)

    def appendToggle(self, name, label=None, replace=True):
        return self._append("Toggle", name, label, replace)

    def appendMenu(self, name, label=None, replace=True):
        return self._append("Menu", name, label, replace)

    def appendStr(self, name, label=None, replace=True):
        return self._append("Str", name, label, replace)

    def appendFile(self, name, label=None, replace=True):
        return self._append("File", name, label, replace)

    def appendPulse(self, name, label=None, replace=True):
        return self._append("Pulse", name, label, replace)

    def appendOP(self, name, label=None, replace=True):
        return self._append("OP", name, label, replace)

    def appendCHOP(self, name, label=None, replace=True):
        return self._append("CHOP", name, label, replace)

    def destroy(self):
        self.owner._refuse_in_cook(f"destroying page {self.name!r}")
        for par in self._pars:
            self.owner.par._remove(par.name)
        self._pars.clear()
        self.owner._pages.remove(self)


# -- operators ------------------------------------------------------------------------

_ops: dict[str, "OP"] = {}
_next_id = [1]


def op(path: str):
    """The operator at `path`, or None."""
    _check_thread("op()")
    return _ops.get(path)


class Connector(_TDObject):
    __slots__ = ("owner", "index")

    def __init__(self, owner, index):
        self.owner, self.index = owner, index

    def connect(self, source):
        if not isinstance(source, OP):
            raise tdError(f"connect() needs an operator, found {source!r}")
        self.owner._inputs[self.index] = source


class OP(_TDObject):
    """Base operator: name, path, id, valid, par, custom pages, inputs, node position, destroy()."""

    __slots__ = ("name", "path", "id", "par", "nodeX", "nodeY", "inputConnectors", "_inputs", "_pages",
                 "_children", "_docked", "_parent", "_cooking", "_destroyed", "_time_dependent", "_cook_level",
                 "_last_cook_frame", "standin_warnings", "standin_errors", "standin_script_errors")
    # (name, style, default, menu names) of the operator's own parameters.
    BUILTIN_PARS: tuple[tuple[str, str, object, tuple[str, ...]], ...] = ()

    def __init__(self, name: str, parent_path: str = ""):
        if not OP_NAME.match(name):
            raise tdError(f"invalid operator name {name!r}")
        path = f"{parent_path}/{name}"
        if path in _ops:
            raise tdError(f"an operator named {path!r} already exists")
        for attr, value in (("_inputs", [None]), ("_pages", []), ("_children", []), ("_docked", []),
                            ("_parent", None), ("_cooking", False), ("_destroyed", False),
                            ("_time_dependent", False), ("_cook_level", None), ("_last_cook_frame", None)):
            object.__setattr__(self, attr, value)
        self.name, self.path, self.id = name, path, _next_id[0]
        _next_id[0] += 1
        self.par = ParCollection()
        self.nodeX = self.nodeY = 0
        self.inputConnectors = [Connector(self, 0)]
        self.standin_warnings, self.standin_errors, self.standin_script_errors = [], [], []
        for pname, style, default, menu in self.BUILTIN_PARS:
            par = Par(self, pname, style)
            object.__setattr__(par, "_menuNames", list(menu))
            object.__setattr__(par, "_menuLabels", list(menu))
            object.__setattr__(par, "_val", default)
            object.__setattr__(par, "default", default)
            self.par._add(par)
        _ops[path] = self

    def __getattribute__(self, name):
        if not name.startswith("_") and name != "valid" and object.__getattribute__(self, "_destroyed"):
            raise tdError(f"{object.__getattribute__(self, 'path')}: the operator has been deleted")
        return _TDObject.__getattribute__(self, name)

    @property
    def valid(self) -> bool:
        return not self._destroyed

    @property
    def isCHOP(self) -> bool:
        return isinstance(self, CHOP)

    @property
    def isTOP(self) -> bool:
        return isinstance(self, scriptTOP)

    @property
    def isDAT(self) -> bool:
        return isinstance(self, textDAT)

    @property
    def isCOMP(self) -> bool:
        return isinstance(self, baseCOMP)

    def destroy(self):
        """Delete the operator (and its docked operators)."""
        for docked in list(self._docked):
            if docked.valid:
                docked.destroy()
        for name in list(self.par._pars):
            self.par._remove(name)
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        _ops.pop(self.path, None)
        object.__setattr__(self, "_destroyed", True)

    @property
    def inputs(self) -> list:
        return [o for o in self._inputs if o is not None]

    @property
    def customPages(self) -> list[Page]:
        return list(self._pages)

    def appendCustomPage(self, name: str) -> Page:
        self._refuse_in_cook(f"appending page {name!r}")
        if not isinstance(name, str) or not name:
            raise tdError(f"invalid page name {name!r}")
        page = Page(self, name)
        self._pages.append(page)
        return page

    def sortCustomPages(self, *pages):
        """Reorder the custom pages: the named ones first, in the order given."""
        self._refuse_in_cook("sorting pages")
        known = [p.name for p in self._pages]
        if any(name not in known for name in pages):
            raise tdError(f"sortCustomPages: {pages!r} names a page the operator does not have ({known})")
        first = [p for name in pages for p in self._pages if p.name == name]
        self._pages[:] = first + [p for p in self._pages if p not in first]

    def _require_cook(self, what: str):
        # The documentation: these methods are meant to be called inside onCook.
        if not self._cooking:
            raise tdError(f"{self.path}: {what} called outside onCook")

    def _refuse_in_cook(self, what: str):
        # Undocumented and known to cause cook-dependency loops: defer it with run(..., delayFrames=1, fromOP=op).
        if self._cooking:
            raise tdError(f"{self.path}: {what} during the operator's own cook")

    def _begin_cook(self):
        pass

    def _end_cook(self):
        pass

    def addWarning(self, message: str):
        self._require_cook("addWarning")
        self.standin_warnings.append(str(message))

    def addError(self, message: str):
        self._require_cook("addError")
        self.standin_errors.append(str(message))


class textDAT(OP):
    """A Text DAT: its text is run as a module when it serves as callbacks (DAT.module)."""

    __slots__ = ("_text", "_module")

    def __init__(self, name, parent_path=""):
        object.__setattr__(self, "_text", "")
        object.__setattr__(self, "_module", None)
        super().__init__(name, parent_path)

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str):
        self._text = str(value)
        self._module = None

    @property
    def module(self):
        if self._module is None:
            module = types.ModuleType(self.name)
            if profile >= 2025:
                # Only here, in the callbacks DAT's own globals: `import td; td.CookLevel` fails.
                module.CookLevel = _CookLevel
            exec(compile(self._text, self.path, "exec"), module.__dict__)
            self._module = module
        return self._module


def _callbacks(owner):
    dat = owner.par.callbacks.eval()
    if dat is None:
        raise tdError(f"{owner.path}: no callbacks DAT")
    return dat.module


# The text of the docked callbacks DAT a Script OP comes with (written here, not TouchDesigner's own).
_TEMPLATE = """# Script {kind} callbacks (td stand-in template)
def onSetupParameters(scriptOp):
    return

def onPulse(par):
    return

def onCook(scriptOp):
    {cook}
    return
"""
_TEMPLATE_2025 = """
def onGetCookLevel(scriptOp):
    return CookLevel.AUTOMATIC
"""


class baseCOMP(OP):
    """A component: create(optype, name) makes a child operator (a Script OP with its docked callbacks DAT)."""

    __slots__ = ()

    def create(self, optype, name: str):
        if not (isinstance(optype, type) and issubclass(optype, OP)):
            raise tdError(f"create() needs an operator type such as scriptTOP, found {optype!r}")
        child = optype(name, self.path)
        object.__setattr__(child, "_parent", self)
        self._children.append(child)
        if issubclass(optype, (scriptTOP, scriptCHOP)):
            dat = textDAT(f"{name}_callbacks", self.path)
            object.__setattr__(dat, "_parent", self)
            kind, cook = ("TOP", "pass") if issubclass(optype, scriptTOP) else ("CHOP", "scriptOp.clear()")
            dat.text = _TEMPLATE.format(kind=kind, cook=cook) + (_TEMPLATE_2025 if profile >= 2025 else "")
            self._children.append(dat)
            child._docked.append(dat)
            child.par.callbacks = dat
        return child

    @property
    def children(self) -> list:
        return list(self._children)


RESOLUTIONS = ("useinput", "eighth", "quarter", "half", "2x", "4x", "8x", "fit", "limit", "custom", "parpanel")
FORMATS = ("useinput", "rgba8fixed", "srgba8fixed", "rgba16fixed", "rgba16float", "rgba32float")
# The 4-component pixel format that matches device memory of each dtype.
CUDA_FORMAT = {np.dtype(np.uint8): "rgba8fixed", np.dtype(np.uint16): "rgba16fixed",
               np.dtype(np.float32): "rgba32float"}


class scriptTOP(OP):
    """A Script TOP: copyNumpyArray / copyCUDAMemory inside onCook; the result is kept in standin_image."""

    __slots__ = ("standin_image", "standin_cuda")
    BUILTIN_PARS = (("callbacks", "OP", None, ()),
                    ("outputresolution", "Menu", "useinput", RESOLUTIONS),
                    ("resolutionw", "Int", 256, ()), ("resolutionh", "Int", 256, ()),
                    # The issue report: a Script TOP's default pixel format is 32-bit float.
                    ("format", "Menu", "rgba32float", FORMATS))

    def __init__(self, name, parent_path=""):
        super().__init__(name, parent_path)
        self.standin_image = None  # what the TOP shows: (h, w, c) with row 0 the BOTTOM scanline
        self.standin_cuda = []     # one record per copyCUDAMemory call: (size, shape fields, stream)

    def copyNumpyArray(self, arr):
        self._require_cook("copyNumpyArray")
        if not isinstance(arr, np.ndarray):
            raise tdError(f"copyNumpyArray: expected a numpy array, found {type(arr).__name__}")
        if arr.dtype not in TOP_DTYPES:
            raise tdError(f"copyNumpyArray: dtype {arr.dtype} not supported; use uint8, uint16 or float32")
        if arr.ndim != 3:
            raise tdError(f"copyNumpyArray: expected shape (height, width, channels), found {arr.shape}")
        h, w, c = arr.shape
        if h < 1 or w < 1 or not 1 <= c <= 4:
            raise tdError(f"copyNumpyArray: expected 1..4 channels and a non-empty image, found {arr.shape}")
        if not arr.flags.c_contiguous:
            # A negative-stride view reportedly crashed TouchDesigner: refuse anything not C-contiguous.
            raise tdError("copyNumpyArray: the array must be C-contiguous (np.ascontiguousarray)")
        self.standin_image = arr.copy()

    def copyCUDAMemory(self, address, size, shape, stream=None):
        """No GPU here: the bytes at `address` are read from HOST memory, so only a test's fake device
        array (host memory behind a device-array interface) may be passed."""
        self._require_cook("copyCUDAMemory")
        if not isinstance(shape, CUDAMemoryShape):
            raise tdError("copyCUDAMemory: shape must be a td.CUDAMemoryShape")
        fields = {f: object.__getattribute__(shape, f) for f in CUDAMemoryShape.__slots__}
        for f in ("width", "height", "numComps"):
            if not isinstance(fields[f], int) or isinstance(fields[f], bool) or fields[f] < 1:
                raise tdError(f"copyCUDAMemory: shape.{f} must be a positive int, found {fields[f]!r}")
        if not 1 <= fields["numComps"] <= 4:
            raise tdError(f"copyCUDAMemory: numComps must be 1..4, found {fields['numComps']}")
        try:
            dtype = np.dtype(fields["dataType"]) if fields["dataType"] is not None else None
        except TypeError:
            dtype = None
        if dtype not in TOP_DTYPES:
            raise tdError(f"copyCUDAMemory: shape.dataType must be uint8, uint16 or float32, found {fields['dataType']!r}")
        if not isinstance(address, int) or isinstance(address, bool) or address <= 0:
            raise tdError(f"copyCUDAMemory: address must be a device pointer (int), found {address!r}")
        expected = fields["width"] * fields["height"] * fields["numComps"] * dtype.itemsize
        if size != expected:
            raise tdError(f"copyCUDAMemory: size {size} != width*height*numComps*itemsize = {expected}")
        if stream is not None and (not isinstance(stream, int) or isinstance(stream, bool)):
            raise tdError(f"copyCUDAMemory: stream must be an int (cudaStream_t), found {stream!r}")
        # Projects that use copyCUDAMemory set the TOP's resolution and format first; a uint8 copy
        # into the default float format came out corrupted. Here a mismatch is refused outright.
        par = self.par
        resolution = (par.outputresolution.eval(), par.resolutionw.eval(), par.resolutionh.eval())
        if resolution != ("custom", fields["width"], fields["height"]):
            raise tdError(f"copyCUDAMemory: the TOP's output resolution {resolution} does not match the memory's "
                          f"{fields['width']}x{fields['height']}; set outputresolution 'custom', resolutionw, "
                          f"resolutionh first")
        if fields["numComps"] != 4 or par.format.eval() != CUDA_FORMAT[dtype]:
            raise tdError(f"copyCUDAMemory: pixel format {par.format.eval()!r} does not match {dtype} memory with "
                          f"{fields['numComps']} components (expected 4 and {CUDA_FORMAT[dtype]!r})")
        raw = ctypes.string_at(address, size)
        self.standin_image = np.frombuffer(raw, dtype=dtype).reshape(
            fields["height"], fields["width"], fields["numComps"]).copy()
        self.standin_cuda.append({"size": size, **{k: v for k, v in fields.items()}, "stream": stream})


class Channel(_TDObject):
    """A Script CHOP channel: vals holds exactly numSamples numbers."""

    __slots__ = ("name", "owner", "_vals")

    def __init__(self, owner, name):
        self.owner, self.name = owner, name
        object.__setattr__(self, "_vals", np.zeros(owner.numSamples, dtype=np.float32))

    @property
    def vals(self) -> list[float]:
        return [float(v) for v in self._vals]

    @vals.setter
    def vals(self, values):
        self.owner._require_cook("Channel.vals")
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or len(arr) != self.owner.numSamples:
            raise tdError(f"channel {self.name}: expected {self.owner.numSamples} values, found shape {arr.shape}")
        self._vals = arr.astype(np.float32)


class CHOP(OP):
    """Channels read with numpyArray() -> (numChans, numSamples) float32."""

    __slots__ = ()


class scriptCHOP(CHOP):
    """A Script CHOP: clear(), appendChan(name), isTimeSlice before rate before numSamples, copyNumpyArray.

    Every cook starts with isTimeSlice = timeSliceDefault (the first input's isTimeSlice). If the
    cook leaves it True, the output is a time slice: as many samples as the frames since the
    CHOP's last cook take at its rate, whatever numSamples the script set.
    """

    __slots__ = ("_chans", "_rate", "_numSamples", "_isTimeSlice", "_samples_set_this_cook", "_shape_set_this_cook")
    BUILTIN_PARS = (("callbacks", "OP", None, ()),)

    def __init__(self, name, parent_path=""):
        for attr, value in (("_chans", []), ("_rate", 60.0), ("_numSamples", 1), ("_isTimeSlice", False),
                            ("_samples_set_this_cook", False), ("_shape_set_this_cook", False)):
            object.__setattr__(self, attr, value)
        super().__init__(name, parent_path)

    def clear(self):
        self._require_cook("clear")
        self._chans = []

    def appendChan(self, name: str) -> Channel:
        self._require_cook("appendChan")
        if not isinstance(name, str) or not CHAN_NAME.match(name):
            raise tdError(f"invalid channel name {name!r}")
        if any(c.name == name for c in self._chans):
            raise tdError(f"channel {name!r} already exists")
        chan = Channel(self, name)
        self._chans.append(chan)
        return chan

    @property
    def numChans(self) -> int:
        return len(self._chans)

    def chans(self) -> list[Channel]:
        return list(self._chans)

    def chan(self, name: str):
        return next((c for c in self._chans if c.name == name), None)

    @property
    def timeSliceDefault(self) -> bool:
        return bool(self.inputs[0].isTimeSlice) if self.inputs else False

    @property
    def isTimeSlice(self) -> bool:
        return self._isTimeSlice

    @isTimeSlice.setter
    def isTimeSlice(self, value):
        self._require_cook("isTimeSlice =")
        if self._shape_set_this_cook:
            raise tdError("set isTimeSlice before rate and numSamples")
        if not isinstance(value, bool):
            raise tdError(f"isTimeSlice must be a bool, found {value!r}")
        self._isTimeSlice = value

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, value):
        self._require_cook("rate =")
        if self._samples_set_this_cook:
            raise tdError("set rate before numSamples (the documented order)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise tdError(f"rate must be a positive number, found {value!r}")
        self._rate = float(value)
        self._shape_set_this_cook = True

    @property
    def numSamples(self) -> int:
        return self._numSamples

    @numSamples.setter
    def numSamples(self, value):
        self._require_cook("numSamples =")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise tdError(f"numSamples must be an int >= 0, found {value!r}")
        self._resize(value)
        self._samples_set_this_cook = self._shape_set_this_cook = True

    def _resize(self, n: int):
        self._numSamples = n
        for c in self._chans:
            c._vals = np.resize(c._vals, n).astype(np.float32)

    def _begin_cook(self):
        self._isTimeSlice = self.timeSliceDefault
        self._samples_set_this_cook = self._shape_set_this_cook = False

    def _end_cook(self):
        if self._isTimeSlice:
            last = self._last_cook_frame
            frames = max(1, absTime._frame - last) if last is not None else 1
            self._resize(max(1, round(frames * self._rate / _timeline_fps[0])))

    def copyNumpyArray(self, arr):
        self._require_cook("copyNumpyArray")
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 2:
            raise tdError("copyNumpyArray: expected a float32 array shaped (numChannels, numSamples)")
        if not arr.flags.c_contiguous:
            raise tdError("copyNumpyArray: the array must be C-contiguous")
        if arr.shape != (self.numChans, self.numSamples):
            raise tdError(f"copyNumpyArray: shape {arr.shape} != (numChans, numSamples) = "
                          f"{(self.numChans, self.numSamples)}")
        for chan, row in zip(self._chans, arr):
            chan._vals = row.copy()

    def numpyArray(self):
        return np.stack([c._vals for c in self._chans]) if self._chans else np.zeros((0, self.numSamples), np.float32)


class audiodeviceinCHOP(CHOP):
    """An Audio Device In CHOP: numpyArray() is this frame's time slice, (numChans, numSamples) float32."""

    __slots__ = ("rate", "isTimeSlice", "_slice")

    def __init__(self, name, parent_path="", rate: int = 44100, channels: int = 2):
        super().__init__(name, parent_path)
        self.rate = rate
        self.isTimeSlice = True
        object.__setattr__(self, "_slice", np.zeros((channels, 0), dtype=np.float32))

    @property
    def numChans(self) -> int:
        return self._slice.shape[0]

    @property
    def numSamples(self) -> int:
        return self._slice.shape[1]

    def numpyArray(self):
        return self._slice.copy()

    def standin_feed(self, block):
        """Set this frame's time slice (channels, n)."""
        block = np.asarray(block, dtype=np.float32)
        self._slice = block.reshape(1, -1) if block.ndim == 1 else block


class CUDAMemoryShape(_TDObject):
    """Describes interleaved HWC device memory: width, height, numComps, dataType (a numpy dtype); nothing else."""

    __slots__ = ("width", "height", "numComps", "dataType")

    def __init__(self):
        self.width = self.height = self.numComps = self.dataType = None


# Capitalised aliases as the classes are named in the documentation pages.
ScriptTOP, ScriptCHOP, TextDAT = scriptTOP, scriptCHOP, textDAT


# -- the test's controls ----------------------------------------------------------------

def standin_reset(version: int = 2025) -> None:
    """Forget every operator and pending run, reset time and the records; act as TouchDesigner `version`."""
    global profile
    if version not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, found {version!r}")
    profile = version
    _ops.clear()
    _runs.clear()
    _cooking_now.clear()
    thread_violations.clear()
    standin_run_errors.clear()
    absTime._frame, absTime._seconds = 0, 0.0
    _timeline_fps[0] = 60.0


def standin_setup(owner) -> None:
    """What TouchDesigner does on 'Setup Parameters': call the callbacks' onSetupParameters."""
    _callbacks(owner).onSetupParameters(owner)


def standin_cook(owner) -> bool:
    """Cook one operator as TouchDesigner does: clear its messages, ask its cook level (2025), call onCook.

    A Python exception in a callback becomes a script error on the operator (kept in
    standin_script_errors), as TouchDesigner shows it; returns False then.
    """
    owner.standin_warnings, owner.standin_errors = [], []
    try:
        callbacks = _callbacks(owner)
        if profile >= 2025 and hasattr(callbacks, "onGetCookLevel"):
            level = callbacks.onGetCookLevel(owner)
            if not isinstance(level, _CookLevel):
                raise tdError(f"onGetCookLevel must return a CookLevel, found {level!r}")
            object.__setattr__(owner, "_cook_level", level)
        object.__setattr__(owner, "_time_dependent", False)
        owner._begin_cook()
        object.__setattr__(owner, "_cooking", True)
        _cooking_now.append(owner)
        try:
            callbacks.onCook(owner)
            owner._end_cook()
        finally:
            _cooking_now.pop()
            object.__setattr__(owner, "_cooking", False)
        return True
    except Exception as exc:  # TouchDesigner shows it on the operator and goes on with the next frame
        owner.standin_script_errors.append(f"{type(exc).__name__}: {exc}")
        return False
    finally:
        object.__setattr__(owner, "_last_cook_frame", absTime._frame)


@contextlib.contextmanager
def standin_inside_cook(owner):
    """Act as during owner's onCook (checks on the stand-in itself): onCook's methods work, its parameters do not."""
    object.__setattr__(owner, "_cooking", True)
    try:
        yield owner
    finally:
        object.__setattr__(owner, "_cooking", False)


def standin_cooks_every_frame(owner) -> bool:
    """Whether TouchDesigner would cook `owner` again next frame: cook level ALWAYS (2025) or it read the time."""
    return (profile >= 2025 and owner._cook_level is _CookLevel.ALWAYS) or owner._time_dependent
