"""IBVenue after outages, against the gateway simulator over loopback: a reconciliation IB does
not finish, keep-up-to-date bars across a gateway restart, 1101 and a historical farm blip,
a farm blip after which only some streams are dead, and a depth reset (317).

Each test makes the simulator misbehave as IB does (``ignore_requests``,
``silence_subscriptions``, ``farm_blip`` of ``ushmds``, ``depth_reset``) and asserts what the
engine and the gateway then see.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from adapters.ib.history import NS, Bar
from adapters.ib.venue import HELD_BACK, UNKNOWN_AFTER_RECONNECT
from engine.messages import BookSide, DeltaAction, EventKind
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import (
    book_moves,
    codes,
    depth_matches_sim,
    names,
    record_requests,
    rest_px,
    settled,
    take_px,
    tokens,
)

A, F, C, R = EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED, EventKind.REJECTED


def logged(caplog, level: int, *words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and all(w in r.getMessage() for w in words)
    ]


# ---- reconciliation IB does not finish ----------------------------------------------------------


async def test_unfinished_reconciliation_holds_orders_and_asks_again_until_complete(
    caplog,
) -> None:
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness(reconcile_timeout_s=0.5) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        resting = h.strat.buy("AAPL", 5, rest_px(h))
        await h.wait_kind(resting, A)
        await until(lambda: tokens(v) >= 1, 2, "a pacing token")
        lost = h.strat.buy("AAPL", 3, rest_px(h))
        assert v.pacer.pending == 0  # written to the socket, never read by the gateway
        # A gateway still loading after a restart: its first four reqOpenOrders go unanswered.
        h.fault("ignore_requests", request="ReqOpenOrders", count=4)
        h.fault("drop_all")
        await until(lambda: not v.connected, 5, "the drop seen")
        mark = len(reqs)
        await until(lambda: names(reqs, mark)["ReqOpenOrders"] >= 2, 10, "open orders asked again")
        assert v.connected and not v.ready and v.unreconciled == ("open_orders",)
        (stalled,) = logged(caplog, logging.ERROR, "reconciliation incomplete")
        assert "open_orders" in stalled and "held back" in stalled
        # New orders are refused with the reason; the order lost in the drop is not judged yet
        # (IB has not said which orders it knows).
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK
        assert "reconciliation incomplete" in ev.reason and "open_orders" in ev.reason
        assert h.kinds(lost) == []
        # Market data and cancels do not wait for it.
        await book_moves(h, "AAPL")
        h.strat.cancel(resting)
        await h.wait_kind(resting, C)
        assert v.unreconciled and not v.ready
        # Asked again (waiting longer each time) until IB answers; then the lost order is
        # reported and trading resumes.
        await until(lambda: v.ready, 15, "reconciled")
        assert names(reqs, mark)["ReqOpenOrders"] == 5
        assert v.unreconciled == () and v.status()["unreconciled"] == []
        await h.wait_kind(lost, R)
        (ev,) = h.strat.of(lost)
        assert ev.reason_code == UNKNOWN_AFTER_RECONNECT and v.unknown_after_reconnect == 1
        assert logged(caplog, logging.WARNING, "reconciliation complete", "trading resumes")
        after = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(after, F)


async def test_a_drop_while_reconciliation_is_incomplete_starts_it_over() -> None:
    async with IBHarness(reconcile_timeout_s=0.5) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        h.fault("ignore_requests", request="ReqCompletedOrders", count=1000)
        h.fault("drop_all")
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: names(reqs)["ReqCompletedOrders"] >= 2, 10, "asked again")
        assert v.unreconciled == ("completed_orders",) and not v.ready
        asked = names(reqs)["ReqCompletedOrders"]
        h.core().ignoring.clear()  # the gateway recovers, but its socket drops first
        h.fault("drop_all")
        await until(lambda: v.reconnects == 2 and v.ready, 10, "reconciled on the next session")
        assert not v.unreconciled
        assert names(reqs)["ReqCompletedOrders"] >= asked + 1
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(coid, F)


# ---- keep-up-to-date bars after outages ---------------------------------------------------------

FAST = {"market": {"events_per_second": 200.0}}


async def keep_up(h: IBHarness) -> tuple[list[Bar], list[tuple[Bar, bool]], int]:
    """AAPL's 5-second bars kept up to date: (initial bars, updates as they came, user id)."""
    seen: list[tuple[Bar, bool]] = []
    fut = h.venue.historical_bars(
        "AAPL", duration="300 S", bar_size="5 secs", keep_up_to_date=True,
        on_update=lambda bar, new: seen.append((bar, new)),
    )  # fmt: skip
    bars = await asyncio.wait_for(fut, 5)
    await until(lambda: len(seen) >= 3, 5, "updates")
    return bars, seen, fut.req_id


