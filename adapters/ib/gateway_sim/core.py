"""The gateway simulator's state machine: clients, requests, orders, accounts and faults.

Sans-I/O. The server owns sockets and time; this module owns everything else:

- ``GatewayCore.open_session(peer)`` gives a ``Session`` per TCP connection. Feed it bytes with
  ``Session.receive``; take what it wants written with ``Session.take_output``; close the socket
  once ``Session.close_reason`` is set and the output is flushed.
- ``GatewayCore.advance(now_ns, budget_ns)`` runs the market, order timers, scripted faults and
  delayed sends up to ``now_ns``; with ``budget_ns`` it stops making market events after that
  long and returns True while more are due, so the server can read requests between slices of
  a flood.
  ``advance`` and ``receive`` are the only entry points that move time.
- ``GatewayCore.hold_market_data(s)`` / ``release_market_data(s)``: write-side flow control. While
  a client does not keep up, its streaming market data is not produced (conflated: depth, quotes
  and bid/ask ticks catch up on release, prints in between are not sent); order, account and
  request answers always are.
- Faults (``GatewayCore.fault``) are what tests and the control interface drive.

It behaves like IB Gateway where clients can see it: the handshake and version negotiation,
``startApi`` then ``managedAccounts``/``nextValidId`` and the farm notices; per-client order ids
(error 103 on reuse, placeOrder on a live id modifies it); openOrder + orderStatus on acceptance;
execDetails (reqId -1), openOrder/orderStatus and commissionAndFeesReport on each fill; orderStatus
Cancelled plus error 202 on cancel; the 50 messages/s pacing (error 100, then a disconnect); the
historical-data pacing (error 162); errors 200, 300, 309, 321, 322, 326, 354, 10167. Where IB's
behaviour is undocumented the choice is written next to the code.

``Order.transmit`` False: the order is kept untransmitted, as TWS keeps it: validated, but no
openOrder, no orderStatus, absent from reqOpenOrders. A later placeOrder of a child of it (or of
a sibling, with ``transmit`` True) transmits the chain: the held parent first, then its held
children in the order they came, then the transmitting order (IB's bracket recipe). Re-sending
a held order's id replaces it (and transmits it if ``transmit`` is now True). Cancelling a held
order discards it and its held children: error 202 "Order Canceled - reason:" saying it was
never transmitted, and nothing else (IB sends no status for an order it never had; it also
follows with 161, which the simulator leaves out). A global cancel discards them too.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.contract import Contract
from ibapi.execution import Execution, ExecutionFilter
from ibapi.order_state import OrderState

from engine.config import ConfigError, build

from . import requests as rq
from .config import FaultConfig, GatewaySimConfig
from .framing import MAGIC, FrameReader, ProtocolViolation, handshake_reply, negotiate, parse_hello
from .market import (
    ASK,
    BID,
    DELETE,
    INSERT,
    UPDATE,
    DepthRow,
    Market,
    Quote,
    Replay,
    SimInstrument,
    Trade,
    default_universe,
    zone,
)
from .matching import BookUpdate, Fill, MatchingEngine, Rejected, SimOrder, StatusChange
from .responses import ResponseEncoder

log = logging.getLogger("tickwire.gateway_sim")

NO_ID = -1
NS = 1_000_000_000

#: Texts of the codes the simulator sends, worded as TWS words them.
ERRORS: dict[int, str] = {
    100: "Max rate of messages per second has been exceeded:max={max} rec={rec} (1)",
    103: "Duplicate order id",
    104: "Can't modify a filled order",
    105: "Order being modified does not match original order",
    162: "Historical Market Data Service error message:{reason}",
    200: "No security definition has been found for the request",
    201: "Order rejected - reason:{reason}",
    202: "Order Canceled - reason:{reason}",
    300: "Can't find EId with tickerId:{req_id}",
    309: "Max number ({max}) of market depth requests has been reached",
    317: "Market depth data has been RESET. Please empty deep book contents before applying "
    "any new entries.",
    320: "Error reading request:{reason}",
    321: "Error validating request:-'bX' : cause - {reason}",
    322: "Error processing request:-'bX' : cause - Duplicate ticker id",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed.",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and TWS has been restored- data lost.",
    1102: "Connectivity between IB and TWS has been restored- data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10147: "OrderId {order_id} that needs to be cancelled is not found.",
    10148: "OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10168: "Requested market data is not subscribed. Delayed market data is not enabled.",
    10197: "No market data during competing live session",
}

#: Live tick types and their delayed counterparts (reqMarketDataType 3/4).
DELAYED_TICK = {0: 69, 1: 66, 2: 67, 3: 70, 4: 68, 5: 71, 6: 72, 7: 73, 8: 74, 9: 75, 14: 76}

#: Generic tick ids the simulator serves, by what they produce.
GENERIC_TICKS = {
    "100",
    "101",
    "104",
    "106",
    "162",
    "165",
    "221",
    "225",
    "233",
    "236",
    "258",
    "293",
    "294",
    "295",
    "318",
    "375",
    "411",
    "456",
    "588",
}

_DONE = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


class Phase:
    """Where a connection is in its life."""

    MAGIC = 0
    HELLO = 1
    START_API = 2
    READY = 3
    CLOSED = 4


@dataclass(slots=True)
class MarketSub:
    """One client subscription to an instrument's stream."""

    session: Session
    req_id: int
    kind: str  # "mkt", "depth", "tbt", "bars"
    instrument: SimInstrument
    delayed: bool = False
    smart: bool = False
    rows: int = 0
    tbt_type: str = ""
    bar_s: int = 0
    bar: Any = None
    #: keepUpToDate bars: whatToShow, formatDate, and when the current bar ends (epoch ns).
    what: str = ""
    format_date: int = 1
    bar_end_ns: int = 0
    #: Market data: the generic tick ids asked for (233 streams RTVolume with every trade).
    generic: tuple[str, ...] = ()
    #: Depth: the levels the client has, ``{side: (ticks, lots)}`` (see ``_sync_depth``).
    levels: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    #: Depth: the client's copy is the market's whole book, kept so by forwarding the market's
    #: own rows; ``levels`` is stale meanwhile (see ``GatewayCore._publish_events``).
    live: bool = False


@dataclass(slots=True)
class Position:
    qty: Decimal = Decimal(0)
    avg_cost: float = 0.0
    realized: float = 0.0


@dataclass(slots=True)
class ExecRecord:
    contract: Contract
    execution: Execution
    report: CommissionAndFeesReport
    time_ns: int


class _AsOf(NamedTuple):
    """An order's status and fill progress as of one matching event.

    The events of one matching call are delivered after the call returned, when the order's
    own fields already hold its final state (a market order that takes three levels is
    Filled before its first execution is reported), so each message renders this instead.
    """

    status: str
    filled: Decimal
    avg_price: float
    last_price: float


@dataclass(order=True, slots=True)
class _Timer:
    due_ns: int
    seq: int
    fn: Callable[[], None] = field(compare=False)


