"""Output paths that can never destroy anything: checks before a run, hidden partial names, stale cleanup."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from .errors import OutputError

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def names_a_folder(text: str) -> bool:
    """Whether the user wrote a folder: a trailing slash (`newdir/`), which Path() would drop."""
    return text.endswith(("/", os.sep))


def absolute(text: str) -> str:
    """A path given on the command line, relative to where the user typed it; a trailing slash is kept.

    Symlinks are not followed: the name is what the user gave (check_not_an_input compares real paths).
    """
    path = os.path.abspath(os.path.expanduser(text))
    return path + os.sep if names_a_folder(text) else path


def existing_kind(path: Path) -> str | None:
    """None for a new name or a regular file (through symlinks); else words for what is there."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def check_file_output(path: Path, *, what: str = "a file name such as video.mp4") -> None:
    """Refuse a destination that is not a regular file or a new name in an existing, writable folder."""
    kind = existing_kind(path)
    if kind == "a folder":
        raise OutputError(f"cannot write '{path}': it is a folder; give {what}")
    if kind is not None:
        raise OutputError(f"cannot write '{path}': it is {kind}, not a regular file; refusing to replace it")
    check_folder(path)


def check_folder(path: Path) -> None:
    """The folder that will hold `path` exists and can take new files."""
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write '{path}': the folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write '{path}': the folder '{parent}' is not writable")


def check_not_an_input(outputs: list[str], inputs: list[str]) -> None:
    """Refuse an output that resolves (symlinks, relative parts) to a file the run reads."""
    read = {}
    for text in inputs:
        read.setdefault(os.path.realpath(text), text)
    for text in outputs:
        source = read.get(os.path.realpath(text))
        if source is not None:
            raise OutputError(f"cannot write '{text}': it is '{source}', an input of this run; "
                              "give another output name")


def partial_path(path: Path, pid: int | None = None, kind: str = "partial") -> Path:
    """The hidden name a run writes under before the rename: .STEM.partial-PID.EXT (kind "old": set aside)."""
    pid = os.getpid() if pid is None else pid
    suffix = path.suffix
    return path.with_name(f".{path.name[:len(path.name) - len(suffix)]}.{kind}-{pid}{suffix}")


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete partial files (and folders) for `path` left by processes that no longer exist; return them.

    A SIGKILLed render cannot clean up after itself; the next render to the same path does. Partials of
    a live process (another render writing there now) are left alone, as is anything else in the folder.
    """
    head, tail = partial_path(path, 0).name.split(".partial-0")
    pattern = re.compile(rf"{re.escape(head)}\.(?:partial|old)-(\d+){re.escape(tail)}")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False            # our own leftover: this process is not writing it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True             # another user's live process
    return True
