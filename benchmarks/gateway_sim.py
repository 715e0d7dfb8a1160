"""Market-data messages per second the gateway simulator delivers to one client.

The simulator runs as ``tickwire gateway-sim`` in its own process (so the client's reading
does not share its CPU time); this process connects with a hand-rolled TWS API client, asks for
L1 (reqMktData), 10 rows of depth and tick-by-tick BidAsk on one instrument, and counts frames
for a few seconds. The anchor, measured in the same run, is how fast the official ibapi
``Decoder`` decodes the same recorded frames: the rate beyond which a real ibapi client could not
keep up anyway.

Run: ``.venv/bin/python -m benchmarks.gateway_sim``.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ibapi.client import EClient
from ibapi.comm import read_fields
from ibapi.decoder import Decoder
from ibapi.wrapper import EWrapper

from adapters.ib.wire import FrameCapture

_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SimThroughput:
    server_version: int
    messages: int
    seconds: float
    ibapi_decode_per_s: float

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def _requests(version: int) -> list[bytes]:
    """startApi and the three subscriptions, encoded by ibapi's own EClient."""
    from ibapi.contract import Contract

    capture = FrameCapture()
    client = EClient(EWrapper())
    client.conn = capture
    client.serverVersion_ = version
    client.connState = EClient.CONNECTED
    client.clientId = 77
    client.startApi()
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    client.reqMktData(1, c, "", False, False, [])
    client.reqMktDepth(2, c, 10, False, [])
    client.reqTickByTickData(3, c, "BidAsk", 0, False)
    return capture.frames


def _start_sim(version: int, events_per_second: float) -> tuple[subprocess.Popen[str], int]:
    cfg = Path(tempfile.mkdtemp()) / "bench.toml"
    cfg.write_text(
        f"[gateway]\nport = 0\nmax_server_version = {version}\n"
        f"[market]\nevents_per_second = {events_per_second}\n"
        "[pacing]\nenabled = false\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "gateway-sim", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r":(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"gateway-sim did not report its port: {line!r}")
    return proc, int(m.group(1))


def measure(version: int = 176, seconds: float = 3.0, events_per_second: float = 150_000.0):
    """Run the simulator and count the frames one client receives."""
    proc, port = _start_sim(version, events_per_second)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.sendall(b"API\0" + _frame(b"v100..%d" % version))
        for msg in _requests(version):
            sock.sendall(msg)
        buf = bytearray()
        frames = 0
        recorded: list[bytes] = []
        start = time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            buf += sock.recv(1 << 20)
            pos = 0
            end = len(buf)
            while end - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if end - pos - 4 < size:
                    break
                if len(recorded) < 20_000:
                    recorded.append(bytes(buf[pos + 4 : pos + 4 + size]))
                pos += 4 + size
                frames += 1
            del buf[:pos]
        elapsed = now - start
        sock.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return SimThroughput(version, frames, elapsed, _ibapi_decode_rate(version, recorded[5:]))


class _QuietWrapper(EWrapper):
    def error(self, *args: object) -> None:
        pass


def _ibapi_decode_rate(version: int, frames: list[bytes]) -> float:
    """Messages/s the official ibapi Decoder handles for the same frames (no socket)."""
    decoder = Decoder(_QuietWrapper(), version)
    raw = version >= 201
    start = time.perf_counter()
    for f in frames:
        if raw:
            msg_id = _LEN.unpack_from(f)[0]
            if msg_id > 200:
                decoder.processProtoBuf(f[4:], msg_id - 200)
            else:
                decoder.interpret(read_fields(f[4:]), msg_id)
        else:
            fields = read_fields(f)
            decoder.interpret(fields[1:], int(fields[0]))
    return len(frames) / (time.perf_counter() - start)


def main() -> int:
    from ibapi.server_versions import MAX_CLIENT_VER

    for version in (176, MAX_CLIENT_VER):
        r = measure(version)
        print(
            f"v{version}: {r.per_s:,.0f} market-data messages/s to one client "
            f"({r.messages} in {r.seconds:.1f} s); ibapi Decoder: "
            f"{r.ibapi_decode_per_s:,.0f}/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
