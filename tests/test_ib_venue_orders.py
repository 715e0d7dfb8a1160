"""IBVenue's order side against the gateway simulator over loopback: answers that race, IB
errors, and what a dropped connection or a restart must not lose.

Where IB's messages must arrive in an order the simulator does not produce, the simulator's own
message is handed to the venue's wrapper ahead of the simulator's delayed copy.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from decimal import Decimal

import pytest
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.const import UNSET_LONG
from ibapi.contract import Contract
from ibapi.message import IN
from ibapi.order import Order as IbOrder
from ibapi.protobuf.OrderStatus_pb2 import OrderStatus as OrderStatusProto

from adapters.ib.gateway_sim.server import GatewaySimServer
from adapters.ib.venue import BUST_SUFFIX, HELD_BACK
from engine.config import Secret
from engine.journal import Journal
from engine.messages import EventKind
from engine.orders import OrderState
from engine.recovery import check_positions, recover
from hotpath import risk as rk
from tests.ib_sim_support import RecordingApp, sim_config
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import (
    fill_lots,
    names,
    record_requests,
    rest_px,
    settled,
    sim_execs,
    take_px,
    tokens,
)

A, F, C, R, M, X, COMM = (
    EventKind.ACCEPTED,
    EventKind.FILL,
    EventKind.CANCELLED,
    EventKind.REJECTED,
    EventKind.MODIFIED,
    EventKind.CANCEL_REJECTED,
    EventKind.COMMISSION,
)


def ib(h: IBHarness):
    """The venue's ibapi wrapper: where the connection delivers IB's messages."""
    return h.venue.conn.session.wrapper


def emitted(h: IBHarness) -> list[tuple[EventKind, int, int]]:
    """Every event the venue emits from now on, as (kind, client order id, qty): what the
    venue said, whatever the engine's OMS then makes of it."""
    seen: list[tuple[EventKind, int, int]] = []
    emit = h.venue._emit

    def spy(kind, live, *args):
        ev = emit(kind, live, *args)
        seen.append((kind, live.client_order_id, ev.qty_lots))
        return ev

    h.venue._emit = spy
    return seen


async def at_sim(h: IBHarness, *coids: int) -> None:
    await until(
        lambda: all(str(c) in {o.order.orderRef for o in h.sim_orders()} for c in coids),
        5,
        "the orders at the simulator",
    )


def open_at_venue(h: IBHarness) -> set[int]:
    return {coid for coid, _, _ in h.venue.open_orders()}


# ---- lost cancels -------------------------------------------------------------------------------


async def test_a_cancel_written_just_before_the_gateway_drops_is_sent_again() -> None:
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        reqs = record_requests(h)
        await until(lambda: tokens(v) >= 1 and v.pacer.pending == 0, 2, "a pacing token")
        h.strat.cancel(resting)
        h.engine.pump()
        assert v.cancels_sent == 1 and v.pacer.pending == 0  # written to our socket
        h.fault("drop_all")  # the gateway drops before it reads it
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        await h.wait_kind(resting, C)
        assert h.sim_order(resting).status == "Cancelled"
        assert v.cancels_sent == 2 and names(reqs)["CancelOrder"] == 1
        assert h.kinds(resting) == [A, C]
        assert h.engine.tracker.finished[resting].state is OrderState.CANCELLED


