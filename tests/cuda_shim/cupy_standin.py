"""A strict stand-in for the CuPy calls the project makes, running the kernels g++ compiled (gxx.py).

Written from CuPy's own source (cupy/_core/raw.pyx, cupy/cuda/function.pyx, cupy/_core/_scalar.pyx,
cupy/cuda/memory.pyx, cupy/_core/core.pyx). As strict as CuPy where CuPy checks, stricter where
CuPy would go on with bytes the kernel misreads, never looser:
- Modules are memoized on (source, options), as `_get_raw_module` is: two RawModules of one
  source share one module and its `__constant__` symbols, exactly as on a GPU.
- A kernel argument is converted as CuPy's `_pointer` converts it (a Python int becomes int64, a
  float float64, a numpy array of more than one element is refused) and must then be the kernel
  parameter's exact type. CuPy hands the driver those bytes whatever the parameter: a float64
  given for a `float` is read as garbage, so here it raises.
- `grid` and `block` must be tuples (Function.__call__ declares them so) within CUDA's limits.
- Device memory is host memory with red zones around every allocation, filled with a NaN of the
  allocation's own, and `empty` arrays start as that NaN too: a kernel that reads outside its
  arrays or leaves an element unwritten yields NaN; one that writes outside them fails its launch.
- A device array never becomes a numpy array implicitly (`np.asarray(a)` raises, as in CuPy).
Every operation runs when called, in call order, as on one stream: the stand-in cannot show races
between streams.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import types
import weakref
from pathlib import Path

import numpy as np

from . import gxx

float32, float64, int32, int64, uint8 = np.float32, np.float64, np.int32, np.int64, np.uint8

RED_ZONE = 256  # bytes before and after every allocation (a multiple of 4: bodies stay aligned)
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)

build_dir: Path | None = None  # where compiled modules go; set by the test fixture


# -- memory ---------------------------------------------------------------------------

class _Allocation:
    """nbytes of device memory between two red zones of this allocation's own NaN pattern."""

    serials = itertools.count(1)

    def __init__(self, nbytes: int):
        # A quiet NaN whose payload names the allocation: arithmetic on it keeps the payload, so a
        # value read out of one red zone and written into another still shows as damage there.
        word = np.uint32(0x7FC00000 | next(self.serials) % 0x3FFFFF)
        words = -(-(nbytes + 2 * RED_ZONE) // 4)
        self.buffer = np.full(words, word, np.uint32).view(np.uint8)[:nbytes + 2 * RED_ZONE]
        self.expected = self.buffer.copy()
        self.body = self.buffer[RED_ZONE:RED_ZONE + nbytes]  # poisoned too, as cudaMalloc leaves memory unset
        self.ptr, self.size = self.body.ctypes.data, nbytes
        _live.add(self)

    def intact(self) -> bool:
        zones = (slice(None, RED_ZONE), slice(RED_ZONE + self.size, None))
        return all(np.array_equal(self.buffer[z], self.expected[z]) for z in zones)


class _Symbol:
    """A module's __constant__ variable: its address and size, owned by the loaded module."""

    def __init__(self, ptr: int, size: int, module: gxx.Module):
        self.ptr, self.size, self.module = ptr, size, module


_live: weakref.WeakSet[_Allocation] = weakref.WeakSet()


class MemoryPointer:
    """A device address inside an allocation (or a module's symbol), as cupy.cuda.MemoryPointer."""

    def __init__(self, mem, offset: int):
        self.mem, self.ptr, self.device_id = mem, mem.ptr + offset, 0

    def _span(self, size: int) -> None:
        if not 0 <= self.ptr - self.mem.ptr <= self.mem.size - size:
            raise ValueError(f"{size} bytes at offset {self.ptr - self.mem.ptr} run past the end of a "
                             f"{self.mem.size}-byte allocation")

    def copy_from_device(self, src: MemoryPointer, size: int) -> None:
        """Device-to-device copy (CuPy: cudaMemcpy on the legacy default stream)."""
        if not isinstance(src, MemoryPointer):
            raise TypeError(f"Argument 'src' has incorrect type (expected MemoryPointer, got {type(src).__name__})")
        self._span(size)
        src._span(size)
        if size > 0:
            np.copyto(_bytes_at(self, size), _bytes_at(src, size))

    def copy_from_device_async(self, src: MemoryPointer, size: int, stream=None) -> None:
        """The same copy on `stream` (default: the current stream); at once here, as every operation is."""
        self.copy_from_device(src, size)


def _bytes_at(pointer: MemoryPointer, size: int) -> np.ndarray:
    """The `size` bytes at pointer as a numpy view, which keeps an allocation alive (the memo keeps symbols)."""
    offset = pointer.ptr - pointer.mem.ptr
    if isinstance(pointer.mem, _Allocation):
        return pointer.mem.body[offset:offset + size]
    return np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(pointer.ptr))


# -- arrays ---------------------------------------------------------------------------

