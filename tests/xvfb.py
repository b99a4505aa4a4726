"""A real X server for window tests: Xvfb on a free display, screenshots with xwd, input with xdotool."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import shutil
import struct
import subprocess
import time

import numpy as np

TOOLS = ("Xvfb", "xdotool", "xwd")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class Xvfb:
    """Xvfb with a screen of `width` x `height` x 24 (and `more` screens) on the first free display number."""

    def __init__(self, width: int, height: int, more: tuple[tuple[int, int], ...] = ()):
        self.size = (width, height)
        screens = [arg for i, (w, h) in enumerate([(width, height), *more])
                   for arg in ("-screen", str(i), f"{w}x{h}x24")]
        for _ in range(3):   # another Xvfb started at the same moment may take the number it picked
            self._start(screens)
            if self.run("xdotool", "getdisplaygeometry", check=False).split() == [str(width), str(height)]:
                return
            self.close()
        raise RuntimeError(f"Xvfb did not start: {self.display} does not answer")

    def _start(self, screens: list[str]) -> None:
        read, write = os.pipe()
        # -displayfd: Xvfb finds a free display itself and writes its number once it accepts clients.
        self.process = subprocess.Popen(["Xvfb", "-displayfd", str(write), *screens, "-nolisten", "tcp"],
                                        pass_fds=(write,),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        text = b""
        try:
            # Read up to the newline: Xvfb writes it separately, and a closed pipe then stops the server.
            while not text.endswith(b"\n") and select.select([read], [], [], 20)[0]:
                if not (chunk := os.read(read, 64)):
                    break
                text += chunk
        finally:
            os.close(read)
        number = text.decode().strip()
        if not number.isdigit():
            self.close()
            raise RuntimeError("Xvfb did not start (no display number within 20 s)")
        self.display = f":{number}"

    def env(self, **extra) -> dict:
        """The environment for a program on this display (and no sound card)."""
        env = {**os.environ, "DISPLAY": self.display, "SDL_AUDIODRIVER": "dummy", **extra}
        env.pop("SDL_VIDEODRIVER", None)
        return env

    def run(self, *args, check=True, timeout=20) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{args} failed: {result.stderr}")
        return result.stdout

    def screenshot(self, window: str = "root") -> np.ndarray:
        """The screen (or one window) as uint8 (height, width, 3), dumped by the X server with `xwd`."""
        args = ["-root"] if window == "root" else ["-id", window]
        dump = subprocess.run(["xwd", "-silent", "-display", self.display, *args],
                              capture_output=True, timeout=20, check=True).stdout
        return read_xwd(dump)

    def window_of(self, pid: int, timeout: float = 30.0, settle: float = 0.5) -> str:
        """The id of the visible window process `pid` opened (SDL sets _NET_WM_PID), once it has held
        for `settle` seconds: SDL may replace a window while it sets its mode."""
        deadline = time.monotonic() + timeout
        seen, since = None, 0.0
        while time.monotonic() < deadline:
            found = self.run("xdotool", "search", "--onlyvisible", "--pid", str(pid), check=False).split()
            now = time.monotonic()
            if found != seen:
                seen, since = found, now
            elif len(found) == 1 and now - since >= settle:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no lasting visible window of process {pid} within {timeout} s (last seen {seen})")

    def geometry(self, window: str) -> tuple[int, int]:
        """(width, height) of a window."""
        out = self.run("xdotool", "getwindowgeometry", "--shell", window)
        values = dict(line.split("=", 1) for line in out.split())
        return int(values["WIDTH"]), int(values["HEIGHT"])

    def key(self, window: str, *keys: str) -> None:
        """Type keys into a window as a user would (focus, then XTEST key events)."""
        self.run("xdotool", "windowfocus", "--sync", window)
        self.run("xdotool", "key", "--clearmodifiers", *keys)

    def cursor_shown(self, x: int, y: int) -> bool | None:
        """With the pointer moved to (x, y): does the cursor there have any opaque pixel? None without libXfixes."""
        if not (xfixes_name := ctypes.util.find_library("Xfixes")):
            return None
        self.run("xdotool", "mousemove", str(x), str(y))   # (--sync would wait forever if it is there already)
        x11, xfixes = ctypes.CDLL(ctypes.util.find_library("X11")), ctypes.CDLL(xfixes_name)
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x11.XFree.argtypes = [ctypes.c_void_p]
        xfixes.XFixesGetCursorImage.restype = ctypes.POINTER(_CursorImage)
        xfixes.XFixesGetCursorImage.argtypes = [ctypes.c_void_p]
        display = x11.XOpenDisplay(self.display.encode())
        try:
            image = xfixes.XFixesGetCursorImage(display).contents
            pixels = image.pixels[:image.width * image.height]     # ARGB, one unsigned long each
            x11.XFree(ctypes.addressof(image))
        finally:
            x11.XCloseDisplay(display)
        return any(p >> 24 & 0xFF for p in pixels)

    def kill_client(self, window: str) -> None:
        """Destroy a window's connection from outside, as xkill does (XKillClient)."""
        self.run("xdotool", "windowkill", window)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class _CursorImage(ctypes.Structure):
    """XFixesCursorImage (X11/extensions/Xfixes.h)."""

    _fields_ = [("x", ctypes.c_short), ("y", ctypes.c_short), ("width", ctypes.c_ushort),
                ("height", ctypes.c_ushort), ("xhot", ctypes.c_ushort), ("yhot", ctypes.c_ushort),
                ("cursor_serial", ctypes.c_ulong), ("pixels", ctypes.POINTER(ctypes.c_ulong)),
                ("atom", ctypes.c_ulong), ("name", ctypes.c_char_p)]


def read_xwd(dump: bytes) -> np.ndarray:
    """An `xwd` dump (X Window Dump version 7, a TrueColor ZPixmap of 24 or 32 bits a pixel) as uint8 (height, width, 3)."""
    fields = struct.unpack(">25I", dump[:100])   # XWDFileHeader: 25 big-endian CARD32
    header_size, version, pixmap_format, _, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    masks, colours = fields[14:17], fields[19]
    if (version, pixmap_format) != (7, 2) or bits_per_pixel not in (24, 32):
        raise ValueError(f"xwd dump of version {version}, format {pixmap_format}, {bits_per_pixel} bits a pixel")
    size = bits_per_pixel // 8
    start = header_size + 12 * colours            # the colour map (XWDColor, 12 bytes each) comes first
    rows = np.frombuffer(dump, np.uint8, height * bytes_per_line, start).reshape(height, bytes_per_line)
    data = rows[:, :size * width].reshape(height, width, size).astype(np.uint32)
    order = range(size) if byte_order == 0 else reversed(range(size))   # LSBFirst: the first byte is the lowest
    pixels = sum(data[..., i] << np.uint32(8 * k) for k, i in enumerate(order))
    # Each channel by its mask: the lowest set bit says how far to shift.
    return np.stack([(pixels & m) >> ((m & -m).bit_length() - 1) for m in masks], axis=2).astype(np.uint8)
