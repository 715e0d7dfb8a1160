"""Parent/child orders, OCA groups and ``transmit`` as IB expresses them.

Through strategy -> risk gate -> router -> venue: the simulated venue (brackets, OCA cancel and
reduce, held children, untransmitted chains, refusals by the gate), ``IBVenue`` against the
gateway simulator over loopback (the same bracket end to end, the frames carrying parentId,
ocaGroup, ocaType and transmit, at the text and the protobuf server versions), and the
simulator's own semantics through the official ibapi ``EClient``.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from ibapi.contract import Contract
from ibapi.order import Order as IbOrder
from ibapi.order_cancel import OrderCancel
from ibapi.server_versions import MAX_CLIENT_VER
from test_order_types import ASK, BID, Harness

from adapters.sim.venue import SimVenue
from engine.messages import BOOK_DELTA, DeltaAction, EventKind, OrderType, Side
from engine.orders import OrderState
from engine.risk_gate import Verdict
from hotpath import risk as rk
from tests.ib_sim_support import SimThread, connected, sim_config
from tests.ib_venue_support import IBHarness, until

A, F, C, R, M = (
    EventKind.ACCEPTED,
    EventKind.FILL,
    EventKind.CANCELLED,
    EventKind.REJECTED,
    EventKind.MODIFIED,
)
BUY, SELL = Side.BUY, Side.SELL


def sim() -> Harness:
    """AAPL 99.99 / 100.01 (500 each side) on the simulated venue."""
    return Harness(SimVenue("SIM"))


def quote(h: Harness, bid: int, ask: int, bid_size: int = 500, ask_size: int = 500) -> None:
    """Replace AAPL's book with one level a side (prices in ticks)."""
    d = np.zeros(3, dtype=BOOK_DELTA)
    d["instrument_id"] = h.aapl.id
    d["action"] = [DeltaAction.CLEAR, DeltaAction.SET, DeltaAction.SET]
    d["side"] = [BID, BID, ASK]
    d["price"] = [0, bid, ask]
    d["size"] = [0, bid_size, ask_size]
    d["ts_recv"] = h.clock.now()
    h.engine.deltas.write(d)
    h.engine.pump()


# ---- the engine side -------------------------------------------------------------------------


def test_plain_orders_stay_plain_and_links_travel_as_extras():
    h = sim()
    plain = h.buy("AAPL", 1, 99.0)
    assert h.order(plain).extras is None
    assert (h.order(plain).parent_id, h.order(plain).oca_group, h.order(plain).oca_type) == (
        0, "", 0,
    )  # fmt: skip
    child = h.sell("AAPL", 1, 101.0, parent=plain, oca_group="g")
    o = h.order(child)
    assert (o.parent_id, o.oca_group, o.oca_type) == (plain, "g", 1)  # type 1 by default
    assert (o.extras.parent_id, o.extras.oca_group, o.extras.transmit) == (plain, "g", True)
    # The intent slot the child used is reset for the next plain order.
    again = h.buy("AAPL", 1, 98.0)
    assert h.order(again).extras is None and h.order(again).parent_id == 0


BAD = [
    ("unknown parent", {"parent": 12345}, "parent order 12345 is not an open order"),
    ("negative parent", {"parent": -3}, "parent must be a client order id"),
    ("parent not an int", {"parent": "7"}, "parent must be a client order id"),
    ("bad OCA type", {"oca_group": "g", "oca_type": 4}, "OCA type must be 1, 2 or 3, not 4"),
    ("type without group", {"oca_type": 2}, "an OCA type needs an OCA group"),
    ("long group", {"oca_group": "x" * 65}, "OCA group name is 65 characters, at most 64"),
    ("non-ASCII group", {"oca_group": "grüppe"}, "must be printable ASCII"),
    ("group not a str", {"oca_group": 5}, "OCA group must be a string"),
    ("transmit not a bool", {"transmit": "yes"}, "transmit must be True or False"),
]


