"""The TWS API client connection: ibapi's encoders and decoder over our own asyncio transport.

Two layers, as everywhere in tickwire:

- ``ClientSession`` is sans-I/O. It produces the ``API\\0`` handshake with ibapi's own encoding,
  reads the server version and connection time, sends ``startApi`` through ``EClient.startApi``
  and from then on cuts frames out of the receive buffer and dispatches each exactly like
  ``EClient.run`` does (a raw 4-byte id from server version 201, an ASCII id below; an id above
  200 is protobuf) into ibapi's ``Decoder`` and the caller's ``EWrapper``. Requests go out
  through an ``EClient`` whose connection is a capture shim: the bytes are ibapi's, the socket
  is ours. The session is *ready* only once the server version, ``nextValidId`` and a non-empty
  ``managedAccounts`` have all arrived — a TCP connect proves nothing (socat relays accept while
  the gateway is down).
- ``connect`` runs a session over a uvloop/asyncio ``Protocol`` and turns every way a connect
  can fail into an ``IBConnectError`` that says what happened and what to do. It tries each
  address the host resolves to (localhost may be ::1 and 127.0.0.1) and keeps each error, so
  "refused on all of them" still reads as connection refused, with the usual ports.
- A connection that is up can still be dead: a hung gateway keeps the socket open and answers
  nothing. ``Heartbeat`` asks for an answer when nothing has been read for a while and closes
  the connection when none comes; TCP keepalive covers a peer host that vanished.

ibapi logs every request it sends (account codes included) at INFO; the ``ibapi`` logger is
raised to WARNING here so secrets never reach the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import string
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from ibapi import comm
from ibapi.client import EClient
from ibapi.const import MAX_MSG_LEN, UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER, UNSET_LONG
from ibapi.decoder import Decoder
from ibapi.message import IN
from ibapi.protobuf.ErrorMessage_pb2 import ErrorMessage
from ibapi.protobuf.OrderStatus_pb2 import OrderStatus as OrderStatusProto
from ibapi.server_versions import (
    MAX_CLIENT_VER,
    MIN_CLIENT_VER,
    MIN_SERVER_VER_ERROR_TIME,
    MIN_SERVER_VER_MARKET_CAP_PRICE,
    MIN_SERVER_VER_PROTOBUF,
)
from ibapi.wrapper import EWrapper

from .decode import ColdFrame, HotDecoder, MalformedFrame
from .sockets import keep_alive, write_through
from .wire import FrameCapture

logging.getLogger("ibapi").setLevel(logging.WARNING)
log = logging.getLogger("tickwire.ib")

_LEN = struct.Struct(">I")

#: Where IB's API usually listens, for error messages.
PORT_HINT = (
    "IB's defaults: TWS 7497 (paper) / 7496 (live), IB Gateway 4002 (paper) / 4001 (live), "
    "the gnzsnz Docker images 4004 (paper) / 4003 (live)"
)

#: Informational codes: they never change order state.
INFO_CODES = frozenset({2104, 2106, 2107, 2108, 2158, 399, 10349, 10167})

_ORDER_MSGS = (
    IN.ORDER_STATUS, IN.EXECUTION_DATA, IN.EXECUTION_DATA_END, IN.COMMISSION_AND_FEES_REPORT,
)  # fmt: skip
#: Order-stream message ids (text and protobuf, id + 200) dispatched ahead of a read's market
#: data. openOrder and completedOrder are not among them: they repeat what orderStatus says
#: (IB sends the two in no guaranteed order) and ibapi takes ~50 µs to decode one (hot; several
#: times that cold), so they keep their place after the rows.
ORDER_STREAM_IDS = frozenset({*_ORDER_MSGS, *(i + 200 for i in _ORDER_MSGS)})
_ERR_IDS = (IN.ERR_MSG, IN.ERR_MSG + 200)
#: ``HotDecoder.pick``'s table: the ids that may be order events (errors: when about an order).
_ORDER_WANTED = np.zeros(512, dtype=np.uint8)
_ORDER_WANTED[[*ORDER_STREAM_IDS, *_ERR_IDS]] = 1
#: From this many bytes buffered, a read's order events are picked out before its market data
#: is decoded (~9 ns a byte under a flood): below it, decoding first costs them a few µs.
_PICK_BYTES = 1024
_NONE_DONE: frozenset[int] = frozenset()


class IBConnectError(ConnectionError):
    """Connecting to IB failed; the message says why and what to do."""


class IBRefusal(IBConnectError):
    """The gateway is up but trading through it must not start (paper_only and a live account,
    an account it does not manage, several and none chosen): retrying cannot fix it."""


def mask_account(account: str) -> str:
    """An IB account id as logs and errors show it: its letters and its last two characters
    (``U1234567`` -> ``U…67``, ``DU1234567`` -> ``DU…67``). Account ids are secrets (they come
    from the environment or a file, never from logs); this is enough to tell two apart."""
    letters = len(account) - len(account.lstrip(string.ascii_letters))
    if len(account) - letters <= 4:
        return account[:letters] + "…"
    return f"{account[:letters]}…{account[-2:]}"


@dataclass(slots=True)
class SessionState:
    server_version: int = 0
    connection_time: str = ""
    next_valid_id: int | None = None
    accounts: list[str] = field(default_factory=list)
    errors: list[tuple[int, int, str]] = field(default_factory=list)


class ClientSession:
    """Sans-I/O TWS API client: bytes in, ``EWrapper`` callbacks out; requests via ``client``."""

    def __init__(
        self,
        wrapper: EWrapper,
        client_id: int,
        *,
        max_version: int = MAX_CLIENT_VER,
        connect_options: str = "",
        on_frame: Callable[[int, bytes], bool] | None = None,
        on_rows: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> None:
        self.wrapper = wrapper
        self.client_id = client_id
        self.max_version = max_version
        self.connect_options = connect_options
        #: Called with (msg id, payload after the id) before ibapi's decoder; True = handled.
        self.on_frame = on_frame
        #: With ``on_rows``, frames after the handshake go through ``HotDecoder``: the hot
        #: market-data messages arrive as ``HOT_ROW`` rows and their bytes (``Batch.rows`` and
        #: ``raw``: views valid during the call), the rest through ibapi's decoder, in wire order.
        self.on_rows = on_rows
        #: Called first thing on every socket read (the venue stamps ``ts_recv`` there).
        self.on_receive: Callable[[], None] | None = None
        #: With ``on_rows``: errors whose id is at least this are about orders (the venue keeps
        #: market-data request ids below it); None: no error counts as an order event.
        self.order_ids_from: int | None = None
        self.hot: HotDecoder | None = None
        #: ``warm_receive``'s scratch decoder, and its made-up frame with the order id in it.
        self._warm_decoder: HotDecoder | None = None
        self._warm_frame: tuple[int, bytes] = (-1, b"")
        self.malformed = 0
        self.state = SessionState()
        self._capture = FrameCapture()
        self.client = EClient(wrapper)
        self.client.conn = self._capture
        self.client.clientId = client_id
        self.decoder: Decoder | None = None
        self._buf = bytearray()
        self.closed_reason: str | None = None
        self._hook_readiness()

    def _hook_readiness(self) -> None:
        w = self.wrapper
        state = self.state
        next_valid_id, managed, error = w.nextValidId, w.managedAccounts, w.error

        def on_next_valid_id(order_id: int) -> None:
            state.next_valid_id = order_id
            next_valid_id(order_id)

        def on_managed(accounts: str) -> None:
            state.accounts = [a for a in accounts.split(",") if a]
            managed(accounts)

        def on_error(req_id: int, error_time: int, code: int, msg: str, adv: str = "") -> None:
            state.errors.append((req_id, code, msg))
            error(req_id, error_time, code, msg, adv)

        w.nextValidId, w.managedAccounts, w.error = on_next_valid_id, on_managed, on_error

    # -- handshake ------------------------------------------------------------------------------

    def hello(self) -> bytes:
        """The first bytes to send: ``API\\0`` and the version range, as ``EClient.connect``."""
        text = f"v{MIN_CLIENT_VER}..{self.max_version}"
        if self.connect_options:
            text += " " + self.connect_options
        return b"API\0" + comm.make_initial_msg(text)

    @property
    def handshaken(self) -> bool:
        return self.decoder is not None

    @property
    def ready(self) -> bool:
        """Server version, nextValidId and a non-empty managedAccounts have all arrived."""
        s = self.state
        return self.handshaken and s.next_valid_id is not None and bool(s.accounts)

    def take_frames(self) -> list[bytes]:
        """The frames requests made through ``client`` have queued, one per message."""
        frames = self._capture.frames
        out = frames[:]
        frames.clear()
        return out

    def take_output(self) -> bytes:
        """Bytes the session wants written (requests made through ``client``)."""
        frames = self._capture.frames
        out = b"".join(frames)
        frames.clear()
        return out

    # -- bytes in -----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed socket bytes; complete frames are decoded into the wrapper's callbacks."""
        if self.on_receive is not None:
            self.on_receive()
        if self.hot is not None:
            self._receive_hot(data)
            return
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > MAX_MSG_LEN:
                self.closed_reason = (
                    f"the gateway sent a frame of {size} bytes, beyond the 16 MB maximum: "
                    "the stream is corrupt; reconnecting"
                )
                buf.clear()
                return
            if end - pos - 4 < size:
                break
            payload = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            if self.decoder is None:
                self._on_handshake(payload)
                if self.hot is not None:
                    rest = bytes(buf[pos:])
                    buf.clear()
                    if rest:
                        self._receive_hot(rest)
                    return
            else:
                self._dispatch(payload)
        if pos:
            del buf[:pos]

    def _receive_hot(self, data: bytes) -> None:
        hot = self.hot
        assert hot is not None and self.on_rows is not None
        hot.append(data)
        done = _NONE_DONE
        if hot.buffered >= _PICK_BYTES:
            # A big read (a flood, or the backlog after a stall): its order events are picked
            # out by id and dispatched before its market data is decoded at all.
            picked = [f for f in hot.pick(_ORDER_WANTED) if self._order_event(f)]
            if picked:
                done = {f.index for f in picked}
                for f in picked:
                    self._dispatch_id(f.msg_id, f.payload)
        batch = hot.decode()
        while True:
            if batch.fatal:
                self.closed_reason = batch.fatal
                return
            # Order events first (the engine's priorities: a cancel's answer never waits
            # behind the read's market data), then the hot rows in one call (one translate,
            # one ring write, one pump), then the other frames in wire order. Splitting the
            # rows at every cold frame (a tickString rides along with every trade) would pump
            # the engine once per few frames and fall behind a busy feed; market data and
            # order events are independent streams at IB, and each keeps its own order.
            cold: list[ColdFrame] = []
            for f in batch.cold:
                if f.index in done:
                    continue  # dispatched before the decode
                if self._order_event(f):
                    self._dispatch_id(f.msg_id, f.payload)
                else:
                    cold.append(f)
            if len(batch.rows):
                self.on_rows(batch.rows, batch.raw)
            if cold or batch.malformed:
                for part in sorted([*cold, *batch.malformed], key=_frame_index):
                    if isinstance(part, ColdFrame):
                        self._dispatch_id(part.msg_id, part.payload)
                    else:
                        self.malformed += 1
                        log.warning("IB: %s", part.describe())
            if not batch.more:
                return
            done = _NONE_DONE  # positions count from the next batch's first frame
            batch = hot.decode()

    def _order_event(self, frame: ColdFrame) -> bool:
        """Whether ``frame`` belongs to the order stream: an order, execution or commission
        message, or an error about an order (its id at or above ``order_ids_from``; an error
        about market data or the connection keeps its place after the rows it followed)."""
        msg_id = frame.msg_id
        if msg_id in ORDER_STREAM_IDS:
            return True
        if msg_id not in _ERR_IDS or self.order_ids_from is None:
            return False
        try:
            if msg_id > 200:
                err = ErrorMessage()
                err.ParseFromString(frame.payload)
                req_id = err.id
            else:
                fields = frame.payload.split(b"\0", 2)
                old = self.state.server_version < MIN_SERVER_VER_ERROR_TIME  # a version first
                req_id = int(fields[1] if old else fields[0])
        except Exception:  # ibapi will say what is wrong with it, in wire order
            return False
        return req_id >= self.order_ids_from

    def _on_handshake(self, payload: bytes) -> None:
        fields = comm.read_fields(payload)
        if len(fields) != 2:
            return  # ibapi ignores anything before the two-field reply
        version = int(fields[0])
        self.state.server_version = version
        self.state.connection_time = fields[1].decode(errors="replace")
        self.client.serverVersion_ = version
        self.client.connTime = fields[1]
        self.client.setConnState(EClient.CONNECTED)
        self.decoder = Decoder(self.wrapper, version)
        self.client.decoder = self.decoder
        if self.on_rows is not None:
            self.hot = HotDecoder(version)
        self.client.startApi()

    def _dispatch(self, payload: bytes) -> None:
        assert self.decoder is not None
        try:
            if self.state.server_version >= 201:
                msg_id = _LEN.unpack_from(payload)[0]
                body = payload[4:]
            else:
                head, _, body = payload.partition(b"\0")
                msg_id = int(head)
        except (struct.error, ValueError):
            self.malformed += 1
            log.warning("IB: dropped an unreadable frame (%d bytes)", len(payload))
            return
        self._dispatch_id(msg_id, body)

    def _dispatch_id(self, msg_id: int, body: bytes) -> None:
        assert self.decoder is not None
        if self.on_frame is not None and self.on_frame(msg_id, body):
            return
        if msg_id in _ORDER_STATUS_IDS and self._order_status(msg_id, body):
            return
        known = (
            self.decoder.msgId2handleInfoProtoBuf if msg_id > 200 else self.decoder.msgId2handleInfo
        )
        if (msg_id - 200 if msg_id > 200 else msg_id) not in known:
            log.warning("IB: dropped a message with unknown id %d (%d bytes)", msg_id, len(body))
            return
        try:
            if msg_id > 200:
                self.decoder.processProtoBuf(body, msg_id - 200)
            else:
                self.decoder.interpret(comm.read_fields(body), msg_id)
        except Exception as e:  # one bad message must not break the connection
            self.malformed += 1
            log.warning("IB: dropped message id %d that failed to decode: %r", msg_id, e)

    def _order_status(self, msg_id: int, body: bytes) -> bool:
        """orderStatus straight into ``wrapper.orderStatus`` with the arguments ibapi's
        ``Decoder`` would pass (it goes field by field through a logging ``decode``; a cancel's
        answer waits on this). False: anything unusual (an old server version, a missing or
        unset text field, an unreadable value), which ibapi then decodes as before."""
        try:
            parsed = self._parse_order_status(msg_id, body)
            if parsed is None:
                return False
            args, pb = parsed
            if pb is not None:
                self.wrapper.orderStatusProtoBuf(pb)
        except Exception:  # ibapi decodes it (and says what is wrong with it)
            return False
        self.wrapper.orderStatus(*args)
        return True

    def _parse_order_status(self, msg_id: int, body: bytes) -> tuple[tuple, Any] | None:
        """``(orderStatus arguments, the protobuf message or None)``; None: leave it to ibapi
        (raises on an unreadable value)."""
        if msg_id > 200:
            pb = OrderStatusProto()
            pb.ParseFromString(body)
            has = pb.HasField
            args = (
                pb.orderId if has("orderId") else UNSET_INTEGER,
                pb.status if has("status") else "",
                Decimal(pb.filled) if has("filled") else UNSET_DECIMAL,
                Decimal(pb.remaining) if has("remaining") else UNSET_DECIMAL,
                pb.avgFillPrice if has("avgFillPrice") else UNSET_DOUBLE,
                pb.permId if has("permId") else UNSET_LONG,
                pb.parentId if has("parentId") else UNSET_INTEGER,
                pb.lastFillPrice if has("lastFillPrice") else UNSET_DOUBLE,
                pb.clientId if has("clientId") else UNSET_INTEGER,
                pb.whyHeld if has("whyHeld") else "",
                pb.mktCapPrice if has("mktCapPrice") else UNSET_DOUBLE,
            )
            return args, pb
        if self.state.server_version < MIN_SERVER_VER_MARKET_CAP_PRICE:
            return None
        f = body.split(b"\0")
        if len(f) != 12 or f[11] or not all(f[i] for i in _OS_NUMERIC):
            return None
        if f[2] in _UNSET_TEXT or f[3] in _UNSET_TEXT:
            return None
        args = (
            int(f[0]), f[1].decode(errors="backslashreplace"), Decimal(f[2].decode()),
            Decimal(f[3].decode()), float(f[4]), int(f[5]), int(f[6]), float(f[7]),
            int(f[8]), f[9].decode(errors="backslashreplace"), float(f[10]),
        )  # fmt: skip
        return args, None

    def warm_receive(self, order_id: int) -> None:
        """A dry run of an order answer's way in, for the engine's warm-up: an orderStatus for
        ``order_id`` cut and decoded as a socket read would be (on a scratch decoder), judged
        an order event and parsed as ``_order_status`` parses it, but handed to no one: no
        callback, no state. Answers are sparse next to market data (whose reads never take
        this way), and cold, this way took ~80 µs of a cancel's answer under a flood on the VM."""
        if self.hot is None or self.decoder is None:
            return
        scratch = self._warm_decoder
        if scratch is None:  # the session's version is fixed from its handshake on
            scratch = self._warm_decoder = HotDecoder(self.hot.server_version, capacity=4)
        if self._warm_frame[0] != order_id:
            frame = self._order_status_frame(scratch.server_version, order_id)
            self._warm_frame = (order_id, frame)
        scratch.append(self._warm_frame[1])
        for f in scratch.decode().cold:
            if self._order_event(f):
                with contextlib.suppress(Exception):
                    self._parse_order_status(f.msg_id, f.payload)

    @staticmethod
    def _order_status_frame(version: int, order_id: int) -> bytes:
        """orderStatus as the gateway sends it at ``version``: Submitted, nothing filled."""
        if version >= MIN_SERVER_VER_PROTOBUF:
            pb = OrderStatusProto(
                orderId=order_id, status="Submitted", filled="0", remaining="1",
                avgFillPrice=0.0, permId=1, parentId=0, lastFillPrice=0.0, clientId=0,
                whyHeld="", mktCapPrice=0.0,
            )  # fmt: skip
            payload = (IN.ORDER_STATUS + 200).to_bytes(4, "big") + pb.SerializeToString()
        else:
            fields = (IN.ORDER_STATUS, order_id, "Submitted", 0, 1, 0.0, 1, 0, 0.0, 0, "", 0.0)
            payload = b"".join(f"{v}\0".encode() for v in fields)
        return _LEN.pack(len(payload)) + payload


