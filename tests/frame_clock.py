"""A frame loop paced by deadlines, as the live runner paces its own, that says how late each frame was and why.

Frame k is due at start + k/fps. Each turn makes the newest frame due and drops the ones missed
(the live runner's rule), so a hiccup costs frames instead of slowing every later one.

On a shared machine the kernel may keep the frame's threads waiting for a CPU for tens of
milliseconds, whatever the code does. Linux counts that wait per thread (schedstat's second
field, "time spent waiting on a runqueue"), so each frame also carries how long its threads were
kept waiting since the frame before it was ready: lateness and drops beyond that wait are the
code's own. Where schedstat cannot be read the wait is 0 and every delay counts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path


def run_queue_wait(tids: list[int]) -> dict[int, float]:
    """Seconds each thread of this process has waited on a run queue so far (threads that cannot be read: left out)."""
    waits = {}
    for tid in tids:
        try:
            waits[tid] = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[1]) * 1e-9
        except (OSError, IndexError, ValueError):
            pass
    return waits


def render_threads(names: tuple[str, ...] = ("cppn",)) -> list[int]:
    """The main thread and the worker pools whose names start with `names` (the threads a frame waits on)."""
    return [t.native_id for t in threading.enumerate()
            if t is threading.main_thread() or t.name.startswith(names)]


@dataclass
class Frame:
    k: int
    late: float      # seconds after its due time that it was ready
    waited: float    # seconds the kernel kept a render thread waiting for a CPU since the frame before was ready


def run_frames(work, fps: int, done) -> list[Frame]:
    """Call work(k) for the newest due frame k until done(k) is true for the next frame; the frames shown."""
    start = time.perf_counter()
    frames: list[Frame] = []
    before = run_queue_wait(render_threads())
    next_k = 0
    while not done(next_k):
        now = time.perf_counter()
        k = int((now - start) * fps)
        if k < next_k:
            time.sleep(start + next_k / fps - now)
            continue
        work(k)
        ready = time.perf_counter()
        after = run_queue_wait(render_threads())
        waited = max((after[t] - before.get(t, after[t]) for t in after), default=0.0)
        frames.append(Frame(k, ready - (start + k / fps), waited))
        before, next_k = after, k + 1
    return frames


def own_figures(frames: list[Frame], fps: int) -> tuple[float, int, int]:
    """(latest frame beyond the kernel's waits, frames dropped beyond them, frames due) over `frames`' span."""
    latest = max(f.late - f.waited for f in frames)
    dropped = 0
    for before, frame in zip(frames, frames[1:]):
        missed = frame.k - before.k - 1
        # A wait of w seconds on a run queue can cost the frames due in it.
        dropped += max(0, missed - int(frame.waited * fps))
    return latest, dropped, frames[-1].k - frames[0].k + 1


def describe(frames: list[Frame], fps: int) -> str:
    """The figures, raw and beyond the kernel's waits, for an assertion's message."""
    latest, dropped, due = own_figures(frames, fps)
    raw_dropped = due - len(frames)
    waited = sum(f.waited for f in frames)
    return (f"{len(frames)} of {due} frames shown ({raw_dropped} dropped, {dropped} beyond run-queue waits); "
            f"latest {1000 * max(f.late for f in frames):.0f} ms after its time ({1000 * latest:.0f} ms beyond "
            f"them); render threads kept waiting for a CPU {1000 * waited:.0f} ms in all")