async def more_updates(seen: list, what: str) -> None:
    n = len(seen)
    await until(lambda: len(seen) > n + 3, 5, f"updates {what}")


def check_every_bar_once(h: IBHarness, bars: list[Bar], seen: list, req_id: int) -> None:
    """The bars delivered (initial, then each new one) are every 5 s without a gap, none twice,
    and what the subscription holds under the user's id."""
    times = [b.ts_utc_ns for b in bars] + [b.ts_utc_ns for b, new in seen if new]
    assert all(b - a == 5 * NS for a, b in itertools.pairwise(times)), times
    assert [b.ts_utc_ns for b in h.venue.history.bars(req_id)] == times


def asked_for_bars(reqs: list) -> list[int]:
    return [r.req_id for _, name, r in reqs if name == "ReqHistoricalData"]


async def test_kept_up_to_date_bars_continue_after_a_gateway_restart_and_1101() -> None:
    async with IBHarness(sim=FAST) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        bars, seen, req_id = await keep_up(h)
        # Down long enough to miss a bar: the re-request's initial bars fill it in.
        h.fault("daily_restart", seconds=6.0)
        await until(lambda: not v.connected, 5, "the restart seen")
        await until(lambda: v.ready and v.reconnects == 1, 15, "reconnected")
        await more_updates(seen, "after the restart")
        h.fault("connectivity_lost", seconds=0.3, data_lost=True)
        await until(lambda: 1101 in codes(v), 5, "1101")
        await more_updates(seen, "after 1101")
        check_every_bar_once(h, bars, seen, req_id)
        asked = asked_for_bars(reqs)
        assert len(asked) == 3 and len(set(asked)) == 3 and asked[0] == req_id
        assert not names(reqs)["CancelHistoricalData"]  # both times IB had dropped it
        h.venue.history.cancel(req_id)  # the user's id still names it
        await until(lambda: names(reqs)["CancelHistoricalData"] == 1, 5, "cancelled")
        assert [r.req_id for _, n, r in reqs if n == "CancelHistoricalData"] == [asked[-1]]


async def test_bars_silent_after_a_historical_farm_blip_are_asked_for_again(caplog) -> None:
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness(data_check_s=0.5, sim=FAST) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        bars, seen, req_id = await keep_up(h)
        # Back by themselves: nothing asked again.
        h.fault("farm_blip", seconds=0.3, farm="ushmds")
        await until(lambda: 2105 in codes(v), 5, "2105")
        await until(lambda: logged(caplog, logging.INFO, "bars resumed"), 5, "the data check")
        assert len(asked_for_bars(reqs)) == 1
        # Silent after the farm is back (IB can leave a subscription dead): asked again,
        # the old one cancelled first (the gateway still holds it).
        subs = v.resubscribes
        h.fault("farm_blip", seconds=0.3, farm="ushmds")
        await until(lambda: codes(v).count(2105) == 2, 5, "2105 again")
        h.fault("silence_subscriptions", symbol="AAPL")
        await until(lambda: len(asked_for_bars(reqs)) == 2, 5, "asked again")
        assert [r.req_id for _, n, r in reqs if n == "CancelHistoricalData"] == [req_id]
        assert v.resubscribes == subs + 1
        assert logged(caplog, logging.WARNING, "silent", "ushmds")
        await more_updates(seen, "after the blip")
        check_every_bar_once(h, bars, seen, req_id)