_ORDER_STATUS_IDS = (IN.ORDER_STATUS, IN.ORDER_STATUS + 200)
_OS_NUMERIC = (0, 2, 3, 4, 5, 6, 7, 8, 10)
#: Texts ibapi's ``decode`` turns into ``UNSET_DECIMAL``.
_UNSET_TEXT = frozenset(
    {b"2147483647", b"9223372036854775807", b"1.7976931348623157E308", b"-9223372036854775808"}
)


def _frame_index(frame: ColdFrame | MalformedFrame) -> int:
    return frame.index


class Heartbeat:
    """Notices a gateway that answers nothing while its socket stays open (a hung API).

    Every ``interval_s`` it looks whether anything has been read since its last look: market
    data flowing is answer enough, and then it asks nothing. After a whole interval with
    nothing read it calls ``probe`` (the caller asks the gateway the time; any answer will do);
    when still nothing has been read ``timeout_s`` later it calls ``on_dead`` with the seconds
    since the last look that had seen a read (the silence lasted at least that long). The read
    path only sets ``_Transport.heard``: nothing per message.
    """

    __slots__ = (
        "_handle", "_loop", "_probing", "_proto", "_quiet_since", "interval_s", "on_dead",
        "probe", "timeout_s",
    )  # fmt: skip

    def __init__(
        self,
        proto: _Transport,
        interval_s: float,
        timeout_s: float,
        probe: Callable[[], None],
        on_dead: Callable[[float], None],
    ) -> None:
        self._proto = proto
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.probe = probe
        self.on_dead = on_dead
        self._loop = asyncio.get_running_loop()
        self._quiet_since = self._loop.time()
        self._probing = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval_s, self._look)

    def _look(self) -> None:
        proto = self._proto
        now = self._loop.time()
        if proto.heard:
            proto.heard = False
            self._quiet_since = now
            self._probing = False
            self._handle = self._loop.call_later(self.interval_s, self._look)
        elif not self._probing:
            self._probing = True
            self._handle = self._loop.call_later(self.timeout_s, self._look)
            self.probe()
        else:
            self._handle = None
            self.on_dead(now - self._quiet_since)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Transport(asyncio.Protocol):
    def __init__(self, session: ClientSession, on_lost: Callable[[str], None]) -> None:
        self.session = session
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.changed = asyncio.Event()
        #: The socket's descriptor, for ``write_now``; -1 when the transport has none.
        self.fd = -1
        #: Something was read since the heartbeat last looked (set per read, nothing more).
        self.heard = False
        self.heartbeat: Heartbeat | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            keep_alive(sock)
        # Plain TCP only: under TLS the socket's bytes are the transport's ciphertext.
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self.fd = sock.fileno() if plain else -1
        transport.write(self.session.hello())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.heard = True
        s = self.session
        s.receive(data)
        out = s.take_output()
        if out and self.transport is not None:
            self.transport.write(out)
        if s.closed_reason and self.transport is not None:
            self.transport.close()
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.fd = -1
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        self.changed.set()
        self.on_lost(str(exc) if exc else "closed by the gateway")

    def flush(self) -> None:
        out = self.session.take_output()
        if out and self.transport is not None:
            self.transport.write(out)

    def write_now(self, data: bytes) -> bool:
        """Put ``data`` on the socket now (``sockets.write_through``: an order sent from a
        handler does not wait for the rest of the loop's iteration); False when the socket
        is gone."""
        transport = self.transport
        if transport is None:
            return False
        write_through(transport, self.fd, data)
        return True


