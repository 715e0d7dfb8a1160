"""Writing to a TCP socket now rather than at the end of the loop's iteration.

uvloop's ``transport.write`` only queues bytes until the end of the loop's iteration, so an
order (ours) or an order's answer (the gateway simulator's) would wait for everything else the
iteration runs. Both sides of the wire use ``write_through``.
"""

from __future__ import annotations

import asyncio
import os


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
