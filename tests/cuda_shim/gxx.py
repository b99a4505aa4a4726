"""CUDA kernel source compiled as plain C++ by g++, each kernel run once per CUDA thread over its launch grid.

The source is compiled exactly as the project generates it, with cuda_shim.h force-included and a
launcher appended per `extern "C" __global__` kernel. The launcher takes cuLaunchKernel's
argument array (one pointer per parameter, each to a value of the parameter's type). UBSan
checks array bounds (the weights in constant memory), integer overflow and float-to-int casts
while the kernel runs; its reports fail the launch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("cuda_shim.h")
GXX = shutil.which("g++")
# -ffp-contract=off: every float operation rounds once on any target (aarch64's GCC would fuse a*b+c
# by default), so a result does not depend on the CPU the test runs on.
FLAGS = ("-O1", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wno-unknown-pragmas",
         "-fsanitize=undefined,float-cast-overflow", "-fno-sanitize=vptr")

# Parameter types the shim passes, as numpy dtypes (for a pointer: its element type).
C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "unsigned int": np.uint32,
           "unsigned": np.uint32, "long long": np.int64, "unsigned long long": np.uint64, "size_t": np.uint64,
           "unsigned char": np.uint8, "signed char": np.int8, "short": np.int16, "unsigned short": np.uint16,
           "bool": np.bool_}

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_CONSTANT = re.compile(r"__constant__\s+[^;=]*?(\w+)\s*(?:\[[^\]]*\]\s*)*;")


class CompileError(RuntimeError):
    """g++ rejected the kernel source (the message holds its diagnostics)."""


class LaunchError(RuntimeError):
    """The kernel did something a GPU would not forgive (UBSan's report is the message)."""


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its name, its C type as declared, and what the shim must pass for it."""

    name: str
    ctype: str
    dtype: np.dtype
    pointer: bool


def parse_param(text: str) -> Param:
    """`const float* __restrict__ bias` -> Param('bias', 'const float*', float32, pointer=True)."""
    words = text.replace("*", " * ").replace("__restrict__", " ").split()
    name, ctype = words[-1], " ".join(words[:-1]).replace(" *", "*")
    pointer = ctype.endswith("*")
    base = " ".join(w for w in ctype.rstrip("*").split() if w not in ("const", "volatile"))
    if ctype.count("*") > 1 or base not in C_TYPES:
        raise CompileError(f"parameter '{text.strip()}': the shim passes only {sorted(C_TYPES)} and pointers to them")
    return Param(name, ctype, np.dtype(C_TYPES[base]), pointer)


def kernels(source: str) -> dict[str, tuple[Param, ...]]:
    """Every `extern "C" __global__` kernel in the source and its parameters."""
    return {name: tuple(parse_param(p) for p in params.split(",") if p.strip())
            for name, params in _KERNEL.findall(source)}


def _launcher(name: str, params: tuple[Param, ...]) -> str:
    """C++ that runs kernel `name` once per thread of the grid, reading its arguments as cuLaunchKernel does."""
    args = ", ".join(f"*({p.ctype}*)args[{i}]" for i, p in enumerate(params))
    return f"""
extern "C" void shim_launch_{name}(const unsigned* grid, const unsigned* block, void** args) {{
    gridDim = dim3{{grid[0], grid[1], grid[2]}};
    blockDim = dim3{{block[0], block[1], block[2]}};
    for (unsigned bz = 0; bz < grid[2]; ++bz) for (unsigned by = 0; by < grid[1]; ++by)
    for (unsigned bx = 0; bx < grid[0]; ++bx) for (unsigned tz = 0; tz < block[2]; ++tz)
    for (unsigned ty = 0; ty < block[1]; ++ty) for (unsigned tx = 0; tx < block[0]; ++tx) {{
        blockIdx = uint3{{bx, by, bz}};
        threadIdx = uint3{{tx, ty, tz}};
        {name}({args});
    }}
}}
"""


def _symbol_accessors(name: str) -> str:
    return (f'extern "C" void* shim_symbol_{name}(void) {{ return (void*)&{name}; }}\n'
            f'extern "C" size_t shim_sizeof_{name}(void) {{ return sizeof({name}); }}\n')


def _gxx_options(options: tuple[str, ...]) -> list[str]:
    """NVRTC options in g++'s words; any other option is refused (its meaning on a GPU would be lost here)."""
    out = ["-std=c++14"]  # CuPy 13's default when none is given
    for option in options:
        if re.fullmatch(r"(--std|-std)=c\+\+\d\d", option):
            out[0] = "-std=" + option.split("=", 1)[1]
        elif option.startswith("-D"):
            out.append(option)
        else:
            raise CompileError(f"NVRTC option {option!r} has no g++ equivalent in the shim")
    return out


class Module:
    """A loaded shared object: the module's kernels and __constant__ symbols."""

    def __init__(self, source: str, options: tuple[str, ...], build_dir: Path):
        self.kernels = kernels(source)
        self.constants = _CONSTANT.findall(source)
        unit = "\n".join([source, *(_launcher(n, p) for n, p in self.kernels.items()),
                          *(_symbol_accessors(c) for c in self.constants)])
        flags = [*FLAGS, *_gxx_options(options)]
        key = hashlib.sha256("\0".join([unit, *flags, HEADER.read_text()]).encode()).hexdigest()[:24]
        library = Path(build_dir) / f"{key}.so"
        if not library.exists():  # compiled once per source and flags in a session
            _compile(unit, flags, library)
        self.library = ctypes.CDLL(str(library))
        for name in self.kernels:
            getattr(self.library, f"shim_launch_{name}").restype = None

    def symbol(self, name: str) -> tuple[int, int]:
        """(address, size in bytes) of a __constant__ variable."""
        if name not in self.constants:
            raise KeyError(name)
        address, size = (getattr(self.library, f"shim_{what}_{name}") for what in ("symbol", "sizeof"))
        address.restype, size.restype = ctypes.c_void_p, ctypes.c_size_t
        return address(), size()

    def launch(self, name: str, grid: tuple[int, int, int], block: tuple[int, int, int],
               values: list[np.ndarray]) -> None:
        """Run kernel `name`: values[i] holds parameter i's value (a pointer as uintp) in its exact C type."""
        argv = (ctypes.c_void_p * max(1, len(values)))(*(v.ctypes.data for v in values))
        dims = [(ctypes.c_uint * 3)(*d) for d in (grid, block)]
        with _stderr_captured() as report:
            getattr(self.library, f"shim_launch_{name}")(*dims, argv)
        if "runtime error" in report[0]:
            raise LaunchError(f"kernel {name}: {report[0].strip()}")


def _compile(unit: str, flags: list[str], library: Path) -> None:
    """g++ the unit into `library`, under a temporary name then renamed: a parallel session never loads half a file."""
    if GXX is None:
        raise CompileError("g++ not found")
    source = library.with_suffix(".cpp")
    source.write_text(unit)
    partial = library.with_name(f".{library.name}.{os.getpid()}")
    result = subprocess.run([GXX, *flags, "-include", str(HEADER), str(source), "-o", str(partial)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise CompileError(f"g++ failed on {source}:\n{result.stderr}")
    if result.stderr.strip():  # warnings: shown in pytest's summary, not swallowed
        warnings.warn(f"g++ on {source}:\n{result.stderr}", stacklevel=2)
    os.replace(partial, library)


@contextmanager
def _stderr_captured():
    """Send file descriptor 2 (where UBSan reports) to a file while the block runs; yields [text], filled after."""
    report = [""]
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield report
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            report[0] = sink.read().decode(errors="replace")
