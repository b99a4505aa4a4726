"""A logger wrapper that reports a recurring problem a few times a second, with a count of the rest."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Log at most `burst` messages per `interval` seconds for each key; the next one shown says how many were held back.

    A flood of bad packets must not turn into a flood of log lines (which would
    itself stall a show); the counters in `stats` keep the exact numbers.
    """

    def __init__(self, logger: logging.Logger, *, interval: float = 1.0, burst: int = 5):
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}  # key -> [window start, shown in window, held back]

    def warning(self, key: str, msg: str, *args) -> None:
        self._log(logging.WARNING, key, msg, args)

    def error(self, key: str, msg: str, *args) -> None:
        self._log(logging.ERROR, key, msg, args)

    def _log(self, level: int, key: str, msg: str, args: tuple) -> None:
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(key, [now, 0, 0])
            if now - state[0] >= self.interval:
                state[0], state[1] = now, 0
            if state[1] >= self.burst:
                state[2] += 1
                return
            state[1] += 1
            held, state[2] = state[2], 0
        if held:
            msg += " (%d more like this not shown)"
            args = (*args, held)
        self.logger.log(level, msg, *args)
