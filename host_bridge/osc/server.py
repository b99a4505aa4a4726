"""The OSC receiver: a UDP socket on its own thread, python-osc's parser, a ParamControl behind it.

python-osc's own servers are not used: they drop malformed packets silently and
their dispatcher sleeps on bundles timed in the future. Here a future bundle's
changes are queued with their due time and the render thread applies them when
due, so no thread ever waits for a timetag.

A burst (a controller's fader swept, a script looping) must not take the
interpreter from the render thread: the loop reads every datagram waiting, and
of plain one-number messages to the same address only the newest is parsed (the
others are counted as coalesced, as the control plane would have replaced them
anyway). The socket's receive buffer is as large as the system allows, and the
datagrams the kernel still drops are counted (udp_buffer).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from typing import Any

from pythonosc import osc_message
from pythonosc.osc_message_builder import BuildError, OscMessageBuilder
from pythonosc.parsing import osc_types

from cppnviz.errors import CppnvizError

from . import udp_buffer
from .control import ParamControl
from .ratelimit import RateLimitedLog

logger = logging.getLogger(__name__)

# Controllers send small packets; a bigger one is a mistake or an attack, and
# parsing it would only delay the packets behind it.
MAX_PACKET = 8192
# Receive buffer asked for; Linux grants twice this where allowed: room for ~40,000 small
# messages (a burst of 10,000 three times over), while none is queued it costs no memory.
RECEIVE_BUFFER = 16 * 1024 * 1024
# A buffer granted smaller than this cannot hold a 10,000-message burst: say so at the start.
BURST = 10_000
# How often the receive loop looks at the stop flag: close() returns within this.
POLL_S = 0.1
# The largest UDP payload; reading this much lets an oversized datagram be seen whole and counted.
DATAGRAM_MAX = 65536
# Datagrams read in one go before they are handled: bounds the memory a flood can take at once.
BATCH = 4096
# While datagrams keep coming, the kernel's drop count is read at most this often.
DROPS_EVERY_S = 1.0
# A bundle timed further ahead than this usually means the sender's clock is wrong: say so.
FAR_AHEAD_S = 10.0

# Type tags python-osc decodes; any other is skipped by its parser, which would
# shift the arguments after it, so such messages are rejected whole.
KNOWN_TAGS = frozenset("ihfdsbrmtTFN[]")
BUNDLE = b"#bundle\x00"
# One-number messages (`/x ,f 0.5`, the form faders send): the tag and the argument's size.
SIMPLE = {ord("f"): 4, ord("i"): 4, ord("d"): 8, ord("h"): 8, ord("T"): 0, ord("F"): 0}

MALFORMED = (osc_message.ParseError, osc_types.ParseError,
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
                 max_packet: int = MAX_PACKET, receive_buffer: int = RECEIVE_BUFFER):
        self.control = control
        self.host = host
        self.max_packet = max_packet
        # No SO_REUSEADDR: UDP has no TIME_WAIT, so a restart rebinds without it, and on
        # Linux it would let a second program bind the same port and silently take
        # every packet from this one.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.receive_buffer = udp_buffer.enlarge(sock, receive_buffer)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise CppnvizError(f"cannot listen for OSC on {host}:{port}: {exc.strerror or exc}; "
                               "another program may be using that port, choose another one") from exc
        # Non-blocking: the loop drains every waiting datagram, then waits on the selector.
        sock.setblocking(False)
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger)
        self._drops = udp_buffer.dropped(sock) or 0
        self._drops_read = time.monotonic()
        holds = self.receive_buffer // udp_buffer.BYTES_PER_MESSAGE
        if holds < BURST:
            logger.info("OSC receive buffer on port %d: %d KiB, room for about %d small messages; a longer burst "
                        "is dropped by the kernel (counted). The system caps it: `sysctl -w net.core.rmem_max=%d` "
                        "makes room for %d", self.port, self.receive_buffer // 1024, holds, receive_buffer,
                        2 * receive_buffer // udp_buffer.BYTES_PER_MESSAGE)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"osc-server:{self.port}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * POLL_S + 1)
        self._count_drops()  # the final figure, for the run's summary
        self._selector.close()
        self._sock.close()

    def __enter__(self) -> OscServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- receive loop -------------------------------------------------------------
    def _run(self) -> None:
        busy = False
        while not self._stop.is_set():
            batch = self._read()
            if not batch:
                if busy:  # gone quiet: whatever the kernel dropped in the burst is counted now
                    self._count_drops()
                    busy = False
                continue
            busy = True
            kept = newest_per_address(batch)
            if len(kept) < len(batch):
                self.control.superseded(len(batch) - len(kept))
            for data, sender in kept:
                try:
                    self._packet(data, sender)
                except Exception:
                    # A bug, not bad input (that is handled in _packet): keep the show's
                    # control channel alive, but say so loudly with the traceback.
                    self.control.count("errors")
                    logger.exception("OSC packet from %s:%d failed", *sender[:2])
            if time.monotonic() - self._drops_read > DROPS_EVERY_S:
                self._count_drops()

    def _read(self) -> list[tuple[bytes, Any]]:
        """Every datagram waiting (up to BATCH), after waiting up to POLL_S for the first."""
        if not self._selector.select(POLL_S):
            return []
        batch: list[tuple[bytes, Any]] = []
        while len(batch) < BATCH:
            try:
                batch.append(self._sock.recvfrom(DATAGRAM_MAX))
            except BlockingIOError:
                break
            except OSError as exc:
                if self._stop.is_set():
                    break
                self.control.count("errors")
                self._log.error("recv", "OSC receive failed on port %d: %s", self.port, exc)
                time.sleep(POLL_S)  # a persistent socket error must not spin a core
                break
        return batch

    def _count_drops(self) -> None:
        self._drops_read = time.monotonic()
        total = udp_buffer.dropped(self._sock)
        if total is None or total <= self._drops:
            return
        new, self._drops = total - self._drops, total
        self.control.count("overflow", new)
        self._log.warning("overflow", "OSC receive buffer full on port %d: the kernel dropped %d packets (%d in all; "
                          "buffer %d KiB)", self.port, new, total, self.receive_buffer // 1024)

    def _packet(self, data: bytes, sender: tuple) -> None:
        if len(data) > self.max_packet:
            self.control.count("oversized")
            self._log.warning("oversized", "OSC packet of %d bytes from %s:%d rejected (limit %d)",
                              len(data), sender[0], sender[1], self.max_packet)
            return
        now = time.time()
        try:
            if data.startswith(BUNDLE):
                elements = list(_bundle_messages(data, None, now))
            elif data.startswith(b"/"):
                elements = [(data, None)]
            else:
                raise ValueError("neither an OSC message (starts with '/') nor a bundle ('#bundle')")
            # Parse every message before acting on any, so a bad packet changes nothing.
            items = [(*_message(dgram), due) for dgram, due in elements]
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


def newest_per_address(batch: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
    """The batch without the one-number messages that a later one to the same address supersedes.

    Only well-formed one-number messages are left out (their form is checked here, byte by
    byte): anything else, queries and bundles included, is handled as it came.
    """
    seen: set[bytes] = set()
    kept = []
    for data, sender in reversed(batch):
        address = _one_number_address(data)
        if address is not None:
            if address in seen:
                continue
            seen.add(address)
        kept.append((data, sender))
    kept.reverse()
    return kept


def _one_number_address(data: bytes) -> bytes | None:
    """The address of a well-formed message with one number or T/F (`/x ,f 0.5`), else None."""
    end = data.find(b"\x00")
    if not data.startswith(b"/") or end < 0 or not data[:end].isascii():
        return None
    tags = (end // 4 + 1) * 4  # the address, NUL-terminated, padded to 4 bytes
    if data[tags:tags + 1] != b"," or data[tags + 2:tags + 4] != b"\x00\x00":
        return None
    size = SIMPLE.get(data[tags + 1]) if len(data) > tags + 1 else None
    return data[:end] if size is not None and len(data) == tags + 4 + size else None


def _bundle_messages(dgram: bytes, outer_due: float | None, now: float):
    """(message datagram, due time or None) for every message in a bundle and the bundles inside it.

    Walked here rather than by python-osc, which logs (to the root logger) and skips an element
    it cannot identify: here that makes the packet malformed, counted and logged as such.
    """
    stamp, index = osc_types.get_date(dgram, len(BUNDLE))
    # Timetag 1 ("immediately", which python-osc reports as 0) inherits the enclosing bundle's time.
    due = outer_due if stamp == osc_types.IMMEDIATELY else max(stamp, outer_due or stamp)
    while index < len(dgram):
        size, index = osc_types.get_int(dgram, index)
        element = dgram[index:index + size]
        if size <= 0 or len(element) < size:
            raise ValueError(f"a bundle element of {size} bytes, {len(dgram) - index} left in the packet")
        index += size
        if element.startswith(BUNDLE):
            yield from _bundle_messages(element, due, now)
        elif element.startswith(b"/"):
            yield element, (due if due is not None and due > now else None)
        else:
            raise ValueError(f"a bundle element that is neither a message nor a bundle: {element[:16]!r}")


def _message(dgram: bytes) -> tuple[str, list]:
    """(address, arguments) of one message; an argument python-osc cannot decode becomes an UnsupportedTag.

    Decided before python-osc parses it: its parser would skip such an argument (shifting the
    ones after it) and log a warning of its own.
    """
    address, index = osc_types.get_string(dgram, 0)
    tags, _ = osc_types.get_string(dgram, index) if index < len(dgram) else (",", index)
    unknown = [UnsupportedTag(t) for t in tags[1:] if t not in KNOWN_TAGS]
    if unknown:
        return address, unknown
    msg = osc_message.OscMessage(dgram)
    return msg.address, msg.params


def _typed(value: Any) -> tuple[Any, str | None]:
    """(value, OSC type) for a reply: bools as T/F, ints as i (h when past 32 bits), floats as f, None as N."""
    if value is None or isinstance(value, bool):
        return value, None  # python-osc writes N, T or F
    if isinstance(value, int):
        return value, ("i" if -2**31 <= value < 2**31 else "h")
    if isinstance(value, float):
        return value, "f"
    return str(value), "s"