# ---- farm blips: per stream ---------------------------------------------------------------------


async def test_after_a_farm_blip_only_the_dead_streams_are_asked_for_again(caplog) -> None:
    """AAPL streams again after the blip, MSFT does not (nautilus #3968): MSFT's streams are
    restarted under fresh ids and its book recovers; AAPL's are left alone."""
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness(data_check_s=1.0) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        aapl, msft = (v._subs[h.registry.resolve(s).id] for s in ("AAPL", "MSFT"))
        aapl_ids, msft_ids = (aapl.depth, aapl.tbt), (msft.depth, msft.tbt)
        subs = v.resubscribes
        h.fault("farm_blip", seconds=0.3)
        await until(lambda: 2103 in codes(v), 5, "2103")
        mark = len(reqs)
        h.fault("silence_subscriptions", symbol="MSFT")
        await until(lambda: v.resubscribes == subs + 1, 5, "MSFT asked for again")

        def asked(name: str) -> bool:  # the requests reach the simulator a little later
            return any(n == name for _, n, _ in reqs[mark:])

        await until(lambda: asked("CancelMktDepth") and asked("ReqMktDepth"), 5, "MSFT's requests")
        cancelled = {(n, r.req_id) for _, n, r in reqs[mark:] if n.startswith("Cancel")}
        assert ("CancelMktDepth", msft_ids[0]) in cancelled
        assert not {r for _, r in cancelled} & set(aapl_ids)
        assert (aapl.depth, aapl.tbt) == aapl_ids and msft.depth not in msft_ids
        depth_asks = [r for _, n, r in reqs[mark:] if n == "ReqMktDepth"]
        assert [(r.req_id, r.contract.symbol) for r in depth_asks] == [(msft.depth, "MSFT")]
        (warned,) = logged(caplog, logging.WARNING, "no market data for")
        assert "MSFT" in warned and "AAPL" not in warned and "usfarm" in warned
        await book_moves(h, "MSFT")
        await until(lambda: depth_matches_sim(h, "MSFT"), 5, "MSFT book equal to the sim's")
        await book_moves(h, "AAPL")
        assert 322 not in codes(v)


# ---- depth reset (317) --------------------------------------------------------------------------


async def test_depth_reset_empties_the_book_and_rebuilds_it_at_full_depth(caplog) -> None:
    caplog.set_level(logging.INFO, "tickwire.ib")
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        iid = h.registry.resolve("AAPL").id
        sub = v._subs[iid]
        old = sub.depth
        cleared: list[int] = []
        write = v._write_deltas

        def spy(deltas):
            clear = deltas["action"] == int(DeltaAction.CLEAR)
            cleared.extend(int(i) for i in deltas["instrument_id"][clear])
            write(deltas)

        v._write_deltas = spy
        h.fault("depth_reset", symbol="AAPL")
        await until(lambda: 317 in codes(v), 5, "317")
        assert cleared == [iid]  # emptied through the book's own delta path
        await until(lambda: depth_matches_sim(h, "AAPL"), 5, "the book rebuilt")
        levels = next(i for i in h.core().instruments if i.symbol == "AAPL").depth_levels
        view = h.strat.book("AAPL")
        full = min(10, levels)
        assert len(view.depth(BookSide.BID, 10)) == len(view.depth(BookSide.ASK, 10)) == full
        assert not v._l1_book[iid] and sub.failed == "" and sub.depth != old
        assert v._md.req_inst[old] == -1  # late rows of the reset stream are not applied
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        (said,) = logged(caplog, logging.WARNING, "317")
        assert "AAPL" in said
        await book_moves(h, "AAPL")
        await until(lambda: depth_matches_sim(h, "AAPL"), 5, "the book still exact")
