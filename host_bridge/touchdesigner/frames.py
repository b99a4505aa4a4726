"""Pictures for a Script TOP: 4 channels, bottom row first, C-contiguous, uint8 or float32; GPU frames stay on the GPU.

A graph's frame is float32 (H, W, 3) in [0, 1] with row 0 the TOP scanline; TouchDesigner's
arrays start at the BOTTOM scanline. The flipped rows are written into a freshly allocated
(H, W, 4) array, so what TouchDesigner receives is always C-contiguous with positive strides
(never the negative-stride view np.flipud returns, which reportedly crashed it).

A cupy frame (the GPU path) is converted on the device and handed over with copyCUDAMemory:
uint8 memory with 4 components is BGRA to TouchDesigner, float32 is RGBA. cupy is imported only
when such a frame arrives. Before that copy the Script TOP's output resolution and pixel format
must match the memory (cuda_settings): a uint8 copy into the default 32-bit float format was
reported to come out corrupted. *Unverified* until it runs in a real TouchDesigner on an NVIDIA GPU.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

DTYPES = ("uint8", "float32")
# The Script TOP pixel format (its `format` parameter) that matches 4-component device memory of each dtype.
CUDA_FORMATS = {"uint8": "rgba8fixed", "float32": "rgba32float"}


def is_device_array(frame: Any) -> bool:
    """True for a cupy array, recognised by its type's module so that cupy is never imported for a numpy frame."""
    return type(frame).__module__.partition(".")[0] == "cupy"


def _check(frame: Any, dtype: str) -> tuple[int, int, int]:
    if dtype not in DTYPES:
        raise ValueError(f"Dtype must be one of {', '.join(DTYPES)}, found {dtype!r}")
    shape = tuple(frame.shape)
    if len(shape) != 3 or shape[2] not in (3, 4) or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"a frame must be shaped (height, width, 3 or 4), found {shape}")
    return shape


def host_image(frame: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """(H, W, 4) RGBA for copyNumpyArray: flipped to bottom-row-first, alpha 1, C-contiguous."""
    h, w, c = _check(frame, dtype)
    flipped = np.asarray(frame)[::-1]  # a view; copied into `out` below, never handed over
    out = np.empty((h, w, 4), dtype=np.dtype(dtype))
    if dtype == "float32":
        out[..., :c] = flipped
    else:
        # x * 255 + 0.5, clipped, truncated: rounds to the nearest level, like the encoder's PNG path.
        scaled = flipped.astype(np.float32) * np.float32(255.0)
        scaled += np.float32(0.5)
        np.clip(scaled, 0.0, 255.0, out=scaled)
        out[..., :c] = scaled.astype(np.uint8)
    if c == 3:
        out[..., 3] = 1.0 if dtype == "float32" else 255
    return out


def device_image(frame: Any, dtype: str, cupy: Any) -> Any:
    """(H, W, 4) device array for copyCUDAMemory: flipped, BGRA for uint8, RGBA for float32, C-contiguous."""
    h, w, c = _check(frame, dtype)
    flipped = frame[::-1]
    if dtype == "float32":
        out = cupy.empty((h, w, 4), dtype=cupy.float32)
        out[..., :c] = flipped
        if c == 3:
            out[..., 3] = 1.0
        return out
    levels = cupy.clip(flipped * 255.0 + 0.5, 0.0, 255.0).astype(cupy.uint8)
    out = cupy.empty((h, w, 4), dtype=cupy.uint8)
    out[..., 0] = levels[..., 2]   # TouchDesigner reads 4-component uint8 CUDA memory as BGRA
    out[..., 1] = levels[..., 1]
    out[..., 2] = levels[..., 0]
    out[..., 3] = levels[..., 3] if c == 4 else 255
    return out


def to_image(frame: Any, dtype: str) -> Any:
    """The picture TouchDesigner will receive, converted on whichever device holds the frame."""
    if is_device_array(frame):
        cupy = importlib.import_module("cupy")
        image = device_image(frame, dtype, cupy)
        # Converted possibly on a worker thread's stream: finish here, so the main thread's copy,
        # queued on its own stream, reads a complete picture.
        cupy.cuda.get_current_stream().synchronize()
        return image
    return host_image(frame, dtype)


def cuda_settings(image: Any) -> dict[str, Any]:
    """The Script TOP parameters a copyCUDAMemory of `image` needs: a custom resolution of its size, its format."""
    h, w, _ = image.shape
    return {"outputresolution": "custom", "resolutionw": int(w), "resolutionh": int(h),
            "format": CUDA_FORMATS[str(image.dtype)]}


def copy_to_top(top: Any, image: Any, td: Any) -> None:
    """Hand a picture made by to_image() to a Script TOP (inside onCook, on the main thread)."""
    if not is_device_array(image):
        top.copyNumpyArray(image)
        return
    cupy = importlib.import_module("cupy")
    h, w, comps = image.shape
    shape = td.CUDAMemoryShape()
    shape.width, shape.height, shape.numComps = int(w), int(h), int(comps)
    shape.dataType = np.uint8 if image.dtype == np.uint8 else np.float32
    # Pass the producing stream: the default stream is slow. The caller keeps `image` alive until
    # the next cook, past the end of the copy.
    top.copyCUDAMemory(int(image.data.ptr), int(image.nbytes), shape, stream=cupy.cuda.get_current_stream().ptr)
