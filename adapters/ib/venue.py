"""The IB venue: orders, order events, market data and reconnection over the TWS API socket.

``IBVenue`` implements ``engine.venue.Venue`` on the parts below it: ``connection`` (ibapi's
handshake and decoder on our asyncio transport, ``HotDecoder`` for the hot market data),
``wire`` (template ``placeOrder`` / ``cancelOrder`` frames), ``pacing`` (≤ 45 msg/s, cancels
first), ``reconnect`` (backoff, expected outage windows), ``contracts`` (qualification with a
cache) and ``marketdata`` (hot rows into the engine's book, quote and trade rings).

Order identity
--------------
IB order ids come from one sequence per client id: ``max(nextValidId, high-water + 1,
MD_REQ_IDS)`` after every (re)connect, where the high-water mark is kept in memory and, with
``state_file``, on disk in blocks of ``order_id_block`` (one write per block, none per order: a
restart skips the unused rest of a block, which IB allows). IB reports errors for orders and
requests through one id field, so the ids must not meet: market-data subscriptions use the
fixed ids below ``MD_REQ_IDS`` (the hot-path translator indexes a table by them), and every
other request (executions, contract details) takes its id from the order sequence. Every order
carries our client order id in ``orderRef``; the venue order id reported to the engine is the
``permId`` once IB assigns one (the IB order id until then). After a reconnect, orders are
matched by IB order id, then ``orderRef``, then ``permId``.

Status mapping (``orderStatus``, the status in ``openOrder`` and ``completedOrder``)
-----------------------------------------------------------------------------------
=================================  ========================================================
PendingSubmit, ApiPending          nothing yet (the order is on its way)
PreSubmitted, Submitted            ACCEPTED, once
Cancelled, ApiCancelled            CANCELLED, once (the reason is IB's last error for it)
Inactive                           REJECTED with IB's last error for the order (201...)
Filled                             nothing: fills come from ``execDetails`` only (with nothing
                                   remaining, the order no longer works at IB)
=================================  ========================================================

Messages may arrive in any order and more than once: each order emits each transition once,
a fill before any status emits ACCEPTED first, and nothing follows a final state except fills
(a fill may race a cancel). While a modify is pending the order is done only once its fills
cover the larger size. Fills are keyed by ``execId``: a repeated execution is dropped; a
correction (same id up to its last ``.NN``) reverses the execution it replaces (negative lots
at its price, its commission given back, id + ``BUST_SUFFIX``) and is then a fill of its own.
A commission report that arrives with or before its execution rides on the FILL; a later one
is a COMMISSION event. Warnings and holds (2100-2999, 399, 404, 10349) never change an order's
state; another error before IB acknowledges the order rejects it, and should IB report it
working after all, it is cancelled at once (``_given_up_status``).

Parent/child, OCA and transmit
------------------------------
An order's ``OrderExtras`` carry IB's attached-order fields: ``parentId`` is the IB order id of
the parent, looked up from its client order id among this venue's orders (a child whose parent
this venue never sent, or whose parent ended unfilled, is REJECTED at once with code
``PARENT_UNKNOWN``); ``ocaGroup``, ``ocaType`` and ``transmit`` are sent as given, except that a
modify of an order IB has acknowledged always goes with ``transmit`` True (else TWS would hold
the change untransmitted). Plain orders never set them and keep the template fast path. A held
child is PreSubmitted at IB: ACCEPTED. An order sent with ``transmit`` False gets no status from
IB until its chain is transmitted, so it stays SUBMITTED; cancelled while held, IB discards it
with only error 202, which ends it as CANCELLED. Such held orders are not in IB's open orders,
so a reconnect before they are transmitted finds them unknown.

Connectivity
------------
New orders are held back (REJECTED at once with the reason, code ``HELD_BACK``) while the
socket is down, during reconciliation, after error 1100 until 1101/1102, and from
``restart_guard_s`` before a scheduled gateway restart until it has cut the connection (IB's
reset windows hold nothing: the socket stays up there). Cancels requested while disconnected
are kept and sent after the reconnect for the orders still open; new orders and modifies still
waiting in the pacer at a disconnect are dropped (sent after an outage they would trade at
stale prices) and reconciliation reports them. 1101 (data lost) resubscribes market data;
1102 (data kept) reconciles orders and executions and resubscribes anyway, cancelling each
subscription first (the gateway still holds them: asking again would earn 322).
A farm blip (2103/2105 then 2104/2106) is followed by a check that each stream's data resumed
within ``data_check_s``; those that did not are asked for again (below). 1300 reconnects on the
port IB names. 100 (pacing violation) halves the message rate for a minute from the latest 100.
A gateway that has sent nothing for ``heartbeat_s`` is asked the time; no answer within
``heartbeat_timeout_s`` closes the connection as hung (ERROR) and reconnects. A drop inside an
expected window is INFO; outside one it is a WARNING, and an ERROR once the outage has lasted
``alert_after_s`` (or overrun its window by ``outage_grace_s``).
Data requests still paced at a disconnect are dropped (the reconnect makes them all again);
queued orders and cancels are sent on the new session, before its reconciliation.

Reconciliation is complete once IB has ended its open orders, completed orders and executions.
What it has not ended within ``reconcile_timeout_s`` is asked for again, the wait doubling up to
``RECONCILE_RETRY_MAX_S``, until it has: an ERROR says so, new orders are held back with a
reason naming what is missing, market data and cancels go on meanwhile.

Market data after outages: farms are tracked by the name IB's notice ends with (``:usfarm``),
and each that comes back (2104, 2106) has its streams checked: after 2104 each instrument's
book stream (depth, or L1) and trades (tick-by-tick), after 2106 the kept-up-to-date bars.
A stream silent for ``data_check_s`` is cancelled and asked for again under a fresh request id
(rows still on their way for the old id are dropped, not applied to the new book); a trade
stream counts as silent only with its instrument's book stream (no trades is not no data).
Kept-up-to-date bars are asked for again after a reconnect, 1101 and 1102 as well
(``HistoryClient.resubscribe``: the user's id stays, the bars missed are filled in). 317
(depth reset) empties the instrument's book and restarts its depth stream the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from ibapi.const import UNSET_DOUBLE, UNSET_INTEGER, UNSET_LONG
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order as IbOrder
from ibapi.order_cancel import OrderCancel
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from adapters.ib import contracts as ib_contracts
from adapters.ib.connection import (
    INFO_CODES,
    Connection,
    IBConnectError,
    IBRefusal,
    connect,
    mask_account,
)
from adapters.ib.history import HistoryClient
from adapters.ib.marketdata import MarketDataTranslator, Subscription
from adapters.ib.pacing import CANCEL, DATA, ORDER, MessagePacer
from adapters.ib.reconnect import Backoff, OutageSchedule, OutageWindow
from adapters.ib.wire import (
    IbEncodeError,
    PlaceOrderTemplate,
    encode_cancel_order,
    encode_place_order,
    prepare_place_order,
)
from engine.config import IBVenueConfig
from engine.instruments import Instrument
from engine.messages import (
    NO_PRICE,
    Algo,
    EventKind,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
)
from engine.orders import Order, OrderExtras, OrderState
from engine.venue import (  # the venue's own refusal codes, shared with the others
    HELD_BACK,
    NOT_ENCODABLE,
    NOT_QUALIFIED,
    PARENT_UNKNOWN,
    UNKNOWN_AFTER_RECONNECT,
    JournaledFill,
    VenuePorts,
)

log = logging.getLogger("tickwire.ib")

#: IB's codes for a cancel / a modify of an order it is not working, which the venue answers
#: itself for an order it knows has finished.
_IB_CANCEL_NOT_FOUND = 10147
_IB_MODIFY_NOT_WORKING = 104


_ACCEPTED = EventKind.ACCEPTED
_REJECTED = EventKind.REJECTED
_CANCELLED = EventKind.CANCELLED
_MODIFIED = EventKind.MODIFIED
_FILL = EventKind.FILL
_CANCEL_REJECTED = EventKind.CANCEL_REJECTED
_COMMISSION = EventKind.COMMISSION

_BUY = int(Side.BUY)
_TIF = {int(t): t.name for t in TimeInForce}  # DAY GTC IOC FOK GTD OPG: IB's own names
_IB_TYPE = {
    int(OrderType.MARKET): "MKT",
    int(OrderType.LIMIT): "LMT",
    int(OrderType.STOP): "STP",
    int(OrderType.STOP_LIMIT): "STP LMT",
    int(OrderType.MARKET_ON_CLOSE): "MOC",
    int(OrderType.LIMIT_ON_CLOSE): "LOC",
    int(OrderType.TRAILING_STOP): "TRAIL",
    int(OrderType.TRAILING_STOP_LIMIT): "TRAIL LIMIT",
}
_LIMIT_PRICED = frozenset({"LMT", "STP LMT", "LOC"})
_MARKET = int(OrderType.MARKET)
_IOC = int(TimeInForce.IOC)
#: IB code for an order it rejects ("Order rejected - reason: ..."), also given to the orders
#: refused here by IB's own rules, before sending, so a strategy reads both the same way.
IB_ORDER_REJECTED = 201
#: IB's code for a price off the contract's price grid, also given to those refused here by
#: its market rule, before sending.
IB_OFF_TICK = 110


class _OffMarketRule(ValueError):
    """A limit or stop price off the instrument's IB market rule (the message says which)."""


_IB_ALGO = {int(Algo.VWAP): "Vwap", int(Algo.TWAP): "Twap", int(Algo.ADAPTIVE): "Adaptive"}
_WORKING = frozenset({"PreSubmitted", "Submitted"})
_CANCEL_STATES = frozenset({"Cancelled", "ApiCancelled"})
#: IB errors about an order that refuse a cancel or a modify, not the order itself.
_REFUSED_CHANGE = frozenset({103, 104, 105, 106, 107, 161, 10147, 10148, 10149})
#: Order-scoped IB codes that never change an order's state, besides the warning range
#: 2100-2999: IB keeps the order, and its status says what becomes of it. 399 order message
#: (such as "held until the open"), 404 shares not available for short sale: the order is held
#: while IB locates them, 10349 TIF set to DAY by the order preset.
_ORDER_NOTICES = frozenset({399, 404, 10349})
#: Order-scoped IB codes that end an order IB has not acknowledged (it never worked there): 103
#: duplicate order id, 110 price not a multiple of the tick, 200 no security definition, 201
#: order rejected, 203 security not available to the account, 321 the request failed
#: validation, 10311 direct routing refused by a precautionary setting. Any other code before
#: the acknowledgement ends the order too, logged as unclassified (434 "order size cannot be
#: zero" and 492, which ib_async counts as warnings, are among them: IB does not document them
#: as holds). Should IB report such an order working after all, it is cancelled at once.
_ORDER_REJECTS = frozenset({103, 110, 200, 201, 203, 321, 10311})
_FARM_BROKEN = frozenset({2103, 2105, 2157})
_FARM_OK = frozenset({2104, 2106, 2158})
_FARM_KIND = {
    2103: "market data farm", 2104: "market data farm", 2105: "HMDS farm", 2106: "HMDS farm",
    2157: "sec-def farm", 2158: "sec-def farm",
}  # fmt: skip
_DATA_ERRORS = frozenset({200, 300, 309, 310, 312, 316, 317, 322, 354, 10090, 10167, 10168})
#: ibapi's "not set" for an id (a protobuf message without the field): never an order's id.
_UNSET_IDS = frozenset({UNSET_INTEGER, UNSET_LONG})

MD_L1, MD_DEPTH, MD_TBT = Subscription.L1, Subscription.DEPTH, Subscription.TICK_BY_TICK
_STREAM_FIELD = {MD_L1: "l1", MD_DEPTH: "depth", MD_TBT: "tbt"}  # its id in ``_Subscription``
#: Request ids below this are market-data subscriptions; order ids start at or above it.
MD_REQ_IDS = 4096
#: What reconciliation must have in full before new orders go: IB's open and completed orders
#: and its executions (positions and account values stream on, and only inform).
_RECONCILE_REQUIRED = frozenset({"open_orders", "completed_orders", "executions"})
#: The longest wait between requests for what reconciliation misses (it starts at
#: ``reconcile_timeout_s`` and doubles).
RECONCILE_RETRY_MAX_S = 60.0


