"""What the performer's window costs a frame: a 640x360 render shown at 1920x1080 (and others).

Times PreviewWindow.show() (8-bit conversion, smoothscale, overlay, flip) per fit mode, with and
without the overlay, against the nearest-neighbour pygame.transform.scale the old window used,
measured in the same run. SDL's dummy driver draws into memory, so no display is needed and the
figures leave out the copy to the screen (with --x11 they include it: run under Xvfb or a desktop).
The best of three runs of each is printed.

    .venv/bin/python bench/bench_window.py [--frames N] [--x11]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from fractions import Fraction

import numpy as np


def per_frame_ms(fn, frames: int, repeats: int = 3) -> float:
    """Milliseconds a call, the best of `repeats` runs of `frames` calls (the machine is shared: the least disturbed run)."""
    fn()   # warm: the first call allocates the surfaces
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(frames):
            fn()
        best = min(best, (time.perf_counter() - started) / frames)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--x11", action="store_true", help="draw on the real display instead of SDL's dummy driver")
    args = parser.parse_args()
    if not args.x11:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    from cppnviz.live import LiveStats
    from cppnviz.preview import PreviewWindow

    import pygame

    rng = np.random.default_rng(0)
    stats = LiveStats(44100, Fraction(60), frames=100, dropped=3)
    meters = rng.random(8, dtype=np.float32)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}, "
          f"pygame {pygame.version.ver} (SDL {'.'.join(map(str, pygame.get_sdl_version()))}), "
          f"driver {'x11' if args.x11 else 'dummy'}; best of 3 runs of {args.frames} frames")
    print(f"{'frame':>9} {'window':>9} {'fit':>9} {'overlay':>7} {'show ms':>8} {'nearest ms':>10} {'ratio':>6}")
    for (fw, fh), window in [((640, 360), (1920, 1080)), ((256, 256), (1920, 1080)), ((1280, 720), (1280, 720))]:
        frame = rng.random((fh, fw, 3), dtype=np.float32)
        for fit in ("letterbox", "fill", "stretch"):
            for overlay in (False, True):
                preview = PreviewWindow(window_size=window, fit=fit, overlay=overlay)
                preview.open()
                try:
                    def shown():
                        stats.frames += 1   # as a run does (a rate of 0 would log the low-frame-rate warning)
                        preview.show(frame, meters, stats, index=100, end=1000)
                    show = per_frame_ms(shown, args.frames)

                    # Reference: the old window's way, nearest-neighbour scale of the whole frame, and a flip.
                    def nearest():
                        rgb = np.ascontiguousarray((np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
                        surface = pygame.image.frombuffer(rgb, (fw, fh), "RGB")
                        pygame.display.get_surface().blit(pygame.transform.scale(surface, window), (0, 0))
                        pygame.display.flip()
                    reference = per_frame_ms(nearest, args.frames)
                finally:
                    preview.close()
                print(f"{fw}x{fh:<5} {window[0]}x{window[1]:<4} {fit:>9} {'on' if overlay else 'off':>7} "
                      f"{show:8.2f} {reference:10.2f} {show / reference:6.2f}")


if __name__ == "__main__":
    main()