class Session:
    """One client connection: handshake, pacing, request dispatch, its subscriptions."""

    def __init__(self, core: GatewayCore, conn_id: int, peer: str) -> None:
        self.core = core
        self.conn_id = conn_id
        self.peer = peer
        self.phase = Phase.MAGIC
        self.version = 0
        self.options = ""
        self.client_id: int | None = None
        self.encoder: ResponseEncoder | None = None
        self.close_reason: str | None = None
        self._magic = bytearray()
        self._reader = FrameReader()
        #: Bytes that arrived while the gateway was hung (``hang``), read when it comes back.
        self._stalled = bytearray()
        self._out = bytearray()
        #: Under a server (``core.input_pending`` set): the market data published (steps,
        #: depth diffs, book changes an order caused), in order, written after ``_out``, so an
        #: answer to a request (a cancel) goes ahead of market data not yet written. The two
        #: are independent streams at IB too; each keeps its own order.
        self._md_out = bytearray()
        self._delayed: deque[tuple[int, bytes]] = deque()
        self.market_data_type = 1
        self.subs: dict[int, MarketSub] = {}
        self.depth_count = 0
        self.account_updates: str | None = None
        self.account_summaries: dict[int, tuple[str, str]] = {}
        self.account_multi: dict[int, str] = {}
        self.positions_sub = False
        self._second = -1
        self._count = 0
        self._violations = 0
        self._paced: deque[rq.Request] = deque()
        #: The last cancelOrder frame this client sent, re-run dry by ``GatewayCore.warm_answers``.
        self.last_cancel: bytes = b""
        #: The client is not reading fast enough (the server's send buffers are full): its
        #: streaming market data is held back, and caught up when it drains (``release``).
        self.backpressured = False
        #: Market-data messages not sent while backpressured (conflated away).
        self.held_back = 0

    # -- bytes in ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed bytes from the socket; replies accumulate in the output buffer."""
        if self.phase == Phase.CLOSED:
            return
        core = self.core
        if core.now_ns < core.hung_until_ns:
            self._stalled += data  # a hung gateway reads nothing; the kernel keeps it
            core.stalled.add(self)
            return
        if self._stalled:
            data = bytes(self._stalled) + data
            self._stalled.clear()
        try:
            if self.phase == Phase.MAGIC:
                self._magic += data
                if len(self._magic) < len(MAGIC):
                    return
                if bytes(self._magic[:4]) != MAGIC:
                    raise ProtocolViolation("not a TWS API client (no 'API\\0' prefix)")
                data = bytes(self._magic[4:])
                self.phase = Phase.HELLO
            for payload in self._reader.feed(data):
                if self.phase == Phase.CLOSED:
                    return
                self._on_frame(payload)
        except ProtocolViolation as e:
            self.close(str(e))

    def _on_frame(self, payload: bytes) -> None:
        core = self.core
        if self.phase == Phase.HELLO:
            hello = parse_hello(payload)
            gw = core.config.gateway
            self.version = negotiate(hello, gw.min_server_version, gw.max_server_version)
            self.options = hello.options
            self.encoder = ResponseEncoder(self.version, gw.protobuf)
            self._write(handshake_reply(self.version, core.connection_time()))
            self.phase = Phase.START_API
            core.log_event(
                self,
                f"handshake v{hello.min_version}..{hello.max_version} "
                f"-> v{self.version} {hello.options}".rstrip(),
            )
            return
        try:
            req = rq.parse_request(self.version, payload)
        except rq.MalformedRequest as e:
            core.log_event(self, f"malformed message {e}")
            self.error(NO_ID, 320, reason=e.reason)
            return
        if self.phase == Phase.START_API:
            if isinstance(req, rq.StartApi):
                core.start_api(self, req)
            else:
                core.log_event(self, f"{type(req).__name__} before startApi ignored")
            return
        if type(req) is rq.CancelOrder:
            self.last_cancel = payload
        if self._over_pace():
            if "+PACEAPI" in self.options:
                self._paced.append(req)
                return
            return
        core.handle(self, req)

    def _over_pace(self) -> bool:
        pacing = self.core.config.pacing
        if not pacing.enabled:
            return False
        second = self.core.now_ns // NS
        if second != self._second:
            if self._second >= 0 and self._count <= pacing.max_messages_per_second:
                self._violations = 0
            self._second = second
            self._count = 0
        self._count += 1
        limit = pacing.max_messages_per_second
        if self._count <= limit:
            return False
        if "+PACEAPI" in self.options:
            return True
        if self._count == limit + 1:
            self._violations += 1
            self.error(NO_ID, 100, max=limit, rec=self._count)
            if pacing.disconnect_after_s and self._violations >= pacing.disconnect_after_s:
                self.close(f"pacing: over {limit} messages/s for {self._violations} seconds")
        return True

    def drain_paced(self) -> None:
        """Run requests held back by ``+PACEAPI`` pacing, at most the limit per second."""
        while self._paced and not self._over_pace():
            self.core.handle(self, self._paced.popleft())

    # -- bytes out --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        latency = self.core.latency_ns
        if latency or self._delayed:
            self._delayed.append((self.core.now_ns + latency, data))
        elif self.core.streaming:
            self._md_out += data
        else:
            self._out += data
        self.core.dirty.add(self)

    def send(self, data: bytes) -> None:
        """Queue an encoded message (no-op once closed)."""
        if self.phase != Phase.CLOSED:
            self._write(data)

    def release_delayed(self, now_ns: int) -> None:
        """Move messages whose added latency has passed into the output buffer."""
        d = self._delayed
        while d and d[0][0] <= now_ns:
            self._out += d.popleft()[1]
            self.core.dirty.add(self)

    def take_output(self) -> bytes:
        """Bytes to write to the socket now: answers first, then streamed market data."""
        out = bytes(self._out)
        self._out.clear()
        if self._md_out:
            out += self._md_out
            self._md_out.clear()
        return out

    def take_answers(self) -> bytes:
        """Only what is not streamed market data (see ``_md_out``), to write ahead of it."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def error(self, req_id: int, code: int, text: str | None = None, /, **fmt: Any) -> None:
        """Send error ``code`` with TWS's wording (formatted with ``fmt``) or ``text``.

        Positional-only, so a wording's own ``{req_id}`` can be a keyword (error 300).
        """
        assert self.encoder is not None
        message = text if text is not None else ERRORS[code].format(**fmt)
        self.send(self.encoder.error(req_id, code, message, self.core.now_ns // 1_000_000))

    def close(self, reason: str) -> None:
        """Stop reading; the server closes the socket once the output is flushed."""
        if self.close_reason is None:
            self.close_reason = reason
            self.core.log_event(self, f"closing: {reason}")
        self.core.dirty.add(self)


class GatewayCore:
    """Everything a gateway shares between its clients."""

    def __init__(
        self,
        config: GatewaySimConfig | None = None,
        clock: Callable[[], int] = time.time_ns,
        market: Market | None = None,
    ) -> None:
        self.config = cfg = config or GatewaySimConfig()
        self.clock = clock
        self.now_ns = clock()
        self.started_ns = self.now_ns
        today = datetime.fromtimestamp(self.now_ns / NS, UTC).date()
        self.instruments = list(cfg.instruments) or default_universe(today)
        rate = cfg.market.events_per_second
        step_ns = int(NS / rate) if rate > 0 else NS
        self.market = market or Market(self.instruments, seed=cfg.gateway.seed, step_ns=step_ns)
        self.replayed: set[int] = set()
        if cfg.market.replay:
            try:
                replays = Replay.load(cfg.market.replay, loop=True)
            except (OSError, ValueError) as e:
                raise ConfigError(cfg.source, "market.replay", f"cannot replay: {e}") from None
            for con, replay in replays.items():
                self.market.attach_replay(con, replay)
                self.replayed.add(con)
        self.matching = MatchingEngine(
            self.market,
            algo_horizon_ns=int(cfg.orders.algo_horizon_s * NS),
            time_zone=cfg.gateway.time_zone,
        )
        self.rng = random.Random(cfg.gateway.seed)
        self.sessions: dict[int, Session] = {}
        self.clients: dict[int, Session] = {}
        self.dirty: set[Session] = set()
        self._conn_ids = itertools.count(1)
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self.next_order_id = cfg.gateway.next_order_id
        self._perm_ids = itertools.count(self.rng.randrange(1_000_000_000, 1_500_000_000))
        self.orders: dict[tuple[int, int], SimOrder] = {}
        self._as_of: dict[SimOrder, _AsOf] = {}
        self.used_ids: set[tuple[int, int]] = set()
        #: Every new order as received: (client id, order id, orderRef), modifies not included.
        self.received: list[tuple[int, int, str]] = []
        # Placed with transmit=False and not yet transmitted, by (client id, order id).
        self.untransmitted: dict[tuple[int, int], SimOrder] = {}
        self.completed: deque[SimOrder] = deque(maxlen=10_000)
        self.executions: list[ExecRecord] = []
        self.positions: dict[tuple[str, int], Position] = {}
        self.cash: dict[str, float] = {a: cfg.account.cash for a in cfg.gateway.accounts}
        self.subs_by_con: dict[int, list[MarketSub]] = {}
        #: Sessions whose market data is held back (``hold_market_data``).
        self.held: set[Session] = set()
        self._freeze_due = False  # a held client may have live depth streams (_freeze_depth)
        self._step_credit: dict[int, float] = {}
        #: Market events made, and dropped because the loop fell too far behind the rate.
        self.steps_taken = 0
        self.steps_dropped = 0
        self._last_step_ns = self.now_ns
        self._hist_requests: deque[tuple[int, tuple[Any, ...]]] = deque()
        # faults
        self.latency_ns = 0
        self.reject_next = 0
        self.link_down = False
        self.farm_down = False
        self.hmds_down = False  # keepUpToDate bars paused (``farm_blip`` of ``ushmds``)
        self.stopped_data: set[int] = set()
        #: Instruments whose data a competing live session holds (10197 to every request).
        self.competing: set[int] = set()
        #: Requests left unanswered (``ignore_requests``): how many more, by type name.
        self.ignoring: dict[str, int] = {}
        self.down_until_ns = 0
        #: Until then the gateway is hung (``hang``): sockets open, nothing read or written,
        #: the market and timers stand still.
        self.hung_until_ns = 0
        self.stalled: set[Session] = set()  # sessions with input waiting for the hang's end
        #: Set by the server: write a session's pending output now (an order answer goes to
        #: the socket before the rest of its handling is encoded).
        self.urgent: Callable[[Session], None] | None = None
        #: Set by the server: whether a client has sent something not yet read; a market slice
        #: ends early when it has, so a request (a cancel) waits for one instrument's turn,
        #: not for the whole slice.
        self.input_pending: Callable[[], bool] | None = None
        #: True while market data is being published under a server (see ``Session._md_out``).
        self.streaming = False
        self.refuse_mode = "refuse"
        for fault in cfg.faults:
            self._schedule(self.started_ns + int(fault.at_s * NS), self._fault_runner(fault))

    # -- time ---------------------------------------------------------------------------------

    def connection_time(self) -> str:
        stamp = datetime.fromtimestamp(self.now_ns / NS, UTC).strftime("%Y%m%d %H:%M:%S")
        return f"{stamp} {self.config.gateway.time_zone}"

    def _schedule(self, due_ns: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, _Timer(due_ns, next(self._timer_seq), fn))

    def advance(self, now_ns: int | None = None, budget_ns: int | None = None) -> bool:
        """Run the market, timers and delayed sends up to ``now_ns`` (default: the clock).

        With ``budget_ns`` the market stops making events once that much of the clock has
        passed in this call (the instruments take turns, a few events each); the rest stay
        due. Returns True while market events are still due, so a caller can write what this
        slice produced and read requests before the next one (a gateway streaming a flood
        still answers a cancel promptly).
        """
        now = self.clock() if now_ns is None else now_ns
        self.now_ns = max(self.now_ns, now)
        if self.now_ns < self.hung_until_ns:
            return False
        if self.stalled:  # back from a hang: read what arrived meanwhile
            for s in list(self.stalled):
                s.receive(b"")
            self.stalled.clear()
        if self._freeze_due:
            self._freeze_depth()
        timers = self._timers
        while timers and timers[0].due_ns <= self.now_ns:
            heapq.heappop(timers).fn()
        more = self._run_market(budget_ns)
        self._deliver(self.matching.on_time(self.now_ns))
        for s in list(self.sessions.values()):
            if s._paced:
                s.drain_paced()
            if s._delayed:
                s.release_delayed(self.now_ns)
        return more

    @property
    def accepting(self) -> bool:
        """False while a simulated restart keeps the gateway down."""
        return self.now_ns >= self.down_until_ns

    # -- sessions -----------------------------------------------------------------------------

    def open_session(self, peer: str) -> Session:
        s = Session(self, next(self._conn_ids), peer)
        self.sessions[s.conn_id] = s
        self.log_event(s, "connected")
        return s

    def connection_lost(self, s: Session) -> None:
        """The socket is gone: forget the session (its orders stay, as at IB)."""
        s.phase = Phase.CLOSED
        self.sessions.pop(s.conn_id, None)
        self.held.discard(s)
        self.stalled.discard(s)
        if s.client_id is not None and self.clients.get(s.client_id) is s:
            del self.clients[s.client_id]
        for sub in list(s.subs.values()):
            self._unsubscribe(sub)
        self.dirty.discard(s)
        self.log_event(s, f"disconnected ({s.close_reason or 'by client'})")

    def log_event(self, s: Session | None, text: str) -> None:
        who = f"conn {s.conn_id} {s.peer}" if s else "gateway"
        if s is not None and s.client_id is not None:
            who += f" client {s.client_id}"
        line = f"{who}: {text}"
        log.info(line)

    def start_api(self, s: Session, req: rq.StartApi) -> None:
        if req.client_id in self.clients:
            s.error(NO_ID, 326)
            s.close(f"client id {req.client_id} already in use")
            return
        if len(self.clients) >= self.config.gateway.max_clients:
            s.close(f"the gateway already has {len(self.clients)} API clients (maximum)")
            return
        s.client_id = req.client_id
        self.clients[req.client_id] = s
        s.phase = Phase.READY
        assert s.encoder is not None
        s.send(s.encoder.managed_accounts(self.config.gateway.accounts))
        s.send(s.encoder.next_valid_id(self.next_order_id))
        if self.link_down:
            s.error(NO_ID, 1100)
        else:
            s.error(NO_ID, 2103 if self.farm_down else 2104)
            s.error(NO_ID, 2106)
            s.error(NO_ID, 2158)
        self.log_event(s, f"startApi client id {req.client_id}")

    # -- request dispatch -------------------------------------------------------------------

    def handle(self, s: Session, req: rq.Request) -> None:
        if self.ignoring and self._ignored(s, req):
            return
        handler = self._handlers.get(type(req))
        if handler is None:
            assert isinstance(req, rq.Unsupported)
            self.log_event(s, f"unsupported message id {req.msg_id}")
            s.error(NO_ID, 321, reason=f"Unsupported message id {req.msg_id}")
            return
        handler(self, s, req)

    def _current_time(self, s: Session, req: rq.ReqCurrentTime) -> None:
        s.send(s.encoder.current_time(self.now_ns // NS))

    def _current_time_millis(self, s: Session, req: rq.ReqCurrentTimeMillis) -> None:
        s.send(s.encoder.current_time_millis(self.now_ns // 1_000_000))

    def _req_ids(self, s: Session, req: rq.ReqIds) -> None:
        s.send(s.encoder.next_valid_id(self.next_order_id))

    def _market_rule(self, s: Session, req: rq.ReqMarketRule) -> None:
        """The price bands of a rule id some instrument's ``marketRuleIds`` names (an unknown
        id gets no answer)."""
        rule = self.market.market_rule(req.market_rule_id)
        if rule is not None:
            s.send(s.encoder.market_rule(req.market_rule_id, rule))

    def _managed_accts(self, s: Session, req: rq.ReqManagedAccts) -> None:
        s.send(s.encoder.managed_accounts(self.config.gateway.accounts))

    def _resolve_one(self, s: Session, req_id: int, contract: Contract) -> SimInstrument | None:
        found = self.market.resolve(contract)
        if len(found) == 1:
            return found[0]
        if not found:
            s.error(req_id, 200)
        else:
            s.error(
                req_id,
                200,
                f"The contract description specified for {contract.symbol} is ambiguous.",
            )
        return None

    def _contract_details(self, s: Session, req: rq.ReqContractDetails) -> None:
        if (req.contract.secType or "").upper() == "CONTFUT":
            self._continuous_details(s, req)
            return
        found = self.market.resolve(req.contract)
        if not found:
            s.error(req.req_id, 200)  # no contractDataEnd follows, as at IB
            return
        for inst in found:
            s.send(s.encoder.contract_data(req.req_id, inst.details(self.now_ns)))
        s.send(s.encoder.contract_data_end(req.req_id))

    def _continuous_details(self, s: Session, req: rq.ReqContractDetails) -> None:
        """IB's continuous future: the front month's details (its conId) with secType CONTFUT.
        It is for market data only: an order for it matches no contract (FUT) here."""
        as_future = copy.copy(req.contract)
        as_future.secType = "FUT"
        as_future.lastTradeDateOrContractMonth = as_future.lastTradeDate = ""
        found = self.market.resolve(as_future)
        if not found:
            s.error(req.req_id, 200)
            return
        details = min(found, key=lambda i: i.last_trade_date).details(self.now_ns)
        details.contract.secType = "CONTFUT"
        s.send(s.encoder.contract_data(req.req_id, details))
        s.send(s.encoder.contract_data_end(req.req_id))

    # -- market data ----------------------------------------------------------------------

    def _check_new_ticker(self, s: Session, req_id: int) -> bool:
        if req_id in s.subs:
            s.error(req_id, 322)
            return False
        return True

    def _mkt_data(self, s: Session, req: rq.ReqMktData) -> None:
        if not self._check_new_ticker(s, req.req_id):
            return
        inst = self._resolve_one(s, req.req_id, req.contract)
        if inst is None or self._competing(s, req.req_id, inst):
            return
        generic = [g.strip() for g in req.generic_tick_list.split(",") if g.strip()]
        bad = [g for g in generic if g not in GENERIC_TICKS]
        if bad:
            legal = ",".join(sorted(GENERIC_TICKS, key=int))
            s.error(
                req.req_id,
                321,
                reason=f"Incorrect generic tick list of {','.join(bad)}. "
                f"Legal ones for ({inst.sec_type}) are: {legal}",
            )
            return
        enc = s.encoder
        delayed = inst.symbol in self.config.market.delayed_only
        if delayed and s.market_data_type in (1, 2):
            s.error(req.req_id, 354)
            return
        if delayed and not self.config.market.delayed_enabled:
            s.error(req.req_id, 10168)
            return
        s.send(enc.tick_req_params(req.req_id, inst.min_tick, "9c0001", 3))
        if delayed:
            s.error(req.req_id, 10167)
            s.send(enc.market_data_type(req.req_id, 3 if s.market_data_type == 3 else 4))
        elif s.market_data_type != 1:
            s.send(enc.market_data_type(req.req_id, 1))
        sub = MarketSub(s, req.req_id, "mkt", inst, delayed=delayed, generic=tuple(generic))
        if not (self.farm_down or inst.con_id in self.stopped_data):
            # Data that has stopped sends nothing to a new request either; the quote follows
            # when it resumes (``_fault_resume_market_data``).
            self._send_l1_snapshot(sub, generic)
        if req.snapshot or req.regulatory_snapshot:
            s.send(enc.tick_snapshot_end(req.req_id))
            return
        self._subscribe(sub)

    def _send_l1_snapshot(self, sub: MarketSub, generic: list[str]) -> None:
        book = self.market.book(sub.instrument.con_id)
        send, enc, rid = sub.session.send, sub.session.encoder, sub.req_id
        tick = DELAYED_TICK.get if sub.delayed else (lambda t: t)
        send(enc.tick_price(rid, tick(1), book.bid, book.bid_size, 1))
        send(enc.tick_price(rid, tick(2), book.ask, book.ask_size, 1))
        if book.last_size:
            send(enc.tick_price(rid, tick(4), book.last, book.last_size, 0))
        send(enc.tick_size(rid, tick(8), book.volume))
        send(enc.tick_price(rid, tick(6), book.high, 0, 0))
        send(enc.tick_price(rid, tick(7), book.low, 0, 0))
        send(enc.tick_price(rid, tick(9), book.close, 0, 0))
        send(enc.tick_price(rid, tick(14), book.open, 0, 0))
        send(enc.tick_string(rid, 88 if sub.delayed else 45, str(self.now_ns // NS)))
        for g in generic:
            if g == "233":
                send(enc.tick_string(rid, 48, self._rt_volume(book)))
            elif g == "236":
                send(enc.tick_generic(rid, 46, 3.0))
            elif g == "221":
                send(enc.tick_price(rid, 37, (book.bid + book.ask) / 2, 0, 0))
            elif g == "293":
                send(enc.tick_generic(rid, 54, float(book.trades)))
            elif g == "104":
                send(enc.tick_generic(rid, 23, sub.instrument.volatility * 100))
            elif g == "106":
                send(enc.tick_generic(rid, 24, sub.instrument.volatility * 100))

    def _rt_volume(self, book: Any, trade: Trade | None = None) -> str:
        """RTVolume (tick 48): ``price;size;ms;total volume;vwap;single trade`` of ``trade``
        (default: the last print)."""
        price, size = (book.last, book.last_size) if trade is None else trade
        return f"{price};{size};{self.now_ns // 1_000_000};{book.volume};{book.vwap};false"

    def _cancel_mkt_data(self, s: Session, req: rq.CancelMktData) -> None:
        self._cancel_sub(s, req.req_id, "mkt")

    def _cancel_sub(self, s: Session, req_id: int, kind: str) -> None:
        sub = s.subs.get(req_id)
        if sub is None or sub.kind != kind:
            if kind == "mkt":
                s.error(req_id, 300, req_id=req_id)
            return
        self._unsubscribe(sub)

    def _market_data_type(self, s: Session, req: rq.ReqMarketDataType) -> None:
        if req.market_data_type not in (1, 2, 3, 4):
            s.error(NO_ID, 321, reason=f"Invalid market data type {req.market_data_type}")
            return
        s.market_data_type = req.market_data_type
        for sub in s.subs.values():
            if sub.kind == "mkt" and not sub.delayed:
                s.send(s.encoder.market_data_type(sub.req_id, 1))

    def _mkt_depth(self, s: Session, req: rq.ReqMktDepth) -> None:
        if not self._check_new_ticker(s, req.req_id):
            return
        limit = self.config.market.max_depth_subscriptions
        if s.depth_count >= limit:
            s.error(req.req_id, 309, max=limit)
            return
        inst = self._resolve_one(s, req.req_id, req.contract)
        if inst is None or self._competing(s, req.req_id, inst):
            return
        rows = max(1, min(req.num_rows, inst.depth_levels))
        smart = req.is_smart_depth
        sub = MarketSub(s, req.req_id, "depth", inst, smart=smart, rows=rows)
        sub.levels = {BID: ([], []), ASK: ([], [])}
        s.depth_count += 1
        self._sync_depth(sub)  # the whole visible book as inserts, bids first
        self._subscribe(sub)

    def _sync_depth(self, sub: MarketSub) -> None:
        if self.input_pending is None or self.streaming:
            self._sync_depth_rows(sub)
            return
        self.streaming = True  # rows are positions: they keep their order with the stream's
        try:
            self._sync_depth_rows(sub)
        finally:
            self.streaming = False

    def _sync_depth_rows(self, sub: MarketSub) -> None:
        """Send the rows that turn the client's copy of the book into the top ``sub.rows``.

        The market's rows are positions in its whole book, so forwarding them to a client that
        asked for fewer rows breaks its copy: when a level above its last row goes, the level
        that slides into view is never inserted, and an insert pushes its last row out without
        a delete. Diffing what the client has against the book instead keeps its copy exact;
        it also catches a client up after a pause in the data (farm blip, stopped data). Both
        sides' deletes come first, so no prefix of the rows leaves the client's book crossed.
        """
        if sub.live:  # the client has every row the market published: nothing to diff
            return
        st = self.market.state(sub.instrument.con_id)
        n, have = sub.rows, sub.levels
        g, send = st.grid, self._send_depth
        changed: list[tuple[int, list[int], list[int]]] = []
        for side, px, sz in (
            (BID, st.bid_px[:n], st.bid_sz[:n]),
            (ASK, st.ask_px[:n], st.ask_sz[:n]),
        ):
            old_px, old_sz = have[side]
            if old_px != px:
                changed.append((side, px, sz))
            elif old_sz != sz:  # the same levels: only sizes changed (the usual step)
                for pos, q in enumerate(sz):
                    if q != old_sz[pos]:
                        send(sub, DepthRow(side, pos, UPDATE, g.price(px[pos]), g.size(q)))
                have[side] = (px, sz)
        for side, px, _ in changed:
            old_px, old_sz = have[side]
            wanted = set(px)
            kept_px: list[int] = []
            kept_sz: list[int] = []
            for p, q in zip(old_px, old_sz, strict=True):
                if p in wanted:
                    kept_px.append(p)
                    kept_sz.append(q)
                else:
                    send(sub, DepthRow(side, len(kept_px), DELETE, g.price(p), Decimal(0)))
            have[side] = (kept_px, kept_sz)
        for side, px, sz in changed:
            kept_px, kept_sz = have[side]
            k = 0
            for pos, p in enumerate(px):
                if k < len(kept_px) and kept_px[k] == p:
                    if kept_sz[k] != sz[pos]:
                        send(sub, DepthRow(side, pos, UPDATE, g.price(p), g.size(sz[pos])))
                    k += 1
                else:
                    send(sub, DepthRow(side, pos, INSERT, g.price(p), g.size(sz[pos])))
            have[side] = (px, sz)

    def _send_depth(self, sub: MarketSub, row: DepthRow) -> None:
        enc = sub.session.encoder
        if sub.smart or sub.instrument.sec_type == "STK":
            mm = sub.instrument.exchange if not sub.smart else _MAKERS[row.position % 4]
            sub.session.send(
                enc.update_mkt_depth_l2(
                    sub.req_id,
                    row.position,
                    mm,
                    row.operation,
                    row.side,
                    row.price,
                    row.size,
                    sub.smart,
                )
            )
        else:
            sub.session.send(
                enc.update_mkt_depth(
                    sub.req_id, row.position, row.operation, row.side, row.price, row.size
                )
            )

    def _cancel_mkt_depth(self, s: Session, req: rq.CancelMktDepth) -> None:
        self._cancel_sub(s, req.req_id, "depth")

    def _tick_by_tick(self, s: Session, req: rq.ReqTickByTickData) -> None:
        if not self._check_new_ticker(s, req.req_id):
            return
        if req.tick_type not in ("Last", "AllLast", "BidAsk", "MidPoint"):
            s.error(req.req_id, 321, reason=f"Invalid tick-by-tick type {req.tick_type!r}")
            return
        inst = self._resolve_one(s, req.req_id, req.contract)
        if inst is None or self._competing(s, req.req_id, inst):
            return
        sub = MarketSub(s, req.req_id, "tbt", inst, tbt_type=req.tick_type)
        book = self.market.book(inst.con_id)
        if req.tick_type in ("BidAsk", "MidPoint"):
            self._send_tbt_quote(sub, Quote(book.bid, book.bid_size, book.ask, book.ask_size))
        self._subscribe(sub)

    def _send_tbt_quote(self, sub: MarketSub, q: Quote) -> None:
        enc, t = sub.session.encoder, self.now_ns // NS
        if sub.tbt_type == "BidAsk":
            sub.session.send(
                enc.tick_by_tick_bid_ask(sub.req_id, t, q.bid, q.ask, q.bid_size, q.ask_size, 0)
            )
        elif sub.tbt_type == "MidPoint":
            sub.session.send(enc.tick_by_tick_mid_point(sub.req_id, t, (q.bid + q.ask) / 2))

    def _cancel_tick_by_tick(self, s: Session, req: rq.CancelTickByTickData) -> None:
        self._cancel_sub(s, req.req_id, "tbt")

    def _historical(self, s: Session, req: rq.ReqHistoricalData) -> None:
        inst = self._resolve_one(s, req.req_id, req.contract)
        if inst is None:
            return
        problem = self._historical_pacing(req, inst)
        if problem:
            s.error(req.req_id, 162, reason=problem)
            return
        try:
            duration_s = _duration_seconds(req.duration)
            bar_s = _bar_seconds(req.bar_size)
        except ValueError as e:
            s.error(req.req_id, 321, reason=str(e))
            return
        end_ns = self.now_ns if not req.end_date_time else _parse_ib_time(req.end_date_time)
        bars = self.market.bars(
            inst.con_id, end_ns, duration_s, bar_s, req.what_to_show, req.format_date
        )
        if not bars:
            s.error(req.req_id, 162, reason="HMDS query returned no data")
            return
        fmt = req.format_date
        start = _format_ib_time(end_ns - duration_s * NS, fmt)
        end = _format_ib_time(end_ns, fmt)
        s.send(s.encoder.historical_data(req.req_id, bars, start, end))
        if req.keep_up_to_date:
            sub = MarketSub(s, req.req_id, "bars", inst, bar_s=bar_s, bar=bars[-1])
            sub.what, sub.format_date = req.what_to_show.upper(), fmt
            sub.bar_end_ns = _bar_end_ns(inst, end_ns, bar_s)
            self._subscribe(sub)

    def _historical_pacing(self, req: rq.ReqHistoricalData, inst: SimInstrument) -> str:
        now = self.now_ns
        window = self._hist_requests
        while window and window[0][0] < now - 600 * NS:
            window.popleft()
        key = (
            inst.con_id,
            req.end_date_time,
            req.duration,
            req.bar_size,
            req.what_to_show,
            req.use_rth,
        )
        if any(k == key and t > now - 15 * NS for t, k in window):
            return "Historical data request pacing violation (identical request within 15 s)"
        same = sum(
            1
            for t, k in window
            if k[0] == inst.con_id and k[4] == req.what_to_show and t > now - 2 * NS
        )
        if same >= 5:
            return "Historical data request pacing violation (6 requests for one contract in 2 s)"
        weight = 2 if req.what_to_show == "BID_ASK" else 1
        # IB counts requests per 10 minutes for bars of 30 s or less only (its "pacing
        # violations for small bars"; lifted for 1 min and more).
        small = _small_bars(req.bar_size)
        if small:
            used = sum(1 for _, k in window if _small_bars(k[3]))
            if used + weight > self.config.pacing.historical_per_10min:
                return "Historical data request pacing violation (too many requests in 10 minutes)"
        for _ in range(weight):
            window.append((now, key))
        return ""

    def _cancel_historical(self, s: Session, req: rq.CancelHistoricalData) -> None:
        self._cancel_sub(s, req.req_id, "bars")

    def _subscribe(self, sub: MarketSub) -> None:
        sub.session.subs[sub.req_id] = sub
        self.subs_by_con.setdefault(sub.instrument.con_id, []).append(sub)

    def _unsubscribe(self, sub: MarketSub) -> None:
        sub.session.subs.pop(sub.req_id, None)
        if sub.kind == "depth":
            sub.session.depth_count -= 1
        subs = self.subs_by_con.get(sub.instrument.con_id)
        if subs and sub in subs:
            subs.remove(sub)

    def _run_market(self, budget_ns: int | None = None) -> bool:
        """Advance the market by the events due since the last call (for at most ``budget_ns``
        of the clock); True while events are still due.

        Only instruments someone watches or has orders on move (the rest would cost time and
        change nothing anyone sees); a replayed instrument applies every record due by now.
        Each instrument accrues ``events_per_second`` of credit and the instruments take turns,
        ``_TURN`` events each, so a budget cut is fair. A backlog beyond ``_MAX_BACKLOG_STEPS``
        is dropped (counted in ``steps_dropped``): the rate is a ceiling, not a debt, and a
        loop that fell behind must not freeze to catch up.
        """
        now = self.now_ns
        elapsed = max((now - self._last_step_ns) / NS, 0.0)
        self._last_step_ns = now
        if self.link_down:
            return False
        active = {con for con, subs in self.subs_by_con.items() if subs}
        active.update(sim.instrument.con_id for sim in self.orders.values())
        rate = self.config.market.events_per_second
        credit = self._step_credit
        market = self.market
        due: dict[int, int] = {}
        for con in active:
            if con in self.replayed:
                if elapsed:
                    self._publish(con, market.step(con, now))
                    self._deliver(self.matching.on_market(con, now))
                continue
            c = credit.get(con, 0.0) + elapsed * rate
            if c > _MAX_BACKLOG_STEPS:
                self.steps_dropped += int(c - _MAX_BACKLOG_STEPS)
                c = float(_MAX_BACKLOG_STEPS)
            if c >= 1.0:
                due[con] = int(c)
            credit[con] = c - int(c)
        start = self.clock() if budget_ns is not None else 0
        pending = self.input_pending if budget_ns is not None else None
        step, publish = market.step, self._publish_events
        # streamed market data goes to ``_md_out`` (see ``_publish``); order answers do not
        stream = self.input_pending is not None and not self.streaming
        while due:
            for con, n in list(due.items()):
                k = min(n, _TURN)
                if stream:
                    self.streaming = True
                try:
                    for _ in range(k):
                        publish(con, step(con))
                finally:
                    if stream:
                        self.streaming = False
                self._deliver(self.matching.on_market(con, now))
                self.steps_taken += k
                if n > k:
                    due[con] = n - k
                else:
                    del due[con]
                if due and pending is not None and pending():
                    break
            if (
                due
                and budget_ns is not None
                and (self.clock() - start >= budget_ns or (pending is not None and pending()))
            ):
                for con, n in due.items():
                    credit[con] += n
                return True
        return False

    def _publish(self, con_id: int, events: Sequence[Any]) -> None:
        if self.input_pending is None or self.streaming:
            self._publish_events(con_id, events)
            return
        self.streaming = True  # all market data in order in ``_md_out`` (see there)
        try:
            self._publish_events(con_id, events)
        finally:
            self.streaming = False

    def _publish_events(self, con_id: int, events: Sequence[Any]) -> None:
        """Send one batch of ``con_id``'s market events to its subscribers.

        Depth rows: a *live* subscription (its client's copy is the whole book, in sync) gets
        the market's own rows, which keep that copy exact; any other has its copy diffed
        against the book (``_sync_depth_rows``), and goes live when it sees every row. A live
        stream keeps getting rows while it is held back, the farm is down or its data stopped,
        until ``_freeze_depth`` records what its client has: only then is that known exactly.
        """
        subs = self.subs_by_con.get(con_id)
        if not subs:
            return
        if self.farm_down or con_id in self.stopped_data:
            subs = [sub for sub in subs if sub.live]
            if not subs:
                return
        elif self.held:
            subs = [sub for sub in subs if sub.live or not self._holds(sub)]
            if not subs:
                return
        if self.hmds_down:
            subs = [sub for sub in subs if sub.kind != "bars"]
            if not subs:
                return
        depth = False
        for ev in events:
            kind = type(ev)
            if kind is DepthRow:
                depth = True
            elif kind is Quote:
                for sub in subs:
                    if sub.kind == "mkt":
                        self._send_quote(sub, ev)
                    elif sub.kind == "tbt":
                        self._send_tbt_quote(sub, ev)
                    elif sub.kind == "bars" and sub.what != "TRADES":
                        self._update_quote_bar(sub, ev)
            elif kind is Trade:
                for sub in subs:
                    if sub.kind == "mkt":
                        self._send_trade(sub, ev)
                    elif sub.kind == "tbt" and sub.tbt_type in ("Last", "AllLast"):
                        enc = sub.session.encoder
                        sub.session.send(
                            enc.tick_by_tick_all_last(
                                sub.req_id,
                                1 if sub.tbt_type == "Last" else 2,
                                self.now_ns // NS,
                                ev.price,
                                ev.size,
                                0,
                                sub.instrument.exchange,
                                "",
                            )
                        )
                    elif sub.kind == "bars" and sub.what == "TRADES":
                        self._update_bar(sub, ev.price, ev.size)
        if not depth:
            return
        for sub in subs:
            if sub.kind != "depth":
                continue
            if sub.live:
                send = self._send_depth
                for ev in events:
                    if type(ev) is DepthRow:
                        send(sub, ev)
            else:
                self._sync_depth(sub)
                sub.live = sub.rows >= self.market.state(con_id).depth

    def client_depth(self, sub: MarketSub) -> dict[int, tuple[list[int], list[int]]]:
        """The book a depth subscription's client has, ``{side: (ticks, lots)}``: the market's
        top rows while the stream is live, else what was last sent (tests compare it with
        the client's own book)."""
        if not sub.live:
            return sub.levels
        st, n = self.market.state(sub.instrument.con_id), sub.rows
        return {BID: (st.bid_px[:n], st.bid_sz[:n]), ASK: (st.ask_px[:n], st.ask_sz[:n])}

    def _freeze_depth(self) -> None:
        """Stop forwarding rows to each live depth stream that must not stream now (its client
        is held back, the farm is down, its instrument's data stopped): record what its client
        has, the book as it is, for ``_sync_depth_rows`` to diff against when it resumes.

        Exact only where every market event made so far has been published, as at the entry
        of ``advance`` and at a fault's start (both run between market events): an order's
        handling publishes its book changes after the fills that go with them, so a client
        held back in between would be recorded with changes it never got.
        """
        self._freeze_due = False
        for con, subs in self.subs_by_con.items():
            stopped = self.farm_down or con in self.stopped_data
            for sub in subs:
                if sub.live and (stopped or sub.session.backpressured):
                    sub.levels = self.client_depth(sub)
                    sub.live = False

    def _holds(self, sub: MarketSub) -> bool:
        """Whether ``sub``'s stream is held back now (its client is backpressured); counts it."""
        if sub.session.backpressured and sub.kind != "bars":
            sub.session.held_back += 1
            return True
        return False

    def hold_market_data(self, s: Session) -> None:
        """``s`` is not keeping up (its send buffers are full): stop streaming market data to
        it. Order, account and request answers still go; nothing already queued is dropped.

        A real gateway does not let a slow client's backlog grow without bound either, and
        for a fast client it bounds how much market data an order answer can queue behind.
        keepUpToDate bars keep flowing (they carry a running volume a skip would lose).
        """
        if not s.backpressured:
            s.backpressured = True
            self.held.add(s)
            self._freeze_due = True

    def release_market_data(self, s: Session) -> None:
        """``s`` drained its buffers: bring its streams up to date (depth rows diffed against
        what it has, the current quote; prints in between are not replayed) and resume."""
        if not s.backpressured:
            return
        s.backpressured = False
        self.held.discard(s)
        if s.phase != Phase.READY or self.farm_down:
            return
        streaming, self.streaming = self.streaming, self.input_pending is not None
        try:
            for sub in list(s.subs.values()):
                con = sub.instrument.con_id
                if con in self.stopped_data:
                    continue
                if sub.kind == "depth":
                    self._sync_depth(sub)
                elif sub.kind in ("mkt", "tbt"):
                    b = self.market.book(con)
                    q = Quote(b.bid, b.bid_size, b.ask, b.ask_size)
                    if sub.kind == "mkt":
                        self._send_quote(sub, q)
                    else:
                        self._send_tbt_quote(sub, q)
        finally:
            self.streaming = streaming

    def _send_quote(self, sub: MarketSub, q: Quote) -> None:
        enc, rid, send = sub.session.encoder, sub.req_id, sub.session.send
        if sub.delayed:
            send(enc.tick_price(rid, 66, q.bid, q.bid_size, 1))
            send(enc.tick_price(rid, 67, q.ask, q.ask_size, 1))
        else:
            send(enc.tick_price(rid, 1, q.bid, q.bid_size, 1))
            send(enc.tick_price(rid, 2, q.ask, q.ask_size, 1))

    def _send_trade(self, sub: MarketSub, t: Trade) -> None:
        enc, rid, send = sub.session.encoder, sub.req_id, sub.session.send
        st = self.market.state(sub.instrument.con_id)  # the day's volume, without a BookView
        d = sub.delayed
        send(enc.tick_price(rid, 68 if d else 4, t.price, t.size, 0))
        send(enc.tick_size(rid, 74 if d else 8, st.grid.size(st.volume)))
        send(enc.tick_string(rid, 88 if d else 45, str(self.now_ns // NS)))
        if "233" in sub.generic:
            book = self.market.book(st.instrument.con_id)
            send(enc.tick_string(rid, 48, self._rt_volume(book, t)))

    def _update_quote_bar(self, sub: MarketSub, q: Quote) -> None:
        """A MIDPOINT, BID or ASK keepUpToDate bar moves with the quote, not with trades."""
        if q.bid <= 0 or q.ask <= 0:
            return
        price = {"BID": q.bid, "ASK": q.ask}.get(sub.what, (q.bid + q.ask) / 2)
        self._update_bar(sub, price, None)

    def _update_bar(self, sub: MarketSub, price: float, size: Decimal | None) -> None:
        """Update the keepUpToDate bar with a price (and a trade's size), starting the next
        bar once the current one's time is over, as IB does."""
        if self.now_ns >= sub.bar_end_ns:
            con, now = sub.instrument.con_id, self.now_ns
            bars = self.market.bars(con, now, sub.bar_s, sub.bar_s, sub.what, sub.format_date)
            if bars:  # the new bar's date, formatted as the request asked; it opens here
                bar = sub.bar = bars[-1]
                bar.open = bar.high = bar.low = bar.close = price
                if size is not None:
                    bar.volume, bar.wap, bar.barCount = Decimal(0), Decimal(repr(price)), 0
            sub.bar_end_ns = _bar_end_ns(sub.instrument, now, sub.bar_s)
        bar = sub.bar
        bar.high = max(bar.high, price)
        bar.low = min(bar.low, price)
        bar.close = price
        if size is not None:
            bar.volume = bar.volume + Decimal(size)
            bar.barCount += 1
        sub.session.send(sub.session.encoder.historical_data_update(sub.req_id, bar))

    # -- orders -------------------------------------------------------------------------------

    def _place_order(self, s: Session, req: rq.PlaceOrder) -> None:
        key = (s.client_id, req.order_id)
        live = self.orders.get(key)
        if live is not None:
            self._modify(s, live, req)
            return
        held = self.untransmitted.pop(key, None)  # re-sent: this one replaces it
        if held is None:
            if key in self.used_ids:
                s.error(req.order_id, 103)
                return
            self.used_ids.add(key)
            self.received.append((s.client_id, req.order_id, req.order.orderRef))
            self.next_order_id = max(self.next_order_id, req.order_id + 1)
        inst = self._resolve_one(s, req.order_id, req.contract)
        if inst is None:
            return
        order = req.order
        if not order.account:
            order.account = self.config.gateway.accounts[0]
        elif order.account not in self.config.gateway.accounts:
            s.error(req.order_id, 321, reason=f"Invalid account {order.account}")
            return
        perm_id = held.perm_id if held is not None else next(self._perm_ids)
        sim = SimOrder(req.order_id, s.client_id, perm_id, inst, req.contract, order)
        if (req.contract.secType or "").upper() == "CONTFUT":
            self._reject(s, sim, 201, "continuous futures (CONTFUT) are for market data only")
            return
        if self.link_down:
            self._reject(s, sim, 201, "Connectivity between IB and TWS has been lost")
            return
        if self.reject_next > 0:
            self.reject_next -= 1
            self._reject(s, sim, 201, "Simulated rejection (fault injection)")
            return
        problem = self.matching.validate(sim)
        if problem is not None:
            self._reject(s, sim, problem.code, problem.reason)
            return
        if not order.transmit:
            self.untransmitted[key] = sim
            return
        chain = self._chain(s.client_id, sim) if sim.parent_id and self.untransmitted else []
        if not chain:
            self.orders[key] = sim
            self._deliver(self.matching.submit(sim, self.now_ns))
            return
        chain.append(sim)
        for member in chain:
            self.orders[(s.client_id, member.order_id)] = member
        self._deliver(self.matching.submit_chain(chain, self.now_ns))

    def _chain(self, client_id: int, child: SimOrder) -> list[SimOrder]:
        """What a transmitted child takes with it: its held parent, then its held siblings."""
        held = self.untransmitted
        parent = held.pop((client_id, child.parent_id), None)
        siblings = [
            held.pop(key)
            for key, sim in list(held.items())
            if key[0] == client_id and sim.parent_id == child.parent_id
        ]
        return [parent, *siblings] if parent is not None else siblings

    def _discard(self, s: Session | None, key: tuple[int, int]) -> None:
        """Cancel an untransmitted order: it and its held children are discarded."""
        sim = self.untransmitted.pop(key, None)
        if sim is None:
            return
        if s is not None:
            s.error(sim.order_id, 202, reason=" the order was never transmitted and is discarded")
        for other, child in list(self.untransmitted.items()):
            if other[0] == key[0] and child.parent_id == sim.order_id:
                self._discard(s, other)

    def _reject(self, s: Session, sim: SimOrder, code: int, reason: str) -> None:
        """Error ``code`` for the order; a rejected new order also reports status Inactive.

        A refused modification or cancel (the order is still working) gets the error only.
        """
        if code == 201:
            s.error(sim.order_id, 201, reason=reason)
        else:
            s.error(sim.order_id, code, reason)
        if sim.status in ("PendingSubmit", "Inactive") and code != 110:
            sim.status = "Inactive"
            self._send_status(s, sim)

    def _modify(self, s: Session, live: SimOrder, req: rq.PlaceOrder) -> None:
        if live.status in _DONE:
            s.error(req.order_id, 104)
            return
        if req.contract.conId and req.contract.conId != live.instrument.con_id:
            s.error(req.order_id, 105)
            return
        if req.order.action != live.order.action:
            s.error(req.order_id, 105)
            return
        if not req.order.account:
            req.order.account = live.order.account
        self._deliver(self.matching.modify(live, req.order, self.now_ns))

    def warm_answers(self) -> None:
        """Run each client's cancel answer path dry: parse its last cancelOrder frame again and
        encode the orderStatus(Cancelled) and error 202 that answer it. Nothing is sent or
        changed.

        IB Gateway is a JIT-compiled, warm JVM; in this Python stand-in, a path last run tens
        of milliseconds ago (while a flood streamed) costs about three times its warm time,
        which would be the simulator's latency, not the client's. The server calls this every
        ``market.keep_warm_ms`` (see there); it costs ~40 µs.
        """
        for s in list(self.clients.values()):
            enc = s.encoder
            if not s.last_cancel or enc is None or s.phase == Phase.CLOSED:
                continue
            try:
                req = rq.parse_request(s.version, s.last_cancel)
            except (rq.MalformedRequest, ValueError):
                s.last_cancel = b""
                continue
            order_id = req.order_id if isinstance(req, rq.CancelOrder) else 0
            enc.order_status(
                order_id, "Cancelled", _ZERO, _ONE, 0.0, 0, 0, 0.0, s.client_id or 0, "", 0.0
            )
            enc.error(order_id, 202, ERRORS[202].format(reason=""), self.now_ns // 1_000_000)

    def _cancel_order(self, s: Session, req: rq.CancelOrder) -> None:
        sim = self.orders.get((s.client_id, req.order_id))
        if sim is None:
            if (s.client_id, req.order_id) in self.untransmitted:
                self._discard(s, (s.client_id, req.order_id))
                return
            s.error(req.order_id, 10147, order_id=req.order_id)
            return
        if sim.status in _DONE:
            s.error(req.order_id, 10148, order_id=req.order_id, state=sim.status)
            return
        self._deliver(self.matching.cancel(sim, self.now_ns))

    def _global_cancel(self, s: Session, req: rq.ReqGlobalCancel) -> None:
        for key in list(self.untransmitted):
            self._discard(self.clients.get(key[0]), key)
        for sim in list(self.orders.values()):
            if sim.status not in _DONE:
                self._deliver(self.matching.cancel(sim, self.now_ns))

    def _deliver(self, events: Iterable[Any]) -> None:
        """Turn matching events into positions, executions and client messages."""
        done: list[SimOrder] = []
        for ev in events:
            sim = ev.order
            if isinstance(ev, BookUpdate):
                self._publish(ev.con_id, ev.events)
                continue
            owner = self.clients.get(sim.client_id)
            prev = self._as_of.get(sim) or _AsOf(sim.status, Decimal(0), 0.0, 0.0)
            if isinstance(ev, Fill):
                total = sim.filled + sim.remaining
                status = prev.status if prev.status not in _DONE else "Submitted"
                status = "Filled" if ev.cum_qty >= total else status
                self._as_of[sim] = _AsOf(status, ev.cum_qty, ev.avg_price, ev.price)
                self._on_fill(owner, ev)
            elif isinstance(ev, StatusChange):
                at = self._as_of[sim] = prev._replace(status=ev.status)
                if owner is not None:
                    if self.config.orders.shuffle_events:
                        msgs = [
                            self._open_order_msg(owner, sim, at),
                            self._status_msg(owner, sim, at),
                        ]
                        self._send_shuffled(owner, msgs)
                        if ev.status == "Cancelled":
                            owner.error(sim.order_id, 202, reason=ev.reason)
                    else:
                        # The short orderStatus (and a cancel's error 202) first, handed to
                        # the socket at once; openOrder, many times dearer to encode, after
                        # (IB guarantees no order between the two).
                        owner.send(self._status_msg(owner, sim, at))
                        if ev.status == "Cancelled":
                            owner.error(sim.order_id, 202, reason=ev.reason)
                        if self.urgent is not None:
                            self.urgent(owner)
                        owner.send(self._open_order_msg(owner, sim, at))
            elif isinstance(ev, Rejected) and owner is not None:
                self._reject(owner, sim, ev.code, ev.reason)
            if sim.status in _DONE:
                self._finish(sim)
                done.append(sim)
        for sim in done:
            self._as_of.pop(sim, None)

    def _finish(self, sim: SimOrder) -> None:
        if self.orders.pop((sim.client_id, sim.order_id), None) is not None:
            self.completed.append(sim)

    def _on_fill(self, owner: Session | None, f: Fill) -> None:
        sim = f.order
        inst = sim.instrument
        account = sim.order.account
        side = "BOT" if sim.order.action == "BUY" else "SLD"
        ex = Execution()
        ex.execId = f.exec_id
        ex.time = _format_exec_time(f.time_ns)
        ex.acctNumber = account
        ex.exchange = inst.primary_exchange or inst.exchange
        ex.side = side
        ex.shares = Decimal(f.qty)
        ex.price = f.price
        ex.permId = sim.perm_id
        ex.clientId = sim.client_id
        ex.orderId = sim.order_id
        ex.cumQty = Decimal(f.cum_qty)
        ex.avgPrice = f.avg_price
        ex.orderRef = sim.order.orderRef
        ex.lastLiquidity = f.liquidity
        realized = self._apply_fill(account, inst, side, Decimal(f.qty), f.price, f.commission)
        report = CommissionAndFeesReport()
        report.execId = ex.execId
        report.commissionAndFees = f.commission
        report.currency = inst.currency
        report.realizedPNL = realized
        report.yield_ = 1.7976931348623157e308
        report.yieldRedemptionDate = 0
        self.executions.append(ExecRecord(inst.contract(), ex, report, f.time_ns))
        if owner is None:
            return
        enc = owner.encoder
        at = self._as_of.get(sim)
        msgs = [
            enc.exec_details(-1, inst.contract(), ex),
            self._open_order_msg(owner, sim, at),
            self._status_msg(owner, sim, at),
        ]
        self._send_shuffled(owner, msgs)
        commission = enc.commission_and_fees_report(report)
        delay = int(self.config.orders.commission_delay_ms * 1_000_000)
        if delay:
            self._schedule(self.now_ns + delay, lambda: owner.send(commission))
        else:
            owner.send(commission)
        self._push_account(account, inst)

    def _send_shuffled(self, owner: Session, msgs: list[bytes]) -> None:
        if self.config.orders.shuffle_events:
            self.rng.shuffle(msgs)
        for m in msgs:
            owner.send(m)

    def _now(self, sim: SimOrder) -> _AsOf:
        return _AsOf(sim.status, sim.filled, sim.avg_fill_price, sim.last_fill_price)

    def _status_msg(self, s: Session, sim: SimOrder, at: _AsOf | None = None) -> bytes:
        """The order's orderStatus as of ``at`` (default: now)."""
        at = at or self._now(sim)
        msg = s.encoder.order_status(
            sim.order_id,
            at.status,
            at.filled,
            sim.filled + sim.remaining - at.filled,
            at.avg_price,
            sim.perm_id,
            sim.order.parentId,
            at.last_price,
            sim.client_id,
            sim.why_held,
            0.0,
        )
        if self.config.orders.duplicate_status:
            msg += msg
        return msg

    def _send_status(self, s: Session, sim: SimOrder) -> None:
        s.send(self._status_msg(s, sim))

    def _order_state(self, sim: SimOrder, status: str | None = None) -> OrderState:
        st = OrderState()
        st.status = status or sim.status
        filled = st.status == "Filled"
        st.commissionAndFees = sim.commission if filled else 1.7976931348623157e308
        st.commissionAndFeesCurrency = sim.instrument.currency
        return st

    def _open_order_msg(self, s: Session, sim: SimOrder, at: _AsOf | None = None) -> bytes:
        """The order's openOrder as of ``at`` (default: now)."""
        at = at or self._now(sim)
        o = sim.order
        o.orderId = sim.order_id
        o.clientId = sim.client_id
        o.permId = sim.perm_id
        o.filledQuantity = at.filled
        return s.encoder.open_order(
            sim.order_id, sim.instrument.contract(), o, self._order_state(sim, at.status)
        )

    def _open_orders(self, s: Session, req: Any) -> None:
        every = isinstance(req, rq.ReqAllOpenOrders)
        for sim in self.orders.values():
            if every or sim.client_id == s.client_id:
                s.send(self._open_order_msg(s, sim))
                s.send(self._status_msg(s, sim))
        s.send(s.encoder.open_order_end())

    def _auto_open_orders(self, s: Session, req: rq.ReqAutoOpenOrders) -> None:
        # Binding only concerns orders entered in TWS itself, which the simulator has none of.
        if s.client_id != 0:
            s.error(NO_ID, 321, reason="Auto bind is allowed only for client id 0")

    def _completed_orders(self, s: Session, req: rq.ReqCompletedOrders) -> None:
        for sim in self.completed:
            o = sim.order
            o.permId = sim.perm_id
            o.filledQuantity = sim.filled
            st = self._order_state(sim)
            st.completedStatus = sim.status
            st.completedTime = _format_exec_time(sim.updated_ns)
            s.send(s.encoder.completed_order(sim.instrument.contract(), o, st))
        s.send(s.encoder.completed_orders_end())

    def _executions(self, s: Session, req: rq.ReqExecutions) -> None:
        flt = req.exec_filter
        for rec in self.executions:
            if _exec_matches(flt, rec):
                s.send(s.encoder.exec_details(req.req_id, rec.contract, rec.execution))
                s.send(s.encoder.commission_and_fees_report(rec.report))
        s.send(s.encoder.exec_details_end(req.req_id))

    # -- positions and account ----------------------------------------------------------

    def _apply_fill(
        self,
        account: str,
        inst: SimInstrument,
        side: str,
        qty: Decimal,
        price: float,
        commission: float,
    ) -> float:
        """Book a fill into the position and cash; return the realised P&L it produced."""
        pos = self.positions.setdefault((account, inst.con_id), Position())
        mult = float(inst.multiplier or 1)
        signed = qty if side == "BOT" else -qty
        realized = 0.0
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            total = pos.qty + signed
            cost = pos.avg_cost * float(abs(pos.qty)) + price * mult * float(abs(signed))
            pos.avg_cost = cost / float(abs(total))
            pos.qty = total
        else:
            closing = min(abs(signed), abs(pos.qty))
            direction = 1.0 if pos.qty > 0 else -1.0
            realized = direction * (price * mult - pos.avg_cost) * float(closing)
            pos.qty += signed
            if pos.qty == 0:
                pos.avg_cost = 0.0
            elif (pos.qty > 0) != (direction > 0):
                pos.avg_cost = price * mult
        realized -= commission
        pos.realized += realized
        self.cash[account] = self.cash.get(account, 0.0) - float(signed) * price * mult - commission
        return realized

    def _mark(self, inst: SimInstrument) -> float:
        """Mid price, or the last trade when a side is empty (IB sends -1 for no price)."""
        book = self.market.book(inst.con_id)
        if book.bid > 0 and book.ask > 0:
            return (book.bid + book.ask) / 2
        return max(book.last, 0.0)

    def account_values(self, account: str) -> dict[str, float]:
        """Account figures IB reports, consistent with the positions and cash."""
        gross = 0.0
        net = 0.0
        unrealized = 0.0
        realized = 0.0
        for (acct, con), pos in self.positions.items():
            if acct != account:
                continue
            inst = self.market.instrument(con)
            mult = float(inst.multiplier or 1)
            value = float(pos.qty) * self._mark(inst) * mult
            gross += abs(value)
            net += value
            unrealized += value - float(pos.qty) * pos.avg_cost
            realized += pos.realized
        cash = self.cash.get(account, 0.0)
        nlv = cash + net
        lev = self.config.account.leverage
        init_margin = gross / lev
        return {
            "NetLiquidation": nlv,
            "TotalCashValue": cash,
            "SettledCash": cash,
            "GrossPositionValue": gross,
            "EquityWithLoanValue": nlv,
            "InitMarginReq": init_margin,
            "MaintMarginReq": init_margin * 0.8,
            "AvailableFunds": nlv - init_margin,
            "ExcessLiquidity": nlv - init_margin * 0.8,
            "BuyingPower": (nlv - init_margin) * lev,
            "Leverage": gross / nlv if nlv else 0.0,
            "UnrealizedPnL": unrealized,
            "RealizedPnL": realized,
            "Cushion": (nlv - init_margin * 0.8) / nlv if nlv else 0.0,
        }

    def _positions(self, s: Session, req: rq.ReqPositions) -> None:
        for (acct, con), pos in self.positions.items():
            inst = self.market.instrument(con)
            s.send(s.encoder.position(acct, inst.contract(), pos.qty, pos.avg_cost))
        s.send(s.encoder.position_end())
        s.positions_sub = True

    def _cancel_positions(self, s: Session, req: rq.CancelPositions) -> None:
        s.positions_sub = False

    def _account_summary(self, s: Session, req: rq.ReqAccountSummary) -> None:
        if req.req_id in s.account_summaries:
            s.error(req.req_id, 322)
            return
        s.account_summaries[req.req_id] = (req.group, req.tags)
        self._send_summary(s, req.req_id, req.tags)
        s.send(s.encoder.account_summary_end(req.req_id))

    def _send_summary(self, s: Session, req_id: int, tags: str) -> None:
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        ccy = self.config.account.currency
        for account in self.config.gateway.accounts:
            s.send(s.encoder.account_summary(req_id, account, "AccountType", "INDIVIDUAL", ""))
            for tag, value in self.account_values(account).items():
                if not wanted or tag in wanted or "$LEDGER" in wanted:
                    s.send(s.encoder.account_summary(req_id, account, tag, f"{value:.2f}", ccy))

    def _cancel_account_summary(self, s: Session, req: rq.CancelAccountSummary) -> None:
        s.account_summaries.pop(req.req_id, None)

    def _account_updates(self, s: Session, req: rq.ReqAccountUpdates) -> None:
        account = req.account or self.config.gateway.accounts[0]
        if not req.subscribe:
            s.account_updates = None
            return
        s.account_updates = account
        self._send_account(s, account)
        s.send(s.encoder.account_download_end(account))

    def _send_account(self, s: Session, account: str, only: SimInstrument | None = None) -> None:
        enc = s.encoder
        ccy = self.config.account.currency
        for key, value in self.account_values(account).items():
            s.send(enc.update_account_value(key, f"{value:.2f}", ccy, account))
        for (acct, con), pos in self.positions.items():
            if acct != account or (only is not None and con != only.con_id):
                continue
            inst = self.market.instrument(con)
            mult = float(inst.multiplier or 1)
            mark = self._mark(inst)
            value = float(pos.qty) * mark * mult
            s.send(
                enc.update_portfolio(
                    inst.contract(),
                    pos.qty,
                    mark,
                    value,
                    pos.avg_cost,
                    value - float(pos.qty) * pos.avg_cost,
                    pos.realized,
                    account,
                )
            )
        stamp = datetime.fromtimestamp(self.now_ns / NS, UTC).strftime("%H:%M")
        s.send(enc.update_account_time(stamp))

    def _account_updates_multi(self, s: Session, req: rq.ReqAccountUpdatesMulti) -> None:
        account = req.account or self.config.gateway.accounts[0]
        s.account_multi[req.req_id] = account
        self._send_multi(s, req.req_id, account)
        s.send(s.encoder.account_update_multi_end(req.req_id))

    def _send_multi(self, s: Session, req_id: int, account: str) -> None:
        ccy = self.config.account.currency
        for key, value in self.account_values(account).items():
            s.send(s.encoder.account_update_multi(req_id, account, "", key, f"{value:.2f}", ccy))

    def _cancel_account_updates_multi(self, s: Session, req: rq.CancelAccountUpdatesMulti) -> None:
        s.account_multi.pop(req.req_id, None)

    def _push_account(self, account: str, inst: SimInstrument) -> None:
        """After a fill: stream positions and account values to the clients that asked."""
        pos = self.positions[(account, inst.con_id)]
        for s in self.clients.values():
            if s.positions_sub:
                s.send(s.encoder.position(account, inst.contract(), pos.qty, pos.avg_cost))
            if s.account_updates == account:
                self._send_account(s, account, only=inst)
            for req_id, acct in s.account_multi.items():
                if acct == account:
                    self._send_multi(s, req_id, account)

    # -- faults -------------------------------------------------------------------------------

    def fault(self, action: str, **params: Any) -> None:
        """Inject a fault now (the control interface and ``[[faults]]`` both land here)."""
        fault = build(FaultConfig, {"at_s": 0.0, "action": action, **params}, "control", "fault")
        self._fault_runner(fault)()

    def _fault_runner(self, f: FaultConfig) -> Callable[[], None]:
        def run() -> None:
            self.log_event(None, f"fault {f.action}")
            getattr(self, f"_fault_{f.action}")(f)

        return run

    def _broadcast_error(self, code: int) -> None:
        for s in self.clients.values():
            s.error(NO_ID, code)

    def _fault_drop_all(self, f: FaultConfig) -> None:
        for s in list(self.sessions.values()):
            s.close("fault: drop all connections")

    def _fault_connectivity_lost(self, f: FaultConfig) -> None:
        self.link_down = True
        self._broadcast_error(1100)

        def restore() -> None:
            self.link_down = False
            self._last_step_ns = self.now_ns
            if f.data_lost:
                for s in self.clients.values():
                    for sub in list(s.subs.values()):
                        self._unsubscribe(sub)
            self._broadcast_error(1101 if f.data_lost else 1102)

        self._schedule(self.now_ns + int(f.seconds * NS), restore)

    def _fault_farm_blip(self, f: FaultConfig) -> None:
        if f.farm == "ushmds":  # the historical farm: keepUpToDate bars pause
            self.hmds_down = True
            self._broadcast_error(2105)

            def restore_hmds() -> None:
                self.hmds_down = False
                self._broadcast_error(2106)

            self._schedule(self.now_ns + int(f.seconds * NS), restore_hmds)
            return
        self.farm_down = True
        self._freeze_depth()
        self._broadcast_error(2103)

        def restore() -> None:
            self.farm_down = False
            self._broadcast_error(2104)

        self._schedule(self.now_ns + int(f.seconds * NS), restore)

    def _fault_ignore_requests(self, f: FaultConfig) -> None:
        """Leave the next ``count`` requests of type ``request`` unanswered, as a gateway still
        loading after a restart can leave ``reqOpenOrders`` without its ``openOrderEnd``."""
        known = {cls.__name__ for cls in self._handlers}
        if f.request not in known:
            raise ConfigError(
                "control", "fault.request",
                f"{f.request!r} is not a request the simulator handles: {', '.join(sorted(known))}",
            )  # fmt: skip
        self.ignoring[f.request] = f.count

    def _ignored(self, s: Session, req: rq.Request) -> bool:
        name = type(req).__name__
        left = self.ignoring.get(name, 0)
        if not left:
            return False
        if left == 1:
            del self.ignoring[name]
        else:
            self.ignoring[name] = left - 1
        self.log_event(s, f"fault: {name} ignored")
        return True

    def _fault_silence_subscriptions(self, f: FaultConfig) -> None:
        """The subscriptions open now for ``symbol`` go silent for good, while new ones stream:
        what IB can do after a farm reconnect until the client subscribes again (nautilus
        #3968). They stay known, so cancelling them is not an error."""
        for con in {i.con_id for i in self.instruments if i.symbol == f.symbol}:
            self.subs_by_con.pop(con, None)

    def _fault_depth_reset(self, f: FaultConfig) -> None:
        """Error 317 to every depth stream of ``symbol``, then its book again from the first
        row, as IB resets a deep book; both in wire order with the stream's rows."""
        streaming, self.streaming = self.streaming, self.input_pending is not None
        try:
            for con in {i.con_id for i in self.instruments if i.symbol == f.symbol}:
                for sub in self.subs_by_con.get(con, ()):
                    if sub.kind != "depth":
                        continue
                    sub.session.error(sub.req_id, 317)
                    sub.levels = {BID: ([], []), ASK: ([], [])}
                    sub.live = False
                    self._sync_depth(sub)
        finally:
            self.streaming = streaming

    def _fault_daily_restart(self, f: FaultConfig) -> None:
        for s in list(self.sessions.values()):
            s.close("fault: daily restart")
        self.down_until_ns = self.now_ns + int(f.seconds * NS)
        self.refuse_mode = f.refuse
        if f.rollback_ids:
            self.next_order_id = self.config.gateway.next_order_id

    def _fault_hang(self, f: FaultConfig) -> None:
        """The gateway's API hangs for ``seconds`` (a known IB Gateway failure): connections
        stay open and new ones are accepted, but nothing is read or answered and no market
        data goes out; then it carries on with what arrived meanwhile."""
        self.hung_until_ns = self.now_ns + int(f.seconds * NS)

    def _fault_latency(self, f: FaultConfig) -> None:
        self.latency_ns = int(f.ms * 1_000_000)

    def _fault_reject_orders(self, f: FaultConfig) -> None:
        self.reject_next = f.count

    def _fault_stop_market_data(self, f: FaultConfig) -> None:
        self.stopped_data |= {i.con_id for i in self.instruments if i.symbol == f.symbol}
        self._freeze_depth()

    def _fault_resume_market_data(self, f: FaultConfig) -> None:
        cons = {i.con_id for i in self.instruments if i.symbol == f.symbol}
        self.stopped_data -= cons
        self.competing -= cons
        for con in cons:  # L1 streams get the quote as it is now (depth is diffed as it flows)
            b = self.market.book(con)
            q = Quote(b.bid, b.bid_size, b.ask, b.ask_size)
            for sub in self.subs_by_con.get(con, ()):
                if sub.kind == "mkt" and not sub.session.backpressured:
                    self._send_quote(sub, q)

    def _fault_competing_session(self, f: FaultConfig) -> None:
        """Another session with live data (TWS, the mobile app) logs in: every market-data
        stream of ``symbol`` gets 10197 and stops, and new requests for it get 10197, until
        ``resume_market_data``. Bars are not affected (they come from the HMDS farm)."""
        cons = {i.con_id for i in self.instruments if i.symbol == f.symbol}
        self.competing |= cons
        self.stopped_data |= cons
        self._freeze_depth()
        for con in cons:
            for sub in self.subs_by_con.get(con, ()):
                if sub.kind != "bars":
                    sub.session.error(sub.req_id, 10197)

    def _competing(self, s: Session, req_id: int, inst: SimInstrument) -> bool:
        if inst.con_id in self.competing:
            s.error(req_id, 10197)
            return True
        return False

    def status(self) -> dict[str, Any]:
        """A summary for the control interface."""
        return {
            "clients": sorted(self.clients),
            "connections": len(self.sessions),
            "open_orders": len(self.orders),
            "executions": len(self.executions),
            "next_order_id": self.next_order_id,
            "accepting": self.accepting,
            "link_down": self.link_down,
            "hung": self.now_ns < self.hung_until_ns,
            "farm_down": self.farm_down,
            "hmds_down": self.hmds_down,
            "market_data_held": len(self.held),
            "steps_dropped": self.steps_dropped,
        }

    def ledger(self) -> dict[str, Any]:
        """The gateway's own record, for tests that check a client against it: every new order
        received, each order's status and fills (open and completed), every execution and the
        positions (quantities as strings: IB's are decimals)."""
        orders = [*self.orders.values(), *self.completed]
        symbols = {i.con_id: i.symbol for i in self.instruments}
        return {
            "received": [list(r) for r in self.received],
            "orders": [
                {
                    "client_id": o.client_id, "order_id": o.order_id, "perm_id": o.perm_id,
                    "order_ref": o.order.orderRef, "status": o.status, "filled": str(o.filled),
                    "con_id": o.instrument.con_id,
                }
                for o in orders
            ],
            "executions": [
                {
                    "exec_id": e.execution.execId, "order_id": e.execution.orderId,
                    "order_ref": e.execution.orderRef, "side": e.execution.side,
                    "shares": str(e.execution.shares), "price": e.execution.price,
                    "con_id": e.contract.conId,
                }
                for e in self.executions
            ],
            "positions": [
                {"account": a, "con_id": c, "symbol": symbols.get(c, ""), "qty": str(p.qty)}
                for (a, c), p in self.positions.items()
            ],
        }  # fmt: skip

    _handlers: ClassVar[dict[type, Callable[..., None]]] = {}


GatewayCore._handlers = {
    rq.ReqCurrentTime: GatewayCore._current_time,
    rq.ReqCurrentTimeMillis: GatewayCore._current_time_millis,
    rq.ReqIds: GatewayCore._req_ids,
    rq.ReqMarketRule: GatewayCore._market_rule,
    rq.ReqManagedAccts: GatewayCore._managed_accts,
    rq.ReqContractDetails: GatewayCore._contract_details,
    rq.ReqMktData: GatewayCore._mkt_data,
    rq.CancelMktData: GatewayCore._cancel_mkt_data,
    rq.ReqMarketDataType: GatewayCore._market_data_type,
    rq.ReqMktDepth: GatewayCore._mkt_depth,
    rq.CancelMktDepth: GatewayCore._cancel_mkt_depth,
    rq.ReqTickByTickData: GatewayCore._tick_by_tick,
    rq.CancelTickByTickData: GatewayCore._cancel_tick_by_tick,
    rq.ReqHistoricalData: GatewayCore._historical,
    rq.CancelHistoricalData: GatewayCore._cancel_historical,
    rq.PlaceOrder: GatewayCore._place_order,
    rq.CancelOrder: GatewayCore._cancel_order,
    rq.ReqGlobalCancel: GatewayCore._global_cancel,
    rq.ReqOpenOrders: GatewayCore._open_orders,
    rq.ReqAllOpenOrders: GatewayCore._open_orders,
    rq.ReqAutoOpenOrders: GatewayCore._auto_open_orders,
    rq.ReqCompletedOrders: GatewayCore._completed_orders,
    rq.ReqPositions: GatewayCore._positions,
    rq.CancelPositions: GatewayCore._cancel_positions,
    rq.ReqAccountSummary: GatewayCore._account_summary,
    rq.CancelAccountSummary: GatewayCore._cancel_account_summary,
    rq.ReqAccountUpdates: GatewayCore._account_updates,
    rq.ReqAccountUpdatesMulti: GatewayCore._account_updates_multi,
    rq.CancelAccountUpdatesMulti: GatewayCore._cancel_account_updates_multi,
    rq.ReqExecutions: GatewayCore._executions,
    rq.StartApi: lambda core, s, req: s.error(NO_ID, 321, reason="startApi sent twice"),
}

_MAKERS = ("NSDQ", "ARCA", "BATS", "IEX")
#: Market events an instrument may have due at most: a loop that falls behind a configured
#: rate drops the backlog beyond this instead of freezing to catch up.
_MAX_BACKLOG_STEPS = 1_000
#: Market events an instrument makes per turn before the next instrument's.
_TURN = 4
_ZERO, _ONE = Decimal(0), Decimal(1)


def _exec_matches(flt: ExecutionFilter, rec: ExecRecord) -> bool:
    ex = rec.execution
    if flt.clientId and flt.clientId != ex.clientId:
        return False
    if flt.acctCode and flt.acctCode != ex.acctNumber:
        return False
    if flt.symbol and flt.symbol != rec.contract.symbol:
        return False
    if flt.secType and flt.secType != rec.contract.secType:
        return False
    if flt.exchange and flt.exchange not in (ex.exchange, rec.contract.exchange):
        return False
    if flt.side and flt.side[:1] != ex.side[:1]:
        return False
    if flt.time:
        try:
            since = _parse_ib_time(flt.time)
        except ValueError:
            return True
        if rec.time_ns < since:
            return False
    return True


def _format_exec_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y%m%d %H:%M:%S UTC")


def _format_ib_time(ns: int, format_date: int) -> str:
    if format_date == 2:
        return str(ns // NS)
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y%m%d %H:%M:%S UTC")


def _parse_ib_time(text: str) -> int:
    """``"YYYYMMDD HH:MM:SS[ TZ]"`` or ``"YYYYMMDD-HH:MM:SS"`` (UTC) → epoch ns."""
    text = text.strip()
    if "-" in text[:9]:
        stamp = datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S")
    else:
        stamp = datetime.strptime(text[:17], "%Y%m%d %H:%M:%S")
    return int(stamp.replace(tzinfo=UTC).timestamp()) * NS


_DURATION_UNITS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}


def _duration_seconds(text: str) -> int:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _DURATION_UNITS:
        raise ValueError(f"Invalid duration {text!r}: expected '<n> S|D|W|M|Y'")
    return int(parts[0]) * _DURATION_UNITS[parts[1]]


_BAR_UNITS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
}
_BAR_SIZES = {
    "1 secs",
    "5 secs",
    "10 secs",
    "15 secs",
    "30 secs",
    "1 min",
    "2 mins",
    "3 mins",
    "5 mins",
    "10 mins",
    "15 mins",
    "20 mins",
    "30 mins",
    "1 hour",
    "2 hours",
    "3 hours",
    "4 hours",
    "8 hours",
    "1 day",
    "1 week",
    "1 month",
}


def _bar_end_ns(inst: SimInstrument, now_ns: int, bar_s: int) -> int:
    """When the bar that ``Market.bars`` ends at ``now_ns`` is over: the next multiple of
    ``bar_s`` for intraday bars, the next local midnight for daily and longer ones."""
    now_s = (now_ns - 1) // NS
    if bar_s < 86_400:
        return (now_s - now_s % bar_s + bar_s) * NS
    tz = zone(inst.time_zone_id)
    day = datetime.fromtimestamp(now_s, tz).date() + timedelta(days=1)
    return int(datetime.combine(day, datetime.min.time(), tz).timestamp()) * NS


def _small_bars(text: str) -> bool:
    """Bars of 30 s or less (an unknown size counts too: it is refused later anyway)."""
    try:
        return _bar_seconds(text) <= 30
    except ValueError:
        return True


def _bar_seconds(text: str) -> int:
    if text not in _BAR_SIZES:
        raise ValueError(f"Invalid bar size {text!r}")
    n, unit = text.split()
    return int(n) * _BAR_UNITS[unit]