@dataclass(slots=True)
class Connection:
    """A ready connection: the session, its transport, and how to close it."""

    session: ClientSession
    protocol: _Transport
    where: str = ""  # host:port, for messages

    @property
    def client(self) -> EClient:
        return self.session.client

    @property
    def connected(self) -> bool:
        return self.protocol.transport is not None

    def flush(self) -> None:
        """Write what requests made through ``client`` have queued."""
        self.protocol.flush()

    def write(self, data: bytes) -> bool:
        """Write frames encoded elsewhere (the order path) at once; False when the socket is
        gone."""
        return self.protocol.write_now(data)

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()

    def start_heartbeat(
        self, interval_s: float, timeout_s: float, probe: Callable[[], None]
    ) -> None:
        """Watch the connection for a hung gateway (``Heartbeat``): ``probe`` asks it for an
        answer after ``interval_s`` with nothing read; none within ``timeout_s`` closes the
        connection, ``session.closed_reason`` saying so (the owner's ``on_lost`` follows)."""
        proto = self.protocol
        if proto.transport is None:
            return
        if proto.heartbeat is not None:
            proto.heartbeat.stop()

        def dead(silent_s: float) -> None:
            transport = proto.transport
            if transport is None:
                return
            self.session.closed_reason = (
                f"IB Gateway at {self.where} answered nothing for {silent_s:.0f} s: the API is "
                "hung; reconnecting"
            )
            # abort, not close: close waits to send what is queued, which a hung peer may
            # never take.
            transport.abort()

        proto.heartbeat = Heartbeat(proto, interval_s, timeout_s, probe, dead)