async def test_orders_sent_into_a_socket_already_gone_are_never_lost() -> None:
    """Between the socket's death and the supervisor taking the venue down, the venue still
    says it is connected and ready: a cancel then is sent after the reconnect; a new order and
    a modify are refused at once with the reason (sent after an outage they would trade at
    stale prices), and never reach IB."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        to_cancel = h.strat.buy("AAPL", 5, rest_px(h))
        to_modify = h.strat.buy("AAPL", 4, rest_px(h))
        for coid in (to_cancel, to_modify):
            await h.wait_kind(coid, A)
        reqs = record_requests(h)
        proto = v.conn.protocol
        lost = proto.connection_lost
        window: dict[str, object] = {}

        def connection_lost(exc: Exception | None) -> None:
            lost(exc)  # the transport is gone; the supervisor's task has not run yet
            window["ready"] = v.connected and v.ready
            h.strat.cancel(to_cancel)
            h.strat.modify(to_modify, qty=6)
            window["new"] = h.strat.buy("AAPL", 1, rest_px(h))
            h.engine.pump()

        proto.connection_lost = connection_lost
        await until(lambda: tokens(v) >= 1 and v.pacer.pending == 0, 2, "a pacing token")
        proto.transport.abort()  # the socket dies; the gateway keeps the orders
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        assert window["ready"]
        await h.wait_kind(to_cancel, C)
        assert h.sim_order(to_cancel).status == "Cancelled"
        refused = [e for e in h.strat.of(to_modify) if e.kind == X]
        assert [e.reason_code for e in refused] == [HELD_BACK]
        assert "dropped as the modify was sent" in refused[0].reason
        assert float(h.sim_order(to_modify).order.totalQuantity) == 4
        assert h.engine.tracker.get(to_modify).state is OrderState.ACCEPTED
        new = window["new"]
        (ev,) = h.strat.of(new)
        assert ev.kind == R and ev.reason_code == HELD_BACK
        assert "dropped as the order was sent" in ev.reason
        assert str(new) not in {o.order.orderRef for o in h.sim_orders()}
        assert names(reqs)["PlaceOrder"] == 0 and v.unknown_after_reconnect == 0


async def test_a_global_cancel_queued_as_the_socket_dies_goes_after_the_reconnect() -> None:
    """The kill switch's global cancel waits in the pacer; drained into the dead socket it
    would be lost, so it waits for the reconnect."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        coids = [h.strat.buy("AAPL", 2, rest_px(h)) for _ in range(2)]
        for coid in coids:
            await h.wait_kind(coid, A)
        proto = v.conn.protocol
        lost = proto.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            lost(exc)
            h.engine.cancel_everything()

        proto.connection_lost = connection_lost
        await until(lambda: tokens(v) >= 1 and v.pacer.pending == 0, 2, "a pacing token")
        proto.transport.abort()
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        for coid in coids:
            await h.wait_kind(coid, C)
            assert h.sim_order(coid).status == "Cancelled"


async def test_a_repeated_cancel_refused_after_the_order_ended_says_nothing_new() -> None:
    """IB answers a cancel sent again (after a reconnect) for an order it already cancelled
    with 10148 or 161; the order is CANCELLED and stays so, with no CANCEL_REJECTED."""
    async with IBHarness() as h:
        await settled(h)
        coid = h.strat.buy("AAPL", 3, rest_px(h))
        await h.wait_kind(coid, A)
        h.strat.cancel(coid)
        await h.wait_kind(coid, C)
        ib_id = h.sim_order(coid).order_id
        text = f"OrderId {ib_id} that needs to be cancelled cannot be cancelled, state: Cancelled."
        ib(h).error(ib_id, 0, 10148, text, "")
        ib(h).error(ib_id, 0, 161, "Cancel attempted when order is not in a cancellable state", "")
        h.engine.pump()
        assert h.kinds(coid) == [A, C]


# ---- a modify up racing a fill ------------------------------------------------------------------


async def test_a_modify_up_racing_a_fill_keeps_the_order_working() -> None:
    """A buy of 2 raised to more than the ask holds: IB applies the modify and fills what the
    ask holds, and the execution reaches the venue before IB's openOrder confirming the new
    size. The order is not done: IB works the rest, the confirmation applies, and a cancel
    still reaches it."""
    async with IBHarness(sim={"market": {"events_per_second": 0}}) as h:  # a still book
        v = h.venue
        await settled(h)
        aapl = h.registry.resolve("AAPL")
        ask_px, ask_qty = h.core().market.book(aapl.con_id).asks[0]
        old = min(2, int(ask_qty))
        coid = h.strat.buy("AAPL", old, rest_px(h))
        await h.wait_kind(coid, A)
        said = emitted(h)
        h.fault("latency", ms=500)  # IB's answers to the modify are on their way
        new_qty = int(ask_qty) + 3
        h.strat.modify(coid, qty=new_qty, price=ask_px)
        h.engine.pump()
        await until(lambda: sim_execs(h, coid), 5, "the simulator's fill")
        (rec,) = [r for r in h.core().executions if r.execution.orderRef == str(coid)]
        ib(h).execDetails(-1, rec.contract, rec.execution)  # the fill first
        h.engine.pump()
        assert said == [(F, coid, old)]
        assert coid in open_at_venue(h)  # still working at IB
        await until(lambda: (M, coid, new_qty) in said, 5, "the modify confirmed")
        assert v.duplicate_execs == 1  # the simulator's own copy of the fill
        h.venue.cancel(h.engine.tracker.finished.get(coid) or h.engine.tracker.get(coid))
        await until(lambda: (C, coid, new_qty) in said, 5, "the cancel's answer")
        sim = h.sim_order(coid)
        assert sim.status == "Cancelled" and int(sim.filled) == int(ask_qty)