class ndarray:
    """A device array: host memory the kernels address directly, reachable from numpy only through get()."""

    def __init__(self, shape, dtype=float, memptr: MemoryPointer | None = None):
        dtype = np.dtype(dtype)
        shape = tuple(operator.index(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if memptr is None:
            memptr = MemoryPointer(_Allocation(nbytes), 0)
        memptr._span(nbytes)
        self._mem, self._view = memptr.mem, _bytes_at(memptr, nbytes).view(dtype).reshape(shape)

    shape = property(lambda self: self._view.shape)
    dtype = property(lambda self: self._view.dtype)
    size = property(lambda self: self._view.size)
    ndim = property(lambda self: self._view.ndim)
    nbytes = property(lambda self: self._view.nbytes)
    strides = property(lambda self: self._view.strides)
    itemsize = property(lambda self: self._view.itemsize)

    @property
    def data(self) -> MemoryPointer:
        return MemoryPointer(self._mem, self._view.ctypes.data - self._mem.ptr)

    @property
    def __cuda_array_interface__(self) -> dict:
        contiguous = self._view.flags.c_contiguous
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._view.ctypes.data, False),
                "version": 3, "strides": None if contiguous else self.strides}

    def __getitem__(self, key) -> ndarray:
        if not isinstance(key, (slice, tuple)) or (isinstance(key, tuple) and not all(
                isinstance(k, slice) for k in key)):
            raise NotImplementedError("the stand-in slices device arrays with slices only")
        view = object.__new__(ndarray)
        view._mem, view._view = self._mem, self._view[key]
        return view

    def __len__(self) -> int:
        return len(self._view)

    def get(self, stream=None, order="C", out: np.ndarray | None = None, blocking: bool = True) -> np.ndarray:
        """A host copy, or a copy into `out` (cupy: a numpy array of the same dtype and shape)."""
        if out is None:
            return self._view.copy(order=order)
        if not isinstance(out, np.ndarray):
            raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
        if out.dtype != self.dtype:
            raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
        if out.shape != self.shape:
            raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
        np.copyto(out, self._view)
        return out

    def set(self, arr: np.ndarray, stream=None) -> None:
        """Copy a host array of the same dtype and shape in."""
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        np.copyto(self._view, arr)

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    __array_ufunc__ = None  # numpy arithmetic on a device array raises, as it does with CuPy's
    __array_priority__ = 100

    def __repr__(self) -> str:
        return f"stand-in cupy.ndarray(shape={self.shape}, dtype={self.dtype})"


ndarray.__module__ = "cupy"  # as type(cupy array).__module__, which host code checks


def empty(shape, dtype=float) -> ndarray:
    return ndarray(shape, dtype)


def zeros(shape, dtype=float) -> ndarray:
    a = ndarray(shape, dtype)
    a.set(np.zeros(a.shape, a.dtype))
    return a


def asarray(a, dtype=None) -> ndarray:
    if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    host = np.ascontiguousarray(a, dtype=dtype)
    out = ndarray(host.shape, host.dtype)
    out.set(host)
    return out


def asnumpy(a, stream=None) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


# -- kernels --------------------------------------------------------------------------

_modules: dict[tuple, gxx.Module] = {}


def _get_raw_module(code: str, options: tuple) -> gxx.Module:
    """One module per (source, options) for the whole process, as CuPy memoizes `_get_raw_module`."""
    key = (code, options)
    if key not in _modules:
        if build_dir is None:
            raise RuntimeError("cupy_standin.build_dir is not set")
        _modules[key] = gxx.Module(code, options, build_dir)
    return _modules[key]


def _typed(name: str, kind: str, value, expected: type) -> None:
    if not isinstance(value, expected):
        raise TypeError(f"Argument '{name}' has incorrect type (expected {kind}, got {type(value).__name__})")


def _as_passed(x):
    """What CuPy's `_pointer` hands the driver for x: ('pointer', address, array or None) or ('value', numpy scalar)."""
    if x is None:
        return "pointer", 0, None
    if isinstance(x, ndarray):
        return "pointer", x._view.ctypes.data, x
    if isinstance(x, MemoryPointer):
        return "pointer", x.ptr, None
    if isinstance(x, np.ndarray):
        if x.size == 1:
            return "value", x.reshape(()).copy()[()]
        raise TypeError(f"You are trying to pass a numpy.ndarray of shape {x.shape} as a kernel parameter. Only "
                        "numpy.ndarrays of size one can be passed by value. If you meant to pass a pointer to "
                        "__global__ memory, you need to pass a cupy.ndarray instead.")
    if type(x) is bool:
        return "value", np.bool_(x)
    if type(x) is int:
        return "value", (np.uint64 if x >= 2**63 else np.int64)(x)
    if type(x) is float:
        return "value", np.float64(x)
    if type(x) is complex:
        return "value", np.complex128(x)
    if isinstance(x, np.generic):
        return "value", x
    raise TypeError(f"Unsupported type {type(x)}")


