"""pyo's server as the live run's clock: it plays a song or captures an input and counts the samples done."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np

from .errors import AudioError, CppnvizError

BACKENDS = ("pyo", "jack", "null")
# pyo's default buffer: 256 samples is 5.8 ms at 44.1 kHz, the clock's resolution.
BUFFER_SIZE = 256
# Samples in each ring table between numpy and pyo: 5.9 s at 44.1 kHz. The render thread keeps the song
# half a ring ahead of playback, so a frame may take up to ~3 s before the sound runs dry.
RING = 1 << 18


def import_pyo():
    """Import pyo in double precision on first use (sample counts stay exact past 2**24, 6 min at 44.1 kHz).

    pyo64 is pyo built with doubles; it must come before any plain `import pyo` in the process.
    """
    os.environ.setdefault("PYO_GUI_WX", "0")   # no wxPython banner: pyo's GUI is never used here
    if "pyo" in sys.modules and "pyo64" not in sys.modules:
        raise CppnvizError("pyo was already imported in single precision in this process; the live runner needs "
                           "pyo64 (call cppnviz.audio_clock.import_pyo() before anything imports pyo)")
    try:
        import pyo64
    except ImportError as exc:
        raise CppnvizError(f"live audio needs pyo: pip install 'cppnviz[live]' ({exc})") from None
    return pyo64


# -- the graph, as the live runner sees it ------------------------------------------------


class AudioClock:
    """pyo's server as the run's clock: `poll()` returns the samples pyo has completed, from its own counter.

    Give `play` (the program, [shape=(n, channels)]) to play a song from sample 0,
    or `capture` (called with each captured block, [shape=(channels, n)]) to
    record an input. No Python runs on pyo's audio thread, so the render thread
    (and the GIL) can never make the sound stutter: the song is written into, and
    the input read from, ring tables that `poll()` tops up or drains on the
    render thread, half a ring ahead of pyo. What is heard (or captured) is
    exactly the samples the graph analyses, with no drift however long the run.
    """

    def __init__(self, sample_rate: int, *, backend: str = "pyo", play: np.ndarray | None = None,
                 capture=None, input_device: str | int | None = None, signal: np.ndarray | None = None,
                 buffer_size: int = BUFFER_SIZE):
        if backend not in BACKENDS:
            raise CppnvizError(f"audio backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if (play is None) == (capture is None):
            raise ValueError("AudioClock plays a program or captures an input: give exactly one of play, capture")
        self.sample_rate = int(sample_rate)
        self.backend = backend
        self.buffer_size = buffer_size
        self.play = None if play is None else _stereo(play)
        self.capture = capture
        self.input_device = input_device
        # Null backend only: a signal standing in for the input device (tests, benchmarks); silence if None.
        self.signal = None if signal is None else _stereo(signal)
        self.position = 0        # samples completed: played, or captured and pushed
        self.starved = 0         # samples pyo played before the render thread had written them
        self.lost = 0            # captured samples overwritten before the render thread read them
        self.max_late_s = 0.0    # null backend: how late its pacing thread computed a buffer, at worst
        self._feed: np.ndarray | None = None
        self._written = 0        # samples of the feed written into the output ring
        self._stamp = (0, time.perf_counter())   # (completed, when) for position_now()
        self._stop = threading.Event()
        self._pacer: threading.Thread | None = None
        self._server = None
        self._objects: list = []

    # -- life cycle ---------------------------------------------------------------
    def open(self) -> None:
        """Boot pyo and build the play or capture chain: device problems show here, before anything runs."""
        if self._server is not None:
            return
        pyo = import_pyo()
        duplex = 1 if self.capture is not None and self.backend != "null" else 0
        device = self._check_devices(pyo) if self.backend == "pyo" else None
        audio = {"pyo": "portaudio", "jack": "jack", "null": "manual"}[self.backend]
        server = pyo.Server(sr=self.sample_rate, nchnls=2, buffersize=self.buffer_size, duplex=duplex,
                            audio=audio, jackname="cppnviz", verbosity=5)  # 5: errors and warnings
        server.deactivateMidi()   # no MIDI here: skips PortMidi's probing and its warnings
        if device is not None:
            server.setInputDevice(device)
        server.boot()
        if not server.getIsBooted():
            hint = ("is the JACK server running at this rate?" if self.backend == "jack" else
                    "does the device take this rate? the audio node's sample_rate param sets it; "
                    "`cppnviz devices` lists the devices")
            raise AudioError(f"pyo could not open the audio device ({audio}) at {self.sample_rate} Hz ({hint}); "
                             "--audio-backend null runs without one")
        self._server = server
        self._build(pyo, device)

    def start(self) -> None:
        """Start the audio (opening it first if needed): from now on the clock moves."""
        self.open()
        self._stamp = (0, time.perf_counter())
        self._server.start()
        if self.backend == "null":
            self._pacer = threading.Thread(target=self._pace, name="cppnviz null audio", daemon=True)
            self._pacer.start()

    def close(self) -> None:
        """Stop the audio and release the device (safe to call twice, and after a failed start)."""
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join()
            self._pacer = None
        if self._server is not None:
            if self._server.getIsStarted():
                # Stopping a server that never started makes pyo print a warning of its own.
                self._server.stop()
            # Freed in this order or Python crashes: numpy views of a table (pyo's buffers don't keep the
            # table alive), then the pyo objects, then the server.
            self._out_views, self._in_views = [], []
            self._objects.clear()
            self._counter = self._out_ring = self._in_ring = None
            self._server.shutdown()
            self._server = None

    def _check_devices(self, pyo) -> int | None:
        """Fail with a plain message where PortAudio sees no device (booting pyo then would crash)."""
        with quiet_native_stderr():
            return self._find_device(pyo)

    def _find_device(self, pyo) -> int | None:
        if self.capture is None:
            if pyo.pa_get_default_output() < 0:
                raise AudioError("no audio output device found; `cppnviz devices` lists what pyo sees, "
                                 "--audio-backend null runs without a sound card")
            return None
        names, indexes = pyo.pa_get_input_devices()
        if not indexes:
            raise AudioError("no audio input device found; `cppnviz devices` lists what pyo sees")
        if self.input_device in (None, ""):
            default = pyo.pa_get_default_input()
            if default < 0:
                raise AudioError("no default audio input device; name one with --input DEVICE (`cppnviz devices`)")
            return default
        return _pick_device(str(self.input_device), names, indexes)

    def _build(self, pyo, device: int | None) -> None:
        """The pyo chain: a sample counter (the clock); ring -> player -> output; input -> ring."""
        trigger = pyo.Trig()
        # Count from 1: after each buffer its value is the number of samples completed (exact in doubles).
        self._counter = pyo.Count(trigger, min=1)
        self._objects += [trigger, self._counter]
        if self.play is not None or self.backend == "null":
            self._feed = next(x for x in (self.play, self.signal, np.zeros((0, 2), np.float32)) if x is not None)
            self._out_ring = pyo.DataTable(size=RING, chnls=2)
            self._out_views = [np.asarray(self._out_ring.getBuffer(c)) for c in range(2)]
            # Wrapping after max=RING-1, the player reads ring[n mod RING] at sample n: exact, never interpolated.
            index = pyo.Count(trigger, min=0, max=RING - 1)
            player = pyo.TableIndex(self._out_ring, index)
            self._objects += [self._out_ring, index, player]
            self._top_up(0)
            if self.play is not None:
                self._objects.append(player.out())
        if self.capture is not None:
            if self.backend == "null":
                source, channels = player, 2     # the stand-in signal (or silence) is the "input"
            else:
                channels = 2 if device is None or pyo.pa_get_input_max_channels(device) >= 2 else 1
                source = pyo.Input(chnl=list(range(channels)))
            self._in_ring = pyo.DataTable(size=RING, chnls=channels)
            self._in_views = [np.asarray(self._in_ring.getBuffer(c)) for c in range(channels)]
            self._objects += [source, self._in_ring, pyo.TableFill(source, self._in_ring)]

    def _pace(self) -> None:
        """Null backend: compute buffer i when the wall clock reaches its end, so the clock is the wall clock."""
        period = self.buffer_size / self.sample_rate
        start = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            late = time.perf_counter() - (start + (i + 1) * period)
            if late < 0:
                self._stop.wait(-late)
                continue
            self.max_late_s = max(self.max_late_s, late)
            self._server.process()
            i += 1
            self._stamp = (i * self.buffer_size, time.perf_counter())

    # -- the render thread's side ---------------------------------------------------
    def poll(self) -> int:
        """Top up the song, drain the input, and return the clock: samples completed (and pushed)."""
        completed = int(self._counter.get())
        if self._feed is not None:
            self.starved += max(0, completed - self._written)
            self._top_up(completed)
        if self.capture is not None:
            completed = self._drain(completed)
        self.position = completed
        return completed

    def _top_up(self, completed: int) -> None:
        """Write the feed up to half a ring ahead of what pyo has completed (silence past its end)."""
        start = max(self._written, completed)
        end = completed + RING // 2
        if end <= start:
            return
        block = self._feed[start:end]
        for c, view in enumerate(self._out_views):
            _ring_write(view, start, block[:, c], end - start)
        self._written = end

    def _drain(self, completed: int) -> int:
        """Push every captured sample not pushed yet; return how many have been pushed in all."""
        start = self.position
        if completed - start > RING - self.buffer_size:   # the render thread stalled for seconds
            self.lost += completed - start - (RING - self.buffer_size)
            start = completed - (RING - self.buffer_size)
        if completed > start:
            self.capture(np.stack([_ring_read(v, start, completed - start) for v in self._in_views]))
        return completed

    def wait_for(self, sample: int, timeout: float) -> bool:
        """Poll until the clock reaches `sample` or `timeout` passes; return whether it did."""
        deadline = time.perf_counter() + timeout
        while self.poll() < sample:
            left = deadline - time.perf_counter()
            if left <= 0 or self._stop.is_set():
                return False
            # Sleep until the sample is due, then re-check every half millisecond (the clock moves by buffers).
            time.sleep(min(left, max(0.0005, (sample - self.position) / self.sample_rate)))
        return True

    def position_now(self) -> float:
        """The clock between buffers (null backend: interpolated from its pacing; a device: by whole buffers)."""
        completed = float(self._counter.get())
        if self.backend != "null":
            return completed
        position, when = self._stamp
        return max(completed, position + min((time.perf_counter() - when) * self.sample_rate, self.buffer_size))


def _ring_write(view: np.ndarray, start: int, values: np.ndarray, length: int) -> None:
    """view[start : start+length] modulo the ring = values, zero-padded to length."""
    size = len(view)
    padded = np.zeros(length, view.dtype)
    padded[:len(values)] = values
    at = start % size
    first = min(length, size - at)
    view[at:at + first] = padded[:first]
    view[:length - first] = padded[first:]


def _ring_read(view: np.ndarray, start: int, length: int) -> np.ndarray:
    """A float32 copy of view[start : start+length] modulo the ring."""
    at = start % len(view)
    first = min(length, len(view) - at)
    return np.concatenate([view[at:at + first], view[:length - first]]).astype(np.float32)


def _stereo(samples: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) float -> (n, 2) float32: mono doubled, wider than stereo cut to its first two."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    return np.ascontiguousarray(data[:, :2])


@contextmanager
def quiet_native_stderr():
    """Silence C libraries' own stderr while PortAudio probes devices.

    Probing ALSA on a machine without a sound card prints hundreds of lines from libasound
    that say nothing our own message does not; Python's errors still raise as usual.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _pick_device(wanted: str, names: list[str], indexes: list[int]) -> int:
    """An input device by index, or by a unique part of its name."""
    if wanted.isdigit():
        if int(wanted) in indexes:
            return int(wanted)
        raise AudioError(f"no audio input device {wanted}; inputs: {_device_list(names, indexes)}")
    matches = [i for n, i in zip(names, indexes) if wanted.lower() in n.lower()]
    if len(matches) != 1:
        how = "no" if not matches else "more than one"
        raise AudioError(f"{how} audio input device matches {wanted!r}; inputs: {_device_list(names, indexes)}")
    return matches[0]


def _device_list(names, indexes) -> str:
    return ", ".join(f"{i}: {n}" for n, i in zip(names, indexes)) or "none"


# -- the frame loop ---------------------------------------------------------------------------