async def test_a_modify_up_ib_refuses_after_the_order_filled_leaves_it_done() -> None:
    """The modify reaches IB after the order filled: IB says Filled with nothing remaining and
    refuses the modify (103: the id is a finished order's). The refusal reaches the strategy
    and the order is done."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        h.fault("latency", ms=300)
        coid = h.strat.buy("AAPL", 2, take_px(h))
        h.engine.pump()
        h.strat.modify(coid, qty=5)
        h.engine.pump()
        await until(lambda: X in h.kinds(coid), 5, "the modify refused")
        (ev,) = [e for e in h.strat.of(coid) if e.kind == X]
        assert ev.reason_code == 103
        assert fill_lots(h, coid) == 2 and coid not in open_at_venue(h)
        v.cancel(h.engine.tracker.finished[coid])  # nothing works at IB: refused at once
        h.engine.pump()
        assert h.kinds(coid)[-1] == X and v.cancels_sent == 0


async def test_ib_saying_filled_with_nothing_remaining_ends_the_order_before_its_fills() -> None:
    """IB's orderStatus Filled with nothing remaining (forwarded ahead of the executions it
    follows): nothing works at IB, so a cancel is refused at once rather than sent."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        h.fault("latency", ms=400)
        coid = h.strat.buy("AAPL", 5, take_px(h))
        h.engine.pump()
        await until(lambda: sim_execs(h, coid), 5, "filled at the simulator")
        sim = h.sim_order(coid)
        ib(h).orderStatus(
            sim.order_id, "Filled", Decimal(5), Decimal(0), 0.0, sim.perm_id, 0, 0.0, 1, "", 0.0
        )
        h.engine.pump()
        assert h.kinds(coid) == [A] and coid not in open_at_venue(h)
        h.strat.cancel(coid)
        h.engine.pump()
        assert h.kinds(coid) == [A, X] and v.cancels_sent == 0
        await until(lambda: fill_lots(h, coid) == 5, 5, "the fills")
        assert h.engine.tracker.finished[coid].state is OrderState.FILLED


# ---- IB errors before the acknowledgement -------------------------------------------------------


SHORT_LOCATE = (
    "Shares for this order are not immediately available for short sale. The order will be "
    "held while we attempt to locate the shares."
)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (404, SHORT_LOCATE),
        (399, "Warning: your order will not be placed at the exchange until 09:30:00"),
        (10349, "Order TIF was set to DAY based on order preset."),
    ],
    ids=["404", "399", "10349"],
)
async def test_a_hold_or_warning_before_the_acknowledgement_is_no_rejection(
    code: int, text: str
) -> None:
    async with IBHarness() as h:
        await settled(h)
        h.fault("latency", ms=300)
        coid = h.strat.sell("AAPL", 5, round(h.mid("AAPL") * 1.03, 2))  # a short sale, resting
        h.engine.pump()
        await at_sim(h, coid)
        ib(h).error(h.sim_order(coid).order_id, 0, code, text, "")
        h.engine.pump()
        assert h.kinds(coid) == []
        await h.wait_kind(coid, A)
        h.strat.cancel(coid)
        await h.wait_kind(coid, C)
        assert h.kinds(coid) == [A, C] and h.sim_order(coid).status == "Cancelled"


