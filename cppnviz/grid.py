"""Frame grid files: frames baked over 1-3 feature axes, each frame deflated and CRC-checked, resumable.

Layout (all integers little-endian):

    b"CPPNGRID"  u32 version  u32 n  n bytes of JSON header  u32 CRC-32 of the JSON
    one record per frame, grid positions in C order (the last axis varies fastest):
        u32 length  u32 CRC-32 of the payload  payload = zlib(frame)
    b"GRIDEND\\n"  u64 size of the whole file, trailer included

A frame is (height, width, 3) uint8, each row stored as differences from the pixel to its left
(mod 256: 1.7-2.3x smaller deflated than the raw rows, on the example CPPN at 64-128 px), then zlib level 6. A bake appends each
finished record to a work file (.NAME.bake.EXT) and flushes it; a bake killed at any point (even
mid-record) and restarted with the same settings keeps every complete record, drops the rest,
and ends with the same bytes as one never interrupted. The trailer is written last and the work
file renamed onto NAME: a file without its trailer is an unfinished bake.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CppnvizError
from .outputs import check_file_output

MAGIC = b"CPPNGRID"
END = b"GRIDEND\n"
VERSION = 1
KIND = "frame_grid"
ENCODING = "rgb8-rowdelta-zlib6"
_HEAD = struct.Struct("<8sII")      # magic, version, header length
_RECORD = struct.Struct("<II")      # payload length, payload CRC-32
_TRAILER = struct.Struct("<8sQ")    # END, file size


class GridError(CppnvizError):
    """A grid file that is missing, unfinished, damaged or of a version this code cannot read."""


# -- frames -------------------------------------------------------------------------

def to_uint8(frame: np.ndarray) -> np.ndarray:
    """A float frame in [0, 1] as uint8 levels, rounded as the encoder's PNG output rounds: what the grid stores."""
    scaled = np.asarray(frame, np.float32) * np.float32(255)
    scaled += np.float32(0.5)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)   # truncates: with the 0.5, rounded to nearest


def encode(frame: np.ndarray) -> bytes:
    """One (h, w, 3) uint8 frame as a record payload: row differences, deflated."""
    delta = frame.copy()
    np.subtract(frame[:, 1:], frame[:, :-1], out=delta[:, 1:])   # uint8: wraps mod 256
    return zlib.compress(delta.tobytes(), 6)


def decode(payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """The frame a payload holds (the payload's CRC already checked)."""
    delta = np.frombuffer(zlib.decompress(payload), np.uint8)
    if delta.size != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"{delta.size} bytes inflated, expected {shape[0] * shape[1] * shape[2]}")
    return np.cumsum(delta.reshape(shape), axis=1, dtype=np.uint8)


def positions(steps: list[int]) -> list[tuple[int, ...]]:
    """Every grid position (i, j[, k]) in file order: C order, the last axis fastest."""
    return list(itertools.product(*(range(k) for k in steps)))


def axis_values(header: dict) -> list[np.ndarray]:
    """The feature value at each step of each axis: linspace(lo, hi, steps)."""
    return [np.linspace(lo, hi, k) for (lo, hi), k in zip(header["ranges"], header["steps"])]


# -- the header -----------------------------------------------------------------------

def make_header(*, width: int, height: int, vary: list[int], steps: list[int], ranges: list[list[float]],
                fixed: list[float] | None, source: dict[str, Any]) -> dict[str, Any]:
    """The JSON header: frame size, axes (feature indices), steps, ranges, the fixed feature values, provenance."""
    return {"kind": KIND, "version": VERSION, "encoding": ENCODING, "width": int(width), "height": int(height),
            "channels": 3, "vary": [int(v) for v in vary], "steps": [int(k) for k in steps],
            "ranges": [[float(lo), float(hi)] for lo, hi in ranges],
            "fixed": None if fixed is None else [float(v) for v in fixed],
            "frames": int(np.prod(steps)), "source": source}


