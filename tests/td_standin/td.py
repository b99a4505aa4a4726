"""A strict stand-in for TouchDesigner's `td` module, written from the documented API (shared/notes/touchdesigner.md).

TouchDesigner cannot run here, so the bridge is tested against this module. It is as strict as
TouchDesigner where the documentation says what TouchDesigner rejects (array dtypes, shapes and
strides, parameter names, duplicates, CUDAMemoryShape fields, the Script CHOP's rate-before-numSamples
rule) and stricter where the documentation is vague, never looser. Every TouchDesigner object
here checks that it is used from the main thread: a call from any other thread is recorded in
`thread_violations` and raises, so a test can prove a worker thread never touched TouchDesigner.

Names starting with `standin_` are the test's controls (feed audio, advance time, cook an operator);
TouchDesigner has no such names and the bridge must never use them.
"""

from __future__ import annotations

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

thread_violations: list[str] = []


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


# -- time and cook levels -------------------------------------------------------------

class CookLevel(enum.Enum):
    """What onGetCookLevel may return (2025). Only ALWAYS is used by the bridge."""

    AUTOMATIC = 0
    ON_CHANGE = 1
    ALWAYS = 2


class _AbsTime(_TDObject):
    """td.absTime: frames and seconds since TouchDesigner started, advanced by the test."""

    __slots__ = ("_frame", "_seconds")

    def __init__(self):
        self._frame = 0
        self._seconds = 0.0

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def seconds(self) -> float:
        return self._seconds


absTime = _AbsTime()


def standin_advance(frames: int = 1, fps: float = 60.0) -> None:
    """Move absTime on by `frames` frames at `fps`."""
    absTime._frame += frames
    absTime._seconds += frames / fps


# -- parameters -----------------------------------------------------------------------

class ParGroup(list):
    """What page.appendX returns: a tuple-like group of Pars (size 1 here); use [0]."""


class Par(_TDObject):
    """A parameter: value, range and menu attributes as documented; eval() gives the value."""

    __slots__ = ("name", "label", "help", "style", "owner", "page", "min", "max", "clampMin", "clampMax",
                 "normMin", "normMax", "default", "readOnly", "_val", "_menuNames", "_menuLabels")

    STYLES = ("Float", "Int", "Toggle", "Menu", "Str", "File", "Pulse", "OP")

    def __init__(self, owner, name: str, style: str, label: str | None = None, page=None):
        object.__setattr__(self, "_val", None)
        object.__setattr__(self, "_menuNames", [])
        object.__setattr__(self, "_menuLabels", [])
        self.owner, self.name, self.style, self.page = owner, name, style, page
        self.label = label if label is not None else name
        self.help = ""
        self.min, self.max = 0.0, 1.0
        self.clampMin = self.clampMax = False
        self.normMin, self.normMax = 0.0, 1.0
        self.readOnly = False
        self.default = {"Float": 0.0, "Int": 0, "Toggle": False, "Menu": "", "Str": "", "File": "",
                        "Pulse": None, "OP": None}[style]
        self._val = self.default

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

    @property
    def val(self):
        return self._val

    @val.setter
    def val(self, value):
        self._val = self._coerce(value)

    def _coerce(self, value):
        style = self.style
        if style == "Pulse":
            raise tdError(f"par {self.name}: a pulse has no value; use pulse()")
        if style == "Float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise tdError(f"par {self.name}: expected a number, found {value!r}")
            return float(value)
        if style == "Int":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise tdError(f"par {self.name}: expected a number, found {value!r}")
            return int(round(float(value)))
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
        if value is None or value == "" or isinstance(value, OP):  # OP parameter: an operator or its path
            return value
        if isinstance(value, str):
            return value
        raise tdError(f"par {self.name}: expected an operator or a path, found {value!r}")

    def eval(self):
        value = self._val
        if self.style == "OP":
            if isinstance(value, str) and value:
                return op(value)
            return value or None
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
        del self._pars[name]