async def connect(
    host: str,
    port: int,
    client_id: int,
    wrapper: EWrapper,
    *,
    timeout: float = 5.0,
    paper_only: bool = True,
    max_version: int = MAX_CLIENT_VER,
    on_lost: Callable[[str], None] = lambda reason: None,
    on_frame: Callable[[int, bytes], bool] | None = None,
    on_rows: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Connection:
    """Connect and wait until the session is ready; ``IBConnectError`` says what went wrong."""
    loop = asyncio.get_running_loop()
    session = ClientSession(
        wrapper, client_id, max_version=max_version, on_frame=on_frame, on_rows=on_rows
    )
    lost: list[str] = []

    def lost_cb(reason: str) -> None:
        lost.append(reason)
        on_lost(reason)

    where = f"{host}:{port}"
    try:
        proto = await asyncio.wait_for(
            _open(loop, lambda: _Transport(session, lost_cb), host, port), timeout
        )
    except _Unreachable as e:
        if e.refused:
            raise IBConnectError(
                f"connection refused at {where}{e.detail()}: is IB Gateway or TWS running and "
                f"its API enabled on that port? ({PORT_HINT})"
            ) from None
        raise IBConnectError(f"cannot connect to {where}: {e.detail(plain=True)}") from None
    except TimeoutError:
        raise IBConnectError(f"no TCP connection to {where} within {timeout:g} s") from None
    except OSError as e:
        raise IBConnectError(f"cannot connect to {where}: {e.strerror or e}") from None
    deadline = loop.time() + timeout
    while not session.ready:
        if lost:
            proto_error = _in_use(session, client_id)
            if proto_error:
                raise IBConnectError(proto_error)
            stage = "after the API handshake" if session.handshaken else "before the handshake"
            raise IBConnectError(
                f"{where} accepted the connection and closed it {stage}: the gateway's API is "
                "not ready yet (still starting, logging in, or a relay such as socat is up "
                "while the gateway is down); retry later. This is not a client id conflict."
            )
        left = deadline - loop.time()
        if left <= 0:
            proto.transport and proto.transport.close()
            raise IBConnectError(_not_ready(where, session, timeout))
        proto.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.changed.wait(), left)
    conn = Connection(session, proto, where)
    if paper_only:
        live = [a for a in session.state.accounts if not a.startswith("DU")]
        if live:
            conn.close()
            raise IBRefusal(
                f"paper_only is on and {where} manages live account(s) "
                f"{', '.join(map(mask_account, live))}: "
                "refusing to trade. Connect to a paper gateway (accounts DU…) or set "
                "paper_only = false deliberately."
            )
    return conn


