"""The OSC receiver: a UDP socket on its own thread, python-osc's parser, a ParamControl behind it.

python-osc's own servers are not used: they drop malformed packets silently and
their dispatcher sleeps on bundles timed in the future. Here a future bundle's
changes are queued with their due time and the render thread applies them when
due, so no thread ever waits for a timetag.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from pythonosc import osc_bundle, osc_message
from pythonosc.osc_message_builder import BuildError, OscMessageBuilder
from pythonosc.parsing import osc_types

from cppnviz.errors import CppnvizError

from .control import ParamControl
from .ratelimit import RateLimitedLog

logger = logging.getLogger(__name__)

# Controllers send small packets; a bigger one is a mistake or an attack, and
# parsing it would only delay the packets behind it.
MAX_PACKET = 8192
# Room for a burst of thousands of small packets while the thread is busy
# (the kernel caps this at net.core.rmem_max).
RECEIVE_BUFFER = 4 * 1024 * 1024
# How often the receive loop looks at the stop flag: close() returns within this.
POLL_S = 0.1
# The largest UDP payload; reading this much lets an oversized datagram be seen whole and counted.
DATAGRAM_MAX = 65536
# A bundle timed further ahead than this usually means the sender's clock is wrong: say so.
FAR_AHEAD_S = 10.0

# Type tags python-osc decodes; any other is skipped by its parser, which would
# shift the arguments after it, so such messages are rejected whole.
KNOWN_TAGS = frozenset("ihfdsbrmtTFN[]")

MALFORMED = (osc_bundle.ParseError, osc_message.ParseError, osc_types.ParseError,
             IndexError, ValueError, OverflowError, RecursionError)


class UnsupportedTag:
    """Stands for an argument whose OSC type python-osc cannot decode (shown in the rejection)."""

    def __init__(self, tag: str):
        self.tag = tag

    def __repr__(self) -> str:
        return f"<OSC type '{self.tag}', not supported>"


class OscServer:
    """UDP OSC server on its own thread, feeding a ParamControl."""

    def __init__(self, control: ParamControl, host: str = "127.0.0.1", port: int = 9000, *,
                 max_packet: int = MAX_PACKET):
        self.control = control
        self.host = host
        self.max_packet = max_packet
        # No SO_REUSEADDR: UDP has no TIME_WAIT, so a restart rebinds without it, and on
        # Linux it would let a second program bind the same port and silently take
        # every packet from this one.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise CppnvizError(f"cannot listen for OSC on {host}:{port}: {exc.strerror or exc}; "
                               "another program may be using that port, choose another one") from exc
        sock.settimeout(POLL_S)
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"osc-server:{self.port}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * POLL_S + 1)
        self._sock.close()

    def __enter__(self) -> OscServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- receive loop -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(DATAGRAM_MAX)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    break
                self.control.count("errors")
                self._log.error("recv", "OSC receive failed on port %d: %s", self.port, exc)
                time.sleep(POLL_S)  # a persistent socket error must not spin a core
                continue
            try:
                self._packet(data, sender)
            except Exception:
                # A bug, not bad input (that is handled in _packet): keep the show's
                # control channel alive, but say so loudly with the traceback.
                self.control.count("errors")
                logger.exception("OSC packet from %s:%d failed", *sender[:2])

    def _packet(self, data: bytes, sender: tuple) -> None:
        if len(data) > self.max_packet:
            self.control.count("oversized")
            self._log.warning("oversized", "OSC packet of %d bytes from %s:%d rejected (limit %d)",
                              len(data), sender[0], sender[1], self.max_packet)
            return
        now = time.time()
        try:
            if osc_bundle.OscBundle.dgram_is_bundle(data):
                items = list(_bundle_messages(osc_bundle.OscBundle(data), None, now))
            elif osc_message.OscMessage.dgram_is_message(data):
                unsupported = _unsupported(data)
                if unsupported:
                    # Decided before python-osc parses it: its parser would log a warning of its own per message.
                    self.control.handle(unsupported[0], unsupported[1])
                    return
                items = [(osc_message.OscMessage(data), None)]
            else:
                raise ValueError("neither an OSC message (starts with '/') nor a bundle ('#bundle')")
            # Parse every argument list before acting on any, so a bad packet changes nothing.
            items = [(msg.address, _arguments(msg), due) for msg, due in items]
        except MALFORMED as exc:
            self.control.count("malformed")
            self._log.warning("malformed", "malformed OSC packet (%d bytes) from %s:%d: %s",
                              len(data), sender[0], sender[1], exc)
            return
        for address, args, due in items:
            if due is not None and due - now > FAR_AHEAD_S:
                self._log.warning("ahead", "OSC bundle from %s:%d is timed %.0f s ahead (is its clock right?); "
                                  "%s waits until then", sender[0], sender[1], due - now, address)
            reply = self.control.handle(address, args, due)
            if reply is not None:
                self._reply(address, reply, sender)

    def _reply(self, address: str, values: list, sender: tuple) -> None:
        """Send a query's answer back to whoever asked, from the server's own port."""
        try:
            builder = OscMessageBuilder(address)
            for v in values:
                builder.add_arg(*_typed(v))
            self._sock.sendto(builder.build().dgram, sender)
        except (OSError, BuildError) as exc:
            self.control.count("errors")
            self._log.warning("reply", "OSC reply %s to %s:%d failed: %s", address, sender[0], sender[1], exc)


def _bundle_messages(bundle, outer_due: float | None, now: float):
    """(message, due time or None) for every message in a bundle and the bundles inside it."""
    stamp = bundle.timestamp
    # Timetag 1 ("immediately", which python-osc reports as 0) inherits the enclosing bundle's time.
    due = outer_due if stamp == osc_types.IMMEDIATELY else max(stamp, outer_due or stamp)
    for content in bundle:
        if isinstance(content, osc_bundle.OscBundle):
            yield from _bundle_messages(content, due, now)
        else:
            yield content, (due if due is not None and due > now else None)


def _unsupported(dgram: bytes) -> tuple[str, list] | None:
    """(address, markers) when a message has type tags python-osc cannot decode, else None."""
    address, index = osc_types.get_string(dgram, 0)
    if index >= len(dgram):
        return None
    tags, _ = osc_types.get_string(dgram, index)
    unknown = [t for t in tags[1:] if t not in KNOWN_TAGS]
    return (address, [UnsupportedTag(t) for t in unknown]) if unknown else None


def _arguments(msg) -> list[Any]:
    """The message's arguments, with a marker for each type python-osc skipped (inside bundles)."""
    unsupported = _unsupported(msg.dgram)
    return msg.params + unsupported[1] if unsupported else msg.params


def _typed(value: Any) -> tuple[Any, str | None]:
    """(value, OSC type) for a reply: bools as T/F, ints as i (h when past 32 bits), floats as f, None as N."""
    if value is None or isinstance(value, bool):
        return value, None  # python-osc writes N, T or F
    if isinstance(value, int):
        return value, ("i" if -2**31 <= value < 2**31 else "h")
    if isinstance(value, float):
        return value, "f"
    return str(value), "s"
