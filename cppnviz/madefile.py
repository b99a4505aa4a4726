"""Files the project makes (fitted looks, learned models, grids): one npz with a JSON header, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CppnvizError
from .outputs import check_file_output, partial_path

HEADER = "__header__"   # the npz member holding the JSON header (kind, version, what made it, figures)


class MadeFileError(CppnvizError):
    """A made file that is missing, damaged, of another kind or of a version this code cannot read."""


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex: how a made file names the sources it came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(path: str | os.PathLike, *, kind: str, version: int, header: dict[str, Any],
          arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write `arrays` and a JSON `header` as PATH, under a hidden partial name renamed when complete."""
    path = Path(path)
    check_file_output(path, what=f"a file name such as look.npz")
    meta = {"kind": kind, "version": version, **header}
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    partial = partial_path(path)
    save = np.savez_compressed if compress else np.savez
    try:
        with open(partial, "wb") as f:   # a file object: savez would append .npz to a bare name
            save(f, **{HEADER: blob}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read(path: str | os.PathLike, *, kind: str, versions: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load a made file of `kind`: (header, arrays); one clear MadeFileError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise MadeFileError(f"cannot read {kind} file '{path}': it does not exist" if not path.exists()
                            else f"cannot read {kind} file '{path}': it is not a regular file")
    # np.load takes any file that is not a zip archive for a pickle and says so in words about pickles.
    if not zipfile.is_zipfile(path):
        raise MadeFileError(f"'{path}' is not a readable cppnviz {kind} file (not an npz archive: damaged, "
                            "truncated or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if HEADER not in data.files:
                raise MadeFileError(f"'{path}' is not a cppnviz {kind} file (it has no cppnviz header)")
            meta = json.loads(bytes(data[HEADER]).decode())
            arrays = {name: data[name] for name in data.files if name != HEADER}
    except MadeFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        # np.load reads every member through zipfile, which checks each one's CRC-32: a flipped byte lands here.
        raise MadeFileError(f"'{path}' is not a readable cppnviz {kind} file (damaged or truncated: {exc})") from None
    if meta.get("kind") != kind:
        raise MadeFileError(f"'{path}' is a cppnviz {meta.get('kind')!r} file, not a {kind} file")
    if meta.get("version") not in versions:
        raise MadeFileError(f"'{path}' is a {kind} file of version {meta.get('version')!r}; this cppnviz reads "
                            f"version {', '.join(map(str, versions))}")
    return meta, arrays