def _argument(kernel: str, param: gxx.Param, x) -> np.ndarray:
    """The bytes to pass for param: checked against the parameter's C type, never converted."""
    passed = _as_passed(x)
    where = f"kernel {kernel}, parameter '{param.ctype} {param.name}'"
    if param.pointer:
        if passed[0] != "pointer":
            raise TypeError(f"{where}: got {type(x).__name__} {x!r}; CuPy would pass its bytes as an address")
        array = passed[2]
        if array is not None:
            if array.dtype != param.dtype:
                raise TypeError(f"{where}: got a {array.dtype} array; the kernel would read its bytes as "
                                f"{param.dtype}")
            if not array._view.flags.c_contiguous:
                raise TypeError(f"{where}: got a non-contiguous array; CuPy passes only its first address")
        return np.array(passed[1], np.uintp)
    if passed[0] != "value":
        raise TypeError(f"{where}: got a device pointer for a value parameter")
    value = passed[1]
    if value.dtype != param.dtype:
        raise TypeError(f"{where}: got {type(x).__name__} {x!r}, passed by CuPy as {value.dtype.itemsize} bytes of "
                        f"{value.dtype}; the kernel would read them as {param.dtype}. Pass numpy.{param.dtype}(...)")
    return np.array(value, param.dtype)


def _dims(name: str, dims, limits: tuple[int, int, int]) -> tuple[int, int, int]:
    _typed(name, "tuple", dims, tuple)
    full = tuple(max(1, operator.index(n)) for n in dims + (1, 1))[:3]
    if any(n > limit for n, limit in zip(full, limits)):
        raise ValueError(f"{name} {full} exceeds CUDA's limits {limits}")
    return full


class Function:
    """A kernel of a loaded module: called as Function.__call__(grid, block, args, shared_mem=0, stream=None)."""

    def __init__(self, module: gxx.Module, name: str):
        if name not in module.kernels:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name})")
        self.module, self.name, self.params = module, name, module.kernels[name]

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None, enable_cooperative_groups=False):
        grid, block = _dims("grid", grid, MAX_GRID), _dims("block", block, MAX_BLOCK)
        if block[0] * block[1] * block[2] > 1024:
            raise ValueError(f"block {block} has more than 1024 threads")
        if shared_mem:
            raise ValueError("the stand-in runs kernels without shared memory")
        args = list(args)
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments, {len(args)} given "
                            "(the driver would read past the argument list)")
        values = [_argument(self.name, p, a) for p, a in zip(self.params, args)]
        self.module.launch(self.name, grid, block, values)
        damaged = [a for a in list(_live) if not a.intact()]
        if damaged:
            for allocation in damaged:  # reported once: a later launch is judged on its own writes
                _live.discard(allocation)
            raise gxx.LaunchError(f"kernel {self.name} wrote outside {len(damaged)} allocation(s)")


class RawKernel:
    """cupy.RawKernel(code, name, options=()): compiled (memoized) on first use."""

    def __init__(self, code: str, name: str, options: tuple = (), backend: str = "nvrtc", *,
                 translate_cucomplex: bool = False, enable_cooperative_groups: bool = False, jitify: bool = False):
        _typed("code", "str", code, str)
        _typed("name", "str", name, str)
        _typed("options", "tuple", options, tuple)
        self.code, self.name, self.options = code, name, options

    @property
    def kernel(self) -> Function:
        return Function(_get_raw_module(self.code, self.options), self.name)

    def __call__(self, grid, block, args, **kwargs) -> None:
        self.kernel(grid, block, args, **kwargs)


class RawModule:
    """cupy.RawModule(code=..., options=()): kernels and symbols of one memoized module."""

    def __init__(self, *, code: str | None = None, path: str | None = None, options: tuple = (),
                 backend: str = "nvrtc", translate_cucomplex: bool = False, enable_cooperative_groups: bool = False,
                 name_expressions=None, jitify: bool = False):
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if path is not None:
            raise NotImplementedError("the stand-in compiles source only")
        _typed("code", "str", code, str)
        _typed("options", "tuple", options, tuple)
        self.code, self.options = code, options

    @property
    def module(self) -> gxx.Module:
        return _get_raw_module(self.code, self.options)

    def get_function(self, name: str) -> RawKernel:
        Function(self.module, name)  # compiles, and raises for a name the module lacks, as CuPy does here
        return RawKernel(self.code, name, self.options)

    def get_global(self, name: str) -> MemoryPointer:
        module = self.module
        try:
            ptr, size = module.symbol(name)
        except KeyError:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name})") from None
        return MemoryPointer(_Symbol(ptr, size, module), 0)


# -- cupy.cuda ------------------------------------------------------------------------

class _Stream:
    """The current stream: everything has already run when it is synchronised."""

    ptr = 0

    def synchronize(self) -> None:
        pass


def _alloc_pinned_memory(size: int) -> bytearray:
    """Page-locked host memory: any writable buffer numpy can wrap."""
    return bytearray(size)


cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0),
    alloc_pinned_memory=_alloc_pinned_memory,
    get_current_stream=_Stream,
    MemoryPointer=MemoryPointer,
)
__version__ = "stand-in (g++)"
