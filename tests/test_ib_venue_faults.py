"""IBVenue against the gateway simulator over loopback: every fault the simulator can inject.

Gateway restarts (refused and accept-then-close, with and without rolled-back ids), IB's
1100/1101/1102, data-farm blips (with and without data resuming), a second client with the same
client id (326), pacing under a burst of 500 orders, malformed frames and an oversized length
prefix, duplicated and shuffled order messages with late commissions, and orders in flight at
a disconnect. Each test asserts what would fail if the venue got it wrong: events once, fills
equal to the simulator's executions, no order placed twice, market data flowing again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.ib.gateway_sim.market import ASK, BID
from adapters.ib.reconnect import OutageSchedule, OutageWindow
from adapters.ib.venue import HELD_BACK, UNKNOWN_AFTER_RECONNECT, IBVenue
from engine.clock import LiveClock
from engine.config import IBVenueConfig, RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import NO_PRICE, BookSide, EventKind
from engine.orders import OrderState
from engine.runtime import Engine
from tests.event_recorder import Recorder
from tests.ib_venue_support import IBHarness, until

A, F, C, R, X, COMM = (
    EventKind.ACCEPTED,
    EventKind.FILL,
    EventKind.CANCELLED,
    EventKind.REJECTED,
    EventKind.CANCEL_REJECTED,
    EventKind.COMMISSION,
)
CLIENT_ID = 1


# ---- helpers ------------------------------------------------------------------------------------


def record_requests(h: IBHarness) -> list[tuple[int | None, str, Any]]:
    """Every request the simulator handles from now on: (client id, request type, request)."""
    core = h.core()
    seen: list[tuple[int | None, str, Any]] = []
    handle = core.handle

    def recording(s, req) -> None:
        seen.append((s.client_id, type(req).__name__, req))
        handle(s, req)

    core.handle = recording
    return seen


def names(reqs: list, since: int = 0) -> Counter:
    return Counter(name for cid, name, _ in reqs[since:] if cid == CLIENT_ID)


def sim_execs(h: IBHarness, coid: int) -> list:
    return [r.execution for r in h.core().executions if r.execution.orderRef == str(coid)]


def sim_exec_lots(h: IBHarness, coid: int) -> int:
    return sum(int(e.shares) for e in sim_execs(h, coid))


def fill_lots(h: IBHarness, coid: int) -> int:
    return sum(f.fill_lots for f in h.strat.fills(coid))


def codes(v: IBVenue, since: int = 0) -> list[int]:
    return [code for _, code, _ in v.errors[since:]]


def sim_ids(h: IBHarness) -> list[int]:
    """IB order ids our client has used at the simulator (every placeOrder of a new id)."""
    return sorted(oid for cid, oid in h.core().used_ids if cid == CLIENT_ID)


def book_snapshot(h: IBHarness, symbol: str) -> tuple:
    view = h.strat.book(symbol)
    return (tuple(view.depth(BookSide.BID, 10)), tuple(view.depth(BookSide.ASK, 10)))


def client_depth_at_sim(h: IBHarness, symbol: str) -> tuple | None:
    """The depth the simulator has sent our client for ``symbol`` (its copy of our book)."""
    core = h.core()
    inst = next(i for i in core.instruments if i.symbol == symbol)
    for s in core.sessions.values():
        if s.client_id != CLIENT_ID:
            continue
        for sub in s.subs.values():
            if sub.kind == "depth" and sub.instrument.con_id == inst.con_id:
                g = core.market.state(inst.con_id).grid
                return tuple(
                    tuple(
                        (float(g.price(p)), float(g.size(q)))
                        for p, q in zip(*core.client_depth(sub)[side], strict=True)
                    )
                    for side in (BID, ASK)
                )
    return None


def depth_matches_sim(h: IBHarness, symbol: str) -> bool:
    """Our book equals what the simulator sent (fails forever if the book was corrupted)."""
    theirs = client_depth_at_sim(h, symbol)
    if theirs is None:
        return False
    ours = book_snapshot(h, symbol)
    return all(
        [(round(p, 2), round(q)) for p, q in o] == [(round(p, 2), round(q)) for p, q in t]
        for o, t in zip(ours, theirs, strict=True)
    )


async def book_moves(h: IBHarness, symbol: str = "AAPL", timeout: float = 5.0) -> None:
    """Market data reaches the engine's book: rows arrive and the book changes."""
    v = h.venue
    rows = v._md_rows_seen
    before = book_snapshot(h, symbol)
    await until(
        lambda: v._md_rows_seen > rows and book_snapshot(h, symbol) != before,
        timeout,
        f"{symbol} book moving",
    )


