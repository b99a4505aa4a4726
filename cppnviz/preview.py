"""The live preview: frames in a pygame window with an overlay of fps, latency and band meters."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from .errors import CppnvizError
from .ports import to_host

if TYPE_CHECKING:
    from .live import LiveStats


class PreviewWindow:
    """A pygame window showing each frame, with fps, latency and band meters drawn on top ('o' toggles them).

    Esc, q or closing the window ends the run. Set SDL_VIDEODRIVER=dummy to run it without a screen.
    """

    MIN_SIDE = 512     # small frames are scaled up to at least this many pixels on their longer side

    def __init__(self, title: str = "cppnviz live", overlay: bool = True):
        self.title = title
        self.overlay = overlay
        self._screen = None
        self._shown_title = 0.0

    def open(self) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as exc:
            raise CppnvizError(f"the preview window needs pygame: pip install 'cppnviz[live]', "
                               f"or run with --no-window ({exc})") from None
        self._pg = pygame
        pygame.display.init()
        pygame.font.init()
        self._font = pygame.font.Font(None, 20)
        self._set_size((self.MIN_SIDE, self.MIN_SIDE))
        pygame.display.set_caption(self.title)

    def _set_size(self, size: tuple[int, int]) -> None:
        self._screen = self._pg.display.set_mode(size)
        self._size = size

    def poll(self) -> bool:
        """Handle window events; False once the user asked to stop."""
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT:
                return False
            if event.type == pg.KEYDOWN:
                if event.key in (pg.K_ESCAPE, pg.K_q):
                    return False
                if event.key == pg.K_o:
                    self.overlay = not self.overlay
        return True

    def show(self, frame: np.ndarray | None, meters: np.ndarray | None, stats: LiveStats) -> None:
        pg = self._pg
        if frame is not None:
            image = to_host(frame)  # the GPU backend's frames are cupy arrays
            height, width = image.shape[:2]
            scale = max(1, self.MIN_SIDE // max(height, width))
            if self._size != (width * scale, height * scale):
                self._set_size((width * scale, height * scale))
            rgb = np.ascontiguousarray((np.clip(image[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
            surface = pg.image.frombuffer(rgb, (width, height), "RGB")   # a view of rgb, no copy
            self._screen.blit(pg.transform.scale(surface, self._size), (0, 0))
        else:
            self._screen.fill((0, 0, 0))
        text = (f"{stats.fps_achieved:5.1f} fps  latency {1000 * stats.latency_mean:4.1f} ms  "
                f"dropped {stats.dropped}")
        if self.overlay:
            self._draw_overlay(text, meters)
        pg.display.flip()
        now = time.perf_counter()
        if now - self._shown_title > 1.0:   # the title is cheap but some window managers redraw on every change
            pg.display.set_caption(f"{self.title} - {text}")
            self._shown_title = now

    def _draw_overlay(self, text: str, meters: np.ndarray | None) -> None:
        pg = self._pg
        self._screen.blit(self._font.render(text, True, (255, 255, 255), (0, 0, 0)), (6, 6))
        if meters is None:
            return
        values = np.asarray(meters, dtype=np.float32).ravel()
        width, height = self._size
        bar = max(2, (width - 12) // max(1, len(values)))
        top = max(1.0, float(values.max(initial=0.0)))   # values above 1 rescale the meters, never clip
        for i, v in enumerate(values):
            h = int((height // 4) * max(0.0, float(v)) / top)
            pg.draw.rect(self._screen, (80, 220, 120), (6 + i * bar, height - 6 - h, bar - 2, h))

    def close(self) -> None:
        if self._screen is not None:
            self._pg.display.quit()
            self._screen = None