async def test_an_order_given_up_on_an_error_is_cancelled_when_ib_works_it(caplog) -> None:
    """An error IB does not document as a hold (492) ends an order not yet acknowledged. If IB
    then reports it working, the venue cancels it at once and says so; a fill it had meanwhile
    still counts, as a late fill. The strategy hears of neither cancel."""
    caplog.set_level(logging.ERROR, "tickwire.ib")
    async with IBHarness() as h:
        await settled(h)
        aapl = h.registry.resolve("AAPL")
        h.fault("latency", ms=300)
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        taken = h.strat.buy("AAPL", 3, take_px(h))
        h.engine.pump()
        await at_sim(h, resting, taken)
        for coid in (resting, taken):
            ib(h).error(h.sim_order(coid).order_id, 0, 492, "an order error IB does not list", "")
        h.engine.pump()
        assert h.kinds(resting) == [R] and h.kinds(taken) == [R]
        await until(lambda: h.sim_order(resting).status == "Cancelled", 5, "cancelled at IB")
        await until(lambda: fill_lots(h, taken) == 3, 5, "the late fill")
        await asyncio.sleep(0.5)  # the answers to both cancels
        assert h.kinds(resting) == [R] and h.kinds(taken) == [R, F]
        assert h.engine.portfolio.position(0, aapl.id).lots == 3
        msgs = [r.getMessage() for r in caplog.records]
        assert any(
            f"order {resting} " in m and "working after it was given up on error 492" in m
            for m in msgs
        )


# ---- execution corrections ----------------------------------------------------------------------


def correction(e, n: int, shares: int, price: float):
    c = copy.copy(e)
    c.execId = f"{e.execId.rsplit('.', 1)[0]}.{n:02d}"
    c.shares = Decimal(shares)
    c.price = price
    return c


def commission_report(exec_id: str, amount: float) -> CommissionAndFeesReport:
    r = CommissionAndFeesReport()
    r.execId = exec_id
    r.commissionAndFees = amount
    r.currency = "USD"
    return r


async def test_execution_corrections_reverse_the_execution_and_book_the_corrected_one(
    caplog,
) -> None:
    """IB corrects an execution twice: 5 at p to 5 at p - 0.50 (.02), then to 4 (.03), each
    correction with its own commission. Each correction reverses the execution it replaces
    (fill and commission) and books itself; the OMS, the portfolio (strategy and account) and
    the risk kernels end as if the last correction alone had happened."""
    caplog.set_level(logging.WARNING, "engine.orders")
    async with IBHarness() as h:
        await settled(h)
        aapl = h.registry.resolve("AAPL")
        coid = h.strat.buy("AAPL", 5, take_px(h))
        await until(lambda: fill_lots(h, coid) == 5, 5, "filled")
        pos = h.engine.portfolio.position(0, aapl.id)
        await until(lambda: pos.commission > 0, 3, "its commission")
        (rec,) = [r for r in h.core().executions if r.execution.orderRef == str(coid)]
        e, fee = rec.execution, rec.report.commissionAndFees
        p, p2 = round(e.price * 100), round(e.price * 100) - 50
        second = correction(e, 2, 5, p2 / 100)
        ib(h).execDetails(-1, rec.contract, second)
        ib(h).commissionAndFeesReport(commission_report(second.execId, 0.8))
        ib(h).commissionAndFeesReport(commission_report(e.execId, fee))  # the replaced one's
        third = correction(e, 3, 4, p2 / 100)
        ib(h).execDetails(-1, rec.contract, third)
        ib(h).commissionAndFeesReport(commission_report(third.execId, 0.6))
        ib(h).execDetails(-1, rec.contract, second)  # a repeat of a replaced one
        h.engine.pump()
        fills = [(f.exec_id, f.fill_lots, f.fill_price_ticks) for f in h.strat.fills(coid)]
        assert fills == [
            (e.execId, 5, p),
            (e.execId + BUST_SUFFIX, -5, p),
            (second.execId, 5, p2),
            (second.execId + BUST_SUFFIX, -5, p2),
            (third.execId, 4, p2),
        ]
        order = h.engine.tracker.finished[coid]
        assert order.state is OrderState.FILLED and order.filled_lots == 4
        assert h.engine.tracker.illegal == 0
        assert not any("beyond the order's" in r.getMessage() for r in caplog.records)
        for position in (pos, h.engine.portfolio.account_position("IB", aapl.id)):
            assert position.lots == 4 and position.avg_ticks == p2
            assert position.realised == pytest.approx(0.0, abs=1e-9)
        assert pos.commission == pytest.approx(0.6)
        pst = h.engine.risk.arrays.pst
        assert pst[0, aapl.id, rk.PS_LOTS] == 4 and pst[0, aapl.id, rk.PS_AVG_TICKS] == p2
        assert pst[0, aapl.id, rk.PS_REALISED] == pytest.approx(0.0, abs=1e-9)
        # The kernels' fees too: each replaced execution's commission was given back.
        assert pst[0, aapl.id, rk.PS_FEES] == pytest.approx(0.6)
        assert h.engine.risk.arrays.gst[rk.GS_DAY_TRADES] == 0