async def settled(h: IBHarness) -> None:
    """Both books streaming and every request of the (re)connect sent."""
    for symbol in h.symbols:
        await h.book_ready(symbol)
    await until(lambda: h.venue.pacer.pending == 0, 5, "the pacer drained")


def tokens(v: IBVenue) -> float:
    """Messages the pacer would write at once now."""
    v.pacer._refill(time.monotonic())
    return v.pacer._tokens


def rest_px(h: IBHarness, symbol: str = "AAPL") -> float:
    return round(h.mid(symbol) * 0.97, 2)


def take_px(h: IBHarness, symbol: str = "AAPL") -> float:
    return round(h.mid(symbol) + 0.50, 2)


def check_fills(h: IBHarness, *coids: int) -> None:
    """Every FILL once: lots equal the simulator's executions, each execId once."""
    for coid in coids:
        assert fill_lots(h, coid) == sim_exec_lots(h, coid), f"fills of {coid}"
    ids = [f.exec_id for f in h.strat.fills()]
    assert len(ids) == len(set(ids)), f"an execId was reported twice: {ids}"


def client_transport(h: IBHarness):
    """The simulator side of our client's socket."""
    protos = [p for s, p in h.server.protocols.items() if s.client_id == CLIENT_ID]
    assert len(protos) == 1
    return protos[0].transport, next(s for s in h.server.protocols if s.client_id == CLIENT_ID)


# ---- 1. gateway restart -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["refuse", "accept_close"])
async def test_gateway_restart_reconciles_orders_fills_and_data(mode: str, caplog) -> None:
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        taken = h.strat.buy("AAPL", 10, take_px(h))
        await until(lambda: fill_lots(h, taken) == 10, 5, "the fill before the restart")
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        # An order the gateway takes but whose answer is lost in the cut: the replies are
        # delayed (latency) until the restart closes the session.
        h.fault("latency", ms=60_000)
        cut = h.strat.buy("MSFT", 3, rest_px(h, "MSFT"))
        await until(lambda: str(cut) in {o.order.orderRef for o in h.sim_orders()}, 5, "cut")
        h.fault("latency", ms=0)
        h.fault("daily_restart", seconds=0.8, refuse=mode)
        await until(lambda: not v.connected, 5, "the restart seen")
        assert h.kinds(cut) == []
        mark = len(reqs)
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()  # a refusal inside submit waits for the engine's next pump
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK and "not connected" in ev.reason
        await until(lambda: v.ready and v.reconnects == 1, 15, "reconnected")
        assert v.reconnects == 1
        assert not any("below ids already used" in r.getMessage() for r in caplog.records)
        # Reconciled: the resting order is still ours and working; the order cut in flight is
        # known to the gateway, so it is ACCEPTED (once) rather than reported unknown.
        assert v.unknown_after_reconnect == 0
        await h.wait_kind(cut, A)
        assert h.kinds(resting) == [A] and h.kinds(cut) == [A]
        open_coids = {c for c, _, _ in v.open_orders()}
        assert {resting, cut} <= open_coids
        assert {"ReqOpenOrders", "ReqCompletedOrders", "ReqExecutions"} <= set(names(reqs, mark))
        # Fills are not duplicated by the executions replayed in reconciliation.
        check_fills(h, taken)
        assert v.duplicate_execs >= 1  # the replay was seen and dropped
        # Market data resubscribed: the book moves again.
        await until(lambda: names(reqs, mark)["ReqMktDepth"] == 2, 5, "depth resubscribed")
        await book_moves(h, "AAPL")
        await book_moves(h, "MSFT")
        await until(lambda: depth_matches_sim(h, "AAPL"), 5, "AAPL book equal to the sim's")
        # Cancels after the restart reach the orders placed before it.
        h.strat.cancel(resting)
        h.strat.cancel(cut)
        await h.wait_kind(resting, C)
        await h.wait_kind(cut, C)
        assert h.engine.tracker.finished[resting].state is OrderState.CANCELLED
        # Trading goes on; no order was ever placed twice.
        after = h.strat.buy("AAPL", 2, take_px(h))
        await until(lambda: fill_lots(h, after) == 2, 5, "a fill after the restart")
        check_fills(h, taken, after)
        placed = [r.order_id for cid, n, r in reqs if cid == CLIENT_ID and n == "PlaceOrder"]
        assert len(placed) == len(set(placed)) == 4 == v.orders_sent
        assert sim_ids(h) == sorted(placed)


