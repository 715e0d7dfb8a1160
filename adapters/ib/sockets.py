"""TCP socket settings and writes the transports do not make themselves.

uvloop's ``transport.write`` only queues bytes until the end of the loop's iteration, so an
order (ours) or an order's answer (the gateway simulator's) would wait for everything else the
iteration runs. Both sides of the wire use ``write_through``.

``keep_alive`` turns on TCP keepalive: a gateway host that vanished (a VM gone, a cable, a NAT
that forgot the flow) leaves a socket that never reads anything and never fails; keepalive
probes make the kernel notice in about half a minute, whatever the heartbeat is set to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

#: Keepalive timings where the platform takes them: the first probe after ``IDLE`` seconds
#: of silence, then every ``INTERVAL``; the peer is given up after ``COUNT`` unanswered.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 10, 5, 4


def keep_alive(sock: Any) -> None:
    """Turn on TCP keepalive on ``sock`` (a socket, or the transport's stand-in for one) with
    the timings above where the platform has the options (Linux does; others keep theirs)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def write_through(transport: asyncio.Transport, fd: int, data: bytes) -> None:
    """Put ``data`` on the socket ``fd`` behind ``transport`` now when the transport holds
    nothing unsent (so the stream keeps its order); what the socket does not take (full, or
    an error the transport will report) goes through the transport as usual. ``fd`` < 0: the
    transport's way only (no plain socket to write to)."""
    if fd >= 0 and not transport.get_write_buffer_size() and not transport.is_closing():
        try:
            sent = os.write(fd, data)
        except OSError:  # full (BlockingIOError) or broken: the transport deals with it
            sent = 0
        data = data[sent:]
    if data:
        transport.write(data)
