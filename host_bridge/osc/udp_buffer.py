"""A UDP socket's receive buffer: made as large as the system allows, and the datagrams the kernel dropped when it was full.

Linux keeps each queued datagram in the buffer with its bookkeeping: a small OSC message sent over
loopback takes about 830 bytes of it, so 10,000 of them need ~8 MiB. An ordinary request is capped
at net.core.rmem_max (208 KiB on many distributions: ~250 messages); SO_RCVBUFFORCE passes the cap
for a process allowed to (CAP_NET_ADMIN). Linux doubles what is asked for (half is its overhead)
and reports the doubled figure.

Drops are read from /proc/net/udp, which counts them per socket and is exact at any moment.
(SO_RXQ_OVFL reports the same counter, but only on the next datagram that gets through: drops at
the end of a burst would go unseen.) Elsewhere than Linux drops are not counted.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

# Linux's value: not every Python build names it.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
# Bytes of buffer one small datagram takes, queued on Linux (measured over loopback: 16 MiB held 20,164).
BYTES_PER_MESSAGE = 832


def enlarge(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of `size` bytes, past the system's cap where allowed; return what was granted."""
    if SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            return granted(sock)
        except OSError:
            pass  # not permitted: the ordinary request, capped by net.core.rmem_max
    # Linux caps an ordinary request; macOS and the BSDs refuse one over their cap (ENOBUFS): halve it.
    while size >= 64 * 1024:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            break
        except OSError:
            size //= 2
    return granted(sock)


def granted(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def dropped(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket since it was made (its buffer full); None where unknown."""
    table = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        fields = line.split()
        if len(fields) > 12 and fields[9] == inode:
            return int(fields[12])
    return None