# ---- 2. rolled-back nextValidId -----------------------------------------------------------------


async def test_rolled_back_next_valid_id_never_reuses_an_id(caplog) -> None:
    caplog.set_level(logging.WARNING, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        await h.book_ready("AAPL")
        before = [h.strat.buy("AAPL", 1, rest_px(h)) for _ in range(3)]
        for coid in before:
            await h.wait_kind(coid, A)
        used = sim_ids(h)
        h.fault("daily_restart", seconds=0.3, rollback_ids=True)
        await until(lambda: not v.connected, 5, "the restart seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        assert h.core().next_order_id <= max(used)  # the gateway really forgot
        assert any(
            "nextValidId 1 is below ids already used" in r.getMessage() for r in caplog.records
        )
        await h.book_ready("AAPL")
        errors = len(v.errors)
        after = [h.strat.buy("AAPL", 1, rest_px(h)) for _ in range(3)]
        for coid in after:
            await h.wait_kind(coid, A)
        new_ids = [h.sim_order(c).order_id for c in after]
        assert min(new_ids) > max(used)
        assert 103 not in codes(v, errors)
        assert all(h.kinds(c) == [A] for c in before + after)


async def test_rolled_back_ids_are_noticed_after_every_order_was_forgotten(caplog) -> None:
    """Finished orders forgotten (``done_history``) still count as ids used."""
    caplog.set_level(logging.WARNING, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        v.done_history = 0
        await h.book_ready("AAPL")
        before = [h.strat.buy("AAPL", 1, rest_px(h)) for _ in range(3)]
        for coid in before:
            await h.wait_kind(coid, A)
            h.strat.cancel(coid)
            await h.wait_kind(coid, C)
        assert v.forgotten == 3 and not v._by_ib
        used = sim_ids(h)
        h.fault("daily_restart", seconds=0.3, rollback_ids=True)
        await until(lambda: not v.connected, 5, "the restart seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        assert any(
            "nextValidId 1 is below ids already used" in r.getMessage() for r in caplog.records
        )
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, rest_px(h))
        await h.wait_kind(coid, A)
        assert h.sim_order(coid).order_id > max(used)


# ---- 3. 1100 / 1101 / 1102 ----------------------------------------------------------------------


@pytest.mark.parametrize("data_lost", [False, True], ids=["1102", "1101"])
async def test_connectivity_lost_holds_orders_then_resubscribes(data_lost: bool) -> None:
    async with IBHarness(data_check_s=30.0) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        subs = v.resubscribes
        placed = len(sim_ids(h))
        h.fault("connectivity_lost", seconds=0.6, data_lost=data_lost)
        await until(lambda: v.in_1100, 5, "1100 seen")
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()  # a refusal inside submit waits for the engine's next pump
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK and "1100" in ev.reason
        assert len(sim_ids(h)) == placed  # it never reached the gateway
        mark = len(reqs)
        restored = 1101 if data_lost else 1102
        await until(lambda: restored in codes(v), 5, f"{restored} seen")
        assert not v.in_1100 and v.connected and v.reconnects == 0
        # Both resubscribe (1102: the gateway still holds them, so they are cancelled first
        # and no 322 duplicate ticker id comes back); 1102 also reconciles.
        await until(lambda: v.resubscribes == subs + 1, 5, "resubscribed")
        await book_moves(h, "AAPL")
        await until(lambda: depth_matches_sim(h, "AAPL"), 5, "AAPL book equal to the sim's")
        if data_lost:
            await until(lambda: names(reqs, mark)["ReqMktDepth"] == 2, 5, "resubscribed")
            assert names(reqs, mark)["ReqOpenOrders"] == 0
        else:
            await until(lambda: names(reqs, mark)["ReqExecutions"] == 1, 5, "reconciled")
            await until(lambda: names(reqs, mark)["ReqMktDepth"] == 2, 5, "resubscribed")
            got = names(reqs, mark)
            assert got["ReqOpenOrders"] == 1 and got["CancelMktDepth"] == 2
        assert 322 not in codes(v)
        # Orders flow again; the resting order was never touched.
        coid = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(coid, F)
        assert h.kinds(resting) == [A]
        check_fills(h, coid)


# ---- 4. farm blips ------------------------------------------------------------------------------


async def test_farm_blip_is_informational_and_data_resumes(caplog) -> None:
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness(data_check_s=0.3) as h:
        v = h.venue
        await h.book_ready("AAPL")
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        events = len(h.strat.events)
        subs = v.resubscribes
        h.fault("farm_blip", seconds=0.4)
        await until(lambda: 2103 in codes(v), 5, "2103")
        n_ok = codes(v).count(2104)
        await until(lambda: codes(v).count(2104) > n_ok, 5, "2104")
        await book_moves(h, "AAPL")
        await until(
            lambda: any("resumed after the farm blip" in r.getMessage() for r in caplog.records),
            5,
            "the data check",
        )
        assert v.resubscribes == subs  # data came back by itself
        assert len(h.strat.events) == events and h.kinds(resting) == [A]
        assert h.engine.tracker.get(resting).state is OrderState.ACCEPTED
        assert resting in {c for c, _, _ in v.open_orders()}
        h.strat.cancel(resting)
        await h.wait_kind(resting, C)


async def test_farm_blip_without_data_resuming_resubscribes() -> None:
    async with IBHarness(data_check_s=0.3) as h:
        v = h.venue
        await h.book_ready("AAPL")
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        subs = v.resubscribes
        h.fault("farm_blip", seconds=0.3)
        await until(lambda: 2103 in codes(v), 5, "2103")
        for s in h.symbols:  # the farm comes back, the data does not
            h.fault("stop_market_data", symbol=s)
        await until(lambda: v.resubscribes == subs + 1, 5, "resubscribed after data_check_s")
        for s in h.symbols:
            h.fault("resume_market_data", symbol=s)
        await book_moves(h, "AAPL")
        await until(lambda: depth_matches_sim(h, "AAPL"), 5, "AAPL book equal to the sim's")
        assert h.kinds(resting) == [A]


async def test_an_l1_book_whose_stream_is_asked_again_is_emptied_until_it_returns() -> None:
    """A book made of L1 quotes (no depth) whose stream stayed silent after a farm blip: when
    the stream is asked for again, the book is emptied, not left at the old prices (which the
    new stream's first tick would pair with the old other side)."""
    async with IBHarness(data_check_s=0.3, depth_rows=0) as h:
        v = h.venue
        await h.book_ready("AAPL")
        subs = v.resubscribes
        h.fault("farm_blip", seconds=0.3)
        await until(lambda: 2103 in codes(v), 5, "2103")
        for s in h.symbols:  # the farm comes back, the data does not
            h.fault("stop_market_data", symbol=s)
        await until(lambda: v.resubscribes == subs + 1, 5, "resubscribed after data_check_s")
        await until(lambda: h.strat.book("AAPL").mid_ticks is None, 5, "AAPL book emptied")
        book = h.strat.book("AAPL")
        assert book.bid_ticks == NO_PRICE and book.ask_ticks == NO_PRICE
        for s in h.symbols:
            h.fault("resume_market_data", symbol=s)
        await h.book_ready("AAPL")


# ---- 5. client id in use (326) ------------------------------------------------------------------


async def test_second_venue_with_the_same_client_id_gets_326_and_retries(caplog) -> None:
    caplog.set_level(logging.WARNING, "tickwire.ib")
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        registry = InstrumentRegistry()
        for s in h.symbols:
            registry.add(s, "IB", AssetClass.STOCK, 0.01, 1.0, 1.0, "USD")
        clock = LiveClock()
        clock.bind(asyncio.get_running_loop())
        twin = IBVenue(
            "IB",
            IBVenueConfig(
                port=h.server.port,
                client_id=CLIENT_ID,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.1,
                connect_timeout_s=2.0,
                reconcile_timeout_s=1.0,
            ),
        )
        engine = Engine(registry, {"IB": twin}, clock)
        engine.add_strategy(Recorder, "rec", None, list(h.symbols))
        engine.start()
        try:
            await twin.start()
            assert not twin.ready
            await until(lambda: codes(twin).count(326) >= 3, 10, "326 three times (retrying)")
            assert not twin.ready and not twin.connected
            text = "\n".join(r.getMessage() for r in caplog.records if r.name == "tickwire.ib")
            assert "326" in text and "already in use" in text
            # The first venue keeps its session and keeps trading.
            assert h.venue.connected and h.venue.reconnects == 0
            coid = h.strat.buy("AAPL", 1, take_px(h))
            await h.wait_kind(coid, F)
        finally:
            engine.stop()
            await twin.stop()
        assert h.venue.connected and h.venue.reconnects == 0


# ---- 6. pacing ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_burst_of_500_orders_is_paced_under_the_gateway_limit() -> None:
    risk = RiskConfig(equity=1e9, max_open_orders=2000, order_burst=1000, strategy_order_burst=1000)
    async with IBHarness(risk=risk) as h:
        v = h.venue
        await h.book_ready("AAPL")
        errors = len(v.errors)
        px = round(h.mid("AAPL") * 0.9, 2)
        coids = [h.strat.buy("AAPL", 1, px) for _ in range(500)]
        assert not any(R in h.kinds(c) for c in coids)
        assert v.orders_sent == 500 and v.pacer.pending > 400  # queued, not sent at once
        await until(lambda: len(sim_ids(h)) == 500, 25, "all 500 at the gateway")
        await until(lambda: all(h.kinds(c) == [A] for c in coids), 5, "500 ACCEPTED")
        assert 100 not in codes(v, errors)
        assert v.connected and v.reconnects == 0
        assert v.pacer.rate == v.config.pacing_msgs_per_s  # never slowed down by an error 100


# ---- 7. malformed frames ------------------------------------------------------------------------


async def test_malformed_frames_are_logged_and_dropped(caplog) -> None:
    caplog.set_level(logging.WARNING, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        await h.book_ready("AAPL")
        transport, session = client_transport(h)
        enc = session.encoder
        l1 = v._subs[h.registry.resolve("AAPL").id].l1
        unknown = enc._text(177, ["1", "x"])
        truncated = enc._text(1, ["6", str(l1), "1"])  # tickPrice without price, size, attribs
        not_a_number = enc._text(1, ["6", str(l1), "1", "abc", "100", "0"])
        transport.write(unknown + truncated + not_a_number)
        await until(lambda: v.conn.session.malformed >= 2, 5, "malformed frames counted")

        def logged(*words: str) -> bool:
            return any(all(w in r.getMessage() for w in words) for r in caplog.records)

        await until(lambda: logged("unknown id 177"), 5, "the unknown id logged")
        assert logged("id 1", "missing")
        assert logged("id 1", "not a number")
        assert v.connected and v.reconnects == 0
        await book_moves(h, "AAPL")
        coid = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(coid, F)


async def test_length_prefix_over_16mb_closes_and_reconnects(caplog) -> None:
    caplog.set_level(logging.WARNING, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        await h.book_ready("AAPL")
        transport, _ = client_transport(h)
        transport.write(struct.pack(">I", 17 * 1024 * 1024) + b"\0" * 64)
        await until(lambda: v.reconnects == 1 and v.ready, 10, "reconnected")
        closed = [r for r in caplog.records if "connection closed" in r.getMessage()]
        assert closed and closed[0].levelno == logging.ERROR
        assert "MAX_MSG_LEN" in closed[0].getMessage() and "reconnect" in closed[0].getMessage()
        assert not any("closed by the gateway" in r.getMessage() for r in caplog.records)
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(coid, F)


# ---- 8. duplicated and shuffled order messages --------------------------------------------------


async def test_duplicate_and_shuffled_order_messages_emit_each_transition_once() -> None:
    sim = {"orders": {"duplicate_status": True, "shuffle_events": True, "commission_delay_ms": 50}}
    async with IBHarness(sim=sim) as h:
        await h.book_ready("AAPL")
        aapl = h.registry.resolve("AAPL")
        # COMMISSION events go to the portfolio, not to strategies: watch the venue emit them.
        late: list[int] = []  # client order id of each COMMISSION event
        emit = h.venue._emit

        def spy(kind, live, *args):
            ev = emit(kind, live, *args)
            if kind == COMM:
                late.append(live.client_order_id)
            return ev

        h.venue._emit = spy
        qtys = (3, 7, 12)
        coids = [h.strat.buy("AAPL", q, take_px(h)) for q in qtys]
        for coid, q in zip(coids, qtys, strict=True):
            await until(lambda c=coid, q=q: fill_lots(h, c) == q, 5, f"{coid} filled")
        resting = h.strat.buy("AAPL", 4, rest_px(h))
        await h.wait_kind(resting, A)
        h.strat.cancel(resting)
        await h.wait_kind(resting, C)
        execs = [e.execId for c in coids for e in sim_execs(h, c)]
        await until(lambda: len(late) == len(execs), 5, "a COMMISSION event per execution")
        assert Counter(late) == Counter(c for c in coids for _ in sim_execs(h, c))
        for coid, q in zip(coids, qtys, strict=True):
            kinds = h.kinds(coid)
            assert kinds[0] == A and kinds.count(A) == 1 and set(kinds) == {A, F}
            assert fill_lots(h, coid) == q == sim_exec_lots(h, coid)
        assert h.kinds(resting) == [A, C]
        check_fills(h, *coids)
        assert sorted(f.exec_id for f in h.strat.fills()) == sorted(execs)
        # The commissions came 50 ms after their fills: as COMMISSION events, once each, into
        # the portfolio's commission (the fills themselves carried none).
        assert all(f.commission == 0 for f in h.strat.fills())
        fees = sum(r.report.commissionAndFees for r in h.core().executions)
        assert fees > 0
        pos = h.engine.portfolio.position(0, aapl.id)
        await until(lambda: math.isclose(pos.commission, fees, rel_tol=1e-9), 3, "fees booked")


# ---- 9. orders in flight at a disconnect --------------------------------------------------------


async def test_order_in_flight_at_a_disconnect(caplog) -> None:
    caplog.set_level(logging.ERROR, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        # Seen: the gateway takes it, its answers are delayed past the drop.
        h.fault("latency", ms=60_000)
        seen = h.strat.buy("AAPL", 2, rest_px(h))
        await until(lambda: str(seen) in {o.order.orderRef for o in h.sim_orders()}, 5, "seen")
        h.fault("latency", ms=0)
        # Unseen: written to our socket and the connection dropped before the gateway reads it.
        await until(lambda: tokens(v) >= 1, 2, "a pacing token")
        lost = h.strat.buy("AAPL", 3, rest_px(h))
        assert v.orders_sent == 2 and v.pacer.pending == 0  # written to the socket
        h.fault("drop_all")
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        await h.wait_kind(lost, R)
        ev = next(e for e in h.strat.of(lost) if e.kind == R)
        assert ev.reason_code == UNKNOWN_AFTER_RECONNECT and "unknown" in ev.reason
        assert v.unknown_after_reconnect == 1
        assert any(str(lost) in r.getMessage() for r in caplog.records)
        assert str(lost) not in {o.order.orderRef for o in h.sim_orders()}
        await h.wait_kind(seen, A)
        assert h.kinds(seen) == [A]
        h.strat.cancel(seen)
        await h.wait_kind(seen, C)
        assert h.engine.tracker.finished[lost].state is OrderState.REJECTED


async def test_disconnect_with_requests_still_paced_resubscribes_cleanly() -> None:
    # Slow pacing keeps the subscriptions (and two orders) queued when the connection drops.
    async with IBHarness(pacing_msgs_per_s=10.0, pacing_burst=1) as h:
        v = h.venue
        reqs = record_requests(h)
        await until(lambda: v.pacer.pending >= 5, 5, "subscriptions queued")
        coids = [h.strat.buy("AAPL", 1, 1.0) for _ in range(2)]
        assert v.orders_sent == 2 and v.pacer.pending >= 7
        h.fault("drop_all")
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        await settled(h)
        # The dead session's data requests were not replayed: no duplicate ticker ids, and
        # both books equal what the gateway sent (a stale reqMktDepth would corrupt them).
        assert 322 not in codes(v)
        for symbol in h.symbols:
            await until(lambda s=symbol: depth_matches_sim(h, s), 5, f"{symbol} book")
        assert names(reqs)["ReqMktDepth"] == 2
        # The queued orders never reached IB and are not sent after the outage (stale
        # prices): reconciliation reports them as unknown to IB.
        for coid in coids:
            await h.wait_kind(coid, R)
            (ev,) = h.strat.of(coid)
            assert ev.reason_code == -2
        assert v.unknown_after_reconnect == 2
        assert names(reqs)["PlaceOrder"] == 0 == len(sim_ids(h))


async def test_orders_are_held_back_just_before_a_scheduled_restart() -> None:
    """Within ``restart_guard_s`` of an expected gateway restart new orders are refused
    (HELD_BACK, naming the window) and nothing reaches the gateway; once that window is no
    longer ahead, orders go again. The answer is worked out when it can change, not per order."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        placed = len(sim_ids(h))
        soon = (datetime.now(UTC) + timedelta(seconds=20)).astimezone(ZoneInfo("US/Eastern"))
        window = OutageWindow(
            soon.time().replace(microsecond=0), 5, "US/Eastern", "test restart", restart=True
        )
        v.outages = OutageSchedule([window], guard_s=60)
        v._guard_until = 0.0  # the schedule was swapped under it: work the answer out again
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK and "test restart" in ev.reason
        assert len(sim_ids(h)) == placed
        # Until the window has ended, the cached answer stands: a second order is held too.
        again = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()
        assert [e.reason_code for e in h.strat.of(again)] == [HELD_BACK]
        assert v._guard_until >= (datetime.now(UTC) + timedelta(seconds=20)).timestamp()
        v.outages = OutageSchedule([], guard_s=60)
        v._guard_until = 0.0
        sent = h.strat.buy("AAPL", 1, rest_px(h))
        await h.wait_kind(sent, A)
        assert len(sim_ids(h)) == placed + 1
