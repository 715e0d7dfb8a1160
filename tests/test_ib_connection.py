"""The adapter's connection layer against the gateway simulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import uvloop
from ibapi.contract import Contract
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.wrapper import EWrapper

from adapters.ib.connection import (
    ClientSession,
    Connection,
    IBConnectError,
    IBRefusal,
    _Transport,
    connect,
    mask_account,
)
from adapters.ib.gateway_sim.server import GatewaySimServer
from tests.ib_sim_support import record_callbacks, sim_config


@record_callbacks
class Recorder(EWrapper):
    """Records every callback as (name, args)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def _record(self, name: str, args: tuple) -> None:
        self.calls.append((name, args))

    def named(self, name: str) -> list[tuple]:
        return [a for n, a in self.calls if n == name]


async def _gateway(**sections):
    server = GatewaySimServer(sim_config(**sections))
    await server.start()
    return server


def aapl() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    return c


async def _until(pred, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("version", [176, 200, MAX_CLIENT_VER])
async def test_ready_only_after_version_next_id_and_accounts(version: int) -> None:
    server = await _gateway(gateway={"max_server_version": version})
    try:
        w = Recorder()
        conn = await connect("127.0.0.1", server.port, 3, w)
        s = conn.session.state
        assert s.server_version == version
        assert s.next_valid_id is not None and s.accounts == ["DU1234567"]
        conn.client.reqContractDetails(5, aapl())
        conn.flush()
        await _until(lambda: w.named("contractDetailsEnd"))
        (rid, details) = w.named("contractDetails")[0]
        assert rid == 5 and details.contract.conId > 0
        conn.close()
    finally:
        await server.stop()


async def test_connection_refused_names_the_ports() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IBConnectError, match=r"refused.*4002.*4004"):
        await connect("127.0.0.1", port, 1, EWrapper(), timeout=2)


async def test_accepted_then_closed_is_not_called_a_client_id_conflict() -> None:
    server = await _gateway()
    try:
        server.core.fault("daily_restart", seconds=5, refuse="accept_close")
        with pytest.raises(IBConnectError, match="API is not ready") as err:
            await connect("127.0.0.1", server.port, 1, EWrapper(), timeout=2)
        assert "not a client id conflict" in str(err.value)
    finally:
        await server.stop()


async def test_client_id_in_use_is_326() -> None:
    server = await _gateway()
    try:
        first = await connect("127.0.0.1", server.port, 4, EWrapper())
        with pytest.raises(IBConnectError, match=r"client id 4 is already in use.*326"):
            await connect("127.0.0.1", server.port, 4, EWrapper(), timeout=2)
        first.close()
    finally:
        await server.stop()


async def test_paper_only_refuses_a_live_account() -> None:
    server = await _gateway(gateway={"accounts": ["DU111", "U2222222"]})
    try:
        with pytest.raises(IBRefusal, match=r"paper_only.*live account\(s\) U…22:") as err:
            await connect("127.0.0.1", server.port, 1, EWrapper())
        assert "2222222" not in str(err.value)  # an account id is a secret: masked
        conn = await connect("127.0.0.1", server.port, 2, EWrapper(), paper_only=False)
        assert conn.session.state.accounts == ["DU111", "U2222222"]
        conn.close()
    finally:
        await server.stop()