class _Unreachable(OSError):
    """No address of the host took the connection; ``errors`` has each one's (address, error)."""

    def __init__(self, errors: list[tuple[str, OSError]]) -> None:
        super().__init__("; ".join(f"{a}: {_reason(e)}" for a, e in errors))
        self.errors = errors

    @property
    def refused(self) -> bool:
        """Some address refused (nothing listens there): the usual case of a gateway that is
        down, whatever the others said (an IPv6 address with no route, say)."""
        return any(isinstance(e, ConnectionRefusedError) for _, e in self.errors)

    def detail(self, plain: bool = False) -> str:
        """Each address and its error; for one refused address, nothing (it says it all)."""
        if not plain and len(self.errors) == 1:
            return ""
        text = ", ".join(f"{a}: {_reason(e)}" for a, e in self.errors)
        return text if plain else f" ({text})"


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


async def _open(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], _Transport], host: str, port: int
) -> _Transport:
    """Connect to each address ``host`` resolves to in turn, as ``create_connection`` does, but
    keep every address's error (asyncio folds differing ones into one "Multiple exceptions"
    OSError, losing that each was a refusal): ``_Unreachable`` when none took it."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[tuple[str, OSError]] = []
    for *_, addr in infos:
        try:
            _, proto = await loop.create_connection(factory, addr[0], addr[1])
        except OSError as e:
            errors.append((str(addr[0]), e))
            continue
        return proto  # type: ignore[return-value]
    if not errors:
        raise OSError(f"{host} resolves to no address")
    raise _Unreachable(errors)


def _in_use(session: ClientSession, client_id: int) -> str:
    for _, code, _ in session.state.errors:
        if code == 326:
            return (
                f"client id {client_id} is already in use at this gateway (IB error 326): "
                "another program or a stale session holds it; pick another client id or wait "
                "for the old session to go"
            )
    return ""


def _not_ready(where: str, session: ClientSession, timeout: float) -> str:
    s = session.state
    if not session.handshaken:
        return f"{where} did not answer the API handshake within {timeout:g} s"
    missing = [n for n, ok in (("nextValidId", s.next_valid_id is not None),
                               ("managedAccounts", bool(s.accounts))) if not ok]  # fmt: skip
    return (
        f"{where} answered the handshake (server version {s.server_version}) but sent no "
        f"{' or '.join(missing)} within {timeout:g} s: the gateway is up but not logged in"
    )


__all__ = [
    "INFO_CODES",
    "ClientSession",
    "Connection",
    "Heartbeat",
    "IBConnectError",
    "IBRefusal",
    "connect",
    "mask_account",
]