class Page(_TDObject):
    """A custom parameter page; appendX(name, label=None) returns a ParGroup (use [0])."""

    __slots__ = ("name", "owner", "_pars")

    def __init__(self, owner, name: str):
        object.__setattr__(self, "_pars", [])
        self.owner, self.name = owner, name

    @property
    def pars(self) -> list[Par]:
        return list(self._pars)

    def _append(self, style: str, name: str, label: str | None) -> ParGroup:
        if not isinstance(name, str) or not PAR_NAME.match(name):
            raise tdError(f"invalid parameter name {name!r}: a capital letter, then lowercase letters and digits only")
        par = Par(self.owner, name, style, label, page=self)
        self.owner.par._add(par)
        self._pars.append(par)
        return ParGroup([par])

    def appendFloat(self, name, label=None):
        return self._append("Float", name, label)

    def appendInt(self, name, label=None):
        return self._append("Int", name, label)

    def appendToggle(self, name, label=None):
        return self._append("Toggle", name, label)

    def appendMenu(self, name, label=None):
        return self._append("Menu", name, label)

    def appendStr(self, name, label=None):
        return self._append("Str", name, label)

    def appendFile(self, name, label=None):
        return self._append("File", name, label)

    def appendPulse(self, name, label=None):
        return self._append("Pulse", name, label)

    def appendOP(self, name, label=None):
        return self._append("OP", name, label)

    def destroy(self):
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
    """Base operator: name, path, id, par, custom pages, inputs, node position."""

    __slots__ = ("name", "path", "id", "par", "nodeX", "nodeY", "inputConnectors", "_inputs", "_pages",
                 "_children", "_cooking", "standin_warnings", "standin_errors", "standin_script_errors")
    BUILTIN_PARS: tuple[tuple[str, str], ...] = ()

    def __init__(self, name: str, parent_path: str = ""):
        if not OP_NAME.match(name):
            raise tdError(f"invalid operator name {name!r}")
        path = f"{parent_path}/{name}"
        if path in _ops:
            raise tdError(f"an operator named {path!r} already exists")
        object.__setattr__(self, "_inputs", [None])
        object.__setattr__(self, "_pages", [])
        object.__setattr__(self, "_children", [])
        object.__setattr__(self, "_cooking", False)
        self.name, self.path, self.id = name, path, _next_id[0]
        _next_id[0] += 1
        self.par = ParCollection()
        self.nodeX = self.nodeY = 0
        self.inputConnectors = [Connector(self, 0)]
        self.standin_warnings, self.standin_errors, self.standin_script_errors = [], [], []
        for pname, style in self.BUILTIN_PARS:
            self.par._add(Par(self, pname, style))
        _ops[path] = self

    @property
    def inputs(self) -> list:
        return [o for o in self._inputs if o is not None]

    @property
    def customPages(self) -> list[Page]:
        return list(self._pages)

    def appendCustomPage(self, name: str) -> Page:
        if not isinstance(name, str) or not name:
            raise tdError(f"invalid page name {name!r}")
        page = Page(self, name)
        self._pages.append(page)
        return page

    def _require_cook(self, what: str):
        # The documentation: these methods are meant to be called inside onCook.
        if not self._cooking:
            raise tdError(f"{self.path}: {what} called outside onCook")

    def addWarning(self, message: str):
        self._require_cook("addWarning")
        self.standin_warnings.append(str(message))

    def addError(self, message: str):
        self._require_cook("addError")
        self.standin_errors.append(str(message))


class baseCOMP(OP):
    """A component: create(optype, name) makes a child operator."""

    __slots__ = ()

    def create(self, optype, name: str):
        if not (isinstance(optype, type) and issubclass(optype, OP)):
            raise tdError(f"create() needs an operator type such as scriptTOP, found {optype!r}")
        child = optype(name, self.path)
        self._children.append(child)
        return child

    @property
    def children(self) -> list:
        return list(self._children)


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
            exec(compile(self._text, self.path, "exec"), module.__dict__)
            self._module = module
        return self._module


def _callbacks(owner):
    dat = owner.par.callbacks.eval()
    if dat is None:
        raise tdError(f"{owner.path}: no callbacks DAT")
    return dat.module


class scriptTOP(OP):
    """A Script TOP: copyNumpyArray / copyCUDAMemory inside onCook; the result is kept in standin_image."""

    __slots__ = ("standin_image", "standin_cuda")
    BUILTIN_PARS = (("callbacks", "OP"),)

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
    """A Script CHOP: clear(), appendChan(name), rate before numSamples, copyNumpyArray((chans, samples) float32)."""

    __slots__ = ("_chans", "_rate", "_numSamples", "_samples_set_this_cook")
    BUILTIN_PARS = (("callbacks", "OP"),)

    def __init__(self, name, parent_path=""):
        object.__setattr__(self, "_chans", [])
        object.__setattr__(self, "_rate", 60.0)
        object.__setattr__(self, "_numSamples", 1)
        object.__setattr__(self, "_samples_set_this_cook", False)
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

    @property
    def numSamples(self) -> int:
        return self._numSamples

    @numSamples.setter
    def numSamples(self, value):
        self._require_cook("numSamples =")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise tdError(f"numSamples must be an int >= 0, found {value!r}")
        self._numSamples = value
        self._samples_set_this_cook = True
        for c in self._chans:
            c._vals = np.resize(c._vals, value).astype(np.float32)

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

def standin_reset() -> None:
    """Forget every operator, reset time and the thread-violation record."""
    _ops.clear()
    thread_violations.clear()
    absTime._frame, absTime._seconds = 0, 0.0


def standin_setup(owner) -> None:
    """What TouchDesigner does on 'Setup Parameters': call the callbacks' onSetupParameters."""
    _callbacks(owner).onSetupParameters(owner)


def standin_cook(owner) -> bool:
    """Cook one operator as TouchDesigner does: clear its messages, call onCook inside a cook.

    A Python exception in the callback becomes a script error on the operator (kept in
    standin_script_errors), as TouchDesigner shows it; returns False then.
    """
    owner.standin_warnings, owner.standin_errors = [], []
    if isinstance(owner, scriptCHOP):
        object.__setattr__(owner, "_samples_set_this_cook", False)
    object.__setattr__(owner, "_cooking", True)
    try:
        _callbacks(owner).onCook(owner)
        return True
    except Exception as exc:  # TouchDesigner shows it on the operator and goes on with the next frame
        owner.standin_script_errors.append(f"{type(exc).__name__}: {exc}")
        return False
    finally:
        object.__setattr__(owner, "_cooking", False)