async def test_handshake_without_login_times_out_with_a_reason() -> None:
    async def half_gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        await reader.readexactly(n)
        reply = b"176\0" + b"20260101 00:00:00 UTC\0"
        writer.write(struct.pack(">I", len(reply)) + reply)
        await reader.read(1000)

    srv = await asyncio.start_server(half_gateway, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(IBConnectError, match=r"nextValidId or managedAccounts.*not logged in"):
            await connect("127.0.0.1", port, 1, EWrapper(), timeout=0.5)
    finally:
        srv.close()


def test_bad_frames_are_dropped_and_the_session_continues(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tickwire.ib")
    w = Recorder()
    session = ClientSession(w, 1)
    hello = b"176\x0020260101 00:00:00 UTC\x00"
    session.receive(struct.pack(">I", len(hello)) + hello)
    assert session.handshaken
    bad = [b"9999\x001\x002\x00", b"1\x006\x00notanumber\x001\x00", b"xyz"]
    good = b"9\x001\x0042\x00"
    session.receive(b"".join(struct.pack(">I", len(f)) + f for f in [*bad, good]))
    assert w.named("nextValidId") == [(42,)]
    text = caplog.text
    assert "unknown id 9999" in text and "message id 1" in text
    session.receive(struct.pack(">I", 0x1000000))
    assert session.closed_reason and "16 MB" in session.closed_reason


@contextlib.asynccontextmanager
async def _connected_to_a_plain_socket() -> AsyncIterator[tuple[Connection, socket.socket]]:
    """A ``Connection`` to a plain socket the test reads by hand, our hello already read."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    session = ClientSession(EWrapper(), 1)
    _, proto = await asyncio.get_running_loop().create_connection(
        lambda: _Transport(session, lambda reason: None), "127.0.0.1", srv.getsockname()[1]
    )
    peer, _ = srv.accept()
    peer.setblocking(False)
    try:
        await asyncio.sleep(0.05)  # the hello goes the transport's way: at the loop's turn
        assert peer.recv(1 << 16).startswith(b"API\0")
        yield Connection(session, proto), peer
    finally:
        proto.transport.close()
        peer.close()
        srv.close()


def test_order_bytes_reach_the_socket_before_the_loop_turns() -> None:
    """On uvloop, ``transport.write`` waits for the end of the loop's iteration; an order
    written through ``Connection.write`` is on the socket when the call returns."""

    async def main() -> None:
        async with _connected_to_a_plain_socket() as (conn, peer):
            assert conn.write(b"\x00\x00\x00\x03abc")
            assert peer.recv(1 << 16) == b"\x00\x00\x00\x03abc"  # no await in between

    uvloop.run(main())


def test_writes_stay_in_order_when_the_socket_is_full() -> None:
    """What the socket does not take waits in the transport, and later writes queue behind it."""

    async def main() -> tuple[bytes, bytes]:
        async with _connected_to_a_plain_socket() as (conn, peer):
            big = bytes(range(256)) * (32 << 10)  # 8 MiB: more than the socket buffers hold
            assert conn.write(big)
            assert conn.protocol.transport.get_write_buffer_size() > 0
            got = bytearray(peer.recv(1 << 20))  # room in the socket again, the rest still queued
            assert conn.write(b"TAIL")
            loop = asyncio.get_running_loop()
            while len(got) < len(big) + 4:
                got += await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 5)
            return bytes(got), big

    got, big = uvloop.run(main())
    assert got == big + b"TAIL"


def test_an_order_goes_behind_bytes_the_transport_still_holds() -> None:
    """A request written the transport's way (sent at the loop's turn) and then an order in the
    same iteration: the order waits behind it, the stream keeps its order."""

    async def main() -> bytes:
        async with _connected_to_a_plain_socket() as (conn, peer):
            conn.protocol.transport.write(b"\x00\x00\x00\x01A")  # queued until the turn ends
            assert conn.write(b"\x00\x00\x00\x01B")
            await asyncio.sleep(0.05)
            return peer.recv(1 << 16)

    assert uvloop.run(main()) == b"\x00\x00\x00\x01A\x00\x00\x00\x01B"


async def test_refused_on_every_address_a_name_resolves_to_is_still_refused(monkeypatch) -> None:
    """``localhost`` may resolve to ::1 and 127.0.0.1. Refused on both, asyncio raises one
    OSError("Multiple exceptions: ...") and the error lost its port hints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def two_addresses(host, port, *args, **kwargs):  # as /etc/hosts often has it
        if host == "gateway.test":
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return await resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", two_addresses)
    with pytest.raises(IBConnectError) as err:
        await connect("gateway.test", port, 1, EWrapper(), timeout=2)
    text = str(err.value)
    assert text.startswith(f"connection refused at gateway.test:{port} (::1: ")
    assert "127.0.0.1: " in text and "Multiple exceptions" not in text
    assert "4002" in text and "4004" in text


async def test_the_socket_has_tcp_keepalive() -> None:
    """A gateway host that vanished leaves a socket that never fails by itself."""
    server = await _gateway()
    try:
        conn = await connect("127.0.0.1", server.port, 1, EWrapper())
        sock = conn.protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        conn.close()
    finally:
        await server.stop()


async def _watched(server, hb_s: float = 0.2, timeout_s: float = 0.2):
    """A connection to ``server`` with a heartbeat whose probe is reqCurrentTime; returns the
    connection, the recording wrapper, the probes made and the reasons it was lost."""
    w = Recorder()
    lost: list[str] = []
    conn = await connect("127.0.0.1", server.port, 1, w, on_lost=lost.append)
    probes: list[float] = []

    def probe() -> None:
        probes.append(asyncio.get_running_loop().time())
        conn.client.reqCurrentTime()
        conn.flush()

    conn.start_heartbeat(hb_s, timeout_s, probe)
    return conn, w, probes, lost


async def test_a_quiet_gateway_is_asked_and_its_answers_keep_the_connection() -> None:
    server = await _gateway()
    try:
        conn, w, probes, lost = await _watched(server)
        await _until(lambda: len(w.named("currentTime")) >= 3)
        assert len(probes) >= 3  # nothing else is read: each look after a quiet interval asks
        assert conn.connected and not lost and conn.session.closed_reason is None
        conn.close()
    finally:
        await server.stop()


async def test_market_data_flowing_is_liveness_enough_no_probe_is_sent() -> None:
    server = await _gateway(market={"events_per_second": 50.0})
    try:
        conn, w, probes, lost = await _watched(server)
        conn.client.reqMktData(7, aapl(), "", False, False, [])
        conn.flush()
        await _until(lambda: w.named("tickPrice"))
        probes.clear()  # the ones before the data started
        await asyncio.sleep(1.0)  # five heartbeat intervals
        assert probes == [] and conn.connected and not lost
        conn.close()
    finally:
        await server.stop()


async def test_a_hung_gateway_is_closed_with_a_clear_reason() -> None:
    """The gateway's API hangs with its socket open (a known IB Gateway failure): the probe
    gets no answer, and the connection is closed (aborted: nothing queued holds it) and said
    to be hung, where before it stayed up forever."""
    server = await _gateway(market={"events_per_second": 50.0})
    try:
        conn, w, probes, lost = await _watched(server, hb_s=0.2, timeout_s=0.3)
        conn.client.reqMktData(7, aapl(), "", False, False, [])
        conn.flush()
        await _until(lambda: w.named("tickPrice"))
        server.core.fault("hang", seconds=30)
        hung_at = asyncio.get_running_loop().time()
        await _until(lambda: lost, timeout=3)
        took = asyncio.get_running_loop().time() - hung_at
        assert 0.3 <= took <= 0.2 * 2 + 0.3 + 0.5  # two looks at most, then the timeout
        assert len(probes) == 1 and not conn.connected
        reason = conn.session.closed_reason
        assert reason is not None and reason.startswith(
            f"IB Gateway at 127.0.0.1:{server.port} answered nothing for "
        )
        assert reason.endswith("s: the API is hung; reconnecting")
        assert server.core.status()["hung"]  # it was us who gave up: the gateway said nothing
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("account", "shown"),
    [
        ("U1234567", "U…67"),
        ("DU1234567", "DU…67"),
        ("F7654321", "F…21"),
        ("DU12", "DU…"),
        ("", "…"),
    ],
)
def test_an_account_id_is_shown_masked(account: str, shown: str) -> None:
    assert mask_account(account) == shown