# ---- ids IB did not send ------------------------------------------------------------------------


def order_status_without_perm_id(order_id: int) -> tuple[int, bytes]:
    """A protobuf orderStatus (server version >= 201) without a permId: ibapi hands the venue
    UNSET_LONG for it."""
    pb = OrderStatusProto(orderId=order_id, status="PreSubmitted", filled="0", remaining="1")
    return IN.ORDER_STATUS + 200, pb.SerializeToString()


async def test_a_perm_id_missing_from_a_protobuf_order_status_is_not_taken() -> None:
    async with IBHarness() as h:  # the newest server version: orderStatus is protobuf
        v = h.venue
        await settled(h)
        h.fault("latency", ms=300)
        coids = [h.strat.buy("AAPL", 1, rest_px(h)) for _ in range(2)]
        h.engine.pump()
        await at_sim(h, *coids)
        for coid in coids:
            assert h.venue.conn.session._order_status(
                *order_status_without_perm_id(h.sim_order(coid).order_id)
            )
        h.engine.pump()
        assert UNSET_LONG not in v._by_perm
        assert [h.strat.of(c)[0].venue_order_id for c in coids] == [
            h.sim_order(c).order_id for c in coids
        ]
        for coid in coids:
            h.strat.cancel(coid)
            await h.wait_kind(coid, C)
            (ev,) = [e for e in h.strat.of(coid) if e.kind == C]
            assert ev.venue_order_id == h.sim_order(coid).perm_id


# ---- positions of other accounts ----------------------------------------------------------------


OURS, THEIRS = "DU1234567", "DU7654321"


async def test_positions_of_the_other_accounts_of_the_login_are_kept_apart() -> None:
    """A login managing two accounts reports both accounts' positions. The venue trades one:
    its positions are what the engine reconciles against; the other's are kept beside them."""
    sim = {"gateway": {"accounts": [OURS, THEIRS]}}
    async with IBHarness(sim=sim, account=Secret(OURS, "test")) as h:
        await settled(h)
        aapl = h.registry.resolve("AAPL")
        view = h.engine.portfolio.broker_account("IB")
        coid = h.strat.buy("AAPL", 5, take_px(h))
        await until(lambda: view.positions.get(aapl.id, (0, 0))[0] == 5, 5, "our position")
        key = f"AAPL STK {aapl.con_id}"
        other = RecordingApp()
        await asyncio.to_thread(other.start, "127.0.0.1", h.server.port, 7)
        try:
            call = await asyncio.to_thread(other.wait, "nextValidId")
            contract = Contract()
            contract.conId, contract.symbol, contract.secType = aapl.con_id, "AAPL", "STK"
            contract.exchange, contract.currency = "SMART", "USD"
            order = IbOrder()
            order.action, order.orderType, order.totalQuantity = "BUY", "LMT", Decimal(3)
            order.lmtPrice, order.account = take_px(h), THEIRS
            seen = view.updated_ns
            other.placeOrder(call.args[0], contract, order)
            await until(lambda: view.updated_ns != seen, 5, "their position reported to us")
        finally:
            await asyncio.to_thread(other.stop)
        assert view.positions[aapl.id][0] == 5
        assert view.by_account[(THEIRS, key)][0] == 3 and view.by_account[(OURS, key)][0] == 5
        assert fill_lots(h, coid) == 5 and check_positions(h.engine, None) == []
        # A reconnect's reconciliation reports both again: still ours only.
        h.fault("drop_all")
        await until(lambda: h.venue.ready and h.venue.reconnects == 1, 10, "reconnected")
        assert view.positions[aapl.id][0] == 5 and check_positions(h.engine, None) == []


# ---- after a restart ----------------------------------------------------------------------------


class JournaledHarness(IBHarness):
    """An ``IBHarness`` whose engine journals to ``path`` and starts from what the journal
    holds, trading on a simulator that outlives it: a process restart, the broker unchanged."""

    def __init__(
        self, server: GatewaySimServer, path: str, reconnect_s: float = 0.05, **engine: object
    ) -> None:
        super().__init__(
            server=server, engine=engine, reconnect_initial_s=reconnect_s,
            reconnect_max_s=max(reconnect_s, 0.5),
        )  # fmt: skip
        self.path = path

    def prepare(self) -> None:
        journal = Journal.open(self.path)
        self.report = recover(self.engine, journal.contents, self.path)
        self.engine.attach_journal(journal)
        self.engine.pump()

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        self.engine.close_journal()


