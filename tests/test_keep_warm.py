"""Keeping the order path warm: ``Engine.warm_order_path`` (the dry run), its timer, and the loop's
busy poll, over a real loopback socket to the gateway simulator.

The dry run must never send, queue, journal, count or change anything: every check below compares
the real objects (risk arrays, OMS, venue ids and counters, pacer, journal, socket writes, what
the simulator received) before and after. And an order sent with the warm-up running is handled
exactly as one sent without it: same frames on the wire, same events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.ib.connection import Connection
from adapters.ib.venue import IBVenue
from engine.journal import Journal
from engine.messages import EventKind
from engine.orders import OrderState
from engine.scheduler import BusyPoll
from tests.ib_sim_support import record_order_status_parses
from tests.ib_venue_support import IBHarness, until

A, C = EventKind.ACCEPTED, EventKind.CANCELLED


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the venue makes to its socket (orders, cancels, requests), in order."""
    writes: list[bytes] = []
    real = Connection.write

    def write(self: Connection, data: bytes) -> bool:
        writes.append(bytes(data))
        return real(self, data)

    monkeypatch.setattr(Connection, "write", write)
    return writes


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every placeOrder frame ``_place_frame`` made, real or dry."""
    made: list[bytes] = []
    real = IBVenue._place_frame

    def place_frame(self: IBVenue, live: Any, qty_lots: int, price_ticks: int) -> bytes:
        frame = real(self, live, qty_lots, price_ticks)
        made.append(frame)
        return frame

    monkeypatch.setattr(IBVenue, "_place_frame", place_frame)
    return made


def _state(h: IBHarness, journal: Journal | None = None) -> dict[str, Any]:
    """Everything an order changes, as plain values (arrays copied)."""
    e, v = h.engine, h.venue
    aapl = h.registry.resolve("AAPL").id
    pos = e.portfolio.position(0, aapl)
    protos = [(o.totalQuantity, o.lmtPrice, o.orderRef) for o in v._protos.values()]
    return {
        "risk_arrays": [a.copy() for a in e.risk._check_args],
        "risk_counters": (list(e.risk.rejects), e.risk.passed),
        "oms": {
            c: (o.state, o.qty_lots, o.price_ticks, o.ts_sent) for c, o in e.tracker.open.items()
        },
        "oms_next_id": repr(e.tracker._ids),
        "finished": len(e.tracker.finished),
        "router": (e.router.orders, e.router.cancels, e.router.shadowed, len(e.router._stamps)),
        "rings": (e.intents.head, e.intents.tail, e.events.head, e.events.tail),
        "venue_ids": (v._next_id, v._reserved, v._hwm),
        "venue_orders": (sorted(v._by_ib), sorted(v._by_coid), v.orders_sent, v.cancels_sent),
        "venue_counters": (v.held_back, len(v._prepared), len(v._protos)),
        "venue_events": (v.foreign_events, sorted(v._by_perm), v.errors[:]),
        "decoder": None if v.conn is None else v.conn.session.hot.buffered,
        "protos": protos,
        "pacer": (v.pacer._tokens, v.pacer._last, v.pacer.sent, v.pacer.pending),
        "position": (pos.lots, pos.commission),
        "latency": [s.count for s in e.latency.stages.values()],
        "journal": None if journal is None else journal.bytes,
        "sim_received": list(h.core().received),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, was in before.items():
        now = after[key]
        if key == "risk_arrays":
            for a, b in zip(was, now, strict=True):
                assert np.array_equal(a, b, equal_nan=True), "the risk state changed"
        else:
            assert now == was, f"{key} changed: {was!r} -> {now!r}"


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The orderStatus arguments every ``_parse_order_status`` call gave, real or dry."""
    return record_order_status_parses(monkeypatch)


async def test_dry_run_changes_nothing(
    tmp_path: Path, wire: list[bytes], frames, parsed: list[tuple]
) -> None:
    async with IBHarness() as h:
        e = h.engine
        journal = Journal.open(tmp_path / "orders.journal", "never")
        e.attach_journal(journal)
        await h.book_ready("AAPL")
        # No order yet: nothing to warm, and nothing happens.
        assert not e.warm_order_path()
        coid = h.strat.buy("AAPL", 3, round(h.mid("AAPL") * 0.9, 2))
        await h.wait_kind(coid, A)
        await asyncio.sleep(0.05)  # let what the order set off settle (no await from here on)
        real_frame = frames[-1]
        assert any(real_frame in w for w in wire), "the order's frame was written"
        before, writes, made = _state(h, journal), len(wire), len(frames)
        answers = len(parsed)
        for _ in range(20):
            assert e.warm_order_path()
        _assert_same(before, _state(h, journal))
        assert len(wire) == writes, "the dry run wrote to the socket"
        assert e.warm_runs == 20
        # It did go all the way: the venue encoded the order again, to the very bytes it sent.
        assert frames[made:] == [real_frame] * 20
        # And an answer for it came the way in as far as the parse (no callback: see above).
        ib_id = h.venue._by_coid[coid].ib_id
        assert [a[:2] for a in parsed[answers:]] == [(ib_id, "Submitted")] * 20
        # The order itself is untouched: cancelled normally afterwards.
        h.strat.cancel(coid)
        await h.wait_kind(coid, C)
        assert e.tracker.finished[coid].state is OrderState.CANCELLED
        journal.close()


async def test_dry_run_is_skipped_while_work_is_pending(frames) -> None:
    async with IBHarness() as h:
        e = h.engine
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.9, 2))
        await h.wait_kind(coid, A)
        seen: list[bool] = []
        # Inside a strategy callback the pump is running: the warm-up must not run there.
        h.strat.on_book_action = lambda s: seen.append(e.warm_order_path())
        await until(lambda: seen, 5, "an on_book")
        assert seen == [False]
        skips, made = e.warm_skips, len(frames)
        # Work waiting in a ring (a quote not yet drained): skipped as well, nothing encoded.
        e.quotes.tail += 1
        try:
            assert not e.warm_order_path()
        finally:
            e.quotes.tail -= 1
        assert e.warm_skips == skips + 1 and len(frames) == made
        assert e.warm_order_path() and len(frames) == made + 1


async def test_dry_run_skips_orders_held_back_and_after_a_reconnect(frames) -> None:
    async with IBHarness() as h:
        e, v = h.engine, h.venue
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.9, 2))
        await h.wait_kind(coid, A)
        made = len(frames)
        v.in_1100 = True  # orders held back: the venue's dry run stops short of encoding
        assert e.warm_order_path() and len(frames) == made
        v.in_1100 = False
        v._prepared.clear()  # no current template: preparing one would change the cache
        assert e.warm_order_path() and len(frames) == made and not v._prepared


async def _scenario(wire: list[bytes], warm: bool) -> tuple[list[bytes], list, list]:
    """Three resting orders, each accepted then cancelled, at fixed prices. With ``warm`` the
    warm-up timer runs every 0.2 ms throughout, and dry runs are made right before and after
    every order and cancel. Returns the socket writes of the order path (place and cancel
    frames), every event as (kind, client order id, venue order id, lots, ticks), and what the
    simulator received."""
    opts = {"keep_warm_ms": 0.2} if warm else {}
    async with IBHarness(engine=opts) as h:
        e = h.engine
        # Client order ids start from the session's start second, and they are in the frames
        # (orderRef): both runs take theirs from one fixed point above it.
        e.tracker.ensure_ids_above(35 * 10**15)
        await h.book_ready("AAPL")
        # The start-up requests still in the pacer would go out between the orders, when the
        # tokens allow: both runs start with it empty, so their writes are the order path's.
        await until(lambda: h.venue.pacer.pending == 0, what="start-up requests sent")
        start = len(wire)
        sent_before = h.venue.orders_sent
        for k in range(3):
            if warm:
                e.warm_order_path()
            coid = h.strat.buy("AAPL", 2 + k, 10.0 + k / 100)
            if warm:
                e.warm_order_path()
            await h.wait_kind(coid, A)
            if warm:
                e.warm_order_path()
            h.strat.cancel(coid)
            if warm:
                e.warm_order_path()
            await h.wait_kind(coid, C)
        assert h.venue.orders_sent == sent_before + 3
        if warm:
            assert e.warm_runs > 20, "the timer ran the warm-up"
        else:
            assert e.warm_runs == 0
        events = [
            (ev.kind, ev.client_order_id, ev.venue_order_id, ev.qty_lots, ev.price_ticks)
            for ev in h.strat.events
        ]
        return wire[start:], events, list(h.core().received)


async def test_orders_with_the_warm_up_running_are_handled_as_without_it(wire) -> None:
    cold = await _scenario(wire, warm=False)
    warm = await _scenario(wire, warm=True)
    writes, events, received = cold
    assert len(received) == 3 and len(events) == 6 and writes
    assert warm == cold


async def test_engine_timer_runs_only_while_started() -> None:
    async with IBHarness(engine={"keep_warm_ms": 0.5}) as h:
        e = h.engine
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.9, 2))
        await h.wait_kind(coid, A)
        runs = e.warm_runs
        await until(lambda: e.warm_runs > runs + 5, 2, "timer-driven warm-ups")
        e.stop()
        stopped = e.warm_runs
        await asyncio.sleep(0.02)
        assert e.warm_runs == stopped


async def test_busy_poll_keeps_the_loop_polling_and_timers_on_time() -> None:
    loop = asyncio.get_running_loop()
    busy = BusyPoll(loop)
    busy.start()
    try:
        t0 = loop.time()
        await asyncio.sleep(0.01)  # a timer still fires while the loop spins
        assert loop.time() - t0 < 0.5
        assert busy.running and busy.spins > 10
    finally:
        busy.stop()
    spins = busy.spins
    await asyncio.sleep(0.01)
    assert busy.spins == spins and not busy.running