@pytest.mark.parametrize("kw, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_links_are_rejected_by_the_gate_with_a_reason(kw, reason):
    h = sim()
    coid = h.sell("AAPL", 1, 101.0, **kw)
    (ev,) = h.strat.of(coid)
    assert (ev.kind, ev.reason_code) == (R, int(Verdict.BAD_ORDER_PARAMS)), ev.reason
    assert reason in ev.reason
    assert h.open_orders(h.aapl) == 0


def test_a_parent_must_be_the_strategys_open_order_on_the_same_instrument_other_side():
    h = sim()
    parent = h.buy("AAPL", 5, 99.0)
    cases = {
        "is for another instrument": lambda: h.sell("ES", 1, 101.0, parent=parent),
        "must be on the other side": lambda: h.buy("AAPL", 1, 98.0, parent=parent),
        "exceeds its parent's 5": lambda: h.sell("AAPL", 6, 101.0, parent=parent),
    }
    for reason, send in cases.items():
        coid = send()
        (ev,) = h.strat.of(coid)
        assert ev.kind == R and reason in ev.reason, ev.reason
    # A parent refused by the gate (in the same batch) refuses its children.
    bad_parent = h.strat.buy("AAPL", 5, math.nan)
    child = h.strat.sell("AAPL", 5, 101.0, parent=bad_parent)
    h.engine.pump()
    (ev,) = h.strat.of(child)
    assert ev.kind == R and f"parent order {bad_parent} was refused" in ev.reason
    # A finished parent is not open.
    h.strat.cancel(parent)
    h.engine.pump()
    late = h.sell("AAPL", 1, 101.0, parent=parent)
    assert f"parent order {parent} is not an open order" in h.strat.of(late)[0].reason


def test_a_bracket_entry_fills_children_work_take_profit_fills_stop_loss_cancelled():
    h = sim()
    entry, tp, sl = h.strat.bracket("AAPL", BUY, 10, 100.01, 100.50, 99.50)
    h.engine.pump()
    o = h.order(tp)
    assert (o.parent_id, o.oca_group, o.oca_type, o.side) == (entry, f"bracket-{entry}", 2, -1)
    assert h.order(sl).order_type == int(OrderType.STOP)
    assert h.order(sl).extras.stop_price == 99.5
    # The entry crossed and filled; both children are now working, none has filled.
    assert h.strat.kinds(entry) == [A, F]
    assert h.strat.kinds(tp) == [A] and h.strat.kinds(sl) == [A]
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 10
    # The market rises through the take-profit: it fills, and the stop-loss, reduced by the
    # filled quantity to nothing, is cancelled naming the group.
    quote(h, 10_050, 10_052, 500, 500)
    assert h.strat.kinds(tp) == [A, F]
    assert h.strat.kinds(sl) == [A, C]
    assert f"OCA group 'bracket-{entry}'" in h.strat.of(sl)[-1].reason
    assert h.order(sl).state is OrderState.CANCELLED
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 0
    assert h.open_orders(h.aapl) == 0 and h.engine.tracker.open == {}


def test_bracket_children_wait_for_the_entry_and_the_stop_loss_can_fire():
    h = sim()
    entry, tp, sl = h.strat.bracket("AAPL", BUY, 10, 99.00, 101.00, 99.50)
    h.engine.pump()
    # The entry rests; the children are acknowledged but held: a book through both their
    # prices does not touch them.
    assert h.strat.kinds(entry) == [A] and h.strat.kinds(tp) == [A] and h.strat.kinds(sl) == [A]
    quote(h, 9_990, 9_992, 500, 500)
    assert h.strat.kinds(tp) == [A] and h.strat.kinds(sl) == [A]
    # The entry fills; the stop (99.50, bid 98.99) triggers at once and sells at the bid.
    quote(h, 9_899, 9_900, 500, 500)
    assert h.strat.kinds(entry) == [A, F]
    assert h.strat.kinds(sl) == [A, F] and h.strat.fills(sl)[0].fill_price_ticks == 9_899
    assert h.strat.kinds(tp) == [A, C] and "OCA group" in h.strat.of(tp)[-1].reason
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 0


def test_a_cancelled_parent_cancels_its_children():
    h = sim()
    entry, tp, sl = h.strat.bracket("AAPL", BUY, 10, 99.00, 101.00, 98.00)
    h.engine.pump()
    h.strat.cancel(entry)
    h.engine.pump()
    assert h.strat.kinds(entry) == [A, C]
    for child in (tp, sl):
        assert h.strat.kinds(child) == [A, C]
        assert f"parent order {entry} ended" in h.strat.of(child)[-1].reason
    assert h.open_orders(h.aapl) == 0 and h.engine.tracker.open == {}


def test_a_partly_filled_parent_that_is_cancelled_cancels_its_children():
    h = sim()
    entry, tp, sl = h.strat.bracket("AAPL", BUY, 10, 99.00, 101.00, 98.00)
    h.engine.pump()
    quote(h, 9_890, 9_900, 500, 4)  # 4 of 10 fill
    assert h.strat.kinds(entry) == [A, F] and h.strat.kinds(tp) == [A]
    h.strat.cancel(entry)
    h.engine.pump()
    assert h.strat.kinds(tp)[-1] == C and h.strat.kinds(sl)[-1] == C
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 4


@pytest.mark.parametrize("oca_type", [2, 3])
def test_oca_reduce_types_shrink_the_others_by_the_filled_quantity(oca_type):
    h = sim()
    a = h.buy("AAPL", 10, 99.50, oca_group="g", oca_type=oca_type)
    b = h.buy("AAPL", 10, 99.40, oca_group="g", oca_type=oca_type)
    quote(h, 9_940, 9_950, 500, 4)  # a fills 4
    assert [e.fill_lots for e in h.strat.fills(a)] == [4]
    assert h.strat.kinds(b) == [A, M]
    assert h.strat.of(b)[-1].qty_lots == 6 and "OCA group 'g'" in h.strat.of(b)[-1].reason
    assert h.order(b).qty_lots == 6
    quote(h, 9_940, 9_950, 500, 500)  # a fills its other 6
    assert sum(e.fill_lots for e in h.strat.fills(a)) == 10
    assert h.strat.kinds(b) == [A, M, C]
    assert h.open_orders(h.aapl) == 0 and h.engine.tracker.open == {}


def test_oca_type_1_cancels_the_others_on_any_fill():
    h = sim()
    a = h.buy("AAPL", 10, 99.50, oca_group="g1")
    b = h.buy("AAPL", 10, 99.40, oca_group="g1")
    other = h.buy("AAPL", 10, 99.40, oca_group="g2")
    quote(h, 9_930, 9_950, 500, 4)
    assert h.strat.kinds(a) == [A, F]  # partly filled, still working
    assert h.strat.kinds(b) == [A, C] and "order " + str(a) in h.strat.of(b)[-1].reason
    assert h.strat.kinds(other) == [A]  # another group is untouched
    # A member cancelled by request leaves the group without touching the others.
    h.strat.cancel(a)
    h.engine.pump()
    assert h.strat.kinds(other) == [A]


def test_untransmitted_orders_are_held_until_their_chain_is_transmitted():
    h = sim()
    parent = h.buy("AAPL", 10, 99.00, transmit=False)
    first = h.sell("AAPL", 10, 101.00, parent=parent, transmit=False)
    assert h.strat.events == []  # nothing acknowledged: not transmitted
    assert h.order(parent).state is OrderState.SUBMITTED
    last = h.sell("AAPL", 10, 102.00, parent=parent)
    assert [e.client_order_id for e in h.strat.events] == [parent, first, last]
    assert all(e.kind == A for e in h.strat.events)
    # A held order that is cancelled is discarded, with its held children.
    p2 = h.buy("AAPL", 1, 98.00, transmit=False)
    c2 = h.sell("AAPL", 1, 103.00, parent=p2, transmit=False)
    h.strat.cancel(p2)
    h.engine.pump()
    assert h.strat.kinds(p2) == [C] and "never transmitted" in h.strat.of(p2)[0].reason
    assert h.strat.kinds(c2) == [C]


def test_a_child_sent_after_its_parent_filled_works_at_once():
    h = sim()
    parent = h.buy("AAPL", 10, None)  # a market order: fills now
    assert h.strat.kinds(parent) == [A, F]
    child = h.sell("AAPL", 10, 99.99, parent=parent)
    # The gate refuses a child of a finished parent (it is not open any more).
    assert h.strat.kinds(child) == [R]


def test_a_failed_leg_cancels_the_bracket():
    h = sim()
    # A take-profit off the tick grid is refused by the gate; the entry is cancelled.
    entry, tp, sl = h.strat.bracket("AAPL", BUY, 10, 99.00, 101.005, 98.00)
    h.engine.pump()
    assert h.strat.kinds(tp) == [R]
    assert h.strat.kinds(entry)[-1] == C
    assert h.strat.kinds(sl)[-1] == C
    assert h.engine.tracker.open == {}


def test_the_sim_venue_simulates_a_plain_stop():
    h = sim()
    coid = h.sell("AAPL", 5, None, order_type=OrderType.STOP, stop=99.50)
    assert h.strat.kinds(coid) == [A]
    quote(h, 9_960, 9_962, 500, 500)
    assert h.strat.kinds(coid) == [A]
    quote(h, 9_950, 9_952, 500, 500)
    assert h.strat.kinds(coid) == [A, F] and h.strat.fills(coid)[0].fill_price_ticks == 9_950
    assert h.engine.risk.arrays.ist[h.aapl.id, rk.IS_OPEN_ORDERS] == 0


def test_bracket_refuses_options_it_sets_itself():
    h = sim()
    with pytest.raises(TypeError, match="bracket"):
        h.strat.bracket("AAPL", BUY, 1, 99.0, 101.0, 98.0, parent=5)


# ---- IBVenue against the gateway simulator ---------------------------------------------------


@pytest.mark.parametrize("version", [176, MAX_CLIENT_VER])
async def test_a_bracket_over_ib_end_to_end(version: int) -> None:
    async with IBHarness(sim={"gateway": {"max_server_version": version}}) as h:
        await h.book_ready("AAPL")
        mid = h.mid("AAPL")
        # The entry crosses; the take-profit, below the market, is marketable once active.
        entry, tp, sl = h.strat.bracket(
            "AAPL", BUY, 10, round(mid + 0.5, 2), round(mid - 1.0, 2), round(mid - 5.0, 2)
        )
        await h.wait_kind(tp, F)
        await h.wait_kind(sl, C)
        assert sum(f.fill_lots for f in h.strat.fills(entry)) == 10
        assert sum(f.fill_lots for f in h.strat.fills(tp)) == 10
        assert not h.strat.fills(sl) and h.sim_order(sl).status == "Cancelled"
        # What reached IB: the children name the entry's IB order id, one OCA group, type 2;
        # the entry and the take-profit were sent untransmitted, the stop-loss transmitted.
        e, t, s = h.sim_order(entry), h.sim_order(tp), h.sim_order(sl)
        assert e.order.parentId in (0, None) and t.parent_id == s.parent_id == e.order_id
        assert t.order.ocaGroup == s.order.ocaGroup == f"bracket-{entry}"
        assert t.order.ocaType == s.order.ocaType == 2
        assert (e.order.transmit, t.order.transmit, s.order.transmit) == (False, False, True)
        assert (t.order.orderType, s.order.orderType) == ("LMT", "STP")
        await until(lambda: h.engine.portfolio.position(0, h.registry.resolve("AAPL").id).lots
                    == 0, 5, "flat")  # fmt: skip
        assert h.engine.tracker.open == {}


async def test_a_cancelled_parent_cancels_its_children_over_ib() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        mid = h.mid("AAPL")
        entry, tp, sl = h.strat.bracket(
            "AAPL", BUY, 5, round(mid * 0.9, 2), round(mid * 1.1, 2), round(mid * 0.8, 2)
        )
        for coid in (entry, tp, sl):
            await h.wait_kind(coid, A)
        assert h.sim_order(tp).status == "PreSubmitted"  # held: waiting for the parent
        h.strat.cancel(entry)
        for coid in (entry, tp, sl):
            await h.wait_kind(coid, C)
        assert h.engine.tracker.open == {}


async def test_an_untransmitted_order_cancelled_over_ib_is_discarded() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        low = round(h.mid("AAPL") * 0.9, 2)
        coid = h.strat.buy("AAPL", 3, low, transmit=False)
        await until(lambda: h.core().untransmitted, 2, "held at the gateway")
        assert h.kinds(coid) == []
        h.strat.cancel(coid)
        await h.wait_kind(coid, C)
        assert "never transmitted" in h.strat.of(coid)[-1].reason
        assert h.engine.tracker.finished[coid].state is OrderState.CANCELLED


# ---- the gateway simulator through the official client ---------------------------------------


def _aapl() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    return c


def _order(action: str, qty: int, kind: str, **fields) -> IbOrder:
    o = IbOrder()
    o.action, o.orderType, o.totalQuantity, o.tif = action, kind, Decimal(qty), "DAY"
    for k, v in fields.items():
        setattr(o, k, v)
    return o


@pytest.mark.parametrize("version", [176, MAX_CLIENT_VER])
def test_gateway_sim_transmit_false_holds_until_the_last_child(version: int) -> None:
    cfg = sim_config(gateway={"max_server_version": version})
    with SimThread(cfg) as s, connected(s) as app:
        oid = app.wait("nextValidId").args[0]
        core = s.server.core
        bid = s.call(lambda: core.market.book(265598).bid)
        app.placeOrder(oid, _aapl(), _order("BUY", 10, "MKT", transmit=False))
        app.placeOrder(oid + 1, _aapl(), _order(
            "SELL", 10, "LMT", lmtPrice=round(bid + 50, 2), parentId=oid, transmit=False,
            ocaGroup="b1", ocaType=2,
        ))  # fmt: skip
        mark = len(app.calls)
        app.reqCurrentTime()
        app.wait("currentTime", since=mark)
        # Nothing about the held orders: no openOrder, no orderStatus.
        assert not [c for c in app.calls if c.name in ("openOrder", "orderStatus")]
        assert s.call(lambda: sorted(k[1] for k in core.untransmitted)) == [oid, oid + 1]
        app.placeOrder(oid + 2, _aapl(), _order(
            "SELL", 10, "STP", auxPrice=round(bid - 50, 2), parentId=oid, transmit=True,
            ocaGroup="b1", ocaType=2,
        ))  # fmt: skip
        # The parent fills (a market order), then both children work.
        app.wait("orderStatus", lambda i, st, *a: i == oid and st == "Filled")
        app.wait("orderStatus", lambda i, st, *a: i == oid + 1 and st == "Submitted")
        app.wait("orderStatus", lambda i, st, *a: i == oid + 2 and st == "PreSubmitted")
        # The children were attached before the parent could fill: held first, then working.
        seen = [c.args[1] for c in app.calls if c.name == "orderStatus" and c.args[0] == oid + 1]
        assert seen[0] == "PreSubmitted" and "Submitted" in seen, seen
        # A held order cancelled is discarded: error 202, and no status.
        app.placeOrder(oid + 3, _aapl(), _order("BUY", 1, "MKT", transmit=False))
        app.cancelOrder(oid + 3, OrderCancel())
        app.wait("error", lambda rid, t, code, *a: rid == oid + 3 and code == 202)
        assert not [c for c in app.calls if c.name == "orderStatus" and c.args[0] == oid + 3]
        assert s.call(lambda: len(core.untransmitted)) == 0
        # Cancelling the working parent chain: cancelling a child leaves its sibling.
        app.cancelOrder(oid + 1, OrderCancel())
        app.wait("orderStatus", lambda i, st, *a: i == oid + 1 and st == "Cancelled")
        sync = len(app.calls)
        app.reqCurrentTime()
        app.wait("currentTime", since=sync)
        seen = [c.args[1] for c in app.calls if c.name == "orderStatus" and c.args[0] == oid + 2]
        assert "Cancelled" not in seen
