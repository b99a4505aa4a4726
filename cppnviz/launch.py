"""The console script: Ctrl-C and SIGTERM handled from the first instant, before the heavy imports."""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130


def interrupt(signum, frame):
    """SIGTERM ends a run as Ctrl-C does: outputs cleaned up, exit 130."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, interrupt)
    try:
        from .cli import main as run  # numpy, PyAV and the nodes: a second or more on a cold start
        return run(argv)
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