def _header_bytes(header: dict) -> bytes:
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return _HEAD.pack(MAGIC, VERSION, len(text)) + text + struct.pack("<I", zlib.crc32(text))


def _read_header(f, path: Path) -> dict:
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or head[:8] != MAGIC:
        raise GridError(f"'{path}' is not a cppnviz grid file (no CPPNGRID signature)")
    _, version, n = _HEAD.unpack(head)
    if version != VERSION:
        raise GridError(f"'{path}' is a grid file of version {version}; this cppnviz reads version {VERSION}")
    text, crc = f.read(n), f.read(4)
    if len(text) < n or len(crc) < 4 or zlib.crc32(text) != struct.unpack("<I", crc)[0]:
        raise GridError(f"'{path}' is a damaged grid file: its header fails its CRC check")
    try:
        header = json.loads(text)
        steps = header["steps"]
        sound = (header.get("kind") == KIND and 1 <= len(steps) == len(header["vary"]) == len(header["ranges"]) <= 3
                 and header["frames"] == int(np.prod(steps)) and header["width"] > 0 and header["height"] > 0)
    except (ValueError, KeyError, TypeError):
        sound = False
    if not sound:
        raise GridError(f"'{path}' is not a readable grid file: its header lacks the grid's size, axes or steps")
    return header


# -- reading --------------------------------------------------------------------------

@dataclass
class Grid:
    """A loaded grid: its header and every frame, shape (*steps, height, width, 3) uint8."""

    header: dict[str, Any]
    frames: np.ndarray

    @property
    def steps(self) -> list[int]:
        return self.header["steps"]


def read_header(path: str | os.PathLike) -> dict:
    """A finished grid file's header (the trailer checked too: an unfinished bake is refused)."""
    path = _existing(path)
    with open(path, "rb") as f:
        header = _read_header(f, path)
        _check_trailer(f, path)
    return header


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GridError(f"cannot read grid file '{path}': " + ("it does not exist" if not path.exists()
                                                                else "it is not a regular file"))
    return path


def _check_trailer(f, path: Path) -> int:
    """Check the trailer; return where the frames end."""
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - _TRAILER.size))
    tail = f.read(_TRAILER.size)
    if len(tail) < _TRAILER.size or tail[:8] != END or _TRAILER.unpack(tail)[1] != size:
        raise GridError(f"'{path}' is a truncated or unfinished grid file (no valid end marker); bake it again")
    return size - _TRAILER.size


def _records(path) -> Iterator[tuple[dict, tuple[int, ...], bytes]]:
    """Yield (header, position, payload) of a finished grid file, each payload CRC-checked."""
    path = _existing(path)
    with open(path, "rb") as f:
        header = _read_header(f, path)
        start = f.tell()
        end = _check_trailer(f, path)
        f.seek(start)
        for pos in positions(header["steps"]):
            head = f.read(_RECORD.size)
            length, crc = _RECORD.unpack(head) if len(head) == _RECORD.size else (end, 0)
            if f.tell() + length > end:
                raise GridError(f"'{path}' is a damaged grid file: frame {pos} runs past the end of the frames")
            payload = f.read(length)
            if zlib.crc32(payload) != crc:
                raise GridError(f"'{path}' is a damaged grid file: frame {pos} fails its CRC check")
            yield header, pos, payload
        if f.tell() != end:
            raise GridError(f"'{path}' is a damaged grid file: {end - f.tell()} bytes after the last frame")


def _shape(header: dict) -> tuple[int, int, int]:
    return header["height"], header["width"], 3


def _inflate(path, pos, payload: bytes, shape) -> np.ndarray:
    try:
        return decode(payload, shape)
    except (zlib.error, ValueError) as exc:
        raise GridError(f"'{path}' is a damaged grid file: frame {pos} does not inflate: {exc}") from None


def iter_frames(path: str | os.PathLike) -> Iterator[tuple[dict, tuple[int, ...], np.ndarray]]:
    """Yield (header, position, uint8 frame) one at a time: a flipped byte anywhere is one GridError."""
    for header, pos, payload in _records(path):
        yield header, pos, _inflate(path, pos, payload, _shape(header))


