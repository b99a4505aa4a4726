"""The performer's window: frames scaled to any window or screen, show keys, and an optional overlay."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import CppnvizError
from .grid import to_uint8
from .ports import to_host

if TYPE_CHECKING:
    from .live import LiveStats

log = logging.getLogger(__name__)

FITS = ("letterbox", "fill", "stretch")
KEYS = (("f", "fullscreen on/off"), ("o", "overlay on/off"), ("b", "blackout on/off"),
        ("space", "freeze the picture on/off"), ("h or ?", "this help"), ("q or Esc", "quit"))
# The overlay warns when fewer than this share of the graph's frames are shown (over its last seconds).
COLLAPSE = 0.5
RECENT_S = 2.0


def placement(frame: tuple[int, int], window: tuple[int, int], fit: str) -> tuple[tuple, tuple]:
    """(source rect, destination rect), each (x, y, w, h): where a frame of size `frame` goes in `window`.

    letterbox: the whole frame, as large as fits, centred (black bars fill the rest); fill: the
    window covered, the frame's overhang cropped evenly; stretch: the whole frame on the whole window.
    """
    (fw, fh), (ww, wh) = frame, window
    if fit == "stretch":
        return (0, 0, fw, fh), (0, 0, ww, wh)
    if fit == "fill":
        scale = max(ww / fw, wh / fh)
        cw, ch = min(fw, round(ww / scale)), min(fh, round(wh / scale))
        return ((fw - cw) // 2, (fh - ch) // 2, cw, ch), (0, 0, ww, wh)
    scale = min(ww / fw, wh / fh)
    dw, dh = min(ww, max(1, round(fw * scale))), min(wh, max(1, round(fh * scale)))
    return (0, 0, fw, fh), ((ww - dw) // 2, (wh - dh) // 2, dw, dh)


def natural_size(frame: tuple[int, int], desktop: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The window size a frame opens at: small frames scaled up by a whole factor, large ones down to fit the screen."""
    fw, fh = frame
    scale = float(max(1, min_side // max(fw, fh)))
    # Leave room for the window manager's title bar and panels.
    scale = min(scale, 0.9 * desktop[0] / fw, 0.9 * desktop[1] / fh)
    return max(1, round(fw * scale)), max(1, round(fh * scale))


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); ValueError naming what was found."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 0 < int(w) <= 16384 and 0 < int(h) <= 16384):
        raise ValueError(f"expected WIDTHxHEIGHT in pixels (e.g. 1280x720), found {text!r}")
    return int(w), int(h)


def screens() -> tuple[str, list[tuple[int, int]]]:
    """(SDL's video driver, the (width, height) of each display's desktop in display index order)."""
    pg = _import_pygame()
    try:
        _init_display(pg)
    except pg.error as exc:
        raise CppnvizError(f"no display to open a window on ({exc}); set DISPLAY, or run live with "
                           f"--no-window") from None
    try:
        return pg.display.get_driver(), [tuple(size) for size in pg.display.get_desktop_sizes()]
    finally:
        pg.display.quit()


def check_screen(screen: int, count: int | None = None) -> None:
    """One error naming the displays when `screen` is not one of the `count` (SDL's count when None)."""
    count = len(screens()[1]) if count is None else count
    if not 0 <= screen < count:
        raise CppnvizError(f"--screen {screen}: this machine has {count} display"
                           f"{'s' if count != 1 else ''} (0..{count - 1}); `cppnviz screens` lists them")


def _init_display(pg) -> None:
    """pygame.display.init() without SDL's own lines on stderr (probing Wayland on a machine without
    one prints 'error: XDG_RUNTIME_DIR is invalid', which reads like ours); its failures still raise."""
    from .audio_clock import quiet_native_stderr

    with quiet_native_stderr():
        pg.display.init()


def _import_pygame():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as exc:
        raise CppnvizError(f"the preview window needs pygame: pip install 'cppnviz[live]', "
                           f"or run with --no-window ({exc})") from None
    return pygame


class PreviewWindow:
    """A pygame window showing each frame scaled to the window (or a screen), with show keys.

    Keys: f fullscreen, o overlay, b blackout, space freeze, h/? help, q/Esc quit (closing the
    window quits too). The picture alone is shown unless the overlay is asked for. Set
    SDL_VIDEODRIVER=dummy to run it without a screen.
    """

    MIN_SIDE = 512     # small frames open scaled up by the largest whole factor that keeps their longer side within this

    def __init__(self, title: str = "cppnviz live", overlay: bool = False, *, fit: str = "letterbox",
                 window_size: tuple[int, int] | None = None, fullscreen: bool = False, screen: int = 0,
                 frame_size: tuple[int, int] | None = None, song: str | None = None,
                 osc_port: int | None = None, control=None):
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, found {fit!r}")
        self.title, self.overlay, self.fit = title, overlay, fit
        self.window_size, self.fullscreen, self.screen = window_size, fullscreen, screen
        self.frame_size, self.song, self.osc_port, self.control = frame_size, song, osc_port, control
        self.blackout = self.frozen = self.help = False
        # Called when the display connection is lost (the window killed from outside); the process then exits 0.
        self.on_lost: Callable[[], None] | None = None
        self._screen = None
        self._sized = False         # the window has its size for the frame (or the size asked for)
        self._picture = None        # (rgb array, surface viewing it): the frame held for redraws and freeze
        self._shown_title = 0.0
        self._recent: deque = deque()   # (wall time, frames shown, frames dropped) over the last seconds
        self._osc_seen: deque = deque()  # (wall time, OSC messages received)
        self._osc_last = (0, -math.inf)  # (count, wall time it last grew)
        self._warned = False

    # -- opening and sizing -------------------------------------------------------------------
    def open(self) -> None:
        pg = self._pg = _import_pygame()
        # The window opens centred on its display (pygame reads this when it places a window).
        os.environ.setdefault("SDL_VIDEO_CENTERED", "1")
        try:
            _init_display(pg)
        except pg.error as exc:
            raise CppnvizError(f"no display to open the preview window on ({exc}); set DISPLAY, "
                               f"or run with --no-window") from None
        if pg.display.get_driver() in ("offscreen", "dummy") and not os.environ.get("SDL_VIDEODRIVER"):
            log.warning("live: no display found (SDL fell back to its '%s' driver): the window is drawn in "
                        "memory only; set DISPLAY, or run with --no-window", pg.display.get_driver())
        try:
            check_screen(self.screen, pg.display.get_num_displays())
        except CppnvizError:
            pg.display.quit()
            raise
        pg.font.init()
        self._font = pg.font.Font(None, 18)
        self._desktop = tuple(pg.display.get_desktop_sizes()[self.screen])
        if self.window_size is None and self.frame_size is not None:
            self.window_size = natural_size(self.frame_size, self._desktop, self.MIN_SIDE)
        self._sized = self.window_size is not None
        self._set_mode(self.fullscreen)
        pg.display.set_caption(self.title)
        self._catch_lost_display()

    def _set_mode(self, fullscreen: bool) -> None:
        pg = self._pg
        if fullscreen and self._screen is not None and not self.fullscreen:
            self.window_size = self._screen.get_size()   # back from fullscreen at the size the user left
        if fullscreen:
            # The screen's own size, no border; the picture is scaled to it.
            self._screen = pg.display.set_mode((0, 0), pg.FULLSCREEN | pg.NOFRAME, display=self.screen)
        else:
            size = self.window_size or (self.MIN_SIDE, self.MIN_SIDE)
            self._screen = pg.display.set_mode(size, pg.RESIZABLE, display=self.screen)
        pg.mouse.set_visible(not fullscreen)   # no cursor on the projector
        self.fullscreen = fullscreen

    def _catch_lost_display(self) -> None:
        """Under X11, a window killed from outside (xkill) ends the run with its summary, not an X error and exit 1.

        Xlib calls the handler when the connection breaks and exits the process if it returns:
        there is no going back into SDL, so the handler prints what the run achieved and exits 0.
        """
        global _LOST_HANDLER
        if self._pg.display.get_driver() != "x11" or not (name := ctypes.util.find_library("X11")):
            return
        x11 = ctypes.CDLL(name)
        x11.XSetIOErrorHandler.restype = ctypes.c_void_p
        x11.XSetIOErrorHandler.argtypes = [ctypes.c_void_p]
        window = self

        def lost(display) -> int:
            try:
                log.warning("live: the window was closed from outside (the display connection is gone)")
                if window.on_lost is not None:
                    window.on_lost()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(0)   # Xlib would exit(1) on return

        # Kept at module level: Xlib holds the pointer for the life of the process.
        _LOST_HANDLER = _IO_ERROR_HANDLER(lost)
        x11.XSetIOErrorHandler(ctypes.cast(_LOST_HANDLER, ctypes.c_void_p))

    # -- events -------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Handle window events and keys; False once the user asked to stop."""
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT:
                return False
            if event.type != pg.KEYDOWN:
                continue
            if event.key in (pg.K_ESCAPE, pg.K_q):
                return False
            if event.key == pg.K_f:
                self._set_mode(not self.fullscreen)
            elif event.key == pg.K_o:
                self.overlay = not self.overlay
            elif event.key == pg.K_b:
                self.blackout = not self.blackout
            elif event.key == pg.K_SPACE:
                self.frozen = not self.frozen
            elif event.key == pg.K_h or event.unicode == "?":
                self.help = not self.help
        return True

    # -- drawing ------------------------------------------------------------------------------
    def show(self, frame: np.ndarray | None, meters: np.ndarray | None, stats: LiveStats, *,
             index: int | None = None, end: int | None = None, audio=None) -> None:
        """Draw frame `index` (of `end`, when known) scaled to the window; the overlay and help if on."""
        pg = self._pg
        now = time.perf_counter()
        if frame is not None and not self.frozen:
            image = to_host(frame)  # the GPU backend's frames are cupy arrays
            height, width = image.shape[:2]
            if not self._sized:
                self.window_size = natural_size((width, height), self._desktop, self.MIN_SIDE)
                self._sized = True
                if not self.fullscreen:
                    self._set_mode(False)
            rgb = to_uint8(image[..., :3])   # rounded as the encoder and the grids round
            self._picture = (rgb, pg.image.frombuffer(rgb, (width, height), "RGB"))   # a view of rgb, no copy
        screen = self._screen = pg.display.get_surface()   # a resized window has a new surface
        screen.fill((0, 0, 0))
        if self._picture is not None and not self.blackout:
            picture = self._picture[1]
            src, dst = placement(picture.get_size(), screen.get_size(), self.fit)
            part = picture.subsurface(src) if src[2:] != picture.get_size() else picture
            screen.blit(pg.transform.smoothscale(part, dst[2:]) if dst[2:] != src[2:] else part, dst[:2])
        self._note(now, stats)
        warning = self._collapse(stats)
        if self.overlay:
            self._draw_overlay(self._lines(stats, index, end, audio), warning, meters)
        if self.help:
            self._draw_help()
        pg.display.flip()
        if now - self._shown_title > 1.0:   # the title is cheap but some window managers redraw on every change
            state = " [blackout]" if self.blackout else " [frozen]" if self.frozen else ""
            pg.display.set_caption(f"{self.title}{state} - {stats.fps_achieved:.1f} fps")
            self._shown_title = now

    def _note(self, now: float, stats: LiveStats) -> None:
        self._recent.append((now, stats.frames, stats.dropped))
        while now - self._recent[0][0] > RECENT_S:
            self._recent.popleft()
        if self.control is not None:
            received = self.control.stats["received"]
            if received != self._osc_last[0]:
                self._osc_last = (received, now)
            self._osc_seen.append((now, received))
            while now - self._osc_seen[0][0] > RECENT_S:
                self._osc_seen.popleft()

    def rates(self) -> tuple[float, float]:
        """(frames shown per second, share of the graph's frames dropped), over the last seconds."""
        (t0, shown0, dropped0), (t1, shown1, dropped1) = self._recent[0], self._recent[-1]
        shown, dropped = shown1 - shown0, dropped1 - dropped0
        fps = shown / (t1 - t0) if t1 > t0 else 0.0
        return fps, dropped / (shown + dropped) if shown + dropped else 0.0

    def _collapse(self, stats: LiveStats) -> str | None:
        """A warning once the frame rate has collapsed (logged once per collapse), else None."""
        if len(self._recent) < 2 or self._recent[-1][0] - self._recent[0][0] < 0.75 * RECENT_S:
            return None
        fps, _ = self.rates()
        if fps >= COLLAPSE * float(stats.fps):
            if fps >= 1.5 * COLLAPSE * float(stats.fps):
                self._warned = False   # recovered: the next collapse is logged again (not every wobble)
            return None
        text = (f"LOW FRAME RATE: {fps:.1f} of {float(stats.fps):g} fps - try a smaller render size "
                f"(--set cppn.width=... cppn.height=...) or a grid")
        if not self._warned:
            log.warning("live: %s", text.lower())
            self._warned = True
        return text

    def _lines(self, stats: LiveStats, index: int | None, end: int | None, audio) -> list[str]:
        fps = float(stats.fps)
        lines = []
        if index is not None:
            elapsed = index / fps
            left = f", {clock_text((end - 1 - index) / fps)} left" if end is not None else ""
            lines.append(f"{self.song or 'input'}  {clock_text(elapsed)}{left}")
        shown, dropped = self.rates()
        state = "  BLACKOUT" if self.blackout else "  FROZEN" if self.frozen else ""
        lines.append(f"{shown:.1f} fps of {fps:g}, {100 * dropped:.0f}% dropped{state}")
        if audio is not None:
            lines.append(f"input {level_db(audio, fps):5.1f} dBFS")
        if self.osc_port is not None:
            activity = ""
            if self.control is not None and len(self._osc_seen) > 1:
                (t0, n0), (t1, n1) = self._osc_seen[0], self._osc_seen[-1]
                ago = time.perf_counter() - self._osc_last[1]
                activity = (f", {(n1 - n0) / max(t1 - t0, 1e-3):.0f} msg/s, last {ago:.1f} s ago"
                            if math.isfinite(ago) else ", nothing received yet")
            lines.append(f"OSC in :{self.osc_port}{activity}")
        return lines

    def _panel(self, lines: list[tuple[str, tuple]], at: tuple[int, int] | None) -> None:
        """Lines of text on a translucent dark panel at `at` (top-left), or centred when None.

        A tab in a line starts a second column, aligned across the lines.
        """
        pg = self._pg
        rows = [[self._font.render(part, True, colour) for part in text.split("\t")] for text, colour in lines]
        first = max(row[0].get_width() for row in rows if len(row) > 1) + 12 if any(len(r) > 1 for r in rows) else 0
        width = max(sum(t.get_width() for t in row) + (first if len(row) > 1 else 0) for row in rows) + 12
        height = sum(row[0].get_height() for row in rows) + 8
        panel = pg.Surface((width, height), pg.SRCALPHA)
        panel.fill((0, 0, 0, 150))
        y = 4
        for row in rows:
            panel.blit(row[0], (6, y))
            if len(row) > 1:
                panel.blit(row[1], (6 + first, y))
            y += row[0].get_height()
        sw, sh = self._screen.get_size()
        self._screen.blit(panel, at if at is not None else ((sw - width) // 2, (sh - height) // 2))

    def _draw_overlay(self, lines: list[str], warning: str | None, meters: np.ndarray | None) -> None:
        pg = self._pg
        text = [(line, (230, 230, 230)) for line in lines] + ([(warning, (255, 190, 40))] if warning else [])
        self._panel(text, (6, 6))
        if meters is None:
            return
        values = np.asarray(to_host(meters), dtype=np.float32).ravel()
        if not len(values):
            return
        # Small, bottom left, translucent: the picture stays the show.
        sw, sh = self._screen.get_size()
        bar = max(2, min(8, (sw // 3) // len(values)))
        full = max(8, sh // 10)
        top = max(1.0, float(values.max(initial=0.0)))   # values above 1 rescale the meters, never clip
        layer = pg.Surface((bar * len(values) + 4, full + 4), pg.SRCALPHA)
        layer.fill((0, 0, 0, 110))
        for i, v in enumerate(values):
            h = int(full * max(0.0, float(v)) / top)
            pg.draw.rect(layer, (80, 220, 120, 190), (2 + i * bar, full + 2 - h, max(1, bar - 1), h))
        self._screen.blit(layer, (6, sh - full - 10))

    def _draw_help(self) -> None:
        lines = [("keys", (255, 255, 255))] + [(f"{key}\t{what}", (230, 230, 230)) for key, what in KEYS]
        self._panel(lines, None)

    def close(self) -> None:
        if self._screen is not None:
            self._pg.display.quit()
            self._screen = None


_IO_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_LOST_HANDLER = None


def clock_text(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss past an hour)."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def level_db(audio, fps: float) -> float:
    """RMS level in dBFS of the frame's last 1/fps seconds of analysis audio (-inf for silence)."""
    n = max(1, round(audio.sample_rate / fps))
    samples = audio.samples
    now = len(samples) if not audio.final else min(len(samples), audio.now + 1)
    block = samples[max(0, now - n):now]
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64)))) if len(block) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf
