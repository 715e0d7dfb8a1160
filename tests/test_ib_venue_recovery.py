"""IBVenue after outages, against the gateway simulator over loopback: a reconciliation IB does
not finish, keep-up-to-date bars across a gateway restart, 1101 and a historical farm blip,
a farm blip after which only some streams are dead, and a depth reset (317).

Each test makes the simulator misbehave as IB does (``ignore_requests``,
``silence_subscriptions``, ``farm_blip`` of ``ushmds``, ``depth_reset``) and asserts what the
engine and the gateway then see.
"""

from __future__ import annotations

import logging

from adapters.ib.venue import HELD_BACK, UNKNOWN_AFTER_RECONNECT
from engine.messages import EventKind
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import (
    book_moves,
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