class _Live:
    """One order as this venue knows it at IB."""

    __slots__ = (
        "accepted",
        "cancel_epoch",
        "client_order_id",
        "cum_lots",
        "done",
        "epoch",
        "exec_keys",
        "extras",
        "given_up",
        "ib_id",
        "ib_status",
        "instrument_id",
        "last_error",
        "parent_ib",
        "pending_cancel",
        "pending_modify",
        "perm_id",
        "price_ticks",
        "proto",
        "qty_lots",
        "remembered",
        "side",
        "strategy_id",
    )

    def __init__(self, ib_id: int, it: OrderIntent | Order, proto: IbOrder, epoch: int) -> None:
        self.ib_id = ib_id
        self.client_order_id = it.client_order_id
        self.strategy_id = it.strategy_id
        self.instrument_id = it.instrument_id
        self.side = it.side
        self.qty_lots = it.qty_lots
        self.price_ticks = it.price_ticks
        self.proto = proto  # the shape it was sent with (a modify re-sends it)
        self.extras: OrderExtras | None = None
        self.parent_ib = 0  # the parent's IB order id (a child order), else 0
        self.perm_id = 0
        self.cum_lots = 0
        self.accepted = False
        self.done = False
        self.pending_cancel = False
        self.cancel_epoch = 0  # connection epoch in which a cancel of it was last sent
        # A modify IB has not confirmed: (lots, ticks, the new extras or None if they stay).
        self.pending_modify: tuple[int, int, OrderExtras | None] | None = None
        self.last_error: tuple[int, str] = (0, "")
        #: The code this venue ended the order on without IB's word (an error before IB took
        #: it, unknown after a reconnect); 0 when IB's own status ended it, or it is working.
        self.given_up = 0
        self.ib_status = ""  # the last status IB reported for it
        self.epoch = epoch  # connection epoch in which IB last reported it
        self.exec_keys: list[str] | None = None  # its executions' keys in ``IBVenue._execs``
        self.remembered = False  # done, and in ``IBVenue._done``


@dataclass(slots=True)
class _Exec:
    exec_id: str
    lots: int
    live: _Live
    ticks: int  # the price its FILL carried
    fill_fee: float = 0.0  # the commission its FILL carried
    later_fee: float = 0.0  # the commission a COMMISSION event carried after it
    commission_sent: bool = False


@dataclass(slots=True)
class _Subscription:
    instrument: Instrument
    l1: int = 0
    depth: int = 0
    tbt: int = 0
    failed: str = ""


class _Wrapper(EWrapper):
    """ibapi callbacks → the venue. A new one per connection (the session hooks into it)."""

    def __init__(self, venue: IBVenue) -> None:
        super().__init__()
        self.v = venue

    def nextValidId(self, orderId: int) -> None:
        self.v._on_next_valid_id(orderId)

    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        self.v._on_error(reqId, errorCode, errorString, advancedOrderRejectJson)

    def openOrder(self, orderId, contract, order, orderState):
        self.v._on_open_order(orderId, contract, order, orderState.status)

    def openOrderEnd(self):
        self.v._end("open_orders")

    def completedOrder(self, contract, order, orderState):
        self.v._on_open_order(order.orderId, contract, order, orderState.status, completed=True)

    def completedOrdersEnd(self):
        self.v._end("completed_orders")

    def orderStatus(self, orderId, status, filled, remaining, avgFillPrice, permId, *rest):
        self.v._on_order_status(orderId, status, permId, remaining)

    def execDetails(self, reqId, contract, execution):
        self.v._on_exec(contract, execution)

    def execDetailsEnd(self, reqId):
        self.v._end("executions")

    def commissionAndFeesReport(self, commissionAndFeesReport):
        r = commissionAndFeesReport
        self.v._on_commission(r.execId, r.commissionAndFees)

    def position(self, account, contract, position, avgCost):
        self.v._on_position(account, contract, float(position), float(avgCost))

    def positionEnd(self):
        self.v._end("positions")

    def updateAccountValue(self, key, val, currency, accountName):
        self.v._on_account_value(key, val, currency, accountName)

    def accountDownloadEnd(self, accountName):
        self.v._end("account")

    def contractDetails(self, reqId, contractDetails):
        self.v.contracts.on_contract_details(reqId, contractDetails)

    def marketRule(self, marketRuleId, priceIncrements):
        self.v._on_market_rule(marketRuleId, priceIncrements)

    def contractDetailsEnd(self, reqId):
        self.v.contracts.on_contract_details_end(reqId)

    def historicalData(self, reqId, bar):
        self.v.history.on_historical_data(reqId, bar)

    def historicalDataEnd(self, reqId, start, end):
        self.v.history.on_historical_data_end(reqId, start, end)

    def historicalDataUpdate(self, reqId, bar):
        self.v.history.on_historical_data_update(reqId, bar)


def _protobuf_form(self: _Wrapper, *_: object) -> None:
    """ibapi hands a protobuf message to ``xxxProtoBuf`` and then its values to ``xxx``; the
    venue takes the values. EWrapper's default only logs (a frame lookup and a dict of locals
    per message, for a logger we keep at WARNING), on the order path for orderStatus."""


for _name in [n for n in vars(EWrapper) if n.endswith("ProtoBuf")]:
    if _name not in vars(_Wrapper):
        setattr(_Wrapper, _name, _protobuf_form)


#: Appended to the id of an execution IB replaced by a correction, for the fill that reverses it.
BUST_SUFFIX = "/bust"

#: Commission reports kept waiting for an execution that has not arrived (IB sends the two in
#: no guaranteed order); those for executions that never come are dropped oldest first.
EARLY_COMMISSIONS = 10_000


