"""The strategy API: an in-process actor that reacts to market data and order events.

Subclass ``Strategy``, override the ``on_*`` callbacks you need, and act with ``buy``, ``sell``,
``cancel``, ``cancel_all`` and ``modify``. Every action writes an intent into the engine's intent
ring, which the risk gate drains at once (run to completion: the order is on its way before the
action returns); the risk gate and the router decide what reaches a venue, and their answer
(accepted, rejected with a code and reason, filled, cancelled) comes back through ``on_order``
and ``on_fill``. The same class runs unchanged in replay, shadow, paper and live.

Objects handed to callbacks (book views, events, trades) are reused by the engine: copy what you
keep. Declare a ``Params`` dataclass to have the config's ``params`` table validated against it:
its fields' types when the config is read, and its ranges by its ``validate()`` method, which
raises ``ParamError`` naming the field (a bad value is a config error, never a strategy that
fails in ``on_start``). A strategy whose ``on_start`` raises anyway is disabled: no more
callbacks, its open orders cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, Unpack

from engine.book import BookView
from engine.instruments import Instrument
from engine.messages import (
    NO_PRICE,
    Algo,
    IntentKind,
    OrderEvent,
    OrderType,
    Side,
    TimeInForce,
)
from engine.orders import Order, OrderState

if TYPE_CHECKING:
    from engine.breakers import TradingStateChange
    from engine.risk_gate import TradingState
    from engine.runtime import Engine

log = logging.getLogger(__name__)

# Intents carry plain ints: reading an enum member costs ~80 ns in Python 3.11, and the risk
# kernels must get ints (an IntEnum argument sends Numba's dispatcher down a ~10 µs slow path).
_BUY = int(Side.BUY)
_SELL = int(Side.SELL)
_MARKET = int(OrderType.MARKET)
_LIMIT = int(OrderType.LIMIT)
_NEW = int(IntentKind.NEW)
_CANCEL = int(IntentKind.CANCEL)
_MODIFY = int(IntentKind.MODIFY)
_CANCEL_ALL = int(IntentKind.CANCEL_ALL)
_DAY_ENUM = TimeInForce.DAY
_DAY = int(TimeInForce.DAY)
_NAN = math.nan
_INITIALIZED = OrderState.INITIALIZED


class OrderOptions(TypedDict, total=False):
    """``Strategy.buy``/``sell``'s order options (see ``OrderIntent`` for what each means).

    ``order_type`` (default MARKET without a price, LIMIT with one); ``stop`` (STOP and
    STOP_LIMIT's trigger, TRAILING_*'s initial stop, currency); ``trail`` (currency) or
    ``trail_percent`` (percent) for TRAILING_*; ``limit_offset`` (TRAILING_STOP_LIMIT, currency);
    ``display`` (iceberg: the size shown, instrument units); ``good_till`` (GTD: engine-clock ns
    since the epoch, or an aware datetime); ``algo`` and ``algo_params`` (VWAP, TWAP, ADAPTIVE
    on MARKET or LIMIT orders: ``(("maxPctVol", "0.1"),)`` or a mapping); ``parent`` (the
    parent's client order id: a child, working once the parent has filled); ``oca_group`` (a name
    of at most 64 characters) and ``oca_type`` (1 cancel the others on a fill, the default; 2 or
    3 reduce them by the filled quantity); ``transmit`` (False holds the order at the venue until
    an order of its parent chain is sent with True). None means unset.
    """

    order_type: OrderType | int | None
    stop: float | None
    trail: float | None
    trail_percent: float | None
    limit_offset: float | None
    display: float | None
    good_till: int | datetime | None
    algo: Algo | int | None
    algo_params: Iterable[tuple[str, str]] | Mapping[str, str] | None
    parent: int | None
    oca_group: str | None
    oca_type: int | None
    transmit: bool | None


_OPTIONS = frozenset(OrderOptions.__annotations__)
# What ``bracket`` sets on its legs itself.
_BRACKET_OWN = frozenset({"order_type", "stop", "parent", "oca_group", "transmit"})


class ParamError(ValueError):
    """A strategy parameter out of range; ``Params.validate`` raises it naming the field, and
    the config names the key (``strategies[i].params.<field>``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_params(params: Any) -> None:
    """Run ``params.validate()`` if its class has one: ``ParamError`` (or ``ValueError``) for a
    value out of range."""
    validate = getattr(params, "validate", None)
    if callable(validate):
        validate()


class Trade:
    """A print on the tape (reused between callbacks)."""

    __slots__ = ("aggressor", "instrument", "price", "size", "ts_event", "ts_recv")

    def __init__(self) -> None:
        self.instrument: Instrument | None = None
        self.price = 0.0
        self.size = 0.0
        self.aggressor = 0
        self.ts_event = 0
        self.ts_recv = 0


@dataclass(frozen=True, slots=True)
class PnL:
    realised: float
    unrealised: float
    commission: float

    @property
    def total(self) -> float:
        return self.realised + self.unrealised - self.commission


class Strategy:
    """Base class for strategies; see the module docstring."""

    Params: ClassVar[type | None] = None

    def __init__(self, name: str, params: Any, engine: Engine, strategy_id: int) -> None:
        self.name = name
        self.params = params
        self.id = strategy_id
        #: Why the engine disabled this strategy ("" while it runs): it gets no callbacks.
        self.disabled = ""
        #: Its ``on_start`` has run and ``on_stop`` not yet: only then is it told of trading
        #: state changes (a state restored before the start is ``trading_state`` in on_start).
        self.started = False
        self._engine = engine
        self.instruments: list[Instrument] = []
        # The order path's collaborators, looked up once (an action runs on every requote).
        self._intents = engine.intents
        self._flush_intents = engine.flush_intents
        self._now = engine.clock.now
        self._next_id = engine.tracker.next_id
        self._add_order = engine.tracker.add
        self._positions = engine.portfolio.positions()
        self._shadow_positions = engine.shadow_portfolio.positions()
        self._unknown_names: set[str] = set()  # instrument names already logged as unknown

    # ---- callbacks ---------------------------------------------------------------------------

    def on_start(self) -> None:
        """Called once before market data flows. If it raises, the strategy is disabled."""

    def on_stop(self) -> None:
        """Called once when the engine stops (orders may still be cancelled here)."""

    def on_book(self, book: BookView) -> None:
        """The top of book of a subscribed instrument changed (once per batch, not per delta)."""

    def on_trade(self, trade: Trade) -> None:
        """A trade printed on a subscribed instrument."""

    def on_order(self, event: OrderEvent) -> None:
        """An order was accepted, rejected (``reason_code``, ``reason``), cancelled, expired or
        modified."""

    def on_fill(self, fill: OrderEvent) -> None:
        """An order filled (partly): ``fill_lots`` at ``fill_price_ticks``."""

    def on_trading_state(self, change: TradingStateChange) -> None:
        """The engine's trading state changed (``change.old`` -> ``change.new``, with
        ``change.reason`` and ``change.source``): ACTIVE, REDUCING (only orders that reduce a
        position pass) or HALTED (only cancels pass). Only between ``on_start`` and ``on_stop``:
        a state the engine had before (restored from the journal) is ``self.trading_state``."""

    def on_timer(self, name: str) -> None:
        """A timer set with ``set_timer`` fired."""

    # ---- actions -----------------------------------------------------------------------------

    def buy(
        self,
        instrument: Instrument | str | int,
        qty: float,
        price: float | None = None,
        tif: TimeInForce = TimeInForce.DAY,
        **options: Unpack[OrderOptions],
    ) -> int:
        """Send a buy order; returns its client order id.

        A MARKET order when ``price`` is None, else a LIMIT order; ``options`` (``OrderOptions``:
        ``order_type``, ``stop``, ``trail``, ``trail_percent``, ``limit_offset``, ``display``,
        ``good_till``, ``algo``, ``algo_params``) make the other types and IB's order attributes.
        How they combine is not checked here: a bad combination comes back as a REJECTED order
        event from the risk gate, like every other refusal, and so does an ``instrument`` the
        registry does not know (UNKNOWN_INSTRUMENT, whether an id or a name). (Keyword-only
        parameters would cost a plain order ~100 ns to fill in their defaults: ``**options``
        costs ~20.)
        """
        if not options:
            return self._new(_BUY, instrument, qty, price, tif)
        return self._new_extended(_BUY, instrument, qty, price, tif, options, "buy")

    def sell(
        self,
        instrument: Instrument | str | int,
        qty: float,
        price: float | None = None,
        tif: TimeInForce = TimeInForce.DAY,
        **options: Unpack[OrderOptions],
    ) -> int:
        """Send a sell order; returns its client order id. The arguments are ``buy``'s."""
        if not options:
            return self._new(_SELL, instrument, qty, price, tif)
        return self._new_extended(_SELL, instrument, qty, price, tif, options, "sell")

    def bracket(
        self,
        instrument: Instrument | str | int,
        side: Side | int,
        qty: float,
        entry_price: float | None,
        take_profit: float,
        stop_loss: float,
        tif: TimeInForce = TimeInForce.DAY,
        **options: Unpack[OrderOptions],
    ) -> tuple[int, int, int]:
        """An entry with a take-profit and a stop-loss attached; returns the three client order
        ids (entry, take-profit, stop-loss).

        The entry is a LIMIT at ``entry_price`` (MARKET if None) on ``side``; the children are
        on the other side, for the same quantity: a LIMIT at ``take_profit`` and a STOP at
        ``stop_loss``, both children of the entry (they work only once it has filled
        completely) and in one OCA group named ``bracket-<entry id>``, by default of type 2 (a
        fill of one reduces the other by the filled quantity, so a full fill cancels it).
        As IB brackets are sent, the entry and the take-profit go with ``transmit=False`` and
        the stop-loss with ``transmit=True``, which releases all three at once. ``options``
        (``oca_type``, ``display``, ``good_till``...) apply to every leg; ``order_type``,
        ``stop``, ``parent``, ``oca_group`` and ``transmit`` are the bracket's own.

        If the risk gate refuses any leg, the entry is cancelled at once (which cancels or
        discards what the venue holds of the bracket); each refusal still comes back as a
        REJECTED order event.
        """
        own = options.keys() & _BRACKET_OWN
        if own:
            raise TypeError(f"bracket() sets {sorted(own)} itself")
        side = int(side)
        exit_side = _SELL if side == _BUY else _BUY
        inst_id = instrument.id if isinstance(instrument, Instrument) else (
            instrument if isinstance(instrument, int) else self._instrument_id(instrument)
        )  # fmt: skip
        oca_type = options.pop("oca_type", None)
        entry = self._new_extended(
            side, inst_id, qty, entry_price, tif, {**options, "transmit": False}, "bracket"
        )
        group = f"bracket-{entry}"
        legs = {
            **options,
            "parent": entry,
            "oca_group": group,
            "oca_type": 2 if oca_type is None else oca_type,
        }
        take = self._new_extended(
            exit_side, inst_id, qty, take_profit, tif,
            {**legs, "order_type": OrderType.LIMIT, "transmit": False}, "bracket",
        )  # fmt: skip
        stop = self._new_extended(
            exit_side, inst_id, qty, None, tif,
            {**legs, "order_type": OrderType.STOP, "stop": stop_loss, "transmit": True},
            "bracket",
        )  # fmt: skip
        tracker = self._engine.tracker
        for coid in (entry, take, stop):
            order = tracker.get(coid)
            if order is not None and order.state is _INITIALIZED:  # refused by the gate
                if coid != entry:
                    self.cancel(entry)
                break
        return entry, take, stop

    def cancel(self, client_order_id: int) -> None:
        # The risk gate looks the order up (it fills in instrument and side); a cancel of an
        # unknown order comes back CANCEL_REJECTED with instrument -1.
        it = self._intents.claim()
        it.kind = _CANCEL
        it.strategy_id = self.id
        it.client_order_id = client_order_id
        it.instrument_id = -1
        it.side = _BUY
        it.ts_trigger = it.ts_created = self._now()
        self._flush_intents()

    def cancel_all(self, instrument: Instrument | str | int | None = None) -> None:
        eng = self._engine
        it = self._intents.claim()
        it.kind = _CANCEL_ALL
        it.strategy_id = self.id
        it.client_order_id = 0
        it.instrument_id = -1 if instrument is None else eng.registry.resolve(instrument).id
        it.ts_trigger = it.ts_created = self._now()
        self._flush_intents()

    def modify(
        self,
        client_order_id: int,
        qty: float | None = None,
        price: float | None = None,
        *,
        stop_price: float | None = None,
        trail_amount: float | None = None,
        trail_percent: float | None = None,
    ) -> None:
        """Change an open order's quantity, limit price, stop price (STOP, STOP_LIMIT) or trail
        (TRAILING_STOP, TRAILING_STOP_LIMIT: an amount or a percent, replacing whichever it
        had); None keeps what the order has. ``qty`` is the order's new total, what has filled
        included (IB's totalQuantity): at or below the filled quantity the risk gate refuses
        the modify (CANCEL_REJECTED MODIFY_BELOW_FILLED); cancel the order instead. The venue
        changes the order in place (IB: the same order id), so a moved stop keeps working with
        no gap. The order's ``extras`` show the new stop or trail once the venue confirms
        (MODIFIED)."""
        it = self._intents.claim()
        if stop_price is None and trail_amount is None and trail_percent is None:
            if it.extended:  # the slot last carried an order with extras
                it.reset_extras()
        else:
            it.set_extras(
                _NAN if stop_price is None else float(stop_price),
                _NAN if trail_amount is None else float(trail_amount),
                _NAN if trail_percent is None else float(trail_percent),
                _NAN, 0, 0, 0, None,
            )  # fmt: skip
        it.kind = _MODIFY
        it.strategy_id = self.id
        it.client_order_id = client_order_id
        it.instrument_id = -1  # the risk gate fills in the order's instrument and side
        it.side = _BUY
        it.qty = _NAN if qty is None else float(qty)
        it.price = _NAN if price is None else float(price)
        it.ts_trigger = it.ts_created = self._now()
        self._flush_intents()

    # ---- reading state -----------------------------------------------------------------------

    def instrument(self, ref: Instrument | str | int) -> Instrument:
        return self._engine.registry.resolve(ref)

    def book(self, instrument: Instrument | str | int) -> BookView:
        return self._engine.book_views[self.instrument(instrument).id]

    @property
    def trading_state(self) -> TradingState:
        """The engine's trading state now: ACTIVE, REDUCING (only orders that reduce this
        strategy's position pass) or HALTED (only cancels pass); ``on_trading_state`` tells of
        each change."""
        return self._engine.trading_state

    def position(self, instrument: Instrument | str | int) -> float:
        """Net position of this strategy, in instrument units (negative when short): live and
        shadowed fills together, what it would hold had every order gone live (the same
        whatever the router's modes; ``live_position``/``shadow_position`` split it). It is
        lots x lot size, a float: with a fractional lot size compare quantities in lots
        (``instrument.to_lots``), not with ``==`` (3 x 0.1 is 0.30000000000000004)."""
        inst = instrument if isinstance(instrument, Instrument) else self.instrument(instrument)
        key = (self.id, inst.id)
        pos = self._positions.get(key)
        lots = 0 if pos is None else pos.lots
        if self._shadow_positions:
            shadow = self._shadow_positions.get(key)
            if shadow is not None:
                lots += shadow.lots
        return lots * inst.lot_size

    def live_position(self, instrument: Instrument | str | int) -> float:
        """The part of ``position`` filled at the real venue."""
        inst = instrument if isinstance(instrument, Instrument) else self.instrument(instrument)
        pos = self._positions.get((self.id, inst.id))
        return 0.0 if pos is None else pos.lots * inst.lot_size

    def shadow_position(self, instrument: Instrument | str | int) -> float:
        """The part of ``position`` filled by the shadow venue (orders SHADOW/CANARY kept back)."""
        inst = instrument if isinstance(instrument, Instrument) else self.instrument(instrument)
        pos = self._shadow_positions.get((self.id, inst.id))
        return 0.0 if pos is None else pos.lots * inst.lot_size

    def pnl(self) -> PnL:
        """This strategy's realised and unrealised (marked to the mid) P&L and fees, live and
        shadow together (as ``position``); ``live_pnl``/``shadow_pnl`` split it. In the
        portfolio's base currency: an instrument whose currency has no ``[portfolio.fx]`` rate
        is left out (logged at start-up; ``engine.portfolio.pnl_by_currency`` has it)."""
        live = self._engine.portfolio.pnl(self.id)
        if not self._shadow_positions:
            return PnL(*live)
        shadow = self._engine.shadow_portfolio.pnl(self.id)
        return PnL(*(a + b for a, b in zip(live, shadow, strict=True)))

    def live_pnl(self) -> PnL:
        return PnL(*self._engine.portfolio.pnl(self.id))

    def shadow_pnl(self) -> PnL:
        return PnL(*self._engine.shadow_portfolio.pnl(self.id))

    def open_orders(self, instrument: Instrument | str | int | None = None) -> list[Order]:
        inst_id = None if instrument is None else self.instrument(instrument).id
        return self._engine.tracker.open_for(self.id, inst_id)

    def now(self) -> int:
        """Engine time in nanoseconds since the epoch (simulated in replay)."""
        return self._now()

    def set_timer(self, name: str, interval_s: float, repeat: bool = True) -> None:
        """Call ``on_timer(name)`` after ``interval_s`` seconds (and every interval if repeat).
        Setting a name again replaces its timer; ``interval_s`` must be a finite number > 0
        (else ``ValueError``)."""
        self._engine.set_timer(self, name, interval_s, repeat)

    def cancel_timer(self, name: str) -> bool:
        """Stop the timer ``name``; False if none was set (or a one-shot already fired)."""
        return self._engine.cancel_timer(self, name)

    # ---- internals ---------------------------------------------------------------------------

    def _instrument_id(self, name: str) -> int:
        """The id of an order's instrument given by name (``SYMBOL`` or ``SYMBOL.VENUE``). A
        name the registry does not know (or one listed on several venues) gives -1: the gate
        rejects the order UNKNOWN_INSTRUMENT, as it does an unknown id, and the name is
        logged once with what the registry holds."""
        try:
            return self._engine.registry.get(name).id
        except KeyError as e:
            if name not in self._unknown_names:
                self._unknown_names.add(name)
                log.error(
                    "strategy %r: %s; its orders for %r are rejected UNKNOWN_INSTRUMENT",
                    self.name, e.args[0], name,
                )  # fmt: skip
            return -1

    def _new(
        self,
        side: int,
        instrument: Instrument | str | int,
        qty: float,
        price: float | None,
        tif: TimeInForce,
        order_type: int | None = None,
        extras: tuple | None = None,
    ) -> int:
        """Write a NEW intent and send it to the gate; ``extras`` (``_new_extended``) are the
        values ``OrderIntent.set_extras`` takes, None for a plain order."""
        eng = self._engine
        now = self._now()
        inst_id = instrument.id if isinstance(instrument, Instrument) else (
            instrument if isinstance(instrument, int) else self._instrument_id(instrument)
        )  # fmt: skip
        coid = self._next_id()
        if order_type is None:
            order_type = _MARKET if price is None else _LIMIT
        tif = _DAY if tif is _DAY_ENUM else int(tif)
        sid = self.id
        it = self._intents.claim()
        if extras is not None:
            it.set_extras(*extras)
        elif it.extended:  # the slot last carried an order with extras
            it.reset_extras()
        it.kind = _NEW
        it.strategy_id = sid
        it.instrument_id = inst_id
        it.client_order_id = coid
        it.side = side
        it.order_type = order_type
        it.tif = tif
        it.qty = float(qty)
        it.price = _NAN if price is None else float(price)
        it.qty_lots = 0
        it.price_ticks = NO_PRICE
        trigger = eng.trigger_ts
        it.ts_trigger = trigger if trigger else now
        it.ts_created = now
        it.ts_risk = it.ts_routed = it.ts_sent = 0
        self._add_order(Order(coid, sid, inst_id, side, order_type, tif, 0, NO_PRICE))
        self._flush_intents()
        return coid

    def _new_extended(
        self,
        side: int,
        instrument: Instrument | str | int,
        qty: float,
        price: float | None,
        tif: TimeInForce,
        options: OrderOptions,
        action: str,
    ) -> int:
        """An order with options: ``_new`` with the extras.

        Values are stored as given (floats, ints); a value that makes no sense is the risk
        gate's to refuse. Only an option name that does not exist raises, as a misspelt keyword
        argument would.
        """
        unknown = options.keys() - _OPTIONS
        if unknown:
            raise TypeError(
                f"{action}() got unexpected keyword arguments {sorted(unknown)}; "
                f"order options are {sorted(_OPTIONS)}"
            )
        get = options.get
        order_type = get("order_type")
        stop = get("stop")
        trail = get("trail")
        trail_percent = get("trail_percent")
        limit_offset = get("limit_offset")
        display = get("display")
        good_till = get("good_till")
        algo = get("algo")
        algo_params = get("algo_params")
        parent = get("parent")
        oca_group = get("oca_group")
        oca_type = get("oca_type")
        transmit = get("transmit")
        registry = self._engine.registry
        inst_id = instrument.id if isinstance(instrument, Instrument) else (
            instrument if isinstance(instrument, int) else self._instrument_id(instrument)
        )  # fmt: skip
        display_lots = 0
        if display is not None:
            # A display size that is not a positive whole number of lots is marked -1 for the
            # gate to refuse (it has the instrument's lot size; a strategy's call never raises).
            display_lots = -1
            if registry.known(inst_id):
                lots_f = float(display) / registry[inst_id].lot_size
                lots = round(lots_f) if math.isfinite(lots_f) else 0
                if lots > 0 and abs(lots_f - lots) <= 1e-9 * (1.0 + abs(lots_f)):
                    display_lots = lots
        if isinstance(good_till, datetime):
            good_till = round(good_till.timestamp() * 1e9)
        if isinstance(algo_params, Mapping):
            algo_params = tuple(algo_params.items())
        elif algo_params is not None:
            with contextlib.suppress(TypeError):  # else left as given, for the gate to refuse
                algo_params = tuple(tuple(p) for p in algo_params)
        extras = (
            _NAN if stop is None else float(stop),
            _NAN if trail is None else float(trail),
            _NAN if trail_percent is None else float(trail_percent),
            _NAN if limit_offset is None else float(limit_offset),
            display_lots,
            0 if good_till is None else int(good_till),
            0 if algo is None else int(algo),
            algo_params,
            0 if parent is None else parent,  # left as given: the gate refuses a non-int
            "" if oca_group is None else oca_group,
            (1 if oca_group else 0) if oca_type is None else oca_type,
            True if transmit is None else transmit,
        )
        kind = None if order_type is None else int(order_type)
        return self._new(side, inst_id, qty, price, int(tif), kind, extras)