async def test_after_a_restart_a_pending_cancel_goes_and_a_correction_reverses_the_journal(
    tmp_path,
) -> None:
    """The process dies with a cancel journaled that never reached IB, and after a fill whose
    commission came after it. Restarted from the journal, the venue sends the cancel (IB still
    works the order), and reverses the journaled fill, price and commission, when IB corrects
    it."""
    path = str(tmp_path / "orders.twj")
    server = GatewaySimServer(sim_config())
    await server.start()
    try:
        async with JournaledHarness(server, path, reconnect_s=60.0) as h:  # no reconnect
            v = h.venue
            await settled(h)
            taken = h.strat.buy("AAPL", 5, take_px(h))
            await until(lambda: fill_lots(h, taken) == 5, 5, "filled")
            await until(lambda: h.engine.portfolio.pnl()[2] > 0, 3, "its commission")
            resting = h.strat.buy("AAPL", 3, rest_px(h))
            await h.wait_kind(resting, A)
            proto = v.conn.protocol
            lost = proto.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                lost(exc)
                h.strat.cancel(resting)  # journaled; the socket is gone
                h.engine.pump()

            proto.connection_lost = connection_lost
            proto.transport.abort()
            await until(lambda: not v.connected, 5, "the drop seen")
        # The process is gone; the gateway still works the order.
        (rec,) = [r for r in server.core.executions if r.execution.orderRef == str(taken)]
        e, fee = rec.execution, rec.report.commissionAndFees
        assert [o.status for o in server.core.orders.values()] == ["Submitted"]
        async with JournaledHarness(server, path) as h:
            assert h.report.restored["IB"] == 2
            await h.wait_kind(resting, C)
            assert h.sim_order(resting).status == "Cancelled"
            aapl = h.registry.resolve("AAPL")
            pos = h.engine.portfolio.position(0, aapl.id)
            assert (pos.lots, pos.commission) == (5, pytest.approx(fee))
            p = round(e.price * 100)
            second = correction(e, 2, 5, (p - 50) / 100)
            ib(h).execDetails(-1, rec.contract, second)
            ib(h).commissionAndFeesReport(commission_report(second.execId, 0.8))
            h.engine.pump()
            fills = [(f.exec_id, f.fill_lots, f.fill_price_ticks) for f in h.strat.fills(taken)]
            assert fills == [(e.execId + BUST_SUFFIX, -5, p), (second.execId, 5, p - 50)]
            assert (pos.lots, pos.avg_ticks) == (5, p - 50)
            assert pos.realised == pytest.approx(0.0, abs=1e-9)
            assert pos.commission == pytest.approx(0.8)
    finally:
        await server.stop()


async def test_an_order_modified_up_holds_its_new_size_in_the_risk_state_after_a_restart(
    tmp_path,
) -> None:
    """Buy 3, modified to 4 at IB; the process stops leaving it working. Restarted from the
    journal, the risk kernels hold the 4 lots working (live they did; the replay of the modify
    used to reserve only the 3 it was sent with), and its cancel releases them all."""
    path = str(tmp_path / "orders.twj")
    server = GatewaySimServer(sim_config())
    await server.start()
    try:
        async with JournaledHarness(server, path, cancel_on_stop=False) as h:
            await settled(h)
            coid = h.strat.buy("AAPL", 3, rest_px(h))
            await h.wait_kind(coid, A)
            h.strat.modify(coid, qty=4)
            await h.wait_kind(coid, EventKind.MODIFIED)
            aapl = h.registry.resolve("AAPL")
            live = h.engine.risk.arrays.ist[aapl.id, rk.IS_OPEN_BUY]
            assert live == 4
        async with JournaledHarness(server, path) as h:
            ist = h.engine.risk.arrays.ist
            assert h.engine.tracker.get(coid).qty_lots == 4
            assert ist[aapl.id, rk.IS_OPEN_BUY] == 4
            assert h.engine.tracker.get(coid).reserved == 4
            h.strat.cancel(coid)
            await h.wait_kind(coid, C)
            assert ist[aapl.id, rk.IS_OPEN_BUY] == 0
    finally:
        await server.stop()