def read(path: str | os.PathLike, *, threads: int = 2) -> Grid:
    """Load a whole grid into memory (uint8), every record checked before any frame is inflated."""
    records = list(_records(path))
    header = records[0][0]
    steps, shape = header["steps"], _shape(header)
    frames = np.empty((len(records), *shape), np.uint8)

    def inflate(i: int) -> None:
        _, pos, payload = records[i]
        frames[i] = _inflate(path, pos, payload, shape)
    with ThreadPoolExecutor(max(1, threads)) as pool:   # zlib lets go of the GIL while it inflates
        list(pool.map(inflate, range(len(records))))
    return Grid(header, frames.reshape(*steps, *shape))


# -- writing, resumable ----------------------------------------------------------------

def _differences(f, path: Path, header: dict) -> str | None:
    """Words for how the header of a work file left by another bake differs from `header` (None: no such file)."""
    f.seek(0)
    try:
        old = _read_header(f, path)
    except GridError:
        return None
    flat_old = {**old, **{f"source.{k}": v for k, v in (old.get("source") or {}).items()}}
    flat_new = {**header, **{f"source.{k}": v for k, v in (header.get("source") or {}).items()}}
    keys = [k for k in sorted(set(flat_old) | set(flat_new)) if k != "source" and flat_old.get(k) != flat_new.get(k)]
    return ", ".join(f"{k} {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in keys[:4]) or None


def work_path(path: Path) -> Path:
    """Where a bake of `path` keeps its finished frames until it publishes: .NAME.bake.EXT, next to it."""
    return path.with_name(f".{path.stem}.bake{path.suffix}")


class GridWriter:
    """Appends frame records to the work file; resumes one left by a bake with the same header.

    `done` says how many frames (in file order) are already stored. One bake per output at a time:
    the work file is locked.
    """

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        check_file_output(self.path, what="a file name such as look.grid")
        self.header = header
        self.work = work_path(self.path)
        self.file = open(self.work, "a+b")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise GridError(f"cannot bake '{self.path}': another bake is writing it now ({self.work})") from None
        self.resumed_from: str | None = None
        self.started_over: str | None = None    # what differs in a work file left by other settings
        self.done = self._resume()

    def _resume(self) -> int:
        """Keep the complete records of a work file with our header; start over otherwise."""
        head = _header_bytes(self.header)
        f = self.file
        f.seek(0)
        done, at = 0, 0
        if f.read(len(head)) == head:
            at = f.tell()
            while done < self.header["frames"]:
                rec = f.read(_RECORD.size)
                if len(rec) < _RECORD.size:
                    break
                length, crc = _RECORD.unpack(rec)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break   # the record a kill cut short: written again
                done, at = done + 1, f.tell()
        else:
            self.started_over = _differences(f, self.work, self.header)
        if done:
            self.resumed_from = f"{done} of {self.header['frames']} frames"
        else:
            at = 0
        f.truncate(at)   # "a+b": every write lands at the end, which is now here
        if at == 0:
            f.write(head)
            f.flush()
        return done

    def add(self, payload: bytes) -> None:
        """Append one frame's record (the next in file order) and hand it to the OS: a SIGKILL keeps it."""
        self.file.write(_RECORD.pack(len(payload), zlib.crc32(payload)) + payload)
        self.file.flush()
        self.done += 1

    def publish(self) -> None:
        """Write the trailer, sync, and rename the work file onto the output."""
        if self.done != self.header["frames"]:
            raise RuntimeError(f"publish after {self.done} of {self.header['frames']} frames")
        f = self.file
        f.write(_TRAILER.pack(END, f.tell() + _TRAILER.size))
        f.flush()
        os.fsync(f.fileno())
        os.replace(self.work, self.path)
        self.close()

    def close(self) -> None:
        """Release the work file, keeping it for a resume."""
        if not self.file.closed:
            self.file.close()
