"""Feature output: every frame, the chosen features vectors as plain OSC messages over UDP.

For each output `(node, port)` it sends one float per band at
`/<node>/<port>/<index>` (TouchDesigner's OSC In CHOP makes a channel of each)
and the whole vector at `/<node>/<port>`, after `/cppnviz/frame` with the frame
number and time. Plain messages, not bundles: TouchDesigner's OSC In CHOP and
liblo's oscdump handle those best.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import numpy as np
from pythonosc.parsing import osc_types

from cppnviz.errors import CppnvizError

from .ratelimit import RateLimitedLog

logger = logging.getLogger(__name__)

FRAME_ADDRESS = "/cppnviz/frame"


def _prefix(address: str, tags: str) -> bytes:
    """The fixed start of a message: padded address and type tags (the values follow)."""
    return osc_types.write_string(address) + osc_types.write_string("," + tags)


class FeatureSender:
    """Sends chosen features outputs to OSC destinations every frame."""

    def __init__(self, graph, outputs: list[tuple[str, str]], destinations: list[tuple[str, int]]):
        missing = [f"{n}.{p}" for n, p in outputs if (n, p) not in graph.specs]
        if missing:
            raise CppnvizError(f"OSC send: no output {', '.join(missing)} in the graph")
        self.outputs = [tuple(o) for o in outputs]
        # Names are resolved once here: a DNS lookup per packet would stall the render thread.
        self.destinations = [_resolve(host, port) for host, port in destinations]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Never wait on the network from the render thread: a full buffer drops the packet (counted).
        self._sock.setblocking(False)
        self._indexed_prefix: dict[tuple[str, str, int], bytes] = {}
        self._whole_prefix: dict[tuple[str, str, int], bytes] = {}
        self._frame_prefix = _prefix(FRAME_ADDRESS, "if")
        self.stats: dict[str, int] = {"sent": 0, "errors": 0}
        self._log = RateLimitedLog(logger)

    def send(self, tick, values: dict[tuple[str, str], Any]) -> None:
        """Send this frame's messages; `values[(node, port)]` is that output's vector. Never raises on a send error."""
        packets = [self._frame_prefix + np.array([tick.index], ">i4").tobytes()
                   + np.array([tick.time], ">f4").tobytes()]
        for node, port in self.outputs:
            # Big-endian float32 is OSC's 'f': numpy packs the whole vector at once,
            # and numpy scalars never reach python-osc (which rejects them).
            vector = np.asarray(values[(node, port)], dtype=">f4").ravel()
            data = vector.tobytes()
            for i in range(vector.size):
                packets.append(self._indexed(node, port, i) + data[4 * i:4 * i + 4])
            packets.append(self._whole(node, port, vector.size) + data)
        for packet in packets:
            for dest in self.destinations:
                try:
                    self._sock.sendto(packet, dest)
                except OSError as exc:
                    self.stats["errors"] += 1
                    self._log.warning("send", "OSC send to %s:%d failed: %s", dest[0], dest[1], exc)
                else:
                    self.stats["sent"] += 1

    def _indexed(self, node: str, port: str, index: int) -> bytes:
        prefix = self._indexed_prefix.get((node, port, index))
        if prefix is None:
            prefix = self._indexed_prefix[(node, port, index)] = _prefix(f"/{node}/{port}/{index}", "f")
        return prefix

    def _whole(self, node: str, port: str, size: int) -> bytes:
        # Keyed by size: a vector may change length when a param changes (mel bands).
        prefix = self._whole_prefix.get((node, port, size))
        if prefix is None:
            prefix = self._whole_prefix[(node, port, size)] = _prefix(f"/{node}/{port}", "f" * size)
        return prefix

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> FeatureSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _resolve(host: str, port: int) -> tuple[str, int]:
    try:
        return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    except (OSError, UnicodeError) as exc:
        raise CppnvizError(f"OSC send: cannot resolve destination {host}:{port}: {exc}") from exc
