"""Bad bytes from one client: the error a gateway sends or a clean close, never a crash.

These speak the wire by hand (text protocol at server version 176) so they can send what no
real client would; a second, well-behaved ibapi client checks that nobody else notices.
"""

from __future__ import annotations

import socket
import struct

import pytest

from tests.ib_sim_support import SimThread, connected, sim_config


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _fields(*fields: object) -> bytes:
    return b"".join(str(f).encode() + b"\0" for f in fields)


class RawClient:
    """A hand-rolled TWS API client at server version 176 (ASCII message ids)."""

    def __init__(self, port: int, client_id: int = 50) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.buf = b""
        self.sock.sendall(b"API\0" + _frame(b"v100..176"))
        version, _time = self.read()[:2]
        assert version == "176"
        self.send(_fields(71, 2, client_id, ""))
        seen = set()
        while not {"9", "15"} <= seen:
            seen.add(self.read()[0])

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_frame(payload))

    def read(self) -> list[str]:
        """The next frame's fields; raises EOFError when the gateway closed the socket."""
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        size = struct.unpack(">I", self.buf[:4])[0]
        payload, self.buf = self.buf[4 : 4 + size], self.buf[4 + size :]
        return payload.decode().split("\0")[:-1]

    def error_code(self) -> tuple[int, int, str]:
        """The next error that is not a farm notice: (id, code, text).

        At v176 an error is ``4, version 2, id, code, text, advancedOrderRejectJson``.
        """
        while True:
            f = self.read()
            if f[0] == "4" and not 2100 <= int(f[3]) < 2200:
                return int(f[2]), int(f[3]), f[4]

    def still_served(self) -> None:
        self.send(_fields(49, 1))  # reqCurrentTime
        while self.read()[0] != "49":
            pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sim():
    with SimThread(sim_config(gateway={"max_server_version": 176})) as s:
        yield s


def test_unknown_message_id_gets_an_error_and_the_connection_lives(sim: SimThread) -> None:
    c = RawClient(sim.port)
    c.send(_fields(4242, 1, 2, 3))
    _, code, text = c.error_code()
    assert code == 321 and "4242" in text
    c.still_served()
    c.close()


@pytest.mark.parametrize(
    "payload",
    [
        _fields(1, 11, "notanumber", 265598, "AAPL", "STK"),  # reqMktData, bad reqId, truncated
        _fields(9, 8),  # reqContractDetails with nothing after the version
        b"abc\0def\0",  # a message id that is not a number
        _fields(3, 17, 0, "AAPL"),  # placeOrder cut short
    ],
    ids=["bad-field", "truncated", "non-numeric-id", "short-order"],
)
def test_malformed_message_gets_error_320(sim: SimThread, payload: bytes) -> None:
    c = RawClient(sim.port)
    c.send(payload)
    _, code, _ = c.error_code()
    assert code == 320
    c.still_served()
    c.close()


def test_length_beyond_16mb_closes_only_that_connection(sim: SimThread) -> None:
    with connected(sim, 1) as bystander:
        bad = RawClient(sim.port, client_id=51)
        bad.sock.sendall(struct.pack(">I", 0x1000000) + b"x" * 64)
        with pytest.raises(EOFError):
            while True:
                bad.read()
        bad.close()
        bystander.reqCurrentTime()
        bystander.wait("currentTime")
        assert not bystander.all("connectionClosed")


def test_not_a_tws_client_is_closed(sim: SimThread) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(100) == b""


def test_frame_split_byte_by_byte_still_parses(sim: SimThread) -> None:
    c = RawClient(sim.port)
    for b in _frame(_fields(49, 1)):
        c.sock.sendall(bytes([b]))
    while c.read()[0] != "49":
        pass
    c.close()


def test_client_vanishing_mid_frame_leaves_the_gateway_serving(sim: SimThread) -> None:
    c = RawClient(sim.port)
    c.sock.sendall(struct.pack(">I", 100) + b"3\0")
    c.close()
    with connected(sim, 2) as app:
        app.reqCurrentTime()
        app.wait("currentTime")