class IBVenue:
    """See the module docstring."""

    #: Orders here are paced (≤ 45 msg/s), so always sparse: ``[engine] keep_warm = "auto"``
    #: keeps their path warm with a dry run (``warm``) while idle.
    wants_warm_path = True
    #: Finished orders remembered (~0.5 KB each): past it the oldest is forgotten, and IB's
    #: later word of it (a reconnect's reports of the day) counts as a foreign event. The
    #: engine's own order history (``OrderTracker``) keeps 10,000.
    done_history = 100_000

    def __init__(self, name: str, config: IBVenueConfig | None = None) -> None:
        self.name = name
        self.config = config or IBVenueConfig()
        #: The embedded simulator's config, read here so that a bad or missing file is a
        #: ConfigError (naming the file and key) at build time, not a traceback at start.
        self._sim_config = None
        if self.config.embedded_simulator and self.config.simulator_config:
            from adapters.ib.gateway_sim.config import load_gateway_config

            self._sim_config = load_gateway_config(self.config.simulator_config)
        cfg = self.config
        self.port = cfg.port
        self.ports: VenuePorts | None = None
        self.conn: Connection | None = None
        self.simulator: Any = None  # the embedded GatewaySimServer, when configured
        self.server_version = 0
        self.account = cfg.account.reveal() if cfg.account is not None else ""
        self.pacer = MessagePacer(cfg.pacing_msgs_per_s, cfg.pacing_burst)
        self._pacer_timer: asyncio.TimerHandle | None = None
        self.backoff = Backoff(cfg.reconnect_initial_s, max(cfg.reconnect_max_s, 1e-3))
        windows = [
            OutageWindow.parse(o.start, o.minutes, o.tz, o.name, restart=o.restart, days=o.days)
            for o in cfg.outages
        ]  # fmt: skip
        if cfg.daily_restart:
            restart = OutageWindow.parse(
                cfg.daily_restart, cfg.daily_restart_minutes, cfg.daily_restart_tz, restart=True
            )
            windows.append(restart)
        self.outages = OutageSchedule(
            windows, cfg.outage_grace_s, cfg.restart_guard_s, cfg.alert_after_s
        )
        self._guard_until = 0.0  # time.time() until which the last guard check holds
        self._guarding: str = ""
        self._connected_at: datetime | None = None  # when this connection was made (UTC)
        self._outage_said = ""  # the last failure logged in this outage (repeats go to DEBUG)
        # Order state.
        self._next_id = 0
        self._reserved = 0  # ids below this are covered by the persisted high-water mark
        self._hwm = self._load_hwm()
        self._by_ib: dict[int, _Live] = {}
        self._by_coid: dict[int, _Live] = {}
        self._by_perm: dict[int, _Live] = {}
        self._execs: dict[str, _Exec] = {}
        #: Finished orders still remembered, oldest first (``_remember_done``).
        self._done: deque[_Live] = deque()
        self.forgotten = 0  # finished orders forgotten, past ``done_history``
        self._forgotten_max_ib = 0  # the highest IB order id among them
        self._early_commission: dict[str, float] = {}
        self._deferred_cancels: set[int] = set()
        self._protos: dict[tuple[int, int, int, int], IbOrder] = {}
        #: Prepared placeOrder templates by proto, each with the contract it was made for.
        self._prepared: dict[IbOrder, tuple[Contract, PlaceOrderTemplate]] = {}
        self._cancel_msg = OrderCancel()
        # Connection state.
        self.epoch = 0
        self.ready = False
        self.connected = False
        self.in_1100 = False
        self.reconciling = False
        #: What reconciliation still misses from IB (``_RECONCILE_REQUIRED``): orders held back.
        self.unreconciled: tuple[str, ...] = ()
        self.refused = ""  # a reason that retrying will not fix (paper_only)
        self.down_since: datetime | None = None
        self._ends: dict[str, asyncio.Event] = {}
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._first_attempt: asyncio.Event | None = None
        self._lost: asyncio.Event | None = None
        self._background: set[asyncio.Task] = set()
        # Instruments, contracts, market data.
        self._instruments: list[Instrument] = []
        self._specs: dict[int, ib_contracts.ContractSpec] = {}
        self._contracts: dict[int, Contract] = {}
        self._price_digits: dict[int, int] = {}
        self._lot_dec: dict[int, Decimal] = {}
        self._crypto: frozenset[int] = frozenset()  # instruments traded as IB CRYPTO
        #: IB's market rules (``reqMarketRule``): (low edge, increment) price bands by rule id,
        #: and each instrument's rule id (``Qualified.market_rule``).
        self._rules: dict[int, tuple[tuple[float, float], ...]] = {}
        self._rule_of: dict[int, int] = {}
        #: Instruments whose rule has bands coarser than their tick_size: (rule id, bands).
        self._bands: dict[int, tuple[int, tuple[tuple[float, float], ...]]] = {}
        self.qualified: dict[int, ib_contracts.Qualified] = {}
        #: Instruments orders are refused for (``NOT_QUALIFIED``), with why: IB has not
        #: confirmed the contract, or it disagrees with the config. Retried at every connect.
        self.unqualified: dict[int, str] = {}
        self.contracts = ib_contracts.ContractQualifier(self._send_data)
        self.history = HistoryClient(self._send_data)
        self._by_con_id: dict[int, int] = {}
        self._subs: dict[int, _Subscription] = {}
        self._md: MarketDataTranslator | None = None
        self._depth_rows = 0  # rows a side asked of IB (``bind``: at most the book's)
        self._md_rows_seen = 0
        self._ts_read = 0
        self._farm_down: dict[str, int] = {}  # farm name -> the code that said it broke
        self._md_watch = 0  # farm data checks pending: streams' rows are noted meanwhile
        #: Per market-data request id, ``_md_rows_seen`` when it last delivered (noted while
        #: ``_md_watch``); one slot more for ids out of range (``np.put`` clips them there).
        self._md_last = np.zeros(MD_REQ_IDS + 1, dtype=np.int64)
        self._md_refused: set[int] = set()  # request ids IB refused
        self._spare_ids: deque[int] = deque()  # market-data ids free for a restarted stream
        # Counters (read by tests and the status line).
        self.orders_sent = 0
        self.cancels_sent = 0
        self.held_back = 0
        self.unknown_after_reconnect = 0
        self.duplicate_execs = 0
        self.foreign_events = 0
        self.resubscribes = 0
        self.reconnects = 0
        self.errors: list[tuple[int, int, str]] = []
        self.malformed = 0
        self.off_grid_fills = 0  # fills IB priced between the engine's ticks (``_fill_ticks``)
        self._off_grid_said: set[int] = set()

    # ---- engine side -------------------------------------------------------------------------

    def bind(self, ports: VenuePorts) -> None:
        self.ports = ports
        registry = ports.registry
        self._instruments = [i for i in registry if i.venue == self.name]
        for inst in self._instruments:
            overrides = self.config.contracts.get(inst.symbol, {})
            try:
                spec = ib_contracts.spec_for(inst, overrides)
            except ValueError as e:
                raise ValueError(
                    f"venues.{self.name}.contracts.{inst.symbol}: {e}"
                ) from None  # build_app turns it into a ConfigError
            self._specs[inst.id] = spec
            self._contracts[inst.id] = ib_contracts.to_contract(spec)
            self._price_digits[inst.id] = _digits(inst.tick_size)
            self._lot_dec[inst.id] = Decimal(repr(inst.lot_size))
        self._crypto = frozenset(i for i, spec in self._specs.items() if spec.sec_type == "CRYPTO")
        n = len(registry)
        if 3 * len(self._instruments) + 1 > MD_REQ_IDS:
            raise ValueError(
                f"venue {self.name} lists {len(self._instruments)} instruments; at most "
                f"{(MD_REQ_IDS - 1) // 3} can stream market data through one connection"
            )
        self._md = MarketDataTranslator(
            n, [i.tick_size for i in registry], [i.lot_size for i in registry],
            max_req_ids=MD_REQ_IDS, capacity=2 * 4096,
        )  # fmt: skip
        self._subs = {i.id: _Subscription(i) for i in self._instruments}
        #: Instruments whose book comes from L1 quotes (no depth configured, or refused).
        self._l1_book = np.full(n, not self.config.depth_rows, dtype=bool)
        # IB's depth rows are positions: one past the rows a book keeps can slide into view
        # (a level above it goes) without ever having been in the book, and IB's updates of it
        # would then be refused. So IB is asked for no more rows than the book keeps.
        book_rows = ports.books.rows.shape[2]
        self._depth_rows = min(self.config.depth_rows, book_rows)
        if self.config.depth_rows > book_rows:
            log.warning(
                "IB %s: depth_rows = %d, but a book keeps %d rows a side: asking IB for %d",
                self.name, self.config.depth_rows, book_rows, book_rows,
            )  # fmt: skip
        if ports.portfolio is not None:
            ports.portfolio.broker_account(self.name).account = self.account

    def on_book(self, instrument_ids: list[int]) -> None:
        pass

    def on_trades(self, trades: np.ndarray) -> None:
        pass

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting (forever, in the background); returns after the first attempt."""
        if self.config.embedded_simulator and self.simulator is None:
            await self._start_simulator()
        self._stopping = False
        self._first_attempt = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._supervise())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._first_attempt.wait(),
                self.config.connect_timeout_s + 2 * self.config.reconcile_timeout_s,
            )

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is not None:
            # Cancelled until it ends: a cancel that lands as an awaited answer arrives (IB's
            # contract details in qualification) is dropped by Python 3.11's wait_for, and the
            # supervisor would then wait on the session for good.
            while not task.done():
                task.cancel()
                await asyncio.wait((task,), timeout=0.05)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in list(self._background):
            t.cancel()
        if self._pacer_timer is not None:
            self._pacer_timer.cancel()
        if self.conn is not None:
            self._flush_pacer()
            self.conn.close()
        self._save_hwm(self._next_id)
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None

    async def _start_simulator(self) -> None:
        """The gateway simulator in this process, on a free loopback port (the demo)."""
        import dataclasses

        from adapters.ib.gateway_sim.config import GatewaySimConfig
        from adapters.ib.gateway_sim.server import GatewaySimServer

        sim_cfg = self._sim_config or GatewaySimConfig()
        gateway = dataclasses.replace(sim_cfg.gateway, host="127.0.0.1", port=0)
        self.simulator = GatewaySimServer(dataclasses.replace(sim_cfg, gateway=gateway))
        await self.simulator.start()
        self.port = self.simulator.port
        log.info("IB %s: embedded gateway simulator on 127.0.0.1:%d", self.name, self.port)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until trading is possible (tests, the demo); False on timeout."""
        deadline = time.monotonic() + timeout
        while not (self.ready and not self.in_1100):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _supervise(self) -> None:
        first = True
        while not self._stopping:
            try:
                await self._connect_once()
            except IBConnectError as e:
                self._log_outage(str(e))
                if isinstance(e, IBRefusal):
                    self.refused = str(e)
                    log.critical("IB %s: %s", self.name, e)
                    if self._first_attempt is not None:
                        self._first_attempt.set()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the supervisor die: log and reconnect
                log.exception("IB %s: session failed; reconnecting", self.name)
            finally:
                if first and self._first_attempt is not None and not self.ready:
                    self._first_attempt.set()
            first = False
            self._went_down()
            if self._stopping:
                return
            delay = self.backoff.next_delay()
            log.debug("IB %s: reconnecting in %.2f s", self.name, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        cfg = self.config
        self._lost = asyncio.Event()
        lost = self._lost
        conn = await connect(
            cfg.host,
            self.port,
            cfg.client_id,
            _Wrapper(self),
            timeout=cfg.connect_timeout_s,
            paper_only=cfg.paper_only,
            max_version=cfg.max_server_version or MAX_CLIENT_VER,
            on_lost=lambda reason: self._on_lost(reason, lost),
            on_rows=self._on_rows,
        )
        self.epoch += 1
        self.conn = conn
        self._connected_at = datetime.now(UTC)
        self._guard_until = 0.0  # a new connection: is a scheduled restart still ahead of it?
        if cfg.heartbeat_s > 0:
            conn.start_heartbeat(cfg.heartbeat_s, cfg.heartbeat_timeout_s, self._ask_time)
        conn.session.on_receive = self._stamp_read
        conn.session.order_ids_from = MD_REQ_IDS  # order ids and other requests' ids
        self.connected = True
        self.in_1100 = False
        self.server_version = conn.session.state.server_version
        accounts = conn.session.state.accounts
        if self.account and self.account not in accounts:
            conn.close()
            raise IBRefusal(
                f"venues.{self.name}.account ({mask_account(self.account)}) is not among the "
                f"accounts this gateway manages ({', '.join(map(mask_account, accounts))}); "
                "check the account setting"
            )
        if not self.account:
            if len(accounts) != 1:
                # A login with several accounts (an advisor's, or linked ones): trading the
                # first IB lists would be a guess with real money.
                conn.close()
                raise IBRefusal(
                    f"the gateway manages {len(accounts)} accounts "
                    f"({', '.join(map(mask_account, accounts))}) and venues.{self.name}.account "
                    "is not set: set it to the one to trade (from the environment or a secrets "
                    "file)"
                )
            self.account = accounts[0]
        if self.ports is not None and self.ports.portfolio is not None:
            self.ports.portfolio.broker_account(self.name).account = self.account
        outage = self.down_since
        if outage is not None:
            now = datetime.now(UTC)
            window = self.outages.expected(outage)
            quiet = window is not None and not self.outages.overrun(outage, now)
            log.log(
                logging.INFO if quiet else logging.WARNING,
                "IB %s: reconnected after %s of %.1f s (server version %d)",
                self.name,
                f"the expected {window.name}" if quiet else "an outage",  # type: ignore[union-attr]
                (now - outage).total_seconds(),
                self.server_version,
            )
            self.reconnects += 1
        else:
            log.info(
                "IB %s: connected to %s:%d, server version %d",
                self.name, cfg.host, self.port, self.server_version,
            )  # fmt: skip
        self.down_since = None
        self.backoff.reset()
        await self._after_connect()
        if self._first_attempt is not None:
            self._first_attempt.set()
        await lost.wait()

    def _on_lost(self, reason: str, lost: asyncio.Event) -> None:
        # A connect attempt that fails (accepted and closed) is reported by ``_log_outage``:
        # only the loss of a connection that was made is a drop.
        if not lost.is_set() and not self._stopping and self.conn is not None:
            conn = self.conn
            # We closed it (a corrupt stream, a hung gateway): say why, not "closed by the
            # gateway". Inside an expected window a drop is routine: INFO.
            why = conn.session.closed_reason
            window = self.outages.expected(datetime.now(UTC))
            if window is not None:
                log.info(
                    "IB %s: connection lost in the expected %s: %s",
                    self.name, window.name, why or reason,
                )  # fmt: skip
            elif why:
                log.error("IB %s: connection closed: %s", self.name, why)
            else:
                log.warning("IB %s: connection lost: %s", self.name, reason)
        lost.set()

    def _went_down(self) -> None:
        if self.connected:
            self._clear_books("the connection to IB was lost")
        self.connected = False
        self.ready = False
        self.reconciling = False
        if self.conn is not None:
            self.malformed += self.conn.session.malformed
            self.conn.close()
            self.conn = None
        # Data requests still paced belong to the dead session (its request ids, its
        # subscriptions) and are all made again after the reconnect: sent on the new session
        # they would subscribe twice (322) and corrupt the book the new snapshot rebuilds.
        # New orders and modifies still queued never reached IB: sent after an outage they
        # would trade at stale prices. They are dropped here and reconciliation reports them
        # (an order IB does not know: REJECTED, code -2; a modify IB did not apply: refused).
        # Cancels stay queued: getting out of risk is still wanted after the reconnect.
        self.pacer._queues[DATA].clear()
        self.pacer._queues[ORDER].clear()
        if self.down_since is None:
            self.down_since = since = datetime.now(UTC)
            self._outage_said = ""
            delay = (self.outages.alert_at(since) - since).total_seconds()
            self._later(max(delay, 0.0), lambda: self._outage_alert(since))
        for ev in self._ends.values():
            ev.set()
        self.contracts.fail_all("the connection to IB was lost")
        self.history.fail_all("the connection to IB was lost")

    def _log_outage(self, message: str) -> None:
        """A reconnect attempt failed: INFO inside an expected window (until it overruns),
        WARNING outside; the same failure again only at DEBUG (retries go on for as long as
        the outage lasts). ``_outage_alert`` raises it to ERROR, once."""
        if message == self._outage_said:
            log.debug("IB %s: still down: %s", self.name, message)
            return
        self._outage_said = message
        now = datetime.now(UTC)
        since = self.down_since or now
        window = self.outages.expected(since)
        if window is not None and not self.outages.overrun(since, now):
            log.info("IB %s: down during the expected %s: %s", self.name, window.name, message)
        else:
            log.warning("IB %s: %s", self.name, message)

    def _outage_alert(self, since: datetime) -> None:
        """The outage that began at ``since`` is still on at ``OutageSchedule.alert_at``: the
        end of its expected window plus the grace, or ``alert_after_s`` (outside every window).
        Logged at ERROR once per outage."""
        if self.down_since is not since or self._stopping or self.refused:
            return  # back up since (or a newer outage), or already CRITICAL
        down_s = (datetime.now(UTC) - since).total_seconds()
        window = self.outages.expected(since)
        what = f"the expected {window.name} has overrun: " if window is not None else ""
        log.error(
            "IB %s: %sthe gateway has been unreachable for %.0f s (since %s UTC), still "
            "reconnecting; new orders are refused until it is back. Last error: %s",
            self.name, what, down_s, since.strftime("%H:%M:%S"), self._outage_said or "none",
        )  # fmt: skip

    # ---- after every (re)connect -------------------------------------------------------------

    async def _after_connect(self) -> None:
        """Ids, reconciliation, contracts and subscriptions; then trading resumes."""
        self.reconciling = True
        state = self.conn.session.state  # type: ignore[union-attr]
        floor = max(self._hwm + 1, self._next_id)
        self._next_id = max(state.next_valid_id or 1, floor, MD_REQ_IDS)
        # The highest order id this process placed (forgotten orders' included).
        used = max(self._forgotten_max_ib, max(self._by_ib, default=0))
        if state.next_valid_id is not None and state.next_valid_id <= used:
            log.warning(
                "IB %s: the gateway's nextValidId %d is below ids already used (next %d): "
                "keeping %d so no order id is reused",
                self.name, state.next_valid_id, floor, self._next_id,
            )  # fmt: skip
        self._reserve(self._next_id)
        self.unreconciled = ()
        reconciled = await self._reconcile()
        if not self._session_alive(self.epoch):
            return  # lost meanwhile: the reconnect starts over
        # Market data and cancels need not wait for a reconciliation IB is slow to finish;
        # new orders do (``_held_back`` names what is missing).
        await self._qualify()
        self._subscribe_all()
        self.history.resubscribe(down_only=True)
        self._send_deferred_cancels()
        self.reconciling = False
        if not reconciled and not await self._reconcile_until_complete():
            return
        self.ready = True
        log.info("IB %s: ready (account %s)", self.name, mask_account(self.account))

    def _session_alive(self, epoch: int) -> bool:
        lost = self._lost
        return self.connected and epoch == self.epoch and not (lost is not None and lost.is_set())

    async def _reconcile(self, again: tuple[str, ...] = (), timeout: float = 0.0) -> bool:
        """Open and completed orders, executions, positions, account: before trading resumes.

        True once IB has ended its open orders, completed orders and executions (orders lost
        in the disconnect are then reported); False while one of them is missing
        (``unreconciled`` names which) or when the session ended. ``again``: ask only for
        these once more (a retry) and wait ``timeout`` for them (default
        ``reconcile_timeout_s``).
        """
        names = ("open_orders", "completed_orders", "executions", "positions", "account")
        if not again:
            self._ends = {n: asyncio.Event() for n in names}
        epoch = self.epoch
        ask = {
            "open_orders": lambda c: c.reqOpenOrders(),
            "completed_orders": lambda c: c.reqCompletedOrders(False),
            "executions": lambda c: c.reqExecutions(self._take_id(), ExecutionFilter()),
            "positions": lambda c: c.reqPositions(),
            "account": lambda c: c.reqAccountUpdates(True, self.account),
        }
        for name in again or names:
            self._request(DATA, ask[name])
        ends = [self._ends[n] for n in again or names]
        await self._wait_ends(ends, timeout or self.config.reconcile_timeout_s)
        if not self._session_alive(epoch):
            return False
        missing = [n for n, e in self._ends.items() if not e.is_set()]
        self.unreconciled = tuple(n for n in missing if n in _RECONCILE_REQUIRED)
        if self.unreconciled:
            return False
        if missing:
            log.warning(
                "IB %s: no end of %s after %.1f s (they stream on; trading does not wait)",
                self.name, " or ".join(missing), self.config.reconcile_timeout_s,
            )  # fmt: skip
        # Modifies IB did not apply before the disconnect (its openOrder shows the old terms).
        for live in self._by_ib.values():
            if live.pending_modify is not None and not live.done and live.epoch == epoch:
                live.pending_modify = None
                if live.cum_lots >= live.qty_lots:
                    live.done = True  # fills completed it while a modify up was pending
                self._emit(
                    _CANCEL_REJECTED, live, UNKNOWN_AFTER_RECONNECT,
                    "modify lost in the disconnect: the order is unchanged at IB",
                )  # fmt: skip
        # Orders that were in flight at the disconnect (or journaled by a process that died)
        # and that IB does not know.
        for live in list(self._by_coid.values()):
            if live.done or live.epoch == epoch:
                continue
            self.unknown_after_reconnect += 1
            log.error(
                "IB %s: order %d (IB id %d) was in flight at the disconnect and the "
                "gateway does not know it: reported as rejected (never reached IB)",
                self.name, live.client_order_id, live.ib_id,
            )  # fmt: skip
            live.done = True
            live.given_up = UNKNOWN_AFTER_RECONNECT
            live.last_error = (UNKNOWN_AFTER_RECONNECT, "unknown to IB after the reconnect")
            self._emit(
                _REJECTED, live, UNKNOWN_AFTER_RECONNECT,
                "unknown to IB after reconnect: the order never reached the gateway",
            )  # fmt: skip
        # Cancels IB may never have seen (written just before the drop, or into a socket
        # already gone) are sent again after reconciliation, for every order still open, unless
        # IB says it is already cancelling it. A cancel IB did see answers the repeat with
        # 10148 or 161 at worst, which changes nothing (``_order_error``).
        for live in self._by_coid.values():
            if (
                live.pending_cancel
                and not live.done
                and live.cancel_epoch != epoch
                and not (live.epoch == epoch and live.ib_status == "PendingCancel")
            ):
                self._deferred_cancels.add(live.client_order_id)
        self._wake()
        return True

    async def _wait_ends(self, ends: list[asyncio.Event], timeout: float) -> None:
        """Until every one of ``ends`` is set, the connection is lost, or ``timeout``."""

        async def every() -> None:
            for e in ends:
                await e.wait()

        waits = [asyncio.ensure_future(every())]
        if self._lost is not None:
            waits.append(asyncio.ensure_future(self._lost.wait()))
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    async def _reconcile_until_complete(self) -> bool:
        """Ask IB again for what reconciliation still misses, waiting longer each time (up to
        ``RECONCILE_RETRY_MAX_S``), until it is complete (True) or the session ends (False).
        Until then new orders are held back; cancels and market data go on."""
        epoch, started = self.epoch, time.monotonic()
        first = self.config.reconcile_timeout_s
        backoff = Backoff(first, max(first, RECONCILE_RETRY_MAX_S))
        log.error(
            "IB %s: reconciliation incomplete: no end of %s from IB after %.1f s; new orders "
            "are held back and the requests repeated until IB answers",
            self.name, " or ".join(self.unreconciled), first,
        )  # fmt: skip
        while True:
            wait = backoff.next_delay()
            if await self._reconcile(self.unreconciled, wait):
                break
            if not self._session_alive(epoch):
                return False
            log.warning(
                "IB %s: still no end of %s after asking %d times (%.0f s); asking again",
                self.name, " or ".join(self.unreconciled), backoff.attempts + 1,
                time.monotonic() - started,
            )  # fmt: skip
        log.warning(
            "IB %s: reconciliation complete after %.1f s (%d retries): trading resumes",
            self.name, time.monotonic() - started, backoff.attempts,
        )  # fmt: skip
        return True

    def _end(self, name: str) -> None:
        ev = self._ends.get(name)
        if ev is not None:
            ev.set()

    async def _qualify(self) -> None:
        """reqContractDetails for every instrument not qualified yet (cached afterwards)."""
        self.contracts.cache.new_session()
        todo = [
            (inst, self.contracts.request(self._specs[inst.id]))
            for inst in self._instruments
            if inst.id not in self.qualified
        ]
        for inst, fut in todo:
            try:
                q = await asyncio.wait_for(fut, self.config.reconcile_timeout_s)
            except TimeoutError:
                why = "IB sent no contract details for it in time (asked again at reconnect)"
            except ib_contracts.ContractError as e:
                why = f"IB cannot qualify it: {e}"
            else:
                self._apply_qualified(inst, q)
                continue
            self.unqualified[inst.id] = f"{inst.key}: {why}"
            log.error("IB %s: %s: %s; its orders are refused", self.name, inst.key, why)

    def _apply_qualified(self, inst: Instrument, q: ib_contracts.Qualified) -> None:
        self.qualified[inst.id] = q
        self._contracts[inst.id] = q.contract
        self._by_con_id[q.con_id] = inst.id
        problems = ib_contracts.check_against(inst, q)
        for problem in problems:
            log.error("IB %s: %s; its orders are refused until that is fixed", self.name, problem)
        if problems:
            self.unqualified[inst.id] = "; ".join(problems)
        else:
            self.unqualified.pop(inst.id, None)
        rule = q.market_rule()
        if rule:
            self._rule_of[inst.id] = rule
            if rule in self._rules:
                self._note_bands(inst.id)
            else:
                self._send_data(lambda client: client.reqMarketRule(rule))
        if self.ports is not None:
            self.ports.registry.update_venue_facts(inst.id, **q.venue_facts())
            if self.ports.portfolio is not None:
                # Positions reported before the contract was qualified (reconciliation asks for
                # them first) were kept by conId: they are this instrument's.
                view = self.ports.portfolio.broker_account(self.name)
                suffix = f" {q.con_id}"
                for key in [k for k in view.other_positions if k.endswith(suffix)]:
                    view.positions[inst.id] = view.other_positions.pop(key)

    def _on_market_rule(self, rule_id: int, increments: Iterable[Any]) -> None:
        bands = tuple(sorted((float(p.lowEdge), float(p.increment)) for p in increments))
        if not bands or any(not (inc > 0 and math.isfinite(inc)) for _, inc in bands):
            log.error("IB %s: market rule %d has no usable price bands: %s", self.name, rule_id,
                      bands)  # fmt: skip
            return
        self._rules[rule_id] = bands
        for iid, rule in self._rule_of.items():
            if rule == rule_id:
                self._note_bands(iid)

    def _note_bands(self, iid: int) -> None:
        """Check prices against the instrument's market rule where a band's increment is
        coarser than its tick_size (US options: 0.01 below 3, 0.05 from 3): IB rejects prices
        off it (110) though they are on the engine's grid."""
        rule = self._rule_of[iid]
        bands = self._rules[rule]
        inst = self.ports.registry[iid]  # type: ignore[union-attr]
        coarser = [(low, inc) for low, inc in bands if not _on_step(inst.tick_size, inc)]
        if not coarser:
            self._bands.pop(iid, None)
            return
        self._bands[iid] = (rule, bands)
        log.info(
            "IB %s: %s: IB's market rule %d prices %s; limit and stop prices off it are refused "
            "(tick_size %g is finer there)",
            self.name, inst.key, rule, _describe_bands(coarser), inst.tick_size,
        )  # fmt: skip

    def _check_band(self, iid: int, what: str, price: float) -> None:
        """Raise ``_OffMarketRule`` when ``price`` is off the instrument's market rule."""
        rule, bands = self._bands[iid]
        low, inc = bands[0]
        for edge, step in bands:
            if abs(price) < edge - 1e-12:
                break
            low, inc = edge, step
        if not _on_step(price, inc):
            key = self.ports.registry[iid].key  # type: ignore[union-attr]
            raise _OffMarketRule(
                f"{what} {price:g} for {key} is off IB's price grid: its market rule {rule} "
                f"prices from {low:g} in steps of {inc:g} (IB would reject it, error 110)"
            )

    # ---- historical bars -----------------------------------------------------------------------

    def historical_bars(self, instrument: Instrument | str | int, **request: Any):
        """Historical bars for a registry instrument (``HistoryClient.request`` arguments:
        ``end``, ``duration``, ``bar_size``, ``what_to_show``, ``use_rth``, ``keep_up_to_date``,
        ``on_update``): a future of ``Bar`` rows with UTC timestamps, paced by IB's rules."""
        assert self.ports is not None
        inst = self.ports.registry.resolve(instrument)
        if inst.id not in self._contracts:
            raise ValueError(f"{inst.key} is not traded on IB venue {self.name}")
        q = self.qualified.get(inst.id)
        request.setdefault("time_zone", q.time_zone if q is not None else "")
        return self.history.request(self._contracts[inst.id], **request)

    # ---- market data -------------------------------------------------------------------------

    def _subscribe_all(self, cancel_first: bool = False) -> None:
        """(Re)subscribe every instrument: L1, depth and tick-by-tick, as configured.

        ``cancel_first``: the gateway may still hold the subscriptions (same request ids), so
        cancel them before requesting them again.
        """
        cfg = self.config
        md = self._md
        assert md is not None
        if cancel_first:
            for sub in self._subs.values():
                for kind, req in self._streams(sub):
                    if req:
                        self._cancel_stream(kind, req)
        md.unbind_all()
        self._md_refused.clear()
        base = 1
        self._spare_ids = deque(range(base + 3 * len(self._instruments), MD_REQ_IDS))
        self._request(DATA, lambda c: c.reqMarketDataType(cfg.market_data_type))
        ts = self._now()
        for k, inst in enumerate(self._instruments):
            sub = self._subs[inst.id]
            sub.failed = ""
            sub.l1, sub.depth, sub.tbt = base + 3 * k, base + 3 * k + 1, base + 3 * k + 2
            # The book comes from L2 depth when configured, else (or when IB refuses depth
            # for it) from L1 quotes; not both: a quote replaces the book's top.
            self._write_deltas(md.clear_depth(inst.id, ts))
            for kind, req in self._streams(sub):
                self._ask_stream(sub, kind, req)
        self._wake()

    def _streams(self, sub: _Subscription) -> list[tuple[Subscription, int]]:
        """An instrument's streams as (kind, request id): its book's first (depth, or L1
        quotes when there is no depth or IB refused it), then its trades (tick-by-tick)."""
        book = (MD_L1, sub.l1) if self._l1_book[sub.instrument.id] else (MD_DEPTH, sub.depth)
        return [book, (MD_TBT, sub.tbt)] if self.config.tick_by_tick else [book]

    def _ask_stream(self, sub: _Subscription, kind: Subscription, req: int) -> None:
        """Bind request ``req`` to the instrument's ``kind`` rows and ask IB for the stream."""
        assert self._md is not None
        cfg = self.config
        iid = sub.instrument.id
        contract = self._contracts[iid]
        self._md.bind(req, iid, kind)
        if kind == MD_L1:
            self._request(DATA, lambda c: c.reqMktData(req, contract, "", False, False, []))
        elif kind == MD_DEPTH:
            self._request(
                DATA,
                lambda c: c.reqMktDepth(req, contract, self._depth_rows, cfg.smart_depth, []),
            )
        else:
            self._request(DATA, lambda c: c.reqTickByTickData(req, contract, "AllLast", 0, False))

    def _cancel_stream(self, kind: Subscription, req: int) -> None:
        if kind == MD_L1:
            self._request(DATA, lambda c: c.cancelMktData(req))
        elif kind == MD_DEPTH:
            self._request(DATA, lambda c: c.cancelMktDepth(req, self.config.smart_depth))
        else:
            self._request(DATA, lambda c: c.cancelTickByTickData(req))

    def _restart_stream(self, sub: _Subscription, kind: Subscription) -> None:
        """Cancel one of an instrument's streams and ask for it again under a fresh request
        id: rows of the old one still on their way are then dropped (unbound), not applied to
        the new one's book. The book the stream fed is emptied first (depth: the new stream
        starts from its first row; L1: its first tick sets one side)."""
        md = self._md
        assert md is not None
        field = _STREAM_FIELD[kind]
        old = getattr(sub, field)
        self._cancel_stream(kind, old)
        md.unbind(old)
        spare = self._spare_ids
        if spare:
            new = spare.popleft()
            spare.append(old)  # reused last, long after its late rows
        else:
            new = old  # as many instruments as ids allow: no spare, the same id again
        setattr(sub, field, new)
        iid = sub.instrument.id
        if kind == MD_DEPTH or (kind == MD_L1 and self._l1_book[iid]):
            # The book came from this stream, which had stopped: its prices are old, and a
            # quote of the new stream's first tick would pair them with the old other side.
            self._write_deltas(md.clear_depth(iid, self._now()))
        self._ask_stream(sub, kind, new)

    def _depth_refused(self, sub: _Subscription) -> None:
        """IB refused L2 for this instrument (309 too many depth requests, 10092...):
        take its book from L1 quotes instead, now and after every reconnect."""
        iid = sub.instrument.id
        if self._l1_book[iid]:
            return
        self._l1_book[iid] = True
        log.warning("IB %s: %s: falling back to L1 quotes for its book", self.name,
                    sub.instrument.key)  # fmt: skip
        if self._md is not None:
            self._md.unbind(sub.depth)
        self._ask_stream(sub, MD_L1, sub.l1)

    def _depth_reset(self, sub: _Subscription) -> None:
        """IB reset the instrument's deep book (317: empty it before applying new entries).

        IB sends the book again right after the 317, but the rows of a socket read reach the
        book before the read's error frames (``ClientSession``: rows in one batch, then the
        other frames), so rows that followed the 317 in the same read were applied to the old
        book. Emptying it now would lose them: the stream is restarted under a fresh id
        instead, and its first rows rebuild the book at full depth.
        """
        log.warning(
            "IB %s: %s: IB reset its market depth (317): book emptied, depth requested again",
            self.name, sub.instrument.key,
        )  # fmt: skip
        self._restart_stream(sub, MD_DEPTH)
        self._wake()

    def _clear_books(self, why: str) -> None:
        """Empty every instrument's book: its data has stopped (the connection or IB's link is
        down), and strategies and the risk gate must not take its last prices as live. The
        resubscription that follows the return rebuilds them."""
        md = self._md
        if md is None or not self._instruments:
            return
        ts = self._now()
        for inst in self._instruments:
            self._write_deltas(md.clear_depth(inst.id, ts))
        log.info("IB %s: books emptied until market data resumes (%s)", self.name, why)
        self._wake()

    def resubscribe(self, why: str, cancel_first: bool = False) -> None:
        """Subscribe again (market data and kept-up-to-date bars); with ``cancel_first``
        cancel first (the gateway still has them)."""
        if not self.connected:
            return
        self.resubscribes += 1
        log.info("IB %s: resubscribing market data (%s)", self.name, why)
        self._subscribe_all(cancel_first)
        self.history.resubscribe(cancel_first=cancel_first)

    def _stamp_read(self) -> None:
        """A socket read arrived: its market data is stamped ``ts_recv`` now, before decoding
        (so tick-to-order includes our decode, as a wire-to-wire figure should)."""
        self._ts_read = self.ports.clock.now() if self.ports is not None else 0

    def _on_rows(self, rows: np.ndarray, raw: np.ndarray) -> None:
        ports = self.ports
        md = self._md
        if ports is None or md is None:
            return
        self._md_rows_seen += len(rows)
        if self._md_watch:
            # A farm came back: note which streams deliver until its data check.
            np.put(self._md_last, rows["req_id"], self._md_rows_seen, mode="clip")
        deltas, quotes, trades = md.translate(rows, self._ts_read, raw)
        wrote = False
        if len(deltas):
            self._write_deltas(deltas)
            wrote = True
        if len(quotes) and ports.quotes is not None:
            ports.quotes.write(quotes)
            wrote = True
        if len(trades) and ports.trades is not None:
            ports.trades.write(trades)
            wrote = True
        if wrote:
            ports.wake()

    def _write_deltas(self, deltas: np.ndarray) -> None:
        ring = self.ports.deltas if self.ports is not None else None
        if ring is None or not len(deltas):
            return
        pos = 0
        while pos < len(deltas):
            room = max(ring.capacity - len(ring), 0)
            if room == 0:
                self.ports.wake()  # type: ignore[union-attr]
                room = max(ring.capacity - len(ring), 0)
                if room == 0:
                    ring.write(deltas[pos:])  # the ring's policy decides what is lost
                    return
            ring.write(deltas[pos : pos + room])
            pos += room

    def _farm_back(self, code: int, msg: str) -> None:
        """A data farm says OK (2104 market data, 2106 historical, 2158 sec-def): if it was
        down, check after ``data_check_s`` that each stream it may serve delivers again (IB
        does not say which instruments a farm serves)."""
        farm = _farm_name(code, msg)
        if self._farm_down.pop(farm, None) is None or code == 2158:
            return  # a status notice (every connect sends them), or no stream to check
        epoch, delay = self.epoch, self.config.data_check_s
        if code == 2104:
            self._md_watch += 1
            mark = self._md_rows_seen
            self._later(delay, lambda: self._check_streams(farm, epoch, mark))
        elif counts := self.history.update_counts():
            self._later(delay, lambda: self._check_bars(farm, epoch, counts))

    def _check_streams(self, farm: str, epoch: int, mark: int) -> None:
        """Restart each stream that delivered nothing since ``farm`` came back (at ``mark``
        rows seen). A trade stream is quiet whenever nothing trades: it counts as dead only
        with its instrument's book stream. Streams IB refused are left alone (a reconnect asks
        for them again)."""
        self._md_watch -= 1
        if not self.connected or epoch != self.epoch:
            return
        last, refused = self._md_last, self._md_refused
        dead: list[tuple[_Subscription, Subscription]] = []
        for sub in self._subs.values():
            streams = self._streams(sub)
            book = streams[0][1]
            if book not in refused and last[book] > mark:
                continue
            dead += [(sub, k) for k, r in streams if r not in refused and last[r] <= mark]
        if not dead:
            log.info("IB %s: market data resumed after the farm blip (%s)", self.name, farm)
            return
        log.warning(
            "IB %s: no market data for %s %.0f s after %s came back: asking for it again",
            self.name, ", ".join(sorted({sub.instrument.key for sub, _ in dead})),
            self.config.data_check_s, farm,
        )  # fmt: skip
        self.resubscribes += 1
        for sub, kind in dead:
            self._restart_stream(sub, kind)
        self._wake()

    def _check_bars(self, farm: str, epoch: int, before: dict[int, int]) -> None:
        """Ask again for each kept-up-to-date bar subscription with no update since ``farm``
        (historical data) came back (``before``: their update counts then)."""
        if not self.connected or epoch != self.epoch:
            return
        now = self.history.update_counts()
        silent = [req for req, n in before.items() if now.get(req) == n]
        if not silent:
            log.info("IB %s: bars resumed after the farm blip (%s)", self.name, farm)
            return
        log.warning(
            "IB %s: %d keep-up-to-date bar subscription(s) silent %.0f s after %s came back: "
            "asking for them again",
            self.name, len(silent), self.config.data_check_s, farm,
        )  # fmt: skip
        self.resubscribes += 1
        self.history.resubscribe(silent, cancel_first=True)

    # ---- orders out --------------------------------------------------------------------------

    def _held_back(self) -> str:
        if self.refused:
            return self.refused
        if not self.connected:
            return f"IB venue {self.name} is not connected (reconnecting); order held back"
        if self.in_1100:
            return "IB reports connectivity lost (1100); orders held back until it is restored"
        if self.unreconciled:
            return (
                f"IB venue {self.name}: reconciliation incomplete (no end of "
                f"{' or '.join(self.unreconciled)} from IB yet; asking again); order held back"
            )
        if self.reconciling or not self.ready:
            return "IB venue is reconciling after a reconnect; order held back"
        if time.time() >= self._guard_until:
            # Worked out again only when the answer can change (twice a day per restart window,
            # and at every new connection).
            now = datetime.now(UTC)
            self._guard_until = self.outages.guard_changes(now).timestamp()
            found = self.outages.guarding(now, self._connected_at)
            if found is None:
                self._guarding = ""
            else:
                window, start = found
                end = start + timedelta(minutes=window.minutes)
                self._guarding = (
                    f"the expected {window.name} is due at {start:%H:%M} {window.tz} and has not "
                    f"cut this connection yet: new orders are held back from "
                    f"{self.outages.guard_s:.0f} s before it until the gateway has restarted "
                    f"(at the latest until {end:%H:%M})"
                )
        return self._guarding

    def submit(self, intent: OrderIntent, order: Order | None) -> None:
        why = self._held_back()
        if why:
            self.held_back += 1
            self._reject_intent(intent, HELD_BACK, why)
            return
        if self.unqualified:
            why = self.unqualified.get(intent.instrument_id)
            if why is not None:
                self._reject_intent(intent, NOT_QUALIFIED, f"IB venue {self.name}: {why}")
                return
        if intent.order_type == _MARKET and intent.instrument_id in self._crypto:
            why = _crypto_market_refusal(intent)
            if why:
                key = self.ports.registry[intent.instrument_id].key  # type: ignore[union-attr]
                self._reject_intent(
                    intent, IB_ORDER_REJECTED, f"IB venue {self.name}: {key}: not sent: {why}"
                )
                return
        parent_ib = 0
        if intent.extended and intent.parent_id:
            parent_ib = self._parent_ib(intent)
            if not parent_ib:
                return
        proto = self._proto(intent)
        ib_id = self._next_id
        self._next_id = ib_id + 1
        if ib_id >= self._reserved:
            self._reserve(ib_id)
        live = _Live(ib_id, intent, proto, self.epoch)
        if intent.extended:
            live.extras = order.extras if order is not None else OrderExtras.of(intent)
            live.parent_ib = parent_ib
        try:
            frame = self._place_frame(live, intent.qty_lots, intent.price_ticks)
        except _OffMarketRule as e:
            self._reject_intent(intent, IB_OFF_TICK, f"IB venue {self.name}: not sent: {e}")
            return
        except (IbEncodeError, ValueError, OverflowError) as e:
            self._reject_intent(intent, NOT_ENCODABLE, f"IB cannot take this order: {e}")
            return
        self._by_ib[ib_id] = live
        self._by_coid[live.client_order_id] = live
        intent.ts_sent = self.ports.clock.now()  # type: ignore[union-attr]
        if self._send(ORDER, frame):
            self.orders_sent += 1
            return
        # The socket died under it (the gateway dropped and the supervisor has not seen it
        # yet): nothing was written, so IB never sees it; sending it after the reconnect would
        # trade at stale prices. Its id stays used.
        self.held_back += 1
        live.done = True
        self._emit(
            _REJECTED, live, HELD_BACK,
            f"the connection to IB venue {self.name} dropped as the order was sent: not sent",
        )  # fmt: skip

    def warm(self, intent: OrderIntent) -> bool:
        """A dry run of ``submit`` for a plain order this venue sent (``intent`` names it by
        client order id, with the lots and ticks it was sent with): the same checks and the
        same ``_place_frame`` on a scratch ``_Live`` with the order's own IB id, encoded into a
        frame that is dropped. Nothing is sent or queued (no pacer, no socket), no id is taken,
        no order is registered, no counter moves; the proto's per-order fields are put back as
        they were. Then an orderStatus for it goes the answer's way in as far as the parse
        (``ClientSession.warm_receive``: a scratch decoder, no callback). Skipped (False) when
        orders are held back, for an order sent with extras, or when the proto has no current
        template (preparing one would change the cache). ``Engine.warm_order_path`` calls it
        through the router while the engine is idle."""
        if self._held_back():
            return False
        sent = self._by_coid.get(intent.client_order_id)
        if sent is None or sent.extras is not None or not sent.ib_id:
            return False
        o = sent.proto
        found = self._prepared.get(o)
        if (
            found is None
            or found[0] is not self._contracts[sent.instrument_id]
            or found[1].server_version != self.server_version
        ):
            return False
        scratch = _Live(sent.ib_id, intent, o, self.epoch)
        saved = o.totalQuantity, o.lmtPrice, o.orderRef
        try:
            self._place_frame(scratch, intent.qty_lots, intent.price_ticks)
        except (IbEncodeError, ValueError, OverflowError):
            return False
        finally:
            o.totalQuantity, o.lmtPrice, o.orderRef = saved
        self.ports.clock.now()  # type: ignore[union-attr]
        if self.conn is not None:  # and the way its answer comes back, as far as the parse
            self.conn.session.warm_receive(sent.ib_id)
        return True

    def restore(
        self,
        orders: Iterable[Order],
        fills: Iterable[JournaledFill],
        modifies: dict[int, tuple[int, int, OrderExtras | None]] | None = None,
    ) -> int:
        """Orders and fills from the engine's journal, given before ``start``; returns how many
        orders are this venue's.

        ``modifies`` are the (lots, ticks, new extras or None) of modifies requested and not yet
        answered, by client order id. The first reconciliation then matches IB's open and
        completed orders and its executions to these orders by ``orderRef`` (our client order
        id) and learns their IB ids: an execution already journaled is not reported again, one
        IB made while the engine was down is, a cancel or reject IB reported meanwhile is, and
        an open order IB does not know (journaled just before the process died, never written
        to the socket) is reported REJECTED with ``UNKNOWN_AFTER_RECONNECT``. No order or
        modify is sent again; a cancel the journal has pending is, for an order IB still works
        (IB may never have seen it).
        """
        mine = {i.id for i in self._instruments}
        shape = OrderIntent()
        n = 0
        for order in orders:
            if order.instrument_id not in mine or order.client_order_id in self._by_coid:
                continue
            shape.instrument_id, shape.side = order.instrument_id, order.side
            shape.order_type, shape.tif = order.order_type, order.tif
            x = order.extras
            if x is None:
                shape.reset_extras()
            else:
                shape.set_extras(
                    x.stop_price, x.trail_amount, x.trail_percent, x.limit_offset,
                    x.display_lots, x.good_till_ns, x.algo, x.algo_params, x.parent_id,
                    x.oca_group, x.oca_type, x.transmit,
                )  # fmt: skip
            live = _Live(0, order, self._proto(shape), -1)
            live.extras = x
            live.cum_lots = order.filled_lots
            live.accepted = order.state not in (OrderState.INITIALIZED, OrderState.SUBMITTED)
            live.done = not order.is_open
            if modifies and order.client_order_id in modifies and not live.done:
                # IB's openOrder shows whether it applied it; reconciliation reports either way.
                live.pending_modify = modifies[order.client_order_id]
            live.pending_cancel = order.state == OrderState.PENDING_CANCEL
            self._by_coid[order.client_order_id] = live
            n += 1
        for f in fills:
            live = self._by_coid.get(f.client_order_id)
            if live is not None and not f.exec_id.endswith(BUST_SUFFIX):  # a reversal is ours
                x = f.exec_id
                key = x.rsplit(".", 1)[0] if x.count(".") >= 3 else x
                rec = _Exec(
                    x, f.lots, live, f.price_ticks, f.commission, f.later_commission,
                    f.commission_known,
                )  # fmt: skip
                self._note_exec(key, rec)
        return n

    def _parent_ib(self, intent: OrderIntent) -> int:
        """The IB order id of a child's parent, or 0 after refusing the child: the parent must
        have been sent through this venue and not have ended unfilled."""
        parent_id = intent.parent_id
        parent = self._by_coid.get(parent_id)
        if parent is not None and not (parent.done and parent.cum_lots < parent.qty_lots):
            return parent.ib_id
        where = "not" if parent is None else "no longer"
        self._reject_intent(
            intent, PARENT_UNKNOWN,
            f"parent order {parent_id} is {where} working at {self.name}: a child goes to its "
            "parent's venue, after the parent",
        )  # fmt: skip
        return 0

    def cancel(self, order: Order) -> None:
        live = self._by_coid.get(order.client_order_id)
        if live is None or live.done:
            self._emit_unknown(order, "cancel")
            return
        live.pending_cancel = True
        if not self.connected or self.reconciling:
            # Sent after the reconnect, if the order is still open then.
            self._deferred_cancels.add(live.client_order_id)
            return
        self._send_cancel(live)

    def modify(
        self, order: Order, qty_lots: int, price_ticks: int, extras: OrderExtras | None = None
    ) -> None:
        """IB's modify: placeOrder again under the order's id, with the new quantity, limit
        price and, given ``extras``, the new stop (auxPrice) or trail (auxPrice as the amount,
        or trailingPercent). MODIFIED once IB's openOrder shows all of them."""
        live = self._by_coid.get(order.client_order_id)
        if live is None or live.done:
            self._emit_unknown(order, "modify")
            return
        why = self._held_back()
        if why:
            self.held_back += 1
            self._emit(_CANCEL_REJECTED, live, HELD_BACK, why)
            return
        try:
            frame = self._place_frame(live, qty_lots, price_ticks, extras)
        except _OffMarketRule as e:
            self._emit(_CANCEL_REJECTED, live, IB_OFF_TICK, f"IB venue {self.name}: not sent: {e}")
            return
        except (IbEncodeError, ValueError, OverflowError) as e:
            self._emit(_CANCEL_REJECTED, live, NOT_ENCODABLE, f"IB cannot take this modify: {e}")
            return
        if not self._send(ORDER, frame):
            # The socket died under it: not written, and not sent after the reconnect either
            # (stale prices); the order is unchanged at IB.
            self.held_back += 1
            self._emit(
                _CANCEL_REJECTED, live, HELD_BACK,
                f"the connection to IB venue {self.name} dropped as the modify was sent: not "
                "sent, the order is unchanged",
            )  # fmt: skip
            return
        live.pending_modify = (qty_lots, price_ticks, extras)

    def cancel_all(self) -> None:
        """IB's global cancel: every open order of the account, whichever client placed it."""
        if not self.connected:
            self._deferred_cancels.update(
                c for c, live in self._by_coid.items() if not live.done
            )  # fmt: skip
            return
        self._request(CANCEL, lambda c: c.reqGlobalCancel(OrderCancel()))

    def _send_cancel(self, live: _Live) -> None:
        frame = encode_cancel_order(self.server_version, live.ib_id, self._cancel_msg)
        # Not acknowledged yet, its placeOrder may still wait in the pacer: a cancel in the
        # cancels' lane would reach IB first (10147, no such order) and the order would then
        # go out and work. In the orders' lane it follows its order.
        if self._send(CANCEL if live.accepted else ORDER, frame):
            self.cancels_sent += 1
            live.cancel_epoch = self.epoch
        else:  # the socket died under it: sent after the reconnect, if the order is open then
            self._deferred_cancels.add(live.client_order_id)

    def _send_deferred_cancels(self) -> None:
        coids, self._deferred_cancels = self._deferred_cancels, set()
        for coid in coids:
            live = self._by_coid.get(coid)
            if live is not None and (not live.done or live.given_up):
                self._send_cancel(live)

    def _proto(self, it: OrderIntent) -> IbOrder:
        """The ibapi Order for this shape (instrument, side, type, TIF, algo); reused: the
        per-order fields are patched into it and the frame is encoded at once."""
        algo = it.algo if it.extended else 0
        params = it.algo_params if algo else None
        key = (it.instrument_id, it.side, it.order_type, it.tif, it.extended, algo, params)
        o = self._protos.get(key)
        if o is None:
            o = IbOrder()
            o.action = "BUY" if it.side == _BUY else "SELL"
            o.orderType = _IB_TYPE[it.order_type]
            o.tif = _TIF[it.tif]
            o.account = self.account
            if algo:
                o.algoStrategy = _IB_ALGO[algo]
                o.algoParams = [TagValue(k, v) for k, v in params or ()]
            self._protos[key] = o
        return o

    def _place_frame(
        self, live: _Live, qty_lots: int, price_ticks: int, extras: OrderExtras | None = None
    ) -> bytes:
        """The placeOrder frame for a new order or a modify (IB: the same id, sent again);
        ``extras``: a modify's new ones (else the order's, ``live.extras``, which take a
        modify's only once IB confirms it).

        The per-order fields are written into the proto (``live.proto`` stays what was sent).
        An order without extras changes only quantity, limit price and orderRef in a proto whose
        other fields are fixed since ``_proto`` made it, so it is encoded by a template prepared
        for that proto; the template is made again when the instrument's contract object or the
        server version differs from what it was made for (re-qualification, a reconnect). An
        order with extras writes more fields into its proto, so it takes the generic encoder,
        which checks the whole shape, and the proto's template is dropped: a later order
        without extras on it prepares one from what the proto then holds, as sent generically.
        """
        o = live.proto
        iid = live.instrument_id
        o.totalQuantity = qty = Decimal(qty_lots) * self._lot_dec[iid]
        if price_ticks == NO_PRICE or o.orderType not in _LIMIT_PRICED:
            o.lmtPrice = lmt = UNSET_DOUBLE
        else:
            tick = self.ports.registry[iid].tick_size  # type: ignore[union-attr]
            o.lmtPrice = lmt = round(price_ticks * tick, self._price_digits[iid])
            if iid in self._bands:
                self._check_band(iid, "limit price", lmt)
        o.orderRef = ref = str(live.client_order_id)
        contract = self._contracts[iid]
        x = live.extras if extras is None else extras
        if x is None:
            found = self._prepared.get(o)
            if (
                found is None
                or found[0] is not contract
                or found[1].server_version != self.server_version
            ):
                found = self._prepared[o] = (
                    contract,
                    prepare_place_order(self.server_version, contract, o),
                )
            return found[1].encode(live.ib_id, qty, lmt, ref)
        self._prepared.pop(o, None)
        self._apply_extras(o, x, iid)
        if iid in self._bands and o.orderType in ("STP", "STP LMT") and o.auxPrice != UNSET_DOUBLE:
            self._check_band(iid, "stop price", o.auxPrice)
        # IB's attached orders and OCA groups. An order IB has acknowledged is transmitted:
        # a modify of it must be too (else TWS would hold the change untransmitted).
        o.parentId = live.parent_ib
        o.ocaGroup = x.oca_group
        o.ocaType = x.oca_type
        o.transmit = x.transmit or live.accepted
        return encode_place_order(self.server_version, live.ib_id, contract, o)

    def _apply_extras(self, o: IbOrder, x: OrderExtras, iid: int) -> None:
        """Stop, trail, iceberg and good-till fields, as IB names them (``OrderExtras``)."""
        digits = self._price_digits[iid]
        stop = round(x.stop_price, digits) if math.isfinite(x.stop_price) else UNSET_DOUBLE
        trailing = o.orderType in ("TRAIL", "TRAIL LIMIT")
        if trailing:
            o.auxPrice = x.trail_amount if math.isfinite(x.trail_amount) else UNSET_DOUBLE
            o.trailingPercent = x.trail_percent if math.isfinite(x.trail_percent) else UNSET_DOUBLE
            o.trailStopPrice = stop
            o.lmtPriceOffset = x.limit_offset if math.isfinite(x.limit_offset) else UNSET_DOUBLE
        else:
            o.auxPrice = stop
        o.displaySize = (
            int(Decimal(x.display_lots) * self._lot_dec[iid]) if x.display_lots > 0 else 0
        )
        o.goodTillDate = (
            datetime.fromtimestamp(x.good_till_ns / 1e9, UTC).strftime("%Y%m%d-%H:%M:%S")
            if x.good_till_ns
            else ""
        )

    # ---- outgoing bytes: paced ---------------------------------------------------------------

    def _send(self, priority: int, frame: bytes) -> bool:
        """Write ``frame`` now, or queue it behind the pacer. False when the socket is gone
        (the gateway dropped it and the supervisor has not taken the venue down yet): nothing
        was written or queued, and the caller decides what becomes of the message."""
        conn = self.conn
        if conn is None:
            return False
        if self.pacer.send_now(time.monotonic()):
            return conn.write(frame)  # nothing queued and a token free: the usual case
        if not conn.connected:
            return False
        self.pacer.submit(priority, frame)
        self._flush_pacer()
        return True

    def _send_data(self, call: Any) -> None:
        self._request(DATA, call)

    def _request(self, priority: int, call: Any) -> None:
        """Make a request through ibapi's ``EClient`` and queue its frames at ``priority``."""
        conn = self.conn
        if conn is None:
            return
        call(conn.client)
        for frame in conn.session.take_frames():
            self.pacer.submit(priority, frame)
        self._flush_pacer()

    def _flush_pacer(self) -> None:
        conn = self.conn
        if conn is None or not conn.connected:  # queued frames wait for _went_down's verdict
            return
        loop_time = time.monotonic()
        out = self.pacer.drain(loop_time)
        if out:
            conn.write(out)
        due = self.pacer.next_due(loop_time)
        if due is not None and self._pacer_timer is None:
            with contextlib.suppress(RuntimeError):
                self._pacer_timer = asyncio.get_running_loop().call_later(
                    max(due - loop_time, 0.001), self._pacer_fire
                )

    def _pacer_fire(self) -> None:
        self._pacer_timer = None
        self._flush_pacer()

    def _ask_time(self) -> None:
        """The heartbeat's question (any answer will do), ahead of queued orders and data
        requests: a backlog must not make a live gateway look hung."""
        self._request(CANCEL, _req_current_time)

    def _slow_down(self) -> None:
        # The minute counts from the latest 100: the pacer restores the rate itself then.
        rate = self.pacer.slow_down(time.monotonic(), 60.0)
        log.warning(
            "IB %s: error 100 (message rate exceeded): pacing at %.1f msg/s for 60 s",
            self.name, rate,
        )  # fmt: skip

    # ---- ids ---------------------------------------------------------------------------------

    def _take_id(self) -> int:
        return self._take_ids(1)

    def _take_ids(self, n: int) -> int:
        first = self._next_id
        self._next_id = first + n
        if self._next_id > self._reserved:
            self._reserve(self._next_id)
        return first

    def _on_next_valid_id(self, order_id: int) -> None:
        # reqIds answers and the connect-time id: never move backwards.
        if self.connected and order_id > self._next_id:
            self._next_id = order_id

    def _reserve(self, upto: int) -> None:
        """Persist a high-water mark covering ids below ``upto + order_id_block``."""
        self._reserved = upto + self.config.order_id_block
        self._save_hwm(self._reserved)

    def _load_hwm(self) -> int:
        path = self.config.state_file
        if not path:
            return 0
        try:
            return int(json.loads(Path(path).read_text())["order_id_high_water"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error(
                "IB %s: state file %s unreadable (%s): starting from the gateway's nextValidId",
                self.name, path, e,
            )  # fmt: skip
            return 0

    def _save_hwm(self, hwm: int) -> None:
        self._hwm = max(self._hwm, hwm - 1)
        path = self.config.state_file
        if not path:
            return
        p = Path(path)
        tmp = p.with_suffix(p.suffix + ".tmp")
        data = json.dumps({"order_id_high_water": self._hwm, "venue": self.name})
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except OSError as e:
            log.error("IB %s: cannot write state file %s: %s", self.name, path, e)

    # ---- order events in ---------------------------------------------------------------------

    def _match(self, ib_id: int, order_ref: str, perm_id: int) -> _Live | None:
        if ib_id in _UNSET_IDS:
            ib_id = 0
        if perm_id in _UNSET_IDS:  # stored, two orders would share it in ``_by_perm``
            perm_id = 0
        live = self._by_ib.get(ib_id) if ib_id else None
        if live is None and order_ref:
            with contextlib.suppress(ValueError):
                live = self._by_coid.get(int(order_ref))
            if live is not None and not live.ib_id and ib_id:
                # An order restored from the journal learns its IB id from IB's report.
                live.ib_id = ib_id
                self._by_ib[ib_id] = live
        if live is None and perm_id:
            live = self._by_perm.get(perm_id)
        if live is not None and perm_id and not live.perm_id:
            live.perm_id = perm_id
            self._by_perm[perm_id] = live
        return live

    def _on_open_order(
        self, ib_id: int, contract: Contract, order: IbOrder, status: str, completed: bool = False
    ) -> None:
        live = self._match(ib_id, order.orderRef, order.permId)
        if live is None:
            self.foreign_events += 1
            log.debug(
                "IB %s: open order %d is not ours (orderRef %r)", self.name, ib_id, order.orderRef
            )
            return
        live.epoch = self.epoch
        pm = live.pending_modify
        if pm is not None and not live.done:
            qty = _lots(order.totalQuantity, self._lot_dec[live.instrument_id])
            px = order.lmtPrice
            tick = self.ports.registry[live.instrument_id].tick_size  # type: ignore[union-attr]
            ticks = (
                NO_PRICE
                if px in (UNSET_DOUBLE, None) or not math.isfinite(px)
                else round(px / tick)
            )
            x = pm[2]
            if (
                qty == pm[0]
                and (ticks == pm[1] or pm[1] == NO_PRICE)
                and (x is None or self._shows_trigger(live, order, x))
            ):
                live.pending_modify = None
                live.qty_lots, live.price_ticks = pm[0], pm[1]
                if x is not None:
                    live.extras = x
                if live.cum_lots >= live.qty_lots:
                    live.done = True
                self._emit(_MODIFIED, live)
        self._on_status(live, status)
        if completed:
            self._wake()

    def _shows_trigger(self, live: _Live, order: IbOrder, x: OrderExtras) -> bool:
        """Does IB's openOrder carry the stop or trail of extras ``x`` (a modify that moved
        them)? A trailing order's trail, not its stop (IB moves that itself); a STOP or
        STOP_LIMIT's stop (auxPrice), in ticks."""
        if live.proto.orderType in ("TRAIL", "TRAIL LIMIT"):
            if math.isfinite(x.trail_amount):
                return _same_number(order.auxPrice, x.trail_amount)
            return _same_number(order.trailingPercent, x.trail_percent)
        stop = order.auxPrice
        if stop in (UNSET_DOUBLE, None) or not math.isfinite(stop):
            return False
        tick = self.ports.registry[live.instrument_id].tick_size  # type: ignore[union-attr]
        return round(stop / tick) == x.stop_ticks

    def _on_order_status(
        self, ib_id: int, status: str, perm_id: int, remaining: Any = None
    ) -> None:
        live = self._match(ib_id, "", perm_id)
        if live is None:
            self.foreign_events += 1
            return
        live.epoch = self.epoch
        self._on_status(live, status, remaining)
        self._wake()

    def _on_status(self, live: _Live, status: str, remaining: Any = None) -> None:
        """IB's status for the order (``remaining``: orderStatus's, None from openOrder)."""
        live.ib_status = status
        if live.done:
            if live.given_up:
                self._given_up_status(live, status)
            return
        if status in _WORKING:
            if not live.accepted:
                live.accepted = True
                self._emit(_ACCEPTED, live)
        elif status in _CANCEL_STATES:
            live.done = True
            live.pending_cancel = False  # answered
            code, text = live.last_error
            self._emit(_CANCELLED, live, code, text or f"IB: {status}")
        elif status == "Inactive":
            live.done = True
            code, text = live.last_error
            self._emit(_REJECTED, live, code, text or "IB: order inactive")
        elif status == "Filled" and remaining == 0 and live.pending_modify is None:
            # Nothing works at IB any more, whatever the fills received so far say (they come
            # from execDetails, in no guaranteed order with this). With a modify pending, its
            # answer settles it: confirmed, the fills then cover the new size; refused, the old.
            if not live.accepted:
                live.accepted = True
                self._emit(_ACCEPTED, live)
            live.done = True
            if not live.remembered:
                self._remember_done(live)

    def _given_up_status(self, live: _Live, status: str) -> None:
        """IB's word of an order this venue ended on its own inference (``given_up``): working
        there after all, it is cancelled at once (the engine has it finished; its executions
        still count, as late fills); ended there too, nothing more is expected of it."""
        if status in _WORKING:
            if live.cancel_epoch != self.epoch:  # once per session
                _, text = live.last_error
                log.error(
                    "IB %s: IB reports order %d (IB id %d) working after it was given up on "
                    "error %d (%s): cancelling it",
                    self.name, live.client_order_id, live.ib_id, live.given_up, text,
                )  # fmt: skip
                live.pending_cancel = True
                self._send_cancel(live)
        elif status in _CANCEL_STATES or status == "Inactive" or status == "Filled":
            live.given_up = 0
            live.pending_cancel = False

    def _on_exec(self, contract: Contract, execution: Any) -> None:
        exec_id: str = execution.execId
        key = exec_id.rsplit(".", 1)[0] if exec_id.count(".") >= 3 else exec_id
        seen = self._execs.get(key)
        if seen is not None:
            if seen.exec_id == exec_id or exec_id < seen.exec_id:
                self.duplicate_execs += 1
                return
            self._correct(seen, exec_id, execution)
            return
        live = self._match(execution.orderId, execution.orderRef, execution.permId)
        if live is None:
            self.foreign_events += 1
            log.info("IB %s: execution %s is not for one of our orders", self.name, exec_id)
            return
        live.epoch = self.epoch
        lots = _lots(execution.shares, self._lot_dec[live.instrument_id])
        ticks = self._fill_ticks(live, execution.price)
        commission = self._early_commission.pop(exec_id, None)
        rec = _Exec(exec_id, lots, live, ticks, commission or 0.0, 0.0, commission is not None)
        self._note_exec(key, rec)
        if not live.accepted and not live.done:
            live.accepted = True
            self._emit(_ACCEPTED, live)
        self._emit_fill(live, lots, ticks, exec_id, commission or 0.0)
        self._wake()

    def _correct(self, rec: _Exec, exec_id: str, execution: Any) -> None:
        """IB replaced execution ``rec`` by ``exec_id`` (the same id up to its last ``.NN``;
        the correction carries the full corrected shares and price). The earlier one is
        reversed under its id + ``BUST_SUFFIX``: a fill of minus its lots at its price, giving
        back the commission that fill carried, and a COMMISSION event giving back one reported
        after it; the corrected one follows as a fill of its own, which its own commission
        report joins. Positions, P&L, fees and filled quantities then come out as if only the
        corrected execution had happened."""
        live = rec.live
        lots = _lots(execution.shares, self._lot_dec[live.instrument_id])
        ticks = self._fill_ticks(live, execution.price)
        log.warning(
            "IB %s: order %d: execution %s (%d lots at %d ticks) corrected by %s (%d lots at %d "
            "ticks): the first reversed, the correction booked",
            self.name, live.client_order_id, rec.exec_id, rec.lots, rec.ticks, exec_id, lots,
            ticks,
        )  # fmt: skip
        bust = rec.exec_id + BUST_SUFFIX
        self._emit_fill(live, -rec.lots, rec.ticks, bust, -rec.fill_fee)
        if rec.later_fee:
            ev = self._emit(_COMMISSION, live)
            ev.exec_id = bust
            ev.commission = -rec.later_fee
        commission = self._early_commission.pop(exec_id, None)
        rec.exec_id, rec.lots, rec.ticks = exec_id, lots, ticks
        rec.fill_fee, rec.later_fee = commission or 0.0, 0.0
        rec.commission_sent = commission is not None
        self._emit_fill(live, lots, ticks, exec_id, rec.fill_fee)
        self._wake()

    def _fill_ticks(self, live: _Live, price: float) -> int:
        inst = self.ports.registry[live.instrument_id]  # type: ignore[union-attr]
        ticks = round(price / inst.tick_size)
        booked = ticks * inst.tick_size
        if abs(price - booked) > 1e-9 * max(1.0, abs(price)):
            # Fills are whole ticks: a price between them (a sub-penny fill, a tick_size coarser
            # than IB's minTick) is booked at the nearest, and P&L drifts from IB's. Said loudly
            # once per instrument, then counted.
            self.off_grid_fills += 1
            level = logging.DEBUG if inst.id in self._off_grid_said else logging.WARNING
            self._off_grid_said.add(inst.id)
            log.log(
                level,
                "IB %s: %s filled at %r, between the engine's ticks of %g: booked at %r, so "
                "positions' cost and P&L differ from IB's by %+.6g a unit (a tick_size equal to "
                "IB's minTick avoids it unless IB fills below it); status off_grid_fills counts",
                self.name, inst.key, price, inst.tick_size, booked, booked - price,
            )  # fmt: skip
        return ticks

    def _emit_fill(self, live: _Live, lots: int, ticks: int, exec_id: str, fee: float) -> None:
        live.cum_lots += lots
        pm = live.pending_modify
        # While a modify is pending IB may already work the new size: the order is done only
        # when the fills cover both (IB's word on the modify settles it either way).
        if live.cum_lots >= (live.qty_lots if pm is None else max(live.qty_lots, pm[0])):
            live.done = True
        ev = self._emit(_FILL, live)
        ev.fill_lots = lots
        ev.fill_price_ticks = ticks
        ev.exec_id = exec_id
        ev.commission = fee

    def _on_commission(self, exec_id: str, commission: float) -> None:
        if commission is None or not math.isfinite(commission) or commission == UNSET_DOUBLE:
            return
        key = exec_id.rsplit(".", 1)[0] if exec_id.count(".") >= 3 else exec_id
        rec = self._execs.get(key)
        if rec is None or exec_id > rec.exec_id:
            # Ahead of its execution (or of the correction it belongs to), or for one that is
            # not ours (or forgotten): kept for a while, the oldest dropped past
            # ``EARLY_COMMISSIONS``.
            early = self._early_commission
            early[exec_id] = commission
            if len(early) > EARLY_COMMISSIONS:
                del early[next(iter(early))]
            return
        if exec_id != rec.exec_id:
            return  # its execution was replaced by a correction: reversed, with no fee
        if rec.commission_sent:
            return  # a duplicate report
        rec.later_fee, rec.commission_sent = commission, True
        ev = self._emit(_COMMISSION, rec.live)
        ev.exec_id = exec_id
        ev.commission = commission
        self._wake()

    def _on_position(self, account: str, contract: Contract, qty: float, avg_cost: float) -> None:
        if self.ports is None or self.ports.portfolio is None:
            return
        view = self.ports.portfolio.broker_account(self.name)
        key = f"{contract.symbol} {contract.secType} {contract.conId}"
        view.by_account[(account, key)] = (qty, avg_cost)
        view.updated_ns = self.ports.clock.now()
        if account and account != self.account:
            return  # another account of the login (reqPositions reports them all): not ours
        iid = self._by_con_id.get(contract.conId)
        if iid is None:
            view.other_positions[key] = (qty, avg_cost)
        else:
            view.positions[iid] = (qty, avg_cost)

    def _on_account_value(self, key: str, val: str, currency: str, account: str) -> None:
        ports = self.ports
        if ports is None or ports.portfolio is None:
            return
        view = ports.portfolio.broker_account(self.name)
        view.values[(key, currency)] = val
        view.updated_ns = ports.clock.now()
        if key == "NetLiquidation" and ports.equity is not None and account == self.account:
            try:
                value = float(val)
            except ValueError:
                return
            ports.equity(value, currency, self.name)

    # ---- errors ------------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, msg: str, advanced: str = "") -> None:
        self.errors.append((req_id, code, msg))
        if len(self.errors) > 1000:
            del self.errors[:500]
        if code in _FARM_OK:
            # Informational (never touches orders), but a farm coming back is when data resumes.
            self._farm_back(code, msg)
            log.info("IB %s: %d %s", self.name, code, msg)
            return
        if code == 10167 and (sub := self._sub_for(req_id)) is not None:
            # Before INFO_CODES: which instrument trades on old prices is for the operator.
            log.warning(
                "IB %s: %s: no live market data subscription, IB sends delayed data (10167: "
                "%s): its book and the risk gate's reference prices lag the market by 15-20 "
                "minutes", self.name, sub.instrument.key, msg,
            )  # fmt: skip
            return
        if code in INFO_CODES:
            log.info("IB %s: %d %s", self.name, code, msg)
            return
        if code in _FARM_BROKEN:
            self._farm_down[_farm_name(code, msg)] = code
            log.warning(
                "IB %s: %d %s (data farm down; waiting for it to return)", self.name, code, msg
            )
            return
        if code == 1100:
            self.in_1100 = True
            log.error(
                "IB %s: 1100 connectivity between IB and the gateway lost: orders held, books "
                "emptied", self.name,
            )  # fmt: skip
            self._clear_books("IB 1100")
            return
        if code in (1101, 1102):
            self.in_1100 = False
            if code == 1101:
                log.warning(
                    "IB %s: 1101 connectivity restored, data lost: resubscribing", self.name
                )
                self.resubscribe(f"IB {code}")
            else:
                # IB says the data was kept, but what happened while the link was down is not
                # known: reconcile orders and executions, and resubscribe anyway. The gateway
                # still holds the subscriptions, so they are cancelled first (asking again
                # with the same ids would earn 322, duplicate ticker id).
                log.warning(
                    "IB %s: 1102 connectivity restored, data kept: reconciling and "
                    "resubscribing", self.name,
                )  # fmt: skip
                self._request(DATA, lambda c: c.reqOpenOrders())
                req = self._take_id()
                self._request(DATA, lambda c: c.reqExecutions(req, ExecutionFilter()))
                self.resubscribe(f"IB {code}", cancel_first=True)
            return
        if code == 1300:
            m = re.search(r"(\d+)\s*$", msg)
            if m:
                self.port = int(m.group(1))
            log.warning(
                "IB %s: 1300 socket port reset: reconnecting on port %d", self.name, self.port
            )
            if self.conn is not None:
                self.conn.close()
            return
        if code == 100:
            self._slow_down()
            return
        live = self._by_ib.get(req_id)
        if live is not None:
            self._order_error(live, code, msg)
            return
        if self.contracts.on_error(req_id, code, msg) or self.history.on_error(req_id, code, msg):
            return
        sub = self._sub_for(req_id)
        if sub is not None:
            if code == 300:  # a cancel of one the gateway had dropped
                log.info("IB %s: %s: %d %s", self.name, sub.instrument.key, code, msg)
                return
            if 2100 <= code < 3000:
                # A warning about the stream, which goes on (2152: some exchanges' depth needs
                # permissions): not a refusal, so depth is kept and the book not emptied.
                log.warning("IB %s: %s: %d %s", self.name, sub.instrument.key, code, msg)
                return
            if code == 317 and req_id == sub.depth:
                self._depth_reset(sub)
                return
            sub.failed = f"{code} {msg}"
            self._md_refused.add(req_id)
            # The stream its book comes from has ended (10197 competing live session, 354...,
            # often mid-stream): the book is emptied, or strategies and the risk gate (its
            # reference for collars and market orders) would take its last prices as live.
            emptied = req_id == self._streams(sub)[0][1] and self._md is not None
            if emptied:
                self._write_deltas(self._md.clear_depth(sub.instrument.id, self._now()))
                self._wake()
            if req_id == sub.depth:
                self._depth_refused(sub)
            log.error(
                "IB %s: market data for %s refused: IB error %d: %s%s",
                self.name, sub.instrument.key, code, msg,
                "; its book is emptied until IB sends prices again" if emptied else "",
            )  # fmt: skip
            return
        if 2100 <= code < 2200:
            log.info("IB %s: %d %s", self.name, code, msg)
        else:
            log.warning("IB %s: error %d (id %d): %s", self.name, code, req_id, msg)

    def _order_error(self, live: _Live, code: int, msg: str) -> None:
        log.info("IB %s: order %d: IB %d %s", self.name, live.client_order_id, code, msg)
        if (code >= 2100 and code < 3000) or code in _ORDER_NOTICES:
            return  # warnings and holds never change an order's state
        if code == 202:  # "Order Canceled - reason:": the status follows
            live.last_error = (code, msg)
            if not live.accepted and not live.done:
                # Except for an order IB never acknowledged (held with transmit=False, then
                # discarded): no status ever comes for it.
                live.done = True
                live.given_up = code
                self._emit(_CANCELLED, live, code, f"IB {code}: {msg}")
                self._wake()
            return
        if live.done:
            if live.given_up:
                if code in _REFUSED_CHANGE:  # the cancel's answer: it has ended at IB too
                    live.pending_cancel = False
            elif live.pending_cancel or live.pending_modify is not None:
                # A request still unanswered when the order ended (a fill, a reject): refused.
                # Once the order is CANCELLED its cancel is answered, and a refusal of one sent
                # again (after a reconnect) says nothing new.
                live.pending_cancel = False
                live.pending_modify = None
                self._emit(_CANCEL_REJECTED, live, code, f"IB {code}: {msg}")
                self._wake()
            return
        if live.pending_modify is not None or (live.pending_cancel and code in _REFUSED_CHANGE):
            if live.pending_modify is None and (
                live.ib_status == "PendingCancel" or "PendingCancel" in msg
            ):
                return  # IB is carrying out an earlier cancel: this one was sent again
            what = "modify" if live.pending_modify is not None else "cancel"
            live.pending_modify = None
            live.pending_cancel = False
            if live.cum_lots >= live.qty_lots:
                live.done = True  # fills completed it while a modify up was pending
            self._emit(_CANCEL_REJECTED, live, code, f"IB refused the {what}: {code} {msg}")
            self._wake()
            return
        live.last_error = (code, msg)
        if not live.accepted:
            # Refused before IB took it (201, 110, 103 duplicate id...): the order is dead.
            if code not in _ORDER_REJECTS:
                log.warning(
                    "IB %s: order %d: IB error %d is not a known rejection or hold: taken as a "
                    "rejection (%s)", self.name, live.client_order_id, code, msg,
                )  # fmt: skip
            live.done = True
            live.given_up = code
            self._emit(_REJECTED, live, code, f"IB {code}: {msg}")
            self._wake()

    def _sub_for(self, req_id: int) -> _Subscription | None:
        for sub in self._subs.values():
            if req_id in (sub.l1, sub.depth, sub.tbt):
                return sub
        return None

    # ---- emitting ----------------------------------------------------------------------------

    def _event(
        self, kind: EventKind, src: _Live | OrderIntent | Order, code: int = 0, reason: str = ""
    ) -> Any:
        """A cleared event slot naming ``src``'s order, stamped now."""
        ports = self.ports
        assert ports is not None
        return ports.events.claim().about(kind, src, code, reason, ports.clock.now())

    def _emit(self, kind: EventKind, live: _Live, code: int = 0, reason: str = "") -> Any:
        ev = self._event(kind, live, code, reason)
        ev.venue_order_id = live.perm_id or live.ib_id
        ev.cum_lots = live.cum_lots
        ev.leaves_lots = max(live.qty_lots - live.cum_lots, 0)
        ev.price_ticks = live.price_ticks
        ev.qty_lots = live.qty_lots
        if live.done and not live.remembered:
            self._remember_done(live)
        return ev

    def _note_exec(self, key: str, rec: _Exec) -> None:
        self._execs[key] = rec
        live = rec.live
        if live.exec_keys is None:
            live.exec_keys = [key]
        else:
            live.exec_keys.append(key)

    def _remember_done(self, live: _Live) -> None:
        """A finished order stays known for ``done_history`` more finished orders (late
        answers, duplicates, a reconnect's reports still find it), then is forgotten: a long
        session's memory does not grow with every order it ever sent."""
        live.remembered = True
        done = self._done
        done.append(live)
        if len(done) > self.done_history:
            self._forget(done.popleft())

    def _forget(self, live: _Live) -> None:
        self._forgotten_max_ib = max(self._forgotten_max_ib, live.ib_id)
        for index, key in (
            (self._by_coid, live.client_order_id), (self._by_ib, live.ib_id),
            (self._by_perm, live.perm_id),
        ):  # fmt: skip
            if index.get(key) is live:
                del index[key]
        for key in live.exec_keys or ():
            rec = self._execs.get(key)
            if rec is not None and rec.live is live:
                del self._execs[key]
        self.forgotten += 1

    def _reject_intent(self, it: OrderIntent, code: int, reason: str) -> None:
        ev = self._event(_REJECTED, it, code, reason)
        ev.qty_lots = ev.leaves_lots = it.qty_lots
        ev.price_ticks = it.price_ticks
        it.ts_sent = ev.ts_recv

    def _emit_unknown(self, order: Order, what: str) -> None:
        """A cancel or modify of an order this venue is not working (finished, or never sent):
        answered here, with IB's code for it (10147 order to cancel not found, 104 cannot
        modify a filled order), as the simulated venue answers the same request."""
        code = _IB_CANCEL_NOT_FOUND if what == "cancel" else _IB_MODIFY_NOT_WORKING
        reason = f"{what} refused: order {order.client_order_id} is not working at {self.name}"
        self._event(_CANCEL_REJECTED, order, code, reason)

    def _wake(self) -> None:
        if self.ports is not None:
            self.ports.wake()

    def _now(self) -> int:
        return self.ports.clock.now() if self.ports is not None else time.time_ns()

    def _later(self, delay: float, fn: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn()

        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(run())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # ---- reading -----------------------------------------------------------------------------

    def open_orders(self) -> list[tuple[int, int, int]]:
        """(client order id, IB order id, permId) of every order not finished at IB."""
        return [(x.client_order_id, x.ib_id, x.perm_id) for x in self._by_ib.values() if not x.done]

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "ready": self.ready,
            "in_1100": self.in_1100,
            "unreconciled": list(self.unreconciled),
            "server_version": self.server_version,
            "next_order_id": self._next_id,
            "orders_sent": self.orders_sent,
            "held_back": self.held_back,
            "reconnects": self.reconnects,
            "resubscribes": self.resubscribes,
            "queued": self.pacer.pending,
            "off_grid_fills": self.off_grid_fills,
        }


def _req_current_time(client: Any) -> None:
    client.reqCurrentTime()


def _farm_name(code: int, msg: str) -> str:
    """The farm a farm notice names (``...connection is OK:usfarm``), else its kind."""
    _, colon, name = msg.rpartition(":")
    return name.strip() if colon and name.strip() else _FARM_KIND[code]


def _on_step(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))


def _describe_bands(bands: list[tuple[float, float]]) -> str:
    return ", ".join(f"from {low:g} in steps of {inc:g}" for low, inc in bands)


def _crypto_market_refusal(it: OrderIntent) -> str:
    """Why IB would reject this crypto market order, or "": IB (PAXOS, ZEROHASH) takes crypto
    market orders only as IOC, and a market buy only sized in cash (``cashQty``), which tickwire
    orders, sized in coins, never are."""
    if it.side == _BUY:
        return (
            "IB takes a crypto market buy only sized in cash (cashQty), and tickwire sizes "
            "orders in coins; buy with a marketable limit order (a price, tif IOC) instead"
        )
    if it.tif != _IOC:
        return f"IB takes crypto market orders only with tif IOC, not {_TIF[it.tif]}"
    return ""


def _digits(tick: float) -> int:
    """Decimal places that represent every multiple of ``tick`` (0.25 -> 2, 0.01 -> 2)."""
    for d in range(0, 12):
        if abs(round(tick, d) - tick) < 1e-12:
            return d
    return 12


def _lots(qty: Any, lot: Decimal) -> int:
    try:
        return int((Decimal(str(qty)) / lot).to_integral_value())
    except Exception:
        return 0


def _same_number(ib: Any, ours: float) -> bool:
    """IB's echo of a double we sent (as decimal text, both ways) against ours."""
    try:
        v = float(ib)
    except (TypeError, ValueError):
        return False
    return v != UNSET_DOUBLE and abs(v - ours) <= 1e-9 * max(1.0, abs(ours))
