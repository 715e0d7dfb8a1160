"""The gateway simulator's matching engine (adapters/ib/gateway_sim/matching.py).

Most tests script the book exactly: each instrument is driven by a ``Replay`` whose steps the
test appends (``Desk.book``), so every expected fill can be written down. The property tests at
the end run the engine against the random walk instead.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibapi.const import UNSET_INTEGER
from ibapi.order import Order
from ibapi.tag_value import TagValue

from adapters.ib.gateway_sim.market import (
    ASK,
    BID,
    DELETE,
    INSERT,
    DepthRow,
    Market,
    Replay,
    ReplayStep,
    SimInstrument,
    Trade,
    default_universe,
)
from adapters.ib.gateway_sim.matching import (
    LIQ_ADDED,
    LIQ_AUCTION,
    LIQ_REMOVED,
    BookUpdate,
    CommissionModel,
    Fill,
    MatchingEngine,
    Phase,
    Rejected,
    SimOrder,
    StatusChange,
    parse_ib_time,
)

NS = 1_000_000_000
T0 = int(datetime(2025, 6, 2, 14, 0, tzinfo=UTC).timestamp()) * NS  # Monday 10:00 New York
UNIVERSE = {(i.symbol, i.sec_type): i for i in default_universe()}
AAPL, ES, BTC = UNIVERSE["AAPL", "STK"], UNIVERSE["ES", "FUT"], UNIVERSE["BTC", "CRYPTO"]
OPT, FX = UNIVERSE["AAPL", "OPT"], UNIVERSE["EUR", "CASH"]
TST = SimInstrument(
    con_id=1001, symbol="TST", sec_type="STK", primary_exchange="NASDAQ", price=100.0
)
EXEC_ID = re.compile(r"^0000e0d5\.[0-9a-f]{8}\.01\.01$")


def make_order(action: str, qty: object, typ: str, **fields: object) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType = action, Decimal(str(qty)), typ
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def fills(events: list) -> list[tuple[Decimal, float, int]]:
    return [(e.qty, e.price, e.liquidity) for e in events if isinstance(e, Fill)]


def statuses(events: list, o: SimOrder | None = None) -> list[str]:
    return [e.status for e in events if isinstance(e, StatusChange) and e.order is (o or e.order)]


class Desk:
    """A market whose books the test scripts, and an engine on it; time is ``self.now``."""

    def __init__(self, *instruments: SimInstrument, **engine_kw: object) -> None:
        instruments = instruments or (TST,)
        self.market = Market(instruments, seed=1)
        self.engine = MatchingEngine(self.market, **engine_kw)  # type: ignore[arg-type]
        self.steps: dict[int, list[ReplayStep]] = {}
        for inst in instruments:
            self.steps[inst.con_id] = []
            self.market.attach_replay(inst.con_id, Replay(self.steps[inst.con_id]))
        self.ids = itertools.count(1)
        self.now = T0

    def book(
        self,
        inst: SimInstrument = TST,
        bids: list[tuple[float, object]] | None = None,
        asks: list[tuple[float, object]] | None = None,
        trades: tuple[tuple[float, object], ...] = (),
    ) -> list:
        """Set the given sides to exactly these levels, print ``trades``, then match."""
        current = self.market.book(inst.con_id)
        deletes, inserts = [], []
        for side, new, old in ((BID, bids, current.bids), (ASK, asks, current.asks)):
            if new is None:
                continue
            keep = {p for p, _ in new}
            deletes += [DepthRow(side, 0, DELETE, p, Decimal(0)) for p, _ in old if p not in keep]
            inserts += [DepthRow(side, 0, INSERT, p, Decimal(str(s))) for p, s in new]
        prints = tuple(Trade(p, Decimal(str(s))) for p, s in trades)
        self.steps[inst.con_id].append(ReplayStep(0, (*deletes, *inserts), prints))
        self.market.step(inst.con_id)
        return self.engine.on_market(inst.con_id, self.now)

    def prints(self, *trades: tuple[float, object], inst: SimInstrument = TST) -> list:
        return self.book(inst, trades=trades)

    def new(self, action: str, qty: object, typ: str, inst: SimInstrument = TST, **kw) -> SimOrder:
        client_id = kw.pop("client_id", 1)
        order_id = kw.pop("order_id", None) or next(self.ids)
        order = make_order(action, qty, typ, **kw)
        return SimOrder(order_id, client_id, 9000 + order_id, inst, inst.contract(), order)

    def submit(self, *args: object, **kw: object) -> tuple[SimOrder, list]:
        sim = self.new(*args, **kw)  # type: ignore[arg-type]
        return sim, self.engine.submit(sim, self.now)

    def at(self, seconds: float) -> list:
        self.now = T0 + int(seconds * NS)
        return self.engine.on_time(self.now)


def standard_book(desk: Desk, inst: SimInstrument = TST) -> None:
    desk.book(
        inst,
        bids=[(99.99, 100), (99.98, 200), (99.97, 300)],
        asks=[(100.00, 100), (100.01, 200), (100.02, 300)],
    )


# ---- marketable orders ------------------------------------------------------------------------


def test_market_order_walks_the_book() -> None:
    d = Desk()
    standard_book(d)
    o, evs = d.submit("BUY", 250, "MKT")
    assert fills(evs) == [
        (Decimal(100), 100.00, LIQ_REMOVED),
        (Decimal(150), 100.01, LIQ_REMOVED),
    ]
    assert statuses(evs) == ["Submitted", "Filled"]
    assert (o.status, o.filled, o.remaining, o.phase) == ("Filled", 250, 0, Phase.DONE)
    assert o.avg_fill_price == pytest.approx((100 * 100.00 + 150 * 100.01) / 250)
    fs = [e for e in evs if isinstance(e, Fill)]
    assert [f.cum_qty for f in fs] == [100, 250]
    assert fs[-1].avg_price == o.avg_fill_price
    assert all(EXEC_ID.match(f.exec_id) for f in fs) and len({f.exec_id for f in fs}) == 2
    assert sum(f.commission for f in fs) == pytest.approx(250 * 0.0035)
    assert d.market.book(TST.con_id).asks == [(100.01, 50), (100.02, 300)]
    updates = [e for e in evs if isinstance(e, BookUpdate)]
    assert updates and updates[0].con_id == TST.con_id and updates[0].order is o
    assert {type(e).__name__ for e in updates[0].events} >= {"DepthRow", "Trade", "Quote"}


def test_market_order_larger_than_the_book_rests_then_completes() -> None:
    d = Desk()
    d.book(asks=[(100.00, 100)], bids=[(99.99, 100)])
    o, evs = d.submit("BUY", 300, "MKT")
    assert fills(evs) == [(100, 100.00, LIQ_REMOVED)]
    assert o.status == "Submitted" and o.remaining == 200
    evs = d.book(asks=[(100.05, 500)])
    assert fills(evs) == [(200, 100.05, LIQ_REMOVED)]
    assert o.status == "Filled"


def test_marketable_limit_fills_to_its_limit_and_rests() -> None:
    d = Desk()
    standard_book(d)
    o, evs = d.submit("BUY", 500, "LMT", lmtPrice=100.01)
    assert fills(evs) == [(100, 100.00, LIQ_REMOVED), (200, 100.01, LIQ_REMOVED)]
    assert (o.status, o.remaining) == ("Submitted", 200)
    assert fills(d.prints((100.02, 500))) == []  # a print above the limit fills nothing
    assert fills(d.book(asks=[(100.02, 300)])) == []


def test_ioc_cancels_the_remainder_and_fok_is_all_or_nothing() -> None:
    d = Desk()
    standard_book(d)
    o, evs = d.submit("SELL", 500, "LMT", lmtPrice=99.98, tif="IOC")
    assert fills(evs) == [(100, 99.99, LIQ_REMOVED), (200, 99.98, LIQ_REMOVED)]
    assert statuses(evs) == ["Submitted", "Cancelled"] and o.filled == 300
    standard_book(d)
    before = d.market.book(TST.con_id)
    o, evs = d.submit("SELL", 500, "LMT", lmtPrice=99.98, tif="FOK")
    assert fills(evs) == [] and o.status == "Cancelled" and o.filled == 0
    assert d.market.book(TST.con_id) == before
    o, evs = d.submit("SELL", 500, "LMT", lmtPrice=99.97, tif="FOK")
    assert fills(evs) == [
        (100, 99.99, LIQ_REMOVED),
        (200, 99.98, LIQ_REMOVED),
        (200, 99.97, LIQ_REMOVED),
    ]
    assert o.status == "Filled"
    # IOC/FOK never rest: nothing of theirs is left to match later
    assert d.engine.open_orders() == []


# ---- resting limits ---------------------------------------------------------------------------


def test_resting_limit_waits_for_the_queue_ahead_then_fills_at_its_price() -> None:
    d = Desk()
    standard_book(d)
    o, evs = d.submit("BUY", 200, "LMT", lmtPrice=99.98)
    assert fills(evs) == [] and o.status == "Submitted"  # behind 200 at 99.98
    # 150 trade at our price: all of it was ahead of us
    assert fills(d.book(bids=[(99.99, 100), (99.98, 50)], trades=((99.98, 150),))) == []
    # 120 more: 50 still ahead, 70 for us, at our price, as the passive side
    evs = d.book(bids=[(99.99, 100)], trades=((99.98, 120),))
    assert fills(evs) == [(70, 99.98, LIQ_ADDED)]
    # a print through our price fills the rest first, never more than we want
    evs = d.prints((99.97, 500))
    assert fills(evs) == [(130, 99.98, LIQ_ADDED)]
    assert statuses(evs) == ["Filled"]


def test_prints_before_placement_do_not_count() -> None:
    d = Desk()
    standard_book(d)
    d.steps[TST.con_id].append(ReplayStep(0, (), (Trade(99.90, Decimal(500)),)))
    d.market.step(TST.con_id)  # printed, but the engine has not looked yet
    o, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.95)
    assert fills(d.engine.on_market(TST.con_id, d.now)) == [] and o.filled == 0
    assert fills(d.prints((99.94, 40))) == [(40, 99.95, LIQ_ADDED)]


def test_opposite_side_crossing_a_resting_limit_fills_it_at_its_price() -> None:
    d = Desk()
    standard_book(d)
    o, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.95)
    evs = d.book(bids=[(99.94, 10)], asks=[(99.93, 60), (99.95, 30), (99.99, 500)])
    assert fills(evs) == [(90, 99.95, LIQ_ADDED)]  # bounded by what the book showed
    assert d.market.book(TST.con_id).asks == [(99.99, 500)]
    prints = [e for u in evs if isinstance(u, BookUpdate) for e in u.events if type(e) is Trade]
    assert [t.price for t in prints] == [99.95, 99.95]
    assert (o.status, o.remaining) == ("Submitted", 10)


def test_iceberg_shows_and_fills_one_display_slice_per_touch() -> None:
    d = Desk()
    d.book(bids=[(99.97, 100)], asks=[(100.00, 100)])
    o, _ = d.submit("BUY", 1000, "LMT", lmtPrice=99.98, displaySize=100)
    # a big print through us only takes the displayed 100; the refill joins the back of 40
    assert fills(d.book(bids=[(99.98, 40), (99.97, 100)], trades=((99.97, 500),))) == [
        (100, 99.98, LIQ_ADDED)
    ]
    assert fills(d.prints((99.98, 100))) == [(60, 99.98, LIQ_ADDED)]
    assert fills(d.prints((99.98, 100))) == [(40, 99.98, LIQ_ADDED)]
    for _ in range(8):
        assert fills(d.prints((99.90, 10_000))) == [(100, 99.98, LIQ_ADDED)]
    assert o.status == "Filled" and o.filled == 1000


def test_marketable_iceberg_executes_in_display_slices() -> None:
    d = Desk()
    d.book(bids=[(99.97, 100)], asks=[(100.00, 25), (100.01, 30)])
    o, evs = d.submit("BUY", 50, "LMT", lmtPrice=100.01, displaySize=10)
    assert fills(evs) == [
        (10, 100.00, LIQ_REMOVED),
        (10, 100.00, LIQ_REMOVED),
        (5, 100.00, LIQ_REMOVED),
        (10, 100.01, LIQ_REMOVED),
        (10, 100.01, LIQ_REMOVED),
        (5, 100.01, LIQ_REMOVED),
    ]
    assert o.status == "Filled"


# ---- stops ------------------------------------------------------------------------------------


def test_stop_triggers_exactly_at_its_price() -> None:
    d = Desk()
    d.book(bids=[(99.95, 100), (99.94, 100)], asks=[(99.96, 100)], trades=((99.95, 1),))
    o, evs = d.submit("SELL", 50, "STP", auxPrice=99.90)
    assert statuses(evs) == ["PreSubmitted"] and o.phase is Phase.TRIGGER
    assert d.prints((99.91, 5)) == []
    evs = d.book(bids=[(99.89, 70), (99.88, 100)], asks=[(99.91, 10)], trades=((99.90, 5),))
    assert statuses(evs) == ["Submitted", "Filled"]
    assert fills(evs) == [(50, 99.89, LIQ_REMOVED)]


def test_stop_already_through_triggers_on_placement() -> None:
    d = Desk()
    d.book(bids=[(99.95, 100)], asks=[(99.96, 100)], trades=((99.95, 1),))
    o, evs = d.submit("BUY", 10, "STP", auxPrice=99.90)
    assert statuses(evs) == ["PreSubmitted", "Submitted", "Filled"]
    assert fills(evs) == [(10, 99.96, LIQ_REMOVED)] and o.status == "Filled"


def test_stop_limit_becomes_a_limit_and_rests() -> None:
    d = Desk()
    d.book(bids=[(99.95, 100)], asks=[(99.96, 100)], trades=((99.95, 1),))
    o, _ = d.submit("SELL", 300, "STP LMT", auxPrice=99.90, lmtPrice=99.88)
    evs = d.book(bids=[(99.89, 100), (99.88, 100), (99.87, 500)], trades=((99.89, 1),))
    assert fills(evs) == [(100, 99.89, LIQ_REMOVED), (100, 99.88, LIQ_REMOVED)]
    assert (o.status, o.remaining, o.phase) == ("Submitted", 100, Phase.WORKING)


def test_trailing_stop_ratchets_only_toward_the_market() -> None:
    d = Desk()
    d.book(bids=[(99.99, 100)], asks=[(100.00, 100)], trades=((100.00, 1),))
    o, _ = d.submit("SELL", 10, "TRAIL", auxPrice=0.10)
    assert o.order.trailStopPrice == 99.90
    d.prints((100.05, 1), (100.20, 1))
    assert o.order.trailStopPrice == 100.10
    d.prints((100.15, 1))  # a pull-back does not loosen the stop
    assert o.order.trailStopPrice == 100.10 and o.phase is Phase.TRIGGER
    assert d.prints((100.11, 1)) == []
    evs = d.book(bids=[(100.09, 50)], asks=[(100.11, 50)], trades=((100.10, 1),))
    assert fills(evs) == [(10, 100.09, LIQ_REMOVED)]


def test_trailing_percent_buy_and_initial_trail_stop_price() -> None:
    d = Desk()
    d.book(bids=[(99.99, 100)], asks=[(100.00, 100)], trades=((100.00, 1),))
    buy, _ = d.submit("BUY", 10, "TRAIL", trailingPercent=1.0)
    assert buy.order.trailStopPrice == 101.00
    d.prints((99.00, 1))
    assert buy.order.trailStopPrice == 99.99  # 99.00 + 1%, rounded away from the market
    d.prints((99.50, 1))
    assert buy.order.trailStopPrice == 99.99 and buy.phase is Phase.TRIGGER
    sell, _ = d.submit("SELL", 10, "TRAIL", auxPrice=0.50, trailStopPrice=99.00)
    assert sell.order.trailStopPrice == 99.00
    d.prints((99.70, 1))
    assert sell.order.trailStopPrice == 99.20


def test_trail_limit_triggers_into_a_limit_offset_from_the_stop() -> None:
    d = Desk()
    d.book(bids=[(99.99, 100)], asks=[(100.00, 100)], trades=((100.00, 1),))
    o, _ = d.submit("SELL", 100, "TRAIL LIMIT", auxPrice=0.10, lmtPriceOffset=0.05)
    evs = d.book(bids=[(99.88, 10), (99.86, 10), (99.84, 100)], trades=((99.90, 1),))
    assert fills(evs) == [(10, 99.88, LIQ_REMOVED), (10, 99.86, LIQ_REMOVED)]
    assert o.status == "Submitted" and o.remaining == 80  # resting at 99.85


def test_double_last_needs_two_consecutive_prints() -> None:
    d = Desk()
    d.book(bids=[(99.95, 100)], asks=[(99.96, 100)], trades=((99.95, 1),))
    o, _ = d.submit("SELL", 10, "STP", auxPrice=99.90, triggerMethod=3)
    d.prints((99.90, 1))
    d.prints((99.95, 1))
    d.prints((99.89, 1))
    assert o.phase is Phase.TRIGGER
    evs = d.prints((99.88, 1))
    assert statuses(evs)[:1] == ["Submitted"] and o.status == "Filled"


def test_fx_stops_trigger_on_the_bid_and_ask() -> None:
    d = Desk(FX)
    d.book(FX, bids=[(1.12910, 1_000_000)], asks=[(1.12915, 1_000_000)])
    o, _ = d.submit("SELL", 25_000, "STP", inst=FX, auxPrice=1.12900)
    assert d.book(FX, bids=[(1.12905, 1_000_000)]) == [] and o.phase is Phase.TRIGGER
    evs = d.book(FX, bids=[(1.12900, 1_000_000)], asks=[(1.12905, 1_000_000)])
    assert fills(evs) == [(25_000, 1.129, LIQ_REMOVED)]
    assert [e.commission for e in evs if isinstance(e, Fill)] == [2.0]  # the FX minimum


def test_option_default_trigger_is_double_bid_ask() -> None:
    d = Desk(OPT)
    d.book(OPT, bids=[(8.40, 10)], asks=[(8.50, 10)])
    o, _ = d.submit("SELL", 1, "STP", inst=OPT, auxPrice=8.00)
    d.book(OPT, bids=[(8.00, 10)], asks=[(8.10, 10)])
    assert o.phase is Phase.TRIGGER  # one observation is not enough
    evs = d.book(OPT, bids=[(7.95, 10)])
    assert fills(evs) == [(1, 7.95, LIQ_REMOVED)]
    assert [e.commission for e in evs if isinstance(e, Fill)] == [1.0]  # option minimum


# ---- time: expiry, algos, auctions ------------------------------------------------------------


def test_day_gtd_and_gtc_expiry() -> None:
    d = Desk()
    standard_book(d)
    day, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00)
    gtd, _ = d.submit(
        "BUY", 10, "LMT", lmtPrice=99.00, tif="GTD", goodTillDate="20250602 12:00:00 US/Eastern"
    )
    utc, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00, tif="GTD", goodTillDate="20250602-15:00:00")
    gtc, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00, tif="GTC")
    assert d.at(3600 - 1e-9) == []
    assert statuses(d.at(3600)) == ["Cancelled"] and utc.status == "Cancelled"
    evs = d.at(2 * 3600)
    assert [(e.order, e.status) for e in evs] == [(gtd, "Cancelled")]
    assert "GTD" in evs[0].reason
    assert d.at(6 * 3600 - 1e-9) == [] and day.status == "Submitted"
    evs = d.at(6 * 3600)  # 16:00 New York
    assert [(e.order, e.status) for e in evs] == [(day, "Cancelled")]
    assert "DAY" in evs[0].reason
    d.at(7 * 24 * 3600)
    assert gtc.status == "Submitted"
    past, evs = d.submit(
        "BUY", 1, "LMT", lmtPrice=99.0, tif="GTD", goodTillDate="20250601 12:00:00 US/Eastern"
    )
    assert [(type(e), e.code) for e in evs] == [(Rejected, 201)] and past.status == "Inactive"


def test_opening_and_closing_auctions() -> None:
    d = Desk()
    d.book(bids=[(99.99, 100)], asks=[(100.01, 100)])
    opg, evs = d.submit("BUY", 100, "MKT", tif="OPG")
    assert statuses(evs) == ["Submitted"] and opg.phase is Phase.AUCTION
    opg_lmt, _ = d.submit("SELL", 100, "LMT", lmtPrice=100.01, tif="OPG")
    moc, _ = d.submit("SELL", 50, "MOC")
    loc_low, _ = d.submit("BUY", 50, "LOC", lmtPrice=99.99)
    loc_ok, _ = d.submit("BUY", 50, "LOC", lmtPrice=100.00)
    assert fills(d.prints((99.00, 1000))) == []  # auction orders ignore the continuous market
    evs = d.engine.auction(TST.con_id, "open", d.now)
    assert [(e.order, e.qty, e.price, e.liquidity) for e in evs if isinstance(e, Fill)] == [
        (opg, 100, 100.00, LIQ_AUCTION)
    ]
    assert opg_lmt.status == "Cancelled" and moc.status == "Submitted"
    evs = d.engine.auction(TST.con_id, "close", d.now)
    assert [(e.order, e.qty, e.price) for e in evs if isinstance(e, Fill)] == [
        (moc, 50, 100.00),
        (loc_ok, 50, 100.00),
    ]
    assert loc_low.status == "Cancelled"
    assert d.engine.open_orders() == []
    with pytest.raises(ValueError):
        d.engine.auction(TST.con_id, "midday", d.now)


def test_twap_fills_in_slices_over_the_horizon() -> None:
    d = Desk(algo_horizon_ns=10 * NS)
    d.book(bids=[(99.99, 100_000)], asks=[(100.00, 100_000)])
    o, evs = d.submit("BUY", 1000, "MKT", algoStrategy="Twap", algoParams=[])
    assert statuses(evs) == ["Submitted"] and fills(evs) == [] and o.phase is Phase.ALGO
    times = []
    for k in range(25):
        for e in d.at(k * 0.5):
            if isinstance(e, Fill):
                times.append((d.now - T0) / NS)
                assert e.liquidity == LIQ_REMOVED and e.price == 100.00
    assert o.status == "Filled" and o.filled == 1000
    assert times == [float(s) for s in range(1, 11)]  # ten one-second slices of 100


def test_vwap_window_passive_and_past_end_behaviour() -> None:
    d = Desk()
    d.book(bids=[(99.99, 10_000)], asks=[(100.01, 10_000)])
    params = [
        TagValue("startTime", "20250602 10:00:30 US/Eastern"),
        TagValue("endTime", "10:01:30 US/Eastern"),
        TagValue("noTakeLiq", "1"),
        TagValue("allowPastEndTime", "0"),
    ]
    o, _ = d.submit("BUY", 600, "LMT", lmtPrice=100.00, algoStrategy="Vwap", algoParams=params)
    seen: list[tuple[float, Decimal, float, int]] = []
    for k in range(1, 100):
        seen += [((d.now - T0) / NS, *f) for f in fills(d.at(k))]
    assert o.status == "Filled" and sum(q for _, q, _, _ in seen) == 600
    assert seen[0][0] > 30 and seen[-1][0] <= 90 and len(seen) >= 5
    assert {(p, liq) for _, _, p, liq in seen} == {(99.99, LIQ_ADDED)}
    # a thin touch cannot finish the order in time: the remainder is cancelled at the end
    thin = Desk(algo_horizon_ns=10 * NS)
    thin.book(bids=[(99.99, 10)], asks=[(100.01, 10)])
    o, _ = thin.submit(
        "BUY", 1000, "MKT", algoStrategy="Vwap", algoParams=[TagValue("noTakeLiq", "1")]
    )
    evs = [e for k in range(1, 12) for e in thin.at(k)]
    assert o.status == "Cancelled" and 0 < o.filled < 1000
    assert statuses(evs)[-1:] == ["Cancelled"]


def test_vwap_participation_cap_and_limit() -> None:
    d = Desk(algo_horizon_ns=10 * NS)
    d.book(bids=[(99.99, 10_000)], asks=[(100.01, 10_000)])
    capped, _ = d.submit(
        "BUY", 1000, "MKT", algoStrategy="Vwap", algoParams=[TagValue("maxPctVol", "0.1")]
    )
    d.at(5)
    assert capped.filled == 0  # no market volume yet
    d.prints((100.01, 2000))
    d.at(6)
    assert capped.filled == 200  # 10% of the 2000 traded since the start
    far, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.00, algoStrategy="Vwap", algoParams=[])
    for k in range(7, 30):
        d.at(k)
    assert far.filled == 0 and far.status == "Cancelled"


def test_adaptive_priorities_choose_price_and_pace() -> None:
    d = Desk(algo_horizon_ns=8 * NS)
    d.book(bids=[(99.99, 10_000)], asks=[(100.01, 10_000)])
    urgent, _ = d.submit(
        "BUY",
        100,
        "MKT",
        algoStrategy="Adaptive",
        algoParams=[TagValue("adaptivePriority", "Urgent")],
    )
    normal, _ = d.submit("BUY", 100, "MKT", algoStrategy="Adaptive", algoParams=[])
    patient, _ = d.submit(
        "BUY",
        100,
        "MKT",
        algoStrategy="Adaptive",
        algoParams=[TagValue("adaptivePriority", "Patient")],
    )
    got: dict[int, list] = {urgent.order_id: [], normal.order_id: [], patient.order_id: []}
    for k in range(1, 100):
        for e in d.at(k * 0.25):
            if isinstance(e, Fill):
                got[e.order.order_id].append((d.now - T0, e.price, e.liquidity))
    assert {(p, liq) for _, p, liq in got[urgent.order_id]} == {(100.01, LIQ_REMOVED)}
    assert {(p, liq) for _, p, liq in got[normal.order_id]} == {(100.00, LIQ_ADDED)}
    assert {(p, liq) for _, p, liq in got[patient.order_id]} == {(99.99, LIQ_ADDED)}
    done = {k: v[-1][0] for k, v in got.items()}
    assert done[urgent.order_id] <= 2 * NS < done[normal.order_id] <= 8 * NS
    assert 8 * NS < done[patient.order_id] <= 24 * NS
    assert all(len(v) > 2 for v in got.values())


# ---- validation -------------------------------------------------------------------------------

VWAP, TWAP = "Vwap", "Twap"


@pytest.mark.parametrize(
    ("inst", "args", "fields", "code", "text"),
    [
        (AAPL, ("HOLD", 1, "LMT"), {"lmtPrice": 200.0}, 201, "action"),
        (AAPL, ("BUY", 0, "MKT"), {}, 201, "greater than 0"),
        (AAPL, ("BUY", -5, "MKT"), {}, 201, "greater than 0"),
        (AAPL, ("BUY", 1.5, "MKT"), {}, 201, "size increment"),
        (BTC, ("BUY", "0.00005", "MKT"), {}, 201, "size increment"),
        (AAPL, ("BUY", 1, "PEG BENCH"), {}, 201, "unknown order type"),
        (BTC, ("SELL", 1, "TRAIL"), {"auxPrice": 100.0}, 201, "not supported"),
        (BTC, ("SELL", "0.001", "MKT"), {}, 201, "only the time in force IOC"),
        (BTC, ("BUY", "0.001", "MKT"), {"tif": "IOC"}, 201, "cash quantity (cashQty)"),
        (ES, ("SELL", 1, "MOC"), {}, 201, "not supported"),
        (AAPL, ("BUY", 1, "LMT"), {}, 201, "limit price"),
        (AAPL, ("BUY", 1, "LMT"), {"lmtPrice": 200.005}, 110, "minimum price variation"),
        (ES, ("BUY", 1, "LMT"), {"lmtPrice": 5900.10}, 110, "minimum price variation"),
        (OPT, ("BUY", 1, "LMT"), {"lmtPrice": 3.03}, 110, "minimum price variation"),
        (AAPL, ("BUY", 1, "STP"), {}, 201, "auxPrice"),
        (AAPL, ("BUY", 1, "STP LMT"), {"auxPrice": 201.0}, 201, "limit price"),
        (AAPL, ("SELL", 1, "TRAIL"), {}, 201, "trailing amount"),
        (AAPL, ("SELL", 1, "TRAIL"), {"auxPrice": 1.0, "trailingPercent": 1.0}, 201, "either"),
        (AAPL, ("SELL", 1, "TRAIL"), {"auxPrice": 0.015}, 110, "minimum price variation"),
        (AAPL, ("SELL", 1, "TRAIL LIMIT"), {"auxPrice": 1.0}, 201, "lmtPriceOffset"),
        (AAPL, ("BUY", 1, "LMT"), {"lmtPrice": 200.0, "tif": "GTD"}, 201, "goodTillDate"),
        (
            AAPL,
            ("BUY", 1, "LMT"),
            {"lmtPrice": 200.0, "tif": "GTD", "goodTillDate": "tomorrow"},
            201,
            "goodTillDate",
        ),
        (AAPL, ("BUY", 1, "STP"), {"auxPrice": 201.0, "tif": "OPG"}, 201, "time in force"),
        (AAPL, ("BUY", 1, "STP"), {"auxPrice": 201.0, "tif": "IOC"}, 201, "time in force"),
        (AAPL, ("BUY", 1, "MOC"), {"tif": "GTC"}, 201, "time in force"),
        (BTC, ("BUY", 1, "LMT"), {"lmtPrice": 100.0, "tif": "GTD"}, 201, "time in force"),
        (AAPL, ("BUY", 100, "MKT"), {"displaySize": 10}, 201, "iceberg"),
        (AAPL, ("BUY", 1, "MKT"), {"algoStrategy": "ArrivalPx"}, 201, "not supported"),
        (ES, ("BUY", 1, "MKT"), {"algoStrategy": VWAP}, 201, "not available"),
        (AAPL, ("BUY", 1, "STP"), {"auxPrice": 201.0, "algoStrategy": TWAP}, 201, "MKT or LMT"),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": VWAP, "algoParams": [TagValue("maxPctVol", "0.9")]},
            201,
            "0.01..0.5",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": VWAP, "algoParams": [TagValue("maxPctvol", "0.1")]},
            201,
            "unknown Vwap parameter",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": VWAP, "algoParams": [TagValue("allowPastEndTime", "maybe")]},
            201,
            "allowPastEndTime",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": TWAP, "algoParams": [TagValue("strategyType", "Sneaky")]},
            201,
            "Marketable",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {
                "algoStrategy": TWAP,
                "algoParams": [
                    TagValue("startTime", "15:00:00 US/Eastern"),
                    TagValue("endTime", "14:00:00 US/Eastern"),
                ],
            },
            201,
            "endTime",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": TWAP, "algoParams": [TagValue("startTime", "9am")]},
            201,
            "startTime",
        ),
        (
            AAPL,
            ("BUY", 1, "MKT"),
            {"algoStrategy": "Adaptive", "algoParams": [TagValue("adaptivePriority", "Fast")]},
            201,
            "Patient",
        ),
    ],
)
def test_validation_rejects_with_ib_codes(
    inst: SimInstrument, args: tuple, fields: dict, code: int, text: str
) -> None:
    d = Desk(inst)
    sim = d.new(*args, inst=inst, **fields)
    rej = d.engine.validate(sim)
    assert rej is not None and rej.code == code and text in rej.reason, rej
    evs = d.engine.submit(sim, d.now)
    assert [(type(e), e.code) for e in evs] == [(Rejected, code)]
    assert sim.status == "Inactive" and d.engine.open_orders() == []


@pytest.mark.parametrize(
    ("inst", "args", "fields"),
    [
        (AAPL, ("BUY", 100, "LMT"), {"lmtPrice": 200.01, "tif": "GTC", "displaySize": 10}),
        (BTC, ("BUY", "0.0005", "LMT"), {"lmtPrice": 105000.25, "tif": "IOC"}),
        (OPT, ("BUY", 1, "LMT"), {"lmtPrice": 2.53}),
        (OPT, ("BUY", 1, "LMT"), {"lmtPrice": 3.05}),
        (ES, ("SELL", 2, "TRAIL LIMIT"), {"trailingPercent": 0.5, "lmtPriceOffset": 1.25}),
        (AAPL, ("SELL", 1, "MOC"), {}),
        (AAPL, ("BUY", 1, "LMT"), {"lmtPrice": 200.0, "tif": "OPG"}),
        (
            AAPL,
            ("BUY", 1, "LMT"),
            {
                "lmtPrice": 200.0,
                "algoStrategy": VWAP,
                "algoParams": [
                    TagValue("maxPctVol", 0.2),
                    TagValue("startTime", "09:30:00 US/Eastern"),
                    TagValue("endTime", "16:00:00 US/Eastern"),
                    TagValue("allowPastEndTime", 1),
                    TagValue("noTakeLiq", 0),
                    TagValue("speedUp", 1),
                    TagValue("monetaryValue", 100000),
                ],
            },
        ),
        (ES, ("BUY", 1, "MKT"), {"algoStrategy": "Adaptive", "algoParams": []}),
    ],
)
def test_valid_orders_pass_validation(inst: SimInstrument, args: tuple, fields: dict) -> None:
    d = Desk(inst)
    assert d.engine.validate(d.new(*args, inst=inst, **fields)) is None


def test_unset_sentinels_from_the_wire_mean_unset() -> None:
    d = Desk()
    standard_book(d)
    o, evs = d.submit("BUY", 10, "MKT", displaySize=UNSET_INTEGER, parentId=UNSET_INTEGER)
    assert o.parent_id == 0 and statuses(evs) == ["Submitted", "Filled"]


def test_parse_ib_time_forms() -> None:
    assert parse_ib_time("20250602 10:00:00 US/Eastern", 0, "UTC") == T0
    assert parse_ib_time("20250602-14:00:00", 0, "US/Eastern") == T0
    assert parse_ib_time("10:00:00", T0 + 5 * NS, "US/Eastern") == T0
    assert parse_ib_time("20250602 14:00:00", 0, "UTC") == T0
    for bad in ("2025-06-02 10:00", "20250602 10:00:00 Mars/Base", "20250602-14:00:00 UTC"):
        with pytest.raises(ValueError):
            parse_ib_time(bad, 0, "UTC")


# ---- modification and cancels -----------------------------------------------------------------


def test_modify_price_into_the_market_fills_it() -> None:
    d = Desk()
    standard_book(d)
    o, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.95)
    evs = d.engine.modify(o, make_order("BUY", 100, "LMT", lmtPrice=100.00), d.now)
    assert statuses(evs) == ["Submitted", "Filled"] and evs[0].reason == "modified"
    assert fills(evs) == [(100, 100.00, LIQ_REMOVED)]


def test_modify_quantity_rules() -> None:
    d = Desk()
    standard_book(d)
    o, _ = d.submit("BUY", 300, "LMT", lmtPrice=100.00)
    assert o.filled == 100
    evs = d.engine.modify(o, make_order("BUY", 50, "LMT", lmtPrice=100.00), d.now)
    assert [(type(e), e.code) for e in evs] == [(Rejected, 201)]
    assert (o.remaining, o.order.totalQuantity, o.status) == (200, 300, "Submitted")
    evs = d.engine.modify(o, make_order("BUY", 100, "LMT", lmtPrice=100.00), d.now)
    assert statuses(evs) == ["Filled"] and o.filled == 100
    assert [(type(e), e.code) for e in d.engine.modify(o, o.order, d.now)] == [(Rejected, 104)]
    o, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00)
    for changed in (
        make_order("SELL", 10, "LMT", lmtPrice=99.00),
        make_order("BUY", 10, "STP", auxPrice=101.0),
    ):
        assert [(type(e), e.code) for e in d.engine.modify(o, changed, d.now)] == [(Rejected, 105)]
    evs = d.engine.modify(o, make_order("BUY", 10, "LMT", lmtPrice=99.001), d.now)
    assert [(type(e), e.code) for e in evs] == [(Rejected, 110)]
    assert o.order.lmtPrice == 99.00


@pytest.mark.parametrize(
    ("new_qty", "new_price", "expected_fill"), [(150, 99.98, 50), (400, 99.98, 0), (150, 99.97, 0)]
)
def test_reducing_keeps_queue_priority_others_lose_it(
    new_qty: int, new_price: float, expected_fill: int
) -> None:
    d = Desk()
    standard_book(d)
    o, _ = d.submit("BUY", 200, "LMT", lmtPrice=99.98)  # behind 200
    # 150 trade ahead of us and 200 more join behind: 50 ahead of us, 250 at the level
    d.book(bids=[(99.99, 100), (99.98, 250), (99.97, 300)], trades=((99.98, 150),))
    d.engine.modify(o, make_order("BUY", new_qty, "LMT", lmtPrice=new_price), d.now)
    at_price = ((new_price, 100),)
    got = fills(d.book(bids=[(99.99, 100), (99.98, 150), (99.97, 200)], trades=at_price))
    assert sum(q for q, _, _ in got) == expected_fill


def test_modify_a_stop_into_the_market_triggers_it() -> None:
    d = Desk()
    d.book(bids=[(99.95, 100)], asks=[(99.96, 100)], trades=((99.95, 1),))
    o, _ = d.submit("SELL", 10, "STP", auxPrice=99.00)
    evs = d.engine.modify(o, make_order("SELL", 10, "STP", auxPrice=99.96), d.now)
    assert statuses(evs) == ["PreSubmitted", "Submitted", "Filled"]


def test_cancel_and_cancel_all() -> None:
    d = Desk()
    standard_book(d)
    a, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00)
    evs = d.engine.cancel(a, d.now)
    assert statuses(evs) == ["Cancelled"] and a.status == "Cancelled"
    assert fills(d.prints((98.00, 1000))) == []  # a cancelled order never fills
    again = d.engine.cancel(a, d.now)
    assert [(type(e), e.code) for e in again] == [(Rejected, 10148)]
    b, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00, client_id=1)
    c, _ = d.submit("SELL", 10, "STP", auxPrice=90.0, client_id=2)
    e, _ = d.submit("BUY", 10, "LMT", lmtPrice=99.00, client_id=2)
    assert {o.order_id for o in d.engine.open_orders()} == {b.order_id, c.order_id, e.order_id}
    evs = d.engine.cancel_all(d.now, client_id=2)
    assert {ev.order.order_id for ev in evs} == {c.order_id, e.order_id}
    assert statuses(d.engine.cancel_all(d.now)) == ["Cancelled"] and b.status == "Cancelled"


# ---- linked orders ----------------------------------------------------------------------------


def test_bracket_children_wait_for_the_parent_then_act_as_one_group() -> None:
    d = Desk()
    standard_book(d)
    parent, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.90, order_id=10)
    assert parent.status == "Submitted"
    tp, evs = d.submit("SELL", 100, "LMT", lmtPrice=100.50, parentId=10, order_id=11)
    sl, _ = d.submit("SELL", 100, "STP", auxPrice=99.50, parentId=10, order_id=12)
    assert statuses(evs) == ["PreSubmitted"] and (tp.why_held, sl.why_held) == ("child", "child")
    assert fills(d.prints((99.00, 10))) == [(10, 99.90, LIQ_ADDED)]
    assert tp.phase is Phase.HELD  # a partial fill does not release the children
    evs = d.book(asks=[(99.90, 500)], bids=[(99.80, 100)])
    assert statuses(evs) == ["Filled", "Submitted", "PreSubmitted"]
    assert (tp.phase, sl.phase, tp.why_held) == (Phase.WORKING, Phase.TRIGGER, "")
    evs = d.book(bids=[(100.50, 60)], asks=[(100.60, 100)])
    assert fills(evs) == [(60, 100.50, LIQ_ADDED)]
    assert sl.remaining == 40 and sl.order.totalQuantity == 40  # reduced with its sibling
    evs = d.book(bids=[(100.50, 60)])
    assert tp.status == "Filled" and sl.status == "Cancelled"
    # cancelling a parent cancels its waiting children
    p2, _ = d.submit("BUY", 10, "LMT", lmtPrice=90.0, order_id=20)
    child, _ = d.submit("SELL", 10, "LMT", lmtPrice=110.0, parentId=20, order_id=21)
    evs = d.engine.cancel(p2, d.now)
    assert [(e.order, e.status) for e in evs] == [(p2, "Cancelled"), (child, "Cancelled")]
    # a child of a cancelled parent is refused
    late, evs = d.submit("SELL", 10, "LMT", lmtPrice=110.0, parentId=20, order_id=22)
    assert [(type(e), e.code) for e in evs] == [(Rejected, 201)] and late.status == "Inactive"


def test_oca_cancel_and_reduce() -> None:
    d = Desk()
    standard_book(d)
    a, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.50, ocaGroup="g1", ocaType=1)
    b, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.40, ocaGroup="g1", ocaType=1)
    evs = d.prints((99.45, 30))
    assert fills(evs) == [(30, 99.50, LIQ_ADDED)] and b.status == "Cancelled"
    assert a.status == "Submitted" and a.remaining == 70
    d.engine.cancel(a, d.now)
    c, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.50, ocaGroup="g2", ocaType=2)
    e, _ = d.submit("BUY", 100, "LMT", lmtPrice=99.40, ocaGroup="g2", ocaType=2)
    d.prints((99.45, 30))
    assert c.filled == 30 and e.status == "Submitted" and e.remaining == 70


# ---- commissions and sizes --------------------------------------------------------------------


def test_commission_model() -> None:
    m = CommissionModel()
    assert m.fee("STK", 100, 100.0, 0.0) == 0.35  # the per-order minimum
    assert m.fee("STK", 10, 20.0, 0.0) == 0.20  # capped at 1% of value
    assert m.fee("STK", 110, 2200.0, 0.35) == 0.035  # a later fill: the order's total is 0.385
    assert m.fee("STK", 1000, 1e5, 0.0, month_qty=500_000) == 2.0  # second tier
    assert m.fee("OPT", 1, 850.0, 0.0) == 1.0 and m.fee("OPT", 5, 4250.0, 0.0) == 3.25
    assert m.fee("FUT", 2, 590_000.0, 0.0) == 4.5
    assert m.fee("CASH", 25_000, 28_250.0, 0.0) == 2.0
    assert m.fee("CASH", 1_000_000, 1_130_000.0, 0.0) == 22.6
    assert m.fee("CRYPTO", 0.01, 1000.0, 0.0) == 1.8
    cheap = CommissionModel(stock_tiers=((float("inf"), 0.001),), stock_min=0.0)
    assert cheap.fee("STK", 100, 1e4, 0.0) == 0.1


def test_futures_and_fractional_crypto_fills() -> None:
    d = Desk(ES, BTC)
    d.book(ES, bids=[(5899.75, 10)], asks=[(5900.00, 10)])
    _, evs = d.submit("BUY", 2, "MKT", inst=ES)
    assert [(f.qty, f.price, f.commission) for f in evs if isinstance(f, Fill)] == [
        (2, 5900.0, 4.5)
    ]
    d.book(BTC, bids=[(104999.75, "0.5")], asks=[(105000.00, "0.0003"), (105000.25, "0.5")])
    # A marketable limit: IB takes crypto market buys only sized in cash (cashQty).
    o, evs = d.submit("BUY", "0.0005", "LMT", inst=BTC, lmtPrice=105000.25, tif="IOC")
    assert fills(evs) == [
        (Decimal("0.0003"), 105000.0, LIQ_REMOVED),
        (Decimal("0.0002"), 105000.25, LIQ_REMOVED),
    ]
    assert o.filled == Decimal("0.0005") and o.remaining == 0
    assert o.commission == 1.75  # the crypto minimum, charged once


# ---- properties against the random walk -------------------------------------------------------

ORDER = st.tuples(
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 3000),
    st.sampled_from(["MKT", "LMT", "LMT", "STP"]),
    st.integers(-30, 30),
    st.sampled_from(["DAY", "IOC", "GTC"]),
)


def run_random(seed: int, orders: list) -> tuple[list[SimOrder], list[Fill]]:
    market = Market([AAPL], seed=seed)
    engine = MatchingEngine(market)
    placed, got = [], []
    now = T0
    for i, (action, qty, typ, offset, tif) in enumerate(orders):
        for _ in range(5):
            market.step(AAPL.con_id)
            now += NS // 10
            got += [e for e in engine.on_market(AAPL.con_id, now) if isinstance(e, Fill)]
        ref = market.book(AAPL.con_id).bid
        price = round(ref + offset * 0.01, 2)
        fields = (
            {"lmtPrice": price} if typ == "LMT" else {"auxPrice": price} if typ == "STP" else {}
        )
        if typ == "STP":
            tif = "DAY"
        order = make_order(action, qty, typ, tif=tif, **fields)
        sim = SimOrder(i + 1, 1, i + 1, AAPL, AAPL.contract(), order)
        placed.append(sim)
        got += [e for e in engine.submit(sim, now) if isinstance(e, Fill)]
    for _ in range(50):
        market.step(AAPL.con_id)
        now += NS // 10
        got += [e for e in engine.on_market(AAPL.con_id, now) if isinstance(e, Fill)]
    return placed, got


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), orders=st.lists(ORDER, min_size=1, max_size=12))
def test_fills_are_consistent_with_every_order(seed: int, orders: list) -> None:
    placed, got = run_random(seed, orders)
    assert len({f.exec_id for f in got}) == len(got)
    for o in placed:
        mine = [f for f in got if f.order is o]
        total = sum((f.qty for f in mine), Decimal(0))
        assert total == o.filled <= o.order.totalQuantity
        assert o.remaining == o.order.totalQuantity - o.filled
        assert (o.status == "Filled") == (o.remaining == 0)
        if mine:
            assert [f.cum_qty for f in mine] == list(itertools.accumulate(f.qty for f in mine))
            vwap = sum(float(f.qty) * f.price for f in mine) / float(total)
            assert o.avg_fill_price == pytest.approx(vwap)
        if o.order.orderType == "LMT":
            lim = o.order.lmtPrice
            assert all(
                f.price <= lim + 1e-9 if o.order.action == "BUY" else f.price >= lim - 1e-9
                for f in mine
            )
        if o.order.tif == "IOC":
            assert o.phase is Phase.DONE
            assert all(f.time_ns == o.submitted_ns for f in mine)


def test_the_same_script_gives_the_same_fills() -> None:
    orders = [("BUY", 500, "MKT", 0, "DAY"), ("SELL", 800, "LMT", 2, "GTC")] * 4
    a = [(f.exec_id, f.qty, f.price, f.time_ns) for f in run_random(5, orders)[1]]
    b = [(f.exec_id, f.qty, f.price, f.time_ns) for f in run_random(5, orders)[1]]
    assert a == b and len(a) > 4
